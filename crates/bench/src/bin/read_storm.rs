//! N clients run the same read-only query in a loop for a while (a hot-row read storm); reports
//! queries per second and whether every answer was the expected one.

use anyhow::{bail, Result};
use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    target: strata_bench::Target,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long)]
    query: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..a.clients {
        let (gw, user, pw, db, q) = (
            a.target.gateway,
            a.target.user.clone(),
            a.target.password.clone(),
            a.target.database.clone(),
            a.query.clone(),
        );
        let (done, failed) = (done.clone(), failed.clone());
        set.spawn(async move {
            let Ok(mut c) = strata_bench::login(gw, None, &user, &pw, &db).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            while Instant::now() < deadline {
                match c.query(&q).await {
                    Ok(t) if t.rows == 1 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while set.join_next().await.is_some() {}
    let n = done.load(Ordering::Relaxed);
    println!(
        "{} clients, {} s: {} queries, {:.0} q/s, {} failed",
        a.clients,
        a.seconds,
        n,
        n as f64 / a.seconds as f64,
        failed.load(Ordering::Relaxed)
    );
    if failed.load(Ordering::Relaxed) > 0 {
        bail!("some queries failed");
    }
    Ok(())
}
