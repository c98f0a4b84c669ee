//! Forced cut-over: ending the queries and transactions that keep a deploy step from the table
//! locks it needs. As on PlanetScale, a step first waits and tries again (the branch's gate helps
//! short transactions out of the way); a long transaction, or a stream of overlapping ones, can
//! keep a table busy for good, so the control plane forces the step once it has waited long
//! enough, or at once when the database's aggressive cut-over setting is on or the deploy
//! request's force-cutover was asked for. It then scopes the step with [`FORCE`].
//!
//! Only the front doors' connections are ended: never the control plane's own (the deploy's
//! copier and its second connection run as the same user as the step) nor the server's threads.
//! Each one is marked on the branch's gate before it is ended, so the gateway tells its client
//! that a cut-over ended its transaction, and that nothing of it was committed.

use crate::gate::Gate;
use crate::DeployError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_engine::mysql_async::prelude::Queryable;
use strata_engine::mysql_async::Conn;
use strata_model::role::sql_string;

/// How long a forced step still tries on its own (the gate closed) before it ends anyone: the
/// transactions that would finish in that moment are spared. Shorter than the gate's hold, so
/// the step takes its locks while new transactions are still held back.
pub const FORCE_GRACE: Duration = Duration::from_millis(150);

tokio::task_local! {
    /// Set by the control plane around a step it forces.
    pub static FORCE: Arc<Force>;
}

/// Whether a step may end the holders of its tables now (asked again as the step waits, so a
/// force asked for, or a wait that passes its bound, takes effect in the middle of a try).
pub type Armed = Box<dyn Fn() -> bool + Send + Sync>;

/// What a forced step may end: holders of the deployment's tables, once `armed` says so.
pub struct Force {
    pub schema: String,
    /// The application's names of the tables and views the deployment changes.
    pub tables: Vec<String>,
    armed: Armed,
    ended: AtomicU64,
    /// Connections already ended (one still rolling back is listed as a holder again).
    ended_ids: std::sync::Mutex<std::collections::HashSet<u64>>,
}

impl std::fmt::Debug for Force {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Force")
            .field("schema", &self.schema)
            .field("tables", &self.tables)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Force {
    pub fn new(schema: &str, tables: Vec<String>, armed: Armed) -> Arc<Force> {
        Arc::new(Force {
            schema: schema.to_string(),
            tables,
            armed,
            ended: AtomicU64::new(0),
            ended_ids: Default::default(),
        })
    }

    /// True when the step may end the holders of its tables now.
    pub fn armed(&self) -> bool {
        (self.armed)()
    }

    /// How many connections this force has ended.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }
}

/// The server's view of who holds metadata locks (MariaDB's `metadata_lock_info` plugin, shipped
/// with the server), loaded once per instance.
async fn ensure_lock_info(conn: &mut Conn) -> Result<(), DeployError> {
    let have: Option<String> = conn
        .query_first("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'")
        .await?;
    if have.as_deref() != Some("ACTIVE") {
        conn.query_drop("INSTALL SONAME 'metadata_lock_info'")
            .await?;
    }
    Ok(())
}

/// The statement listing the other users' connections that hold a metadata lock on one of the
/// force's tables, with the table (pure, for the tests).
pub fn holders_query(force: &Force) -> Option<String> {
    holders_query_of(force, &[])
}

/// [`holders_query`] for the force's tables and `more` (tables joined to them by foreign keys,
/// which a step alone locks too).
fn holders_query_of(force: &Force, more: &[String]) -> Option<String> {
    let mut tables: Vec<&String> = Vec::new();
    for t in force.tables.iter().chain(more) {
        if !tables.contains(&t) {
            tables.push(t);
        }
    }
    if tables.is_empty() {
        return None;
    }
    let names = tables
        .iter()
        .map(|t| format!("'{}'", sql_string(t)))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "SELECT m.THREAD_ID, MIN(m.TABLE_NAME) FROM information_schema.METADATA_LOCK_INFO m \
         JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID \
         WHERE BINARY m.TABLE_SCHEMA = '{}' AND BINARY m.TABLE_NAME IN ({names}) AND p.ID <> CONNECTION_ID() \
         AND p.USER <> SUBSTRING_INDEX(USER(), '@', 1) AND p.USER NOT IN ('system user', 'event_scheduler') \
         AND p.COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Slave_IO', 'Slave_SQL', 'Slave_worker') \
         AND NOT (p.COMMAND = 'Query' AND (p.INFO LIKE 'COMMIT%' OR p.INFO LIKE 'XA COMMIT%')) \
         GROUP BY m.THREAD_ID",
        sql_string(&force.schema)
    ))
}

/// Ends every other user's connection holding a metadata lock on the force's tables; returns how
/// many. A connection gone meanwhile is not counted, nor one ended before (still rolling back).
/// One running a COMMIT is left to finish: ended then, whether it committed would be unknown to
/// its client; the next round finds it gone, or holding the table again.
pub async fn end_holders(
    conn: &mut Conn,
    force: &Force,
    gate: Option<&Arc<Gate>>,
) -> Result<u64, DeployError> {
    end_holders_of(conn, force, gate, &[]).await
}

/// [`end_holders`] of the force's tables and of `more`.
pub async fn end_holders_of(
    conn: &mut Conn,
    force: &Force,
    gate: Option<&Arc<Gate>>,
    more: &[String],
) -> Result<u64, DeployError> {
    let Some(query) = holders_query_of(force, more) else {
        return Ok(0);
    };
    ensure_lock_info(conn).await?;
    let holders: Vec<(u64, String)> = conn.query(query).await?;
    let mut ended = 0;
    for (thread, table) in holders {
        let first = force
            .ended_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(thread);
        if !first {
            continue;
        }
        if let Some(g) = gate {
            g.mark_ended(thread, &table);
        }
        match conn.query_drop(format!("KILL CONNECTION {thread}")).await {
            Ok(()) => {
                if let Some(g) = gate {
                    g.mark_killed(thread);
                }
                ended += 1;
                tracing::warn!(
                    thread,
                    table = %table,
                    "forced cut-over: ended a connection holding the table"
                );
            }
            // Unknown thread: it ended on its own.
            Err(strata_engine::mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(e) => return Err(e.into()),
        }
    }
    force.ended.fetch_add(ended, Ordering::Relaxed);
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_looked_up_only_for_the_deployments_tables() {
        let armed = || -> Armed { Box::new(|| true) };
        assert_eq!(holders_query(&Force::new("shop", vec![], armed())), None);
        let tables = vec!["users".into(), "o'rders".into()];
        let q = holders_query(&Force::new("shop", tables, armed())).unwrap();
        // Names compared exactly: information_schema's collation folds case and accents, and
        // `T1` or `ť1` is another table than `t1` on the server.
        assert!(q.contains("BINARY m.TABLE_SCHEMA = 'shop'"), "{q}");
        assert!(q.contains("BINARY m.TABLE_NAME IN"), "{q}");
        assert!(q.contains("IN ('users', 'o''rders')"), "{q}");
        assert!(q.contains("p.USER <> SUBSTRING_INDEX(USER(), '@', 1)"));
        assert!(q.contains("p.ID <> CONNECTION_ID()"));
        assert!(q.contains("p.INFO LIKE 'COMMIT%'"), "{q}");
    }
}
