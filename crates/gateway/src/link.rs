//! The backend layer both front doors use — the MySQL port's sessions and the HTTP SQL endpoint:
//! where a login's branch runs, pooled connections as its role user (each pool bounded), the
//! statement time limits, the row-limit guard on UPDATE and DELETE, stopping a query on the
//! instance, and the errors a client hears when the branch cannot be reached. Each rule is written
//! here once; the edges only translate (MySQL packets, or the HTTP endpoint's JSON).

use crate::backend::{Backend, BackendError};
use crate::pool::{Lease, PoolError, PoolKey, Target};
use crate::{Gateway, Limits};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_control::Login;
use strata_engine::config::ROOT_USER;
use strata_wire::codec::Frame;
use strata_wire::packets::ErrPacket;
use strata_wire::tracker::{Event, Expect, Tracker};

/// The error a client hears when its branch cannot serve it right now.
pub(crate) fn unavailable(detail: impl std::fmt::Display) -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        format!("branch is not available right now, retry shortly: {detail}"),
    )
}

pub(crate) fn row_count_exceeded(max: u64) -> ErrPacket {
    ErrPacket::new(1105, "HY000", format!("Row count exceeded {max}"))
}

pub(crate) fn result_too_large(bytes: u64, max: u64) -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        format!("resource_exhausted: result set larger than max ({bytes} vs. {max})"),
    )
}

/// A transaction the gateway rolled back at its time limit, in Vitess's words: what the client's
/// next statement in it hears, on either front door.
pub(crate) fn transaction_aborted(id: &str, limit: Duration) -> String {
    format!(
        "vttablet: rpc error: code = Aborted desc = transaction {id}: ended (exceeded timeout: {}s): it was rolled back and nothing of it was committed",
        limit.as_secs()
    )
}

/// Table locks (`LOCK TABLES`, outside a transaction) the gateway released at the transaction time
/// limit: what ran under them was committed statement by statement, and stays.
pub(crate) fn locks_released(limit: Duration) -> String {
    format!(
        "table locks held longer than the transaction timeout ({}s) were released (UNLOCK TABLES); statements run under them had already committed",
        limit.as_secs()
    )
}

/// What a session had going on its instance connection when the connection ended.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lost {
    /// A transaction was open, or autocommit is off (nothing commits but by a statement that
    /// commits).
    pub in_transaction: bool,
    /// The text in flight may commit (`COMMIT`, a statement that commits implicitly, several
    /// statements): the server may have committed before the connection ended.
    pub committing: bool,
    /// When the session sent the command in flight.
    pub sent_at: Option<Instant>,
}

/// Why a forced cut-over ended a client's work, and what became of it: nothing committed when
/// that is certain (a transaction ended before anything committed it, or a command the server
/// never ran because it had already ended the connection), else unknown, never "run it again".
pub(crate) fn ended_by_cutover_message(table: &str, lost: Lost, before_sent: bool) -> String {
    let why = format!("a deploy request's cut-over or revert needed table `{table}` and could not wait any longer (forced cut-over)");
    let certain = before_sent || (lost.in_transaction && !lost.committing);
    match (lost.in_transaction, certain) {
        (true, true) => format!("transaction ended: {why}; it was rolled back and nothing of it was committed"),
        (true, false) => format!("transaction ended while a statement that commits it ran: {why}; whether it was committed is unknown: check before running it again"),
        (false, true) => format!("query ended before it ran: {why}; nothing of it was committed"),
        (false, false) => format!("query ended: {why}; if it changed rows, whether they were committed is unknown: check before running it again"),
    }
}

/// Added to what a client hears when its instance connection ended while the session held state
/// there: the gateway then closes the client's connection, as the server would have.
pub(crate) const SESSION_STATE_LOST: &str = "; the session's state on the instance (autocommit, variables, temporary tables, named locks, prepared statements) went with it, so this connection is closed: reconnect";

/// The time limit the gateway itself puts on a statement (the query is stopped on the instance
/// when it passes): a directive's shorter one, and inside a transaction what is left of the
/// transaction's time (the transaction is then rolled back before the client's next statement is
/// read). The default limit is not timed here: it is each role connection's `max_statement_time`
/// on the instance (lifted for OLAP sessions), which costs nothing per query.
pub(crate) fn statement_timeout(
    limits: &Limits,
    directive_ms: Option<u64>,
    in_tx: bool,
    transaction_left: Option<Duration>,
) -> Option<Duration> {
    let asked = directive_ms
        .map(Duration::from_millis)
        .filter(|d| *d < limits.query_timeout);
    let left = transaction_left
        .filter(|_| in_tx)
        .map(|l| l.max(Duration::from_millis(1)));
    match (asked, left) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// A compound statement runs its statements each under the instance's `max_statement_time`, so a
/// loop of them never meets it: the gateway times the whole text instead (but for OLAP sessions).
pub(crate) fn compound_timeout(
    a: &strata_sqlscan::Analysis,
    limits: &Limits,
    olap: bool,
    timeout: Option<Duration>,
) -> Option<Duration> {
    if olap || !a.statements.iter().any(|s| s.compound) {
        return timeout;
    }
    Some(timeout.map_or(limits.query_timeout, |t| t.min(limits.query_timeout)))
}

/// A text that would lift the statement time limit: `max_statement_time` set to 0 (none), past
/// the query timeout, or to anything but a plain number (`DEFAULT` is the instance's, which has
/// none). Only an OLAP session runs without it (`SET workload = olap`), as on PlanetScale.
pub(crate) fn time_limit_refusal(
    a: &strata_sqlscan::Analysis,
    limits: &Limits,
    olap: bool,
) -> Option<ErrPacket> {
    if olap {
        return None;
    }
    let max = limits.query_timeout.as_millis() as u64;
    a.time_limits()
        .any(|v| v.is_none_or(|ms| ms == 0 || ms > max))
        .then(|| {
            ErrPacket::new(
                1105,
                "HY000",
                format!(
                    "max_statement_time can be set only to a number of seconds up to the query timeout ({} s); SET workload = olap lifts the limit",
                    limits.query_timeout.as_secs()
                ),
            )
        })
}

/// Statements a client prepared with SQL (`PREPARE name FROM 'text'`; text built at run time is
/// refused), by name: whether each changes rows, so its `EXECUTE` runs under the row limit.
#[derive(Debug, Default)]
pub(crate) struct SqlPrepared(std::collections::HashMap<String, bool>);

impl SqlPrepared {
    /// True when the text executes a statement that changes rows, or one never seen prepared.
    pub fn executes_rows(&self, a: &strata_sqlscan::Analysis) -> bool {
        a.statements.iter().any(|s| {
            s.keyword == "EXECUTE"
                && s.prepared_name
                    .as_ref()
                    .is_some_and(|n| self.0.get(n).copied().unwrap_or(true))
        })
    }

    /// Follows the text's PREPARE and DEALLOCATE statements.
    pub fn follow(&mut self, a: &strata_sqlscan::Analysis) {
        for s in &a.statements {
            match (s.keyword.as_str(), &s.prepared_name) {
                ("PREPARE", Some(n)) => {
                    self.0.insert(n.clone(), s.changes_rows);
                }
                ("DEALLOCATE" | "DROP", Some(n)) => {
                    self.0.remove(n);
                }
                _ => {}
            }
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A text that changes rows under the row limit must not commit (or open a transaction, or end
/// one) on its own: its other statements may only read and write rows. Otherwise an UPDATE over
/// the limit would be committed before the limit's ROLLBACK (an ANALYZE, a FLUSH or `EXECUTE
/// IMMEDIATE 'COMMIT'` commits implicitly) while the client hears the refusal.
pub(crate) fn row_limit_text_refusal(a: &strata_sqlscan::Analysis) -> Option<ErrPacket> {
    if a.statements.len() < 2 {
        return None;
    }
    let plain = |s: &strata_sqlscan::Statement| {
        !s.ddl
            && matches!(
                s.keyword.as_str(),
                "SELECT"
                    | "INSERT"
                    | "UPDATE"
                    | "DELETE"
                    | "REPLACE"
                    | "WITH"
                    | "VALUES"
                    | "TABLE"
                    | "DO"
                    | "SHOW"
                    | "DESCRIBE"
                    | "DESC"
                    | "EXPLAIN"
            )
    };
    let other = a.statements.iter().find(|s| !plain(s))?;
    Some(ErrPacket::new(
        1105,
        "HY000",
        format!(
            "UPDATE and DELETE cannot share a text with {}, only with statements that read or write rows (the row limit runs them in a transaction of its own, which that could commit or end): send them as separate statements",
            if other.keyword.is_empty() { "an empty statement".to_string() } else { other.keyword.clone() }
        ),
    ))
}

/// How the row limit holds an UPDATE or DELETE so it can be undone: a savepoint inside the
/// client's transaction (or with autocommit off: the statement opens or continues the client's
/// transaction, which is never committed here), else a transaction of the guard's own. Under
/// `LOCK TABLES` in autocommit, `BEGIN` would release the client's table locks: autocommit is
/// switched off for the statement instead (COMMIT and ROLLBACK keep table locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    Savepoint,
    Transaction,
    AutocommitOff,
}

impl Guard {
    pub fn new(in_tx: bool, tables_locked: bool) -> Guard {
        match (in_tx, tables_locked) {
            (true, _) => Guard::Savepoint,
            (false, false) => Guard::Transaction,
            (false, true) => Guard::AutocommitOff,
        }
    }

    fn start(self) -> &'static str {
        match self {
            Guard::Savepoint => "SAVEPOINT strata_row_limit",
            Guard::Transaction => "BEGIN",
            Guard::AutocommitOff => "SET autocommit = 0",
        }
    }

    /// What ends the guard. A failed statement was already undone by the server (a deadlock even
    /// rolls back the whole transaction, savepoint included): only one over the limit needs
    /// undoing here. Outside a transaction what succeeded before a failure in the same text is
    /// committed, as autocommit would have.
    fn end(self, over: bool) -> &'static [&'static str] {
        match (self, over) {
            (Guard::Savepoint, true) => &["ROLLBACK TO SAVEPOINT strata_row_limit"],
            (Guard::Savepoint, false) => &[],
            (Guard::Transaction, true) => &["ROLLBACK"],
            (Guard::Transaction, false) => &["COMMIT"],
            (Guard::AutocommitOff, true) => &["ROLLBACK", "SET autocommit = 1"],
            (Guard::AutocommitOff, false) => &["COMMIT", "SET autocommit = 1"],
        }
    }

    /// The status the client sees after the statement: the guard's own transaction (and its
    /// switch of autocommit) are not the client's.
    pub fn client_status(self, status: u16) -> u16 {
        match self {
            Guard::Savepoint => status,
            Guard::Transaction => status & !strata_wire::caps::status::IN_TRANS,
            Guard::AutocommitOff => {
                (status & !strata_wire::caps::status::IN_TRANS)
                    | strata_wire::caps::status::AUTOCOMMIT
            }
        }
    }
}

/// A login's way to its branch: the instance's address for the role's user and for the control
/// plane's user (looked up once, and again after a connection breaks: the instance may have
/// moved), and the pool its connections come from.
pub(crate) struct Link {
    gw: Arc<Gateway>,
    pub key: PoolKey,
    branch_id: String,
    database: String,
    role_target: Option<Arc<Target>>,
    root_target: Option<Arc<Target>>,
    gate: Arc<strata_control::gate::Gate>,
}

impl Link {
    pub fn new(gw: Arc<Gateway>, login: &Login, profile: u32, charset: u8) -> Link {
        Link {
            key: PoolKey {
                branch_id: login.branch.id.clone(),
                password_id: login.password.id.clone(),
                role: login.password.role,
                profile,
                charset,
            },
            branch_id: login.branch.id.clone(),
            database: login.database.name.clone(),
            role_target: None,
            root_target: None,
            gate: gw.platform.gate(&login.branch.id),
            gw,
        }
    }

    /// What the client hears when a deploy's forced cut-over ended instance connection
    /// `thread_id` (`None`: it did not).
    pub(crate) fn ended_by_cutover(&self, thread_id: u32, lost: Lost) -> Option<ErrPacket> {
        let (table, killed) = self.gate.ended_for(u64::from(thread_id))?;
        // The server had taken the KILL before the statement was sent: it never ran.
        let before = matches!((killed, lost.sent_at), (Some(k), Some(s)) if k < s);
        Some(ErrPacket::new(
            1105,
            "HY000",
            ended_by_cutover_message(&table, lost, before),
        ))
    }

    /// Before a statement: waits while a deploy step holds the branch's gate closed, a moment at
    /// most (see `strata_control::gate`): a new transaction (or a statement outside one) at any
    /// closing, a statement of a transaction `under_way` only at a closing of every statement.
    /// Counts it as running until the returned value is dropped.
    pub async fn enter_gate(&self, under_way: bool) -> strata_control::gate::Running {
        self.gate
            .enter(under_way, strata_control::gate::GATE_WAIT_MAX)
            .await
    }

    /// As the control plane's user (`root`) or as the password's own user.
    fn target(&self, root: bool) -> Result<Target, ErrPacket> {
        let inst = self
            .gw
            .platform
            .instance(&self.branch_id)
            .ok_or_else(|| unavailable("the branch has no running instance"))?;
        let st = inst.status();
        if st.state != strata_engine::InstanceState::Running {
            return Err(unavailable(
                format!("its instance is {:?}", st.state).to_lowercase(),
            ));
        }
        let (user, password) = if root {
            (ROOT_USER.to_string(), inst.credentials().root.clone())
        } else {
            let login = inst.password_login(&self.key.password_id);
            (login.0.clone(), login.1.clone())
        };
        Ok(Target {
            addr: SocketAddr::from(([127, 0, 0, 1], st.port)),
            password,
            user,
            schema: self.database.clone(),
            statement_limit: (!root).then_some(self.gw.cfg.limits.query_timeout),
            branch_max: strata_engine::config::gateway_connections(inst.spec().production),
        })
    }

    fn role_target(&mut self) -> Result<Arc<Target>, ErrPacket> {
        if let Some(t) = &self.role_target {
            return Ok(t.clone());
        }
        let t = Arc::new(self.target(false)?);
        self.role_target = Some(t.clone());
        Ok(t)
    }

    /// The control plane's user on the instance: it stops queries (`KILL QUERY`).
    pub fn root_target(&mut self) -> Option<Arc<Target>> {
        if self.root_target.is_none() {
            self.root_target = self.target(true).ok().map(Arc::new);
        }
        self.root_target.clone()
    }

    /// A connection broke: the instance is looked up again for the next one.
    pub fn forget_instance(&mut self) {
        self.role_target = None;
        self.root_target = None;
    }

    /// The branch's grants changed (safe migrations switched) since this connection read its
    /// privileges: the server reads a database's privileges again only on USE. Also for a
    /// connection a session keeps (pinned), which never goes back through the pool.
    pub async fn fresh_privileges(&self, l: &mut Lease) -> Result<(), ErrPacket> {
        if self
            .gw
            .platform
            .grants_changed_at(&self.branch_id)
            .is_some_and(|at| at > l.backend.privileges_read)
        {
            let use_db = format!("USE {}", strata_model::role::quote_ident(&self.database));
            l.backend.query(&use_db).await.map_err(unavailable)?;
            l.backend.privileges_read = Instant::now();
        }
        Ok(())
    }

    /// A connection as the role's user: an idle one of the pool, a new one while the pool has
    /// room, else one that comes back within the pool's wait.
    pub async fn lease(&mut self) -> Result<Lease, ErrPacket> {
        let target = self.role_target()?;
        let mut acquired = self.gw.pools.acquire(&self.key, &target).await;
        if let Err(PoolError::Backend(BackendError::Server(e))) = &acquired {
            // A password made a moment ago may not have its server user yet: made now, once.
            // (1044/4151: its user is being made right now.)
            if matches!(e.code, 1044 | 1045 | 4151) {
                if let Some(inst) = self.gw.platform.instance(&self.branch_id) {
                    if inst.sync_password_users().await.is_ok() {
                        acquired = self.gw.pools.acquire(&self.key, &target).await;
                    }
                }
            }
        }
        match acquired {
            Ok(mut l) => match self.fresh_privileges(&mut l).await {
                Ok(()) => Ok(l),
                Err(e) => {
                    l.discard();
                    Err(e)
                }
            },
            Err(PoolError::Exhausted(d)) => Err(ErrPacket::new(
                1105,
                "HY000",
                format!("resource pool timed out: no backend connection became free within {d:?} (transaction pool connection limit exceeded)"),
            )),
            Err(PoolError::BranchFull(n)) => Err(ErrPacket::new(
                1040,
                "08004",
                format!("Too many connections: the branch's {n} backend connections are all in use; retry shortly"),
            )),
            Err(PoolError::PasswordFull(n)) => Err(ErrPacket::new(
                1040,
                "08004",
                format!("Too many connections: this password holds {n} backend connections, its share of the branch's; retry shortly"),
            )),
            // The password was deleted or has expired: its server user is locked.
            Err(PoolError::Backend(BackendError::Server(e))) if matches!(e.code, 1044 | 1045 | 4151) => {
                Err(ErrPacket::new(
                    1045,
                    "28000",
                    "Access denied: this password was deleted or has expired",
                ))
            }
            Err(PoolError::Backend(e)) => {
                self.forget_instance();
                Err(unavailable(e))
            }
        }
    }
}

/// How long a query stopped at its deadline has to end before its connection is ended instead:
/// `KILL QUERY` ends only the statement running, and a compound statement goes on with the next
/// one (an interrupted `SLEEP` even returns normally).
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The next frame of a response; past the deadline the query is stopped on the instance (once),
/// and past the grace after it the instance connection is ended.
pub(crate) async fn next_frame_until(
    backend: &mut Backend,
    deadline: Option<Instant>,
    killed: &mut bool,
    root: Option<Arc<Target>>,
) -> Result<Frame, BackendError> {
    let Some(d) = deadline else {
        return backend.next_frame().await;
    };
    let (addr, thread) = (backend.addr, backend.thread_id);
    if !*killed {
        match tokio::time::timeout_at(d.into(), backend.next_frame()).await {
            Ok(r) => return r,
            Err(_) => {
                *killed = true;
                kill_backend_query(root.clone(), addr, thread, false).await;
            }
        }
    }
    match tokio::time::timeout_at((d + KILL_GRACE).into(), backend.next_frame()).await {
        Ok(r) => r,
        Err(_) => {
            kill_backend_query(root, addr, thread, true).await;
            backend.next_frame().await
        }
    }
}

/// `KILL QUERY` (or, `connection`, `KILL CONNECTION`) on the instance, from a side connection as
/// the control plane's user.
pub(crate) async fn kill_backend_query(
    root: Option<Arc<Target>>,
    addr: SocketAddr,
    thread: u32,
    connection: bool,
) {
    let Some(root) = root else { return };
    match Backend::connect(addr, &root.user, &root.password, &root.schema, 0, 45).await {
        Ok(mut c) => {
            let what = if connection { "CONNECTION" } else { "QUERY" };
            let _ = c.query(&format!("KILL {what} {thread}")).await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot stop a query on the instance"),
    }
}

/// A column definition as the client reads it: without MariaDB's extended metadata, JSON typed
/// (see [`strata_wire::packets::column_for_client`]). One the gateway cannot read goes as it came.
pub(crate) fn client_column(f: Frame) -> Frame {
    match strata_wire::packets::column_for_client(f.payload()) {
        Ok(payload) => {
            let mut raw = BytesMut::with_capacity(payload.len() + 4);
            let mut seq = f.seq;
            strata_wire::codec::put_packet(&mut raw, &mut seq, &payload);
            Frame {
                seq: f.seq,
                raw: raw.freeze(),
            }
        }
        Err(_) => f,
    }
}

/// A whole response, read.
pub(crate) struct Collected {
    /// Its frames and what each is, column definitions as the client reads them.
    pub frames: Vec<(Event, Frame)>,
    pub tracker: Tracker,
    /// Its share of the shared result memory, held until the answer is out.
    pub memory: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Why a statement got no answer to pass on.
pub(crate) enum Failed {
    /// The connection is unusable (broken, or in an unknown state): discard it.
    Broken(ErrPacket),
    /// Refused by a limit; the connection is clean and usable.
    Refused(ErrPacket),
}

/// Sends an UPDATE or DELETE (a COM_QUERY or COM_STMT_EXECUTE payload) under the row limit: inside
/// a transaction it opens (or a savepoint in the client's own), undone when the statement touched
/// more rows than allowed. `in_tx`: the client has a transaction open, or autocommit off (the
/// statement then opens or continues the client's transaction: it is only guarded by a savepoint,
/// never committed here). `busy` is told which backend thread runs it (for the client's KILL).
/// `counted`: per statement of the text, whether the rows it changes count (an INSERT's do not;
/// empty: every statement's do). The limit is per statement, as if each came alone.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn row_limited(
    backend: &mut Backend,
    payload: &[u8],
    counted: &[bool],
    guard: Guard,
    limits: &Limits,
    deadline: Option<Instant>,
    link: &mut Link,
    busy: impl Fn(Option<(SocketAddr, u32)>),
) -> Result<Collected, Failed> {
    let max_rows = limits.max_rows;
    // Only a timed statement may need to be stopped.
    let root = deadline.and_then(|_| link.root_target());
    // A savepoint goes out with its statement, in one write (a transaction's statements pay no
    // extra round trip for the guard). The statement then runs whatever the savepoint's answer:
    // if it failed, a statement over the limit cannot be undone alone, and the whole transaction
    // is (below). A guard that opens a transaction or switches autocommit is answered first: the
    // statement must never run without it.
    let pipelined = guard == Guard::Savepoint;
    let mut guarded = true;
    if pipelined {
        let start = [
            &[strata_wire::caps::command::QUERY][..],
            guard.start().as_bytes(),
        ]
        .concat();
        if backend.send_commands(&[&start, payload]).await.is_err() {
            return Err(Failed::Broken(unavailable("the instance connection broke")));
        }
    } else {
        if let Err(e) = backend.query(guard.start()).await {
            return Err(Failed::Broken(unavailable(e)));
        }
        if backend.send_command(payload).await.is_err() {
            return Err(Failed::Broken(unavailable("the instance connection broke")));
        }
    }
    busy(Some((backend.addr, backend.thread_id)));
    if pipelined {
        match backend.drain(Expect::ResultSets).await {
            Ok(_) => {}
            Err(BackendError::Server(_)) => guarded = false,
            Err(_) => {
                busy(None);
                return Err(Failed::Broken(unavailable("the instance connection broke")));
            }
        }
    }
    let read = read_response(backend, deadline, root, limits, link).await;
    busy(None);
    let (collected, past_limit) = read?;
    backend.note(&collected.tracker);
    let t = &collected.tracker;
    // Rows one counted statement changed, and rows returned (`DELETE … RETURNING` reports no
    // count of changed rows).
    let over = past_limit.is_some()
        || t.rows > max_rows
        || most_changed(&collected.frames, counted, backend.capabilities) > max_rows;
    if over && !guarded {
        // Only closing the connection undoes it: with the client's whole transaction.
        let mut e = past_limit.unwrap_or_else(|| row_count_exceeded(max_rows));
        e.message.push_str("; the transaction was rolled back");
        return Err(Failed::Broken(e));
    }
    for sql in guard.end(over) {
        if let Err(e) = backend.query(sql).await {
            return Err(Failed::Broken(unavailable(e)));
        }
    }
    if over {
        return Err(Failed::Refused(
            past_limit.unwrap_or_else(|| row_count_exceeded(max_rows)),
        ));
    }
    Ok(collected)
}

/// The most rows one counted statement of a response changed: each result's OK is its
/// statement's (see [`row_limited`]).
fn most_changed(frames: &[(Event, Frame)], counted: &[bool], capabilities: u32) -> u64 {
    frames
        .iter()
        .filter(|(ev, _)| matches!(ev, Event::Terminal { .. }))
        .enumerate()
        .filter(|(i, (_, f))| {
            counted.get(*i).copied().unwrap_or(true) && f.payload().first() == Some(&0)
        })
        .filter_map(|(_, (_, f))| {
            strata_wire::packets::OkPacket::parse(f.payload(), capabilities).ok()
        })
        .map(|ok| duplicates(&ok.info).unwrap_or(ok.affected_rows))
        .max()
        .unwrap_or(0)
}

/// The rows an upsert updated or replaced, from its OK's `Records: n  Duplicates: n  Warnings:
/// n` (its affected rows count each of those twice, and the rows it inserted, which the limit
/// leaves alone). `None` without it (one row's upsert, an UPDATE or DELETE).
fn duplicates(info: &[u8]) -> Option<u64> {
    let info = std::str::from_utf8(info).ok()?;
    let rest = &info[info.find("Duplicates:")? + "Duplicates:".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The next frame of a response and what it is, as a statement runner needs it.
async fn next_event(
    backend: &mut Backend,
    t: &mut Tracker,
    deadline: Option<Instant>,
    killed: &mut bool,
    root: Option<Arc<Target>>,
) -> Result<(Event, Frame), Failed> {
    let f = next_frame_until(backend, deadline, killed, root)
        .await
        .map_err(|_| Failed::Broken(unavailable("the instance connection broke")))?;
    let ev = t
        .feed(&f)
        .map_err(|_| Failed::Broken(unavailable("unexpected reply from the instance")))?;
    Ok((ev, f))
}

/// Reads a whole COM_QUERY/COM_STMT_EXECUTE response, stopping the query at the deadline, and
/// when what it returns (`DELETE … RETURNING`) passes the row or byte limit: the rest is drained
/// and dropped, and the limit passed is returned with it.
async fn read_response(
    backend: &mut Backend,
    deadline: Option<Instant>,
    root: Option<Arc<Target>>,
    limits: &Limits,
    link: &mut Link,
) -> Result<(Collected, Option<ErrPacket>), Failed> {
    let mut t = Tracker::new(Expect::ResultSets, backend.capabilities);
    let mut frames = Vec::new();
    let mut killed = false;
    let mut bytes = 0u64;
    let mut past_limit = None;
    while !t.done() {
        let (ev, f) = next_event(backend, &mut t, deadline, &mut killed, root.clone()).await?;
        if past_limit.is_some() {
            continue;
        }
        bytes += f.raw.len() as u64;
        if t.rows > limits.max_rows {
            past_limit = Some(row_count_exceeded(limits.max_rows));
        } else if bytes > limits.max_result_bytes {
            past_limit = Some(result_too_large(bytes, limits.max_result_bytes));
        }
        if past_limit.is_some() {
            frames.clear();
            if !killed {
                killed = true;
                kill_backend_query(link.root_target(), backend.addr, backend.thread_id, false)
                    .await;
            }
            continue;
        }
        // DELETE … RETURNING has a result set.
        frames.push(if ev == Event::Column && backend.extended_metadata {
            (ev, client_column(f))
        } else {
            (ev, f)
        });
    }
    if past_limit.is_some() {
        backend.diagnostics = true;
    }
    Ok((
        Collected {
            frames,
            tracker: t,
            memory: None,
        },
        past_limit,
    ))
}

/// The limits a result is read under (`None`: unlimited in that respect).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultLimits<'a> {
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Memory shared by every result being held at once, in MiB: a result takes its share as it
    /// grows and keeps it until it has been answered (see [`Collected::memory`]).
    pub memory: Option<&'a Arc<tokio::sync::Semaphore>>,
}

/// How long a growing result waits for room in the shared result memory.
const MEMORY_WAIT: Duration = Duration::from_secs(5);

/// Sends a statement and reads its first result whole, for an edge that answers with the whole
/// result at once (the HTTP endpoint): deployment artifacts left out of schema listings, rows and
/// bytes counted against the limits (past one, the query is stopped on the instance and the rest
/// drained), results after the first read and dropped.
pub(crate) async fn collect(
    backend: &mut Backend,
    payload: &[u8],
    deadline: Option<Instant>,
    link: &mut Link,
    limits: ResultLimits<'_>,
) -> Result<Collected, Failed> {
    let mut memory: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut reserved_mib = 0u64;
    let root = deadline.and_then(|_| link.root_target());
    if backend.send_command(payload).await.is_err() {
        return Err(Failed::Broken(unavailable("cannot reach the instance")));
    }
    let mut t = Tracker::new(Expect::ResultSets, backend.capabilities);
    let mut listing = strata_wire::listing::ArtifactRows::default();
    let mut frames = Vec::new();
    let mut killed = false;
    let mut bytes = 0u64;
    let mut rows = 0u64;
    let mut exceeded = None;
    let mut first_done = false;
    // The frames of a row larger than one frame are held until the row is complete.
    let mut hiding_row = false;
    while !t.done() {
        let (ev, f) = next_event(backend, &mut t, deadline, &mut killed, root.clone()).await?;
        if first_done || exceeded.is_some() {
            continue; // draining what is left
        }
        let f = if ev == Event::Column && backend.extended_metadata {
            client_column(f)
        } else {
            f
        };
        match ev {
            Event::Column => listing.column(f.payload()),
            Event::Row => {
                hiding_row = !f.continues() && listing.hide(f.payload(), false);
                if hiding_row {
                    continue;
                }
                rows += 1;
            }
            Event::Continuation if hiding_row => continue,
            Event::Terminal { .. } | Event::Error => first_done = true,
            _ => {}
        }
        bytes += f.raw.len() as u64;
        if limits.max_rows.is_some_and(|m| rows > m) {
            exceeded = Some(row_count_exceeded(limits.max_rows.unwrap_or_default()));
        } else if let Some(m) = limits.max_bytes.filter(|m| bytes > *m) {
            exceeded = Some(result_too_large(bytes, m));
        } else if let Some(shared) = limits.memory.filter(|_| bytes >> 20 >= reserved_mib) {
            // The shared result memory the result has grown into (a MiB as it starts, then as
            // many as a large row adds).
            let need = u32::try_from((bytes >> 20) + 1 - reserved_mib).unwrap_or(u32::MAX);
            let more = match shared.clone().try_acquire_many_owned(need) {
                Ok(p) => Some(p),
                Err(_) => {
                    tokio::time::timeout(MEMORY_WAIT, shared.clone().acquire_many_owned(need))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
            };
            match more {
                Some(p) => {
                    reserved_mib += u64::from(need);
                    match memory.as_mut() {
                        Some(held) => held.merge(p),
                        None => memory = Some(p),
                    }
                }
                _ => {
                    exceeded = Some(ErrPacket::new(
                        1105,
                        "HY000",
                        "resource_exhausted: too many large results are being held: retry shortly",
                    ))
                }
            }
        }
        if exceeded.is_some() {
            frames.clear();
            if !killed {
                killed = true;
                kill_backend_query(link.root_target(), backend.addr, backend.thread_id, false)
                    .await;
            }
            continue;
        }
        frames.push((ev, f));
    }
    backend.note(&t);
    if let Some(e) = exceeded {
        // The stopped query's error is in the diagnostics area.
        backend.diagnostics = true;
        return Err(Failed::Refused(e));
    }
    Ok(Collected {
        frames,
        tracker: t,
        memory,
    })
}

/// The server's status flags now (a COM_PING's OK carries them): whether a transaction is open
/// after a statement that failed inside one (a deadlock rolls it back).
pub(crate) async fn status_now(backend: &mut Backend) -> Result<u16, BackendError> {
    backend
        .send_command(&[strata_wire::caps::command::PING])
        .await?;
    Ok(backend.drain(Expect::Simple).await?.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upserts_duplicates_are_read_from_its_info() {
        for (info, n) in [
            (
                &b"Records: 2000  Duplicates: 1000  Warnings: 0"[..],
                Some(1000),
            ),
            (b"Records: 3  Duplicates: 0  Warnings: 0", Some(0)),
            (b"Rows matched: 5  Changed: 5  Warnings: 0", None),
            (b"", None),
            (b"Duplicates:", None),
            (b"\xff\xfe", None),
        ] {
            assert_eq!(duplicates(info), n, "{:?}", String::from_utf8_lossy(info));
        }
    }

    #[test]
    fn a_time_limit_can_be_lowered_never_lifted() {
        let limits = Limits {
            query_timeout: Duration::from_secs(900),
            ..Default::default()
        };
        for (sql, olap, refused) in [
            ("SELECT 1", false, false),
            ("SET max_statement_time = 5", false, false),
            ("SET max_statement_time = 900", false, false),
            ("SET max_statement_time = 900.001", false, true),
            ("SET max_statement_time = 0", false, true),
            ("SET max_statement_time = 0", true, false),
            ("SET SESSION max_statement_time = DEFAULT", false, true),
            (
                "SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(1000)",
                false,
                true,
            ),
            (
                "SET STATEMENT max_statement_time=1 FOR SELECT SLEEP(1000)",
                false,
                false,
            ),
            (
                "EXECUTE IMMEDIATE 'SET @@max_statement_time = 1e6'",
                false,
                true,
            ),
        ] {
            let a = strata_sqlscan::analyze(sql);
            assert_eq!(
                time_limit_refusal(&a, &limits, olap).is_some(),
                refused,
                "{sql} (olap {olap})"
            );
        }
    }

    #[test]
    fn time_limits() {
        let limits = Limits {
            query_timeout: Duration::from_secs(900),
            ..Default::default()
        };
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (directive ms, in a transaction, transaction time left) → the gateway's own limit
        type Case = (Option<u64>, bool, Option<Duration>, Option<Duration>);
        let cases: &[Case] = &[
            // The default is the instance's (max_statement_time), not timed here.
            (None, false, None, None),
            (None, true, Some(s(5)), Some(s(5))),
            (Some(100), false, None, Some(ms(100))),
            // A directive at or above the default leaves it to the instance.
            (Some(900_000), false, None, None),
            (Some(10_000_000), false, None, None),
            (Some(100), true, Some(s(5)), Some(ms(100))),
            (Some(10_000), true, Some(s(5)), Some(s(5))),
            // A transaction whose time is up still gets a moment (the statement is stopped).
            (None, true, Some(Duration::ZERO), Some(ms(1))),
            // Time left only counts inside a transaction.
            (None, false, Some(s(5)), None),
        ];
        for &(directive, in_tx, left, want) in cases {
            assert_eq!(
                statement_timeout(&limits, directive, in_tx, left),
                want,
                "{directive:?} {in_tx} {left:?}"
            );
        }
    }

    #[test]
    fn row_limit_guard_ends() {
        use strata_wire::caps::status::{AUTOCOMMIT, IN_TRANS};
        assert_eq!(Guard::new(true, false), Guard::Savepoint);
        assert_eq!(Guard::new(true, true), Guard::Savepoint);
        assert_eq!(Guard::new(false, false), Guard::Transaction);
        assert_eq!(Guard::new(false, true), Guard::AutocommitOff);
        let cases: [(Guard, bool, &[&str]); 6] = [
            (Guard::Transaction, false, &["COMMIT"]),
            (Guard::Transaction, true, &["ROLLBACK"]),
            (Guard::Savepoint, false, &[]),
            (
                Guard::Savepoint,
                true,
                &["ROLLBACK TO SAVEPOINT strata_row_limit"],
            ),
            (
                Guard::AutocommitOff,
                false,
                &["COMMIT", "SET autocommit = 1"],
            ),
            (
                Guard::AutocommitOff,
                true,
                &["ROLLBACK", "SET autocommit = 1"],
            ),
        ];
        for (g, over, want) in cases {
            assert_eq!(g.end(over), want, "{g:?} {over}");
        }
        assert_eq!(Guard::Savepoint.start(), "SAVEPOINT strata_row_limit");
        assert_eq!(Guard::Transaction.start(), "BEGIN");
        assert_eq!(Guard::AutocommitOff.start(), "SET autocommit = 0");
        assert_eq!(
            Guard::Transaction.client_status(IN_TRANS | AUTOCOMMIT),
            AUTOCOMMIT
        );
        assert_eq!(Guard::AutocommitOff.client_status(IN_TRANS), AUTOCOMMIT);
        assert_eq!(Guard::Savepoint.client_status(IN_TRANS), IN_TRANS);
    }
}

#[cfg(test)]
mod cutover_tests {
    use super::*;

    #[test]
    fn a_forced_cut_over_says_what_became_of_the_work() {
        let m = |in_transaction, committing, before| {
            ended_by_cutover_message(
                "t",
                Lost {
                    in_transaction,
                    committing,
                    sent_at: None,
                },
                before,
            )
        };
        assert!(m(true, false, false).contains("nothing of it was committed"));
        assert!(m(true, true, false).contains("whether it was committed is unknown"));
        assert!(!m(true, true, false).contains("nothing of it was committed"));
        // A COMMIT sent after the server had ended the connection never ran.
        assert!(m(true, true, true).contains("nothing of it was committed"));
        for committing in [false, true] {
            let q = m(false, committing, false);
            assert!(q.starts_with("query ended") && q.contains("unknown"), "{q}");
            assert!(!q.contains("run it again"), "{q}");
        }
        assert!(m(false, false, true).contains("nothing of it was committed"));
        assert!(m(true, false, false).contains("table `t`"));
    }
}
