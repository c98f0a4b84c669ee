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

use crate::{allowed_from, Gateway, FAILURES_BEFORE_BLOCK};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_control::Login;
use strata_engine::mysql_async::{self, prelude::Queryable};
use strata_httpsql::{
    execute_response, http_error_body, http_status, vitess_type, ExecuteRequest, Field,
    QueryResult, Row, RpcError, SessionSigner, BINARY_CHARSET, CREATE_SESSION, EXECUTE,
};
use strata_model::Role;
use tokio::net::{TcpListener, TcpStream};

/// The largest request body (SQL with big literal inserts); PlanetScale's clients allow ~100 MiB.
const MAX_BODY: usize = 64 << 20;
/// Bodies being read, in all, in KiB: a few largest ones at a time, so slow or unfinished uploads
/// cannot take the process's memory.
const BODY_BUDGET_KIB: usize = 4 * (MAX_BODY >> 10);
/// How long a request's body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a request waits for room in the body budget.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);
/// JSON column names per table are re-read this often (a deploy may add some).
const JSON_COLUMNS_TTL: Duration = Duration::from_secs(5);

struct HttpSession {
    password_id: String,
    conn: Option<Leased>,
    in_transaction: bool,
    /// When the open transaction began (transactions are limited in time, as on the MySQL port).
    tx_started: Option<Instant>,
    /// Session state lives on the connection (SET, temporary tables, locks, …): keep it.
    pinned: bool,
    olap: bool,
    last_used: Instant,
}

type SessionRef = Arc<tokio::sync::Mutex<HttpSession>>;
/// (branch, schema, table) → when read, and the table's JSON columns.
type JsonColumns = HashMap<(String, String, String), (Instant, HashSet<String>)>;

pub struct HttpSql {
    gw: Arc<Gateway>,
    signer: SessionSigner,
    idle: Duration,
    sessions: Mutex<HashMap<String, SessionRef>>,
    /// Idle backend connections without session state, per (branch, role).
    pools: Mutex<HashMap<BackendKey, Backends>>,
    json_columns: Mutex<JsonColumns>,
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
}

type BackendKey = (String, Role);

struct Backends {
    /// The instance port the options (and idle connections) are for.
    port: u16,
    /// When the idle connections' privileges were last known current.
    since: Instant,
    opts: mysql_async::Opts,
    idle: Vec<mysql_async::Conn>,
}

/// A backend connection and the pool it goes back to.
struct Leased {
    key: BackendKey,
    conn: mysql_async::Conn,
    /// Taken from the idle list (it may have gone stale while idle).
    reused: bool,
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
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
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

fn backend_error(e: mysql_async::Error) -> RpcError {
    match e {
        mysql_async::Error::Server(s) => RpcError::mysql(s.code, &s.state, &s.message),
        other => RpcError {
            code: "UNAVAILABLE",
            message: format!("branch is not available right now, retry shortly: {other}"),
        },
    }
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
            pools: Mutex::new(HashMap::new()),
            json_columns: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
            id_prefix: strata_model::ids::public_id(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            prelogin: crate::admission::Admission::new(
                gw.cfg.prelogin_max,
                gw.cfg.prelogin_per_address,
            ),
            body_budget: Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB)),
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
                    // Past the bound on connections not yet at their first request: closed.
                    let Some(ticket) = self.prelogin.enter(peer.ip()) else { continue };
                    let me = self.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move { me.connection(tcp, peer, tls, ticket).await });
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
        ticket: crate::admission::Ticket,
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
        let ticket = Arc::new(Mutex::new(Some(ticket)));
        let me = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let me = me.clone();
            lock(&ticket).take();
            async move { Ok::<_, std::convert::Infallible>(me.handle(req, peer).await) }
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
    fn expire(&self) {
        let idle = self.idle;
        let mut held = Vec::new();
        lock(&self.sessions).retain(|_, s| match s.try_lock() {
            Ok(mut s) if s.last_used.elapsed() > idle => {
                // The flags stay: a call that cloned this session before the sweep finds its
                // connection gone with them set, and `run` tells the client.
                held.extend(s.conn.take());
                false
            }
            _ => true,
        });
        // Idle connections of branches that no longer run (deleted, or stopped) are closed.
        let platform = &self.gw.platform;
        lock(&self.pools).retain(|(branch, _), _| platform.instance(branch).is_some());
        for l in held {
            // Closing it ends its transaction (rolled back) and its session state.
            tokio::spawn(async move {
                let _ = l.conn.disconnect().await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
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
        if self.gw.failure_count(ip) >= FAILURES_BEFORE_BLOCK {
            return fail(
                "resource_exhausted",
                &format!("Host '{ip}' is blocked because of many failed logins; try again later"),
                gzip,
            );
        }
        let Some(login) = self.authenticate(&req, ip) else {
            self.gw.record_failure(ip);
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
        let room = tokio::time::timeout(
            BODY_BUDGET_WAIT,
            self.body_budget.clone().acquire_many_owned(kib),
        )
        .await;
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
            let token = self.signer.token(&id, false);
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
        let claim = match self.signer.claim(request.session.as_ref()) {
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
                    None if c.in_transaction => {
                        // Expired with a transaction open: it was rolled back. Say so, in-band, so
                        // the driver's rollback path runs; the session goes on without it.
                        let s = self.session_with_id(&c.id, &login);
                        drop(s);
                        let r = Err(RpcError {
                            code: "ABORTED",
                            message: "transaction ended: the session expired and its transaction was rolled back".into(),
                        });
                        return reply(
                            200,
                            &execute_response(self.signer.token(&c.id, false), r, 0.0),
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
        let result = self.run(&mut s, &login, &request.query).await;
        s.last_used = Instant::now();
        let token = self.signer.token(&id, s.in_transaction);
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
        reply(
            200,
            &execute_response(token, result, started.elapsed().as_secs_f64()),
            gzip,
        )
    }

    fn authenticate(&self, req: &Request<Incoming>, ip: std::net::IpAddr) -> Option<Arc<Login>> {
        use sha2::Digest;
        let (user, password) = basic_auth(req)?;
        let secret: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
        {
            let mut cache = lock(&self.logins);
            if let Some(c) = cache.get_mut(&user) {
                if c.at.elapsed() < LOGIN_TTL && c.secret == secret && allowed_from(&c.login, ip) {
                    if c.used.elapsed() > Duration::from_secs(60) {
                        c.used = Instant::now();
                        self.gw.platform.password_used(&c.login.password);
                    }
                    return Some(c.login.clone());
                }
            }
        }
        let login = Arc::new(self.authenticate_slow(&user, &password, ip)?);
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
            in_transaction: false,
            tx_started: None,
            pinned: false,
            olap: false,
            last_used: Instant::now(),
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

    /// A backend connection for the login's branch and role: an idle one, or a new one.
    async fn lease(&self, login: &Login) -> Result<Leased, RpcError> {
        let role = login.password.role;
        let key = (login.branch.id.clone(), role);
        // The common case first: an idle connection (a stale one is retried by the caller).
        // Connections older than the branch's last grants change (safe migrations switched) hold
        // the privileges they read at login: they are closed instead.
        let changed = self.gw.platform.grants_changed_at(&login.branch.id);
        if let Some(b) = lock(&self.pools).get_mut(&key) {
            if changed.is_some_and(|at| at > b.since) {
                b.idle.clear();
                b.since = Instant::now();
            }
            if let Some(conn) = b.idle.pop() {
                return Ok(Leased {
                    key,
                    conn,
                    reused: true,
                });
            }
        }
        let unavailable = |detail: String| RpcError {
            code: "UNAVAILABLE",
            message: format!("branch is not available right now, retry shortly: {detail}"),
        };
        let inst = self
            .gw
            .platform
            .instance(&login.branch.id)
            .ok_or_else(|| unavailable("the branch has no running instance".into()))?;
        let st = inst.status();
        if st.state != strata_engine::InstanceState::Running {
            return Err(unavailable(
                format!("its instance is {:?}", st.state).to_lowercase(),
            ));
        }
        let opts = {
            let mut pools = lock(&self.pools);
            let fresh = || Backends {
                port: st.port,
                since: Instant::now(),
                opts: mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(st.port)
                    .user(Some(role.internal_user()))
                    .pass(Some(inst.credentials().password(role).to_string()))
                    .db_name(Some(login.database.name.clone()))
                    .prefer_socket(false)
                    .client_found_rows(true)
                    .init(vec![
                        "SET NAMES utf8mb4".to_string(),
                        format!(
                            "SET SESSION max_statement_time = {}",
                            self.gw.cfg.limits.query_timeout.as_secs_f64()
                        ),
                    ])
                    .into(),
                idle: Vec::new(),
            };
            let b = pools.entry(key.clone()).or_insert_with(fresh);
            if b.port != st.port {
                // The instance moved: the idle connections are for the old one.
                *b = fresh();
            }
            b.opts.clone()
        };
        Ok(Leased {
            key,
            conn: mysql_async::Conn::new(opts).await.map_err(backend_error)?,
            reused: false,
        })
    }

    /// Puts a connection without session state back (or closes it when enough are idle).
    fn release(&self, l: Leased) {
        let mut pools = lock(&self.pools);
        if let Some(b) = pools.get_mut(&l.key) {
            if b.idle.len() < self.gw.cfg.pool_size.max(1) {
                b.idle.push(l.conn);
                return;
            }
        }
        drop(pools);
        tokio::spawn(async move {
            let _ = l.conn.disconnect().await;
        });
    }

    async fn run(
        &self,
        s: &mut HttpSession,
        login: &Login,
        sql: &str,
    ) -> Result<QueryResult, RpcError> {
        let a = strata_sqlscan::analyze(sql);
        if let Some(e) = crate::session::refusal(&self.gw.platform, login, &a) {
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
        if let Some(w) = &a.set_workload {
            s.olap = w == "olap";
            return Ok(QueryResult::default());
        }
        let limits = &self.gw.cfg.limits;
        if s.conn.is_none() && (s.in_transaction || s.pinned) {
            // The session's connection is gone (the session expired while this call waited, or an
            // earlier call was cut off): its transaction and state went with it. Say so once.
            let was_in_transaction = s.in_transaction;
            s.in_transaction = false;
            s.tx_started = None;
            s.pinned = false;
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
                tokio::spawn(async move {
                    let _ = l.conn.disconnect().await;
                });
            }
            s.in_transaction = false;
            s.tx_started = None;
            s.pinned = false;
            return Err(RpcError {
                code: "ABORTED",
                message: format!(
                    "transaction rolled back: it was open longer than the transaction timeout ({} s)",
                    limits.transaction_timeout.as_secs()
                ),
            });
        }
        // The default time limit is the backend session's `max_statement_time` (set when the
        // connection is made, no cost per query); a shorter one asked for by directive is timed
        // here, and the query killed when it passes.
        let timeout = a
            .query_timeout_ms
            .map(|ms| Duration::from_millis(ms).min(limits.query_timeout));
        let olap_read = s.olap && a.is(&["SELECT"]);
        let unlimited;
        let sql = if olap_read && timeout.is_none() {
            unlimited = format!("SET STATEMENT max_statement_time=0 FOR {sql}");
            unlimited.as_str()
        } else {
            sql
        };
        let dml = a.is(&["UPDATE", "DELETE"]);
        let mut leased = match s.conn.take() {
            Some(c) => c,
            None => self.lease(login).await?,
        };
        let mut result = self
            .limited(&mut leased.conn, login, sql, s, timeout, dml)
            .await;
        if matches!(&result, Err((_, true))) && leased.reused && !s.in_transaction && !s.pinned {
            // An idle connection that went stale (the instance restarted; the other idle ones are
            // stale too): once more, on a new one.
            if let Some(b) = lock(&self.pools).get_mut(&leased.key) {
                b.idle.clear();
            }
            leased = self.lease(login).await?;
            leased.reused = false;
            result = self
                .limited(&mut leased.conn, login, sql, s, timeout, dml)
                .await;
        }
        if a.has_ddl() && result.is_ok() {
            self.gw.platform.schema_changed(&login.branch.id);
        }
        let mut lost = matches!(&result, Err((_, true)));
        // Whether a transaction is open is asked of the server whenever the statement could have
        // changed it (transaction control, SET, locks, routines, DDL's implicit commit, an error
        // inside a transaction such as a deadlock), never guessed from the text alone: a connection
        // with an open transaction must not go back to the shared pool.
        let may_change = a.has_ddl()
            || a.is(&[
                "BEGIN",
                "START",
                "COMMIT",
                "ROLLBACK",
                "SET",
                "LOCK",
                "UNLOCK",
                "CALL",
                "EXECUTE",
                "XA",
                "SAVEPOINT",
                "RELEASE",
                "FLUSH",
            ])
            || (s.in_transaction && result.is_err());
        if !lost && may_change {
            match leased
                .conn
                .query_first::<i64, _>("SELECT @@in_transaction")
                .await
            {
                Ok(v) => {
                    let open = v == Some(1);
                    if open && !s.in_transaction {
                        s.tx_started = Some(Instant::now());
                    }
                    s.in_transaction = open;
                    if !open {
                        s.tx_started = None;
                    }
                }
                Err(_) => lost = true,
            }
        }
        let creates_temporary = a.is(&["CREATE"]) && !a.has_ddl();
        if a.pins_session.is_some()
            || creates_temporary
            || a.is(&[
                "SET", "USE", "LOCK", "PREPARE", "HANDLER", "XA", "CALL", "EXECUTE", "FLUSH",
            ])
        {
            s.pinned = true;
        }
        if lost {
            // The connection is gone, and with it any transaction and session state.
            s.in_transaction = false;
            s.tx_started = None;
            s.pinned = false;
        } else if s.in_transaction || s.pinned {
            leased.reused = false;
            s.conn = Some(leased);
        } else {
            self.release(leased);
        }
        result.map_err(|(e, _)| e)
    }

    /// Runs one statement within the limits: a time limit (the query is killed on the instance
    /// when it passes), and for UPDATE and DELETE the row limit, checked inside a transaction (or a
    /// savepoint) that is rolled back when the statement touched too many rows.
    async fn limited(
        &self,
        conn: &mut mysql_async::Conn,
        login: &Login,
        sql: &str,
        s: &HttpSession,
        timeout: Option<Duration>,
        dml: bool,
    ) -> Result<QueryResult, (RpcError, bool)> {
        let lost = |e: mysql_async::Error| {
            let gone = !matches!(e, mysql_async::Error::Server(_));
            (backend_error(e), gone)
        };
        // Inside a transaction, or on a pinned session with autocommit off, a savepoint; a BEGIN
        // there would commit the client's pending work.
        let nested = s.in_transaction
            || (dml
                && s.pinned
                && conn
                    .query_first::<i64, _>("SELECT @@autocommit")
                    .await
                    .map_err(lost)?
                    == Some(0));
        let (open, keep, undo) = if nested {
            (
                "SAVEPOINT strata_row_limit",
                "RELEASE SAVEPOINT strata_row_limit",
                "ROLLBACK TO SAVEPOINT strata_row_limit",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        if dml {
            conn.query_drop(open).await.map_err(lost)?;
        }
        let thread = conn.id();
        let result = {
            let q = self.query(conn, login, sql, s.olap);
            tokio::pin!(q);
            match timeout {
                None => q.await,
                Some(t) => {
                    tokio::select! {
                        r = &mut q => r,
                        _ = tokio::time::sleep(t) => {
                            self.kill_query(login, thread).await;
                            q.await
                        }
                    }
                }
            }
        };
        if !dml {
            return result;
        }
        let max = self.gw.cfg.limits.max_rows;
        match result {
            Ok(r)
                if r.rows_affected
                    .as_deref()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
                    > max =>
            {
                conn.query_drop(undo).await.map_err(lost)?;
                Err((
                    RpcError::mysql(1105, "HY000", &format!("Row count exceeded {max}")),
                    false,
                ))
            }
            Ok(r) => {
                conn.query_drop(keep).await.map_err(lost)?;
                Ok(r)
            }
            Err((e, true)) => Err((e, true)),
            Err((e, false)) => {
                // The statement's own error is what the client needs (a deadlock has already
                // rolled the whole transaction back, and the savepoint with it).
                let _ = conn.query_drop(undo).await;
                Err((e, false))
            }
        }
    }

    /// Stops a running query on the instance (a user may kill its own threads).
    async fn kill_query(&self, login: &Login, thread: u32) {
        if let Ok(mut side) = self.lease(login).await {
            let ok = side
                .conn
                .query_drop(format!("KILL QUERY {thread}"))
                .await
                .is_ok();
            if ok {
                self.release(side);
            }
        }
    }

    /// Runs one statement; on failure also says whether the connection was lost.
    async fn query(
        &self,
        conn: &mut mysql_async::Conn,
        login: &Login,
        sql: &str,
        olap: bool,
    ) -> Result<QueryResult, (RpcError, bool)> {
        let limits = &self.gw.cfg.limits;
        let lost = |e: mysql_async::Error| {
            let gone = !matches!(e, mysql_async::Error::Server(_));
            (backend_error(e), gone)
        };
        let mut r = conn.query_iter(sql).await.map_err(lost)?;
        let columns = r.columns();
        let Some(columns) = columns.filter(|c| !c.is_empty()) else {
            let out = QueryResult::ok(r.affected_rows(), r.last_insert_id().unwrap_or(0));
            r.drop_result().await.map_err(lost)?;
            return Ok(out);
        };
        // Deployment artifacts are left out of schema listings, as on the MySQL protocol.
        let names: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                strata_wire::listing::reads_object_names(c.schema_ref(), c.org_name_ref())
            })
            .map(|(i, _)| i)
            .collect();
        let mut rows = Vec::new();
        let mut bytes = 0u64;
        let mut exceeded = None;
        while let Some(row) = r.next().await.map_err(lost)? {
            if exceeded.is_some() {
                continue;
            }
            let values = row.unwrap();
            let raw: Vec<Option<&[u8]>> = values
                .iter()
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => Some(b.as_slice()),
                    _ => None,
                })
                .collect();
            if names.iter().any(|&i| {
                raw.get(i)
                    .copied()
                    .flatten()
                    .is_some_and(strata_wire::listing::is_artifact_name)
            }) {
                continue;
            }
            bytes += raw.iter().flatten().map(|v| v.len() as u64).sum::<u64>();
            if !olap && rows.len() as u64 >= limits.max_rows {
                exceeded = Some(RpcError::mysql(
                    1105,
                    "HY000",
                    &format!("Row count exceeded {}", limits.max_rows),
                ));
                continue;
            }
            // OLAP lifts the byte limit only so far: the answer is held in memory before it goes.
            let max_bytes = if olap {
                limits.max_result_bytes.saturating_mul(4)
            } else {
                limits.max_result_bytes
            };
            if bytes > max_bytes {
                exceeded = Some(RpcError::mysql(
                    1105,
                    "HY000",
                    &format!(
                        "resource_exhausted: result set larger than max ({bytes} vs. {max_bytes})"
                    ),
                ));
                continue;
            }
            rows.push(Row::encode(&raw));
        }
        r.drop_result().await.map_err(lost)?;
        if let Some(e) = exceeded {
            return Err((e, false));
        }
        let mut fields = Vec::with_capacity(columns.len());
        for c in columns.iter() {
            let wire = c.column_type() as u8;
            let flags = c.flags().bits();
            let charset = c.character_set();
            let org_table = c.org_table_str().to_string();
            let org_name = c.org_name_str().to_string();
            let schema = c.schema_str().to_string();
            let json = wire == 252
                && charset != BINARY_CHARSET
                && !org_table.is_empty()
                && self
                    .json_columns(login, &schema, &org_table)
                    .await
                    .contains(&org_name);
            // MariaDB types an integer literal INT, with its digits as length; MySQL 8 (so
            // PlanetScale) says BIGINT. An INT column read through an expression keeps its display
            // width (11, or 10 unsigned), and stays INT.
            let width = if flags & strata_httpsql::flags::UNSIGNED != 0 {
                10
            } else {
                11
            };
            let literal = wire == 3 && org_table.is_empty() && c.column_length() < width;
            fields.push(Field {
                name: c.name_str().to_string(),
                kind: vitess_type(wire, flags, json, literal),
                table: c.table_str().to_string(),
                org_table,
                database: schema,
                org_name,
                column_length: u64::from(c.column_length()),
                charset: u64::from(charset),
                decimals: u64::from(c.decimals()),
                flags: u64::from(flags),
            });
        }
        Ok(QueryResult {
            fields,
            rows,
            ..Default::default()
        })
    }

    /// The JSON columns of a table: MariaDB keeps JSON as LONGTEXT with a `json_valid` check, and
    /// the driver parses a column only when it is typed JSON, as PlanetScale (MySQL 8) types it.
    async fn json_columns(&self, login: &Login, schema: &str, table: &str) -> HashSet<String> {
        let key = (
            login.branch.id.clone(),
            schema.to_string(),
            table.to_string(),
        );
        if let Some((at, cols)) = lock(&self.json_columns).get(&key) {
            if at.elapsed() < JSON_COLUMNS_TTL {
                return cols.clone();
            }
        }
        let mut cols = HashSet::new();
        if let Ok(mut leased) = self.lease(login).await {
            {
                let c = &mut leased.conn;
                let checks: Vec<String> = c
                    .exec(
                        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                        (schema, table),
                    )
                    .await
                    .unwrap_or_default();
                for clause in checks {
                    let mut rest = clause.as_str();
                    while let Some(i) = rest.find("json_valid(`") {
                        rest = &rest[i + 12..];
                        if let Some(end) = rest.find('`') {
                            cols.insert(rest[..end].to_string());
                        }
                    }
                }
            }
            self.release(leased);
        }
        let mut cache = lock(&self.json_columns);
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < JSON_COLUMNS_TTL);
        }
        cache.insert(key, (Instant::now(), cols.clone()));
        cols
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
