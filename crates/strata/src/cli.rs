//! The client commands, shaped like `pscale`'s: `strata database|branch|password|org|service-token …`.

use crate::client::Client;
use crate::config::{config_path, CliConfig};
use crate::output::{self, Column, Format};
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Ctx {
    pub client: Client,
    pub org: String,
    pub format: Format,
    /// The CA of the gateway's certificate, when known (`STRATA_MYSQL_CA` or the CLI config).
    pub mysql_ca: Option<std::path::PathBuf>,
}

impl Ctx {
    /// Flags and `STRATA_*` variables win over the config file written by `strata up`.
    pub fn new(
        api_url: Option<String>,
        token_id: Option<String>,
        token: Option<String>,
        org: Option<String>,
        format: Format,
    ) -> Result<Ctx> {
        let path = config_path();
        let file = CliConfig::load(&path)?;
        let api_url = api_url
            .or(file.api_url)
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let (token_id, token) = match (token_id, token) {
            (Some(i), Some(t)) => (i, t),
            (Some(_), None) | (None, Some(_)) => {
                bail!("--service-token-id and --service-token must be given together")
            }
            (None, None) => match (file.service_token_id, file.service_token) {
                (Some(i), Some(t)) => (i, t),
                _ => bail!(
                    "no service token: run `strata up` once on this machine (it writes {}), or pass --service-token-id and --service-token",
                    path.display()
                ),
            },
        };
        let org = org
            .or(file.org)
            .ok_or_else(|| anyhow!("no organization: pass --org or set STRATA_ORG"))?;
        let mysql_ca = std::env::var_os("STRATA_MYSQL_CA")
            .map(Into::into)
            .or(file.mysql_ca.map(Into::into));
        Ok(Ctx {
            client: Client::new(&api_url, &token_id, &token)?,
            org,
            format,
            mysql_ca,
        })
    }

    pub fn org_path(&self, rest: &str) -> String {
        format!("organizations/{}/{}", self.org, rest)
    }

    fn show(&self, columns: &[Column], v: &Value) {
        println!(
            "{}",
            output::render(self.format, columns, std::slice::from_ref(v), false)
        );
    }

    fn show_list(&self, columns: &[Column], items: &[Value]) {
        println!("{}", output::render(self.format, columns, items, true));
    }

    /// Reports a deletion: a sentence for people, `{"deleted": name}` for JSON and CSV.
    fn deleted(&self, what: &str, name: &str) {
        if self.format == Format::Human {
            println!("{what} '{name}' was deleted.");
        } else {
            println!("{}", json!({ "deleted": name }));
        }
    }

    /// Prints PlanetScale's `{data: [{name, raw}]}` schema listings: statements for people,
    /// the entries for JSON and CSV.
    fn show_statements(&self, v: &Value, empty: &str, headed: bool) -> Result<()> {
        let items = v
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&Value::Array(items))?),
            Format::Csv => self.show_list(&[("NAME", "/name"), ("RAW", "/raw")], &items),
            Format::Human if items.is_empty() => {
                if !empty.is_empty() {
                    println!("{empty}");
                }
            }
            Format::Human => {
                for o in &items {
                    let raw =
                        output::visible(o.get("raw").and_then(Value::as_str).unwrap_or_default());
                    if headed {
                        let name = output::visible(
                            o.get("name").and_then(Value::as_str).unwrap_or_default(),
                        );
                        println!("-- `{name}`\n{raw}\n");
                    } else {
                        println!("{raw};\n");
                    }
                }
            }
        }
        Ok(())
    }

    fn say(&self, text: &str) {
        if self.format == Format::Human {
            println!("{}", output::visible(text));
        }
    }

    /// Destructive commands ask the user to type the name, unless `--force`.
    fn confirm(&self, what: &str, name: &str, force: bool) -> Result<()> {
        if force {
            return Ok(());
        }
        if self.format != Format::Human || !std::io::stdin().is_terminal() {
            bail!("cannot delete {what} '{name}' without confirmation in a non-interactive session (run with --force)");
        }
        print!("To delete {what} '{name}', type its name to confirm: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != name {
            bail!("the name did not match; nothing was deleted");
        }
        Ok(())
    }
}

/// Polls a branch until it is ready (or failed), showing progress in human mode.
async fn wait_ready(ctx: &Ctx, db: &str, branch: &str) -> Result<Value> {
    let path = ctx.org_path(&format!("databases/{db}/branches/{branch}"));
    let start = Instant::now();
    let human = ctx.format == Format::Human && std::io::stderr().is_terminal();
    loop {
        let b = ctx.client.get(&path).await?;
        if b.get("ready").and_then(Value::as_bool) == Some(true) {
            if human {
                eprintln!(
                    "\rBranch '{branch}' is ready ({:.1} s).          ",
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(b);
        }
        if b.get("state").and_then(Value::as_str) == Some("failed") {
            let why = b
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown reason");
            bail!("branch '{branch}' failed to provision: {why}");
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("branch '{branch}' was not ready after 10 minutes");
        }
        if human {
            eprint!(
                "\rWaiting for branch '{branch}' to be ready… {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ database

#[derive(Subcommand)]
pub enum DatabaseCmd {
    /// Create a database with its `main` production branch.
    Create {
        database: String,
        /// Region (Strata has one: local).
        #[arg(long)]
        region: Option<String>,
        /// Wait until the database's main branch is ready.
        #[arg(long)]
        wait: bool,
    },
    /// List databases.
    #[command(alias = "ls")]
    List,
    /// Show a database.
    Show { database: String },
    /// Delete a database, its branches and passwords.
    #[command(alias = "rm")]
    Delete {
        database: String,
        #[arg(long)]
        force: bool,
    },
    /// Show or set the database's deploy throttle, 0 (no throttling) to 95: every deployment
    /// queued from now on starts with it.
    Throttle {
        database: String,
        ratio: Option<i64>,
    },
    /// Change a database's settings.
    Update {
        database: String,
        /// Allow foreign key constraints in the database's schema.
        #[arg(long, value_name = "BOOL")]
        allow_foreign_keys: Option<bool>,
        /// Copy the migration table's rows from the deployed branch with each deploy.
        #[arg(long, value_name = "BOOL")]
        automatic_migrations: Option<bool>,
        /// rails, phoenix, laravel, django, dotnet, sequelize or other ("" to clear).
        #[arg(long)]
        migration_framework: Option<String>,
        /// The migration table (for `other`, e.g. alembic_version; "" to clear).
        #[arg(long)]
        migration_table_name: Option<String>,
        /// Require an administrator's approval before a deploy request is deployed.
        #[arg(long, value_name = "BOOL")]
        require_approval: Option<bool>,
        /// Refuse to delete the database while on.
        #[arg(long, value_name = "BOOL")]
        deletion_protected: Option<bool>,
        /// The branch new branches start from by default.
        #[arg(long)]
        default_branch: Option<String>,
        /// Cut-overs end the queries and transactions in their way at once instead of waiting
        /// for them (they are forced anyway after `strata up --force-cutover-after`).
        #[arg(long, value_name = "BOOL")]
        aggressive_cutover: Option<bool>,
    },
}

pub async fn run_database(ctx: &Ctx, cmd: DatabaseCmd) -> Result<()> {
    match cmd {
        DatabaseCmd::Create {
            database,
            region,
            wait,
        } => {
            let mut body = json!({ "name": database });
            if let Some(r) = region {
                body["region"] = json!(r);
            }
            let mut v = ctx
                .client
                .send(Method::POST, &ctx.org_path("databases"), body)
                .await?;
            if wait {
                wait_ready(ctx, &database, "main").await?;
                v = ctx
                    .client
                    .get(&ctx.org_path(&format!("databases/{database}")))
                    .await?;
            }
            ctx.say(&format!(
                "Database '{database}' was created in organization '{}'.",
                ctx.org
            ));
            ctx.show(output::DATABASE, &v);
        }
        DatabaseCmd::List => {
            let items = ctx.client.list(&ctx.org_path("databases")).await?;
            ctx.show_list(output::DATABASE, &items);
        }
        DatabaseCmd::Show { database } => {
            let v = ctx
                .client
                .get(&ctx.org_path(&format!("databases/{database}")))
                .await?;
            ctx.show(output::DATABASE, &v);
        }
        DatabaseCmd::Delete { database, force } => {
            ctx.client
                .get(&ctx.org_path(&format!("databases/{database}")))
                .await?;
            ctx.confirm("database", &database, force)?;
            ctx.client
                .delete(&ctx.org_path(&format!("databases/{database}")))
                .await?;
            ctx.deleted("Database", &database);
        }
        DatabaseCmd::Update {
            database,
            allow_foreign_keys,
            automatic_migrations,
            migration_framework,
            migration_table_name,
            require_approval,
            deletion_protected,
            default_branch,
            aggressive_cutover,
        } => {
            let mut body = serde_json::Map::new();
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.to_string(), v);
                }
            };
            set(
                "allow_foreign_key_constraints",
                allow_foreign_keys.map(Value::from),
            );
            set(
                "automatic_migrations",
                automatic_migrations.map(Value::from),
            );
            set("aggressive_cutover", aggressive_cutover.map(Value::from));
            set("migration_framework", migration_framework.map(Value::from));
            set(
                "migration_table_name",
                migration_table_name.map(Value::from),
            );
            set(
                "require_approval_for_deploy",
                require_approval.map(Value::from),
            );
            set("deletion_protected", deletion_protected.map(Value::from));
            set("default_branch", default_branch.map(Value::from));
            if body.is_empty() {
                bail!("nothing to change: give at least one setting (see --help)");
            }
            let v = ctx
                .client
                .send(
                    Method::PATCH,
                    &ctx.org_path(&format!("databases/{database}")),
                    Value::Object(body),
                )
                .await?;
            ctx.say(&format!("Database '{database}' was updated."));
            ctx.show(output::DATABASE_SETTINGS, &v);
        }
        DatabaseCmd::Throttle { database, ratio } => {
            let path = ctx.org_path(&format!("databases/{database}/throttler"));
            throttle(ctx, &path, ratio, &format!("Deploys of '{database}' are")).await?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ branch

#[derive(Subcommand)]
pub enum SafeMigrationsCmd {
    /// Turn safe migrations on: direct DDL is refused; schema changes go through deploy requests.
    Enable { database: String, branch: String },
    /// Turn safe migrations off.
    Disable { database: String, branch: String },
}

#[derive(Subcommand)]
pub enum BranchCmd {
    /// Create a branch with its parent's schema (and, with --seed-data or --restore, data).
    Create {
        database: String,
        branch: String,
        /// Parent branch (default: the database's default branch).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// Start with the parent's data: `current` (a snapshot as of now, the default) or
        /// `last-backup` (its latest successful backup).
        #[arg(long, num_args = 0..=1, default_missing_value = "current", value_parser = ["current", "last-backup"])]
        seed_data: Option<String>,
        /// Restore this backup into the new branch.
        #[arg(long, conflicts_with = "seed_data")]
        restore: Option<String>,
        /// Wait until the branch is ready.
        #[arg(long)]
        wait: bool,
    },
    /// List the branches of a database.
    #[command(alias = "ls")]
    List { database: String },
    /// Show a branch.
    Show { database: String, branch: String },
    /// Delete a branch.
    #[command(alias = "rm")]
    Delete {
        database: String,
        branch: String,
        #[arg(long)]
        force: bool,
        /// Also delete the branches made from it.
        #[arg(long)]
        delete_descendants: bool,
    },
    /// Show a branch's schema: the CREATE statement of every table and view.
    Schema { database: String, branch: String },
    /// Show what a branch changed against its parent, per table and view.
    Diff { database: String, branch: String },
    /// Check a branch's schema and changes for what would stop or endanger a deploy.
    Lint { database: String, branch: String },
    /// Take the parent's schema changes made since this branch was created (when nothing conflicts).
    Rebase { database: String, branch: String },
    /// Promote a branch to production.
    Promote { database: String, branch: String },
    /// Demote a production branch to development.
    Demote { database: String, branch: String },
    /// Enable or disable safe migrations on a branch.
    #[command(subcommand, name = "safe-migrations")]
    SafeMigrations(SafeMigrationsCmd),
}

/// `POST …/branches` with `body`; with `wait`, until the branch is ready.
async fn post_branch(
    ctx: &Ctx,
    database: &str,
    branch: &str,
    body: Value,
    wait: bool,
) -> Result<Value> {
    let v = ctx
        .client
        .send(
            Method::POST,
            &ctx.org_path(&format!("databases/{database}/branches")),
            body,
        )
        .await?;
    if wait {
        return wait_ready(ctx, database, branch).await;
    }
    Ok(v)
}

pub async fn run_branch(ctx: &Ctx, cmd: BranchCmd) -> Result<()> {
    let path = |db: &str, b: &str| ctx.org_path(&format!("databases/{db}/branches/{b}"));
    match cmd {
        BranchCmd::Create {
            database,
            branch,
            from,
            region,
            seed_data,
            restore,
            wait,
        } => {
            let mut body = json!({ "name": branch });
            if let Some(f) = from {
                body["parent_branch"] = json!(f);
            }
            match seed_data.as_deref() {
                Some("last-backup") => body["seed_data"] = json!("last_successful_backup"),
                Some(_) => body["seed_data"] = json!("current"),
                None => {}
            }
            if let Some(id) = restore {
                body["backup_id"] = json!(id);
            }
            if let Some(r) = region {
                body["region"] = json!(r);
            }
            let v = post_branch(ctx, &database, &branch, body, wait).await?;
            ctx.say(&format!(
                "Branch '{branch}' was created in database '{database}'."
            ));
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::List { database } => {
            let items = ctx
                .client
                .list(&ctx.org_path(&format!("databases/{database}/branches")))
                .await?;
            ctx.show_list(output::BRANCH, &items);
        }
        BranchCmd::Show { database, branch } => {
            let v = ctx.client.get(&path(&database, &branch)).await?;
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::Delete {
            database,
            branch,
            force,
            delete_descendants,
        } => {
            ctx.client.get(&path(&database, &branch)).await?;
            ctx.confirm("branch", &branch, force)?;
            let mut p = path(&database, &branch);
            if delete_descendants {
                p.push_str("?delete_descendants=true");
            }
            ctx.client.delete(&p).await?;
            ctx.deleted("Branch", &branch);
        }
        BranchCmd::Schema { database, branch } => {
            let v = ctx
                .client
                .get(&format!("{}/schema", path(&database, &branch)))
                .await?;
            ctx.show_statements(&v, "", false)?;
        }
        BranchCmd::Diff { database, branch } => {
            let v = ctx
                .client
                .get(&format!("{}/diff", path(&database, &branch)))
                .await?;
            ctx.show_statements(&v, "No changes against the parent branch.", true)?;
        }
        BranchCmd::Rebase { database, branch } => {
            let v = ctx
                .client
                .post(&format!("{}/rebase", path(&database, &branch)))
                .await?;
            ctx.say(&format!(
                "Branch '{branch}' now has its parent's latest schema changes."
            ));
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::Lint { database, branch } => {
            let items = ctx
                .client
                .list(&format!("{}/schema/lint", path(&database, &branch)))
                .await?;
            if ctx.format == Format::Human && items.is_empty() {
                println!("No lint findings.");
            } else {
                let cols: &[Column] = &[
                    ("SEVERITY", "/severity"),
                    ("ERROR", "/lint_error"),
                    ("TABLE", "/table_name"),
                    ("COLUMN", "/column_name"),
                    ("DESCRIPTION", "/error_description"),
                ];
                ctx.show_list(cols, &items);
            }
        }
        BranchCmd::Promote { database, branch } => {
            let v = ctx
                .client
                .post(&format!("{}/promote", path(&database, &branch)))
                .await?;
            ctx.say(&format!("Branch '{branch}' is now a production branch."));
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::Demote { database, branch } => {
            let v = ctx
                .client
                .post(&format!("{}/demote", path(&database, &branch)))
                .await?;
            ctx.say(&format!("Branch '{branch}' is now a development branch."));
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::SafeMigrations(SafeMigrationsCmd::Enable { database, branch }) => {
            let v = ctx
                .client
                .post(&format!("{}/safe-migrations", path(&database, &branch)))
                .await?;
            ctx.say(&format!(
                "Safe migrations are enabled on branch '{branch}'."
            ));
            ctx.show(output::BRANCH, &v);
        }
        BranchCmd::SafeMigrations(SafeMigrationsCmd::Disable { database, branch }) => {
            let v = ctx
                .client
                .call(
                    Method::DELETE,
                    &format!("{}/safe-migrations", path(&database, &branch)),
                    None,
                )
                .await?
                .unwrap_or(Value::Null);
            ctx.say(&format!(
                "Safe migrations are disabled on branch '{branch}'."
            ));
            ctx.show(output::BRANCH, &v);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ password

#[derive(Subcommand)]
pub enum PasswordCmd {
    /// Create a password for a branch; the plaintext is shown once.
    Create {
        database: String,
        branch: String,
        name: String,
        /// reader, writer, readwriter or admin.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Time to live, in seconds (0: never expires); also accepts 30m, 12h, 7d.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List the passwords of a database, or of one branch.
    #[command(alias = "ls")]
    List {
        database: String,
        branch: Option<String>,
    },
    /// Show a password (never its plaintext).
    Show {
        database: String,
        branch: String,
        id: String,
    },
    /// Delete a password.
    #[command(alias = "rm")]
    Delete {
        database: String,
        branch: String,
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Extend a password with a TTL by another TTL from now.
    Renew {
        database: String,
        branch: String,
        id: String,
    },
}

/// Parses a TTL: plain seconds, or a number with s, m, h or d.
pub fn parse_ttl(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow!("invalid TTL '{s}': use seconds, or a number with s, m, h or d"))?;
    if n < 0 {
        bail!("invalid TTL '{s}': it cannot be negative");
    }
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("invalid TTL '{s}': too large"))
}

pub async fn run_password(ctx: &Ctx, cmd: PasswordCmd) -> Result<()> {
    let base = |db: &str, b: &str| ctx.org_path(&format!("databases/{db}/branches/{b}/passwords"));
    match cmd {
        PasswordCmd::Create {
            database,
            branch,
            name,
            role,
            ttl,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(t) = ttl {
                body["ttl"] = json!(parse_ttl(&t)?);
            }
            let v = ctx
                .client
                .send(Method::POST, &base(&database, &branch), body)
                .await?;
            ctx.say(&format!(
                "Password '{name}' was created for branch '{branch}'. Save the password now: it will not be shown again."
            ));
            ctx.show(output::PASSWORD_CREATED, &v);
        }
        PasswordCmd::List { database, branch } => {
            let path = match &branch {
                Some(b) => base(&database, b),
                None => ctx.org_path(&format!("databases/{database}/passwords")),
            };
            let items = ctx.client.list(&path).await?;
            ctx.show_list(output::PASSWORD, &items);
        }
        PasswordCmd::Show {
            database,
            branch,
            id,
        } => {
            let v = ctx
                .client
                .get(&format!("{}/{id}", base(&database, &branch)))
                .await?;
            ctx.show(output::PASSWORD, &v);
        }
        PasswordCmd::Delete {
            database,
            branch,
            id,
            force,
        } => {
            ctx.client
                .get(&format!("{}/{id}", base(&database, &branch)))
                .await?;
            ctx.confirm("password", &id, force)?;
            ctx.client
                .delete(&format!("{}/{id}", base(&database, &branch)))
                .await?;
            ctx.deleted("Password", &id);
        }
        PasswordCmd::Renew {
            database,
            branch,
            id,
        } => {
            let v = ctx
                .client
                .post(&format!("{}/{id}/renew", base(&database, &branch)))
                .await?;
            ctx.say(&format!("Password '{id}' was renewed."));
            ctx.show(output::PASSWORD, &v);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ org, service-token

#[derive(Subcommand)]
pub enum OrgCmd {
    /// List the organizations this token can see.
    #[command(alias = "ls")]
    List,
    /// Show the current (or a named) organization.
    Show { organization: Option<String> },
}

pub async fn run_org(ctx: &Ctx, cmd: OrgCmd) -> Result<()> {
    match cmd {
        OrgCmd::List => {
            let items = ctx.client.list("organizations").await?;
            ctx.show_list(output::ORGANIZATION, &items);
        }
        OrgCmd::Show { organization } => {
            let name = organization.unwrap_or_else(|| ctx.org.clone());
            let v = ctx.client.get(&format!("organizations/{name}")).await?;
            ctx.show(output::ORGANIZATION, &v);
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ServiceTokenCmd {
    /// Create a service token; its secret is shown once.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// Time to live in seconds (or 30m, 12h, 7d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List service tokens.
    #[command(alias = "ls")]
    List,
    /// Delete a service token.
    Delete { id: String },
}

pub async fn run_service_token(ctx: &Ctx, cmd: ServiceTokenCmd) -> Result<()> {
    match cmd {
        ServiceTokenCmd::Create { name, ttl } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(t) = ttl {
                body["ttl"] = json!(parse_ttl(&t)?);
            }
            let v = ctx
                .client
                .send(Method::POST, &ctx.org_path("service-tokens"), body)
                .await?;
            ctx.say("Service token created. Save the token now: it will not be shown again.");
            ctx.show(output::SERVICE_TOKEN_CREATED, &v);
        }
        ServiceTokenCmd::List => {
            let items = ctx.client.list(&ctx.org_path("service-tokens")).await?;
            ctx.show_list(output::SERVICE_TOKEN, &items);
        }
        ServiceTokenCmd::Delete { id } => {
            ctx.client
                .delete(&ctx.org_path(&format!("service-tokens/{id}")))
                .await?;
            ctx.deleted("Service token", &id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        for (s, want) in [
            ("0", 0),
            ("300", 300),
            ("30s", 30),
            ("5m", 300),
            ("12h", 43200),
            ("7d", 604800),
        ] {
            assert_eq!(parse_ttl(s).unwrap(), want, "{s}");
        }
        for bad in ["", "-5", "5x", "h", "1.5h", "99999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}

// ------------------------------------------------------------------ deploy requests

#[derive(Subcommand)]
pub enum DeployRequestCmd {
    /// Open a deploy request for a branch's schema changes.
    Create {
        database: String,
        branch: String,
        /// Target branch (default: the branch's parent).
        #[arg(long)]
        into: Option<String>,
        #[arg(long)]
        notes: Option<String>,
        /// Cut over as soon as the copy is in sync (default: as the previous request).
        #[arg(long, conflicts_with = "disable_auto_apply")]
        enable_auto_apply: bool,
        /// Gated deploy: stay in sync after the copy until `deploy-request apply`.
        #[arg(long)]
        disable_auto_apply: bool,
    },
    /// Put a deploy request in the deploy queue (by its number, or its branch's open request).
    Deploy {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        /// Apply every change with ALGORITHM=INSTANT (only when all qualify; not revertable).
        #[arg(long)]
        instant: bool,
        /// Follow the deployment with a progress bar until it is cut over (or waits to be applied).
        #[arg(long)]
        wait: bool,
    },
    /// Cut a gated deployment over.
    Apply {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        /// Follow the cut-over until it is done, and print the state it ends in.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a deployment that has not cut over.
    Cancel {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
    /// Undo a deployment within its revert window, keeping the writes made since.
    Revert {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        /// Follow the revert until its clean-up is done.
        #[arg(long)]
        wait: bool,
    },
    /// Close the revert window now: the deployment becomes permanent.
    SkipRevert {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
    /// Force the deployment's cut-over (in the revert window: its revert): end the queries and
    /// transactions holding its tables instead of waiting for them.
    ForceCutover {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
    /// Change a deploy request's auto-apply setting.
    Edit {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        #[arg(
            long,
            conflicts_with = "disable_auto_apply",
            required_unless_present = "disable_auto_apply"
        )]
        enable_auto_apply: bool,
        #[arg(long)]
        disable_auto_apply: bool,
    },
    /// Show a deployment's progress (add --wait to follow it with a progress bar).
    Progress {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        #[arg(long)]
        wait: bool,
    },
    /// Show or set how much a deployment's copy yields: 0 (no throttling) to 95.
    Throttle {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        ratio: Option<i64>,
    },
    /// List the deploy requests of a database.
    #[command(alias = "ls")]
    List { database: String },
    /// Show a deploy request (by its number, or its branch's open request): its state, whether it
    /// is deployable and why not.
    Show {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
    /// Show the statements a deploy request would run on its target.
    Diff {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
    /// Approve or comment on a deploy request.
    Review {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
        #[arg(long, conflicts_with = "comment")]
        approve: bool,
        /// A comment (with --approve: the approval's note).
        #[arg(long)]
        comment: Option<String>,
    },
    /// Close a deploy request without deploying it.
    Close {
        database: String,
        #[arg(value_name = "NUMBER|BRANCH")]
        number: String,
    },
}

const DEPLOY_REQUEST: &[Column] = &[
    ("NUMBER", "/number"),
    ("BRANCH", "/branch"),
    ("INTO BRANCH", "/into_branch"),
    ("APPROVED", "/approved"),
    ("STATE", "/state"),
    ("DEPLOYMENT STATE", "/deployment_state"),
    ("DEPLOYABLE", "/deployable"),
    ("AUTO APPLY", "/auto_cutover"),
    ("CREATED AT", "/created_at"),
    ("CLOSED AT", "/closed_at"),
];

fn print_problems(ctx: &Ctx, v: &Value) {
    if ctx.format != Format::Human {
        return;
    }
    // The last deployment's failure, with its reason.
    if let Some(e) = v.pointer("/deployment/error").and_then(Value::as_str) {
        if v.pointer("/deployment/state").and_then(Value::as_str) == Some("complete_error") {
            println!("Last deployment failed:\n  - {}", output::visible(e));
        }
    }
    if let Some(note) = v
        .pointer("/deployment/queued_behind")
        .and_then(Value::as_str)
    {
        println!("{}", output::visible(note));
    }
    // A gated deployment in sync says what cuts it over (as `deploy --wait` does when it ends).
    if v.pointer("/deployment/state").and_then(Value::as_str) == Some("pending_cutover")
        && v.pointer("/deployment/auto_cutover") == Some(&Value::Bool(false))
    {
        let number = v["number"].as_i64().unwrap_or_default();
        println!(
            "In sync and waiting to be applied: `strata deploy-request apply <database> {number}` cuts it over."
        );
    }
    for (title, key) in [("Not deployable:", "problems"), ("Warnings:", "warnings")] {
        let list = v
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !list.is_empty() {
            println!("{title}");
            for p in list {
                println!("  - {}", output::visible(p.as_str().unwrap_or_default()));
            }
        }
    }
}

pub async fn run_deploy_request(ctx: &Ctx, cmd: DeployRequestCmd) -> Result<()> {
    let base = |db: &str| ctx.org_path(&format!("databases/{db}/deploy-requests"));
    match cmd {
        DeployRequestCmd::Create {
            database,
            branch,
            into,
            notes,
            enable_auto_apply,
            disable_auto_apply,
        } => {
            let mut body = json!({ "branch": branch });
            if enable_auto_apply || disable_auto_apply {
                body["auto_cutover"] = json!(enable_auto_apply);
            }
            if let Some(i) = into {
                body["into_branch"] = json!(i);
            }
            if let Some(n) = notes {
                body["notes"] = json!(n);
            }
            let v = ctx
                .client
                .send(Method::POST, &base(&database), body)
                .await?;
            ctx.say(&format!(
                "Deploy request #{} was opened for branch '{branch}'.",
                v["number"]
            ));
            ctx.show(DEPLOY_REQUEST, &v);
            print_problems(ctx, &v);
        }
        DeployRequestCmd::List { database } => {
            let items = ctx.client.list(&base(&database)).await?;
            ctx.show_list(DEPLOY_REQUEST, &items);
        }
        DeployRequestCmd::Show { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let v = ctx
                .client
                .get(&format!("{}/{number}", base(&database)))
                .await?;
            ctx.show(DEPLOY_REQUEST, &v);
            print_problems(ctx, &v);
        }
        DeployRequestCmd::Diff { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let v = ctx
                .client
                .get(&format!("{}/{number}/diff", base(&database)))
                .await?;
            ctx.show_statements(&v, "No changes.", true)?;
            // Conflicts and other blockers, so a diff that cannot deploy says why.
            if ctx.format == Format::Human {
                let r = ctx
                    .client
                    .get(&format!("{}/{number}", base(&database)))
                    .await?;
                print_problems(ctx, &r);
            }
        }
        DeployRequestCmd::Review {
            database,
            number,
            approve,
            comment,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            if !approve && comment.is_none() {
                bail!("say what the review is: --approve, or --comment \"…\"");
            }
            let body =
                json!({ "state": if approve { "approve" } else { "comment" }, "body": comment });
            let v = ctx
                .client
                .send(
                    Method::POST,
                    &format!("{}/{number}/reviews", base(&database)),
                    body,
                )
                .await?;
            if ctx.format == Format::Human {
                println!(
                    "Deploy request #{number} was {}.",
                    if approve { "approved" } else { "commented on" }
                );
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        DeployRequestCmd::Close { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let v = ctx
                .client
                .send(
                    Method::PATCH,
                    &format!("{}/{number}", base(&database)),
                    json!({"state": "closed"}),
                )
                .await?;
            ctx.say(&format!("Deploy request #{number} was closed."));
            ctx.show(DEPLOY_REQUEST, &v);
        }
        DeployRequestCmd::Deploy {
            database,
            number,
            instant,
            wait,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let sent = ctx
                .client
                .send(
                    Method::POST,
                    &format!("{}/{number}/deploy", base(&database)),
                    json!({ "instant_ddl": instant }),
                )
                .await;
            // Already in the queue (its deployment under way): `--wait` follows it rather than
            // failing. Read from the deployment itself, not from the error's wording.
            let v = match sent {
                Err(e) if wait => {
                    let url = format!("{}/{number}/deployment", base(&database));
                    let state = match ctx.client.get(&url).await {
                        Ok(d) => d["state"].as_str().unwrap_or_default().to_string(),
                        Err(_) => return Err(e),
                    };
                    if !matches!(
                        state.as_str(),
                        "queued"
                            | "in_progress"
                            | "pending_cutover"
                            | "in_progress_cutover"
                            | "in_progress_cancel"
                            | "in_progress_revert"
                    ) {
                        return Err(e);
                    }
                    ctx.say(&format!(
                        "Deploy request #{number} is already in the deploy queue: following it."
                    ));
                    return follow(ctx, &database, number).await;
                }
                other => other?,
            };
            ctx.say(&format!(
                "Deploy request #{number} was added to the deploy queue{}.",
                if instant { " (instant)" } else { "" }
            ));
            // What `create` and `show` warned of (a revert window this deploy ends, destructive
            // changes) is said again at the moment it takes effect.
            print_problems(ctx, &v);
            if wait {
                follow(ctx, &database, number).await?;
            } else {
                ctx.show(DEPLOY_REQUEST, &v);
            }
        }
        DeployRequestCmd::Apply {
            database,
            number,
            wait,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            if wait {
                ctx.client
                    .send(
                        Method::POST,
                        &format!("{}/{number}/apply-deploy", base(&database)),
                        json!({}),
                    )
                    .await?;
                follow(ctx, &database, number).await?;
            } else {
                action(
                    ctx,
                    &base(&database),
                    number,
                    "apply-deploy",
                    "will cut over now",
                )
                .await?;
            }
        }
        DeployRequestCmd::Cancel { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            action(ctx, &base(&database), number, "cancel", "was cancelled").await?;
        }
        DeployRequestCmd::Revert {
            database,
            number,
            wait,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            if wait {
                ctx.client
                    .send(
                        Method::POST,
                        &format!("{}/{number}/revert", base(&database)),
                        json!({}),
                    )
                    .await?;
                follow(ctx, &database, number).await?;
            } else {
                let v = ctx
                    .client
                    .send(
                        Method::POST,
                        &format!("{}/{number}/revert", base(&database)),
                        json!({}),
                    )
                    .await?;
                // Long transactions in the way: the revert goes on in the background.
                if v["deployment_state"] == "in_progress_revert" {
                    ctx.say(&format!(
                        "Deploy request #{number} is being reverted: long-running transactions hold its tables, and the revert goes on once they end (strata deploy-request force-cutover {database} {number} ends them; --wait follows it)."
                    ));
                } else {
                    ctx.say(&format!("Deploy request #{number} was reverted."));
                }
                ctx.show(DEPLOY_REQUEST, &v);
            }
        }
        DeployRequestCmd::SkipRevert { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            action(
                ctx,
                &base(&database),
                number,
                "skip-revert",
                "is permanent: its revert window is closed",
            )
            .await?;
        }
        DeployRequestCmd::ForceCutover { database, number } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            action(
                ctx,
                &base(&database),
                number,
                "force-cutover",
                "is forced: its cut-over (or, in the revert window, its revert) ends the queries and transactions holding its tables",
            )
            .await?;
        }
        DeployRequestCmd::Edit {
            database,
            number,
            enable_auto_apply,
            disable_auto_apply: _,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let v = ctx
                .client
                .send(
                    Method::PUT,
                    &format!("{}/{number}/auto-apply", base(&database)),
                    json!({ "enable": enable_auto_apply }),
                )
                .await?;
            ctx.say(&format!(
                "Auto-apply is {} for deploy request #{number}.",
                if enable_auto_apply { "on" } else { "off" }
            ));
            ctx.show(DEPLOY_REQUEST, &v);
        }
        DeployRequestCmd::Progress {
            database,
            number,
            wait,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            if wait {
                follow(ctx, &database, number).await?;
            } else {
                let v = ctx
                    .client
                    .get(&format!("{}/{number}/deployment", base(&database)))
                    .await?;
                ctx.show(DEPLOYMENT, &v);
            }
        }
        DeployRequestCmd::Throttle {
            database,
            number,
            ratio,
        } => {
            let number = request_number(ctx, &base(&database), &number).await?;
            let path = format!("{}/{number}/throttler", base(&database));
            throttle(ctx, &path, ratio, &format!("Deploy request #{number} is")).await?;
        }
    }
    Ok(())
}

/// Shows a throttler (`GET`), or sets its ratio first (`PATCH`), then says where it stands.
async fn throttle(ctx: &Ctx, path: &str, ratio: Option<i64>, subject: &str) -> Result<()> {
    let v = match ratio {
        Some(r) => {
            ctx.client
                .send(Method::PATCH, path, json!({ "ratio": r }))
                .await?
        }
        None => ctx.client.get(path).await?,
    };
    if ctx.format == Format::Human {
        let now = v["configurations"][0]["ratio"].as_i64().unwrap_or(0);
        println!("{subject} throttled at {now}.");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

const DEPLOYMENT: &[Column] = &[
    ("STATE", "/state"),
    ("PHASE", "/phase"),
    ("ROWS COPIED", "/rows_copied"),
    ("ROWS TOTAL", "/rows_total"),
    ("PROGRESS %", "/progress_percentage"),
    ("KEYS %", "/keys_percentage"),
    ("ETA SECONDS", "/eta_seconds"),
    ("CUTOVER STALL MS", "/cutover_stall_ms"),
    ("REVERTABLE", "/revertable"),
    ("REVERT EXPIRES AT", "/revert_expires_at"),
    ("ERROR", "/error"),
    ("QUEUED BEHIND", "/queued_behind"),
    ("ENDED CONNECTIONS", "/ended_connections"),
];

/// A deploy request's number, from a number or a branch name, as `pscale deploy-request
/// deploy|show <db> <number|branch>` take it: the branch's open request, else its latest one (the
/// one deployed, to revert or follow).
async fn request_number(ctx: &Ctx, base: &str, given: &str) -> Result<i64> {
    if let Ok(n) = given.parse::<i64>() {
        return Ok(n);
    }
    if strata_model::names::validate_branch_name(given).is_err() {
        bail!("'{given}' is neither a deploy request number nor a branch name");
    }
    let number = |v: &Value| {
        v["number"]
            .as_i64()
            .ok_or_else(|| anyhow!("the API answered without a deploy request number"))
    };
    let all = ctx.client.list(&format!("{base}?branch={given}")).await?;
    let open: Vec<&Value> = all.iter().filter(|r| r["state"] == "open").collect();
    match open.as_slice() {
        [one] => number(one),
        [] => match all.iter().max_by_key(|r| r["number"].as_i64()) {
            Some(latest) => number(latest),
            None => bail!("branch '{given}' has no deploy request"),
        },
        _ => bail!(
            "branch '{given}' has {} open deploy requests: name one by its number",
            open.len()
        ),
    }
}

/// A bodyless action on a deploy request.
async fn action(ctx: &Ctx, base: &str, number: i64, verb: &str, done: &str) -> Result<()> {
    let v = ctx
        .client
        .send(Method::POST, &format!("{base}/{number}/{verb}"), json!({}))
        .await?;
    ctx.say(&format!("Deploy request #{number} {done}."));
    ctx.show(DEPLOY_REQUEST, &v);
    Ok(())
}

/// Follows a deployment with a progress bar until it stops moving on its own: cut over, waiting to
/// be applied, or ended.
async fn follow(ctx: &Ctx, database: &str, number: i64) -> Result<()> {
    let base = ctx.org_path(&format!("databases/{database}/deploy-requests"));
    let human = ctx.format == Format::Human && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::new(1000);
    if human {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg:30} [{bar:40}] {prefix}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let url = format!("{base}/{number}/deployment");
    let mut said = String::new();
    loop {
        let d = ctx.client.get(&url).await?;
        let state = d["state"].as_str().unwrap_or_default().to_string();
        let pct = d["progress_percentage"].as_f64().unwrap_or(0.0);
        bar.set_position((pct * 10.0) as u64);
        bar.set_message(format!("{state} ({})", d["phase"].as_str().unwrap_or("?")));
        // Row counts while rows are being copied; an in-place change or a revert copies none.
        let phase = d["phase"].as_str().unwrap_or_default();
        let rows = format!("{}/{} rows", d["rows_copied"], d["rows_total"]);
        let has_rows = d["tables"].as_array().is_some_and(|t| !t.is_empty());
        let delayed = d["delayed_since"].is_string();
        let queued_behind = d["queued_behind"].as_str().unwrap_or_default();
        // Without a bar (not a terminal), a wait in the queue, or a step failed and tried again,
        // is said once as it starts.
        let notice = match d["error"].as_str() {
            Some(e) if queued_behind.is_empty() && state != "complete_error" => {
                format!("A step will be tried again after: {e}")
            }
            _ => queued_behind.to_string(),
        };
        if !human && ctx.format == Format::Human && !notice.is_empty() && notice != said {
            eprintln!("{}", output::visible(&notice));
            said = notice;
        }
        // The percentage with the figures of the same reading (drawn from the bar's own
        // position, it could show another poll's).
        let detail = match d["eta_seconds"].as_u64() {
            _ if delayed => "delayed: long-running transactions hold its tables (strata deploy-request force-cutover ends them)".to_string(),
            _ if !queued_behind.is_empty() => output::visible(queued_behind),
            // A step that failed and is tried again says why while it waits.
            _ if d["error"].is_string() => format!(
                "tried again after: {}",
                output::visible(d["error"].as_str().unwrap_or_default())
            ),
            Some(s) if has_rows && phase == "copying" => format!("{rows}, ETA {s}s"),
            eta if phase == "building_keys" => {
                let keys = d["keys_percentage"]
                    .as_f64()
                    .map_or_else(|| "keys".to_string(), |k| format!("keys {k:.0}%"));
                match eta {
                    Some(s) => format!("{rows}, {keys}, ETA {s}s"),
                    None => format!("{rows}, {keys}"),
                }
            }
            _ if has_rows && phase == "copying" => rows,
            _ => String::new(),
        };
        bar.set_prefix(format!("{:>3}% {detail}", pct.floor() as u64));
        bar.tick();
        // In sync with auto-apply on (or just applied): the cut-over is about to start.
        let applying = state == "pending_cutover" && d["auto_cutover"] == true;
        if !applying
            && !matches!(
                state.as_str(),
                "queued"
                    | "in_progress"
                    | "in_progress_cutover"
                    | "in_progress_cancel"
                    | "in_progress_revert"
            )
        {
            bar.finish_and_clear();
            match state.as_str() {
                "complete_error" => bail!(
                    "deploy request #{number} failed: {}",
                    d["error"].as_str().unwrap_or("unknown error")
                ),
                "pending_cutover" => ctx.say(&format!(
                    "Deploy request #{number} is in sync and waits to be applied: strata deploy-request apply {database} {number}"
                )),
                _ => ctx.say(&format!("Deploy request #{number}: {state}.")),
            }
            ctx.show(DEPLOYMENT, &d);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

// ------------------------------------------------------------------ backups

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Back up a branch's data and schema (a hot physical backup; writes go on).
    #[command(alias = "b")]
    Create {
        database: String,
        branch: String,
        /// Optional name for the backup.
        #[arg(long)]
        name: Option<String>,
        /// How long to keep it, e.g. 12h, 7d, 4w (default 30 days).
        #[arg(long)]
        retention: Option<String>,
        /// Wait for the backup to finish, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// List the backups of a branch.
    #[command(alias = "ls")]
    List { database: String, branch: String },
    /// Show a backup.
    Show {
        database: String,
        branch: String,
        backup: String,
    },
    /// Delete a backup.
    #[command(alias = "rm")]
    Delete {
        database: String,
        branch: String,
        backup: String,
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into a new branch.
    Restore {
        database: String,
        /// The new branch.
        branch: String,
        backup: String,
        /// Accepted for pscale compatibility.
        #[arg(long)]
        cluster_size: Option<String>,
        /// Wait until the branch is ready.
        #[arg(long)]
        wait: bool,
    },
    /// Protect a backup from deletion and expiry (or, with --off, remove the protection).
    Protect {
        database: String,
        branch: String,
        backup: String,
        #[arg(long)]
        off: bool,
    },
    /// Restore a backup on a scratch instance again and check it.
    Validate {
        database: String,
        branch: String,
        backup: String,
    },
}

/// `12h` / `7d` / `4w` / `3m` (months) / `1y` → (value, unit).
fn retention(text: &str) -> Result<(i64, &'static str)> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let value: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!("retention '{text}': expected a number and a unit, e.g. 7d")
    })?;
    let unit = match unit {
        "h" | "hour" | "hours" => "hour",
        "" | "d" | "day" | "days" => "day",
        "w" | "week" | "weeks" => "week",
        "m" | "month" | "months" => "month",
        "y" | "year" | "years" => "year",
        other => bail!("retention '{text}': unknown unit '{other}' (h, d, w, m, y)"),
    };
    Ok((value, unit))
}

pub async fn run_backup(ctx: &Ctx, cmd: BackupCmd) -> Result<()> {
    let base = |db: &str, b: &str| ctx.org_path(&format!("databases/{db}/branches/{b}/backups"));
    match cmd {
        BackupCmd::Create {
            database,
            branch,
            name,
            retention: keep,
            wait,
        } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(k) = keep {
                let (v, u) = retention(&k)?;
                body["retention_value"] = json!(v);
                body["retention_unit"] = json!(u);
            }
            let mut v = ctx
                .client
                .send(Method::POST, &base(&database, &branch), body)
                .await?;
            let id = v["id"].as_str().unwrap_or_default().to_string();
            if wait {
                v = follow_backup(ctx, &format!("{}/{id}", base(&database, &branch))).await?;
            } else {
                ctx.say(&format!(
                    "Backup '{id}' of branch '{branch}' was queued; `strata backup show {database} {branch} {id}` follows it."
                ));
            }
            ctx.show(output::BACKUP, &v);
        }
        BackupCmd::List { database, branch } => {
            let items = ctx.client.list(&base(&database, &branch)).await?;
            ctx.show_list(output::BACKUP, &items);
        }
        BackupCmd::Show {
            database,
            branch,
            backup,
        } => {
            let v = ctx
                .client
                .get(&format!("{}/{backup}", base(&database, &branch)))
                .await?;
            ctx.show(output::BACKUP, &v);
        }
        BackupCmd::Delete {
            database,
            branch,
            backup,
            force,
        } => {
            let p = format!("{}/{backup}", base(&database, &branch));
            ctx.client.get(&p).await?;
            ctx.confirm("backup", &backup, force)?;
            ctx.client.delete(&p).await?;
            ctx.deleted("Backup", &backup);
        }
        BackupCmd::Restore {
            database,
            branch,
            backup,
            cluster_size,
            wait,
        } => {
            let mut body = json!({ "name": branch, "backup_id": backup });
            if let Some(c) = cluster_size {
                body["cluster_size"] = json!(c);
            }
            let v = post_branch(ctx, &database, &branch, body, wait).await?;
            ctx.say(&format!(
                "Backup '{backup}' is being restored into branch '{branch}'."
            ));
            ctx.show(output::BRANCH, &v);
        }
        BackupCmd::Protect {
            database,
            branch,
            backup,
            off,
        } => {
            let v = ctx
                .client
                .send(
                    Method::PATCH,
                    &format!("{}/{backup}", base(&database, &branch)),
                    json!({ "protected": !off }),
                )
                .await?;
            ctx.show(output::BACKUP, &v);
        }
        BackupCmd::Validate {
            database,
            branch,
            backup,
        } => {
            let p = format!("{}/{backup}", base(&database, &branch));
            ctx.client.post(&format!("{p}/validate")).await?;
            let v = follow_backup(ctx, &p).await?;
            ctx.show(output::BACKUP, &v);
        }
    }
    Ok(())
}

/// Follows a backup with a progress bar until it and its validation are done.
async fn follow_backup(ctx: &Ctx, url: &str) -> Result<Value> {
    let human = ctx.format == Format::Human && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::new(100);
    if human {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg:24} [{bar:40}] {percent:>3}% {prefix}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let v = ctx.client.get(url).await?;
        let state = v["state"].as_str().unwrap_or_default().to_string();
        let validation = v["validation_state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let p = &v["progress"];
        bar.set_position(p["percent"].as_u64().unwrap_or(0));
        let phase = p["phase"].as_str().unwrap_or("");
        bar.set_message(match state.as_str() {
            "success" => format!("validating ({validation})"),
            _ => format!("{state} ({phase})"),
        });
        bar.set_prefix(format!(
            "{} / {} MB",
            p["copied_bytes"].as_u64().unwrap_or(0) >> 20,
            p["total_bytes"].as_u64().unwrap_or(0) >> 20
        ));
        bar.tick();
        let done = match state.as_str() {
            "failed" | "canceled" => true,
            "success" => !matches!(validation.as_str(), "pending" | "running"),
            _ => false,
        };
        if done {
            bar.finish_and_clear();
            match (state.as_str(), validation.as_str()) {
                ("failed", _) => bail!(
                    "backup failed: {}",
                    v["error"].as_str().unwrap_or("unknown error")
                ),
                (_, "failed") => bail!(
                    "backup completed but failed validation: {}",
                    v["validation_error"].as_str().unwrap_or("unknown reason")
                ),
                _ => ctx.say(&format!(
                    "Backup '{}' completed ({} MB) and passed validation.",
                    v["id"].as_str().unwrap_or_default(),
                    v["size"].as_u64().unwrap_or(0) >> 20
                )),
            }
            return Ok(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
