//! Point selects for a fixed time over the HTTP SQL endpoint (the serverless driver's requests: one
//! Execute per query with a new session, Basic auth, keep-alive) and over the MySQL gateway, the
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
        "{name:<6} {qps:>8.0} qps  p50 {:>6.2} ms  p99 {:>6.2} ms  failed {}",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
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
    let url = format!("{}/psdb.v1alpha1.Database/Execute", a.http);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.clients)
        .build()?;
    let http = Arc::new(Tally {
        latencies: Mutex::new(Vec::new()),
        failed: 0.into(),
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..a.clients as u64 {
        let (client, url, tally) = (client.clone(), url.clone(), http.clone());
        let (user, pw, rows) = (a.target.user.clone(), a.target.password.clone(), a.rows);
        set.spawn(async move {
            let mut id = w;
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                id = next(id, rows);
                // The driver's request, as it sends it; the answer must carry one row.
                let body = format!(
                    r#"{{"query":"SELECT id, k, c FROM points WHERE id = {id}","session":null}}"#
                );
                let t0 = Instant::now();
                let ok = match client
                    .post(&url)
                    .basic_auth(&user, Some(&pw))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .is_ok_and(|b| b.windows(9).filter(|w| w == b"\"lengths\"").count() == 1),
                    _ => false,
                };
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
    let http_qps = report("http", &http, a.seconds);

    let wire = Arc::new(Tally {
        latencies: Mutex::new(Vec::new()),
        failed: 0.into(),
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    for w in 0..a.clients as u64 {
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
    let wire_qps = report("mysql", &wire, a.seconds);
    println!("ratio http/mysql: {:.2}", http_qps / wire_qps.max(1.0));
    if http.failed.load(std::sync::atomic::Ordering::Relaxed)
        + wire.failed.load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        bail!("some queries failed");
    }
    Ok(())
}
