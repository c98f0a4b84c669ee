//! A real `strata up` in a temporary data directory, driven through the CLI binary and the HTTP API.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_strata");

pub struct Strata {
    pub root: PathBuf,
    child: Option<Child>,
    pub api_url: String,
    /// The gateway's port on 127.0.0.1.
    pub mysql_port: u16,
    /// The HTTP SQL endpoint's port on 127.0.0.1.
    pub http_port: u16,
    pub token_id: String,
    pub token: String,
    pub org: String,
    pub stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}

impl Strata {
    /// Starts `strata up` on `root/data` with its CLI config at `root/config.toml`.
    pub fn start(root: &Path) -> Strata {
        Self::start_on(root, "127.0.0.1:0")
    }

    /// Starts `strata up` with its API on `listen`.
    pub fn start_on(root: &Path, listen: &str) -> Strata {
        Self::start_with(root, listen, &[])
    }

    /// Starts `strata up` with extra flags (e.g. gateway limits).
    pub fn start_with(root: &Path, listen: &str, extra: &[&str]) -> Strata {
        Self::start_full(root, listen, "127.0.0.1:0", extra)
    }

    /// Starts again on the same data directory and the same API and MySQL addresses as `old`.
    pub fn restart_like(root: &Path, old: &Strata) -> Strata {
        let api = old.api_url.trim_start_matches("http://").to_string();
        let http = format!("127.0.0.1:{}", old.http_port);
        Self::start_full(
            root,
            &api,
            &format!("127.0.0.1:{}", old.mysql_port),
            &["--http-listen", &http],
        )
    }

    pub fn start_full(root: &Path, listen: &str, mysql_listen: &str, extra: &[&str]) -> Strata {
        tls_provider();
        let mut child = Command::new(BIN)
            .args([
                "up",
                "--listen",
                listen,
                "--mysql-listen",
                mysql_listen,
                "--data-dir",
            ])
            .arg(data_dir(root))
            .args(extra)
            .args(if extra.contains(&"--http-listen") {
                &[][..]
            } else {
                &["--http-listen", "127.0.0.1:0"][..]
            })
            .env("STRATA_CONFIG", root.join("config.toml"))
            .env(
                "STRATA_LOG",
                std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(root.join("up.log")).unwrap())
            .spawn()
            .expect("strata up starts");
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut api: Option<String> = None;
            let mut mysql = 0u16;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("API:") {
                    api = Some(
                        url.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                let port_of = |addr: &str| -> u16 {
                    addr.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0)
                };
                if let Some(addr) = line.trim().strip_prefix("MySQL:") {
                    mysql = port_of(addr);
                }
                if let Some(addr) = line.trim().strip_prefix("HTTP SQL:") {
                    if let Some(api) = api.take() {
                        let _ = tx.send((api, mysql, port_of(addr)));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (api_url, mysql_port, http_port) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "strata up did not print its API address; log:\n{}",
                    std::fs::read_to_string(root.join("up.log")).unwrap_or_default()
                )
            });
        let text = std::fs::read_to_string(root.join("config.toml"))
            .expect("strata up wrote the CLI config");
        let cfg: toml::Table = toml::from_str(&text).unwrap();
        let get = |k: &str| {
            cfg[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} missing in CLI config"))
                .to_string()
        };
        Strata {
            root: root.to_path_buf(),
            child: Some(child),
            api_url,
            mysql_port,
            http_port,
            token_id: get("service_token_id"),
            token: get("service_token"),
            org: get("org"),
            stdout_lines: lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Runs the CLI with this platform's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("STRATA_CONFIG", self.root.join("config.toml"))
            .env_remove("STRATA_API_URL")
            .env_remove("STRATA_ORG")
            .env_remove("STRATA_FORMAT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `--format json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs the CLI and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "strata {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// An API call with this platform's service token (or the given Authorization value).
    pub fn api_as(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let url = format!("{}/v1/{}", self.api_url, path.trim_start_matches('/'));
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().unwrap();
        let status = res.status().as_u16();
        let text = res.text().unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("{}:{}", self.token_id, self.token);
        self.api_as(Some(&auth), method, path, body)
    }

    pub fn org_path(&self, rest: &str) -> String {
        format!("organizations/{}/{}", self.org, rest)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "strata up did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "KILL");
        let _ = child.wait();
    }

    /// The instance directory of a branch (holds the internal users' client option files).
    pub fn instance_dir(&self, branch_id: &str) -> PathBuf {
        data_dir(&self.root).join("instances").join(branch_id)
    }

    /// Runs SQL with the stock `mariadb` client as one internal user of a branch's instance.
    pub fn mariadb(&self, branch_id: &str, user: &str, sql: &str) -> Output {
        let cnf = self
            .instance_dir(branch_id)
            .join(format!("client-{user}.cnf"));
        Command::new("mariadb")
            .arg(format!("--defaults-extra-file={}", cnf.display()))
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .expect("mariadb client installed")
    }

    pub fn sql_ok(&self, branch_id: &str, user: &str, sql: &str) -> String {
        let out = self.mariadb(branch_id, user, sql);
        assert!(
            out.status.success(),
            "{user}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn sql_err(&self, branch_id: &str, user: &str, sql: &str) -> String {
        let out = self.mariadb(branch_id, user, sql);
        assert!(!out.status.success(), "{user} should not be able to: {sql}");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Creates a database and waits for its `main` branch; returns that branch's id.
    pub fn new_database(&self, db: &str) -> String {
        self.json(&["database", "create", db, "--wait"]);
        self.wait_branch(db, "main")["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until a branch is ready through the API; returns the branch object.
    pub fn wait_branch(&self, db: &str, branch: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, b) = self.api(
                "GET",
                &self.org_path(&format!("databases/{db}/branches/{branch}")),
                None,
            );
            assert_eq!(s, 200, "{b}");
            if b["ready"] == true && b["instance"]["state"] == "running" {
                return b;
            }
            assert_ne!(b["state"], "failed", "{b}");
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "branch {branch} not ready: {b}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A password made through the CLI: (username, plaintext, id).
pub fn password(s: &Strata, db: &str, branch: &str, role: &str) -> (String, String, String) {
    let p = s.json(&[
        "password",
        "create",
        db,
        branch,
        &format!("{role}-{}", rand_suffix()),
        "--role",
        role,
    ]);
    (
        p["username"].as_str().unwrap().to_string(),
        p["plain_text"].as_str().unwrap().to_string(),
        p["id"].as_str().unwrap().to_string(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Strata {
    /// Runs SQL through the gateway with the stock `mariadb` client (extra args first, e.g. TLS flags).
    pub fn gateway_sql(&self, user: &str, pw: &str, extra: &[&str], sql: &str) -> Output {
        Command::new("mariadb")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.mysql_port.to_string(),
                "-u",
                user,
                &format!("-p{pw}"),
            ])
            .args(extra)
            .args(["--batch", "--skip-column-names", "--comments", "-e", sql])
            .output()
            .expect("mariadb client installed")
    }

    pub fn ca(&self) -> PathBuf {
        data_dir(&self.root).join("tls/ca.pem")
    }
}

/// PIDs of server processes whose option file lies under `data`.
pub fn servers_of(data: &Path) -> Vec<u32> {
    let needle = format!(
        "--defaults-file={}",
        data.canonicalize().unwrap_or(data.to_path_buf()).display()
    );
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) && !stat.contains(") Z ") {
            out.push(pid);
        }
    }
    out
}

/// Waits until no server of `data` is left; panics after `secs`.
pub fn wait_no_servers(data: &Path, secs: u64) {
    let start = Instant::now();
    while !servers_of(data).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "servers left running: {:?}",
            servers_of(data)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Installs rustls's ring provider for this test process, as `strata` does at start: the workspace
/// builds reqwest with rustls but no provider of its own.
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A branch's schema as `(name, CREATE statement)` pairs, AUTO_INCREMENT counters left out (they
/// follow the data, not the schema).
pub fn schema_of(s: &Strata, branch: &str) -> Vec<(String, String)> {
    let v = s.json(&["branch", "schema", "shop", branch]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let raw = o["raw"].as_str().unwrap();
            let mut out = String::new();
            let mut rest = raw;
            while let Some(i) = rest.find(" AUTO_INCREMENT=") {
                out.push_str(&rest[..i]);
                rest = rest[i + " AUTO_INCREMENT=".len()..]
                    .trim_start_matches(|c: char| c.is_ascii_digit());
            }
            out.push_str(rest);
            // A view's definer is whoever created it there, not part of the schema.
            if let Some(i) = out.find(" DEFINER=`") {
                if let Some(j) = out[i + 1..].find(' ') {
                    out.replace_range(i..i + 1 + j, "");
                }
            }
            (o["name"].as_str().unwrap().to_string(), out)
        })
        .collect()
}

/// Asserts that no deployment artifact (`~strata_` tables, `_strata_` ones of older plans) is left
/// in database `shop` on the branch.
pub fn assert_no_artifacts(s: &Strata, branch_id: &str, context: &str) {
    let left = s.sql_ok(
        branch_id,
        "strata_admin",
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' AND (TABLE_NAME LIKE '\\_strata\\_%' OR TABLE_NAME LIKE '~strata\\_%')",
    );
    assert_eq!(left.trim(), "0", "artifacts left ({context})");
}
