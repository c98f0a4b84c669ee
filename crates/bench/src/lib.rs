//! Shared pieces of the load generators.

use std::net::{IpAddr, SocketAddr};

/// Where the load goes: the gateway and a password for the benchmark database.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    #[arg(long)]
    pub gateway: SocketAddr,
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub password: String,
    #[arg(long, default_value = "bench")]
    pub database: String,
}
use strata_gateway::backend::{Backend, BackendError};

/// Logs in to the gateway from `source` (a loopback address, so many connections can share a port).
pub async fn login(
    gateway: SocketAddr,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Backend, BackendError> {
    Backend::connect_from(
        gateway,
        source,
        user,
        password,
        db,
        strata_gateway::backend::CLIENT_PROFILE,
        45,
    )
    .await
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
