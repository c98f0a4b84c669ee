//! One client session after login: the command loop.
//!
//! Each command borrows a backend connection from the pool (or uses the one the session is pinned
//! to), forwards the command, and streams the response back frame by frame while a tracker follows
//! it. Afterwards the status flags decide: a transaction still open, or session state changed, pins
//! the connection to the session; otherwise it goes back to the pool.

use crate::backend::{Backend, BackendError};
use crate::client::{ClientConn, ClientError};
use crate::link::{
    self, client_column, kill_backend_query, next_frame_until, time_limit_refusal, unavailable,
    Link,
};
use crate::pool::Lease;
use crate::Gateway;
use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_control::Login;
use strata_wire::caps::{self, command, status};
use strata_wire::packets::{
    column_definition, column_type, eof, is_eof, text_row, ErrPacket, OkPacket,
};
use strata_wire::tracker::{Event, Expect, Tracker};

enum Flow {
    Continue,
    Close,
}

struct Session {
    gw: Arc<Gateway>,
    client: ClientConn,
    login: Login,
    /// The handshake's nonce: COM_CHANGE_USER scrambles the new password with it.
    nonce: Vec<u8>,
    id: u32,
    peer: SocketAddr,
    /// The way to the branch's instance: pooled connections as the role's user.
    link: Link,
    /// The connection this session holds across commands (transaction or session state).
    pinned: Option<Lease>,
    /// The command under way, counted as running on the branch for its gate (see
    /// `strata_control::gate::Gate::enter`); let go when the command is done.
    running: Option<strata_control::gate::Running>,
    /// Session state lives on the pinned connection: keep it until the session resets or ends.
    sticky: bool,
    /// The last statement left warnings or an error: the connection stays for the client's next
    /// statement (its `SHOW WARNINGS`), and is cleared before it goes back to the pool.
    keep_for_diagnostics: bool,
    /// Status flags of the last response.
    status: u16,
    transaction_started: Option<Instant>,
    /// Since when the session holds `LOCK TABLES`: bounded by the transaction time limit too (an
    /// idle lock held every other writer of the table, and a deploy's cut-over, indefinitely).
    tables_locked: Option<Instant>,
    olap: bool,
    last_insert_id: u64,
    /// What `ROW_COUNT()` says after the client's last statement (answered here when the session
    /// is not pinned: the statement may have run on another connection of the pool).
    row_count: i64,
    /// The text in flight may commit the open transaction (see `link::Lost`).
    commit_in_flight: bool,
    /// When the command in flight arrived (before anything of it was sent to the instance).
    command_at: Instant,
    /// The instance connection ended while the session held state there: the client's
    /// connection is closed after the reply.
    state_lost: bool,
    /// What `FOUND_ROWS()` says: the rows of the session's last result set.
    found_rows: u64,
    shared: Arc<crate::SessionShared>,
    /// Prepared statements by the ids this client knows; backends get them prepared on demand.
    stmts: foldhash::HashMap<u32, ClientStmt>,
    next_stmt: u32,
    /// While this session runs a query others wait on: the response, kept to share.
    capture: Option<Captured>,
    /// The session's place among its password's (see `clients`).
    seat: crate::clients::Seat,
    /// Statements the client prepared with SQL (`PREPARE name FROM …`): whether each changes rows.
    sql_prepared: link::SqlPrepared,
    /// The last forwarded command ended without an error.
    last_ok: bool,
    /// The transaction the gateway rolled back at its time limit: the error the client's next
    /// statement gets, so nothing it sends believing the transaction open is taken as committed.
    aborted: Option<ErrPacket>,
}

/// Results larger than this are not shared; waiting sessions run the query themselves.
const CAPTURE_MAX: usize = 1 << 20;

/// A response as the backend sent it, shared with sessions that asked the same at the same time.
#[derive(Default)]
pub(crate) struct Captured {
    frames: Vec<(strata_wire::codec::Frame, bool)>,
    bytes: usize,
    caps: u32,
    status: u16,
    complete: bool,
    /// Rows in the result (what `FOUND_ROWS()` says after it).
    rows: u64,
}

/// A statement as the client prepared it: its text, shape, and the parameter types last bound.
struct ClientStmt {
    sql: Bytes,
    /// An UPDATE or DELETE: executed under the row limit.
    dml: bool,
    /// `/*vt+ QUERY_TIMEOUT_MS=n */` in the prepared text.
    timeout_ms: Option<u64>,
    params: u16,
    types: Option<Vec<u8>>,
}

fn stmt_id(packet: &[u8]) -> Option<u32> {
    packet
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn with_stmt_id(packet: &[u8], id: u32) -> Bytes {
    let mut p = BytesMut::from(packet);
    p[1..5].copy_from_slice(&id.to_le_bytes());
    p.freeze()
}

fn unknown_statement(id: u32, what: &str) -> ErrPacket {
    ErrPacket::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
}

pub(crate) async fn run(
    gw: Arc<Gateway>,
    client: ClientConn,
    login: Login,
    nonce: Vec<u8>,
    id: u32,
    peer: SocketAddr,
    seat: crate::clients::Seat,
) {
    let link = Link::new(
        gw.clone(),
        &login,
        client.caps & caps::PROFILE,
        client.charset,
    );
    let shared = gw
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    let Some(shared) = shared else { return };
    let mut s = Session {
        gw,
        client,
        login,
        nonce,
        id,
        peer,
        link,
        pinned: None,
        running: None,
        sticky: false,
        keep_for_diagnostics: false,
        last_ok: false,
        aborted: None,
        status: status::AUTOCOMMIT,
        transaction_started: None,
        tables_locked: None,
        olap: false,
        last_insert_id: 0,
        row_count: -1,
        commit_in_flight: false,
        command_at: Instant::now(),
        state_lost: false,
        found_rows: 0,
        shared,
        stmts: foldhash::HashMap::default(),
        next_stmt: 1,
        capture: None,
        seat,
        sql_prepared: link::SqlPrepared::default(),
    };
    loop {
        enum Wake {
            Packet(Result<Option<(u8, Bytes)>, ClientError>),
            Killed,
            TransactionTimeout,
        }
        let held = match (s.transaction_started, s.tables_locked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = match held {
            Some(t) if s.pinned.is_some() => Some(t + s.gw.cfg.limits.transaction_timeout),
            _ => None,
        };
        let shared = s.shared.clone();
        // Biased: a transaction past its limit is rolled back before a packet already waiting is
        // read, so that packet is answered as the aborted transaction's next statement.
        let wake = tokio::select! {
            biased;
            _ = shared.kill.notified() => Wake::Killed,
            _ = sleep_until_opt(deadline) => Wake::TransactionTimeout,
            p = s.client.read_packet() => Wake::Packet(p),
        };
        let next = match wake {
            Wake::Packet(p) => p,
            Wake::Killed => break,
            Wake::TransactionTimeout => {
                s.abort_transaction().await;
                continue;
            }
        };
        let packet = match next {
            Ok(Some((_, p))) => p,
            Ok(None) => break,
            Err(ClientError::Wire(e)) => {
                let message = match e {
                    strata_wire::WireError::TooLarge(..) => {
                        "Got a packet bigger than 'max_allowed_packet' bytes".to_string()
                    }
                    e => format!("Got a malformed packet: {e}"),
                };
                let _ = s
                    .client
                    .send_err(&ErrPacket::new(1153, "08S01", message))
                    .await;
                break;
            }
            Err(_) => break,
        };
        let flow = s.command(packet).await;
        s.running = None;
        match flow {
            Ok(Flow::Continue) if s.state_lost => {
                tracing::info!(
                    id = s.id,
                    "session closed: its state went with its instance connection"
                );
                break;
            }
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) => break,
            Err(e) => {
                tracing::debug!(id = s.id, peer = %s.peer, error = %e, "session ended");
                break;
            }
        }
    }
    s.finish().await;
}

impl Session {
    fn root_target(&mut self) -> Option<Arc<crate::pool::Target>> {
        self.link.root_target()
    }

    /// The pinned connection, or one from the pool. An OLAP session's connection has the
    /// default statement time limit lifted, so it stays with the session (reset when it ends).
    async fn lease(&mut self) -> Result<Lease, ErrPacket> {
        // A new transaction waits while a deploy step needs its table free for a moment; one under
        // way (or table locks held) goes on, or the step would wait for it in vain.
        // Every statement is counted while it runs, and held while a deploy step needs nothing
        // of the application running (DDL on a foreign key's tables).
        if self.running.is_none() {
            let under_way = self.status & status::IN_TRANS != 0 || self.tables_locked.is_some();
            self.running = Some(self.link.enter_gate(under_way).await);
        }
        if let Some(mut l) = self.pinned.take() {
            if let Err(e) = self.link.fresh_privileges(&mut l).await {
                self.settle(l, true);
                return Err(e);
            }
            return Ok(l);
        }
        let mut l = self.link.lease().await?;
        if self.olap {
            if let Err(e) = l.backend.lift_statement_limit().await {
                l.discard();
                return Err(unavailable(e));
            }
            self.sticky = true;
        }
        Ok(l)
    }

    /// After a command: keep the connection, or give it back.
    fn settle(&mut self, lease: Lease, broken: bool) {
        if broken {
            // The transaction (or the table locks) went with the connection: the client's next
            // statement hears it, so nothing it sends in the belief the transaction is open
            // commits on its own.
            if self.sticky {
                // Its session state went with the connection: the client's connection is closed
                // after this reply, as the server would have closed it.
                self.state_lost = true;
            }
            if self.status & status::IN_TRANS != 0 {
                self.aborted = Some(
                    self.link
                        .ended_by_cutover(lease.backend.thread_id, self.lost())
                        .unwrap_or_else(|| ErrPacket::new(
                            1105,
                            "HY000",
                            "transaction ended: its connection to the instance broke, and it was rolled back; nothing of it was committed",
                        )),
                );
            } else if self.tables_locked.is_some() {
                self.aborted = Some(ErrPacket::new(
                    1105,
                    "HY000",
                    "table locks ended: the connection to the instance broke (UNLOCK TABLES); statements run under them had already committed",
                ));
            }
            lease.discard();
            self.link.forget_instance();
            self.sticky = false;
            self.keep_for_diagnostics = false;
            self.status &= !status::IN_TRANS;
            self.transaction_started = None;
            self.tables_locked = None;
            return;
        }
        if self.status & status::IN_TRANS != 0 {
            self.transaction_started.get_or_insert_with(Instant::now);
        } else {
            self.transaction_started = None;
        }
        // Autocommit off is session state too, whether or not the server said it changed
        // (`SET @@autocommit = 0` comes back without the state-changed flag).
        if self.status & status::SESSION_STATE_CHANGED != 0 || self.status & status::AUTOCOMMIT == 0
        {
            self.sticky = true;
        }
        if self.sticky || self.keep_for_diagnostics || self.status & status::IN_TRANS != 0 {
            self.pinned = Some(lease);
        } else {
            lease.release();
        }
    }

    /// The instance connection broke: the session lets it go (see `settle`), and the client hears
    /// why: that a deploy's forced cut-over ended it, when one did, else `default`.
    fn broke(&mut self, lease: Lease, default: ErrPacket) -> ErrPacket {
        let mut e = self
            .link
            .ended_by_cutover(lease.backend.thread_id, self.lost())
            .unwrap_or(default);
        if self.sticky {
            e.message.push_str(link::SESSION_STATE_LOST);
        }
        self.settle(lease, true);
        e
    }

    /// What the session had going on its instance connection, should the connection end now.
    fn lost(&self) -> link::Lost {
        link::Lost {
            in_transaction: self.status & status::IN_TRANS != 0
                || self.status & status::AUTOCOMMIT == 0,
            committing: self.commit_in_flight,
            sent_at: Some(self.command_at),
        }
    }

    /// A transaction (or table locks) outlived the limit while the client was idle: roll it back
    /// and release them.
    async fn abort_transaction(&mut self) {
        if let Some(mut lease) = self.pinned.take() {
            let in_transaction = self.status & status::IN_TRANS != 0;
            // A forced cut-over (or revert) that ended it first is what the client hears.
            let ended = self
                .link
                .ended_by_cutover(lease.backend.thread_id, self.lost());
            let mut ok = lease.backend.query("ROLLBACK").await.is_ok();
            let had_locks = self.tables_locked.take().is_some();
            if had_locks {
                ok &= lease.backend.query("UNLOCK TABLES").await.is_ok();
                // Refused when the role may not take backup locks (then none is held): the
                // connection is fine.
                ok &= !matches!(
                    lease.backend.query("BACKUP UNLOCK").await,
                    Err(e) if !matches!(e, crate::backend::BackendError::Server(_))
                );
            }
            self.status &= !status::IN_TRANS;
            self.transaction_started = None;
            self.tables_locked = None;
            tracing::info!(
                id = self.id,
                "transaction rolled back after exceeding the transaction timeout"
            );
            self.settle(lease, !ok);
            let limit = self.gw.cfg.limits.transaction_timeout;
            self.aborted = Some(if let Some(e) = ended {
                e
            } else if in_transaction && had_locks {
                // LOCK TABLES committed what ran before it: only what followed was rolled back.
                let mut e = transaction_aborted(self.id, limit);
                e.message = format!(
                    "{}; statements before LOCK TABLES had been committed by it, and the table locks were released",
                    e.message.replace(" and nothing of it was committed", "")
                );
                e
            } else if in_transaction {
                transaction_aborted(self.id, limit)
            } else {
                ErrPacket::new(1105, "HY000", link::locks_released(limit))
            });
        }
        self.transaction_started = None;
        self.tables_locked = None;
    }

    async fn finish(mut self) {
        // A clean TLS close (close_notify) for clients that check for truncation.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.client.io).await;
        if let Some(mut lease) = self.pinned.take() {
            let clean = self.status & status::IN_TRANS == 0 && !self.sticky;
            if clean || lease.backend.reset().await.is_ok() {
                lease.release();
            } else {
                lease.discard();
            }
        }
    }

    /// COM_CHANGE_USER: logs the session in again with another password (which may name another
    /// branch and role), checked as at connect time against the handshake's nonce, and starts it
    /// afresh as COM_RESET_CONNECTION does. A refused change ends the connection, as MySQL does.
    async fn change_user(&mut self, packet: Bytes) -> Result<Flow, ClientError> {
        use strata_wire::handshake::{ChangeUser, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD};
        let Ok(cu) = ChangeUser::parse(&packet[1..], self.client.caps) else {
            self.client
                .send_err(&ErrPacket::new(
                    1835,
                    "HY000",
                    "Malformed communication packet",
                ))
                .await?;
            return Ok(Flow::Close);
        };
        let ip = self.peer.ip();
        if self.gw.blocked(ip, &cu.username) {
            self.client
                .send_err(&crate::login_blocked(&cu.username, ip))
                .await?;
            return Ok(Flow::Close);
        }
        let login = self.gw.platform.login(&cu.username);
        let plugin = cu.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
        let verified = login.as_ref().is_some_and(|l| {
            let h = crate::password_hashes(l);
            let ok = match plugin {
                NATIVE_PASSWORD => h.verify_native(&self.nonce, &cu.auth_response),
                CACHING_SHA2_PASSWORD => h.verify_caching_sha2(&self.nonce, &cu.auth_response),
                _ => false,
            };
            ok && crate::allowed_from(l, ip)
        });
        let Some(login) = login.filter(|_| verified) else {
            self.gw.failed_login(ip, &cu.username).await;
            self.client
                .send_err(&crate::access_denied(&cu.username, ip))
                .await?;
            return Ok(Flow::Close);
        };
        if let Some(db) = cu.database.as_deref() {
            if db != login.database.name && !db.eq_ignore_ascii_case("@primary") {
                let e = ErrPacket::new(
                    1044,
                    "42000",
                    format!(
                        "Access denied for user '{}'@'{ip}' to database '{db}'",
                        cu.username
                    ),
                );
                self.client.send_err(&e).await?;
                return Ok(Flow::Close);
            }
        }
        // The new password's share of sessions, before anything changes.
        let seat = if login.password.id == self.login.password.id {
            None
        } else {
            match self.gw.clients.seat(&login.password.id) {
                Some(seat) => Some(seat),
                None => {
                    let e = crate::too_many_user_connections(
                        &cu.username,
                        self.gw.clients.per_password_max(),
                    );
                    self.client.send_err(&e).await?;
                    return Ok(Flow::Close);
                }
            }
        };
        if let Some(seat) = seat {
            self.seat = seat;
        }
        // A clean slate, on the old pool, before the identity changes: the old identity's
        // connection goes back to its pool (or is closed), never kept for the new one.
        if let Some(mut lease) = self.pinned.take() {
            let ok = lease.backend.reset().await.is_ok();
            self.keep_for_diagnostics = false;
            if ok {
                lease.release();
            } else {
                lease.discard();
            }
        }
        // The old identity's transaction is reset either way: nothing to tell the new one.
        self.aborted = None;
        self.stmts.clear();
        self.sql_prepared.clear();
        self.sticky = false;
        self.olap = false;
        self.last_insert_id = 0;
        self.status = status::AUTOCOMMIT;
        self.transaction_started = None;
        self.tables_locked = None;
        self.link = Link::new(
            self.gw.clone(),
            &login,
            self.link.key.profile,
            self.link.key.charset,
        );
        *self
            .shared
            .username
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = login.password.username.clone();
        self.gw.platform.password_used(&login.password);
        self.login = login;
        self.reply_ok().await
    }

    /// A statement's time limit: the directive's, else the autocommit limit outside transactions
    /// and OLAP sessions.
    fn statement_timeout(&self, directive_ms: Option<u64>, in_tx: bool) -> Option<Duration> {
        let limits = &self.gw.cfg.limits;
        let left = self
            .transaction_started
            .map(|t| (t + limits.transaction_timeout).saturating_duration_since(Instant::now()));
        link::statement_timeout(limits, directive_ms, in_tx, left)
    }

    async fn reply_err(&mut self, e: ErrPacket) -> Result<Flow, ClientError> {
        self.client.send_err(&e).await?;
        Ok(Flow::Continue)
    }

    async fn reply_ok(&mut self) -> Result<Flow, ClientError> {
        let st = self.status & (status::IN_TRANS | status::AUTOCOMMIT)
            | status::AUTOCOMMIT & self.status;
        self.client.queue_ok(&OkPacket::simple(st));
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    async fn command(&mut self, packet: Bytes) -> Result<Flow, ClientError> {
        self.command_at = Instant::now();
        let Some(&cmd) = packet.first() else {
            return self
                .reply_err(ErrPacket::new(1047, "08S01", "Unknown command"))
                .await;
        };
        if cmd != command::QUIT && !self.gw.platform.password_current(&self.login.password) {
            // Deleted or expired since the login: the session ends, and says why.
            let _ = self
                .client
                .send_err(&ErrPacket::new(
                    1045,
                    "28000",
                    "Access denied: this password was deleted or has expired",
                ))
                .await;
            return Ok(Flow::Close);
        }
        if let Some(e) = self.aborted.take() {
            match cmd {
                // The next statement hears that its transaction is gone; a ROLLBACK is what the
                // gateway already did.
                command::QUERY if is_plain_rollback(&packet[1..]) => return self.reply_ok().await,
                command::QUERY | command::STMT_EXECUTE => return self.reply_err(e).await,
                command::RESET_CONNECTION | command::CHANGE_USER => {}
                _ => self.aborted = Some(e),
            }
        }
        match cmd {
            command::QUIT => Ok(Flow::Close),
            command::PING => self.reply_ok().await,
            command::INIT_DB => {
                let db = String::from_utf8_lossy(&packet[1..]).into_owned();
                if db == self.login.database.name {
                    self.reply_ok().await
                } else {
                    let ip = self.peer.ip();
                    let user = self.login.password.username.clone();
                    self.reply_err(ErrPacket::new(
                        1044,
                        "42000",
                        format!("Access denied for user '{user}'@'{ip}' to database '{db}'"),
                    ))
                    .await
                }
            }
            command::QUERY => self.query(packet).await,
            command::STMT_PREPARE => self.prepare(packet).await,
            command::STMT_EXECUTE => {
                self.commit_in_flight = false;
                let Some(id) = stmt_id(&packet) else {
                    return self
                        .reply_err(ErrPacket::new(
                            1835,
                            "HY000",
                            "Malformed communication packet",
                        ))
                        .await;
                };
                let Some(packet) = self.complete_execute(id, packet) else {
                    return self
                        .reply_err(unknown_statement(id, "mysqld_stmt_execute"))
                        .await;
                };
                if packet.get(5).is_some_and(|flags| *flags != 0) {
                    // A cursor lives on one backend connection.
                    self.sticky = true;
                }
                let (dml, timeout_ms) = self
                    .stmts
                    .get(&id)
                    .map(|st| (st.dml, st.timeout_ms))
                    .unwrap_or_default();
                // The same time limits as a text query.
                let in_tx = self.status & status::IN_TRANS != 0;
                let timeout = self.statement_timeout(timeout_ms, in_tx);
                if dml {
                    return self
                        .checked_dml(packet, in_tx, timeout, Some(id), Vec::new())
                        .await;
                }
                self.forward(packet, Expect::ResultSets, !self.olap, timeout, Some(id))
                    .await
            }
            command::STMT_FETCH => {
                let Some(id) = stmt_id(&packet).filter(|id| self.stmts.contains_key(id)) else {
                    return self
                        .reply_err(unknown_statement(0, "mysqld_stmt_fetch"))
                        .await;
                };
                self.forward(packet, Expect::Fetch, !self.olap, None, Some(id))
                    .await
            }
            command::STMT_RESET => {
                let Some(id) = stmt_id(&packet).filter(|id| self.stmts.contains_key(id)) else {
                    return self
                        .reply_err(unknown_statement(0, "mysqld_stmt_reset"))
                        .await;
                };
                if self.pinned.is_some() {
                    self.forward(packet, Expect::Simple, false, None, Some(id))
                        .await
                } else {
                    self.reply_ok().await
                }
            }
            command::STMT_CLOSE => {
                if let Some(id) = stmt_id(&packet) {
                    self.stmts.remove(&id);
                }
                Ok(Flow::Continue)
            }
            command::STMT_SEND_LONG_DATA => {
                // Long data accumulates on one backend statement: keep that connection.
                let Some(id) = stmt_id(&packet).filter(|id| self.stmts.contains_key(id)) else {
                    return Ok(Flow::Continue);
                };
                self.sticky = true;
                match self.lease_for(&packet, Some(id)).await {
                    Ok((mut lease, p)) => {
                        let broken = lease.backend.send_command(&p).await.is_err();
                        self.settle(lease, broken);
                    }
                    Err(e) => {
                        tracing::debug!(id = self.id, error = %e.message, "long data dropped")
                    }
                }
                Ok(Flow::Continue)
            }
            command::SET_OPTION => {
                self.sticky = true;
                self.forward(packet, Expect::Simple, false, None, None)
                    .await
            }
            command::FIELD_LIST => {
                // The table name, NUL-terminated: a deployment's tables are not listed either.
                let table = packet[1..].split(|b| *b == 0).next().unwrap_or_default();
                if strata_wire::listing::is_artifact_name(table) {
                    return self.reply_err(artifact_refused()).await;
                }
                self.forward(packet, Expect::FieldList, false, None, None)
                    .await
            }
            command::STATISTICS => {
                self.forward(packet, Expect::Statistics, false, None, None)
                    .await
            }
            command::RESET_CONNECTION => {
                if let Some(mut lease) = self.pinned.take() {
                    let ok = lease.backend.reset().await.is_ok();
                    self.keep_for_diagnostics = false;
                    self.status = status::AUTOCOMMIT;
                    self.sticky = false;
                    self.settle(lease, !ok);
                }
                self.olap = false;
                self.last_insert_id = 0;
                self.status = status::AUTOCOMMIT;
                self.sql_prepared.clear();
                self.reply_ok().await
            }
            command::PROCESS_KILL if packet.len() >= 5 => {
                let id = u32::from_le_bytes([packet[1], packet[2], packet[3], packet[4]]);
                self.kill(false, id as u64).await
            }
            command::CHANGE_USER => self.change_user(packet).await,
            _ => {
                self.reply_err(ErrPacket::new(1047, "08S01", "Unknown command"))
                    .await
            }
        }
    }

    async fn query(&mut self, packet: Bytes) -> Result<Flow, ClientError> {
        let a = crate::cores::analyze_bytes(packet.slice(1..)).await;
        self.commit_in_flight = commits(&a);
        if let Some(e) = refusal(&self.gw.platform, &self.login, &a)
            .or_else(|| time_limit_refusal(&a, &self.gw.cfg.limits, self.olap))
        {
            return self.reply_err(e).await;
        }
        if a.statements.len() > 1 && self.client.caps & caps::MULTI_STATEMENTS == 0 {
            return self.reply_err(ErrPacket::new(1064, "42000", "You have an error in your SQL syntax: multiple statements need CLIENT_MULTI_STATEMENTS")).await;
        }
        if let Some(w) = &a.set_workload {
            return match w.as_str() {
                "olap" => {
                    if !self.olap {
                        self.olap = true;
                        if let Some(l) = self.pinned.as_mut() {
                            if let Err(e) = l.backend.lift_statement_limit().await {
                                return self.reply_err(unavailable(e)).await;
                            }
                        }
                    }
                    self.reply_ok().await
                }
                "oltp" | "dba" => {
                    if self.olap {
                        self.olap = false;
                        let limit = self.gw.cfg.limits.query_timeout;
                        if let Some(l) = self.pinned.as_mut() {
                            if let Err(e) = l.backend.set_statement_limit(Some(limit)).await {
                                return self.reply_err(unavailable(e)).await;
                            }
                        }
                    }
                    self.reply_ok().await
                }
                other => {
                    self.reply_err(ErrPacket::new(
                        1231,
                        "42000",
                        format!("Variable 'workload' can't be set to the value of '{other}'"),
                    ))
                    .await
                }
            };
        }
        if a.last_insert_id_query && !self.sticky {
            let name = a.local_column.as_deref().unwrap_or("LAST_INSERT_ID()");
            return self.answer_last_insert_id(name).await;
        }
        if a.connection_id_query {
            // The id the client's KILL takes (its backend's changes with the pool).
            let v = self.id.to_string();
            return self
                .answer_local(a.local_column.as_deref().unwrap_or("CONNECTION_ID()"), v)
                .await;
        }
        if a.row_count_query && !self.sticky {
            let v = self.row_count.to_string();
            return self
                .answer_local(a.local_column.as_deref().unwrap_or("ROW_COUNT()"), v)
                .await;
        }
        if a.found_rows_query && !self.sticky {
            // The pooled connection's value is another session's; a `SQL_CALC_FOUND_ROWS`
            // query pins the session, and the server answers.
            let v = self.found_rows.to_string();
            return self
                .answer_local(a.local_column.as_deref().unwrap_or("FOUND_ROWS()"), v)
                .await;
        }
        if let Some((query_only, id)) = a.kill {
            return self.kill(query_only, id).await;
        }
        if a.pins_session.is_some() {
            self.sticky = true;
        }
        let in_tx = self.status & status::IN_TRANS != 0;
        let timeout = link::compound_timeout(
            &a,
            &self.gw.cfg.limits,
            self.olap,
            self.statement_timeout(a.query_timeout_ms, in_tx),
        );
        // Any UPDATE or DELETE in the text, not only a first one, also run by `EXECUTE` of a
        // statement prepared from one (or from text not seen): the whole text runs under the row
        // limit. A text whose other statements could commit would end the limit's transaction
        // halfway: it is refused (see `link::row_limit_text_refusal`).
        let changes_rows = a.changes_rows() || self.sql_prepared.executes_rows(&a);
        self.sql_prepared.follow(&a);
        if let Some(e) = changes_rows
            .then(|| link::row_limit_text_refusal(&a))
            .flatten()
        {
            return self.reply_err(e).await;
        }
        if changes_rows {
            let counted = a
                .statements
                .iter()
                .map(|s| !matches!(s.keyword.as_str(), "INSERT" | "REPLACE") || s.upsert)
                .collect();
            return self
                .checked_dml(packet, in_tx, timeout, None, counted)
                .await;
        }
        if a.has_ddl() {
            self.last_ok = false;
            let r = self
                .forward(packet, Expect::ResultSets, !self.olap, timeout, None)
                .await;
            if self.last_ok {
                self.gw.platform.after_password_ddl(&self.login.branch.id);
            }
            return r;
        }
        if a.consolidable
            && self.gw.cfg.consolidate
            && self.pinned.is_none()
            && !self.sticky
            && self.status & status::IN_TRANS == 0
        {
            return self.consolidated(packet, timeout).await;
        }
        // LOCK TABLES is bounded like a transaction; UNLOCK TABLES (or a transaction started,
        // which releases them) ends that.
        // The last of them in a multi-statement text decides.
        let locks =
            a.statements
                .iter()
                .rev()
                .find_map(|s| match (s.keyword.as_str(), s.second.as_str()) {
                    ("LOCK", _) | ("BACKUP", "LOCK") => Some(true),
                    ("UNLOCK", _) | ("BEGIN", _) | ("START", _) | ("BACKUP", "UNLOCK") => {
                        Some(false)
                    }
                    _ => None,
                });
        self.last_ok = false;
        let r = self
            .forward(packet, Expect::ResultSets, !self.olap, timeout, None)
            .await;
        match locks {
            Some(true) if self.last_ok && self.pinned.is_some() => {
                self.tables_locked.get_or_insert_with(Instant::now);
            }
            Some(false) if self.last_ok => self.tables_locked = None,
            _ => {}
        }
        r
    }

    /// COM_STMT_PREPARE: prepared on a pooled connection, then known to the client by a gateway id,
    /// so executing it later may use any backend connection (it is prepared there on demand).
    async fn prepare(&mut self, packet: Bytes) -> Result<Flow, ClientError> {
        let sql = packet.slice(1..);
        let a = crate::cores::analyze_bytes(sql.clone()).await;
        if let Some(e) = refusal(&self.gw.platform, &self.login, &a)
            .or_else(|| time_limit_refusal(&a, &self.gw.cfg.limits, self.olap))
        {
            return self.reply_err(e).await;
        }
        if a.pins_session.is_some() {
            self.sticky = true;
        }
        let mut lease = match self.lease().await {
            Ok(l) => l,
            Err(e) => return self.reply_err(e).await,
        };
        let frames = match prepare_on(&mut lease.backend, &sql).await {
            Ok(f) => f,
            Err(_) => {
                let e = self.broke(lease, unavailable("the instance connection broke"));
                return self.reply_err(e).await;
            }
        };
        let first = frames[0].payload();
        if first.first() == Some(&0x00) && first.len() >= 9 {
            let backend_id = u32::from_le_bytes([first[1], first[2], first[3], first[4]]);
            let params = u16::from_le_bytes([first[7], first[8]]);
            lease.backend.remember_statement(sql.clone(), backend_id);
            let id = self.next_stmt;
            self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
            let dml = a.statements.len() == 1 && a.changes_rows();
            self.stmts.insert(
                id,
                ClientStmt {
                    sql,
                    dml,
                    timeout_ms: a.query_timeout_ms,
                    params,
                    types: None,
                },
            );
            let mut raw = BytesMut::from(&frames[0].raw[..]);
            raw[5..9].copy_from_slice(&id.to_le_bytes());
            self.client.queue_frame(&raw);
            for f in &frames[1..] {
                self.client.queue_frame(&f.raw);
            }
        } else {
            // The error (quoting the statement) is in the connection's diagnostics now.
            lease.backend.diagnostics = true;
            for f in &frames {
                self.client.queue_frame(&f.raw);
            }
        }
        self.keep_for_diagnostics = lease.backend.diagnostics;
        self.settle(lease, false);
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    /// Makes an execute packet self-contained: parameter types are sent every time, since the backend
    /// connection may not be the one that saw them last.
    fn complete_execute(&mut self, id: u32, packet: Bytes) -> Option<Bytes> {
        let st = self.stmts.get_mut(&id)?;
        let n = st.params as usize;
        if n == 0 {
            return Some(packet);
        }
        let bitmap = n.div_ceil(8);
        let flag_at = 10 + bitmap;
        let flag = *packet.get(flag_at)?;
        if flag == 1 {
            st.types = packet
                .get(flag_at + 1..flag_at + 1 + 2 * n)
                .map(<[u8]>::to_vec);
            return Some(packet);
        }
        let types = st.types.as_ref()?;
        let mut p = BytesMut::with_capacity(packet.len() + types.len());
        p.extend_from_slice(&packet[..flag_at]);
        p.put_u8(1);
        p.extend_from_slice(types);
        p.extend_from_slice(&packet[flag_at + 1..]);
        Some(p.freeze())
    }

    /// A connection, with the client's statement `stmt` (if any) prepared on it and the packet's
    /// statement id rewritten to the backend's.
    async fn lease_for(
        &mut self,
        packet: &Bytes,
        stmt: Option<u32>,
    ) -> Result<(Lease, Bytes), ErrPacket> {
        let mut lease = self.lease().await?;
        let Some(id) = stmt else {
            return Ok((lease, packet.clone()));
        };
        // Its text is cloned only when the backend connection must prepare it.
        let sql = match self.stmts.get(&id) {
            None => {
                self.settle(lease, false);
                return Err(unknown_statement(id, "mysqld_stmt_execute"));
            }
            Some(s) => match lease.backend.statement(&s.sql) {
                Some(backend_id) => return Ok((lease, with_stmt_id(packet, backend_id))),
                None => s.sql.clone(),
            },
        };
        match prepare_on(&mut lease.backend, &sql).await {
            Ok(frames) => {
                let p = frames[0].payload();
                if p.first() == Some(&0x00) && p.len() >= 5 {
                    let backend_id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
                    lease.backend.remember_statement(sql, backend_id);
                    Ok((lease, with_stmt_id(packet, backend_id)))
                } else {
                    lease.backend.diagnostics = true;
                    self.settle(lease, false);
                    Err(ErrPacket::parse(p)
                        .unwrap_or_else(|_| unavailable("cannot prepare the statement")))
                }
            }
            Err(e) => {
                self.settle(lease, true);
                Err(unavailable(e))
            }
        }
    }

    async fn answer_last_insert_id(&mut self, name: &str) -> Result<Flow, ClientError> {
        let v = self.last_insert_id.to_string();
        self.answer_local(name, v).await
    }

    /// A one-column, one-row answer the gateway knows itself.
    async fn answer_local(&mut self, name: &str, v: String) -> Result<Flow, ClientError> {
        let deprecate = self.client.caps & caps::DEPRECATE_EOF != 0;
        self.client.queue(&[1]);
        self.client.queue(&column_definition(
            name,
            column_type::LONGLONG,
            63,
            21,
            0x20 | 0x80 | 1,
        ));
        if !deprecate {
            self.client.queue(&eof(0, self.status));
        }
        self.client.queue(&text_row(&[Some(v.as_bytes())]));
        // A SELECT, answered: ROW_COUNT() says -1 after it.
        self.row_count = -1;
        if deprecate {
            let ok = OkPacket {
                header: 0xFE,
                status: self.status & !status::SESSION_STATE_CHANGED,
                ..Default::default()
            };
            self.client.queue_ok(&ok);
        } else {
            self.client
                .queue(&eof(0, self.status & !status::SESSION_STATE_CHANGED));
        }
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    /// KILL [QUERY] n: n is a gateway connection id; only the same password's sessions may be killed.
    async fn kill(&mut self, query_only: bool, id: u64) -> Result<Flow, ClientError> {
        let root = self.root_target();
        let target = u32::try_from(id).ok().and_then(|id| {
            self.gw
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
        });
        let me = self
            .shared
            .username
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(target) =
            target.filter(|t| *t.username.lock().unwrap_or_else(|e| e.into_inner()) == me)
        else {
            return self
                .reply_err(ErrPacket::new(
                    1094,
                    "HY000",
                    format!("Unknown thread id: {id}"),
                ))
                .await;
        };
        let busy = *target.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((addr, thread)) = busy {
            kill_backend_query(root.clone(), addr, thread, false).await;
        }
        if !query_only {
            target.kill.notify_one();
        }
        self.reply_ok().await
    }

    /// UPDATE/DELETE under the row limit: run inside a transaction (or a savepoint) and undo it when
    /// it touched more rows than allowed.
    async fn checked_dml(
        &mut self,
        packet: Bytes,
        in_tx: bool,
        timeout: Option<Duration>,
        stmt: Option<u32>,
        counted: Vec<bool>,
    ) -> Result<Flow, ClientError> {
        // With autocommit off, the statement opens (or continues) the client's transaction even
        // when none is open yet: it must not be committed here, only guarded by a savepoint.
        let in_tx = in_tx || self.status & status::AUTOCOMMIT == 0;
        let guard = link::Guard::new(in_tx, self.tables_locked.is_some());
        let (mut lease, packet) = match self.lease_for(&packet, stmt).await {
            Ok(l) => l,
            Err(e) => return self.reply_err(e).await,
        };
        let deadline = timeout.map(|d| Instant::now() + d);
        let shared = self.shared.clone();
        let busy = move |b| *shared.busy.lock().unwrap_or_else(|e| e.into_inner()) = b;
        let limits = self.gw.cfg.limits.clone();
        let collected = link::row_limited(
            &mut lease.backend,
            &packet,
            &counted,
            guard,
            &limits,
            deadline,
            &mut self.link,
            busy,
        )
        .await;
        let (frames, t) = match collected {
            Ok(c) => (c.frames, c.tracker),
            Err(link::Failed::Broken(e)) => {
                let e = self.broke(lease, e);
                return self.reply_err(e).await;
            }
            Err(link::Failed::Refused(e)) => {
                if !in_tx {
                    self.status &= !status::IN_TRANS;
                }
                self.keep_for_diagnostics = true;
                self.settle(lease, false);
                return self.reply_err(e).await;
            }
        };
        if !in_tx {
            self.status &= !status::IN_TRANS;
        }
        self.last_insert_id = if t.last_insert_id != 0 {
            t.last_insert_id
        } else {
            self.last_insert_id
        };
        self.row_count = row_count_after(&t);
        if t.last_result_set && !t.error {
            self.found_rows = t.rows;
        }
        for (_, f) in &frames {
            self.queue_for_client(f, lease.backend.capabilities, Some(guard));
        }
        if !t.error {
            self.status = guard.client_status(t.status);
        }
        self.keep_for_diagnostics = t.error || t.warnings > 0;
        self.settle(lease, false);
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    fn mark_busy(&self, lease: &Lease) {
        *self.shared.busy.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((lease.backend.addr, lease.backend.thread_id));
    }
    fn clear_busy(&self) {
        *self.shared.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Queues one response frame for the client, rewriting OK packets when the client's capabilities
    /// differ from the backend's (session tracking) or the status must change.
    fn queue_for_client(
        &mut self,
        f: &strata_wire::codec::Frame,
        backend_caps: u32,
        guard: Option<link::Guard>,
    ) {
        let p = f.payload();
        let is_ok = (p.first() == Some(&0x00) || (p.first() == Some(&0xFE) && p.len() > 5))
            && p.len() < 0xFFFF;
        let rewrite = is_ok
            && (self.client.caps & caps::SESSION_TRACK == 0
                || guard.is_some_and(|g| g != link::Guard::Savepoint));
        if rewrite {
            if let Ok(mut ok) = OkPacket::parse(p, backend_caps) {
                if let Some(g) = guard {
                    ok.status = g.client_status(ok.status);
                }
                let enc = ok.encode(self.client.caps);
                self.client.queue(&enc);
                return;
            }
        }
        self.client.queue_frame(&f.raw);
    }

    /// Sends a command to the backend and streams the response to the client.
    async fn forward(
        &mut self,
        packet: Bytes,
        expect: Expect,
        limited: bool,
        timeout: Option<Duration>,
        stmt: Option<u32>,
    ) -> Result<Flow, ClientError> {
        let root = self.root_target();
        let held = self.pinned.is_some();
        let (mut lease, sent) = match self.lease_for(&packet, stmt).await {
            Ok(l) => l,
            Err(e) => return self.reply_err(e).await,
        };
        let mut out = BytesMut::with_capacity(sent.len() + 4);
        let mut seq = 0;
        strata_wire::codec::put_packet(&mut out, &mut seq, &sent);
        if lease.backend.send_raw(&out).await.is_err() {
            if held {
                // The session's own connection (its transaction, locks or session state went
                // with it): never carried on silently elsewhere.
                let e = self.broke(lease, unavailable("the instance connection broke"));
                return self.reply_err(e).await;
            }
            // A pooled connection that died while idle: try once more with a fresh one.
            lease.discard();
            let (l, sent) = match self.lease_for(&packet, stmt).await {
                Ok(l) => l,
                Err(e) => return self.reply_err(e).await,
            };
            lease = l;
            out.clear();
            let mut seq = 0;
            strata_wire::codec::put_packet(&mut out, &mut seq, &sent);
            if lease.backend.send_raw(&out).await.is_err() {
                let e = self.broke(lease, unavailable("cannot reach the instance"));
                return self.reply_err(e).await;
            }
        }
        self.mark_busy(&lease);
        let limits = self.gw.cfg.limits.clone();
        let mut t = Tracker::new(expect, lease.backend.capabilities);
        // Results leave deployment artifacts out of schema listings (text rows, and binary rows of
        // prepared statements).
        let mut listing =
            (expect == Expect::ResultSets).then(strata_wire::listing::ArtifactRows::default);
        let binary = stmt.is_some();
        let mut bytes: u64 = 0;
        let deadline = timeout.map(|d| Instant::now() + d);
        let mut killed = false;
        let mut connection_killed = false;
        let mut exceeded: Option<ErrPacket> = None;
        let mut client_gone = false;
        while !t.done() {
            let f = match lease.backend.buffered_frame() {
                Some(f) => f,
                None => {
                    if !client_gone
                        && self.client.buffered() > 0
                        && self.client.flush().await.is_err()
                    {
                        client_gone = true;
                    }
                    // While the instance works, notice a client that hangs up (its query is then
                    // stopped); anything it pipelines meanwhile stays buffered for later.
                    let waited = if client_gone {
                        Some(
                            next_frame_until(
                                &mut lease.backend,
                                deadline,
                                &mut killed,
                                root.clone(),
                            )
                            .await,
                        )
                    } else {
                        tokio::select! {
                            r = next_frame_until(&mut lease.backend, deadline, &mut killed, root.clone()) => Some(r),
                            n = self.client.fill() => match n {
                                Ok(0) | Err(_) => None,
                                Ok(_) => continue,
                            },
                        }
                    };
                    let Some(waited) = waited else {
                        kill_backend_query(
                            root.clone(),
                            lease.backend.addr,
                            lease.backend.thread_id,
                            false,
                        )
                        .await;
                        self.clear_busy();
                        self.settle(lease, true);
                        return Ok(Flow::Close);
                    };
                    match waited {
                        Ok(f) => f,
                        Err(_) => {
                            self.clear_busy();
                            let e = self.broke(
                                lease,
                                unavailable("the instance connection broke during the query"),
                            );
                            if client_gone {
                                return Ok(Flow::Close);
                            }
                            return self.reply_err(e).await;
                        }
                    }
                }
            };
            let ev = match t.feed(&f) {
                Ok(ev) => ev,
                Err(_) => {
                    self.clear_busy();
                    self.settle(lease, true);
                    return self
                        .reply_err(unavailable("unexpected reply from the instance"))
                        .await;
                }
            };
            let f = if ev == Event::Column && lease.backend.extended_metadata {
                client_column(f)
            } else {
                f
            };
            if exceeded.is_some() || client_gone {
                continue; // draining what is left
            }
            if let Some(l) = listing.as_mut() {
                match ev {
                    Event::Column => l.column(f.payload()),
                    Event::Row if !f.continues() && l.hide(f.payload(), binary) => continue,
                    Event::Terminal { .. } => l.end_of_result(),
                    _ => {}
                }
            }
            bytes += f.raw.len() as u64;
            if limited && ev == Event::Row && t.rows > limits.max_rows {
                exceeded = Some(ErrPacket::new(
                    1105,
                    "HY000",
                    format!("Row count exceeded {}", limits.max_rows),
                ));
            } else if limited && bytes > limits.max_result_bytes {
                exceeded = Some(ErrPacket::new(
                    1105,
                    "HY000",
                    format!(
                        "resource_exhausted: result set larger than max ({} vs. {})",
                        bytes, limits.max_result_bytes
                    ),
                ));
            }
            if exceeded.is_some() {
                // Stop the query; the rest of its response is drained and dropped.
                if !killed {
                    killed = true;
                    kill_backend_query(
                        root.clone(),
                        lease.backend.addr,
                        lease.backend.thread_id,
                        false,
                    )
                    .await;
                }
                continue;
            }
            let terminal = matches!(ev, Event::Terminal { .. });
            if terminal && is_err_code(f.payload(), ER_CONNECTION_KILLED) {
                // The instance ended this connection (its transaction with it).
                connection_killed = true;
                if let Some(mut e) = self
                    .link
                    .ended_by_cutover(lease.backend.thread_id, self.lost())
                {
                    if self.sticky {
                        e.message.push_str(link::SESSION_STATE_LOST);
                    }
                    self.client.queue_err(&e);
                    continue;
                }
            }
            if terminal {
                self.queue_for_client(&f, lease.backend.capabilities, None);
            } else {
                self.client.queue_frame(&f.raw);
            }
            if let Some(c) = self.capture.as_mut() {
                c.bytes += f.raw.len();
                if c.bytes > CAPTURE_MAX {
                    self.capture = None;
                } else {
                    c.frames.push((f.clone(), terminal));
                }
            }
            if self.client.should_flush() && self.client.flush().await.is_err() {
                client_gone = true;
                if !killed {
                    killed = true;
                    kill_backend_query(
                        root.clone(),
                        lease.backend.addr,
                        lease.backend.thread_id,
                        false,
                    )
                    .await;
                }
            }
        }
        self.clear_busy();
        lease.backend.note(&t);
        if exceeded.is_some() || client_gone {
            lease.backend.diagnostics = true;
        }
        self.keep_for_diagnostics = t.error || t.warnings > 0 || exceeded.is_some();
        self.last_ok = !t.error && exceeded.is_none();
        if !t.error && t.status_seen {
            self.status = t.status;
        }
        if t.last_insert_id != 0 {
            self.last_insert_id = t.last_insert_id;
        }
        self.row_count = row_count_after(&t);
        if t.last_result_set && !t.error {
            self.found_rows = t.rows;
        }
        if let Some(c) = self.capture.as_mut() {
            c.complete = exceeded.is_none() && !client_gone;
            c.rows = t.rows;
            c.caps = lease.backend.capabilities;
            c.status = self.status;
        }
        self.settle(lease, connection_killed);
        if client_gone {
            return Ok(Flow::Close);
        }
        if let Some(e) = exceeded {
            self.client.queue_err(&e);
        }
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    /// Identical read-only queries in flight at the same moment run once: the first one runs, the
    /// others wait for its result and get the same bytes.
    async fn consolidated(
        &mut self,
        packet: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Flow, ClientError> {
        // A SELECT: whatever answers it, ROW_COUNT() says -1 after it.
        self.row_count = -1;
        let key = crate::InflightKey {
            pool: self.link.key.clone(),
            sql: packet.clone(),
        };
        let existing = self
            .gw
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(mut rx) = existing {
            let shared = rx
                .wait_for(|v| v.is_some())
                .await
                .ok()
                .and_then(|v| v.clone().flatten());
            if let Some(result) = shared {
                self.gw
                    .consolidated
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.found_rows = result.rows;
                for (f, terminal) in &result.frames {
                    if *terminal {
                        self.queue_for_client(f, result.caps, None);
                    } else {
                        self.client.queue_frame(&f.raw);
                    }
                }
                self.status = result.status;
                self.client.flush().await?;
                return Ok(Flow::Continue);
            }
            // The first one failed or was too large to share: run it here.
            return self
                .forward(packet, Expect::ResultSets, !self.olap, timeout, None)
                .await;
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        self.gw
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), rx);
        self.capture = Some(Captured::default());
        let r = self
            .forward(packet, Expect::ResultSets, !self.olap, timeout, None)
            .await;
        let result = self.capture.take().filter(|c| c.complete).map(Arc::new);
        self.gw
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let _ = tx.send(Some(result));
        r
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// What `ROW_COUNT()` says after a statement: -1 after an error or a result set, else the rows
/// its OK packet reported changed.
fn row_count_after(t: &Tracker) -> i64 {
    if t.error || t.last_result_set {
        -1
    } else {
        i64::try_from(t.last_affected).unwrap_or(i64::MAX)
    }
}

/// The gateway's refusals of a statement, the same on the MySQL protocol and HTTP SQL: direct DDL
/// under safe migrations, foreign keys where the database does not allow them, deployment
/// artifacts, routines, databases, and table rebuilds below the admin role.
pub(crate) fn refusal(
    platform: &strata_control::Platform,
    login: &Login,
    a: &strata_sqlscan::Analysis,
) -> Option<ErrPacket> {
    let branch = &login.branch.id;
    let role = login.password.role;
    if a.manages_credentials() {
        Some(credentials_refused())
    } else if a.unchecks() {
        Some(ErrPacket::new(
            1227,
            "42000",
            "check_constraint_checks cannot be changed: CHECK constraints always hold",
        ))
    } else if a.has_ddl() && platform.safe_migrations(branch) {
        Some(ddl_disabled())
    } else if a.runs_hidden_text() {
        Some(ErrPacket::new(1235, "42000", HIDDEN_TEXT_REFUSED))
    } else if a.hides_locks() {
        Some(ErrPacket::new(1235, "42000", HIDDEN_LOCKS_REFUSED))
    } else if a.statements.iter().any(|s| s.keyword == "BACKUP") {
        Some(ErrPacket::new(1235, "42000", BACKUP_REFUSED))
    } else if a.statements.iter().any(|s| s.compound && s.changes_rows) {
        Some(ErrPacket::new(1235, "42000", COMPOUND_ROWS_REFUSED))
    } else if a.has_xa() {
        Some(ErrPacket::new(1235, "42000", XA_REFUSED))
    } else if a.kills_others() {
        Some(ErrPacket::new(1235, "42000", KILL_REFUSED))
    } else if a.has_foreign_key() && !platform.foreign_keys_allowed(branch) {
        Some(foreign_keys_refused())
    } else if a.touches_artifact() {
        Some(artifact_refused())
    } else if a.has_routine() {
        Some(routines_refused())
    } else if a.makes_undeployable() {
        Some(ErrPacket::new(1235, "42000", UNDEPLOYABLE_REFUSED))
    } else if a.changes_database() {
        Some(database_refused())
    } else if a.rebuilds_tables() && role != strata_model::Role::Admin {
        Some(rebuild_refused(role))
    } else {
        None
    }
}

/// Accounts are the platform's: a password is created, renewed and deleted with the API or the
/// CLI. (The server refuses all of these but `SET PASSWORD` on one's own account, which the
/// instance's supervisor also undoes within seconds.)
fn credentials_refused() -> ErrPacket {
    ErrPacket::new(
        1227,
        "42000",
        "Access denied; passwords, users and grants are managed with the API or the CLI (strata password create|renew|delete)",
    )
}

fn ddl_disabled() -> ErrPacket {
    ErrPacket::new(1105, "HY000", "direct DDL is disabled")
}

/// Vitess's refusal, on every branch of a database that does not allow foreign keys (the setting is
/// the database's: a branch that could make them would hold a schema no deploy request can ship).
const FOREIGN_KEYS_REFUSED: &str = "VT10001: foreign key constraints are not allowed";

fn foreign_keys_refused() -> ErrPacket {
    ErrPacket::new(1105, "HY000", FOREIGN_KEYS_REFUSED)
}

/// Deployment tables and triggers (`~strata_…`, `_strata_…`) belong to the deployment alone: a
/// write to one would change what its cut-over or revert puts in place, unseen by any review.
const ARTIFACT_REFUSED: &str =
    "names starting with ~strata_ or _strata_ are reserved for deployments and cannot be used";

/// Stored routines, triggers and events are not part of a branch's schema (no diff shows them, no
/// deploy carries them), as on PlanetScale.
const ROUTINES_REFUSED: &str =
    "VT12001: unsupported: stored routines, triggers and events are not supported";

/// The gateway's connection ids are what `KILL` takes; the instance's users are shared by the
/// passwords of a role, so a KILL by user or query id would reach other clients' work.
const KILL_REFUSED: &str = "VT12001: unsupported: KILL USER, KILL QUERY ID and KILL among other statements; use KILL [QUERY] <connection id>";

/// Text built at run time cannot be judged by any reading of the query: the rules the gateway
/// keeps (accounts, XA, KILL, table locks, safe migrations) would not hold for it. Statements from
/// a literal and the protocol's own prepared statements are read and allowed.
/// Table locks the gateway cannot see it cannot release at the transaction time limit, nor keep
/// the session's connection for.
const HIDDEN_LOCKS_REFUSED: &str = "VT12001: unsupported: LOCK TABLES, UNLOCK TABLES, BACKUP LOCK, FLUSH … WITH READ LOCK and HANDLER run only as statements of their own (not prepared, run from a string or inside a compound statement)";

/// `BACKUP LOCK` blocks every DDL on a table, a deploy's among them, and writers queue behind a
/// DDL waiting for it; backups are the platform's (`strata backup create`).
const BACKUP_REFUSED: &str = "VT12001: unsupported: BACKUP LOCK and BACKUP STAGE; backups are taken by the platform (strata backup create)";

/// The row limit undoes a single statement's changes; inside a compound statement it cannot.
const COMPOUND_ROWS_REFUSED: &str = "VT12001: unsupported: UPDATE or DELETE inside a compound statement (BEGIN NOT ATOMIC, IF, loops), where the row limit cannot hold it; send it as a statement of its own";

const HIDDEN_TEXT_REFUSED: &str = "VT12001: unsupported: PREPARE or EXECUTE IMMEDIATE of text built at run time (a variable or an expression); use a string literal, or your driver's prepared statements";

/// A prepared XA transaction outlives its connection, the gateway's transaction limit and the
/// platform's restarts, holding its row locks (and every deploy of the table behind them).
const XA_REFUSED: &str = "VT12001: unsupported: XA transactions";

/// Sequences and system-versioned tables: the schema engine cannot diff them, so no deploy request
/// could carry one to production; refused where they would be made, not found at deploy time.
const UNDEPLOYABLE_REFUSED: &str =
    "VT12001: unsupported: sequences and system-versioned tables cannot be deployed";

/// OPTIMIZE and REPAIR need only read and write privileges on the server, yet rebuild whole
/// tables: an administration statement, for admin passwords only.
fn rebuild_refused_message(role: strata_model::Role) -> String {
    format!("OPTIMIZE and REPAIR rebuild tables: not allowed for a {role} password (use an admin password)")
}

fn rebuild_refused(role: strata_model::Role) -> ErrPacket {
    ErrPacket::new(1142, "42000", rebuild_refused_message(role))
}

/// Databases are made and deleted through the API and the CLI, as on PlanetScale.
const DATABASE_REFUSED: &str = "VT12001: unsupported: CREATE, ALTER and DROP DATABASE; databases are created and deleted with the API or the CLI (strata database create|delete)";

fn database_refused() -> ErrPacket {
    ErrPacket::new(1105, "HY000", DATABASE_REFUSED)
}

fn routines_refused() -> ErrPacket {
    ErrPacket::new(1235, "42000", ROUTINES_REFUSED)
}

/// The error for the next statement of a transaction the gateway rolled back at its time limit, in
/// Vitess's words.
fn transaction_aborted(id: u32, limit: Duration) -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        link::transaction_aborted(&id.to_string(), limit),
    )
}

/// `ROLLBACK` (or `ROLLBACK WORK`) alone, not to a savepoint.
fn is_plain_rollback(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql);
    let words: Vec<String> = text
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    matches!(
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["ROLLBACK"] | ["ROLLBACK", "WORK"]
    )
}

fn artifact_refused() -> ErrPacket {
    ErrPacket::new(1142, "42000", ARTIFACT_REFUSED)
}

/// Prepares `sql` on a backend connection and returns the whole response.
async fn prepare_on(
    backend: &mut Backend,
    sql: &[u8],
) -> Result<Vec<strata_wire::codec::Frame>, BackendError> {
    let mut p = BytesMut::with_capacity(sql.len() + 1);
    p.put_u8(command::STMT_PREPARE);
    p.extend_from_slice(sql);
    backend.send_command(&p).await?;
    let mut t = Tracker::new(Expect::Prepare, backend.capabilities);
    let mut frames = Vec::new();
    while !t.done() {
        let f = backend.next_frame().await?;
        let definition = t.feed(&f)? == Event::Column && !is_eof(f.payload());
        frames.push(if definition && backend.extended_metadata {
            client_column(f)
        } else {
            f
        });
    }
    Ok(frames)
}

#[allow(dead_code)]
fn put_command(cmd: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 1);
    b.put_u8(cmd);
    b.extend_from_slice(body);
    b.freeze()
}

/// `ER_CONNECTION_KILLED`: the instance ended the connection the statement ran on.
const ER_CONNECTION_KILLED: u16 = 1927;

/// True for an ERR packet with this error code.
fn is_err_code(payload: &[u8], code: u16) -> bool {
    payload.len() >= 3 && payload[0] == 0xFF && u16::from_le_bytes([payload[1], payload[2]]) == code
}

/// True when the text may commit an open transaction: anything but one statement that reads or
/// changes rows (`COMMIT`, and every statement that commits implicitly: `BEGIN`, `SET
/// autocommit = 1`, DDL, `ANALYZE`, `LOCK TABLES`, …, alone or in a multi-statement text).
pub(crate) fn commits(a: &strata_sqlscan::Analysis) -> bool {
    const ROWS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "WITH",
        "VALUES",
        "TABLE",
        "SAVEPOINT",
        "RELEASE",
        "SHOW",
        "DESCRIBE",
        "DESC",
        "EXPLAIN",
        "DO",
    ];
    let rows_only = |s: &strata_sqlscan::Statement| {
        ROWS.contains(&s.keyword.as_str()) || (s.keyword == "ROLLBACK" && s.second == "TO")
    };
    let real: Vec<_> = a
        .statements
        .iter()
        .filter(|s| !s.keyword.is_empty())
        .collect();
    real.len() > 1 || real.iter().any(|s| !rows_only(s))
}
