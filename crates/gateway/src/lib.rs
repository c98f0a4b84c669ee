//! The gateway: the MySQL-protocol edge every application talks to.
//!
//! One listener for all databases and branches. A client logs in with a branch password (the username
//! names the password, and through it the database, branch and role); the gateway checks the scramble
//! against the stored hashes (mysql_native_password or caching_sha2_password, whichever the client
//! uses) and then serves the session over pooled connections to the branch's instance as that role's
//! internal user, so the server enforces the role's grants. The gateway adds what grants cannot:
//! safe migrations, query limits, and pooling with session-state pinning.

pub mod admission;
pub mod backend;
mod client;
pub mod clients;
pub mod cores;
pub mod http;
mod link;
mod pool;
mod session;
pub mod tls;

pub use pool::PoolStats;

use client::ClientConn;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_control::{Login, Platform};
use strata_model::cidr::Cidr;
use strata_model::credentials::PasswordHashes;
use strata_wire::caps;
use strata_wire::handshake::{
    auth_more_data, auth_switch_request, is_ssl_request, Greeting, HandshakeResponse,
    CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, FAST_AUTH_SUCCESS, NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
};
use strata_wire::packets::{ErrPacket, OkPacket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// PlanetScale's query limits (vitess/troubleshooting/planetscale-system-limits), all configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows returned, updated or deleted by one query.
    pub max_rows: u64,
    /// Bytes of one query's result.
    pub max_result_bytes: u64,
    /// How long a transaction may stay open.
    pub transaction_timeout: Duration,
    /// How long an autocommit query may run.
    pub query_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 100_000,
            max_result_bytes: 64 << 20,
            transaction_timeout: Duration::from_secs(20),
            query_timeout: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Accept plaintext connections from loopback addresses (TLS is always required from elsewhere).
    pub allow_plaintext_loopback: bool,
    /// Backend connections per (branch, role, client profile).
    pub pool_size: usize,
    /// How long a query waits for a free backend connection.
    pub pool_wait: Duration,
    pub limits: Limits,
    /// Largest packet a client may send.
    pub max_packet: usize,
    /// Share the result of identical read-only queries in flight at the same moment.
    pub consolidate: bool,
    /// Connections not logged in yet, in all and per source address, on each listener (MySQL
    /// and HTTP SQL): past either bound a new connection is turned away at once.
    pub prelogin_max: usize,
    pub prelogin_per_address: usize,
    /// Time to finish the login (TLS and the MySQL handshake; an HTTP request's headers).
    pub login_timeout: Duration,
    /// Client connections open on both front doors, in all (see `clients`).
    pub max_clients: usize,
    /// Logged-in MySQL sessions of one password.
    pub max_clients_per_password: usize,
    /// Threads serving client connections (see `cores`); 0: one per CPU.
    pub threads: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            allow_plaintext_loopback: true,
            pool_size: 64,
            pool_wait: Duration::from_secs(30),
            limits: Limits::default(),
            max_packet: 64 << 20,
            consolidate: true,
            prelogin_max: 1024,
            prelogin_per_address: 64,
            login_timeout: Duration::from_secs(10),
            max_clients: 16_000,
            max_clients_per_password: 4_000,
            threads: 0,
        }
    }
}

/// A session as other sessions see it (for KILL).
pub(crate) struct SessionShared {
    /// The password the session is logged in with (COM_CHANGE_USER changes it).
    pub username: Mutex<String>,
    /// The backend thread running this session's current query, and where.
    pub busy: Mutex<Option<(SocketAddr, u32)>>,
    pub kill: tokio::sync::Notify,
}

/// Identical queries from clients of the same pool, in flight at the same moment.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct InflightKey {
    pub pool: pool::PoolKey,
    pub sql: bytes::Bytes,
}

type Shared = tokio::sync::watch::Receiver<Option<Option<Arc<session::Captured>>>>;

pub struct Gateway {
    pub(crate) platform: Arc<Platform>,
    pub(crate) cfg: GatewayConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) pools: pool::Pools,
    /// Where client connections run.
    pub(crate) cores: cores::Cores,
    pub(crate) sessions: Mutex<HashMap<u32, Arc<SessionShared>>>,
    next_id: AtomicU32,
    /// Failed logins per address (slows its failures) and per (address, username) (blocks it).
    failures: FailureCounts<IpAddr>,
    user_failures: FailureCounts<(IpAddr, String)>,
    server_version: String,
    pub(crate) inflight: Mutex<foldhash::HashMap<InflightKey, Shared>>,
    /// Queries answered from another session's identical query in flight.
    pub(crate) consolidated: std::sync::atomic::AtomicU64,
    /// MySQL connections still logging in.
    prelogin: Arc<admission::Admission>,
    /// Client connections of both front doors, in all and per password.
    pub(crate) clients: Arc<clients::Clients>,
}

/// Binds the gateway's listener with a deep accept queue, so a burst of connections waits for the
/// gateway instead of being dropped by the kernel.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// MySQL's answer when no connection can be taken (instead of the greeting), then the socket closes.
async fn too_many_connections(mut tcp: TcpStream) {
    let mut out = bytes::BytesMut::new();
    let mut seq = 0u8;
    strata_wire::codec::put_packet(
        &mut out,
        &mut seq,
        &ErrPacket::new(1040, "08004", "Too many connections").encode(),
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&out)).await;
}

/// A password holding its share of the gateway's sessions (MySQL's `max_user_connections`).
pub(crate) fn too_many_user_connections(username: &str, max: usize) -> ErrPacket {
    ErrPacket::new(
        1203,
        "42000",
        format!("User {username} already has more than 'max_user_connections' active connections ({max} per password)"),
    )
}

/// After this many failed logins from one address, its failures are answered ever more slowly.
const FAILURES_BEFORE_BACKOFF: u32 = 5;
/// After this many failed logins of one username from one address, that username is refused
/// from that address until the window passes. Never a whole address: a stranger behind the same
/// address (a NAT, a shared application server) must not lock the others out.
const FAILURES_BEFORE_BLOCK: u32 = 100;
const FAILURE_WINDOW: Duration = Duration::from_secs(600);

/// Failures per key within [`FAILURE_WINDOW`].
struct FailureCounts<K>(Mutex<HashMap<K, (u32, Instant)>>);

impl<K: std::hash::Hash + Eq> FailureCounts<K> {
    fn new() -> Self {
        FailureCounts(Mutex::new(HashMap::new()))
    }

    fn count(&self, key: &K) -> u32 {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_empty() {
            return 0;
        }
        match f.get(key) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW => *n,
            Some(_) => {
                f.remove(key);
                0
            }
            None => 0,
        }
    }

    /// Counts one more; returns the count before it.
    fn record(&self, key: K) -> u32 {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let e = f.entry(key).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        e.0 - 1
    }
}

/// How long a failed login from an address that failed `before` times already is held before
/// its answer.
fn failure_delay(before: u32) -> Duration {
    if before < FAILURES_BEFORE_BACKOFF {
        return Duration::ZERO;
    }
    Duration::from_millis(100u64 << (before - FAILURES_BEFORE_BACKOFF).min(7))
}

/// The answer to a username refused from an address after many failed logins.
pub(crate) fn login_blocked(username: &str, ip: IpAddr) -> ErrPacket {
    ErrPacket::new(
        1129,
        "HY000",
        format!(
            "User '{}' is blocked from '{ip}' because of many failed logins; try again later",
            username.escape_debug()
        ),
    )
}

fn random_nonce() -> Vec<u8> {
    // Printable bytes only: the greeting carries the nonce NUL-terminated.
    let mut raw = [0u8; 20];
    strata_model::ids::random_bytes(&mut raw);
    raw.iter().map(|b| 0x21 + (b % 94)).collect()
}

/// The stored verifiers of a login's password.
pub(crate) fn password_hashes(login: &Login) -> PasswordHashes {
    PasswordHashes {
        native: login
            .password
            .native_hash
            .as_slice()
            .try_into()
            .unwrap_or([0; 20]),
        sha2: login
            .password
            .sha2_hash
            .as_slice()
            .try_into()
            .unwrap_or([0; 32]),
    }
}

/// Whether a login's password may be used from `ip` (its CIDR list, when it has one).
pub(crate) fn allowed_from(login: &Login, ip: IpAddr) -> bool {
    login.password.cidrs.is_empty()
        || login
            .password
            .cidrs
            .iter()
            .any(|c| Cidr::parse(c).map(|c| c.contains(ip)).unwrap_or(false))
}

pub(crate) fn access_denied(user: &str, ip: IpAddr) -> ErrPacket {
    ErrPacket::new(
        1045,
        "28000",
        format!("Access denied for user '{user}'@'{ip}' (using password: YES)"),
    )
}

impl Gateway {
    pub fn new(
        platform: Arc<Platform>,
        cfg: GatewayConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        server_version: &str,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            platform,
            pools: pool::Pools::new(cfg.pool_size, cfg.pool_wait),
            cores: cores::Cores::start(cfg.threads),
            prelogin: admission::Admission::new(cfg.prelogin_max, cfg.prelogin_per_address),
            clients: clients::Clients::new(cfg.max_clients, cfg.max_clients_per_password),
            cfg,
            tls,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            failures: FailureCounts::new(),
            user_failures: FailureCounts::new(),
            server_version: format!("5.5.5-{server_version}-strata"),
            inflight: Mutex::new(foldhash::HashMap::default()),
            consolidated: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pools.stats()
    }

    /// How many queries were answered from an identical query in flight.
    pub fn consolidated_queries(&self) -> u64 {
        self.consolidated.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Accepts connections until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Idle backend connections a burst opened go back to the instances.
        let mut reap = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = reap.tick() => self.pools.reap(pool::IDLE_MAX),
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let me = self.clone();
                        self.cores.spawn(tcp, move |tcp| async move {
                            // Held for the connection's life.
                            let Some(_open) = me.clients.open() else {
                                too_many_connections(tcp).await;
                                return;
                            };
                            let wait = admission::WAIT;
                            match me.prelogin.enter_within(peer.ip(), wait).await {
                                Some(ticket) => me.connection(tcp, peer, ticket).await,
                                None => too_many_connections(tcp).await,
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    /// True when this username is refused from this address for its failed logins.
    pub(crate) fn blocked(&self, ip: IpAddr, username: &str) -> bool {
        self.user_failures.count(&(ip, username.to_string())) >= FAILURES_BEFORE_BLOCK
    }

    /// Counts a failed login and holds its answer back as the address's failures grow.
    pub(crate) async fn failed_login(&self, ip: IpAddr, username: &str) {
        self.user_failures.record((ip, username.to_string()));
        let before = self.failures.record(ip);
        let delay = failure_delay(before);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        ticket: admission::Ticket,
    ) {
        let _ = tcp.set_nodelay(true);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let eviction = ticket.eviction();
        let login = tokio::select! {
            login = tokio::time::timeout(self.cfg.login_timeout, self.handshake(tcp, peer, id)) => Some(login),
            _ = eviction.notified() => None,
        };
        drop(ticket);
        match login {
            Some(Ok(Ok(Some((client, login, nonce, seat))))) => {
                session::run(self.clone(), client, login, nonce, id, peer, seat).await
            }
            Some(Ok(Ok(None))) => {}
            Some(Ok(Err(e))) => tracing::debug!(%peer, error = %e, "connection ended during login"),
            Some(Err(_)) => tracing::debug!(%peer, "login not finished in time: connection closed"),
            None => {
                tracing::debug!(%peer, "not logged in yet, closed to make room for another address")
            }
        }
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// The connection phase. Returns the authenticated client, or `None` after answering an error.
    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        id: u32,
    ) -> Result<Option<(ClientConn, Login, Vec<u8>, clients::Seat)>, client::ClientError> {
        let ip = peer.ip();
        let mut tcp = tcp;
        let nonce = random_nonce();
        let mut capabilities = caps::GATEWAY;
        if self.tls.is_some() {
            capabilities |= caps::SSL;
        }
        let greeting = Greeting {
            server_version: self.server_version.clone(),
            connection_id: id,
            nonce: nonce.clone(),
            capabilities,
            charset: 45,
            status: caps::status::AUTOCOMMIT,
            auth_plugin: NATIVE_PASSWORD.into(),
            mariadb_capabilities: 0,
        };
        // The first exchange happens on the bare socket: it may be upgraded to TLS next.
        let mut out = bytes::BytesMut::new();
        let mut seq = 0u8;
        strata_wire::codec::put_packet(&mut out, &mut seq, &greeting.encode());
        tcp.write_all(&out).await?;
        // Read exactly one frame: a TLS handshake may follow right behind an SSL request.
        let mut header = [0u8; 4];
        if tcp.read_exact(&mut header).await.is_err() {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        if len > 64 * 1024 {
            return Ok(None);
        }
        let mut body = vec![0u8; len];
        if tcp.read_exact(&mut body).await.is_err() {
            return Ok(None);
        }
        let mut framed = bytes::BytesMut::with_capacity(4 + len);
        framed.extend_from_slice(&header);
        framed.extend_from_slice(&body);
        let Some(first) = strata_wire::codec::take_frame(&mut framed) else {
            return Ok(None);
        };
        let inbuf = bytes::BytesMut::new();
        let mut secure = false;
        let (mut client, payload) = if is_ssl_request(first.payload()) {
            let Some(tls) = &self.tls else {
                return Ok(None);
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return Ok(None);
                }
            };
            let mut client = ClientConn::new(Box::new(stream), self.cfg.max_packet);
            secure = true;
            let Some((_, p)) = client.read_packet().await? else {
                return Ok(None);
            };
            (client, p)
        } else {
            let mut client = ClientConn::with_buffered(Box::new(tcp), self.cfg.max_packet, inbuf);
            client.seq = first.seq.wrapping_add(1);
            if !(ip.is_loopback() && self.cfg.allow_plaintext_loopback) {
                client
                    .send_err(&ErrPacket::new(
                        3159,
                        "HY000",
                        "server does not allow insecure connections, client must use SSL/TLS",
                    ))
                    .await?;
                return Ok(None);
            }
            (client, first.raw.slice(4..))
        };
        let resp = match HandshakeResponse::parse(&payload) {
            Ok(r) => r,
            Err(e) => {
                client
                    .send_err(&ErrPacket::new(
                        1043,
                        "08S01",
                        format!("Bad handshake: {e}"),
                    ))
                    .await?;
                return Ok(None);
            }
        };
        client.caps = resp.capabilities & capabilities;
        if resp.capabilities & caps::COMPRESS != 0 && capabilities & caps::COMPRESS == 0 {
            client.caps &= !caps::COMPRESS;
        }

        if self.blocked(ip, &resp.username) {
            client.send_err(&login_blocked(&resp.username, ip)).await?;
            return Ok(None);
        }
        let login = self.platform.login(&resp.username);
        let hashes = login.as_ref().map(password_hashes);
        // Unknown users are checked against a dummy verifier so timing does not tell them apart.
        let verifier = hashes.unwrap_or(PasswordHashes {
            native: [0; 20],
            sha2: [0; 32],
        });
        let plugin = resp
            .auth_plugin
            .clone()
            .unwrap_or_else(|| NATIVE_PASSWORD.to_string());
        tracing::debug!(%peer, plugin = %plugin, scramble = resp.auth_response.len(), secure, "login");
        let mut scramble = resp.auth_response.clone();
        let mut plugin = plugin;
        if scramble.is_empty() && (plugin == NATIVE_PASSWORD || plugin == CACHING_SHA2_PASSWORD) {
            // The client waits to be told the method and nonce.
            client.queue(&auth_switch_request(&plugin, &nonce));
            client.flush().await?;
            let Some((_, s)) = client.read_packet().await? else {
                return Ok(None);
            };
            scramble = s.to_vec();
        } else if ![NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, CLEAR_PASSWORD]
            .contains(&plugin.as_str())
        {
            client.queue(&auth_switch_request(NATIVE_PASSWORD, &nonce));
            client.flush().await?;
            let Some((_, s)) = client.read_packet().await? else {
                return Ok(None);
            };
            scramble = s.to_vec();
            plugin = NATIVE_PASSWORD.to_string();
        }
        let verified = match plugin.as_str() {
            NATIVE_PASSWORD => verifier.verify_native(&nonce, &scramble),
            CACHING_SHA2_PASSWORD
                if scramble.len() == 32 && verifier.verify_caching_sha2(&nonce, &scramble) =>
            {
                if login.is_some() {
                    client.queue(&auth_more_data(&[FAST_AUTH_SUCCESS]));
                }
                true
            }
            CACHING_SHA2_PASSWORD if secure => {
                // Full authentication: the password itself, which only ever travels inside TLS.
                client.queue(&auth_more_data(&[PERFORM_FULL_AUTHENTICATION]));
                client.flush().await?;
                let Some((_, pw)) = client.read_packet().await? else {
                    return Ok(None);
                };
                let pw = pw.strip_suffix(&[0]).unwrap_or(&pw).to_vec();
                verifier.verify_plaintext(&String::from_utf8_lossy(&pw))
            }
            CLEAR_PASSWORD if secure => {
                let pw = scramble.strip_suffix(&[0]).unwrap_or(&scramble).to_vec();
                verifier.verify_plaintext(&String::from_utf8_lossy(&pw))
            }
            _ => false,
        };
        let login = match login {
            Some(l) if verified => l,
            _ => {
                self.failed_login(ip, &resp.username).await;
                client.send_err(&access_denied(&resp.username, ip)).await?;
                return Ok(None);
            }
        };
        if !allowed_from(&login, ip) {
            self.failed_login(ip, &resp.username).await;
            client.send_err(&access_denied(&resp.username, ip)).await?;
            return Ok(None);
        }
        if let Some(db) = &resp.database {
            if db != &login.database.name && !db.eq_ignore_ascii_case("@primary") {
                client
                    .send_err(&ErrPacket::new(
                        1044,
                        "42000",
                        format!(
                            "Access denied for user '{}'@'{ip}' to database '{db}'",
                            resp.username
                        ),
                    ))
                    .await?;
                return Ok(None);
            }
        }
        let Some(seat) = self.clients.seat(&login.password.id) else {
            client
                .send_err(&too_many_user_connections(
                    &resp.username,
                    self.clients.per_password_max(),
                ))
                .await?;
            return Ok(None);
        };
        self.platform.password_used(&login.password);
        client.queue_ok(&OkPacket::simple(caps::status::AUTOCOMMIT));
        client.flush().await?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Arc::new(SessionShared {
                    username: Mutex::new(login.password.username.clone()),
                    busy: Mutex::new(None),
                    kill: tokio::sync::Notify::new(),
                }),
            );
        client.charset = resp.charset;
        Ok(Some((client, login, nonce, seat)))
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn failures_slow_an_address_and_block_only_a_username() {
        assert_eq!(failure_delay(0), Duration::ZERO);
        assert_eq!(failure_delay(FAILURES_BEFORE_BACKOFF - 1), Duration::ZERO);
        assert_eq!(
            failure_delay(FAILURES_BEFORE_BACKOFF),
            Duration::from_millis(100)
        );
        assert_eq!(
            failure_delay(FAILURES_BEFORE_BACKOFF + 3),
            Duration::from_millis(800)
        );
        assert_eq!(failure_delay(10_000), Duration::from_millis(12_800));
        let per_user: FailureCounts<(IpAddr, String)> = FailureCounts::new();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for i in 0..FAILURES_BEFORE_BLOCK {
            assert_eq!(per_user.record((ip, "stranger".into())), i);
        }
        assert_eq!(
            per_user.count(&(ip, "stranger".into())),
            FAILURES_BEFORE_BLOCK
        );
        assert_eq!(per_user.count(&(ip, "colleague".into())), 0);
        assert_eq!(
            per_user.count(&([10, 0, 0, 2].into(), "stranger".into())),
            0
        );
    }
}
