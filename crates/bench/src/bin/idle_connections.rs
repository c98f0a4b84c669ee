//! Opens N client connections to the gateway and holds them idle; reports the gateway's memory per
//! connection and the backend connections it needed, then checks a sample still answers.

use anyhow::{bail, Result};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    target: strata_bench::Target,
    /// Connections to open.
    #[arg(long, default_value_t = 20_000)]
    connections: usize,
    /// Loopback source addresses to spread them over (127.0.0.1, 127.0.0.2, …).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// The gateway's process id, to read its memory.
    #[arg(long)]
    gateway_pid: u32,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let before = strata_bench::rss_kib(a.gateway_pid).unwrap_or(0);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(a.connections);
    let mut failed = 0usize;
    let mut i = 0;
    while i < a.connections {
        let batch = a.parallel.min(a.connections - i);
        let mut set = tokio::task::JoinSet::new();
        for k in 0..batch {
            let src = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + ((i + k) % a.sources as usize) as u8,
            ));
            let (gw, user, pw, db) = (
                a.target.gateway,
                a.target.user.clone(),
                a.target.password.clone(),
                a.target.database.clone(),
            );
            set.spawn(async move {
                tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    strata_bench::login(gw, Some(src), &user, &pw, &db),
                )
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            match r? {
                Ok(Ok(c)) => conns.push(c),
                _ => failed += 1,
            }
        }
        i += batch;
    }
    let opened = start.elapsed();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = strata_bench::rss_kib(a.gateway_pid).unwrap_or(0);
    // Every held connection is still alive: a sample answers.
    let step = (conns.len() / 100).max(1);
    let mut answered = 0;
    for c in conns.iter_mut().step_by(step) {
        if c.query("SELECT 1").await.is_ok() {
            answered += 1;
        }
    }
    let sampled = conns.len().div_ceil(step);
    println!(
        "connections held: {} (failed to open: {failed}) in {:.1} s",
        conns.len(),
        opened.as_secs_f64()
    );
    println!(
        "gateway RSS: {:.1} MiB before, {:.1} MiB holding them: {:.1} KiB per connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / conns.len().max(1) as f64
    );
    println!("sample still answering: {answered}/{sampled}");
    if answered != sampled {
        bail!("some held connections stopped answering");
    }
    Ok(())
}
