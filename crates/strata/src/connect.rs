//! `strata shell` and `strata connect`: both mint a short-lived password for the branch (as `pscale`
//! does), renew it while in use and delete it afterwards.
//!
//! `strata connect` opens a local plaintext port: each local client is answered by a small local
//! MySQL handshake (any credentials), then joined to a gateway session opened over TLS with the
//! minted password; after that the bytes are relayed untouched.

use crate::cli::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_model::credentials::scramble_native;
use strata_wire::caps;
use strata_wire::codec::{put_packet, take_frame, Frame};
use strata_wire::handshake::{parse_auth_switch, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use strata_wire::packets::{ErrPacket, OkPacket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TTL: u64 = 300;

/// A password made for this command's lifetime.
pub struct Minted {
    pub username: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    path: String,
}

pub async fn mint(ctx: &Ctx, db: &str, branch: &str, role: &str, what: &str) -> Result<Minted> {
    let b = ctx
        .client
        .get(&ctx.org_path(&format!("databases/{db}/branches/{branch}")))
        .await?;
    if b.get("ready").and_then(Value::as_bool) != Some(true) {
        bail!("branch '{branch}' is not ready yet");
    }
    let stamp = strata_model::timefmt::now_millis();
    let path = ctx.org_path(&format!("databases/{db}/branches/{branch}/passwords"));
    let p = ctx
        .client
        .send(
            reqwest::Method::POST,
            &path,
            json!({"name": format!("strata-cli-{what}-{stamp}"), "role": role, "ttl": TTL}),
        )
        .await?;
    let s = |k: &str| {
        p.pointer(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("password response lacks {k}"))
    };
    Ok(Minted {
        username: s("/username")?,
        password: s("/plain_text")?,
        host: s("/connection/host")?,
        port: p
            .pointer("/connection/port")
            .and_then(Value::as_u64)
            .unwrap_or(3309) as u16,
        database: s("/connection/database")?,
        path: format!("{path}/{}", s("/id")?),
    })
}

impl Minted {
    /// Renews at half the TTL until dropped.
    pub fn keep_alive(&self, ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
        let path = format!("{}/renew", self.path);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(TTL / 2)).await;
                let _ = ctx.client.post(&path).await;
            }
        })
    }

    pub async fn delete(&self, ctx: &Ctx) {
        let _ = ctx.client.delete(&self.path).await;
    }
}

fn find_client() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["mariadb", "mysql"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// `strata shell`: the installed `mariadb`/`mysql` client, logged in to the branch through the gateway.
pub async fn shell(ctx: Arc<Ctx>, db: &str, branch: &str, role: &str) -> Result<()> {
    let client = find_client();
    let stop = terminated(client.is_none());
    let m = mint(&ctx, db, branch, role, "shell").await?;
    let renew = m.keep_alive(ctx.clone());
    let Some(client) = client else {
        let prompt = format!("{db}/{branch}> ");
        let r = tokio::select! {
            r = builtin_shell(&ctx, &m, &prompt) => r,
            _ = stop => Ok(()),
        };
        renew.abort();
        m.delete(&ctx).await;
        return r;
    };
    let dir = tempfile_dir()?;
    let cnf = dir.join("client.cnf");
    let mut text = format!(
        "[client]\nhost={}\nport={}\nuser={}\npassword={}\ndatabase={}\n",
        m.host, m.port, m.username, m.password, m.database
    );
    if let Some(ca) = &ctx.mysql_ca {
        text.push_str(&format!(
            "ssl-ca={}\nssl-verify-server-cert\n",
            ca.display()
        ));
    }
    write_private(&cnf, &text)?;
    let spawned = tokio::process::Command::new(&client)
        .arg(format!("--defaults-extra-file={}", cnf.display()))
        .arg(format!("--prompt={db}/{branch}> "))
        .kill_on_drop(true)
        .spawn();
    // Ctrl-C is the client's (it stops the running statement); ended from outside, the client
    // is stopped and the password deleted all the same.
    let status = match spawned {
        Ok(mut child) => tokio::select! {
            s = child.wait() => Some(s),
            _ = stop => {
                let _ = child.kill().await;
                None
            }
        },
        Err(e) => Some(Err(e)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    renew.abort();
    m.delete(&ctx).await;
    match status {
        Some(Ok(status)) if !status.success() => {
            bail!("{} exited with {status}", client.display())
        }
        Some(Err(e)) => Err(e).with_context(|| format!("cannot run {}", client.display())),
        _ => Ok(()),
    }
}

/// Completes when the command is asked to end from outside: SIGTERM or SIGHUP (the terminal
/// went away), and SIGINT when `interrupt` (else Ctrl-C is left to a client in the foreground).
/// A short-lived password is deleted then, not left to expire.
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that comes right after the command says it is ready is not missed.
fn terminated(interrupt: bool) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = handlers else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = hup.recv() => return,
                _ = int.recv() => if interrupt { return },
            }
        }
    }
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut raw = [0u8; 8];
    strata_model::ids::random_bytes(&mut raw);
    let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("strata-shell-{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// `strata connect`: a local plaintext port relaying to the gateway over TLS.
pub async fn connect(
    ctx: Arc<Ctx>,
    db: &str,
    branch: &str,
    role: &str,
    listen: SocketAddr,
) -> Result<()> {
    let m = Arc::new(mint(&ctx, db, branch, role, "connect").await?);
    let renew = m.keep_alive(ctx.clone());
    let tls = match &ctx.mysql_ca {
        Some(ca) => {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the gateway CA {}", ca.display()))?;
            Some(strata_gateway::tls::client_config_from_ca(&pem)?)
        }
        None => None,
    };
    let stop = terminated(true);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    // Written, not printed: a reader of stdout that has gone (`| head -1`) must not end the
    // tunnel (println! panics on a closed pipe) before its password is deleted.
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "Secure connection to {db}/{branch} is available at {local}"
        );
        let _ = writeln!(
            out,
            "Connect with: mariadb -h {} -P {} -u root {}",
            local.ip(),
            local.port(),
            m.database
        );
        let _ = out.flush();
    }
    let serve = async {
        loop {
            let (sock, _) = listener.accept().await?;
            let (m, tls) = (m.clone(), tls.clone());
            tokio::spawn(async move {
                if let Err(e) = relay(sock, &m, tls).await {
                    eprintln!("connection closed: {e:#}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = serve => r,
        _ = stop => Ok(()),
    };
    renew.abort();
    m.delete(&ctx).await;
    result
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Result<Frame> {
    loop {
        if let Some(f) = take_frame(buf) {
            return Ok(f);
        }
        if s.read_buf(buf).await? == 0 {
            bail!("connection closed during the handshake");
        }
    }
}

async fn write_packet<S: AsyncWrite + Unpin>(
    s: &mut S,
    seq: &mut u8,
    payload: &[u8],
) -> Result<()> {
    let mut out = BytesMut::new();
    put_packet(&mut out, seq, payload);
    s.write_all(&out).await?;
    Ok(())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum LoginError {
    Refused(ErrPacket),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for LoginError {
    fn from(e: E) -> Self {
        LoginError::Other(e.into())
    }
}

/// A gateway session logged in with the minted password, over TLS when the CA is known.
async fn login_upstream(
    m: &Minted,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_caps: u32,
    charset: u8,
) -> std::result::Result<(Box<dyn Io>, BytesMut), LoginError> {
    let mut upstream = TcpStream::connect((m.host.as_str(), m.port))
        .await
        .with_context(|| format!("cannot reach the gateway at {}:{}", m.host, m.port))?;
    upstream.set_nodelay(true)?;
    let mut ubuf = BytesMut::new();
    let g = read_frame(&mut upstream, &mut ubuf).await?;
    let server = Greeting::parse(g.payload())?;
    let mut useq = g.seq.wrapping_add(1);
    let mut login = HandshakeResponse {
        capabilities: (client_caps
            | caps::PLUGIN_AUTH
            | caps::SECURE_CONNECTION
            | caps::PROTOCOL_41
            | caps::CONNECT_WITH_DB)
            & !caps::CONNECT_ATTRS,
        max_packet: 1 << 30,
        charset,
        username: m.username.clone(),
        auth_response: scramble_native(&server.nonce, &m.password).to_vec(),
        database: Some(m.database.clone()),
        auth_plugin: Some(NATIVE_PASSWORD.into()),
        attributes: Vec::new(),
        mariadb_capabilities: 0,
    };
    let mut stream: Box<dyn Io> = match tls {
        Some(cfg) if server.capabilities & caps::SSL != 0 => {
            login.capabilities |= caps::SSL;
            write_packet(&mut upstream, &mut useq, &login.ssl_request()).await?;
            let name = rustls_pki_types::ServerName::try_from(m.host.clone())?;
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, upstream)
                .await
                .context("TLS to the gateway failed")?;
            Box::new(s)
        }
        _ => Box::new(upstream),
    };
    write_packet(&mut stream, &mut useq, &login.encode()).await?;
    loop {
        let f = read_frame(&mut stream, &mut ubuf).await?;
        useq = f.seq.wrapping_add(1);
        match f.payload().first() {
            Some(0x00) => return Ok((stream, ubuf)),
            Some(0x01) => continue, // fast-auth success marker
            Some(0xFF) => return Err(LoginError::Refused(ErrPacket::parse(f.payload())?)),
            Some(0xFE) => {
                let (_, n) = parse_auth_switch(f.payload())?;
                write_packet(&mut stream, &mut useq, &scramble_native(&n, &m.password)).await?;
            }
            _ => {
                return Err(LoginError::Other(anyhow!(
                    "unexpected reply from the gateway during login"
                )))
            }
        }
    }
}

async fn relay(
    mut local: TcpStream,
    m: &Minted,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<()> {
    local.set_nodelay(true)?;
    // The local side: any credentials are accepted, the local port is the boundary.
    let mut lbuf = BytesMut::new();
    let mut nonce = [0u8; 20];
    strata_model::ids::random_bytes(&mut nonce);
    let nonce: Vec<u8> = nonce.iter().map(|b| 0x21 + b % 94).collect();
    let greeting = Greeting {
        server_version: "5.5.5-10.11.0-MariaDB-strata-connect".into(),
        connection_id: 1,
        nonce,
        capabilities: caps::GATEWAY,
        charset: 45,
        status: caps::status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
        mariadb_capabilities: 0,
    };
    let mut seq = 0;
    write_packet(&mut local, &mut seq, &greeting.encode()).await?;
    let lf = read_frame(&mut local, &mut lbuf).await?;
    let resp = HandshakeResponse::parse(lf.payload())?;
    let client_caps = resp.capabilities & caps::GATEWAY;

    let (mut stream, ubuf) = match login_upstream(m, tls, client_caps, resp.charset).await {
        Ok(x) => x,
        Err(LoginError::Refused(e)) => {
            let mut s = lf.seq.wrapping_add(1);
            let _ = write_packet(&mut local, &mut s, &e.encode()).await;
            bail!("the gateway refused the login: {}", e.message);
        }
        Err(LoginError::Other(e)) => return Err(e),
    };
    // Tell the local client it is in.
    let mut lseq = lf.seq.wrapping_add(1);
    write_packet(
        &mut local,
        &mut lseq,
        &OkPacket::simple(caps::status::AUTOCOMMIT).encode(client_caps),
    )
    .await?;
    if !lbuf.is_empty() || !ubuf.is_empty() {
        stream.write_all(&lbuf).await?;
        local.write_all(&ubuf).await?;
    }
    tokio::io::copy_bidirectional(&mut local, &mut stream).await?;
    Ok(())
}

fn gateway_tls(ctx: &Ctx) -> Result<Option<Arc<rustls::ClientConfig>>> {
    match &ctx.mysql_ca {
        Some(ca) => {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the gateway CA {}", ca.display()))?;
            Ok(Some(strata_gateway::tls::client_config_from_ca(&pem)?))
        }
        None => Ok(None),
    }
}

/// The shell used when no mariadb/mysql client is installed: statements end with `;`, results print
/// as tables; `exit` or end of input leaves.
async fn builtin_shell(ctx: &Ctx, m: &Minted, prompt: &str) -> Result<()> {
    use std::io::IsTerminal;
    use tokio::io::AsyncBufReadExt;
    let profile = caps::DEPRECATE_EOF
        | caps::MULTI_RESULTS
        | caps::MULTI_STATEMENTS
        | caps::TRANSACTIONS
        | caps::LONG_FLAG;
    let (mut io, mut buf) = match login_upstream(m, gateway_tls(ctx)?, profile, 45).await {
        Ok(x) => x,
        Err(LoginError::Refused(e)) => bail!("the gateway refused the login: {}", e.message),
        Err(LoginError::Other(e)) => return Err(e),
    };
    let interactive = std::io::stdin().is_terminal();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut statement = String::new();
    loop {
        if interactive {
            print!(
                "{}",
                if statement.is_empty() {
                    prompt
                } else {
                    "    -> "
                }
            );
            std::io::Write::flush(&mut std::io::stdout())?;
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let t = line.trim();
        if statement.is_empty()
            && (t.eq_ignore_ascii_case("exit") || t.eq_ignore_ascii_case("quit"))
        {
            break;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !t.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let mut p = vec![caps::command::QUERY];
        p.extend_from_slice(sql.trim().trim_end_matches(';').as_bytes());
        let mut seq = 0;
        write_packet(&mut io, &mut seq, &p).await?;
        print_results(&mut io, &mut buf).await?;
    }
    Ok(())
}

/// Reads one text-protocol response (all its result sets) and prints it.
async fn print_results(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> Result<()> {
    use strata_wire::Reader;
    loop {
        let f = read_frame(io, buf).await?;
        let p = f.payload();
        let more = match p.first() {
            Some(0x00) => {
                let ok = OkPacket::parse(p, caps::DEPRECATE_EOF)?;
                println!("Query OK, {} rows affected", ok.affected_rows);
                ok.status & caps::status::MORE_RESULTS_EXISTS != 0
            }
            Some(0xFF) => {
                let e = ErrPacket::parse(p)?;
                println!("ERROR {} ({}): {}", e.code, e.sqlstate(), e.message);
                false
            }
            _ => {
                let n = Reader::new(p).lenenc_int()?;
                let mut names = Vec::new();
                for _ in 0..n {
                    let c = read_frame(io, buf).await?;
                    let mut r = Reader::new(c.payload());
                    for _ in 0..4 {
                        r.lenenc_bytes()?;
                    }
                    names.push(String::from_utf8_lossy(r.lenenc_bytes()?).into_owned());
                }
                let mut table = comfy_table::Table::new();
                table.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
                table.set_header(names);
                let mut rows = 0;
                let status = loop {
                    let r = read_frame(io, buf).await?;
                    let rp = r.payload();
                    if rp.first() == Some(&0xFE) && rp.len() < 0xFF_FFFF {
                        break OkPacket::parse(rp, caps::DEPRECATE_EOF)
                            .map(|o| o.status)
                            .unwrap_or(0);
                    }
                    if rp.first() == Some(&0xFF) {
                        let e = ErrPacket::parse(rp)?;
                        println!("ERROR {} ({}): {}", e.code, e.sqlstate(), e.message);
                        break 0;
                    }
                    let mut rr = Reader::new(rp);
                    let mut cells = Vec::new();
                    for _ in 0..n {
                        cells.push(match rr.lenenc()? {
                            None => "NULL".to_string(),
                            Some(len) => {
                                String::from_utf8_lossy(rr.bytes(len as usize)?).into_owned()
                            }
                        });
                    }
                    table.add_row(cells);
                    rows += 1;
                };
                println!(
                    "{table}\n{rows} row{} in set",
                    if rows == 1 { "" } else { "s" }
                );
                status & caps::status::MORE_RESULTS_EXISTS != 0
            }
        };
        if !more {
            return Ok(());
        }
    }
}
