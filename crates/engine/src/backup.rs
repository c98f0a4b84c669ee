//! Physical backups of an instance, their restore, and consistent snapshots for data branches.
//!
//! - A **backup** is `mariadb-backup --backup` (hot, non-blocking for InnoDB; DDL and commits are
//!   held only for the moment its consistency point is taken), then `--prepare`, so the stored
//!   directory is a datadir a server opens as it is. Alongside, the per-table row counts *at the
//!   backup's point* are recorded: counted in a consistent-snapshot transaction opened just before
//!   the copy, then carried forward by the row events of the binary log between that snapshot's
//!   position and the backup's (see [`text::row_delta`]). A restore that opens and shows other counts
//!   is a bad backup.
//! - A **restore** clones the stored directory into a new instance's datadir: reflinks where the file
//!   system shares blocks (XFS, btrfs), a plain copy otherwise.
//! - A **snapshot** of a running instance for a data branch: under `BACKUP STAGE BLOCK_DDL` (writes go
//!   on), every data file is reflinked; then, under `BLOCK_COMMIT` for the milliseconds it takes,
//!   the redo, Aria and binary logs; the copy is crash-consistent, and InnoDB's
//!   recovery makes it consistent, when no checkpoint newer than the one read before the first file
//!   was taken is in the copied log (checked in the copy's own header; else it retries). Where
//!   reflinks are not available the snapshot is a `mariadb-backup` copy instead.

use crate::fsutil::dir_size;
use crate::{io_err, EngineError, Instance, Result};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_model::role::quote_ident;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

pub mod store;
pub mod text;

pub use store::{BackupStore, S3Settings};

/// Written into every backup directory; also kept in the catalog.
pub const MANIFEST: &str = "strata-backup.json";

/// What a backup holds, recorded when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub server_version: String,
    pub schema: String,
    /// Rows per base table of `schema` at the backup point; `None` when they could not be fixed to
    /// that point (a schema change ran while the backup was taken; see `counts_note`).
    pub tables: Option<BTreeMap<String, i64>>,
    pub counts_note: Option<String>,
    /// Tables present but deliberately not counted (see `counts_note`).
    #[serde(default)]
    pub uncounted: Vec<String>,
    /// The binary log position (and GTID) of the backup point.
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
    /// Bytes of the stored directory.
    pub bytes: u64,
}

/// Where a running backup is: `phase` is `counting`, `copying` or `preparing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    pub copied_bytes: u64,
    pub total_bytes: u64,
}

/// The external tools backups use (Debian's `mariadb-backup` package and the server's client tools).
#[derive(Debug, Clone)]
pub struct BackupTools {
    pub backup: PathBuf,
    pub binlog: PathBuf,
}

fn find(names: &[&str], usual: &[&str]) -> Option<PathBuf> {
    use crate::flavour::{first_existing, in_path};
    names
        .iter()
        .find_map(|n| in_path(n))
        .or_else(|| first_existing(usual))
}

impl BackupTools {
    pub fn detect() -> Result<Self> {
        let backup = find(
            &["mariadb-backup", "mariabackup"],
            &["/usr/bin/mariadb-backup", "/usr/bin/mariabackup"],
        )
        .ok_or_else(|| {
            EngineError::Invalid(
                "mariadb-backup is not installed (Debian package mariadb-backup)".into(),
            )
        })?;
        let binlog = find(
            &["mariadb-binlog", "mysqlbinlog"],
            &["/usr/bin/mariadb-binlog", "/usr/bin/mysqlbinlog"],
        )
        .ok_or_else(|| {
            EngineError::Invalid("mariadb-binlog is not installed (mariadb-client)".into())
        })?;
        Ok(BackupTools { backup, binlog })
    }
}

async fn run(program: &Path, args: &[String]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // A tool must not outlive strata: after a crash the job is redone into the same directory.
    crate::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let out = cmd.output().await.map_err(|source| EngineError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // The tool's last lines say why; its full log is long.
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(EngineError::Command {
            program: program.display().to_string(),
            status: out.status.to_string(),
            output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private option file for `mariadb-backup` (the password stays off the command line).
fn tool_options(inst: &Instance, at: &Path) -> Result<PathBuf> {
    let status = inst.status();
    let spec = inst.spec();
    let text = format!(
        "[mariadb-backup]\nuser={}\npassword={}\nhost=127.0.0.1\nport={}\ndatadir={}\n",
        crate::config::ROOT_USER,
        inst.credentials().root,
        status.port,
        crate::supervisor::datadir_of(&spec).display()
    );
    crate::fsutil::write_private(at, &text)?;
    Ok(at.to_path_buf())
}

/// `mariadb-backup --backup` of `inst` into `target` (which must not exist), then `--prepare`.
/// `progress` is called about twice a second while files are copied.
async fn physical_copy(
    tools: &BackupTools,
    inst: &Instance,
    target: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| EngineError::Invalid(format!("bad target {}", target.display())))?;
    crate::fsutil::create_private_dir(parent)?;
    let options = tool_options(
        inst,
        &parent.join(format!(
            "{}.cnf",
            target.file_name().unwrap_or_default().to_string_lossy()
        )),
    )?;
    let datadir = crate::supervisor::datadir_of(&inst.spec());
    let total = {
        let d = datadir.clone();
        tokio::task::spawn_blocking(move || data_bytes(&d))
            .await
            .unwrap_or(0)
    };
    let args = vec![
        format!("--defaults-file={}", options.display()),
        "--backup".into(),
        format!("--target-dir={}", target.display()),
    ];
    let t = std::time::Instant::now();
    let backup = run(&tools.backup, &args);
    tokio::pin!(backup);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            r = &mut backup => break r,
            _ = tick.tick() => {
                let t = target.to_path_buf();
                let copied = tokio::task::spawn_blocking(move || dir_size(&t)).await.unwrap_or(0);
                progress(Progress { phase: "copying".into(), copied_bytes: copied, total_bytes: total.max(copied) });
            }
        }
    };
    let _ = std::fs::remove_file(&options);
    outcome?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "backup: files copied");
    progress(Progress {
        phase: "preparing".into(),
        copied_bytes: total,
        total_bytes: total,
    });
    run(
        &tools.backup,
        &[
            "--prepare".into(),
            format!("--target-dir={}", target.display()),
        ],
    )
    .await?;
    Ok(())
}

/// Bytes of a datadir that a backup copies (binary logs are not part of it).
fn data_bytes(datadir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(datadir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| !text::skipped_in_snapshot(&e.file_name().to_string_lossy()))
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

async fn base_tables(conn: &mut mysql_async::Conn, schema: &str) -> Result<Vec<String>> {
    Ok(conn
        .exec(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? \
             AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        )
        .await?)
}

/// Exact row counts of every base table of `schema`.
pub async fn count_rows(
    conn: &mut mysql_async::Conn,
    schema: &str,
) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for t in base_tables(conn, schema).await? {
        let n: Option<i64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(&t)
            ))
            .await?;
        out.insert(t, n.unwrap_or(0));
    }
    Ok(out)
}

/// `CHECK TABLE` of every base table of `schema` (every page of every index read and its checksum
/// verified): the first complaint, if any.
pub async fn check_tables(conn: &mut mysql_async::Conn, schema: &str) -> Result<Option<String>> {
    for t in base_tables(conn, schema).await? {
        let rows: Vec<(String, String, String, String)> = conn
            .query(format!(
                "CHECK TABLE {}.{}",
                quote_ident(schema),
                quote_ident(&t)
            ))
            .await?;
        for (_, _, kind, text) in rows {
            let bad = kind.eq_ignore_ascii_case("error")
                || (kind.eq_ignore_ascii_case("status") && !text.eq_ignore_ascii_case("OK"));
            if bad {
                return Ok(Some(format!("CHECK TABLE `{t}`: {text}")));
            }
        }
    }
    Ok(None)
}

/// Takes a backup of `inst` into `target` (a new directory) and returns what it holds. On error the
/// caller removes `target`.
pub async fn take_backup(
    tools: &BackupTools,
    inst: &Instance,
    server_version: &str,
    target: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Manifest> {
    let schema = inst.spec().schema;
    progress(Progress {
        phase: "counting".into(),
        ..Progress::default()
    });
    // Counts at a snapshot whose binary log position is known, taken before the copy starts.
    let mut conn = inst.connect().await?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await?;
    let status: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await?;
    let snapshot = text::snapshot_position(&status);
    // Counted inside that snapshot while the copy runs (it sees nothing newer, whatever happens).
    let t = std::time::Instant::now();
    let counting = async {
        let counts = count_rows(&mut conn, &schema).await?;
        // Rows removed by ON DELETE CASCADE are not row events in the binary log.
        let cascaded: Vec<String> = conn
            .exec(
                "SELECT DISTINCT table_name FROM information_schema.referential_constraints \
                 WHERE constraint_schema = ? AND delete_rule = 'CASCADE'",
                (&schema,),
            )
            .await?;
        conn.query_drop("COMMIT").await?;
        let _ = conn.disconnect().await;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "backup: rows counted");
        Ok::<_, EngineError>((counts, cascaded))
    };
    let (counted, copied) = tokio::join!(counting, physical_copy(tools, inst, target, progress));
    copied?;
    let copied_at = t.elapsed();

    let info = ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"]
        .iter()
        .find_map(|f| std::fs::read_to_string(target.join(f)).ok())
        .and_then(|t| text::parse_binlog_info(&t));
    let datadir = crate::supervisor::datadir_of(&inst.spec());
    // A failed count costs the counts, not the backup.
    let mut uncounted = Vec::new();
    let (tables, counts_note) = match (counted, &snapshot, &info) {
        (Err(e), _, _) => (None, Some(format!("row counts not recorded: {e}"))),
        (Ok((counts, cascaded)), Some(from), Some(to)) => {
            match binlog_delta(tools, &datadir, &schema, from, &(to.0.clone(), to.1)).await {
                Ok(delta) if delta.ddl.is_empty() && (delta.tables.is_empty() || cascaded.is_empty()) => {
                    (Some(delta.apply(counts)), None)
                }
                Ok(delta) if delta.ddl.is_empty() => {
                    let mut counts = delta.apply(counts);
                    for t in &cascaded {
                        counts.remove(t);
                    }
                    uncounted = cascaded.clone();
                    let note = format!(
                        "not counted: {} (rows removed by ON DELETE CASCADE while the backup was taken are not in the binary log)",
                        cascaded.join(", ")
                    );
                    (Some(counts), Some(note))
                }
                Ok(delta) => (
                    None,
                    Some(format!(
                        "row counts not recorded: the schema changed while the backup was taken ({})",
                        delta.ddl.join("; ")
                    )),
                ),
                Err(e) => (None, Some(format!("row counts not recorded: {e}"))),
            }
        }
        (Ok(_), _, _) => (
            None,
            Some("row counts not recorded: the binary log position is unknown".into()),
        ),
    };
    tracing::info!(
        copy_ms = copied_at.as_millis() as u64,
        counts_ms = (t.elapsed() - copied_at).as_millis() as u64,
        "backup taken"
    );
    let bytes = {
        let t = target.to_path_buf();
        tokio::task::spawn_blocking(move || dir_size(&t))
            .await
            .unwrap_or(0)
    };
    let manifest = Manifest {
        format: 1,
        server_version: server_version.to_string(),
        schema,
        tables,
        counts_note,
        uncounted,
        binlog_file: info.as_ref().map(|i| i.0.clone()),
        binlog_position: info.as_ref().map(|i| i.1),
        gtid: info.and_then(|i| i.2),
        bytes,
    };
    let json =
        serde_json::to_string_pretty(&manifest).map_err(|e| EngineError::Invalid(e.to_string()))?;
    std::fs::write(target.join(MANIFEST), json).map_err(io_err(target))?;
    Ok(manifest)
}

/// Rows added and removed per table between two binary log positions of `datadir`'s logs.
async fn binlog_delta(
    tools: &BackupTools,
    datadir: &Path,
    schema: &str,
    from: &(String, u64),
    to: &(String, u64),
) -> Result<text::RowDelta> {
    if from == to {
        return Ok(text::RowDelta::default());
    }
    let index = std::fs::read_to_string(datadir.join("binlog.index")).map_err(io_err(datadir))?;
    let files = text::binlog_files_between(&index, &from.0, &to.0).ok_or_else(|| {
        EngineError::Invalid(format!(
            "binary logs {} .. {} are not all present",
            from.0, to.0
        ))
    })?;
    let mut args = vec![
        "--no-defaults".to_string(),
        "--base64-output=DECODE-ROWS".into(),
        "--verbose".into(),
        format!("--start-position={}", from.1),
        format!("--stop-position={}", to.1),
    ];
    args.extend(files.iter().map(|f| datadir.join(f).display().to_string()));
    // Streamed: the decoded stretch of a busy server's log can be far larger than memory.
    let mut cmd = Command::new(&tools.binlog);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    crate::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let mut child = cmd.spawn().map_err(|source| EngineError::Spawn {
        program: tools.binlog.display().to_string(),
        source,
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::Invalid("no output from mariadb-binlog".into()))?;
    let mut reader = text::RowDeltaReader::new(schema);
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| EngineError::Invalid(format!("reading mariadb-binlog: {e}")))?
    {
        reader.line(&line);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| EngineError::Spawn {
            program: tools.binlog.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(EngineError::Command {
            program: tools.binlog.display().to_string(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(reader.finish())
}

/// The outcome of restoring a backup on a scratch instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    Passed,
    Failed(String),
}

/// Row counts seen after a restore compared with those recorded: the first difference, if any.
pub fn compare_counts(
    recorded: &BTreeMap<String, i64>,
    seen: &BTreeMap<String, i64>,
    uncounted: &[String],
) -> Option<String> {
    for (t, n) in recorded {
        match seen.get(t) {
            None => return Some(format!("table `{t}` is missing after restore")),
            Some(m) if m != n => {
                return Some(format!(
                    "table `{t}` has {m} rows after restore, {n} at backup time"
                ))
            }
            _ => {}
        }
    }
    seen.keys()
        .find(|t| !recorded.contains_key(*t) && !uncounted.contains(t))
        .map(|t| format!("table `{t}` appears after restore but was not in the backup"))
}

/// Fills `datadir` (which must not exist) from a stored backup directory: reflinks where the file
/// system allows, else a copy. Returns true when every file was reflinked.
pub fn restore_into(backup: &Path, datadir: &Path) -> Result<bool> {
    let tmp = datadir.with_extension("copying");
    let _ = std::fs::remove_dir_all(&tmp);
    let all_reflinked = crate::fsutil::clone_dir(backup, &tmp, &text::backup_metadata)?;
    std::fs::rename(&tmp, datadir).map_err(io_err(datadir))?;
    Ok(all_reflinked)
}

/// How a data branch's snapshot was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// Reflinked files of the running instance (copy-on-write; no data copied).
    Reflink,
    /// A `mariadb-backup` copy (the file system cannot share blocks).
    Copy,
}

/// Makes `datadir` (which must not exist) a consistent copy of `inst`'s data as of now, without
/// stopping it or blocking its writes.
pub async fn snapshot_into(
    tools: &BackupTools,
    inst: &Instance,
    datadir: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<SnapshotMethod> {
    let tmp = datadir.with_extension("copying");
    let _ = std::fs::remove_dir_all(&tmp);
    match reflink_snapshot(inst, &tmp).await {
        Ok(()) => {
            std::fs::rename(&tmp, datadir).map_err(io_err(datadir))?;
            return Ok(SnapshotMethod::Reflink);
        }
        Err(e) => {
            tracing::info!(error = %e, "no copy-on-write snapshot; copying with mariadb-backup");
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    physical_copy(tools, inst, &tmp, progress).await?;
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            if text::backup_metadata(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    std::fs::rename(&tmp, datadir).map_err(io_err(datadir))?;
    Ok(SnapshotMethod::Copy)
}

const SNAPSHOT_ATTEMPTS: usize = 8;

async fn reflink_snapshot(inst: &Instance, dest: &Path) -> Result<()> {
    let source = crate::supervisor::datadir_of(&inst.spec());
    let mut conn = inst.connect().await?;
    // A fresh binary log file, so the copy's last file is short (its recovery scans it).
    conn.query_drop("FLUSH BINARY LOGS").await?;
    let mut outcome = Err(EngineError::Invalid(format!(
        "checkpoints kept running during {SNAPSHOT_ATTEMPTS} snapshot attempts"
    )));
    for attempt in 1..=SNAPSHOT_ATTEMPTS {
        let _ = std::fs::remove_dir_all(dest);
        let taken = snapshot_attempt(&mut conn, &source, dest).await;
        // Always leave the backup stages, whatever happened.
        let _ = conn.query_drop("BACKUP STAGE END").await;
        match taken {
            Ok((before, Some(c))) if c <= before => {
                outcome = Ok(());
                break;
            }
            Ok((before, Some(c))) => {
                tracing::debug!(
                    attempt,
                    before,
                    after = c,
                    "a checkpoint ran during the snapshot; again"
                );
            }
            Ok((_, None)) => {
                outcome = Err(EngineError::Invalid(
                    "unrecognised redo log format; cannot check the snapshot".into(),
                ));
                break;
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    let _ = conn.disconnect().await;
    outcome
}

/// One try: returns the checkpoint LSN read before the first file and the one in the copied log.
async fn snapshot_attempt(
    conn: &mut mysql_async::Conn,
    source: &Path,
    dest: &Path,
) -> Result<(u64, Option<u64>)> {
    conn.query_drop("BACKUP STAGE START").await?;
    conn.query_drop("BACKUP STAGE FLUSH").await?;
    // From here DDL waits (every table's files and definition agree); InnoDB reads and writes go on.
    conn.query_drop("BACKUP STAGE BLOCK_DDL").await?;
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_last_checkpoint'")
        .await?;
    let before = row
        .map(|r| r.1)
        .ok_or_else(|| EngineError::Invalid("no Innodb_lsn_last_checkpoint".into()))?;
    let (src, dst) = (source.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || reflink_datadir(&src, &dst, false))
        .await
        .map_err(|e| EngineError::Invalid(e.to_string()))??;
    // Commits wait for the few milliseconds the logs take, so the redo log, the binary log and the
    // Aria logs are copied at one point: no transaction is in one and not the other.
    conn.query_drop("BACKUP STAGE BLOCK_COMMIT").await?;
    let (src, dst) = (source.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || reflink_datadir(&src, &dst, true))
        .await
        .map_err(|e| EngineError::Invalid(e.to_string()))??;
    conn.query_drop("BACKUP STAGE END").await?;
    let header = read_prefix(&dest.join("ib_logfile0"), 12288)?;
    Ok((before, text::redo_checkpoint(&header)))
}

fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = f.read(&mut buf[got..]).map_err(io_err(path))?;
        if k == 0 {
            break;
        }
        got += k;
    }
    buf.truncate(got);
    Ok(buf)
}

/// Reflinks the data files of `source` into `dest` (`logs` false), or the logs (`logs` true: the
/// InnoDB redo log, the Aria logs, the binary log and its index). Fails (rather than copy) on a file
/// system that cannot share blocks.
fn reflink_datadir(source: &Path, dest: &Path, logs: bool) -> Result<()> {
    crate::fsutil::create_private_dir(dest)?;
    for entry in std::fs::read_dir(source).map_err(io_err(source))? {
        let entry = entry.map_err(io_err(source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_log = text::snapshot_log_file(&name);
        if text::skipped_in_snapshot(&name) && !is_log {
            continue;
        }
        if is_log != logs {
            continue;
        }
        let kind = entry.file_type().map_err(io_err(entry.path()))?;
        let to = dest.join(&name);
        if kind.is_dir() {
            crate::fsutil::create_private_dir(&to)?;
            // `#sql-…` files of a table being rebuilt are copied too: the redo log may refer to
            // them, and the server's DDL recovery finishes or removes them at the first start.
            for f in std::fs::read_dir(entry.path()).map_err(io_err(entry.path()))? {
                let f = f.map_err(io_err(entry.path()))?;
                if !f.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    continue;
                }
                reflink_copy::reflink(f.path(), to.join(f.file_name()))
                    .map_err(io_err(f.path()))?;
            }
        } else if kind.is_file() {
            reflink_copy::reflink(entry.path(), &to).map_err(io_err(entry.path()))?;
        }
    }
    if logs && !dest.join("ib_logfile0").is_file() {
        return Err(EngineError::Invalid("no ib_logfile0 in the datadir".into()));
    }
    Ok(())
}

/// How long a restored scratch instance may take to open (InnoDB recovery included).
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Restores backup `id` from `store` on a scratch instance (`scratch` names its directory and port, removed
/// afterwards) and checks that it opens and that its row counts are those `manifest` recorded.
/// `started` is told of the scratch instance as soon as it runs, so that a caller shutting down can
/// stop it.
pub async fn validate(
    binaries: std::sync::Arc<crate::ServerBinaries>,
    store: &BackupStore,
    id: &str,
    scratch: crate::supervisor::InstanceSpec,
    manifest: &Manifest,
    started: &(dyn Fn(std::sync::Arc<Instance>) + Send + Sync),
) -> Validation {
    let opened = async {
        crate::supervisor::prepare_instance_dir(&scratch)?;
        store
            .fetch_into(id, &crate::supervisor::datadir_of(&scratch), &|_| {})
            .await?;
        let inst = Instance::start(binaries, scratch.clone())?;
        started(inst.clone());
        let seen = async {
            inst.wait_ready(VALIDATE_TIMEOUT).await?;
            let mut c = inst.connect().await?;
            if let Some(bad) = check_tables(&mut c, &manifest.schema).await? {
                return Err(EngineError::Invalid(bad));
            }
            let seen = count_rows(&mut c, &manifest.schema).await?;
            let _ = c.disconnect().await;
            Ok::<_, EngineError>(seen)
        }
        .await;
        inst.stop().await;
        seen
    }
    .await;
    let dir = scratch.dir.clone();
    let _ = tokio::task::spawn_blocking(move || crate::supervisor::destroy(&dir)).await;
    match opened {
        Err(e) => Validation::Failed(format!("restore check failed: {e}")),
        Ok(seen) => match &manifest.tables {
            Some(recorded) => compare_counts(recorded, &seen, &manifest.uncounted)
                .map_or(Validation::Passed, Validation::Failed),
            None => Validation::Passed,
        },
    }
}
