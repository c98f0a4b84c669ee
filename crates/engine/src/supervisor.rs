//! One supervised server process per branch.
//!
//! An [`Instance`] owns a task that starts the server, waits until it answers, and restarts it with a
//! short backoff whenever it exits without being asked to (a crash, an OOM kill, `kill -9`). Stopping
//! sends SIGTERM and waits for a clean InnoDB shutdown, escalating to SIGKILL after a timeout. Servers
//! run in their own process group (a terminal's Ctrl-C reaches only strata, which then stops them in
//! order) and get SIGTERM from the kernel if strata itself dies, so none is left orphaned.

use crate::config::{self, Credentials, OptionFile, ROOT_USER};
use crate::flavour::ServerBinaries;
use crate::fsutil::{create_private_dir, write_private};
use crate::template::clone_template;
use crate::{io_err, EngineError, Result};
use mysql_async::prelude::Queryable;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};
use strata_model::role::quote_ident;
use strata_model::Role;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a server may take to answer after start (InnoDB crash recovery included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a clean shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A server that ran this long before crashing restarts with the shortest backoff again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The branch id; also names the instance directory.
    pub id: String,
    /// `<data>/instances/<id>`.
    pub dir: PathBuf,
    /// The database's schema inside the instance.
    pub schema: String,
    pub production: bool,
    /// Role users get no schema-change privileges (the branch's safe migrations).
    pub safe_migrations: bool,
    /// Preferred loopback port; another free one is chosen if it is taken.
    pub port: u16,
    pub server_id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    Running,
    /// Exited unexpectedly; a restart is scheduled.
    Crashed,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub port: u16,
    /// Restarts after unexpected exits since strata started.
    pub restarts: u32,
    /// Epoch milliseconds of the last time the server became ready.
    pub ready_at: Option<i64>,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
}

pub struct Instance {
    spec: Mutex<InstanceSpec>,
    binaries: Arc<ServerBinaries>,
    creds: Credentials,
    status: watch::Receiver<InstanceStatus>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Stop without a clean shutdown: the instance's data is about to be destroyed.
    abandon: std::sync::atomic::AtomicBool,
    /// The branch's passwords, whose server users the supervisor keeps in step (see
    /// [`Instance::set_password_users`]); `None` until the control plane says.
    password_users: Mutex<Option<Vec<PasswordUser>>>,
    /// One reconciliation of users at a time.
    users_sync: tokio::sync::Mutex<()>,
    /// Wakes the supervisor's user check at once (a password was created or deleted).
    users_changed: tokio::sync::Notify,
    /// Every live password user's grants were asserted since the server last started.
    grants_ready: std::sync::atomic::AtomicBool,
    /// Each password's server user and credential, derived once: the HTTP SQL endpoint asks for
    /// them on every call.
    password_logins: Mutex<HashMap<String, Arc<(String, String)>>>,
}

/// A branch password as its server user needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordUser {
    pub id: String,
    pub role: Role,
    /// Epoch milliseconds after which the password no longer logs in.
    pub expires_at: Option<i64>,
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}
fn client_file(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("client-{user}.cnf"))
}

/// Unix socket path: inside the private instance directory when short enough for `sun_path`,
/// else in a private directory under /tmp named after the instance.
fn socket_path(spec: &InstanceSpec) -> Result<PathBuf> {
    let inside = spec.dir.join("mysqld.sock");
    if inside.as_os_str().len() < 100 {
        return Ok(inside);
    }
    let dir = std::env::temp_dir().join(format!("strata-{}", spec.id));
    create_private_dir(&dir)?;
    Ok(dir.join("mysqld.sock"))
}

/// Creates the instance directory: a datadir cloned from the template, and fresh internal credentials.
pub fn provision(spec: &InstanceSpec, template: &Path) -> Result<()> {
    prepare_instance_dir(spec)?;
    clone_template(template, &data_dir(&spec.dir))
}

/// The datadir of an instance directory.
pub fn datadir_of(spec: &InstanceSpec) -> PathBuf {
    data_dir(&spec.dir)
}

/// Creates an empty instance directory with fresh internal credentials; its datadir is filled
/// separately (from the template, a backup or a snapshot of another instance).
pub fn prepare_instance_dir(spec: &InstanceSpec) -> Result<()> {
    if spec.dir.exists() {
        std::fs::remove_dir_all(&spec.dir).map_err(io_err(&spec.dir))?;
    }
    create_private_dir(&spec.dir)?;
    let creds = Credentials::generate();
    write_private(
        &client_file(&spec.dir, ROOT_USER),
        &config::client_option_file(ROOT_USER, &creds.root, spec.port, &spec.schema),
    )?;
    for role in Role::ALL {
        write_private(
            &client_file(&spec.dir, &role.internal_user()),
            &config::client_option_file(
                &role.internal_user(),
                creds.password(role),
                spec.port,
                &spec.schema,
            ),
        )?;
    }
    Ok(())
}

/// Removes an instance directory (the instance must be stopped).
pub fn destroy(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

fn load_credentials(dir: &Path) -> Result<Credentials> {
    let read = |user: &str| -> Result<String> {
        let path = client_file(dir, user);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        config::parse_client_password(&text)
            .ok_or_else(|| EngineError::Invalid(format!("no password in {}", path.display())))
    };
    let root = read(ROOT_USER)?;
    let mut roles = std::collections::BTreeMap::new();
    for role in Role::ALL {
        roles.insert(role, read(&role.internal_user())?);
    }
    Ok(Credentials { root, roles })
}

fn port_is_free(port: u16) -> bool {
    port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(io_err("127.0.0.1:0"))?.port())
}

/// Picks a free loopback port for a new instance.
pub fn pick_port() -> Result<u16> {
    free_port()
}

fn now_millis() -> i64 {
    strata_model::timefmt::now_millis()
}

impl Instance {
    /// Starts supervising a provisioned instance. Returns at once; see [`Instance::wait_ready`].
    pub fn start(binaries: Arc<ServerBinaries>, spec: InstanceSpec) -> Result<Arc<Instance>> {
        let creds = load_credentials(&spec.dir)?;
        let (status_tx, status_rx) = watch::channel(InstanceStatus {
            state: InstanceState::Starting,
            pid: None,
            port: spec.port,
            restarts: 0,
            ready_at: None,
            last_exit: None,
            last_error: None,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let inst = Arc::new(Instance {
            spec: Mutex::new(spec),
            binaries,
            creds,
            status: status_rx,
            stop: stop_tx,
            task: Mutex::new(None),
            abandon: std::sync::atomic::AtomicBool::new(false),
            password_users: Mutex::new(None),
            users_sync: tokio::sync::Mutex::new(()),
            users_changed: tokio::sync::Notify::new(),
            grants_ready: std::sync::atomic::AtomicBool::new(false),
            password_logins: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(supervise(inst.clone(), status_tx, stop_rx));
        *inst.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(inst)
    }

    pub fn status(&self) -> InstanceStatus {
        self.status.borrow().clone()
    }

    pub fn spec(&self) -> InstanceSpec {
        self.spec.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// Waits until the server answers queries, or fails after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.status.clone();
        let res =
            tokio::time::timeout(timeout, rx.wait_for(|s| s.state == InstanceState::Running)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(EngineError::NotRunning),
            Err(_) => {
                let s = self.status();
                Err(EngineError::NotReady {
                    secs: timeout.as_secs(),
                    detail: s
                        .last_error
                        .or(s.last_exit)
                        .unwrap_or_else(|| format!("{:?}", s.state)),
                })
            }
        }
    }

    /// Kills the server (no clean shutdown, which can take up to a minute while a backup or a long
    /// statement finishes) and ends supervision: for an instance whose data is being destroyed.
    pub async fn discard(&self) {
        self.abandon
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stop().await;
    }

    /// Stops the server cleanly and ends supervision.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Switches between production and development sizing: applied live where the server allows it,
    /// and in the option file from the next start.
    pub async fn set_production(&self, production: bool) -> Result<()> {
        self.spec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .production = production;
        let pool = if production {
            128u64 << 20
        } else {
            32u64 << 20
        };
        let flush = if production { 1 } else { 2 };
        let mut conn = self.connect().await?;
        conn.query_drop(format!("SET GLOBAL innodb_buffer_pool_size = {pool}"))
            .await?;
        conn.query_drop(format!(
            "SET GLOBAL innodb_flush_log_at_trx_commit = {flush}"
        ))
        .await?;
        conn.query_drop(format!("SET GLOBAL sync_binlog = {}", u8::from(production)))
            .await?;
        conn.disconnect().await?;
        Ok(())
    }

    /// Turns safe migrations on or off at the server: the admin role's user loses (or gets back)
    /// its schema-change privileges now, and its start-up grants follow from the next start.
    /// Connections already open keep the privileges they read until they change database again.
    pub async fn set_safe_migrations(&self, on: bool) -> Result<()> {
        let schema = {
            let mut spec = self.spec.lock().unwrap_or_else(|e| e.into_inner());
            spec.safe_migrations = on;
            spec.schema.clone()
        };
        // Schema-change privileges taken from, or given back to, one user.
        let switch = |user: &str| {
            let user = format!("'{user}'@'{}'", config::INTERNAL_HOST);
            let (verb, dir) = if on {
                ("REVOKE", "FROM")
            } else {
                ("GRANT", "TO")
            };
            format!(
                "{verb} {} ON {}.* {dir} {user}",
                strata_model::role::SCHEMA_CHANGES,
                quote_ident(&schema)
            )
        };
        let mut conn = self.connect().await?;
        conn.query_drop(switch(&Role::Admin.internal_user()))
            .await?;
        // The same for the admin passwords' own users.
        let admins: Vec<String> = self
            .password_users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .filter(|p| p.role == Role::Admin)
            .map(|p| config::password_user(&p.id))
            .collect();
        let _one = self.users_sync.lock().await;
        for user in admins {
            // A user not made yet gets its grants when it is.
            if let Err(e) = conn.query_drop(switch(&user)).await {
                tracing::debug!(error = %e, "safe migrations not switched for a password user");
            }
        }
        conn.disconnect().await?;
        Ok(())
    }

    /// Puts back any role user's credential changed on the server (`SET PASSWORD` needs no
    /// privilege for one's own account, so any password could change the credential its role's
    /// clients share, locking them out and learning a login to the instance). Returns the roles
    /// whose credential was restored. MariaDB only: MySQL 8's salted hashes cannot be compared.
    pub async fn restore_credentials(&self) -> Result<Vec<Role>> {
        let mut conn = self.connect().await?;
        let restored = self.restore_credentials_on(&mut conn).await;
        let _ = conn.disconnect().await;
        restored
    }

    async fn restore_credentials_on(&self, conn: &mut mysql_async::Conn) -> Result<Vec<Role>> {
        if !matches!(self.binaries.flavour, crate::flavour::Flavour::MariaDb) {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String)> = conn
            .exec(
                "SELECT User, authentication_string FROM mysql.user WHERE Host = ? AND User LIKE 'strata\\_%'",
                (config::INTERNAL_HOST,),
            )
            .await?;
        let mut restored = Vec::new();
        for role in Role::ALL {
            let user = role.internal_user();
            let want = config::native_hash(self.creds.password(role));
            let changed = rows
                .iter()
                .any(|(u, hash)| *u == user && !hash.eq_ignore_ascii_case(&want));
            if changed {
                conn.query_drop(config::restore_role_password(
                    &self.binaries.flavour,
                    role,
                    self.creds.password(role),
                ))
                .await?;
                restored.push(role);
            }
        }
        Ok(restored)
    }

    /// The branch's passwords now: their users are made, unlocked or locked to match (at once,
    /// then at every check), and the connections of a password gone or expired are ended.
    pub fn set_password_users(&self, users: Vec<PasswordUser>) {
        *self
            .password_users
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(users);
        self.users_changed.notify_one();
    }

    /// The server user and internal credential a branch password's connections log in with.
    pub fn password_login(&self, password_id: &str) -> Arc<(String, String)> {
        let mut known = self
            .password_logins
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(l) = known.get(password_id) {
            return l.clone();
        }
        // Deleted passwords' entries are dropped now and then (a branch has few passwords).
        if known.len() >= 4096 {
            known.clear();
        }
        let login = Arc::new((
            config::password_user(password_id),
            strata_model::credentials::password_user_secret(&self.creds.root, password_id),
        ));
        known.insert(password_id.to_string(), login.clone());
        login
    }

    /// Brings the password users on the server in line with [`Instance::set_password_users`]:
    /// each live password's user exists with its credential and role, unlocked; every other
    /// password user (deleted, expired, or a parent branch's, copied with its data) is locked and
    /// its connections ended. Returns how many users were changed.
    pub async fn sync_password_users(&self) -> Result<usize> {
        let Some(wanted) = self
            .password_users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(0);
        };
        let _one = self.users_sync.lock().await;
        let mut conn = self.connect().await?;
        let result = self.reconcile_users(&mut conn, &wanted).await;
        let _ = conn.disconnect().await;
        result
    }

    async fn reconcile_users(
        &self,
        conn: &mut mysql_async::Conn,
        wanted: &[PasswordUser],
    ) -> Result<usize> {
        let flavour = &self.binaries.flavour;
        let mariadb = matches!(flavour, crate::flavour::Flavour::MariaDb);
        let asserted = self.grants_ready.load(std::sync::atomic::Ordering::Acquire);
        let like = format!("{}%", config::PASSWORD_USER_PREFIX.replace('_', "\\_"));
        // MariaDB keeps the lock in `global_priv`'s JSON (its `mysql.user` view has no column).
        let read = if mariadb {
            "SELECT User, IFNULL(JSON_VALUE(Priv, '$.authentication_string'), ''), IF(IFNULL(JSON_VALUE(Priv, '$.account_locked'), '0') IN ('1', 'true'), 'Y', 'N') FROM mysql.global_priv WHERE Host = ? AND User LIKE ?"
        } else {
            "SELECT User, authentication_string, account_locked FROM mysql.user WHERE Host = ? AND User LIKE ?"
        };
        let present: Vec<(String, String, String)> =
            conn.exec(read, (config::INTERNAL_HOST, &like)).await?;
        let now = now_millis();
        let live: Vec<&PasswordUser> = wanted
            .iter()
            .filter(|p| p.expires_at.is_none_or(|t| t > now))
            .collect();
        let mut changed = 0;
        for p in &live {
            let login = self.password_login(&p.id);
            let (user, secret) = (&login.0, &login.1);
            let whole = present.iter().any(|(u, hash, locked)| {
                *u == *user
                    && asserted
                    && locked.eq_ignore_ascii_case("N")
                    && (!mariadb || hash.eq_ignore_ascii_case(&config::native_hash(secret)))
            });
            if !whole {
                let spec = self.spec();
                for st in config::create_password_user(
                    flavour,
                    &p.id,
                    p.role,
                    secret,
                    &spec.schema,
                    spec.safe_migrations,
                ) {
                    conn.query_drop(st).await?;
                }
                changed += 1;
            }
        }
        if !asserted {
            self.grants_ready
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let mut ended = Vec::new();
        for (user, _, locked) in &present {
            let wanted_live = live.iter().any(|p| config::password_user(&p.id) == *user);
            if wanted_live {
                continue;
            }
            if !locked.eq_ignore_ascii_case("Y") {
                conn.query_drop(config::lock_password_user(user)).await?;
                changed += 1;
            }
            ended.push(user.clone());
        }
        if !ended.is_empty() {
            // Connections made before the lock: ended, so a deleted password stops working now.
            let threads: Vec<(u64, String)> = conn
                .exec(
                    "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE USER LIKE ?",
                    (&like,),
                )
                .await?;
            for (id, user) in threads {
                if ended.contains(&user) {
                    let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
                }
            }
        }
        Ok(changed)
    }

    /// The supervisor's check of the instance's users, on one connection: role users'
    /// credentials put back if changed, password users brought in line.
    async fn check_users(&self, id: &str) {
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(instance = %id, error = %e, "users not checked");
                return;
            }
        };
        match self.restore_credentials_on(&mut conn).await {
            Ok(roles) if !roles.is_empty() => {
                tracing::warn!(instance = %id, ?roles, "a role user's credential was changed on the server; restored")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(instance = %id, error = %e, "credential check skipped"),
        }
        let wanted = self
            .password_users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(wanted) = wanted {
            let _one = self.users_sync.lock().await;
            match self.reconcile_users(&mut conn, &wanted).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(instance = %id, users = n, "password users brought in line")
                }
                Err(e) => tracing::warn!(instance = %id, error = %e, "password users not checked"),
            }
        }
        let _ = conn.disconnect().await;
    }

    /// Connection options for an internal user of this instance.
    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        let port = self.status().port;
        let schema = self.spec().schema;
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some(schema))
            .prefer_socket(false)
            .into()
    }

    /// Connection options for the control plane's user.
    pub fn admin_opts(&self) -> mysql_async::Opts {
        self.opts(ROOT_USER, &self.creds.root)
    }

    /// A connection as the control plane's user.
    pub async fn connect(&self) -> Result<mysql_async::Conn> {
        if self.status().state != InstanceState::Running {
            return Err(EngineError::NotRunning);
        }
        Ok(mysql_async::Conn::new(self.opts(ROOT_USER, &self.creds.root)).await?)
    }

    /// The client option file of one internal user (for `mariadb --defaults-extra-file`).
    pub fn client_file(&self, user: &str) -> PathBuf {
        client_file(&self.spec().dir, user)
    }
}

/// Prepares files for one start: option file, start-up SQL and client files (with the current port).
fn write_start_files(inst: &Instance, spec: &InstanceSpec, port: u16) -> Result<PathBuf> {
    let init = spec.dir.join("init.sql");
    write_private(
        &init,
        &config::init_sql(
            &inst.binaries.flavour,
            &spec.schema,
            &inst.creds,
            spec.safe_migrations,
        ),
    )?;
    let cnf = spec.dir.join("my.cnf");
    let socket = socket_path(spec)?;
    let datadir = data_dir(&spec.dir);
    let pid_file = spec.dir.join("mysqld.pid");
    let log = spec.dir.join("mysqld.log");
    let tmpdir = spec.dir.join("tmp");
    create_private_dir(&tmpdir)?;
    let text = OptionFile {
        flavour: &inst.binaries.flavour,
        datadir: &datadir,
        port,
        socket: &socket,
        pid_file: &pid_file,
        log_error: &log,
        init_file: &init,
        tmpdir: &tmpdir,
        server_id: spec.server_id,
        production: spec.production,
        run_as_root: nix::unistd::Uid::effective().is_root(),
    }
    .render();
    write_private(&cnf, &text)?;
    write_private(
        &client_file(&spec.dir, ROOT_USER),
        &config::client_option_file(ROOT_USER, &inst.creds.root, port, &spec.schema),
    )?;
    for role in Role::ALL {
        let user = role.internal_user();
        write_private(
            &client_file(&spec.dir, &user),
            &config::client_option_file(&user, inst.creds.password(role), port, &spec.schema),
        )?;
    }
    Ok(cnf)
}

/// A server left running by an earlier strata that died (it gets SIGTERM from the kernel then, but may
/// still be shutting down) holds the datadir's lock: wait for it to go, then make sure.
async fn clear_stale_server(spec: &InstanceSpec, cnf: &Path) {
    let Some(pid) = leftover_server(&spec.dir, cnf) else {
        return;
    };
    tracing::warn!(instance = %spec.id, pid = pid.as_raw(), "stopping a server left over from an earlier run");
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = StdInstant::now() + STOP_TIMEOUT;
    while kill(pid, None).is_ok() && StdInstant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if kill(pid, None).is_ok() {
        let _ = kill(pid, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server an earlier run started in instance directory `dir` with option file `cnf`, if it
/// still runs (its pid file names a process started with that option file).
fn leftover_server(dir: &Path, cnf: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(dir.join("mysqld.pid")).ok()?;
    let pid = text.trim().parse::<i32>().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline)
        .contains(&cnf.display().to_string())
        .then(|| Pid::from_raw(pid))
}

/// Kills (SIGKILL) a server left running in instance directory `dir` by an earlier run, for
/// scratch instances whose data is thrown away. True when there was one.
pub fn kill_leftover_server(dir: &Path) -> bool {
    match leftover_server(dir, &dir.join("my.cnf")) {
        Some(pid) => {
            tracing::warn!(pid = pid.as_raw(), dir = %dir.display(), "killing a server left by an earlier run");
            let _ = kill(pid, Signal::SIGKILL);
            true
        }
        None => false,
    }
}

fn spawn_server(binaries: &ServerBinaries, cnf: &Path) -> Result<Child> {
    let mut cmd = Command::new(&binaries.server);
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    // SIGKILL, not a graceful shutdown: a shutdown stops the statements in flight, and one that
    // stops a multi-table RENAME of tables with triggers half-way has the server undo it in the
    // killed session, where re-reading the triggers fails and leaves a table's trigger file empty
    // (MariaDB 10.11; every later statement on the table then fails with 1343). After SIGKILL the
    // next start replays the DDL log in a fresh session and InnoDB recovers as from any crash: a
    // process kill loses no committed write (the log is in the page cache).
    crate::die_with_parent(&mut cmd, Signal::SIGKILL);
    cmd.spawn().map_err(|source| EngineError::Spawn {
        program: binaries.server.display().to_string(),
        source,
    })
}

async fn ping(opts: mysql_async::Opts) -> std::result::Result<(), mysql_async::Error> {
    let mut c = mysql_async::Conn::new(opts).await?;
    c.query_drop("SELECT 1").await?;
    c.disconnect().await
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "exited".to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

/// Ends the server as the stop asked: cleanly, or at once for a discarded instance.
async fn end(inst: &Instance, child: &mut Child) {
    if inst.abandon.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = child.kill().await;
    } else {
        terminate(child).await;
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn supervise(
    inst: Arc<Instance>,
    status: watch::Sender<InstanceStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if *stop.borrow() {
            break;
        }
        let spec = inst.spec();
        let port = if port_is_free(spec.port) {
            spec.port
        } else {
            match free_port() {
                Ok(p) => p,
                Err(e) => {
                    status.send_modify(|s| s.last_error = Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        };
        let cnf = match write_start_files(&inst, &spec, port) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(instance = %spec.id, error = %e, "cannot prepare instance files");
                status.send_modify(|s| s.last_error = Some(e.to_string()));
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        clear_stale_server(&spec, &cnf).await;
        let mut child = match spawn_server(&inst.binaries, &cnf) {
            Ok(c) => c,
            Err(e) => {
                status.send_modify(|s| s.last_error = Some(e.to_string()));
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = child.id();
        status.send_modify(|s| {
            s.state = InstanceState::Starting;
            s.pid = pid;
            s.port = port;
        });
        let opts = inst.opts(ROOT_USER, &inst.creds.root);
        let started = StdInstant::now();

        // Wait until it answers, it exits, or we are told to stop.
        let ready = async {
            let deadline = StdInstant::now() + READY_TIMEOUT;
            loop {
                match ping(opts.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if StdInstant::now() >= deadline => return Err(e.to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        };
        enum Event {
            Ready(std::result::Result<(), String>),
            Exited(String),
            Stop,
        }
        let event = tokio::select! {
            r = ready => Event::Ready(r),
            exit = child.wait() => Event::Exited(describe_exit(exit)),
            _ = stop.wait_for(|v| *v) => Event::Stop,
        };
        match event {
            Event::Ready(Ok(())) => {
                tracing::info!(instance = %spec.id, port, ms = started.elapsed().as_millis() as u64, "instance ready");
                inst.grants_ready
                    .store(false, std::sync::atomic::Ordering::Release);
                status.send_modify(|s| {
                    s.state = InstanceState::Running;
                    s.ready_at = Some(now_millis());
                    s.last_error = None;
                });
                // The roles and password users, before clients are let in (and at every check).
                inst.check_users(&spec.id).await;
                let event = loop {
                    tokio::select! {
                        exit = child.wait() => break Event::Exited(describe_exit(exit)),
                        // The guard `wait_for` returns is not `Send`: not kept across the check's awaits.
                        _ = async { let _ = stop.wait_for(|v| *v).await; } => break Event::Stop,
                        _ = tokio::time::sleep(CREDENTIALS_CHECK) => inst.check_users(&spec.id).await,
                        _ = inst.users_changed.notified() => inst.check_users(&spec.id).await,
                    }
                };
                match event {
                    Event::Exited(what) => {
                        tracing::error!(instance = %spec.id, "server {what}; restarting it");
                        if started.elapsed() > HEALTHY_RUN {
                            backoff = BACKOFF_FIRST;
                        }
                        status.send_modify(|s| {
                            s.state = InstanceState::Crashed;
                            s.pid = None;
                            s.last_exit = Some(what);
                        });
                    }
                    _ => {
                        status.send_modify(|s| s.state = InstanceState::Stopping);
                        end(&inst, &mut child).await;
                        break;
                    }
                }
            }
            Event::Ready(Err(e)) => {
                tracing::error!(instance = %spec.id, error = %e, "instance did not become ready; restarting it");
                status.send_modify(|s| {
                    s.state = InstanceState::Crashed;
                    s.last_error = Some(format!("not ready: {e}"));
                });
                terminate(&mut child).await;
            }
            Event::Exited(what) => {
                tracing::error!(instance = %spec.id, "server {what} while starting");
                status.send_modify(|s| {
                    s.state = InstanceState::Crashed;
                    s.pid = None;
                    s.last_exit = Some(what);
                });
            }
            Event::Stop => {
                status.send_modify(|s| s.state = InstanceState::Stopping);
                end(&inst, &mut child).await;
                break;
            }
        }
        status.send_modify(|s| s.restarts += 1);
        if sleep_or_stop(&mut stop, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    status.send_modify(|s| {
        s.state = InstanceState::Stopped;
        s.pid = None;
    });
}

/// How often a running instance's role credentials are checked (see [`Instance::restore_credentials`]).
const CREDENTIALS_CHECK: Duration = Duration::from_secs(2);

/// Sleeps for `d`; true if a stop was requested meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|v| *v) => true,
    };
    stopped || *stop.borrow()
}
