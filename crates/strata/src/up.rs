//! `strata up`: the platform in the foreground. All state lives under one data directory; SIGINT or
//! SIGTERM stops the API, then every instance cleanly, and the process exits.

use crate::config::{config_path, CliConfig};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_catalog::SqliteCatalog;
use strata_control::{Platform, Settings};
use strata_engine::ServerBinaries;

pub struct UpArgs {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub mysql_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub http_session_idle: std::time::Duration,
    /// Host clients use to reach the gateway, when it differs from the listen address.
    pub mysql_host: Option<String>,
    pub gateway: strata_gateway::GatewayConfig,
    pub org: String,
    pub revert_window: std::time::Duration,
    pub force_cutover_after: std::time::Duration,
    pub backup_dir: Option<PathBuf>,
    pub backup_s3: Option<strata_engine::backup::S3Settings>,
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

/// Every client connection, backend connection and instance file is a descriptor of this process
/// (or its servers): the soft limit (often 1024) is raised to the hard one, so the bounds the
/// gateway keeps on connections are what limits them, not the kernel's default.
/// Returns the limit in force.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
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
    let descriptors = raise_descriptor_limit();
    let mut args = args;
    if args.gateway.max_clients == 0 {
        args.gateway.max_clients = strata_gateway::clients::max_for_descriptors(descriptors);
    }
    if args.gateway.max_clients_per_password == 0 {
        args.gateway.max_clients_per_password = (args.gateway.max_clients / 4).max(1);
    }
    tracing::info!(
        descriptors,
        max_connections = args.gateway.max_clients,
        per_password = args.gateway.max_clients_per_password,
        "client connection bounds"
    );
    let binaries = ServerBinaries::detect().context("cannot find a database server")?;
    tracing::info!(server = %binaries.describe(), data_dir = %data_dir.display(), "starting");
    let catalog = Arc::new(
        SqliteCatalog::open(&data_dir.join("catalog.db")).context("cannot open the catalog")?,
    );
    let mysql_listener = strata_gateway::listen(args.mysql_listen).with_context(|| {
        format!(
            "cannot listen for MySQL clients on {} (pass --mysql-listen to choose another address)",
            args.mysql_listen
        )
    })?;
    let mysql_addr = mysql_listener.local_addr()?;
    let http_listener = strata_gateway::listen(args.http_listen).with_context(|| {
        format!(
            "cannot listen for HTTP SQL clients on {} (pass --http-listen to choose another address)",
            args.http_listen
        )
    })?;
    let http_addr = http_listener.local_addr()?;
    let mysql_host = args.mysql_host.clone().unwrap_or_else(|| {
        if mysql_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            mysql_addr.ip().to_string()
        }
    });
    let server_version = binaries.version.clone();
    let settings = Settings {
        data_dir: data_dir.clone(),
        mysql_host: mysql_host.clone(),
        mysql_port: mysql_addr.port(),
        http_port: http_addr.port(),
        revert_window: args.revert_window,
        force_cutover_after: args.force_cutover_after,
        backup_dir: args
            .backup_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("backups")),
        backup_s3: args.backup_s3.clone(),
    };
    let platform = Platform::open(catalog, binaries, settings)
        .await
        .context("cannot prepare the platform")?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !names.contains(&mysql_host) {
        names.push(mysql_host.clone());
    }
    let tls = strata_gateway::tls::ensure(&data_dir.join("tls"), &names)
        .context("cannot prepare TLS certificates")?;

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
            mysql_ca: Some(tls.ca_path.display().to_string()),
        };
        cfg.save(&cli_copy)?;
        cfg.save(&user_config)?;
        println!(
            "Created organization '{}' and an admin service token.",
            boot.organization.name
        );
    } else {
        let mut ours = CliConfig::load(&cli_copy).unwrap_or_default();
        let ca = Some(tls.ca_path.display().to_string());
        if ours.service_token_id.is_some()
            && (ours.api_url.as_deref() != Some(api_url.as_str()) || ours.mysql_ca != ca)
        {
            ours.api_url = Some(api_url.clone());
            ours.mysql_ca = ca;
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

    let gateway = strata_gateway::Gateway::new(
        platform.clone(),
        args.gateway.clone(),
        Some(tls.server_config.clone()),
        &format!("{server_version}-MariaDB"),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut gw_stop = stop_rx.clone();
    let gw_task = tokio::spawn(gateway.clone().serve(mysql_listener, async move {
        let _ = gw_stop.wait_for(|v| *v).await;
    }));
    // Session tokens are signed with a key kept in the data directory, so they survive a restart.
    let session_key = strata_gateway::tls::session_key(&data_dir.join("tls"))
        .context("cannot prepare the HTTP session key")?;
    let http =
        strata_gateway::http::HttpSql::new(gateway.clone(), &session_key, args.http_session_idle);
    let mut http_stop = stop_rx.clone();
    let http_task =
        tokio::spawn(
            http.serve(http_listener, Some(tls.server_config.clone()), async move {
                let _ = http_stop.wait_for(|v| *v).await;
            }),
        );

    println!("Strata is up.");
    println!("  API:         {api_url}  (OpenAPI: {api_url}/v1/openapi.json)");
    println!(
        "  MySQL:       {mysql_host}:{}  (TLS CA: {})",
        mysql_addr.port(),
        tls.ca_path.display()
    );
    println!(
        "  HTTP SQL:    https://{mysql_host}:{}  (serverless drivers; same passwords and CA)",
        http_addr.port()
    );
    println!("  Data:        {}", data_dir.display());
    println!("  Server:      {}", platform.server_description());
    println!("  CLI config:  {}", user_config.display());
    println!("Press Ctrl-C to stop.");

    let app = strata_api::router(strata_api::AppState {
        platform: platform.clone(),
        api_url: api_url.clone(),
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut api_stop = stop_rx.clone();
    let admission = strata_gateway::admission::Admission::new(
        args.gateway.prelogin_max,
        args.gateway.prelogin_per_address,
    );
    crate::api_server::serve(
        listener,
        app,
        args.gateway.login_timeout,
        admission,
        async move {
            let _ = api_stop.wait_for(|v| *v).await;
        },
    )
    .await;
    let _ = gw_task.await;
    let _ = http_task.await;
    println!("Stopping: waiting for instances to shut down cleanly…");
    platform.shutdown().await;
    println!("Stopped.");
    Ok(())
}
