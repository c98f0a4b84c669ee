//! A connection from the gateway to a branch instance, as one of its internal role users. The gateway
//! speaks the client side of the protocol itself so it can forward result packets byte for byte.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use strata_model::credentials::scramble_native;
use strata_wire::caps;
use strata_wire::codec::{put_packet, take_frame, Frame};
use strata_wire::handshake::{parse_auth_switch, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use strata_wire::packets::ErrPacket;
use strata_wire::tracker::{Expect, Tracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("instance connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("instance protocol error: {0}")]
    Wire(#[from] strata_wire::WireError),
    #[error("instance refused: {} ({})", .0.message, .0.code)]
    Server(ErrPacket),
    #[error("instance closed the connection")]
    Closed,
}

/// Capabilities every backend connection has, whatever the client: the gateway needs protocol 4.1,
/// plugin auth, session tracking (to see session state change) and multiple results.
pub const BASE_CAPS: u32 = caps::LONG_PASSWORD
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_DATA
    | caps::SESSION_TRACK
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS;

/// The profile a typical modern client negotiates (what load generators use).
pub const CLIENT_PROFILE: u32 = caps::MULTI_STATEMENTS | caps::DEPRECATE_EOF;

pub struct Backend {
    stream: TcpStream,
    rbuf: BytesMut,
    pub thread_id: u32,
    pub capabilities: u32,
    /// Column definitions carry MariaDB's extended metadata, which the gateway takes out (and
    /// reads JSON columns from) before a client sees them: see [`strata_wire::packets::column_for_client`].
    pub extended_metadata: bool,
    pub addr: SocketAddr,
    pub last_used: Instant,
    /// When the server last read this connection's database privileges (login, or `USE`): it
    /// keeps them until the connection changes database again.
    pub privileges_read: Instant,
    /// Statements prepared on this connection, by text (a client's text: hashed with a seeded,
    /// well-mixing hasher, fast enough to do at every execute).
    statements: std::collections::HashMap<bytes::Bytes, u32, foldhash::quality::RandomState>,
    /// COM_STMT_CLOSE packets to send before the next command (they get no answer).
    pending_close: Vec<Vec<u8>>,
    /// The session's statement time limit (`max_statement_time`), set again after a reset.
    statement_limit: Option<Duration>,
    /// The server holds warnings or an error of a statement run here (`SHOW WARNINGS`, `SHOW
    /// ERRORS`): they name tables and values, so they are cleared before anyone else gets it.
    pub diagnostics: bool,
    /// The gateway core whose runtime polls this connection's socket (`crate::cores`).
    pub home: usize,
}

/// Server-side prepared statements kept per backend connection before the oldest are closed.
const STATEMENT_CACHE: usize = 256;

impl Backend {
    /// Connects and logs in as `user` to `schema`, with the given extra capabilities and charset.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        password: &str,
        schema: &str,
        profile_caps: u32,
        charset: u8,
    ) -> Result<Backend, BackendError> {
        Self::connect_from(addr, None, user, password, schema, profile_caps, charset).await
    }

    /// Like [`Backend::connect`], from a chosen local address (load generators spread connections
    /// over several loopback addresses to have more ports).
    pub async fn connect_from(
        addr: SocketAddr,
        source: Option<std::net::IpAddr>,
        user: &str,
        password: &str,
        schema: &str,
        profile_caps: u32,
        charset: u8,
    ) -> Result<Backend, BackendError> {
        let stream = match source {
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        stream.set_nodelay(true)?;
        let mut b = Backend {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            thread_id: 0,
            capabilities: 0,
            extended_metadata: false,
            addr,
            last_used: Instant::now(),
            privileges_read: Instant::now(),
            statements: Default::default(),
            pending_close: Vec::new(),
            statement_limit: None,
            diagnostics: false,
            home: crate::cores::current(),
        };
        let greeting_frame = b.next_frame().await?;
        if greeting_frame.payload().first() == Some(&0xFF) {
            // Refused before the greeting (e.g. 1040 Too many connections).
            return Err(BackendError::Server(ErrPacket::parse(
                greeting_frame.payload(),
            )?));
        }
        let greeting = Greeting::parse(greeting_frame.payload())?;
        b.thread_id = greeting.connection_id;
        let wanted = BASE_CAPS | (profile_caps & caps::PROFILE);
        b.capabilities = wanted & greeting.capabilities;
        // A MariaDB server (no CLIENT_MYSQL in its greeting) types JSON only in the extended
        // metadata, asked for by leaving CLIENT_MYSQL out too; MySQL 8 types JSON itself.
        let mariadb = greeting.capabilities & caps::LONG_PASSWORD == 0;
        b.extended_metadata =
            mariadb && greeting.mariadb_capabilities & caps::mariadb::EXTENDED_METADATA != 0;
        if b.extended_metadata {
            b.capabilities &= !caps::LONG_PASSWORD;
        }
        let response = HandshakeResponse {
            capabilities: b.capabilities,
            mariadb_capabilities: if b.extended_metadata {
                caps::mariadb::EXTENDED_METADATA
            } else {
                0
            },
            max_packet: 1 << 30,
            charset,
            username: user.to_string(),
            auth_response: scramble_native(&greeting.nonce, password).to_vec(),
            database: Some(schema.to_string()),
            auth_plugin: Some(NATIVE_PASSWORD.to_string()),
            attributes: Vec::new(),
        };
        let mut seq = greeting_frame.seq.wrapping_add(1);
        b.write_packet(&mut seq, &response.encode()).await?;
        loop {
            let f = b.next_frame().await?;
            seq = f.seq.wrapping_add(1);
            match f.payload().first() {
                Some(0x00) => return Ok(b),
                Some(0xFF) => return Err(BackendError::Server(ErrPacket::parse(f.payload())?)),
                Some(0xFE) => {
                    let (plugin, nonce) = parse_auth_switch(f.payload())?;
                    if plugin != NATIVE_PASSWORD {
                        return Err(BackendError::Server(ErrPacket::new(
                            1251,
                            "08004",
                            format!("unsupported instance auth plugin {plugin}"),
                        )));
                    }
                    b.write_packet(&mut seq, &scramble_native(&nonce, password))
                        .await?;
                }
                _ => {
                    return Err(BackendError::Wire(strata_wire::WireError::Malformed(
                        "unexpected packet during login",
                    )))
                }
            }
        }
    }

    async fn write_packet(&mut self, seq: &mut u8, payload: &[u8]) -> Result<(), BackendError> {
        let mut out = BytesMut::with_capacity(payload.len() + 8);
        put_packet(&mut out, seq, payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Sends a command (sequence 0).
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        self.flush_closes().await?;
        self.last_used = Instant::now();
        let mut seq = 0;
        self.write_packet(&mut seq, payload).await
    }

    /// Sends several commands in one write, without waiting for their answers (which come
    /// back in order): a guard and its statement cost one round trip, not two.
    pub async fn send_commands(&mut self, payloads: &[&[u8]]) -> Result<(), BackendError> {
        self.flush_closes().await?;
        self.last_used = Instant::now();
        let mut out = BytesMut::with_capacity(payloads.iter().map(|p| p.len() + 8).sum());
        for p in payloads {
            let mut seq = 0;
            put_packet(&mut out, &mut seq, p);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn flush_closes(&mut self) -> Result<(), BackendError> {
        for p in std::mem::take(&mut self.pending_close) {
            let mut seq = 0;
            self.write_packet(&mut seq, &p).await?;
        }
        Ok(())
    }

    /// Sends raw, already framed bytes.
    pub async fn send_raw(&mut self, raw: &[u8]) -> Result<(), BackendError> {
        self.flush_closes().await?;
        self.last_used = Instant::now();
        self.stream.write_all(raw).await?;
        Ok(())
    }

    /// The next frame from the instance.
    pub async fn next_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf) {
                return Ok(f);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 8192 {
                self.rbuf.reserve(64 * 1024);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// An idle connection the instance closed (it restarted, or ended the session) or that has
    /// unexpected bytes waiting: unusable. Costs no system call while the socket is quiet.
    /// Moves the connection to the runtime of the calling thread (a session on another gateway
    /// core borrowed it): its socket is registered there instead.
    pub fn rehome(mut self) -> std::io::Result<Backend> {
        let std = self.stream.into_std()?;
        self.stream = TcpStream::from_std(std)?;
        self.home = crate::cores::current();
        Ok(self)
    }

    pub fn idle_unusable(&self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// A frame already buffered, if any (lets a forwarder batch writes).
    pub fn buffered_frame(&mut self) -> Option<Frame> {
        take_frame(&mut self.rbuf)
    }

    /// Runs a statement for the gateway's own purposes and reads its whole response.
    pub async fn query(&mut self, sql: &str) -> Result<Tracker, BackendError> {
        let mut p = BytesMut::with_capacity(sql.len() + 1);
        p.put_u8(caps::command::QUERY);
        p.extend_from_slice(sql.as_bytes());
        self.send_command(&p).await?;
        self.drain(Expect::ResultSets).await
    }

    /// Reads (and discards) a whole response.
    pub async fn drain(&mut self, expect: Expect) -> Result<Tracker, BackendError> {
        let mut t = Tracker::new(expect, self.capabilities);
        let mut last_err = None;
        while !t.done() {
            let f = self.next_frame().await?;
            if f.payload().first() == Some(&0xFF) {
                last_err = ErrPacket::parse(f.payload()).ok();
            }
            t.feed(&f)?;
        }
        match (t.error, last_err) {
            (true, Some(e)) => Err(BackendError::Server(e)),
            _ => Ok(t),
        }
    }

    pub fn statement(&self, sql: &[u8]) -> Option<u32> {
        self.statements.get(sql).copied()
    }

    /// Records a statement prepared here; past the cache size one is closed on the server.
    pub fn remember_statement(&mut self, sql: bytes::Bytes, id: u32) {
        if self.statements.len() >= STATEMENT_CACHE {
            if let Some(old) = self.statements.keys().next().cloned() {
                if let Some(old_id) = self.statements.remove(&old) {
                    let mut p = vec![caps::command::STMT_CLOSE];
                    p.extend_from_slice(&old_id.to_le_bytes());
                    self.pending_close.push(p);
                }
            }
        }
        self.statements.insert(sql, id);
    }

    /// COM_RESET_CONNECTION: rolls back, drops temporary tables, user variables, prepared statements
    /// and locks, and restores the login's session settings.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.send_command(&[caps::command::RESET_CONNECTION])
            .await?;
        // The server dropped every prepared statement and numbers new ones from 1 again: a cached
        // id would now run another statement.
        self.statements.clear();
        self.pending_close.clear();
        let t = self.drain(Expect::Simple).await?;
        self.diagnostics = false;
        if t.status & caps::status::IN_TRANS != 0 {
            return Err(BackendError::Wire(strata_wire::WireError::Malformed(
                "still in a transaction after reset",
            )));
        }
        // The reset restored the server's defaults, without the connection's time limit.
        if let Some(limit) = self.statement_limit {
            self.set_statement_limit(Some(limit)).await?;
        }
        Ok(())
    }

    /// Sets (or, with `None`, lifts) the session's statement time limit; it survives a reset.
    pub async fn set_statement_limit(
        &mut self,
        limit: Option<Duration>,
    ) -> Result<(), BackendError> {
        let seconds = limit.map_or(0.0, |d| d.as_secs_f64());
        self.query(&format!("SET SESSION max_statement_time = {seconds}"))
            .await?;
        self.statement_limit = limit;
        Ok(())
    }

    /// Notes what a statement's response leaves in the server's diagnostics area.
    pub fn note(&mut self, t: &Tracker) {
        self.diagnostics |= t.error || t.warnings > 0;
    }

    /// Empties the server's warnings and errors. Only a statement that reads a table does (a bare
    /// `SELECT 1` or `DO 0` leaves them), hence the empty read of a table every user can see.
    pub async fn clear_diagnostics(&mut self) -> Result<(), BackendError> {
        self.query("DO (SELECT 1 FROM information_schema.ENGINES LIMIT 0)")
            .await?;
        self.diagnostics = false;
        Ok(())
    }

    /// Lifts the time limit for this session only, until [`Backend::reset`] (OLAP sessions).
    pub async fn lift_statement_limit(&mut self) -> Result<(), BackendError> {
        self.query("SET SESSION max_statement_time = 0").await?;
        Ok(())
    }
}
