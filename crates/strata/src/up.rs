//! `strata up`: the platform in the foreground. All state lives under one data directory; SIGINT or
//! SIGTERM stops the API, then every instance cleanly, and the process exits.

use crate::config::{config_path, CliConfig};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_catalog::SqliteCatalog;
use strata_control::{Platform, Settings};
use strata_engine::ServerBinaries;

pub struct UpArgs {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub mysql_host: String,
    pub mysql_port: u16,
    pub org: String,
}

/// Holds an exclusive lock on the data directory for as long as it lives.
fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("strata.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another `strata up` is already running on data directory {}",
            dir.display()
        )
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub async fn run(args: UpArgs) -> Result<()> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    }
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("bad data directory {}", args.data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    let binaries = ServerBinaries::detect().context("cannot find a database server")?;
    tracing::info!(server = %binaries.describe(), data_dir = %data_dir.display(), "starting");
    let catalog = Arc::new(
        SqliteCatalog::open(&data_dir.join("catalog.db")).context("cannot open the catalog")?,
    );
    let settings = Settings {
        data_dir: data_dir.clone(),
        mysql_host: args.mysql_host.clone(),
        mysql_port: args.mysql_port,
    };
    let platform = Platform::open(catalog, binaries, settings)
        .await
        .context("cannot prepare the platform")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let api_url = format!("http://{addr}");

    // The CLI config: written on first start; its API address kept current on later starts.
    let cli_copy = data_dir.join("cli-config.toml");
    let user_config = config_path();
    if let Some(boot) = platform.bootstrap(&args.org)? {
        let cfg = CliConfig {
            api_url: Some(api_url.clone()),
            org: Some(boot.organization.name.clone()),
            service_token_id: Some(boot.token.token.id.clone()),
            service_token: Some(boot.token.plaintext.clone()),
        };
        cfg.save(&cli_copy)?;
        cfg.save(&user_config)?;
        println!(
            "Created organization '{}' and an admin service token.",
            boot.organization.name
        );
    } else {
        let mut ours = CliConfig::load(&cli_copy).unwrap_or_default();
        if ours.service_token_id.is_some() && ours.api_url.as_deref() != Some(api_url.as_str()) {
            ours.api_url = Some(api_url.clone());
            ours.save(&cli_copy)?;
        }
        let mut user = CliConfig::load(&user_config).unwrap_or_default();
        if ours.service_token_id.is_some()
            && (user.service_token_id == ours.service_token_id || user.service_token_id.is_none())
            && user != ours
        {
            user = ours.clone();
            user.save(&user_config)?;
        }
    }

    platform
        .resume()
        .await
        .context("cannot bring back branches")?;

    println!("Strata is up.");
    println!("  API:         {api_url}  (OpenAPI: {api_url}/v1/openapi.json)");
    println!("  Data:        {}", data_dir.display());
    println!("  Server:      {}", platform.server_description());
    println!("  CLI config:  {}", user_config.display());
    println!("Press Ctrl-C to stop.");

    let app = strata_api::router(strata_api::AppState {
        platform: platform.clone(),
        api_url: api_url.clone(),
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    println!("Stopping: waiting for instances to shut down cleanly…");
    platform.shutdown().await;
    println!("Stopped.");
    if let Err(e) = served {
        bail!("the API server failed: {e}");
    }
    Ok(())
}
