//! End to end: backups taken while writes run, restored into branches, validated (and a corrupted
//! one caught), schedules with retention, data branches, and kill -9 in the middle of it all.

mod common;

use common::{data_dir, Strata};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn setup(s: &Strata, rows: u32) -> String {
    s.json(&["database", "create", "shop", "--wait"]);
    let main = s.wait_branch("shop", "main");
    let id = main["id"].as_str().unwrap().to_string();
    s.sql_ok(
        &id,
        "strata_admin",
        &format!(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, note VARCHAR(200) NOT NULL);
             CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, what TEXT);
             INSERT INTO orders SELECT seq, REPEAT('x', 150) FROM seq_1_to_{rows};
             INSERT INTO audit (what) VALUES ('one'), ('two');"
        ),
    );
    id
}

/// Inserts orders one statement at a time through the branch's readwriter user until stopped;
/// `acked` is the highest id the server acknowledged (ids are sequential).
fn writer(
    s: &Strata,
    branch_id: &str,
    start: i64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicI64>,
) -> std::thread::JoinHandle<()> {
    let cnf = s
        .instance_dir(branch_id)
        .join("client-strata_readwriter.cnf");
    acked.store(start, Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut id = start;
        while !stop.load(Ordering::SeqCst) {
            let batch: Vec<String> = (id + 1..=id + 20)
                .map(|i| format!("INSERT INTO orders VALUES ({i}, 'w');"))
                .collect();
            let out = std::process::Command::new("mariadb")
                .arg(format!("--defaults-extra-file={}", cnf.display()))
                .args(["--batch", "-e", &batch.join("")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            id += 20;
            acked.store(id, Ordering::SeqCst);
        }
    })
}

fn count(s: &Strata, branch_id: &str, table: &str) -> i64 {
    s.sql_ok(
        branch_id,
        "strata_admin",
        &format!("SELECT COUNT(*) FROM {table}"),
    )
    .trim()
    .parse()
    .unwrap()
}

fn backups_path(s: &Strata, branch: &str) -> String {
    s.org_path(&format!("databases/shop/branches/{branch}/backups"))
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn backups_restores_validation_schedules_and_data_branches() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = setup(&s, 30_000);

    // A backup taken while writes run.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let w = writer(&s, &main_id, 30_000, stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_millis(500));
    let before = acked.load(Ordering::SeqCst);
    let bk = s.json(&[
        "backup", "create", "shop", "main", "--name", "nightly", "--wait",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    let after_backup = acked.load(Ordering::SeqCst);
    assert!(after_backup > before, "writes ran during the backup");
    let id = bk["id"].as_str().unwrap().to_string();
    assert_eq!(bk["state"], "success", "{bk}");
    assert_eq!(bk["name"], "nightly");
    assert_eq!(bk["validation_state"], "passed", "{bk}");
    assert!(bk["size"].as_i64().unwrap() > 1_000_000, "{bk}");
    assert_eq!(bk["database_branch"]["name"], "main");
    assert_eq!(bk["progress"]["phase"], "complete");
    assert_eq!(bk["progress"]["percent"], 100);
    for f in ["started_at", "completed_at", "expires_at", "validated_at"] {
        assert!(bk[f].is_string(), "{f}: {bk}");
    }
    let rows_at_backup = bk["table_rows"]["orders"].as_i64().unwrap();
    assert!(
        rows_at_backup >= before && rows_at_backup <= after_backup,
        "{rows_at_backup} not in {before}..{after_backup}"
    );
    assert_eq!(bk["table_rows"]["audit"], 2);
    let list = s.json(&["backup", "list", "shop", "main"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let human = s.ok(&["backup", "show", "shop", "main", &id]);
    assert!(
        human.contains("nightly") && human.contains("passed"),
        "{human}"
    );

    // Restored into a new branch: every row committed before the backup point, nothing after it.
    let restored = s.json(&["backup", "restore", "shop", "restored", &id, "--wait"]);
    assert_eq!(restored["ready"], true, "{restored}");
    let r = s.wait_branch("shop", "restored");
    assert_eq!(r["data_source"], "backup");
    assert_eq!(r["restored_from_backup"], id.as_str());
    assert_eq!(r["parent_branch"], "main");
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(count(&s, &rid, "orders"), rows_at_backup);
    let max: i64 = s
        .sql_ok(&rid, "strata_admin", "SELECT MAX(id) FROM orders")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        max, rows_at_backup,
        "the restored rows are exactly ids 1..={rows_at_backup}"
    );
    assert_eq!(count(&s, &rid, "audit"), 2);
    // The restored branch is a working branch: its own passwords, writes.
    s.sql_ok(
        &rid,
        "strata_readwriter",
        "INSERT INTO orders VALUES (-1, 'after restore')",
    );
    let (_, got) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
    assert_eq!(got["restored_branches"][0]["name"], "restored", "{got}");

    // pscale's spelling: POST …/branches with backup_id; and seed_data from the last backup.
    let (st, b) = s.api(
        "POST",
        &s.org_path("databases/shop/branches"),
        Some(json!({"name": "from-last", "seed_data": "last_successful_backup", "cluster_size": "PS-10"})),
    );
    assert_eq!(st, 201, "{b}");
    let fl = s.wait_branch("shop", "from-last");
    assert_eq!(fl["restored_from_backup"], id.as_str());

    // A data branch: the parent's data as of now.
    let main_rows = count(&s, &main_id, "orders");
    let seeded = s.json(&[
        "branch",
        "create",
        "shop",
        "seeded",
        "--seed-data",
        "--wait",
    ]);
    assert_eq!(seeded["data_source"], "parent", "{seeded}");
    let sid = seeded["id"].as_str().unwrap().to_string();
    assert_eq!(count(&s, &sid, "orders"), main_rows);

    // Bad inputs, each with a clear error and nothing changed.
    let bad = [
        (
            "POST",
            backups_path(&s, "nope"),
            json!({}),
            404,
            "not found",
        ),
        (
            "POST",
            backups_path(&s, "main"),
            json!({"retention_unit": "fortnight"}),
            422,
            "retention_unit",
        ),
        (
            "GET",
            format!("{}/zzzzzzzzzzzz", backups_path(&s, "main")),
            Value::Null,
            404,
            "not found",
        ),
        (
            "POST",
            s.org_path("databases/shop/branches"),
            json!({"name": "x1", "backup_id": "zzzzzzzzzzzz"}),
            404,
            "not found",
        ),
        (
            "POST",
            s.org_path("databases/shop/branches"),
            json!({"name": "x2", "seed_data": "yesterday"}),
            422,
            "seed_data",
        ),
        (
            "POST",
            s.org_path("databases/shop/branches"),
            json!({"name": "x3", "seed_data": "current", "backup_id": id}),
            422,
            "either",
        ),
        (
            "POST",
            s.org_path("databases/shop/branches"),
            json!({"name": "x4", "parent_branch": "restored", "seed_data": "last_successful_backup"}),
            422,
            "no successful backup",
        ),
        (
            "POST",
            s.org_path("databases/shop/backup-policies"),
            json!({"frequency_value": 0}),
            422,
            "frequency_value",
        ),
        (
            "POST",
            s.org_path("databases/shop/backup-policies"),
            json!({"target": "staging"}),
            422,
            "target",
        ),
    ];
    for (method, path, body, status, text) in bad {
        let (st, e) = s.api(method, &path, (!body.is_null()).then_some(body));
        assert_eq!(st, status, "{method} {path}: {e}");
        assert!(
            e["message"].as_str().unwrap_or_default().contains(text),
            "{method} {path}: {e}"
        );
        assert!(e["code"].is_string(), "{e}");
    }
    // Protected backups are not deleted.
    s.json(&["backup", "protect", "shop", "main", &id]);
    let msg = s.fails(&["backup", "delete", "shop", "main", &id, "--force"]);
    assert!(msg.contains("protected"), "{msg}");

    // Validation catches a corrupted backup.
    let ibd = data_dir(root.path())
        .join("backups")
        .join(&id)
        .join("shop/orders.ibd");
    let mut bytes = std::fs::read(&ibd).unwrap();
    // Every page past the tablespace's header: a few pages alone may be healed by recovery (the
    // redo log or the doublewrite buffer holding them), and the backup is then rightly valid.
    for b in &mut bytes[3 * 16384..] {
        *b ^= 0x5a;
    }
    std::fs::write(&ibd, bytes).unwrap();
    let out = s.cli(&["backup", "validate", "shop", "main", &id]);
    assert!(!out.status.success());
    let (_, v) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
    assert_eq!(v["validation_state"], "failed", "{v}");
    assert!(
        v["validation_error"].as_str().unwrap().contains("orders"),
        "{v}"
    );

    // The default schedule: production, every 12 hours, kept 2 days.
    let (_, pol) = s.api("GET", &s.org_path("databases/shop/backup-policies"), None);
    let default = &pol["data"][0];
    assert_eq!(
        (
            default["target"].as_str(),
            default["frequency_value"].as_i64(),
            default["frequency_unit"].as_str()
        ),
        (Some("production"), Some(12), Some("hour")),
        "{pol}"
    );
    // A short schedule for development branches fires, and its backups expire.
    let (st, p) = s.api(
        "POST",
        &s.org_path("databases/shop/backup-policies"),
        Some(json!({"name": "often", "target": "development", "frequency_value": 3, "frequency_unit": "second", "retention_value": 4, "retention_unit": "second"})),
    );
    assert_eq!(st, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let scheduled = |branch: &str| -> Vec<Value> {
        let (_, l) = s.api("GET", &backups_path(&s, branch), None);
        l["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["backup_policy"]["id"] == pid.as_str())
            .cloned()
            .collect()
    };
    let mut first = None;
    wait_for("a scheduled backup of a development branch", 120, || {
        let l = scheduled("seeded");
        first = l
            .iter()
            .find(|b| b["state"] == "success")
            .map(|b| b["id"].as_str().unwrap().to_string());
        first.is_some()
    });
    assert!(
        scheduled("main").is_empty(),
        "the development schedule leaves production alone"
    );
    let first = first.unwrap();
    wait_for("the scheduled backup to expire", 120, || {
        !scheduled("seeded")
            .iter()
            .any(|b| b["id"] == first.as_str())
    });
    assert!(!data_dir(root.path()).join("backups").join(&first).exists());
    let (st, _) = s.api(
        "DELETE",
        &s.org_path(&format!("databases/shop/backup-policies/{pid}")),
        None,
    );
    assert_eq!(st, 204);
}

#[test]
fn kill_9_during_a_backup_a_restore_and_a_data_branch() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Strata::start(root.path());
    let main_id = setup(&s, 200_000);

    // Killed while the backup runs: it is never shown complete, and is redone on restart.
    let (st, bk) = s.api(
        "POST",
        &backups_path(&s, "main"),
        Some(json!({"name": "cut"})),
    );
    assert_eq!(st, 201, "{bk}");
    let id = bk["id"].as_str().unwrap().to_string();
    wait_for("the backup to run", 60, || {
        let (_, b) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
        b["state"] == "running"
    });
    s.crash();
    let partial = data_dir(root.path())
        .join("backups")
        .join(format!("{id}.partial"));
    let s = Strata::restart_like(root.path(), &s);
    let (_, b) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
    assert_ne!(b["state"], "success", "{b}");
    wait_for("the backup to be redone", 120, || {
        let (_, b) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
        b["state"] == "success" && b["validation_state"] == "passed"
    });
    assert!(!partial.exists());
    let (_, b) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
    assert_eq!(b["table_rows"]["orders"], 200_000);
    let _ = main_id;

    // Killed while a branch is being restored: never ready half-made; finished on restart.
    let mut s = s;
    let (st, br) = s.api(
        "POST",
        &s.org_path("databases/shop/branches"),
        Some(json!({"name": "back", "backup_id": id})),
    );
    assert_eq!(st, 201, "{br}");
    s.crash();
    let s = Strata::restart_like(root.path(), &s);
    let b = s.wait_branch("shop", "back");
    let bid = b["id"].as_str().unwrap();
    assert_eq!(count(&s, bid, "orders"), 200_000);

    // Killed while a data branch is being made: the same.
    let mut s = s;
    let (st, br) = s.api(
        "POST",
        &s.org_path("databases/shop/branches"),
        Some(json!({"name": "snap", "seed_data": "current"})),
    );
    assert_eq!(st, 201, "{br}");
    s.crash();
    let s = Strata::restart_like(root.path(), &s);
    let b = s.wait_branch("shop", "snap");
    assert_eq!(b["data_source"], "parent");
    assert_eq!(count(&s, b["id"].as_str().unwrap(), "orders"), 200_000);
}

/// An S3-compatible server for the test: moto's (PyPI `moto[server]`, pinned in
/// tests/clients/requirements.txt), killed when dropped.
struct S3Server {
    child: std::process::Child,
    url: String,
}

impl S3Server {
    fn start() -> S3Server {
        common::tls_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server installed (scripts/test-deps.sh)");
        // Owned by the guard before anything can fail, so a failing start still kills it.
        let server = S3Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::blocking::Client::new();
        wait_for("the S3 server", 60, || http.get(&server.url).send().is_ok());
        server
    }

    /// The keys under a prefix (ListObjectsV2, unsigned: the test server does not check).
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body =
            reqwest::blocking::get(format!("{}/{bucket}?list-type=2&prefix={prefix}", self.url))
                .unwrap()
                .text()
                .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn backups_in_s3_compatible_storage() {
    let s3 = S3Server::start();
    let st = reqwest::blocking::Client::new()
        .put(format!("{}/strata-backups", s3.url))
        .send()
        .unwrap()
        .status();
    assert!(st.is_success(), "bucket created: {st}");
    // Credentials come from the environment, as for every S3 tool.
    std::env::set_var("AWS_ACCESS_KEY_ID", "strata-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "strata-test-secret");
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(
        root.path(),
        "127.0.0.1:0",
        &[
            "--backup-s3-bucket",
            "strata-backups",
            "--backup-s3-endpoint",
            &s3.url,
            "--backup-s3-prefix",
            "team/shop",
        ],
    );
    let main_id = setup(&s, 20_000);
    let bk = s.json(&["backup", "create", "shop", "main", "--wait"]);
    assert_eq!(bk["state"], "success", "{bk}");
    assert_eq!(bk["validation_state"], "passed", "{bk}");
    let id = bk["id"].as_str().unwrap().to_string();
    // In the bucket, manifest included; nothing left on local disk.
    let keys = s3.keys("strata-backups", &format!("team/shop/{id}/"));
    assert!(
        keys.iter().any(|k| k.ends_with("/strata-backup.json")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("/shop/orders.ibd")),
        "{keys:?}"
    );
    let stored: i64 = bk["size"].as_i64().unwrap();
    assert!(stored > 1_000_000);
    let local = data_dir(root.path()).join("backups");
    let leftovers: Vec<_> = std::fs::read_dir(&local)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Restored from the bucket into a branch.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "DELETE FROM orders WHERE id > 10000",
    );
    let r = s.json(&["backup", "restore", "shop", "from-s3", &id, "--wait"]);
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(count(&s, &rid, "orders"), 20_000);
    assert_eq!(count(&s, &main_id, "orders"), 10_000);

    // Deleted: gone from the bucket.
    s.ok(&["backup", "delete", "shop", "main", &id, "--force"]);
    assert!(s3
        .keys("strata-backups", &format!("team/shop/{id}/"))
        .is_empty());
    let (st, _) = s.api("GET", &format!("{}/{id}", backups_path(&s, "main")), None);
    assert_eq!(st, 404);
}
