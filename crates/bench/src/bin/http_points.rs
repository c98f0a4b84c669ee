//! Point selects for a fixed time over the HTTP SQL endpoint (the serverless driver's requests: one
//! Execute per query with a new session, Basic auth, keep-alive HTTP/1.1) and over the MySQL gateway, the
//! same number of clients on both, one after the other; prints queries per second, median latency
//! and the ratio. A native client on both sides, so the figure is the servers', not a runtime's.

use anyhow::{bail, Result};
use clap::Parser;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    target: strata_bench::Target,
    /// The HTTP SQL endpoint, e.g. http://127.0.0.1:3900.
    #[arg(long)]
    http: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Which protocol to load: `both` (one after the other, with the ratio), `http` or `mysql`.
    #[arg(long, default_value = "both", value_parser = ["both", "http", "mysql"])]
    side: String,
}

struct Tally {
    latencies: Mutex<Vec<Duration>>,
    failed: std::sync::atomic::AtomicU64,
}

fn report(name: &str, t: &Tally, seconds: u64) -> f64 {
    let mut l = t.latencies.lock().unwrap_or_else(|e| e.into_inner());
    l.sort();
    let qps = l.len() as f64 / seconds as f64;
    let p = |q: f64| {
        l.get(((l.len() as f64) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{name:<6} {qps:>8.0} qps  p50 {:>6.2} ms  p99 {:>6.2} ms  queries {}  failed {}",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        l.len(),
        t.failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    qps
}

fn next(id: u64, rows: u64) -> u64 {
    (id * 7919 + 13) % rows + 1
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let addr = a
        .http
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", a.target.user, a.target.password))
    };
    let http = Arc::new(Tally {
        latencies: Mutex::new(Vec::new()),
        failed: 0.into(),
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut set = tokio::task::JoinSet::new();
    let http_clients = if a.side == "mysql" { 0 } else { a.clients };
    let wire_clients = if a.side == "http" { 0 } else { a.clients };
    for w in 0..http_clients as u64 {
        let (addr, auth, tally, rows) = (addr.clone(), auth.clone(), http.clone(), a.rows);
        set.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // One keep-alive HTTP/1.1 connection per client, written and read by hand: the lightest
            // client there is, as the MySQL side's is.
            let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
                tally.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let _ = tcp.set_nodelay(true);
            let mut buf = Vec::with_capacity(16 << 10);
            let mut id = w;
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                id = next(id, rows);
                // The driver's request, as it sends it; the answer must carry one row.
                let body = format!(
                    r#"{{"query":"SELECT id, k, c FROM points WHERE id = {id}","session":null}}"#
                );
                let req = format!(
                    "POST /psdb.v1alpha1.Database/Execute HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nauthorization: Basic {auth}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let t0 = Instant::now();
                let ok = async {
                    tcp.write_all(req.as_bytes()).await.ok()?;
                    buf.clear();
                    loop {
                        let mut chunk = [0u8; 8192];
                        let n = tcp.read(&mut chunk).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))?
                            .trim()
                            .parse()
                            .ok()?;
                        if buf.len() >= end + 4 + len {
                            let body = &buf[end + 4..end + 4 + len];
                            return Some(
                                head.starts_with("http/1.1 200")
                                    && body.windows(9).filter(|w| w == b"\"lengths\"").count() == 1,
                            );
                        }
                    }
                }
                .await
                .unwrap_or(false);
                if ok {
                    mine.push(t0.elapsed());
                } else {
                    tally
                        .failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            tally
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(mine);
        });
    }
    while set.join_next().await.is_some() {}
    let http_qps = if http_clients > 0 {
        report("http", &http, a.seconds)
    } else {
        0.0
    };

    let wire = Arc::new(Tally {
        latencies: Mutex::new(Vec::new()),
        failed: 0.into(),
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    for w in 0..wire_clients as u64 {
        let (gw, user, pw, db, rows) = (
            a.target.gateway,
            a.target.user.clone(),
            a.target.password.clone(),
            a.target.database.clone(),
            a.rows,
        );
        let tally = wire.clone();
        set.spawn(async move {
            let Ok(mut c) = strata_bench::login(gw, None, &user, &pw, &db).await else {
                tally
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let mut id = w;
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                id = next(id, rows);
                let t0 = Instant::now();
                match c
                    .query(&format!("SELECT id, k, c FROM points WHERE id = {id}"))
                    .await
                {
                    Ok(t) if t.rows == 1 => mine.push(t0.elapsed()),
                    _ => {
                        tally
                            .failed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            tally
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(mine);
        });
    }
    while set.join_next().await.is_some() {}
    if wire_clients > 0 {
        let wire_qps = report("mysql", &wire, a.seconds);
        if http_clients > 0 {
            println!("ratio http/mysql: {:.2}", http_qps / wire_qps.max(1.0));
        }
    }
    if http.failed.load(std::sync::atomic::Ordering::Relaxed)
        + wire.failed.load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        bail!("some queries failed");
    }
    Ok(())
}
