//! The `strata` binary: `strata up` runs the platform; every other command is a client of its API,
//! shaped like `pscale`.

mod api_server;
mod cli;
mod client;
mod config;
mod connect;
mod output;
mod schema_cmd;
mod up;

use clap::{Parser, Subcommand};

/// mimalloc: the gateway and the HTTP SQL endpoint allocate for every statement (packets, JSON,
/// result rows), and glibc's allocator took about an eighth of the process's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use output::Format;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Self-hosted MySQL-compatible databases with branches, deploy requests and passwords"
)]
pub struct Cli {
    /// Base URL of the Strata API (default: from the CLI config written by `strata up`).
    #[arg(long, global = true, env = "STRATA_API_URL")]
    api_url: Option<String>,
    /// Service token id (the first half of `Authorization: <id>:<token>`).
    #[arg(long, global = true, env = "STRATA_SERVICE_TOKEN_ID")]
    service_token_id: Option<String>,
    /// Service token secret.
    #[arg(
        long,
        global = true,
        env = "STRATA_SERVICE_TOKEN",
        hide_env_values = true
    )]
    service_token: Option<String>,
    /// Organization to act in (default: from the CLI config).
    #[arg(long, global = true, env = "STRATA_ORG")]
    org: Option<String>,
    /// Output format.
    #[arg(
        long,
        short = 'f',
        global = true,
        value_enum,
        default_value = "human",
        env = "STRATA_FORMAT"
    )]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

// One command is parsed per process: the size of its largest variant (`up`'s flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the platform in the foreground (API, instance supervisor); Ctrl-C stops it cleanly.
    Up {
        /// Where all state lives [default: $STRATA_DATA_DIR or ~/.local/share/strata].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address of the REST API.
        #[arg(long, default_value = "127.0.0.1:7070", env = "STRATA_LISTEN")]
        listen: SocketAddr,
        /// Address of the MySQL gateway (3309 by default, so as not to clash with a local MySQL on 3306).
        #[arg(long, default_value = "127.0.0.1:3309", env = "STRATA_MYSQL_LISTEN")]
        mysql_listen: SocketAddr,
        /// Address of the HTTP SQL endpoint for serverless drivers (`@planetscale/database`): TLS with
        /// the gateway's certificate, plain HTTP from loopback unless --require-tls-on-loopback.
        #[arg(long, default_value = "127.0.0.1:3900", env = "STRATA_HTTP_LISTEN")]
        http_listen: SocketAddr,
        /// Seconds an HTTP SQL session may sit idle before it ends (an open transaction is rolled back).
        #[arg(long, default_value_t = 60)]
        http_session_idle: u64,
        /// Host clients use to reach the gateway, if not the listen address (goes into connection details
        /// and the server certificate).
        #[arg(long, env = "STRATA_MYSQL_HOST")]
        mysql_host: Option<String>,
        /// Refuse plaintext MySQL connections from loopback too (TLS is always required from elsewhere).
        #[arg(long)]
        require_tls_on_loopback: bool,
        /// Backend connections per branch, role and client profile.
        #[arg(long, default_value_t = 64)]
        pool_size: usize,
        /// Threads serving MySQL and HTTP SQL client connections, each with its own runtime
        /// (default: one per CPU).
        #[arg(long)]
        gateway_threads: Option<usize>,
        /// Rows one query may return, update or delete.
        #[arg(long, default_value_t = 100_000)]
        max_rows: u64,
        /// Bytes one query's result may hold.
        #[arg(long, default_value_t = 64 << 20)]
        max_result_bytes: u64,
        /// Seconds a transaction may stay open.
        #[arg(long, default_value_t = 20)]
        transaction_timeout: u64,
        /// Do not share results between identical read-only queries in flight at the same moment.
        #[arg(long)]
        no_consolidation: bool,
        /// Seconds a client has to log in (TLS and the MySQL handshake; an HTTP request's headers).
        #[arg(long, default_value_t = 10)]
        login_timeout: u64,
        /// Connections still logging in, in all (per listener) and per source address; past either,
        /// new connections are turned away (MySQL's `1040 Too many connections`).
        #[arg(long, default_value_t = 1024)]
        max_logins: usize,
        #[arg(long, default_value_t = 64)]
        max_logins_per_address: usize,
        /// Client connections open on the gateway (MySQL and HTTP SQL), in all; past it, `1040 Too
        /// many connections`. Default: four fifths of the process's open-files limit (the rest is
        /// kept for backend connections and the REST API).
        #[arg(long)]
        max_connections: Option<usize>,
        /// Logged-in MySQL sessions of one password; past it, `1203`. Default: a quarter of
        /// `--max-connections`.
        #[arg(long)]
        max_connections_per_password: Option<usize>,
        /// Seconds an autocommit query may run.
        #[arg(long, default_value_t = 900)]
        query_timeout: u64,
        /// Seconds after a deploy's cut-over during which it can be reverted.
        #[arg(long, env = "STRATA_REVERT_WINDOW", default_value_t = 1800)]
        revert_window: u64,
        /// Seconds a deploy waits for long-running transactions to leave its tables before its
        /// cut-over ends them (a database's aggressive cut-over setting does so at once).
        #[arg(long, env = "STRATA_FORCE_CUTOVER_AFTER", default_value_t = 3600)]
        force_cutover_after: u64,
        /// Name of the organization created on first start.
        #[arg(long = "initial-org", default_value = "default")]
        initial_org: String,
        /// Directory of backups (default: `backups` in the data directory; keep it on the same
        /// file system as the data directory for copy-on-write restores). With --backup-s3-bucket
        /// it only stages backups being taken.
        #[arg(long, env = "STRATA_BACKUP_DIR")]
        backup_dir: Option<PathBuf>,
        /// Store backups in this S3-compatible bucket (credentials from AWS_ACCESS_KEY_ID and
        /// AWS_SECRET_ACCESS_KEY).
        #[arg(long, env = "STRATA_BACKUP_S3_BUCKET")]
        backup_s3_bucket: Option<String>,
        /// Endpoint of an S3-compatible service (MinIO, Ceph, R2); AWS when omitted.
        #[arg(long, env = "STRATA_BACKUP_S3_ENDPOINT", requires = "backup_s3_bucket")]
        backup_s3_endpoint: Option<String>,
        #[arg(long, env = "STRATA_BACKUP_S3_REGION", default_value = "us-east-1")]
        backup_s3_region: String,
        /// Key prefix of backups in the bucket.
        #[arg(long, env = "STRATA_BACKUP_S3_PREFIX", default_value = "strata")]
        backup_s3_prefix: String,
    },
    /// Create, list, show and delete databases.
    #[command(subcommand, alias = "db")]
    Database(cli::DatabaseCmd),
    /// Create, list, show, delete, promote and demote branches.
    #[command(subcommand)]
    Branch(cli::BranchCmd),
    /// Create, list, show, delete and restore branch backups.
    #[command(subcommand)]
    Backup(cli::BackupCmd),
    /// Create, list, show, renew and delete branch passwords.
    #[command(subcommand)]
    Password(cli::PasswordCmd),
    /// List and show organizations.
    #[command(subcommand)]
    Org(cli::OrgCmd),
    /// Open, list, show, review and close deploy requests.
    #[command(subcommand, name = "deploy-request", alias = "dr")]
    DeployRequest(cli::DeployRequestCmd),
    /// Open an interactive SQL shell on a branch (the installed mariadb/mysql client, through the gateway).
    Shell {
        database: String,
        branch: String,
        /// Role of the temporary password.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Open a local port that tunnels to a branch through the gateway over TLS.
    Connect {
        database: String,
        branch: String,
        /// Local port (0: any free port).
        #[arg(long, default_value_t = 3306)]
        port: u16,
        /// Local address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Role of the temporary password.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Schema as code, offline.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// Create, list and delete service tokens.
    #[command(subcommand, name = "service-token")]
    ServiceToken(cli::ServiceTokenCmd),
}

#[derive(Subcommand)]
enum SchemaCmd {
    /// Print the statements that take the schema in FROM (a file of CREATE TABLE / CREATE VIEW
    /// statements) to the schema in TO; nothing when they are the same. Uses a scratch instance.
    Diff { from: PathBuf, to: PathBuf },
}

/// Help and version go out as clap prints them; a usage error too, unless JSON output was asked
/// for (`--format json`, `-f json`, `STRATA_FORMAT=json`): then it is a JSON object on stderr,
/// as every other error of the command is.
fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .windows(2)
        .any(|w| (w[0] == "--format" || w[0] == "-f") && w[1] == "json")
        || args.iter().any(|a| a == "--format=json" || a == "-fjson")
        || std::env::var("STRATA_FORMAT").is_ok_and(|v| v == "json");
    if !json {
        e.exit();
    }
    let msg = e.render().to_string();
    // The message is what comes before the usage lines, on one line.
    let head = msg.split("\n\nUsage:").next().unwrap_or_default();
    let head = head.strip_prefix("error: ").unwrap_or(head);
    let error = head.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!(
        "{}",
        serde_json::json!({ "error": error, "usage": msg.trim_end() })
    );
    std::process::ExitCode::from(2)
}

fn main() -> std::process::ExitCode {
    // One TLS implementation for every client in the process (the API client, S3 storage, the
    // gateway's connections): rustls with ring, installed before any of them is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let format = cli.format;
    if !matches!(
        cli.command,
        Command::Up { .. } | Command::Connect { .. } | Command::Shell { .. }
    ) {
        // A one-shot command piped into `head` ends quietly, as other Unix tools do, instead of
        // panicking on the closed pipe; servers and tunnels keep ignoring SIGPIPE (their peers
        // going away is an error to handle, not the end of the process).
        // SAFETY: set before any thread is started; SIG_DFL is a valid disposition.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        if let Command::Up {
            data_dir,
            listen,
            mysql_listen,
            http_listen,
            http_session_idle,
            mysql_host,
            require_tls_on_loopback,
            pool_size,
            gateway_threads,
            max_rows,
            max_result_bytes,
            transaction_timeout,
            query_timeout,
            no_consolidation,
            login_timeout,
            max_logins,
            max_logins_per_address,
            max_connections,
            max_connections_per_password,
            revert_window,
            force_cutover_after,
            initial_org,
            backup_dir,
            backup_s3_bucket,
            backup_s3_endpoint,
            backup_s3_region,
            backup_s3_prefix,
        } = cli.command
        {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            return up::run(up::UpArgs {
                data_dir: data_dir.unwrap_or_else(config::default_data_dir),
                listen,
                mysql_listen,
                http_listen,
                http_session_idle: std::time::Duration::from_secs(http_session_idle),
                mysql_host,
                gateway: strata_gateway::GatewayConfig {
                    allow_plaintext_loopback: !require_tls_on_loopback,
                    pool_size,
                    threads: gateway_threads.unwrap_or(0),
                    limits: strata_gateway::Limits {
                        max_rows,
                        max_result_bytes,
                        transaction_timeout: std::time::Duration::from_secs(transaction_timeout),
                        query_timeout: std::time::Duration::from_secs(query_timeout),
                    },
                    consolidate: !no_consolidation,
                    login_timeout: std::time::Duration::from_secs(login_timeout.max(1)),
                    prelogin_max: max_logins,
                    prelogin_per_address: max_logins_per_address,
                    // 0: derived from the open-files limit once `strata up` has raised it.
                    max_clients: max_connections.unwrap_or(0),
                    max_clients_per_password: max_connections_per_password.unwrap_or(0),
                    ..Default::default()
                },
                org: initial_org,
                revert_window: std::time::Duration::from_secs(revert_window),
                force_cutover_after: std::time::Duration::from_secs(force_cutover_after),
                backup_dir,
                backup_s3: backup_s3_bucket.map(|bucket| strata_engine::backup::S3Settings {
                    bucket,
                    prefix: backup_s3_prefix,
                    allow_http: backup_s3_endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                    endpoint: backup_s3_endpoint,
                    region: backup_s3_region,
                }),
            })
            .await;
        }
        if let Command::Schema(SchemaCmd::Diff { from, to }) = &cli.command {
            return schema_cmd::diff(from, to).await;
        }
        let ctx = cli::Ctx::new(
            cli.api_url,
            cli.service_token_id,
            cli.service_token,
            cli.org,
            cli.format,
        )?;
        match cli.command {
            Command::Up { .. } | Command::Schema(_) => Ok(()),
            Command::Database(c) => cli::run_database(&ctx, c).await,
            Command::Branch(c) => cli::run_branch(&ctx, c).await,
            Command::Password(c) => cli::run_password(&ctx, c).await,
            Command::Backup(c) => cli::run_backup(&ctx, c).await,
            Command::Org(c) => cli::run_org(&ctx, c).await,
            Command::ServiceToken(c) => cli::run_service_token(&ctx, c).await,
            Command::DeployRequest(c) => cli::run_deploy_request(&ctx, c).await,
            Command::Shell {
                database,
                branch,
                role,
            } => connect::shell(std::sync::Arc::new(ctx), &database, &branch, &role).await,
            Command::Connect {
                database,
                branch,
                port,
                host,
                role,
            } => {
                connect::connect(
                    std::sync::Arc::new(ctx),
                    &database,
                    &branch,
                    &role,
                    std::net::SocketAddr::new(host, port),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            // As pscale: in JSON mode the error is a JSON object, on stderr like every error.
            if format == Format::Json {
                eprintln!("{}", serde_json::json!({ "error": msg }));
            } else {
                eprintln!("Error: {}", output::visible(&msg));
            }
            std::process::ExitCode::FAILURE
        }
    }
}
