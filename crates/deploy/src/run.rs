//! Carrying a plan out against the target branch's instance. Each function is one phase and is safe
//! to run again after a crash: what the server already holds decides what is left to do.

use crate::plan::{Mark, OnlineAlter, Plan, Step};
use crate::sql;
use crate::DeployError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_engine::mysql_async::prelude::Queryable;
use strata_engine::mysql_async::{Conn, Row, Value};
use strata_model::role::{quote_ident as q, sql_string};

type Result<T> = std::result::Result<T, DeployError>;

/// Loads the BLACKHOLE engine (placeholders) when the server does not have it yet.
pub async fn ensure_blackhole(conn: &mut Conn) -> Result<()> {
    let have: Option<String> = conn
        .query_first("SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'BLACKHOLE'")
        .await?;
    if !matches!(have.as_deref(), Some("YES" | "DEFAULT")) {
        conn.query_drop("INSTALL SONAME 'ha_blackhole'").await?;
    }
    Ok(())
}

/// Runs a DDL statement that needs an exclusive metadata lock, taking its locks only when they are
/// free (`lock_wait_timeout=0`, tried every 2 ms for `timeout × attempts`), never queueing for
/// them: a queued DDL stalls every writer behind it, and a transaction that read the table and
/// then writes it would wait for the DDL, which waits for that transaction, and MariaDB's
/// metadata-lock deadlock detector ends the application's transaction (1213), never the DDL.
/// Past that time it gives up (`LockTimeout`, a passing condition: the deployment's step is tried
/// again later; a revert asks to be retried), without having interrupted anyone, unless the step
/// is forced ([`crate::force`]): then, past a short grace, it ends the connections holding the
/// deployment's tables, and takes its locks as they go. While it tries,
/// the branch's gate (see [`crate::gate`]) holds new transactions at the front doors for a moment
/// now and then, so that the ones under way can leave the table free. Returns how long writers
/// were held: the statement itself, and the gate's closing before it.
///
/// (`lock_wait_timeout` also bounds only the wait for locks, never the work once they are held: a
/// `max_statement_time` can end a RENAME in the middle, and MariaDB 10.11 then undoes a RENAME of a
/// table with triggers leaving its trigger file empty.)
pub async fn ddl_with_timeout(
    conn: &mut Conn,
    statement: &str,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let unqueued = format!("SET STATEMENT lock_wait_timeout=0 FOR {statement}");
    // Often: under busy autocommit writers the table is free only between their statements.
    let until = Instant::now() + timeout * attempts.max(1);
    let gate = crate::gate::BRANCH_GATE.try_with(Arc::clone).ok();
    let force = crate::force::FORCE.try_with(Arc::clone).ok();
    let mut closings = crate::gate::Closings::default();
    let mut busy_since: Option<Instant> = None;
    let mut last_forced: Option<Instant> = None;
    loop {
        let started = Instant::now();
        // Under `gate::ALONE`: nothing of the application runs while the DDL does.
        let alone = match crate::gate::alone().await {
            Ok(a) => a,
            Err(()) if Instant::now() < until => {
                force_alone(conn, &mut busy_since, &mut last_forced, &[]).await?;
                tokio::time::sleep(crate::gate::ALONE_REST).await;
                continue;
            }
            Err(()) => {
                return Err(DeployError::LockTimeout {
                    tables: application_tables(statement),
                    detail: "statements kept running on the branch the whole time".into(),
                })
            }
        };
        let result = conn.query_drop(unqueued.as_str()).await;
        if alone.is_some() && result.is_err() {
            drop(alone);
            // The transactions under way go on a moment before the next try.
            tokio::time::sleep(crate::gate::ALONE_REST).await;
        }
        match result {
            Ok(()) => {
                tracing::debug!(
                    statement,
                    ms = started.elapsed().as_millis() as u64,
                    "ddl done"
                );
                return Ok(closings.held().max(started.elapsed()));
            }
            Err(e) if lock_timeout(&e) && Instant::now() < until => {
                closings.busy(gate.as_ref());
                if let Some(f) = &force {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= crate::force::FORCE_GRACE
                        && last_forced.is_none_or(|t| t.elapsed() >= crate::force::FORCE_GRACE)
                    {
                        last_forced = Some(Instant::now());
                        if f.armed() {
                            crate::force::end_holders(conn, f, gate.as_ref()).await?;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) if lock_timeout(&e) => {
                tracing::debug!(statement, "locks not free in time");
                return Err(DeployError::LockTimeout {
                    tables: application_tables(statement),
                    detail: if force.is_some_and(|f| f.ended() > 0) {
                        "transactions kept them busy the whole time".into()
                    } else {
                        "transactions kept them busy the whole time; none was interrupted".into()
                    },
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Under `gate::ALONE`, a step forced ([`crate::force`]) that finds statements running or its
/// tables held: past the force's grace, it ends the holders of the deployment's tables and of
/// `more` (the tables joined to them by foreign keys), as a forced DDL does. Without it a
/// step alone could not be forced: a revert, or a preparation, waited for as long as the
/// application kept those tables busy, whatever the force.
async fn force_alone(
    conn: &mut Conn,
    held_since: &mut Option<Instant>,
    last: &mut Option<Instant>,
    more: &[String],
) -> Result<()> {
    let Ok(force) = crate::force::FORCE.try_with(Arc::clone) else {
        return Ok(());
    };
    let gate = crate::gate::BRANCH_GATE.try_with(Arc::clone).ok();
    let since = *held_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= crate::force::FORCE_GRACE
        && last.is_none_or(|t| t.elapsed() >= crate::force::FORCE_GRACE)
    {
        *last = Some(Instant::now());
        if force.armed() {
            crate::force::end_holders_of(conn, &force, gate.as_ref(), more).await?;
        }
    }
    Ok(())
}

/// Takes `LOCK TABLES` (see [`ddl_with_timeout`]); under `gate::ALONE`, with the gate closed to
/// every statement and nothing running, kept closed (the returned closing) for what the caller
/// does under the lock: each try takes the lock at once or opens the gate again for a moment, as
/// a transaction under way may hold a table and must be let through to finish.
async fn locked_alone(
    conn: &mut Conn,
    lock: &str,
    timeout: Duration,
    attempts: u32,
) -> Result<(Option<crate::gate::ClosedAll>, Duration)> {
    let until = Instant::now() + timeout * attempts.max(1);
    let started = Instant::now();
    let (mut held_since, mut last_forced) = (None, None);
    loop {
        let alone = match crate::gate::alone().await {
            Ok(a) => a,
            Err(()) if Instant::now() < until => {
                force_alone(conn, &mut held_since, &mut last_forced, &[]).await?;
                tokio::time::sleep(crate::gate::ALONE_REST).await;
                continue;
            }
            Err(()) => {
                return Err(DeployError::LockTimeout {
                    tables: application_tables(lock),
                    detail: "statements kept running on the branch the whole time".into(),
                })
            }
        };
        if alone.is_none() {
            let stall = ddl_with_timeout(conn, lock, timeout, attempts).await?;
            return Ok((None, stall));
        }
        match ddl_with_timeout(conn, lock, Duration::from_millis(1), 1).await {
            Ok(_) => return Ok((alone, started.elapsed())),
            Err(DeployError::LockTimeout { .. }) if Instant::now() < until => {
                drop(alone);
                force_alone(conn, &mut held_since, &mut last_forced, &[]).await?;
                tokio::time::sleep(crate::gate::ALONE_REST).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates or drops triggers while holding `LOCK TABLES … WRITE` on the table they are on and the
/// tables they write to. Without it MariaDB can fail a concurrent prepared statement on that table
/// once with "Table … doesn't exist" for a trigger's target (MDEV-26048: the statement is re-prepared
/// with a stale prelocking list); holding the lock keeps every write out until the triggers are
/// whole. The wait for the lock is bounded like any other DDL here, and the lock is always released.
pub async fn triggers_under_lock(
    conn: &mut Conn,
    tables: &[&str],
    statements: &[String],
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    if statements.is_empty() {
        return Ok(Duration::ZERO);
    }
    let locks = tables
        .iter()
        .map(|t| format!("{} WRITE", q(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let lock = format!("LOCK TABLES {locks}");
    let (_alone, stall) = locked_alone(conn, &lock, timeout, attempts).await?;
    let started = Instant::now();
    let mut result = Ok(());
    for s in statements {
        if let Err(e) = conn.query_drop(s.as_str()).await {
            result = Err(e);
            break;
        }
    }
    let unlocked = conn.query_drop("UNLOCK TABLES").await;
    result?;
    unlocked?;
    Ok(stall + started.elapsed())
}

/// The application's tables a statement names (backquoted, deployment artifacts left out), as
/// a client would name them: what a delay says it waits for.
pub fn application_tables(statement: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    let plain = statement
        .split_once(" FOR ")
        .filter(|_| statement.starts_with("SET STATEMENT"))
        .map_or(statement, |(_, s)| s)
        .trim_start();
    // An ALTER or CREATE names its table first; the rest are columns, keys and references.
    let first_only = ["ALTER ", "CREATE "]
        .iter()
        .any(|k| plain.len() >= k.len() && plain[..k.len()].eq_ignore_ascii_case(k));
    let mut rest = plain;
    while let Some(start) = rest.find('`') {
        let mut name = String::new();
        let mut chars = rest[start + 1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if rest[start + 1 + i + 1..].starts_with('`') {
                    name.push('`');
                    chars.next();
                    continue;
                }
                end = Some(start + 1 + i + 1);
                break;
            }
            name.push(c);
        }
        let Some(end) = end else { break };
        if !crate::plan::is_artifact(&name) && !names.contains(&name) {
            names.push(name);
        }
        if first_only {
            break;
        }
        rest = &rest[end..];
    }
    if names.is_empty() {
        return "its tables".into();
    }
    names.iter().map(|n| q(n)).collect::<Vec<_>>().join(", ")
}

fn missing_table(e: &strata_engine::mysql_async::Error) -> bool {
    matches!(e, strata_engine::mysql_async::Error::Server(s) if s.code == 1146)
}

fn lock_timeout(e: &strata_engine::mysql_async::Error) -> bool {
    matches!(e, strata_engine::mysql_async::Error::Server(s) if s.code == 1969 || s.code == 1205)
}

/// Drops every trigger, then every table, this deployment made (triggers first: a trigger whose
/// target is gone would fail the application's writes).
pub async fn cleanup(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    crate::gate::ALONE
        .scope(plan.moves_foreign_keys(), cleanup_steps(conn, schema, plan))
        .await
}

async fn cleanup_steps(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    drop_triggers(conn, schema, plan).await?;
    drop_tables(conn, schema, plan, &[]).await
}

/// Drops the deployment's triggers (under lock, see [`triggers_under_lock`]).
async fn drop_triggers(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    let triggers: Vec<(String, String)> = conn
        .exec(
            "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME LIKE ? ORDER BY 1, 2",
            (schema, plan.trigger_like()),
        )
        .await?;
    let mut on: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (table, trigger) in triggers {
        on.entry(table)
            .or_default()
            .push(format!("DROP TRIGGER IF EXISTS {}", q(&trigger)));
    }
    for (table, drops) in on {
        // LOCK TABLES also locks what the table's triggers write to; when one of those is missing
        // (a crash between steps) the lock cannot be taken, and the triggers are dropped without it.
        match triggers_under_lock(conn, &[&table], &drops, Duration::from_millis(500), 20).await {
            Ok(_) => {}
            Err(DeployError::Query(e)) if missing_table(&e) => {
                for d in &drops {
                    ddl_with_timeout(conn, d, Duration::from_millis(500), 20).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Drops the deployment's tables, but those in `kept`.
async fn drop_tables(conn: &mut Conn, schema: &str, plan: &Plan, kept: &[String]) -> Result<()> {
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ?",
            (schema, plan.artifact_like()),
        )
        .await?;
    let tables: Vec<String> = tables.into_iter().filter(|t| !kept.contains(t)).collect();
    // Artifacts may reference each other by foreign key (new tables of one request): any order,
    // but the markers last: a clean-up stopped half-way must still say where the tables stand
    // (a finished revert resumed after a crash is then known as finished).
    // Never a table an application table still references (dropped with foreign-key checks
    // off, the key would point at nothing).
    let referenced: Option<(String, String)> = conn
        .exec_first(
            "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME LIKE ? AND TABLE_NAME NOT LIKE ? LIMIT 1",
            (schema, plan.artifact_like(), plan.artifact_like()),
        )
        .await?;
    if let Some((child, _)) = referenced {
        return Err(DeployError::ForeignKeys(format!(
            "table `{child}` references a table of the deployment; it is kept until the reference is moved back"
        )));
    }
    let markers: Vec<String> = Mark::ALL.iter().map(|m| plan.marker(*m)).collect();
    let (last, first): (Vec<String>, Vec<String>) =
        tables.into_iter().partition(|t| markers.contains(t));
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    // Taking its locks only when free, as every DDL here: dropping a table with a foreign key
    // needs the parent's metadata lock too, and queued behind a transaction that wrote the
    // parent it held the table set aside, which that transaction's next write to the parent
    // opens to check the key: a metadata-lock cycle whose victim was the application (1213).
    for t in first.into_iter().chain(last) {
        ddl_with_timeout(
            conn,
            &format!("DROP TABLE IF EXISTS {}", q(&t)),
            Duration::from_millis(500),
            20,
        )
        .await?;
    }
    Ok(())
}

/// Creates the shadow tables, placeholders and triggers, and stages new tables. Starts from a clean
/// slate, so a preparation cut short is simply redone.
pub async fn prepare(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    crate::gate::ALONE
        .scope(plan.moves_foreign_keys(), prepare_steps(conn, schema, plan))
        .await
}

/// The tables the deployment's triggers write to: kept, emptied, by a preparation done again (see
/// [`prepare_steps`]).
fn trigger_targets(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if let Step::AlterTable(a) = step {
            out.extend([
                a.shadow.clone(),
                a.old.clone(),
                a.stub.clone(),
                plan.revert_blocked_for(i),
            ]);
            out.extend(plan.deploy_blocked_for(i));
        }
    }
    out
}

/// `CREATE TABLE …` as `CREATE TABLE IF NOT EXISTS …`.
fn if_not_exists(create: &str) -> String {
    match create.strip_prefix("CREATE TABLE ") {
        Some(rest) if !rest.starts_with("IF NOT EXISTS") => {
            format!("CREATE TABLE IF NOT EXISTS {rest}")
        }
        _ => create.to_string(),
    }
}

async fn prepare_steps(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    // A preparation cut short (its tables' locks not free in time) is done again from a clean
    // slate, but the tables its triggers wrote to are kept, emptied: a prepared statement of the
    // application compiled while those triggers stood still opens them for a moment after the
    // triggers go (MDEV-26048), and when they were dropped and made again it failed with "Table
    // … doesn't exist" until they were back.
    drop_triggers(conn, schema, plan).await?;
    let kept = trigger_targets(plan);
    drop_tables(conn, schema, plan, &kept).await?;
    let present: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ? AND ENGINE = 'InnoDB'",
            (schema, plan.artifact_like()),
        )
        .await?;
    for t in present.iter().filter(|t| kept.contains(t)) {
        ddl_with_timeout(
            conn,
            &format!("TRUNCATE TABLE {}", q(t)),
            Duration::from_millis(500),
            20,
        )
        .await?;
    }
    if plan.online_alters().next().is_some() {
        ensure_blackhole(conn).await?;
        // The placeholders are BLACKHOLE tables; the instance enforces InnoDB for everyone else.
        match conn
            .query_drop("SET SESSION enforce_storage_engine = NULL")
            .await
        {
            Err(strata_engine::mysql_async::Error::Server(e)) if e.code == 1193 => {}
            r => r?,
        }
    }
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    for create in sql::revert_blocked_tables(plan)
        .into_iter()
        .chain(sql::deploy_blocked_tables(plan))
    {
        conn.query_drop(create).await?;
    }
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::CreateTable { create, .. } => conn.query_drop(create).await?,
            Step::AlterTable(a) => {
                conn.query_drop(if_not_exists(&a.shadow_create)).await?;
                conn.query_drop(if_not_exists(&sql::placeholder(&a.old, &a.old_columns)))
                    .await?;
                conn.query_drop(if_not_exists(&sql::placeholder(&a.stub, &a.new_columns)))
                    .await?;
                // Both directions at once, so the set of tables a write to the live table reaches
                // never changes until the clean-up: a write that opened the table while triggers
                // were being added would miss their targets ("Table … doesn't exist",
                // MDEV-26048). The reverse set is created strict, the forward set relaxed.
                let mut statements = vec![sql::STRICT_MODE.to_string()];
                statements.extend(sql::reverse_triggers(plan, i, a));
                statements.push(sql::RELAXED_MODE.to_string());
                statements.extend(sql::forward_triggers(plan, i, a));
                let revert_blocked = plan.revert_blocked_for(i);
                let deploy_blocked = plan.deploy_blocked_for(i);
                let mut locked = vec![
                    a.table.as_str(),
                    a.shadow.as_str(),
                    a.old.as_str(),
                    revert_blocked.as_str(),
                ];
                locked.extend(deploy_blocked.as_deref());
                triggers_under_lock(conn, &locked, &statements, Duration::from_millis(500), 20)
                    .await?;
            }
            _ => {}
        }
    }
    conn.query_drop("SET SESSION sql_mode = DEFAULT").await?;
    // Last: a marker in place means the preparation is whole.
    if plan.marked {
        conn.query_drop(sql::marker_table(plan)).await?;
    }
    Ok(())
}

/// After the copy: builds the keys left out of the shadows (one sorted build each, online).
/// Idempotent, so a restart simply repeats it.
pub async fn build_keys(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    for a in plan.online_alters() {
        let present: Vec<String> = conn
            .exec(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (schema, &a.shadow),
            )
            .await?;
        if let Some(alter) = sql::add_deferred_keys(a, &present) {
            conn.query_drop(alter).await?;
        }
    }
    Ok(())
}

/// How far the online key build under way on the instance is, as the server reports it (see
/// [`crate::key_build_percent`]): a figure for the whole instance, whose deploys run one at a time.
pub async fn key_build_progress(conn: &mut Conn) -> Result<Option<f64>> {
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_onlineddl_pct_progress'")
        .await?;
    Ok(row.and_then(|(_, hundredths)| crate::key_build_percent(hundredths)))
}

/// After the copy: makes sure the reverse triggers exist (made with the forward ones since marker
/// tables; plans from before made them only now). Idempotent.
pub async fn arm_reverse_capture(conn: &mut Conn, plan: &Plan) -> Result<()> {
    if plan.marked {
        return Ok(());
    }
    conn.query_drop(sql::STRICT_MODE).await?;
    for (i, step) in plan.steps.iter().enumerate() {
        let Step::AlterTable(a) = step else { continue };
        let blocked = plan.revert_blocked_for(i);
        // The live table is locked too: a write to it reaches these triggers through the forward
        // ones, and one that opened it before they existed would miss their targets
        // ("Table … doesn't exist", MDEV-26048).
        triggers_under_lock(
            conn,
            &[&a.table, &a.shadow, &a.old, &blocked],
            &sql::reverse_triggers(plan, i, a),
            Duration::from_millis(500),
            20,
        )
        .await?;
    }
    conn.query_drop(sql::RELAXED_MODE).await?;
    Ok(())
}

/// Both steps after the copy, in order.
pub async fn finish_shadows(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    build_keys(conn, schema, plan).await?;
    arm_reverse_capture(conn, plan).await
}

/// The rows of a key range (all the table's when both ends are open), counted along the key
/// without locks. The server's statistics (`TABLE_ROWS`) can be far off right after a bulk load,
/// which made progress show 100% from the start; a count is exact and costs one index scan.
pub async fn count_rows(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    to: Option<&[String]>,
) -> Result<u64> {
    let n: Option<u64> = conn.query_first(sql::count_range(a, after, to)).await?;
    Ok(n.unwrap_or(0))
}

fn literals(row: Row) -> Vec<String> {
    row.unwrap()
        .into_iter()
        .map(|v: Value| v.as_sql(false))
        .collect()
}

/// Splits the table's keys into up to `parts` ranges of about equal size, returning the boundaries
/// (range i runs from boundary i-1, exclusive, to boundary i, inclusive; the first and last are
/// open), found by counting `rows / parts` rows along the key. Counting costs one index scan of part
/// of the table, but keeps the ranges even whatever the keys look like (splitting an integer key's
/// span arithmetically put nearly every row in one range when a few ids were far out).
pub async fn split(
    conn: &mut Conn,
    a: &OnlineAlter,
    rows: u64,
    parts: u64,
) -> Result<Vec<Vec<String>>> {
    if parts < 2 {
        return Ok(Vec::new());
    }
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for _ in 1..parts {
        let end: Option<Row> = conn
            .query_first(sql::chunk_end(
                a,
                bounds.last().map(|b| &b[..]),
                None,
                rows / parts,
            ))
            .await?;
        match end {
            Some(row) => bounds.push(literals(row)),
            None => break,
        }
    }
    Ok(bounds)
}

/// Prepares a copy worker's session: the copier never waits for a lock (its statements run with
/// `innodb_lock_wait_timeout = 0`: a conflict is an immediate error, the chunk is rolled back and
/// tried again), and reads
/// with READ COMMITTED, so its share locks are on rows only, never on the gaps writers insert into.
/// An application transaction may wait for the copier (at most one chunk, ~250 ms), but the copier
/// never waits for one, so no deadlock can form between them: InnoDB would pick the transaction
/// with fewer changes, the application's, as the victim. The rows it writes into a shadow are
/// not mirrored back by the reverse triggers (see [`sql::NOT_COPYING`]): every chunk's
/// statements, and the one-row copies of its verification, must run in such a session.
pub async fn copier_session(conn: &mut Conn) -> Result<()> {
    conn.query_drop(format!("{}, {}", sql::RELAXED_MODE, sql::COPYING))
        .await?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    Ok(())
}

/// One chunk copied.
pub struct Chunk {
    /// The key the next chunk starts after (`None`: the range is done).
    pub until: Option<Vec<String>>,
    pub rows: u64,
    /// Times the chunk met a lock and was tried again.
    pub retries: u32,
    /// Time spent verifying the chunk (logged with the copy's phase times).
    pub verify: Duration,
}

/// Tries of one chunk before the step gives up for now (the deployment is resumed later).
const CHUNK_TRIES: u32 = 400;

/// Copies up to `size` rows after `after` into the shadow, passing over rows an application
/// transaction holds (`SKIP LOCKED`: the copy never requests a lock it would have to wait for, so
/// InnoDB's deadlock detector never has a cycle through it whose victim would be the application).
/// Unless every row of the range was read and written by the copy itself, or the shadow is seen to
/// lack none of the range's rows, the range is verified (rows skipped are copied one by one, a
/// differing row fails the deploy). A copy warning other
/// than a duplicate of the matching key means the new schema cannot hold the data as it is: the
/// deploy fails with the server's words.
pub async fn copy_chunk(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    to: Option<&[String]>,
    size: u64,
) -> Result<Chunk> {
    let end: Option<Row> = conn.query_first(sql::chunk_end(a, after, to, size)).await?;
    let until = end.map(literals);
    // No row `size` rows on: this chunk runs to the end of the range, and finishes it.
    let bound = until.as_deref().or(to);
    let mut retries = 0;
    let (mut rows, already) = loop {
        conn.query_drop("BEGIN").await?;
        match copy_rows(conn, a, after, bound).await {
            Ok(counts) => match conn.query_drop("COMMIT").await {
                Ok(()) => break counts,
                // Under load the server may refuse the chunk's commit (error 1180): the chunk
                // is simply copied again.
                Err(e) if commit_refused(&e) && retries < CHUNK_TRIES => {
                    let _ = conn.query_drop("ROLLBACK").await;
                    retries += 1;
                    backoff(retries).await;
                }
                Err(e) => return Err(e.into()),
            },
            Err(DeployError::Query(e)) if commit_refused(&e) && retries < CHUNK_TRIES => {
                let _ = conn.query_drop("ROLLBACK").await;
                retries += 1;
                backoff(retries).await;
            }
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(e);
            }
        }
    };
    let started = Instant::now();
    // The range held exactly `size` committed rows when its end was read. Every write committed
    // since then went through the triggers: a row written or inserted shows as one already in
    // the shadow, a deleted one as a row fewer. So `size` rows read, none of them already there,
    // means none was passed over and the copy wrote each itself: nothing to verify.
    let whole = until.is_some() && already == 0 && rows == size;
    if !whole && !none_missing(conn, a, after, bound).await? {
        rows += verify_range(conn, a, after, bound, &mut retries).await?;
    }
    Ok(Chunk {
        until,
        rows,
        retries,
        verify: started.elapsed(),
    })
}

/// True when the shadow holds a row for every row of the range (one read of both tables as
/// committed now, no locks). A row the copy passed over because a transaction held it is either in
/// the shadow as committed (the triggers keep it in step from there) or missing, and only a missing
/// one needs the full verification: a chunk whose rows were partly written first by the triggers
/// (an updating writer reaches most chunks before the copy does) is checked with one cheap read
/// instead of a checksum of each side. The triggers write both tables in the application's own
/// transactions, so the shadow never holds a committed row the table lacks: with the key's type
/// unchanged (the same rows fall in the range on both sides), equal counts mean none missing.
/// Otherwise an anti-join on the key looks for a missing row.
async fn none_missing(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> Result<bool> {
    if a.key.iter().all(|k| a.compared.contains(k)) {
        let same: Option<Option<i64>> = conn.query_first(sql::same_count(a, after, until)).await?;
        return Ok(same == Some(Some(1)));
    }
    let first: Option<Row> = conn
        .query_first(sql::missing_keys(a, after, until, 1))
        .await?;
    Ok(first.is_none())
}

/// The statement, failing at once instead of waiting for a row lock (only the copy's statements:
/// a session-wide 0 also failed the chunk's COMMIT under load).
fn no_wait(statement: &str) -> String {
    format!("SET STATEMENT innodb_lock_wait_timeout = 0 FOR {statement}")
}

async fn backoff(tries: u32) {
    tokio::time::sleep(Duration::from_millis(u64::from(tries.min(20)) * 5)).await;
}

fn commit_refused(e: &strata_engine::mysql_async::Error) -> bool {
    lock_conflict(e) || matches!(e, strata_engine::mysql_async::Error::Server(s) if s.code == 1180)
}

/// A lock the copier would have had to wait for (it never waits), or a deadlock.
fn lock_conflict(e: &strata_engine::mysql_async::Error) -> bool {
    matches!(e, strata_engine::mysql_async::Error::Server(s) if s.code == 1205 || s.code == 1213)
}

async fn copy_rows(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> Result<(u64, u64)> {
    conn.query_drop(no_wait(&sql::copy_chunk(a, after, until)))
        .await?;
    // The rows the chunk covered, and those of them the shadow held already (the server's
    // "Records: N  Duplicates: D"): progress counts both, so it reaches the table's count. Without
    // the info (never from MariaDB) every row counts as one already there, so the range is verified.
    let counts = info_count(&conn.info(), "Records:")
        .zip(info_count(&conn.info(), "Duplicates:"))
        .unwrap_or_else(|| (conn.affected_rows(), 1));
    check_warnings(conn, a).await?;
    Ok(counts)
}

/// The number after `label` in an INSERT … SELECT's "Records: N  Duplicates: D  Warnings: W".
fn info_count(info: &str, label: &str) -> Option<u64> {
    let rest = info.split(label).nth(1)?.trim_start();
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Fails on a copy warning that says the new schema cannot hold a row; returns the first
/// duplicate-key warning passed over, which may be a row the shadow holds already (copied again)
/// or, when the new schema has another unique key, a row it refuses (see [`verify_range`]).
async fn check_warnings(conn: &mut Conn, a: &OnlineAlter) -> Result<Option<String>> {
    if conn.get_warnings() == 0 {
        return Ok(None);
    }
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await?;
    let key = format!("for key '{}'", a.key_index);
    // 1364: a new NOT NULL column without a default gets its type's implicit default (0, '',
    // …), exactly what an ALTER TABLE … ADD COLUMN gives the rows already there.
    if let Some((_, code, message)) = warnings
        .iter()
        .find(|(_, code, m)| !(*code == 1062 && m.contains(&key)) && *code != 1364)
    {
        return Err(DeployError::CopyRejected {
            table: a.table.clone(),
            message: format!("{message} (error {code})"),
        });
    }
    Ok(warnings
        .into_iter()
        .find(|(_, code, _)| *code == 1062)
        .map(|(_, _, m)| m))
}

/// The verification of a copied range, in one consistent snapshot (no locks): the triggers change
/// both tables in the application's own transactions, so any snapshot shows them equal, except for
/// rows the copy skipped because a transaction held them; those are copied one by one, and the
/// range checked again. Equal checksums mean equal rows; different ones may still be equal values
/// written differently (a key whose type changed), so the exact join decides. Returns the rows
/// copied here.
async fn verify_range(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
    retries: &mut u32,
) -> Result<u64> {
    let mut copied = 0;
    loop {
        snapshot(conn).await?;
        let outcome = snapshot_differences(conn, a, after, until).await;
        let _ = conn.query_drop("COMMIT").await;
        let missing = match outcome? {
            None => return Ok(copied),
            Some(missing) => missing,
        };
        for key in missing {
            loop {
                match conn.query_drop(no_wait(&sql::copy_one(a, &key))).await {
                    Ok(()) => {}
                    Err(e) if commit_refused(&e) && *retries < CHUNK_TRIES => {
                        *retries += 1;
                        backoff(*retries).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                let duplicate = check_warnings(conn, a).await?;
                if conn.affected_rows() > 0 {
                    copied += 1;
                    break;
                }
                // Held by a transaction (skipped again), or gone, or there by now: check.
                let there: Option<u8> = conn
                    .query_first(format!(
                        "SELECT 1 FROM {} WHERE {} UNION ALL SELECT 1 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {})",
                        q(&a.shadow),
                        key_equals(a, &key),
                        q(&a.table),
                        key_equals(a, &key)
                    ))
                    .await?;
                if there.is_some() {
                    break;
                }
                // Not held by anyone: refused as a duplicate of another row under a key of the new
                // schema (the key the rows are copied by may be another unique key there). A retry
                // would never end.
                if let Some(message) = duplicate {
                    return Err(DeployError::CopyRejected {
                        table: a.table.clone(),
                        message: format!("{message} (error 1062)"),
                    });
                }
                *retries += 1;
                if *retries > CHUNK_TRIES {
                    return Err(DeployError::LockTimeout {
                        tables: format!("`{}`", a.table),
                        detail: "a transaction keeps a row the copy needs locked".into(),
                    });
                }
                backoff(*retries).await;
            }
        }
    }
}

/// Begins a read-only transaction whose reads all see one snapshot. The copier's session is READ
/// COMMITTED, where `WITH CONSISTENT SNAPSHOT` is ignored and each statement reads anew: this one
/// transaction is REPEATABLE READ.
async fn snapshot(conn: &mut Conn) -> Result<()> {
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    Ok(())
}

fn key_equals(a: &OnlineAlter, key: &[String]) -> String {
    a.key
        .iter()
        .zip(key)
        .map(|(c, v)| format!("{} = {v}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `None` when the range is equal on both sides; else the keys the shadow lacks (a real difference
/// in a row both sides have, or a row only the shadow has, fails the deploy).
async fn snapshot_differences(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> Result<Option<Vec<Vec<String>>>> {
    if checksum(conn, &sql::checksum(a, false, after, until, false)).await?
        == checksum(conn, &sql::checksum(a, true, after, until, false)).await?
    {
        return Ok(None);
    }
    let [differing, extra] = sql::differences(a, after, until);
    let differing: Option<u64> = conn.query_first(differing).await?;
    let extra: Option<u64> = conn.query_first(extra).await?;
    let (differing, extra) = (differing.unwrap_or(0), extra.unwrap_or(0));
    if differing == 0 && extra == 0 {
        return Ok(None);
    }
    let missing: Vec<Row> = conn
        .query(sql::missing_keys(a, after, until, MISSING_BATCH))
        .await?;
    let missing: Vec<Vec<String>> = missing.into_iter().map(literals).collect();
    // A full batch of missing keys may hide more missing rows behind it (a transaction held more
    // of the range than one batch while the chunk was copied): only a shorter list proves that
    // the rest differ. The batch is copied and the range checked again.
    let all_listed = (missing.len() as u64) < MISSING_BATCH;
    if extra > 0 || (all_listed && differing > missing.len() as u64) {
        return Err(DeployError::Mismatch {
            table: a.table.clone(),
            missing: differing,
            extra,
        });
    }
    Ok(Some(missing))
}

/// Keys of missing rows read per look at a range (see [`snapshot_differences`]).
const MISSING_BATCH: u64 = 10_000;

/// Row count and checksum of a key range (see [`sql::checksum`]).
pub type Checksum = (u64, u64);

async fn checksum(conn: &mut Conn, statement: &str) -> Result<Checksum> {
    let sum: Option<Checksum> = conn.query_first(statement).await?;
    Ok(sum.unwrap_or_default())
}

/// Checks, in one consistent snapshot, that the shadow holds exactly the old table's rows (a full
/// scan of both, without locks).
pub async fn verify(conn: &mut Conn, a: &OnlineAlter) -> Result<()> {
    snapshot(conn).await?;
    let result = compare(conn, a).await;
    let _ = conn.query_drop("COMMIT").await;
    result
}

async fn compare(conn: &mut Conn, a: &OnlineAlter) -> Result<()> {
    if checksum(conn, &sql::checksum(a, false, None, None, false)).await?
        == checksum(conn, &sql::checksum(a, true, None, None, false)).await?
    {
        return Ok(());
    }
    exact(conn, a, None, None).await
}

/// The exact comparison of a key range, row by row.
async fn exact(
    conn: &mut Conn,
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> Result<()> {
    let [missing, extra] = sql::differences(a, after, until);
    let missing: Option<u64> = conn.query_first(missing).await?;
    let extra: Option<u64> = conn.query_first(extra).await?;
    let (missing, extra) = (missing.unwrap_or(0), extra.unwrap_or(0));
    if missing > 0 || extra > 0 {
        return Err(DeployError::Mismatch {
            table: a.table.clone(),
            missing,
            extra,
        });
    }
    Ok(())
}

/// A write the new schema refused (recorded by the forward triggers' handler) fails the cut-over
/// with the server's reason. Always: the shadow still holds that row as it was before the write,
/// and a comparison cannot tell, since the columns whose definition changed (the very ones a new
/// NOT NULL refuses) are not compared by value. A new deploy starts from a fresh copy.
async fn forward_blockers(conn: &mut Conn, plan: &Plan) -> Result<()> {
    for (i, step) in plan.steps.iter().enumerate() {
        let (Step::AlterTable(a), Some(blocked)) = (step, plan.deploy_blocked_for(i)) else {
            continue;
        };
        let reason: Option<String> = conn
            .query_first(format!(
                "SELECT `reason` FROM {} WHERE {} LIMIT 1",
                q(&blocked),
                sql::LIVE_RECORDS
            ))
            .await?;
        if let Some(reason) = reason {
            return Err(DeployError::WriteRefused {
                table: a.table.clone(),
                // The server names the shadow: the reviewer knows the table.
                reason: plain_names(plan, &reason),
            });
        }
    }
    Ok(())
}

/// The last check before the swap: in one snapshot, each shadow holds as many rows as its table.
/// The forward triggers `REPLACE` by the shared key, so a write that breaks a unique key new in the
/// shadow replaced another row there instead of failing the application: such a deploy must not
/// cut over (PlanetScale fails it too). Plans with keyed blockers have no `REPLACE`: their
/// triggers record every row they cannot mirror, and the swap is refused on that record (see
/// [`forward_blockers`]), so they skip this count. It cost two scans of the table while the
/// writers ran (1.8 s of a 1M-row deploy's cut-over under an updating writer: every index page a
/// write touched sends the count to the clustered row for each of its entries).
async fn same_row_counts(conn: &mut Conn, plan: &Plan) -> Result<()> {
    if plan.keyed_blockers {
        return Ok(());
    }
    for a in plan.online_alters() {
        snapshot(conn).await?;
        let counts: Result<(Option<u64>, Option<u64>)> = async {
            let old: Option<u64> = conn
                .query_first(format!("SELECT COUNT(*) FROM {}", q(&a.table)))
                .await?;
            let new: Option<u64> = conn
                .query_first(format!("SELECT COUNT(*) FROM {}", q(&a.shadow)))
                .await?;
            Ok((old, new))
        }
        .await;
        let _ = conn.query_drop("COMMIT").await;
        let (old, new) = counts?;
        let (old, new) = (old.unwrap_or(0), new.unwrap_or(0));
        if old != new {
            return Err(DeployError::Mismatch {
                table: a.table.clone(),
                missing: old.saturating_sub(new),
                extra: new.saturating_sub(old),
            });
        }
    }
    Ok(())
}

/// Gives each shadow the old table's AUTO_INCREMENT counter, so ids freed at the end of the table
/// (rows deleted there) are not handed out again after the cut-over. Ids inserted later reach the
/// shadow through the triggers, which moves its counter on by itself.
async fn carry_auto_increment(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    for a in plan.online_alters() {
        const COUNTER: &str = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";
        let old: Option<Option<u64>> = conn.exec_first(COUNTER, (schema, &a.table)).await?;
        let shadow: Option<Option<u64>> = conn.exec_first(COUNTER, (schema, &a.shadow)).await?;
        // Only ever raised: the shadow's own counter may be ahead (ids the triggers brought in).
        if let (Some(Some(next)), Some(Some(have))) = (old, shadow) {
            if next <= have {
                continue;
            }
            ddl_with_timeout(
                conn,
                &format!("ALTER TABLE {} AUTO_INCREMENT = {next}", q(&a.shadow)),
                Duration::from_millis(500),
                20,
            )
            .await?;
        }
    }
    Ok(())
}

/// Where a deployment's tables are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The application still uses the old tables.
    Before,
    /// The new tables are in place; the old ones are kept in step.
    Swapped,
    /// The revert swapped the old tables back.
    Reverted,
}

async fn exists(conn: &mut Conn, schema: &str, table: &str) -> Result<Option<String>> {
    let engine: Option<Option<String>> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await?;
    Ok(engine.map(|e| e.unwrap_or_default()))
}

/// Which of the names of `pairs` are tables (or views) of the schema now.
async fn existing(
    conn: &mut Conn,
    schema: &str,
    pairs: &[(String, String)],
) -> Result<std::collections::BTreeSet<String>> {
    let names: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW'",
            (schema,),
        )
        .await?;
    Ok(names
        .into_iter()
        .filter(|n| pairs.iter().any(|(a, b)| a == n || b == n))
        .collect())
}

/// Reads the placement from the server: the RENAMEs are atomic and carry the marker table, so its
/// name tells. No marker: not prepared yet (or already cleaned up), which is `Before`.
pub async fn placement(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<Placement> {
    if plan.marked {
        for (mark, placement) in [
            (Mark::Swapped, Placement::Swapped),
            (Mark::Reverted, Placement::Reverted),
        ] {
            if exists(conn, schema, &plan.marker(mark)).await?.is_some() {
                return Ok(placement);
            }
        }
        // A cut-over the server stopped in the middle of counts as begun: never cleaned up as if
        // nothing had happened (the original table may already be under an artifact's name).
        let pairs = sql::cutover_pairs(plan);
        let have = existing(conn, schema, &pairs).await?;
        return Ok(match sql::renames_done(&pairs, |n| have.contains(n)) {
            Some(k) if k > 0 => Placement::Swapped,
            _ => Placement::Before,
        });
    }
    legacy_placement(conn, schema, plan).await
}

/// The placement of a deployment planned before marker tables, read from its first table.
async fn legacy_placement(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<Placement> {
    for s in &plan.steps {
        match s {
            Step::AlterTable(a) => {
                if exists(conn, schema, &a.reverted).await?.is_some() {
                    return Ok(Placement::Reverted);
                }
                return Ok(match exists(conn, schema, &a.old).await?.as_deref() {
                    Some(e) if !e.eq_ignore_ascii_case("BLACKHOLE") => Placement::Swapped,
                    _ => Placement::Before,
                });
            }
            Step::CreateTable { staged, table, .. } => {
                if exists(conn, schema, staged).await?.is_some() {
                    return Ok(Placement::Before);
                }
                return Ok(if exists(conn, schema, table).await?.is_some() {
                    Placement::Swapped
                } else {
                    Placement::Reverted
                });
            }
            Step::DropTable { table, aside, .. } => {
                if exists(conn, schema, aside).await?.is_some() {
                    return Ok(Placement::Swapped);
                }
                return Ok(if exists(conn, schema, table).await?.is_some() {
                    Placement::Before
                } else {
                    Placement::Reverted
                });
            }
            Step::DirectAlter { .. } | Step::View { .. } => {}
        }
    }
    Ok(Placement::Before)
}

/// A foreign key an in-place alter adds.
struct NewKey {
    name: String,
    parts: strata_schema::ForeignKeyParts,
    /// The referenced table is created by the same deploy (empty until the cut-over).
    parent_is_new: bool,
}

/// The foreign keys `create` has that `table` on the instance does not.
async fn new_foreign_keys(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    table: &str,
    create: &str,
) -> Result<Vec<NewKey>> {
    let Ok(want) = strata_schema::parse_table(create) else {
        return Ok(Vec::new());
    };
    let now: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {}.{}", q(schema), q(table)))
        .await?;
    let have = now
        .and_then(|(_, c)| strata_schema::parse_table(&c).ok())
        .map(|t| t.foreign_keys)
        .unwrap_or_default();
    Ok(want
        .foreign_keys
        .iter()
        .filter(|fk| !have.iter().any(|h| h.definition == fk.definition))
        .filter_map(|fk| {
            let parts = fk.foreign_key()?;
            let parent_is_new = plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::CreateTable { table, .. } if *table == parts.table));
            Some(NewKey {
                name: fk.name.clone(),
                parts,
                parent_is_new,
            })
        })
        .collect())
}

/// The first row of `table` without a parent under one of `keys`, as the deploy's error. The
/// referenced tables are read under the aliases of [`sql::orphan_check_lock`].
async fn first_orphan(
    conn: &mut Conn,
    table: &str,
    keys: &[NewKey],
) -> Result<Option<DeployError>> {
    for (i, k) in keys.iter().enumerate() {
        let sql = sql::first_orphan_as(table, &k.parts, k.parent_is_new, &format!("p{i}"));
        let row: Option<Row> = conn.query_first(sql).await?;
        if let Some(row) = row {
            let values: Vec<String> = k
                .parts
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let v: Option<String> = row.get(i).flatten();
                    format!("{c} = {}", v.unwrap_or_default())
                })
                .collect();
            return Ok(Some(DeployError::Orphans {
                table: table.to_string(),
                constraint: k.name.clone(),
                parent: k.parts.table.clone(),
                example: format!("the row with {}", values.join(", ")),
            }));
        }
    }
    Ok(None)
}

/// Foreign keys the in-place alters add are added without checking the rows already there (the
/// online way): first, every table's existing rows are checked against each new key, all before
/// any table is changed and without holding writers, so rows without a parent fail the deploy with
/// one named. [`direct_alters`] checks again under lock, for rows written meanwhile.
async fn check_new_foreign_keys(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    for s in &plan.steps {
        let Step::DirectAlter { table, create, .. } = s else {
            continue;
        };
        let keys = new_foreign_keys(conn, schema, plan, table, create).await?;
        if let Some(e) = first_orphan(conn, table, &keys).await? {
            return Err(e);
        }
    }
    Ok(())
}

/// Applies the in-place alters not yet applied (a restart may find some done already). A table
/// that gains foreign keys is altered under `LOCK TABLES` (it, and the tables its new keys
/// reference), after its rows are checked once more there: a row without a parent written
/// between the first check and the ALTER (which adds the key unchecked) fails the deploy too.
/// Writers of those tables wait for that second check, bounded like every lock wait here.
/// Returns how long writers were held: the locked checks, and every ALTER the server could not
/// make without blocking writes (tried first with `LOCK=NONE`).
async fn direct_alters(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let mut held = Duration::ZERO;
    for s in &plan.steps {
        if let Step::DirectAlter {
            table,
            statements,
            create,
        } = s
        {
            let now: Option<(String, String)> = conn
                .query_first(format!("SHOW CREATE TABLE {}.{}", q(schema), q(table)))
                .await?;
            let done = match (now, strata_schema::parse_table(create)) {
                (Some((_, current)), Ok(want)) => strata_schema::parse_table(
                    &strata_engine::admin::strip_auto_increment(&current),
                )
                .is_ok_and(|t| t.equivalent(&want)),
                _ => false,
            };
            if done {
                continue;
            }
            let keys = new_foreign_keys(conn, schema, plan, table, create).await?;
            if keys.is_empty() {
                for st in statements {
                    held += alter_without_blocking(conn, st, timeout, attempts).await?;
                }
                continue;
            }
            let parents: Vec<Option<&str>> = keys
                .iter()
                .map(|k| (!k.parent_is_new).then_some(k.parts.table.as_str()))
                .collect();
            let locked = Instant::now();
            ddl_with_timeout(
                conn,
                &sql::orphan_check_lock(table, &parents),
                timeout,
                attempts,
            )
            .await?;
            let mut result = match first_orphan(conn, table, &keys).await {
                Ok(Some(e)) => Err(e),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if result.is_ok() {
                for st in statements {
                    if let Err(e) = conn.query_drop(st).await {
                        result = Err(e.into());
                        break;
                    }
                }
            }
            conn.query_drop("UNLOCK TABLES").await?;
            held += locked.elapsed();
            result?;
        }
    }
    Ok(held)
}

/// Runs one in-place ALTER, first as `ALGORITHM=INPLACE, LOCK=NONE` (writers go on while it
/// runs); when the server cannot make the change so (a column type change that copies the table,
/// say), as the server chooses, and then its whole duration held the table's writers: returned.
/// Like every DDL here it takes its metadata locks only when they are free (see
/// [`ddl_with_timeout`]): queued behind a long transaction, it held the table's writers for as
/// long.
async fn alter_without_blocking(
    conn: &mut Conn,
    statement: &str,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    // Partition operations take no algorithm clause after them.
    if !statement.to_ascii_uppercase().contains("PARTITION") {
        let online = format!(
            "{}, ALGORITHM=INPLACE, LOCK=NONE",
            statement.trim_end_matches(';')
        );
        match ddl_with_timeout(conn, &online, timeout, attempts).await {
            Ok(_) => return Ok(Duration::ZERO),
            // ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON), ER_PARSE_ERROR: not so; as chosen below.
            Err(DeployError::Query(strata_engine::mysql_async::Error::Server(e)))
                if matches!(e.code, 1064 | 1845 | 1846) => {}
            Err(e) => return Err(e),
        }
    }
    let started = Instant::now();
    ddl_with_timeout(conn, statement, timeout, attempts).await?;
    Ok(started.elapsed())
}

/// Gives each shadow the foreign keys of its table, under temporary names (see
/// [`crate::plan::MovedForeignKey`]), after its copy and its keys are whole: added unchecked
/// (`foreign_key_checks=0`, in place, metadata only), as every row came from a table that had the
/// same keys, and every later one is checked as it is written. Idempotent.
async fn add_shadow_foreign_keys(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let mut held = Duration::ZERO;
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    for a in plan.online_alters() {
        if a.foreign_keys.is_empty() {
            continue;
        }
        let present: Vec<String> = conn
            .exec(
                "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (schema, &a.shadow),
            )
            .await?;
        let adds: Vec<String> = a
            .foreign_keys
            .iter()
            .filter(|f| !present.contains(&f.shadow_name))
            .map(|f| f.add(&f.shadow_name))
            .collect();
        if adds.is_empty() {
            continue;
        }
        let alter = format!(
            "ALTER TABLE {} {}, ALGORITHM=INPLACE",
            q(&a.shadow),
            adds.join(", ")
        );
        let before = table_of(conn, schema, &a.shadow)
            .await?
            .map(|t| t.indexes)
            .unwrap_or_default();
        held += ddl_with_timeout(conn, &alter, timeout, attempts).await?;
        held += restore_index_names(conn, schema, &a.shadow, &before, (timeout, attempts)).await?;
    }
    Ok(held)
}

/// After a swap (`forward`: the cut-over; else a revert), with nothing of the application
/// running (see [`swap_alone`]): the tables set aside hold no foreign key (their rows must not
/// hold back a parent's writes, nor a check bind to them), and each live table holds its keys
/// under their own names, pointing at the live parents. A RENAME drags a renamed child's keys
/// with it and points the keys referencing a renamed parent at wherever that parent went, so
/// each is made again by name (see [`settle_key`]). Idempotent, so a swap resumed after a crash
/// settles them too.
async fn settle_foreign_keys(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    forward: bool,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let mut held = Duration::ZERO;
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    let budget = (timeout, attempts);
    let mut set_aside: Vec<&str> = Vec::new();
    for s in &plan.steps {
        match s {
            Step::AlterTable(a) => set_aside.push(if forward { &a.old } else { &a.reverted }),
            Step::CreateTable { staged, .. } if !forward => set_aside.push(staged),
            Step::DropTable { aside, .. } if forward => set_aside.push(aside),
            _ => {}
        }
    }
    for table in set_aside {
        let Some(keys) = foreign_keys_of(conn, schema, table).await? else {
            continue;
        };
        if keys.is_empty() {
            continue;
        }
        let drops = keys
            .iter()
            .map(|(n, _)| format!("DROP FOREIGN KEY {}", q(n)))
            .collect::<Vec<_>>()
            .join(", ");
        held += ddl_with_timeout(
            conn,
            &format!("ALTER TABLE {} {drops}, ALGORITHM=INPLACE", q(table)),
            timeout,
            attempts,
        )
        .await?;
    }
    for s in &plan.steps {
        let (table, keys) = match s {
            Step::AlterTable(a) => (&a.table, &a.foreign_keys),
            Step::DropTable {
                table,
                foreign_keys,
                ..
            } if !forward => (table, foreign_keys),
            _ => continue,
        };
        for fk in keys {
            let temporary = [fk.shadow_name.clone(), fk.parked_name.clone()];
            held += settle_key(
                conn,
                schema,
                table,
                (&fk.name, &fk.body),
                &temporary,
                budget,
            )
            .await?;
        }
    }
    for a in plan.online_alters() {
        for fk in &a.children {
            let temporary = [fk.moving_name.clone(), format!("{}m", fk.moving_name)];
            held += settle_key(
                conn,
                schema,
                &fk.table,
                (&fk.name, &fk.body),
                &temporary,
                budget,
            )
            .await?;
        }
    }
    Ok(held)
}

/// Makes `table` hold the foreign key `name` defined as `body` (from `FOREIGN KEY` on, naming the
/// parent as the application does): metadata-only, unchecked ALTERs (the caller turns the checks
/// off; the rows came from a table under the same key). The table's copy of the key is found
/// under its name or one of `temporary`, or made when it has none; a table of the deployment
/// holding the name drops it; a key a RENAME dragged to another parent is made again through a
/// temporary name (one ALTER cannot drop and add a key of one name). A table not there (made or
/// dropped by the deployment, on the other side of the swap) has nothing to settle.
async fn settle_key(
    conn: &mut Conn,
    schema: &str,
    table: &str,
    (name, body): (&str, &str),
    temporary: &[String],
    (timeout, attempts): (Duration, u32),
) -> Result<Duration> {
    let mut held = Duration::ZERO;
    let Some(live) = table_of(conn, schema, table).await? else {
        return Ok(held);
    };
    let keys: Vec<(String, String)> = live
        .foreign_keys
        .iter()
        .map(|f| (f.name.clone(), f.definition.clone()))
        .collect();
    let wanted = format!("CONSTRAINT {} {body}", q(name));
    if keys.iter().any(|(_, d)| *d == wanted) {
        return Ok(held);
    }
    let current = keys
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| n == name || temporary.contains(n));
    let in_use: Vec<(String, String)> = conn
        .exec(
            "SELECT CONSTRAINT_NAME, TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
            (schema,),
        )
        .await?;
    let mut run = Vec::new();
    if current.as_deref() == Some(name) {
        // Dragged to another parent by a RENAME: made again through a temporary name.
        let via = temporary
            .iter()
            .find(|t| !in_use.iter().any(|(n, _)| n == *t))
            .ok_or_else(|| {
                DeployError::ForeignKeys(format!(
                    "table `{table}`: no free temporary name to move foreign key `{name}`"
                ))
            })?;
        run.push(format!(
            "ALTER TABLE {} DROP FOREIGN KEY {}, ADD CONSTRAINT {} {body}, ALGORITHM=INPLACE",
            q(table),
            q(name),
            q(via)
        ));
        run.push(format!(
            "ALTER TABLE {} DROP FOREIGN KEY {}, ADD {wanted}, ALGORITHM=INPLACE",
            q(table),
            q(via)
        ));
    } else {
        for (_, holder) in in_use.iter().filter(|(n, t)| n == name && t != table) {
            if !crate::is_artifact(holder) {
                return Err(DeployError::ForeignKeys(format!(
                    "table `{holder}` holds the name of foreign key `{name}` of table `{table}`"
                )));
            }
            run.push(format!(
                "ALTER TABLE {} DROP FOREIGN KEY {}, ALGORITHM=INPLACE",
                q(holder),
                q(name)
            ));
        }
        run.push(match &current {
            Some(c) => format!(
                "ALTER TABLE {} DROP FOREIGN KEY {}, ADD {wanted}, ALGORITHM=INPLACE",
                q(table),
                q(c)
            ),
            None => format!("ALTER TABLE {} ADD {wanted}, ALGORITHM=INPLACE", q(table)),
        });
    }
    for statement in run {
        held += ddl_with_timeout(conn, &statement, timeout, attempts).await?;
    }
    held += restore_index_names(conn, schema, table, &live.indexes, (timeout, attempts)).await?;
    Ok(held)
}

/// A table as the server has it now, `None` when it is not there.
async fn table_of(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<strata_schema::Table>> {
    let create: Option<(String, String)> = match conn
        .query_first(format!("SHOW CREATE TABLE {}.{}", q(schema), q(table)))
        .await
    {
        Err(e) if missing_table(&e) => return Ok(None),
        r => r?,
    };
    let Some((_, create)) = create else {
        return Ok(None);
    };
    strata_schema::parse_table(&create)
        .map(Some)
        .map_err(|e| DeployError::ForeignKeys(format!("table `{table}`: {e}")))
}

/// A table's foreign keys as `(name, definition)`, `None` when the table is not there.
async fn foreign_keys_of(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<Vec<(String, String)>>> {
    Ok(table_of(conn, schema, table).await?.map(|t| {
        t.foreign_keys
            .into_iter()
            .map(|f| (f.name, f.definition))
            .collect()
    }))
}

/// A key's definition without its name (`KEY (`a`)` for ``KEY `k` (`a`)``).
fn unnamed(index: &strata_schema::Index) -> String {
    index
        .definition
        .replacen(&format!("{} ", q(&index.name)), "", 1)
}

/// Gives back the names of keys the server renamed while foreign keys were dropped and added:
/// a key made for a foreign key is dropped with it and made again under the new key's name.
async fn restore_index_names(
    conn: &mut Conn,
    schema: &str,
    table: &str,
    before: &[strata_schema::Index],
    (timeout, attempts): (Duration, u32),
) -> Result<Duration> {
    let Some(after) = table_of(conn, schema, table).await? else {
        return Ok(Duration::ZERO);
    };
    let mut renames = Vec::new();
    for old in before {
        if after.indexes.iter().any(|i| i.name == old.name) {
            continue;
        }
        if let Some(new) = after
            .indexes
            .iter()
            .find(|i| !before.iter().any(|b| b.name == i.name) && unnamed(i) == unnamed(old))
        {
            renames.push(format!("RENAME INDEX {} TO {}", q(&new.name), q(&old.name)));
        }
    }
    if renames.is_empty() {
        return Ok(Duration::ZERO);
    }
    ddl_with_timeout(
        conn,
        &format!(
            "ALTER TABLE {} {}, ALGORITHM=INPLACE",
            q(table),
            renames.join(", ")
        ),
        timeout,
        attempts,
    )
    .await
}

/// The cut-over: in-place alters and dropped views first, then one atomic RENAME swapping every
/// table (writers wait at most `timeout` per attempt), then new and changed views. Returns how long
/// writers were held: the RENAMEs, and in-place alters that could not run beside them.
pub async fn cut_over(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    crate::gate::ALONE
        .scope(
            plan.moves_foreign_keys(),
            cut_over_steps(conn, schema, plan, timeout, attempts),
        )
        .await
}

async fn cut_over_steps(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    let mut stall = Duration::ZERO;
    let pairs = sql::cutover_pairs(plan);
    let done = if plan.marked {
        let have = existing(conn, schema, &pairs).await?;
        sql::renames_done(&pairs, |n| have.contains(n)).ok_or(DeployError::NotPrepared)?
    } else if placement(conn, schema, plan).await? == Placement::Before {
        0
    } else {
        pairs.len()
    };
    if done > 0 && done < pairs.len() {
        tracing::warn!(
            done,
            of = pairs.len(),
            "finishing a cut-over stopped in the middle"
        );
        stall = swap(
            conn,
            schema,
            plan,
            (&sql::cutover_groups(plan), &group_checks(plan, false), done),
            true,
            timeout,
            attempts,
        )
        .await?;
    }
    if done == 0 {
        finish_shadows(conn, schema, plan).await?;
        // A shadow with keys is checked as a child of their parents: alone, the keys are added
        // in the swap's own sequence, where no statement runs (a parent's delete refused by a
        // shadow's key named the shadow to the application).
        if !swaps_alone() {
            stall += add_shadow_foreign_keys(conn, schema, plan, timeout, attempts).await?;
        }
        check_new_foreign_keys(conn, schema, plan).await?;
        stall += direct_alters(conn, schema, plan, timeout, attempts).await?;
        for s in &plan.steps {
            if let Step::View { statement, .. } = s {
                if statement.starts_with("DROP VIEW ") {
                    conn.query_drop(sql::drop_view_if_exists(statement)).await?;
                }
            }
        }
        let t = Instant::now();
        carry_auto_increment(conn, schema, plan).await?;
        let counter = t.elapsed();
        forward_blockers(conn, plan).await?;
        let t = Instant::now();
        same_row_counts(conn, plan).await?;
        let counted = t.elapsed();
        let t = Instant::now();
        stall += swap(
            conn,
            schema,
            plan,
            (&sql::cutover_groups(plan), &group_checks(plan, false), 0),
            true,
            timeout,
            attempts,
        )
        .await?;
        tracing::debug!(
            counter_ms = counter.as_millis() as u64,
            count_ms = counted.as_millis() as u64,
            swap_ms = t.elapsed().as_millis() as u64,
            "cut-over steps"
        );
    }
    stall += settle_foreign_keys(conn, schema, plan, true, timeout, attempts).await?;
    for s in &plan.steps {
        if let Step::View {
            name, statement, ..
        } = s
        {
            if !statement.starts_with("DROP VIEW ") {
                if let Err(e) = conn.query_drop(sql::create_or_replace(statement)).await {
                    return Err(match e {
                        strata_engine::mysql_async::Error::Server(se) => {
                            DeployError::ViewRejected {
                                view: name.clone(),
                                message: se.message,
                            }
                        }
                        other => other.into(),
                    });
                }
            }
        }
    }
    Ok(stall)
}

/// Runs the RENAMEs of `groups` after the first `done` pairs, one table at a time (see
/// [`sql::renames_from`]); returns the time writers were held, summed. A whole group with a
/// blocked table (`checks`, by group) is renamed only if that table is empty at the very moment
/// of the RENAME (see [`checked_rename`]).
async fn renames(
    conn: &mut Conn,
    groups: &[Vec<(String, String)>],
    checks: &[Option<Check>],
    done: usize,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let mut stall = Duration::ZERO;
    let mut skip = done;
    for (i, g) in groups.iter().enumerate() {
        if skip >= g.len() {
            skip -= g.len();
            continue;
        }
        let whole = skip == 0;
        let rest = sql::renames_from(std::slice::from_ref(g), skip);
        skip = 0;
        match (whole, checks.get(i).cloned().flatten(), rest.first()) {
            (true, Some(check), Some(rename)) => {
                let tables: Vec<&str> = g.iter().map(|(from, _)| from.as_str()).collect();
                stall += checked_rename(conn, &tables, &check, rename, timeout, attempts).await?;
            }
            _ => {
                for rename in rest {
                    stall += ddl_with_timeout(conn, &rename, timeout, attempts).await?;
                }
            }
        }
    }
    Ok(stall)
}

/// The check of each group of [`sql::cutover_groups`] (or [`sql::revert_groups`]): a changed
/// table's blocked table, when the plan has one.
fn group_checks(plan: &Plan, revert: bool) -> Vec<Option<Check>> {
    plan.steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::AlterTable(a) => Some(
                if revert {
                    plan.blocked_per_table.then(|| plan.revert_blocked_for(i))
                } else {
                    plan.deploy_blocked_for(i)
                }
                .map(|blocked| Check {
                    table: a.table.clone(),
                    blocked,
                    revert,
                    names: [&a.shadow, &a.old, &a.stub]
                        .iter()
                        .map(|n| (n.to_string(), a.table.clone()))
                        .collect(),
                }),
            ),
            Step::CreateTable { .. } | Step::DropTable { .. } => Some(None),
            Step::DirectAlter { .. } | Step::View { .. } => None,
        })
        .collect()
}

/// What must hold at the instant a table is swapped: its blocked table (forward or revert
/// triggers' records of writes the other side refused) is empty.
#[derive(Debug, Clone)]
pub struct Check {
    pub table: String,
    pub blocked: String,
    pub revert: bool,
    /// Artifact names the server's reasons use, and the table the reviewer knows instead.
    pub names: Vec<(String, String)>,
}

/// `text` (a server's message) with every artifact name of the plan's changed tables replaced by
/// the table's own name.
pub fn plain_names(plan: &Plan, text: &str) -> String {
    // A trigger's statement writes one row: the server's "at row 1" says nothing.
    let text = text.replace(" at row 1", "");
    plan.online_alters().fold(text, |t, a| {
        [&a.shadow, &a.old, &a.stub, &a.aside, &a.reverted]
            .iter()
            .fold(t, |t, n| t.replace(n.as_str(), &a.table))
    })
}

/// One table's RENAME with its blockers read at the very moment of the swap: `LOCK TABLES` on
/// the group's tables and the blocked table (taken only when free, as any DDL here), the blocked
/// table read under it (no write can land meanwhile), then the RENAME sent on a second connection,
/// where it queues behind the locks, and the locks released once it waits: a pending exclusive
/// lock goes before the writers that queued meanwhile, so nothing is written between the check and
/// the swap. (MariaDB refuses RENAME under `LOCK TABLES` itself.) Writers are held from the lock
/// to the end of the RENAME.
async fn checked_rename(
    conn: &mut Conn,
    tables: &[&str],
    check: &Check,
    rename: &str,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let mut other = Conn::new(conn.opts().clone()).await?;
    let result = async {
        other
            .query_drop("SET SESSION foreign_key_checks = 0")
            .await?;
        let other_id = other.id();
        let mut locked: Vec<&str> = tables.to_vec();
        locked.push(&check.blocked);
        let locks = locked
            .iter()
            .map(|t| format!("{} WRITE", q(t)))
            .collect::<Vec<_>>()
            .join(", ");
        let (_alone, waited) =
            locked_alone(conn, &format!("LOCK TABLES {locks}"), timeout, attempts).await?;
        let held = Instant::now();
        refused_unlocking(conn, check).await?;
        let bounded = format!(
            "SET STATEMENT lock_wait_timeout={} FOR {rename}",
            timeout.as_secs_f64().ceil().max(1.0) as u64 + 5
        );
        let swap = other.query_drop(bounded);
        tokio::pin!(swap);
        // Released once the RENAME is seen queued (or after a moment regardless).
        let mut watcher = Conn::new(conn.opts().clone()).await;
        let queued_by = Instant::now() + Duration::from_secs(1);
        let mut swapped = None;
        loop {
            tokio::select! {
                r = &mut swap => { swapped = Some(r); break; }
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
            let waiting = match watcher.as_mut() {
                Ok(w) => w
                    .exec_first::<Option<String>, _, _>(
                        "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
                        (other_id,),
                    )
                    .await
                    .ok()
                    .flatten()
                    .flatten()
                    .is_some_and(|s| s.contains("metadata lock")),
                Err(_) => false,
            };
            if waiting || Instant::now() >= queued_by {
                break;
            }
        }
        if let Ok(w) = watcher {
            let _ = w.disconnect().await;
        }
        let unlocked = conn.query_drop("UNLOCK TABLES").await;
        let swapped = match swapped {
            Some(r) => r,
            None => swap.await,
        };
        unlocked?;
        swapped?;
        tracing::debug!(
            rename,
            ms = held.elapsed().as_millis() as u64,
            "checked rename done"
        );
        Ok(waited + held.elapsed())
    }
    .await;
    let _ = other.disconnect().await;
    result
}

/// What is left of a swap: the groups of RENAME pairs, each group's check, and how many pairs
/// are done already.
type Swap<'a> = (&'a [Vec<(String, String)>], &'a [Option<Check>], usize);

/// Under the caller's `LOCK TABLES`: a refusal the group's blocked table records ends the swap,
/// the lock released.
async fn refused_unlocking(conn: &mut Conn, check: &Check) -> Result<()> {
    match refusal(conn, check).await {
        Ok(None) => Ok(()),
        Ok(Some(refused)) => {
            conn.query_drop("UNLOCK TABLES").await?;
            Err(refused)
        }
        Err(e) => {
            let _ = conn.query_drop("UNLOCK TABLES").await;
            Err(e)
        }
    }
}

/// The refusal a group's blocked table records (read under the caller's lock), if any.
async fn refusal(conn: &mut Conn, check: &Check) -> Result<Option<DeployError>> {
    let reason: Option<String> = conn
        .query_first(format!(
            "SELECT `reason` FROM {} WHERE {} LIMIT 1",
            q(&check.blocked),
            sql::LIVE_RECORDS
        ))
        .await?;
    Ok(reason.map(|reason| {
        let reason = check
            .names
            .iter()
            .fold(reason.replace(" at row 1", ""), |r, (artifact, table)| {
                r.replace(artifact, table)
            });
        if check.revert {
            DeployError::RevertRefused {
                table: check.table.clone(),
                reason,
            }
        } else {
            DeployError::WriteRefused {
                table: check.table.clone(),
                reason,
            }
        }
    }))
}

/// The swap of a deployment that moves a foreign key's tables (see `gate::ALONE`), forward or
/// back: the RENAMEs and the settling of the keys (see [`settle_foreign_keys`]) as one sequence
/// with nothing of the application running. Between a RENAME and the ALTERs that point the keys
/// at the live tables again, a key checks a table set aside, which the triggers keep in step but
/// not for every write; no statement may run in that moment. The gate closes to every statement
/// and waits until none runs; every table the sequence touches is then locked at once (no
/// transaction under way holds one), the groups' blocked tables are read, and everything runs
/// without waiting. Otherwise the gate opens again for a moment and the whole is tried again.
#[allow(clippy::too_many_arguments)]
async fn swap_alone(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    gate: &Arc<crate::gate::Gate>,
    (groups, checks, done): Swap<'_>,
    forward: bool,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let until = Instant::now() + timeout * attempts.max(1);
    let present: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (schema,),
        )
        .await?;
    let mut touched: std::collections::BTreeSet<String> = Default::default();
    let mut skip = done;
    let mut remaining_checks = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if skip >= g.len() {
            skip -= g.len();
            continue;
        }
        if skip == 0 {
            remaining_checks.extend(checks.get(i).cloned().flatten());
        }
        touched.extend(g[skip..].iter().map(|(from, _)| from.clone()));
        skip = 0;
    }
    touched.extend(remaining_checks.iter().map(|c| c.blocked.clone()));
    // And every table the settling alters or needs: a foreign key's ALTER takes its parent's
    // lock too.
    for s in &plan.steps {
        match s {
            Step::AlterTable(a) => {
                touched.insert(a.table.clone());
                touched.extend([a.old.clone(), a.reverted.clone()]);
                touched.extend(a.children.iter().map(|c| c.table.clone()));
                touched.extend(a.foreign_keys.iter().filter_map(|f| f.parent()));
            }
            Step::DropTable {
                table,
                aside,
                foreign_keys,
            } => {
                touched.extend([table.clone(), aside.clone()]);
                touched.extend(foreign_keys.iter().filter_map(|f| f.parent()));
            }
            Step::CreateTable {
                table,
                staged,
                create,
            } => {
                touched.extend([table.clone(), staged.clone()]);
                if let Ok(t) = strata_schema::parse_table(create) {
                    touched.extend(
                        t.foreign_keys
                            .iter()
                            .filter_map(|f| f.foreign_key().map(|p| p.table)),
                    );
                }
            }
            Step::DirectAlter { .. } | Step::View { .. } => {}
        }
    }
    // And every table joined to those by foreign keys, however far: an ALTER of a table's keys
    // also takes the locks of the tables whose keys reference it (a revert waited 25 s on a
    // transaction holding a grandchild, which the gate held in turn).
    let edges: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
            (schema,),
        )
        .await?;
    loop {
        let more: Vec<String> = edges
            .iter()
            .filter_map(|(child, parent)| {
                match (touched.contains(child), touched.contains(parent)) {
                    (true, false) => Some(parent.clone()),
                    (false, true) => Some(child.clone()),
                    _ => None,
                }
            })
            .collect();
        if more.is_empty() {
            break;
        }
        touched.extend(more);
    }
    touched.retain(|t| present.contains(t));
    let lock = format!(
        "SET STATEMENT lock_wait_timeout=0 FOR LOCK TABLES {}",
        touched
            .iter()
            .map(|t| format!("{} WRITE", q(t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let locked_tables: Vec<String> = touched.iter().cloned().collect();
    let (mut held_since, mut last_forced) = (None, None);
    loop {
        // After the step's DDL before it, a rest for the transactions under way (see
        // `gate::alone`).
        let rest = gate.rest_left();
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
        let started = Instant::now();
        let closed = gate.close_all();
        let ready = gate.idle(crate::gate::GATE_HOLD).await
            && match conn.query_drop(lock.as_str()).await {
                Ok(()) => true,
                Err(e) if lock_timeout(&e) => false,
                Err(e) => return Err(e.into()),
            };
        if !ready {
            drop(closed);
            if Instant::now() >= until {
                return Err(DeployError::LockTimeout {
                    tables: application_tables(&lock),
                    detail: "transactions kept them busy the whole time".into(),
                });
            }
            force_alone(conn, &mut held_since, &mut last_forced, &locked_tables).await?;
            // The transactions under way go on a moment before the next try.
            tokio::time::sleep(crate::gate::ALONE_REST).await;
            continue;
        }
        for check in &remaining_checks {
            refused_unlocking(conn, check).await?;
        }
        conn.query_drop("UNLOCK TABLES").await?;
        if forward && done == 0 {
            add_shadow_foreign_keys(conn, schema, plan, timeout, attempts).await?;
        }
        for rename in sql::renames_from(groups, done) {
            ddl_with_timeout(conn, &rename, timeout, attempts).await?;
        }
        settle_foreign_keys(conn, schema, plan, forward, timeout, attempts).await?;
        drop(closed);
        return Ok(started.elapsed());
    }
}

/// True when the swap runs alone (see [`swap_alone`]): a deployment that moves a foreign key's
/// tables, with its branch's gate at hand.
fn swaps_alone() -> bool {
    crate::gate::ALONE.try_with(|a| *a).unwrap_or(false)
        && crate::gate::BRANCH_GATE.try_with(|_| ()).is_ok()
}

/// The RENAMEs of `groups` after the first `done` (see [`renames`]); for a deployment that moves
/// a foreign key's tables, with the keys' settling, alone (see [`swap_alone`]).
#[allow(clippy::too_many_arguments)]
async fn swap(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    (groups, checks, done): Swap<'_>,
    forward: bool,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    let alone = crate::gate::ALONE.try_with(|a| *a).unwrap_or(false);
    match crate::gate::BRANCH_GATE.try_with(Arc::clone).ok() {
        Some(gate) if alone => {
            swap_alone(
                conn,
                schema,
                plan,
                &gate,
                (groups, checks, done),
                forward,
                timeout,
                attempts,
            )
            .await
        }
        _ => renames(conn, groups, checks, done, timeout, attempts).await,
    }
}

/// Why a revert would lose data, per table: the first reason recorded and how many rows are
/// recorded (empty: it would not).
pub async fn revert_blockers(conn: &mut Conn, plan: &Plan) -> Result<Vec<(String, String, u64)>> {
    let union = plan
        .revert_blocked_tables()
        .iter()
        .map(|t| {
            format!(
                "SELECT `table_name`, `reason` FROM {} WHERE {}",
                q(t),
                sql::LIVE_RECORDS
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = conn
        .query(format!(
            "SELECT `table_name`, MIN(`reason`), COUNT(*) FROM ({union}) b GROUP BY `table_name` ORDER BY `table_name`"
        ))
        .await;
    match rows {
        Ok(rows) => Ok(rows),
        // The deployment's artifacts are gone (dropped by hand): the old tables with them.
        Err(e) if missing_table(&e) => Err(DeployError::NotPrepared),
        Err(e) => Err(e.into()),
    }
}

/// True when none of the cut-over's RENAMEs has been made (a marked plan; else `true`).
pub async fn cutover_untouched(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<bool> {
    if !plan.marked {
        return Ok(true);
    }
    let pairs = sql::cutover_pairs(plan);
    let have = existing(conn, schema, &pairs).await?;
    Ok(sql::renames_done(&pairs, |n| have.contains(n)) == Some(0))
}

/// True when none of the revert's RENAMEs has been made (a marked plan; else `false`): a revert
/// that stopped before its first swap leaves the deployment as it was, its window open.
pub async fn revert_untouched(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<bool> {
    if !plan.marked {
        return Ok(false);
    }
    let pairs = sql::revert_pairs(plan);
    let have = existing(conn, schema, &pairs).await?;
    Ok(sql::renames_done(&pairs, |n| have.contains(n)) == Some(0))
}

/// The revert: one atomic RENAME puts the old tables back (they hold every write made since the
/// cut-over), then the views are restored and the forward triggers, now pointless, dropped.
pub async fn revert(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    crate::gate::ALONE
        .scope(
            plan.moves_foreign_keys(),
            revert_steps(conn, schema, plan, timeout, attempts),
        )
        .await
}

async fn revert_steps(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    timeout: Duration,
    attempts: u32,
) -> Result<Duration> {
    // Views the deployment made go first: one may stand where a dropped table comes back.
    for st in &plan.steps {
        if let Step::View {
            name, old: None, ..
        } = st
        {
            conn.query_drop(format!("DROP VIEW IF EXISTS {}", q(name)))
                .await?;
        }
    }
    let mut stall = Duration::ZERO;
    let pairs = sql::revert_pairs(plan);
    let done = if plan.marked {
        let have = existing(conn, schema, &pairs).await?;
        match sql::renames_done(&pairs, |n| have.contains(n)) {
            Some(done) => done,
            // Swapped back and partly cleaned up (stopped during the clean-up): the marker,
            // dropped last, says so.
            None if exists(conn, schema, &plan.marker(Mark::Reverted))
                .await?
                .is_some() =>
            {
                pairs.len()
            }
            None => return Err(DeployError::NotPrepared),
        }
    } else if placement(conn, schema, plan).await? == Placement::Swapped {
        0
    } else {
        pairs.len()
    };
    if done < pairs.len() {
        if done > 0 {
            tracing::warn!(
                done,
                of = pairs.len(),
                "finishing a revert stopped in the middle"
            );
        }
        stall = swap(
            conn,
            schema,
            plan,
            (&sql::revert_groups(plan), &group_checks(plan, true), done),
            false,
            timeout,
            attempts,
        )
        .await?;
    }
    stall += settle_foreign_keys(conn, schema, plan, false, timeout, attempts).await?;
    for s in plan.steps.iter().rev() {
        if let Step::View { name, old, .. } = s {
            match old {
                Some(create) => conn.query_drop(sql::create_or_replace(create)).await?,
                None => {
                    conn.query_drop(format!("DROP VIEW IF EXISTS {}", q(name)))
                        .await?
                }
            }
        }
    }
    Ok(stall)
}

/// Instant deploy: every ALTER is first tried with `ALGORITHM=INSTANT` on an empty copy of its
/// table; only when all qualify is anything changed. Returns the reason when one does not.
pub async fn instant_eligible(conn: &mut Conn, plan: &Plan) -> Result<Option<String>> {
    for (i, s) in plan.steps.iter().enumerate() {
        match s {
            Step::AlterTable(a) => {
                let probe = format!("{}{}_{i}_probe", plan.table_prefix(), plan.tag);
                conn.query_drop(format!("DROP TABLE IF EXISTS {}", q(&probe)))
                    .await?;
                conn.query_drop(format!("CREATE TABLE {} LIKE {}", q(&probe), q(&a.table)))
                    .await?;
                let r = conn.query_drop(sql::instant_alter(a, Some(&probe))).await;
                conn.query_drop(format!("DROP TABLE IF EXISTS {}", q(&probe)))
                    .await?;
                if let Err(e) = r {
                    return Ok(Some(format!(
                        "the change to table `{}` cannot be made instantly: {e}",
                        a.table
                    )));
                }
            }
            Step::DirectAlter { table, .. } => {
                return Ok(Some(format!(
                    "table `{table}` is changed in place (foreign keys that cannot move with a copy, or partition operations); its change cannot be made instantly"
                )))
            }
            _ => {}
        }
    }
    Ok(None)
}

/// An in-place change the server can make only by holding the table's writers while it rebuilds
/// the table (see [`alter_without_blocking`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingChange {
    pub table: String,
    /// The server's reason (its `LOCK=NONE is not supported. Reason: …`).
    pub reason: String,
    /// The server's estimate of the table's rows.
    pub rows: u64,
}

/// Finds, before a deploy, which in-place changes of `plan` the server could not make online:
/// each is tried as `ALGORITHM=INPLACE, LOCK=NONE` on an empty copy of its table in a scratch
/// database (the server decides by the definition, not the rows), so the deploy request says so
/// before anything is queued. Partition operations take no such clause and are left out.
pub async fn in_place_blocking(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
) -> Result<Vec<BlockingChange>> {
    let direct: Vec<(&String, &Vec<String>)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::DirectAlter {
                table, statements, ..
            } => Some((table, statements)),
            _ => None,
        })
        .collect();
    if direct.is_empty() {
        return Ok(Vec::new());
    }
    // The server's verdict depends on the table's definition and the statements only: kept, so a
    // request looked at again (every listing of the requests) makes no scratch database again.
    static VERDICTS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<u64, Vec<String>>>,
    > = std::sync::LazyLock::new(Default::default);
    let verdicts = || VERDICTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut judged = Vec::new();
    let mut to_probe = Vec::new();
    for (table, statements) in direct {
        let create: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE {}.{}", q(schema), q(table)))
            .await?;
        let Some((_, create)) = create else { continue };
        let rows: Option<u64> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (schema, table),
            )
            .await
            .unwrap_or(None);
        // Partitions are left out with the operations on them: the table's other changes are
        // judged on the table alone.
        let plain = strata_engine::admin::strip_auto_increment(&create);
        let plain = plain
            .split_once("\n PARTITION BY ")
            .or_else(|| plain.split_once(" PARTITION BY "))
            .map_or(plain.as_str(), |(head, _)| head)
            .to_string();
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&plain, statements).hash(&mut h);
            h.finish()
        };
        if verdicts().get(&key).is_none() {
            to_probe.push((key, plain, statements));
        }
        judged.push((table, key, rows.unwrap_or(0)));
    }
    if !to_probe.is_empty() {
        let probed = probe_in_scratch(conn, schema, plan, &to_probe).await?;
        let mut v = verdicts();
        if v.len() > 4096 {
            v.clear();
        }
        v.extend(probed);
    }
    let v = verdicts();
    Ok(judged
        .into_iter()
        .flat_map(|(table, key, rows)| {
            v.get(&key)
                .into_iter()
                .flatten()
                .map(move |reason| BlockingChange {
                    table: table.clone(),
                    reason: reason.clone(),
                    rows,
                })
        })
        .collect())
}

/// Tries each table's statements on an empty copy of it in a scratch database (see
/// [`in_place_blocking`]): the server's reasons, per table.
async fn probe_in_scratch(
    conn: &mut Conn,
    schema: &str,
    plan: &Plan,
    tables: &[(u64, String, &Vec<String>)],
) -> Result<Vec<(u64, Vec<String>)>> {
    // Its own scratch database: two checks of one request at once must not drop each other's.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = format!("{}{}_probe{n}", plan.table_prefix(), plan.tag);
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS {}", q(&scratch)))
        .await?;
    conn.query_drop(format!("CREATE DATABASE {}", q(&scratch)))
        .await?;
    let mut found = Vec::new();
    let mut outcome = Ok(());
    for (key, create, statements) in tables {
        if let Err(e) = conn.query_drop(format!("USE {}", q(&scratch))).await {
            outcome = Err(e.into());
            break;
        }
        if let Err(e) = conn.query_drop(create.as_str()).await {
            outcome = Err(e.into());
            break;
        }
        let mut reasons = Vec::new();
        for st in statements.iter() {
            if st.to_ascii_uppercase().contains("PARTITION") {
                continue;
            }
            let online = format!("{}, ALGORITHM=INPLACE, LOCK=NONE", st.trim_end_matches(';'));
            match conn.query_drop(online).await {
                Ok(()) => {}
                Err(strata_engine::mysql_async::Error::Server(e))
                    if matches!(e.code, 1845 | 1846) =>
                {
                    reasons.push(e.message.clone());
                    // The change is judged; the rest of the table's statements build on it.
                    let _ = conn.query_drop(st.as_str()).await;
                }
                // Anything else (a key the empty copy cannot take) says nothing of blocking.
                Err(_) => {}
            }
        }
        found.push((*key, reasons));
    }
    let _ = conn.query_drop(format!("USE {}", q(schema))).await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS {}", q(&scratch)))
        .await?;
    outcome.map(|()| found)
}

/// Applies an instant deploy (after [`instant_eligible`]): creates, instant alters, drops, views.
async fn instant_ddl(conn: &mut Conn, statement: &str) -> Result<Duration> {
    ddl_with_timeout(conn, statement, Duration::from_millis(500), 20).await
}

pub async fn instant(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    crate::gate::ALONE
        .scope(plan.moves_foreign_keys(), instant_steps(conn, schema, plan))
        .await
}

async fn instant_steps(conn: &mut Conn, schema: &str, plan: &Plan) -> Result<()> {
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    // Each statement takes its locks only when they are free, as every other step's DDL: queued
    // behind a long transaction, it held every writer of the table for as long.
    for s in &plan.steps {
        match s {
            Step::CreateTable {
                table,
                staged,
                create,
            } => {
                if exists(conn, schema, table).await?.is_none() {
                    instant_ddl(conn, &create.replacen(&q(staged), &q(table), 1)).await?;
                }
            }
            Step::AlterTable(a) => {
                instant_ddl(conn, &sql::instant_alter(a, None)).await?;
            }
            Step::DropTable { table, .. } => {
                instant_ddl(conn, &format!("DROP TABLE IF EXISTS {}", q(table))).await?;
            }
            Step::View { statement, .. } => {
                let st = if statement.starts_with("DROP VIEW ") {
                    sql::drop_view_if_exists(statement)
                } else {
                    sql::create_or_replace(statement)
                };
                instant_ddl(conn, &st).await?;
            }
            Step::DirectAlter { .. } => {}
        }
    }
    Ok(())
}

/// Threads running on the instance now (the throttler's load signal).
pub async fn threads_running(conn: &mut Conn) -> Result<u64> {
    let row: Option<(String, String)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
        .await?;
    Ok(row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0))
}

/// Escapes a table name for a quoted literal (used in messages and information_schema lookups).
pub fn literal(s: &str) -> String {
    format!("'{}'", sql_string(s))
}

/// A table's rows as SQL literals, with its column names (the migration table's log of applied
/// migrations, copied with a deploy and restored by a revert).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableRows {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A migration log past this many rows is not one: the setting names some other table, whose
/// content a deploy must not replace.
pub const MIGRATION_ROWS_LIMIT: u64 = 10_000;

/// Reads every row of `table`, or `None` when the schema has no such table.
pub async fn read_rows(conn: &mut Conn, schema: &str, table: &str) -> Result<Option<TableRows>> {
    if exists(conn, schema, table).await?.is_none() {
        return Ok(None);
    }
    let columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND IS_GENERATED = 'NEVER' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    let list = columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT {list} FROM {}.{} LIMIT {}",
            q(schema),
            q(table),
            MIGRATION_ROWS_LIMIT + 1
        ))
        .await?;
    if rows.len() as u64 > MIGRATION_ROWS_LIMIT {
        return Err(DeployError::MigrationTableTooLarge {
            table: table.to_string(),
            limit: MIGRATION_ROWS_LIMIT,
        });
    }
    Ok(Some(TableRows {
        table: table.to_string(),
        columns,
        rows: rows.into_iter().map(literals).collect(),
    }))
}

/// Makes `rows` the whole content of their table, in one transaction (columns the table no longer
/// has are left out). Nothing happens when the table is gone.
pub async fn replace_rows(conn: &mut Conn, schema: &str, rows: &TableRows) -> Result<()> {
    let Some(now) = read_columns(conn, schema, &rows.table).await? else {
        return Ok(());
    };
    let keep: Vec<usize> = (0..rows.columns.len())
        .filter(|&i| now.contains(&rows.columns[i]))
        .collect();
    let cols: Vec<String> = keep.iter().map(|&i| rows.columns[i].clone()).collect();
    let tuples: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
        .collect();
    write_rows(conn, schema, &rows.table, true, &cols, &tuples).await
}

/// Inserts `tuples` (SQL literals for `cols`) into the table in one transaction, after deleting
/// its rows when `replace`; rolled back whole on any error.
async fn write_rows(
    conn: &mut Conn,
    schema: &str,
    table: &str,
    replace: bool,
    cols: &[String],
    tuples: &[Vec<String>],
) -> Result<()> {
    let table = format!("{}.{}", q(schema), q(table));
    let cols = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    conn.query_drop("BEGIN").await?;
    let result = async {
        if replace {
            conn.query_drop(format!("DELETE FROM {table}")).await?;
        }
        if !cols.is_empty() {
            for chunk in tuples.chunks(500) {
                let values = chunk
                    .iter()
                    .map(|r| format!("({})", r.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ");
                conn.query_drop(format!("INSERT INTO {table} ({cols}) VALUES {values}"))
                    .await?;
            }
        }
        Ok::<(), strata_engine::mysql_async::Error>(())
    }
    .await;
    match result {
        Ok(()) => Ok(conn.query_drop("COMMIT").await?),
        Err(e) => {
            let _ = conn.query_drop("ROLLBACK").await;
            Err(e.into())
        }
    }
}

/// Adds to the target's migration log the rows of `rows` (the source branch's) it lacks, matched
/// on every column but an auto-increment id (each server numbers its own), in one transaction; a
/// table of heads (see [`strata_model::migration_data::keeps_heads`]) is replaced instead.
pub async fn merge_rows(
    conn: &mut Conn,
    schema: &str,
    rows: &TableRows,
) -> Result<Option<TableRows>> {
    if strata_model::migration_data::keeps_heads(&rows.table) {
        replace_rows(conn, schema, rows).await?;
        return Ok(None);
    }
    let Some(target) = read_rows(conn, schema, &rows.table).await? else {
        return Ok(None);
    };
    let counters: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA LIKE '%auto_increment%'",
            (schema, &rows.table),
        )
        .await?;
    let added = crate::rows_to_add(&target, rows, &counters);
    if !added.rows.is_empty() {
        write_rows(
            conn,
            schema,
            &rows.table,
            false,
            &added.columns,
            &added.rows,
        )
        .await?;
    }
    Ok(Some(added))
}

/// Takes rows [`merge_rows`] added back out (one matching row each), in one transaction.
pub async fn delete_rows(conn: &mut Conn, schema: &str, rows: &TableRows) -> Result<()> {
    let table = format!("{}.{}", q(schema), q(&rows.table));
    conn.query_drop("BEGIN").await?;
    let result = async {
        for r in &rows.rows {
            let matches = rows
                .columns
                .iter()
                .zip(r)
                .map(|(c, v)| format!("{} <=> {v}", q(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            if matches.is_empty() {
                continue;
            }
            conn.query_drop(format!("DELETE FROM {table} WHERE {matches} LIMIT 1"))
                .await?;
        }
        Ok::<_, DeployError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(conn.query_drop("COMMIT").await?),
        Err(e) => {
            let _ = conn.query_drop("ROLLBACK").await;
            Err(e)
        }
    }
}

/// What a revert does to the target's migration log: the rows the deploy added taken out, or
/// (a log of heads, or a deployment from before rows were tracked) the log put back as it was.
pub async fn undo_migration_rows(conn: &mut Conn, schema: &str, p: &crate::Progress) -> Result<()> {
    match (&p.migration_rows_added, &p.migration_rows_before) {
        (Some(added), _) => delete_rows(conn, schema, added).await,
        (None, Some(before)) => replace_rows(conn, schema, before).await,
        (None, None) => Ok(()),
    }
}

async fn read_columns(conn: &mut Conn, schema: &str, table: &str) -> Result<Option<Vec<String>>> {
    if exists(conn, schema, table).await?.is_none() {
        return Ok(None);
    }
    let columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    Ok(Some(columns))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_delay_names_the_applications_tables_only() {
        use super::application_tables;
        assert_eq!(
            application_tables("LOCK TABLES `users` WRITE, `~strata_6e3d8852_0_new_users` WRITE, `~strata_6e3d8852_0_old_users` WRITE, `users` READ"),
            "`users`"
        );
        assert_eq!(
            application_tables("RENAME TABLE `a``b` TO `~strata_1_0_old_a`, `c` TO `d`"),
            "`a``b`, `c`, `d`"
        );
        assert_eq!(
            application_tables("DROP TRIGGER `_strata_x_0_fi`"),
            "its tables"
        );
        assert_eq!(
            application_tables("ALTER TABLE `chi` ADD COLUMN `c12` int(11), ADD KEY `v` (`v`), ALGORITHM=INPLACE, LOCK=NONE"),
            "`chi`"
        );
        assert_eq!(
            application_tables("LOCK TABLES `unterminated"),
            "its tables"
        );
    }

    #[test]
    fn counts_read_from_the_servers_info() {
        for (info, records, duplicates) in [
            (
                "Records: 2000  Duplicates: 13  Warnings: 13",
                Some(2000),
                Some(13),
            ),
            ("Records: 0  Duplicates: 0  Warnings: 0", Some(0), Some(0)),
            ("", None, None),
            ("Rows matched: 1  Changed: 1  Warnings: 0", None, None),
        ] {
            assert_eq!(super::info_count(info, "Records:"), records, "{info}");
            assert_eq!(super::info_count(info, "Duplicates:"), duplicates, "{info}");
        }
    }
}
