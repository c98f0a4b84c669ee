//! Opens connections at a fixed rate for a while (each logs in, runs one query and closes) and counts
//! successes and clean errors; anything else (hangs, resets without an error) counts as a failure.

use anyhow::Result;
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    target: strata_bench::Target,
    /// New connections per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 4)]
    sources: u8,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let ok = Arc::new(AtomicU64::new(0));
    let clean_err = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let total = a.rate * a.seconds;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / a.rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % a.sources as u64) as u8));
        let (gw, user, pw, db) = (
            a.target.gateway,
            a.target.user.clone(),
            a.target.password.clone(),
            a.target.database.clone(),
        );
        let (ok, clean_err, broken) = (ok.clone(), clean_err.clone(), broken.clone());
        tasks.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), async {
                let mut c = strata_bench::login(gw, Some(src), &user, &pw, &db).await?;
                c.query("SELECT 1").await?;
                Ok::<_, strata_gateway::backend::BackendError>(())
            })
            .await;
            match r {
                Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                Ok(Err(strata_gateway::backend::BackendError::Server(_))) => {
                    clean_err.fetch_add(1, Ordering::Relaxed)
                }
                Ok(Err(e)) => {
                    if broken.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("broken: {e}");
                    }
                    0
                }
                Err(_) => {
                    if broken.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("broken: no answer within 30 s");
                    }
                    0
                }
            };
        });
        while tasks.try_join_next().is_some() {}
    }
    let issued = start.elapsed();
    while tasks.join_next().await.is_some() {}
    println!(
        "issued {total} connections in {:.1} s ({:.0}/s); ok {}, clean errors {}, broken {}; all done after {:.1} s",
        issued.as_secs_f64(),
        total as f64 / issued.as_secs_f64(),
        ok.load(Ordering::Relaxed),
        clean_err.load(Ordering::Relaxed),
        broken.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
