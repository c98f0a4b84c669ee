//! The HTTP SQL endpoint: the protocol of PlanetScale's serverless driver (`strata_httpsql`) over
//! HTTP/1.1 and HTTP/2, with TLS on the gateway's certificate (plain HTTP only from loopback, by the
//! gateway's own setting). A call authenticates with a branch password (HTTP Basic), so the
//! credential decides database, branch and role, exactly as on the MySQL port; safe migrations and
//! the row and size limits are the gateway's.
//!
//! Sessions: each response carries a signed session value the driver sends back. A session holds a
//! backend connection only while it needs one to keep state (a transaction, `SET`, temporary tables,
//! locks); otherwise the connection goes back to the (branch, role) pool after each statement, so
//! `Client.execute()`, which starts a new session per call, costs no connection setup. Requests on
//! one session are served in turn. Idle sessions expire: an open transaction is rolled back, and a
//! later call on it is told so.

use crate::link::{self, Failed, Link, ResultLimits};
use crate::pool::Lease;
use crate::{allowed_from, Gateway};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_control::Login;
use strata_httpsql::{
    execute_response, http_error_body, http_status, vitess_type, ExecuteRequest, Field,
    QueryResult, Row, RpcError, SessionSigner, SessionState, CREATE_SESSION, EXECUTE,
};
use strata_model::Role;
use strata_wire::caps::{self, status};
use strata_wire::codec::Frame;
use strata_wire::packets::{ColumnDef, ErrPacket, OkPacket};
use strata_wire::tracker::{Event, Tracker};
use tokio::net::{TcpListener, TcpStream};

/// The largest request body (SQL with big literal inserts); PlanetScale's clients allow ~100 MiB.
const MAX_BODY: usize = 64 << 20;
/// Bodies being read, in all, in KiB: a few largest ones at a time, so slow or unfinished uploads
/// cannot take the process's memory.
const BODY_BUDGET_KIB: usize = 4 * (MAX_BODY >> 10);
/// How long a request's body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(60);
/// Results being held (read from the instance, not yet answered), in all, in MiB: with results of
/// up to 64 MiB each (256 MiB for OLAP reads), concurrent large reads wait, then are refused,
/// instead of taking the process's memory.
const RESULT_MEMORY_MIB: usize = 512;
/// Bodies up to this size are read without taking from the budget.
const SMALL_BODY: usize = 1 << 20;
/// How long a request waits for room in the body budget.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);
/// How the endpoint's backend connections are made: rows affected counts rows matched, as on
/// PlanetScale; utf8mb4 (utf8mb4_general_ci). Connections with this profile are shared with MySQL
/// port clients that negotiated the same.
const PROFILE: u32 = caps::FOUND_ROWS | caps::DEPRECATE_EOF;
const CHARSET: u8 = 45;

struct HttpSession {
    password_id: String,
    conn: Option<Lease>,
    /// The server's status flags after the last statement (autocommit, transaction open).
    status: u16,
    in_transaction: bool,
    /// When the open transaction began (transactions are limited in time, as on the MySQL port).
    tx_started: Option<Instant>,
    /// Since when the session holds `LOCK TABLES`: bounded by the transaction time limit too.
    locked_at: Option<Instant>,
    /// What ended the session's transaction or locks while it was idle: the next call hears it.
    ended: Option<RpcError>,
    /// Session state lives on the connection (SET, temporary tables, locks, …): keep it.
    pinned: bool,
    olap: bool,
    last_used: Instant,
    /// Statements prepared with SQL on the session's connection (see `link::SqlPrepared`).
    sql_prepared: link::SqlPrepared,
}

impl HttpSession {
    /// The session's connection is gone (closed, expired, rolled back at a limit), and with it any
    /// transaction, table locks and session state. Returns whether a transaction was open.
    fn forget_connection_state(&mut self) -> bool {
        let was_in_transaction = self.in_transaction;
        self.in_transaction = false;
        self.tx_started = None;
        self.locked_at = None;
        self.pinned = false;
        self.sql_prepared.clear();
        was_in_transaction
    }
}

type SessionRef = Arc<tokio::sync::Mutex<HttpSession>>;

/// The session's connection is gone (`e` says why), and with it any transaction and session
/// state: a transaction's end is said as such.
fn connection_lost(s: &mut HttpSession, e: &ErrPacket) -> RpcError {
    if s.forget_connection_state() {
        RpcError {
            code: "ABORTED",
            message: format!("transaction ended: {}; it was rolled back", e.message),
        }
    } else {
        rpc_error(e)
    }
}

/// The session's connection was ended by a deploy's forced cut-over: what the client hears
/// (`None`: it was not).
fn ended_by_cutover(
    s: &mut HttpSession,
    link: &Link,
    thread_id: u32,
    committing: bool,
    sent_at: Instant,
) -> Option<RpcError> {
    let lost = link::Lost {
        in_transaction: s.in_transaction || s.status & status::AUTOCOMMIT == 0,
        committing,
        sent_at: Some(sent_at),
    };
    let mut e = link.ended_by_cutover(thread_id, lost)?;
    if s.pinned {
        e.message.push_str(
            "; the session's state on the instance (autocommit, variables, temporary tables, named locks, prepared statements) went with it",
        );
    }
    s.forget_connection_state();
    Some(RpcError {
        code: "ABORTED",
        message: format!(
            "{} (errno {}) (sqlstate {})",
            e.message,
            e.code,
            String::from_utf8_lossy(&e.state)
        ),
    })
}

pub struct HttpSql {
    gw: Arc<Gateway>,
    signer: SessionSigner,
    idle: Duration,
    sessions: Mutex<HashMap<String, SessionRef>>,
    /// Recent logins: username → (when checked, SHA-256 of the password that passed, the login, when
    /// its use was last recorded). Serverless clients authenticate every call; this spares the
    /// catalog lookups for a second.
    logins: Mutex<HashMap<String, CachedLogin>>,
    id_prefix: String,
    next_id: std::sync::atomic::AtomicU64,
    /// Connections whose first request has not arrived yet.
    prelogin: Arc<crate::admission::Admission>,
    /// Room for request bodies being read (see [`BODY_BUDGET_KIB`]).
    body_budget: Arc<tokio::sync::Semaphore>,
    /// Room for results being held (see [`RESULT_MEMORY_MIB`]).
    result_memory: Arc<tokio::sync::Semaphore>,
}

struct CachedLogin {
    at: Instant,
    secret: [u8; 32],
    login: Arc<Login>,
    used: Instant,
}

/// How long a checked login is trusted without asking the catalog again (a deleted or expired
/// password stops working within this).
const LOGIN_TTL: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn reply(status: u16, body: &impl serde::Serialize, gzip: bool) -> Response<Full<Bytes>> {
    // Room for an ordinary answer up front: grown from empty, the buffer was reallocated several
    // times per answer.
    let mut bytes = Vec::with_capacity(2048);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if gzip && bytes.len() > 1024 {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(&bytes).is_ok() {
            if let Ok(z) = enc.finish() {
                bytes = z;
                builder = builder.header("content-encoding", "gzip");
            }
        }
    }
    builder
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// An answer's body with the share of the shared result memory it was made in: given back when
/// the body has been sent (or the connection ends), so answers clients do not read stay within
/// that memory.
/// The body goes out in pieces: hyper asks for the next one only when it has room to send it,
/// so the share is held until the answer is nearly all in the socket, not just handed over.
struct HeldBody {
    data: Bytes,
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A result (or its answer) past a MiB, by its share of the result memory: turned into rows and
/// encoded on the blocking pool, since on a gateway core the other connections of the thread
/// would wait meanwhile.
fn past_a_mib(held: &Option<tokio::sync::OwnedSemaphorePermit>) -> bool {
    held.as_ref().is_some_and(|p| p.num_permits() > 1)
}

/// The size of the pieces an answer goes out in.
const BODY_PIECE: usize = 64 * 1024;

impl hyper::body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.data.is_empty() {
            self._held = None;
            return std::task::Poll::Ready(None);
        }
        let n = self.data.len().min(BODY_PIECE);
        let piece = self.data.split_to(n);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

/// The answer to a connection refused before its first request: 503 with the error body, unless it
/// speaks TLS (no handshake is spent on it then).
async fn busy(tcp: TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    let tls = matches!(
        tokio::time::timeout(Duration::from_millis(500), tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    );
    if tls {
        return;
    }
    let body = http_error_body(
        "resource_exhausted",
        &format!(
            "too many connections from {} have not sent their first request yet: retry shortly",
            peer.ip()
        ),
    )
    .to_string();
    let mut tcp = tcp;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer.as_bytes())).await;
}

fn fail(code: &str, message: &str, gzip: bool) -> Response<Full<Bytes>> {
    reply(http_status(code), &http_error_body(code, message), gzip)
}

/// `user:password` from `Authorization: Basic …`.
fn basic_auth(req: &Request<Incoming>) -> Option<(String, String)> {
    use base64::Engine;
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, b64) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    (!u.is_empty()).then(|| (u.to_string(), p.to_string()))
}

/// `%XX` escapes decoded (the driver sends credentials taken from a URL still escaped).
fn percent_decoded(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn rpc_error(e: &ErrPacket) -> RpcError {
    RpcError::mysql(e.code, &String::from_utf8_lossy(&e.state), &e.message)
}

/// Statements PlanetScale's edge answers itself; apps send them to any PlanetScale endpoint.
fn planetscale_noop(sql: &str) -> bool {
    let s = sql.trim().trim_end_matches(';').trim().to_ascii_lowercase();
    s.starts_with("set @@boost_cached_queries") || s == "use @primary" || s == "use @replica"
}

impl HttpSql {
    pub fn new(gw: Arc<Gateway>, session_key: &[u8], idle: Duration) -> Arc<HttpSql> {
        Arc::new(HttpSql {
            signer: SessionSigner::new(session_key),
            idle,
            sessions: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
            id_prefix: strata_model::ids::public_id(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            prelogin: crate::admission::Admission::new(
                gw.cfg.prelogin_max,
                gw.cfg.prelogin_per_address,
            ),
            body_budget: Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB)),
            result_memory: Arc::new(tokio::sync::Semaphore::new(RESULT_MEMORY_MIB)),
            gw,
        })
    }

    /// Open sessions (for tests and monitoring).
    pub fn sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Accepts connections until `shutdown` completes; TLS (ALPN h2, http/1.1) or, from loopback
    /// when the gateway allows it, plain HTTP, told apart by the first byte.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let tls = tls.map(|c| {
            let mut c = (*c).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(c))
        });
        let sweeper = {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    me.expire();
                }
            })
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    let me = self.clone();
                    let tls = tls.clone();
                    self.gw.cores.spawn(tcp, move |tcp| async move {
                        // Past the gateway's bound on open connections: turned away at once
                        // (503 in plain HTTP; a TLS client is closed).
                        let Some(_open) = me.gw.clients.open() else {
                            busy(tcp, peer).await;
                            return;
                        };
                        // Past the bound on connections not yet at their first request, after a
                        // moment's wait: refused (503 in plain HTTP; a TLS client is closed).
                        let wait = crate::admission::WAIT;
                        match me.prelogin.enter_within(peer.ip(), wait).await {
                            Some(ticket) => {
                                let eviction = ticket.eviction();
                                let held = Arc::new(Mutex::new(Some(ticket)));
                                let evicted = {
                                    let held = held.clone();
                                    async move {
                                        loop {
                                            eviction.notified().await;
                                            // Only before the first request: after it the
                                            // place is given back already.
                                            if lock(&held).is_some() {
                                                break;
                                            }
                                        }
                                    }
                                };
                                tokio::select! {
                                    _ = me.connection(tcp, peer, tls, held) => {}
                                    _ = evicted => tracing::debug!(%peer, "no request yet, closed to make room for another address"),
                                }
                            }
                            None => busy(tcp, peer).await,
                        }
                    });
                }
            }
        }
        sweeper.abort();
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ticket: Arc<Mutex<Option<crate::admission::Ticket>>>,
    ) {
        let _ = tcp.set_nodelay(true);
        let deadline = self.gw.cfg.login_timeout;
        let mut first = [0u8; 1];
        let is_tls = match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
            Ok(Ok(1)) => first[0] == 0x16,
            // Nothing sent before the deadline, or gone.
            _ => return,
        };
        // The place is given back when the first request's headers are in (or the connection ends).
        let me = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let me = me.clone();
            lock(&ticket).take();
            async move {
                let mut held = None;
                let answer = me.handle(req, peer, &mut held).await;
                let (parts, body) = answer.into_parts();
                let data = match body.collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(never) => match never {},
                };
                Ok::<_, std::convert::Infallible>(Response::from_parts(
                    parts,
                    HeldBody { data, _held: held },
                ))
            }
        });
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(deadline);
        if is_tls {
            let Some(acceptor) = tls else { return };
            let Ok(Ok(stream)) = tokio::time::timeout(deadline, acceptor.accept(tcp)).await else {
                return;
            };
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        } else if self.gw.cfg.allow_plaintext_loopback && peer.ip().is_loopback() {
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        } else {
            use tokio::io::AsyncWriteExt;
            let body = http_error_body(
                "permission_denied",
                "server does not allow insecure connections, client must use SSL/TLS",
            )
            .to_string();
            let mut tcp = tcp;
            let _ = tcp
                .write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    }

    /// Drops sessions idle for longer than the limit, closing the connection they held.
    /// Also ends transactions and table locks held idle past the transaction time limit (as on
    /// the MySQL port: they hold other writers and a deploy's cut-over); the session's next call
    /// hears it.
    fn expire(&self) {
        let idle = self.idle;
        let limit = self.gw.cfg.limits.transaction_timeout;
        let mut held = Vec::new();
        lock(&self.sessions).retain(|id, s| match s.try_lock() {
            Ok(mut s) if s.last_used.elapsed() > idle => {
                // The flags stay: a call that cloned this session before the sweep finds its
                // connection gone with them set, and `run` tells the client.
                held.extend(s.conn.take());
                false
            }
            Ok(mut s) if s.conn.is_some() => {
                let since = match (s.tx_started.filter(|_| s.in_transaction), s.locked_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if since.is_some_and(|t| t.elapsed() > limit) {
                    held.extend(s.conn.take());
                    let what = if s.in_transaction {
                        link::transaction_aborted(id, limit)
                    } else {
                        link::locks_released(limit)
                    };
                    s.ended = Some(RpcError {
                        code: "ABORTED",
                        message: format!("{what} (errno 1105) (sqlstate HY000)"),
                    });
                    s.forget_connection_state();
                    tracing::info!(session = %id, "transaction or table locks rolled back after exceeding the transaction timeout");
                }
                true
            }
            _ => true,
        });
        for l in held {
            // Closing it ends its transaction (rolled back) and its session state.
            l.discard();
        }
    }

    /// Answers one request. `held` receives the answer's share of the shared result memory,
    /// kept until the answer has been sent (a client that does not read holds it, not more).
    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        held_out: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Response<Full<Bytes>> {
        let gzip = req
            .headers()
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("gzip"));
        let path = req.uri().path().to_string();
        if path != EXECUTE && path != CREATE_SESSION {
            return fail("not_found", &format!("no such method: {path}"), gzip);
        }
        if req.method() != hyper::Method::POST {
            return fail("invalid_argument", "use POST", gzip);
        }
        let ip = peer.ip();
        let credentials = basic_auth(&req);
        let username = credentials
            .as_ref()
            .map(|(u, _)| u.clone())
            .unwrap_or_default();
        if self.gw.blocked(ip, &username) {
            return fail(
                "resource_exhausted",
                &crate::login_blocked(&username, ip).message,
                gzip,
            );
        }
        let Some(login) = credentials.and_then(|(u, p)| self.authenticate(u, &p, ip)) else {
            self.gw.failed_login(ip, &username).await;
            return fail("unauthenticated", "invalid auth credentials", gzip);
        };
        // The declared size (or the largest allowed) is held from the budget while the body is read.
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(MAX_BODY)
            .min(MAX_BODY);
        let kib = u32::try_from((declared >> 10) + 1).unwrap_or(u32::MAX);
        // Small bodies (every ordinary query) are not held up behind large uploads: only bodies
        // declared over 1 MiB (or undeclared) take from the budget.
        let room = if declared <= SMALL_BODY {
            Ok(Ok(None))
        } else {
            tokio::time::timeout(
                BODY_BUDGET_WAIT,
                self.body_budget.clone().acquire_many_owned(kib),
            )
            .await
            .map(|r| r.map(Some))
        };
        let Ok(Ok(_room)) = room else {
            return fail(
                "resource_exhausted",
                "too many large requests are being received: retry shortly",
                gzip,
            );
        };
        let read = tokio::time::timeout(
            BODY_DEADLINE,
            Limited::new(req.into_body(), MAX_BODY).collect(),
        )
        .await;
        let Ok(read) = read else {
            return fail(
                "deadline_exceeded",
                &format!("the request body did not arrive within {BODY_DEADLINE:?}"),
                gzip,
            );
        };
        let body = match read {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return if e.is::<http_body_util::LengthLimitError>() {
                    reply(
                        413,
                        &http_error_body(
                            "resource_exhausted",
                            &format!("request body larger than {MAX_BODY} bytes"),
                        ),
                        gzip,
                    )
                } else {
                    fail("invalid_argument", "could not read the request body", gzip)
                };
            }
        };
        if path == CREATE_SESSION {
            let id = self.new_session(&login);
            let token = self
                .signer
                .token(&id, &login.password.id, SessionState::FRESH);
            let role = match login.password.role {
                Role::Reader => "reader",
                Role::Writer => "writer",
                Role::Readwriter => "readwriter",
                Role::Admin => "admin",
            };
            return reply(
                200,
                &serde_json::json!({
                    "branch": login.branch.name,
                    "user": { "username": login.password.username, "psid": login.password.id, "role": role },
                    "session": token,
                }),
                gzip,
            );
        }
        let request = match ExecuteRequest::parse(&body) {
            Ok(r) => r,
            Err(e) => return fail("invalid_argument", &e.to_string(), gzip),
        };
        let claim = match self
            .signer
            .claim(request.session.as_ref(), &login.password.id)
        {
            Ok(c) => c,
            Err(e) => return fail("invalid_argument", &e.to_string(), gzip),
        };
        let started = Instant::now();
        let (id, session, registered) = match claim {
            // A new session is registered only if it ends up holding something (below).
            None => (self.new_id(), Self::fresh(&login), false),
            Some(c) => {
                let found = lock(&self.sessions).get(&c.id).cloned();
                match found {
                    Some(s) => (c.id, s, true),
                    None if c.in_transaction || c.in_reserved_conn => {
                        // Expired holding a transaction (rolled back) or session state (SET,
                        // temporary tables, locks: gone with its connection). Say so, in-band, so
                        // the driver's error path runs; the session goes on without them.
                        let s = self.session_with_id(&c.id, &login);
                        drop(s);
                        let what = if c.in_transaction {
                            "its transaction was rolled back"
                        } else {
                            "the session state set on it (SET, temporary tables, locks, prepared statements) was dropped"
                        };
                        let r = Err(RpcError {
                            code: "ABORTED",
                            message: format!(
                                "session expired after {} s idle: {what} (errno 1105) (sqlstate HY000)",
                                self.idle.as_secs()
                            ),
                        });
                        return reply(
                            200,
                            &execute_response(
                                self.signer
                                    .token(&c.id, &login.password.id, SessionState::FRESH),
                                r,
                                0.0,
                            ),
                            gzip,
                        );
                    }
                    None => {
                        let s = self.session_with_id(&c.id, &login);
                        (c.id, s, true)
                    }
                }
            }
        };
        let mut s = session.lock().await;
        if s.password_id != login.password.id {
            return fail("invalid_argument", "invalid session", gzip);
        }
        // The result's share of the shared result memory, given back once the answer is made.
        let mut held = None;
        let result = self
            .run(&mut s, &id, &login, &request.query, &mut held)
            .await;
        s.last_used = Instant::now();
        let token = self.signer.token(
            &id,
            &login.password.id,
            SessionState {
                in_transaction: s.in_transaction,
                in_reserved_conn: s.pinned,
                autocommit: s.status & status::AUTOCOMMIT != 0,
            },
        );
        // A session that holds nothing is not kept: its token stays valid, and a later call with it
        // simply starts afresh (which is all `Client.execute`, a new session per call, needs).
        let empty = s.conn.is_none() && !s.in_transaction && !s.pinned && !s.olap;
        drop(s);
        if !empty {
            lock(&self.sessions)
                .entry(id.clone())
                .or_insert_with(|| session.clone());
        } else if registered {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&id)
                .is_some_and(|x| Arc::strong_count(x) <= 2 && x.try_lock().is_ok())
            {
                sessions.remove(&id);
            }
        }
        let body = execute_response(token, result, started.elapsed().as_secs_f64());
        let answer = if past_a_mib(&held) {
            match tokio::task::spawn_blocking(move || reply(200, &body, gzip)).await {
                Ok(answer) => answer,
                Err(_) => fail("internal", "the answer could not be encoded", gzip),
            }
        } else {
            reply(200, &body, gzip)
        };
        // The answer is larger than the result it was made from (base64 and JSON): its share
        // grows to its size while there is room, so unread answers are counted as they are.
        if let (Some(p), Some(len)) = (
            held.as_mut(),
            hyper::body::Body::size_hint(answer.body()).exact(),
        ) {
            let want = u32::try_from((len >> 20) + 1).unwrap_or(u32::MAX);
            let have = u32::try_from(p.num_permits()).unwrap_or(u32::MAX);
            if want > have {
                if let Ok(more) = self
                    .result_memory
                    .clone()
                    .try_acquire_many_owned(want - have)
                {
                    p.merge(more);
                }
            }
        }
        *held_out = held;
        answer
    }

    fn authenticate(
        &self,
        user: String,
        password: &str,
        ip: std::net::IpAddr,
    ) -> Option<Arc<Login>> {
        use sha2::Digest;
        let secret: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
        {
            let mut cache = lock(&self.logins);
            if let Some(c) = cache.get_mut(&user) {
                // A password deleted or expired since it was cached is refused at once, as the
                // MySQL port refuses its sessions' next command (memory only, no catalog read).
                if c.at.elapsed() < LOGIN_TTL
                    && c.secret == secret
                    && allowed_from(&c.login, ip)
                    && self.gw.platform.password_current(&c.login.password)
                {
                    if c.used.elapsed() > Duration::from_secs(60) {
                        c.used = Instant::now();
                        self.gw.platform.password_used(&c.login.password);
                    }
                    return Some(c.login.clone());
                }
            }
        }
        let login = Arc::new(self.authenticate_slow(&user, password, ip)?);
        self.gw.platform.password_used(&login.password);
        let mut cache = lock(&self.logins);
        if cache.len() > 10_000 {
            cache.retain(|_, c| c.at.elapsed() < LOGIN_TTL);
        }
        cache.insert(
            user,
            CachedLogin {
                at: Instant::now(),
                secret,
                login: login.clone(),
                used: Instant::now(),
            },
        );
        Some(login)
    }

    fn authenticate_slow(&self, user: &str, password: &str, ip: std::net::IpAddr) -> Option<Login> {
        let (user, password) = (user.to_string(), password.to_string());
        let candidates = [
            Some((user.clone(), password.clone())),
            match (percent_decoded(&user), percent_decoded(&password)) {
                (None, None) => None,
                (u, p) => Some((u.unwrap_or(user), p.unwrap_or(password))),
            },
        ];
        for (user, password) in candidates.into_iter().flatten() {
            let Some(login) = self.gw.platform.login(&user) else {
                continue;
            };
            let hashes = crate::password_hashes(&login);
            if !hashes.verify_plaintext(&password) {
                continue;
            }
            return allowed_from(&login, ip).then_some(login);
        }
        None
    }

    fn new_session(&self, login: &Login) -> String {
        let id = self.new_id();
        self.session_with_id(&id, login);
        id
    }

    /// A session id: this process's random prefix and a counter (ids need not be secret: tokens
    /// are signed; the prefix keeps ids of an earlier run from meeting this one's).
    fn new_id(&self) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{n:x}", self.id_prefix)
    }

    fn fresh(login: &Login) -> SessionRef {
        Arc::new(tokio::sync::Mutex::new(HttpSession {
            password_id: login.password.id.clone(),
            conn: None,
            status: status::AUTOCOMMIT,
            locked_at: None,
            ended: None,
            in_transaction: false,
            tx_started: None,
            pinned: false,
            olap: false,
            last_used: Instant::now(),
            sql_prepared: link::SqlPrepared::default(),
        }))
    }

    fn session_with_id(&self, id: &str, login: &Login) -> SessionRef {
        let s = Self::fresh(login);
        // Two calls racing on one unknown token must share one session.
        lock(&self.sessions)
            .entry(id.to_string())
            .or_insert(s)
            .clone()
    }

    async fn run(
        &self,
        s: &mut HttpSession,
        id: &str,
        login: &Login,
        sql: &str,
        held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<QueryResult, RpcError> {
        let a = crate::cores::analyze(sql).await;
        if let Some(e) = crate::session::refusal(&self.gw.platform, login, &a)
            .or_else(|| crate::link::time_limit_refusal(&a, &self.gw.cfg.limits, s.olap))
        {
            return Err(RpcError::mysql(
                e.code,
                &String::from_utf8_lossy(&e.state),
                &e.message,
            ));
        }
        if a.statements
            .iter()
            .filter(|s| !s.keyword.is_empty())
            .count()
            > 1
        {
            return Err(RpcError::mysql(
                1064,
                "42000",
                "You have an error in your SQL syntax: send one statement per call",
            ));
        }
        if planetscale_noop(sql) {
            return Ok(QueryResult::default());
        }
        if let Some((_, id)) = a.kill {
            // The endpoint has no connection ids of its own to kill, and the instance's threads
            // are shared by the role's passwords.
            return Err(RpcError::mysql(
                1094,
                "HY000",
                &format!("Unknown thread id: {id}"),
            ));
        }
        if let Some(w) = &a.set_workload {
            s.olap = w == "olap";
            return Ok(QueryResult::default());
        }
        let limits = &self.gw.cfg.limits;
        if let Some(e) = s.ended.take() {
            // A `ROLLBACK` is what the gateway already did.
            if a.is(&["ROLLBACK"]) {
                return Ok(QueryResult::default());
            }
            return Err(e);
        }
        if s.conn.is_none() && (s.in_transaction || s.pinned) {
            // The session's connection is gone (the session expired while this call waited, or an
            // earlier call was cut off): its transaction and state went with it. Say so once.
            let was_in_transaction = s.forget_connection_state();
            if was_in_transaction {
                return Err(RpcError {
                    code: "ABORTED",
                    message: "transaction ended: its connection was closed and the transaction rolled back".into(),
                });
            }
        }
        if s.in_transaction
            && s.tx_started
                .is_some_and(|t| t.elapsed() > limits.transaction_timeout)
        {
            // Closing the connection rolls the transaction back.
            if let Some(l) = s.conn.take() {
                l.discard();
            }
            s.forget_connection_state();
            return Err(RpcError {
                code: "ABORTED",
                message: format!(
                    "{} (errno 1105) (sqlstate HY000)",
                    link::transaction_aborted(id, limits.transaction_timeout)
                ),
            });
        }
        if s.conn.is_none() {
            // A new lease starts from the login's defaults.
            s.status = status::AUTOCOMMIT;
        }
        let mut link = Link::new(self.gw.clone(), login, PROFILE, CHARSET);
        let committing = crate::session::commits(&a);
        let sent_at = Instant::now();
        let left = s
            .tx_started
            .map(|t| (t + limits.transaction_timeout).saturating_duration_since(Instant::now()));
        let timeout = link::compound_timeout(
            &a,
            limits,
            s.olap,
            link::statement_timeout(limits, a.query_timeout_ms, s.in_transaction, left),
        );
        let deadline = timeout.map(|d| Instant::now() + d);
        // The default time limit is the connection's on the instance; OLAP lifts it for reads.
        let unlimited;
        let sql = if s.olap && a.is(&["SELECT"]) && timeout.is_none() {
            unlimited = format!("SET STATEMENT max_statement_time=0 FOR {sql}");
            unlimited.as_str()
        } else {
            sql
        };
        // As on the MySQL port: a new transaction waits while a deploy step closes the gate,
        // and every statement is counted while it runs.
        let _running = link
            .enter_gate(s.in_transaction || s.locked_at.is_some())
            .await;
        let mut lease = match s.conn.take() {
            Some(c) => {
                let mut c = c
                    .here()
                    .map_err(|e| connection_lost(s, &link::unavailable(e)))?;
                if let Err(e) = link.fresh_privileges(&mut c).await {
                    let thread = c.backend.thread_id;
                    c.discard();
                    if let Some(e) = ended_by_cutover(s, &link, thread, committing, sent_at) {
                        return Err(e);
                    }
                    return Err(connection_lost(s, &e));
                }
                c
            }
            None => link.lease().await.map_err(|e| rpc_error(&e))?,
        };
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(caps::command::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        // With autocommit off an UPDATE or DELETE opens (or continues) the client's transaction:
        // the row-limit guard is then a savepoint, never a commit.
        let dml = a.changes_rows() || s.sql_prepared.executes_rows(&a);
        s.sql_prepared.follow(&a);
        let guarded_in_tx = s.in_transaction || s.status & status::AUTOCOMMIT == 0;
        let outcome = if dml {
            let b = &mut lease.backend;
            link::row_limited(
                b,
                &payload,
                &[],
                link::Guard::new(guarded_in_tx, s.locked_at.is_some()),
                limits,
                deadline,
                &mut link,
                |_| {},
            )
            .await
        } else {
            let max_bytes = if s.olap {
                // OLAP lifts the byte limit only so far: the answer is held in memory before it goes.
                limits.max_result_bytes.saturating_mul(4)
            } else {
                limits.max_result_bytes
            };
            let limits = ResultLimits {
                max_rows: (!s.olap).then_some(limits.max_rows),
                max_bytes: Some(max_bytes),
                memory: Some(&self.result_memory),
            };
            link::collect(&mut lease.backend, &payload, deadline, &mut link, limits).await
        };
        let mut collected = match outcome {
            Ok(c) => c,
            Err(Failed::Broken(e)) => {
                // The connection is gone, and with it any transaction and session state.
                let thread = lease.backend.thread_id;
                lease.discard();
                link.forget_instance();
                if let Some(e) = ended_by_cutover(s, &link, thread, committing, sent_at) {
                    return Err(e);
                }
                return Err(connection_lost(s, &e));
            }
            Err(Failed::Refused(e)) => {
                self.settle(s, lease);
                return Err(rpc_error(&e));
            }
        };
        *held = collected.memory.take();
        if collected.tracker.error {
            // Ended by the instance during the statement, for a forced cut-over.
            let thread = lease.backend.thread_id;
            if let Some(e) = ended_by_cutover(s, &link, thread, committing, sent_at) {
                lease.discard();
                return Err(e);
            }
        }
        let t = &collected.tracker;
        let mut status_now = if t.error || !t.status_seen {
            None
        } else if dml {
            // The guard's own transaction (and its switch of autocommit) are not the client's.
            Some(link::Guard::new(guarded_in_tx, s.locked_at.is_some()).client_status(t.status))
        } else {
            Some(t.status)
        };
        if status_now.is_none() && (s.in_transaction || s.pinned) {
            // A failed statement inside a transaction may have ended it (a deadlock rolls it back):
            // asked of the server, never guessed.
            match link::status_now(&mut lease.backend).await {
                Ok(st) => status_now = Some(st),
                Err(e) => {
                    let thread = lease.backend.thread_id;
                    lease.discard();
                    if let Some(e) = ended_by_cutover(s, &link, thread, committing, sent_at) {
                        return Err(e);
                    }
                    if s.forget_connection_state() {
                        return Err(RpcError {
                            code: "ABORTED",
                            message: "transaction ended: its connection was closed and the transaction rolled back".into(),
                        });
                    }
                    return Err(rpc_error(&link::unavailable(e)));
                }
            }
        }
        if let Some(st) = status_now {
            s.status = st;
            let open = st & status::IN_TRANS != 0;
            if open && !s.in_transaction {
                s.tx_started = Some(Instant::now());
            }
            s.in_transaction = open;
            if !open {
                s.tx_started = None;
            }
        }
        let caps = lease.backend.capabilities;
        let result = if past_a_mib(held) {
            let frames = std::mem::take(&mut collected.frames);
            let tracker = collected.tracker.clone();
            tokio::task::spawn_blocking(move || query_result(&frames, &tracker, caps))
                .await
                .unwrap_or_else(|_| {
                    Err(RpcError {
                        code: "INTERNAL",
                        message: "the result could not be encoded".into(),
                    })
                })
        } else {
            query_result(&collected.frames, &collected.tracker, caps)
        };
        if result.is_ok() {
            let backup = |w: &str| {
                a.statements
                    .first()
                    .is_some_and(|st| st.keyword == "BACKUP" && st.second == w)
            };
            if a.is(&["LOCK"]) || backup("LOCK") {
                s.locked_at.get_or_insert_with(Instant::now);
            } else if a.is(&["UNLOCK", "BEGIN", "START"]) || backup("UNLOCK") {
                s.locked_at = None;
            }
        }
        if a.has_ddl() && result.is_ok() {
            self.gw.platform.after_password_ddl(&login.branch.id);
        }
        // Session state on the connection keeps it for this session: told by the server's flags
        // (autocommit off, state changed) and by what the statement is.
        let creates_temporary = a.is(&["CREATE"]) && !a.has_ddl();
        if a.pins_session.is_some()
            || creates_temporary
            || s.status & status::AUTOCOMMIT == 0
            || (t.status_seen && t.status & status::SESSION_STATE_CHANGED != 0)
            || a.is(&[
                "SET", "USE", "LOCK", "PREPARE", "HANDLER", "XA", "CALL", "EXECUTE", "FLUSH",
                "BACKUP",
            ])
        {
            s.pinned = true;
        }
        self.settle(s, lease);
        result
    }

    /// After a statement: the session keeps the connection while it holds state, else it goes
    /// back to the pool.
    fn settle(&self, s: &mut HttpSession, lease: Lease) {
        if s.in_transaction || s.pinned {
            s.conn = Some(lease);
        } else {
            lease.release();
        }
    }
}

/// The endpoint's answer from a response's frames: its first result (a statement's OK, an error,
/// or a result set with its fields typed as Vitess types them).
fn query_result(
    frames: &[(Event, Frame)],
    t: &Tracker,
    backend_caps: u32,
) -> Result<QueryResult, RpcError> {
    let malformed = || RpcError::mysql(2027, "HY000", "Malformed packet from the instance");
    let mut fields = Vec::new();
    let mut rows = Vec::new();
    let mut row: Option<Vec<u8>> = None;
    let mut columns = false;
    let finish_row = |row: &mut Option<Vec<u8>>, rows: &mut Vec<Row>| -> Result<(), RpcError> {
        if let Some(r) = row.take() {
            let values = strata_wire::packets::text_row_values(&r).map_err(|_| malformed())?;
            rows.push(Row::encode(&values));
        }
        Ok(())
    };
    for (ev, f) in frames {
        match ev {
            Event::Error => {
                let e = ErrPacket::parse(f.payload()).map_err(|_| malformed())?;
                return Err(rpc_error(&e));
            }
            Event::Column => {
                columns = true;
                let c = ColumnDef::parse(f.payload()).map_err(|_| malformed())?;
                fields.push(field(&c));
            }
            Event::Row => {
                finish_row(&mut row, &mut rows)?;
                row = Some(f.payload().to_vec());
            }
            Event::Continuation => {
                if let Some(r) = row.as_mut() {
                    r.extend_from_slice(f.payload());
                }
            }
            Event::Terminal { .. } => {
                finish_row(&mut row, &mut rows)?;
                if !columns {
                    let ok = OkPacket::parse(f.payload(), backend_caps).map_err(|_| malformed())?;
                    return Ok(QueryResult::ok(ok.affected_rows, ok.last_insert_id));
                }
                break;
            }
            Event::Other => {}
        }
    }
    finish_row(&mut row, &mut rows)?;
    if !columns {
        return Ok(QueryResult::ok(t.affected_rows, t.last_insert_id));
    }
    Ok(QueryResult {
        fields,
        rows,
        ..Default::default()
    })
}

/// A result column as Vitess describes it. MariaDB types an integer literal INT, with its digits as
/// length; MySQL 8 (so PlanetScale) says BIGINT. An INT column read through an expression keeps its
/// display width (11, or 10 unsigned), and stays INT.
fn field(c: &ColumnDef) -> Field {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let width = if c.flags & strata_httpsql::flags::UNSIGNED != 0 {
        10
    } else {
        11
    };
    let literal = c.column_type == 3 && c.org_table.is_empty() && c.length < width;
    Field {
        name: text(c.name),
        kind: vitess_type(c.column_type, c.flags, false, literal),
        table: text(c.table),
        org_table: text(c.org_table),
        database: text(c.schema),
        org_name: text(c.org_name),
        column_length: u64::from(c.length),
        charset: u64::from(c.charset),
        decimals: u64::from(c.decimals),
        flags: u64::from(c.flags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decoded("plain"), None);
        assert_eq!(percent_decoded("us%40er").as_deref(), Some("us@er"));
        assert_eq!(percent_decoded("p%3Aw%25").as_deref(), Some("p:w%"));
        assert_eq!(percent_decoded("bad%zz"), None);
        assert_eq!(percent_decoded("cut%4"), None);
    }

    #[test]
    fn planetscale_statements_answered_here() {
        assert!(planetscale_noop("SET @@boost_cached_queries = true;"));
        assert!(planetscale_noop("use @primary"));
        assert!(!planetscale_noop("use shop"));
    }
}
