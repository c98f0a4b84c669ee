//! Response objects, shaped after PlanetScale's (`../shared/reference/api-endpoints.md` §5): the fields
//! the pscale client reads are all present, timestamps are ISO-8601 with milliseconds or null, and
//! every object carries its `type`. Strata-only facts (a branch's `instance`, a password's
//! `connection`) are added under their own keys.

use serde::Serialize;
use strata_catalog::{Branch, BranchState, Database, Organization, Password, ServiceToken};
use strata_control::password_expired;
use strata_engine::InstanceStatus;
use strata_model::timefmt::{iso8601, now_millis};
use utoipa::ToSchema;

fn ts(m: i64) -> String {
    iso8601(m)
}
fn ts_opt(m: Option<i64>) -> Option<String> {
    m.map(iso8601)
}

/// Strata runs where it is installed; it reports one region, "local".
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Region {
    pub id: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub provider: &'static str,
    pub enabled: bool,
    pub public_ip_addresses: Vec<String>,
    pub display_name: &'static str,
    pub location: &'static str,
    pub slug: &'static str,
    pub current_default: bool,
    pub mysql_supported: bool,
    pub postgresql_supported: bool,
}

pub fn region() -> Region {
    Region {
        id: "local",
        kind: "Region",
        provider: "Strata",
        enabled: true,
        public_ip_addresses: Vec::new(),
        display_name: "Local",
        location: "This host",
        slug: "local",
        current_default: true,
        mysql_supported: true,
        postgresql_supported: false,
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Actor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub display_name: String,
    pub avatar_url: String,
}

pub fn token_actor(token_id: &str) -> Actor {
    Actor {
        id: token_id.to_string(),
        kind: "ServiceToken",
        display_name: token_id.to_string(),
        avatar_url: String::new(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub plan: &'static str,
    pub database_count: usize,
    pub sso: bool,
    pub single_tenancy: bool,
    pub features: serde_json::Value,
}

pub fn organization(o: &Organization, database_count: usize) -> OrganizationView {
    OrganizationView {
        id: o.id.clone(),
        kind: "Organization",
        name: o.name.clone(),
        created_at: ts(o.created_at),
        updated_at: ts(o.updated_at),
        plan: "self-hosted",
        database_count,
        sso: false,
        single_tenancy: true,
        features: serde_json::json!({}),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTokenView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: Option<String>,
    pub display_name: String,
    /// The token's plaintext: only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub avatar_url: String,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

pub fn service_token(t: &ServiceToken, plaintext: Option<String>) -> ServiceTokenView {
    ServiceTokenView {
        id: t.id.clone(),
        kind: "ServiceToken",
        display_name: t.name.clone().unwrap_or_else(|| t.id.clone()),
        name: t.name.clone(),
        token: plaintext,
        avatar_url: String::new(),
        created_at: ts(t.created_at),
        updated_at: ts(t.created_at),
        expires_at: ts_opt(t.expires_at),
        last_used_at: ts_opt(t.last_used_at),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub name: String,
    pub url: String,
    pub branches_url: String,
    pub html_url: String,
    /// `pending` until the default branch is ready, then `ready`.
    pub state: &'static str,
    pub ready: bool,
    pub kind: &'static str,
    pub region: Region,
    pub default_branch: String,
    pub branches_count: usize,
    pub development_branches_count: usize,
    pub production_branches_count: usize,
    pub require_approval_for_deploy: bool,
    pub foreign_keys_enabled: bool,
    /// Whether deploys copy the migration table's rows ("automatically copy migration data").
    pub automatic_migrations: bool,
    pub migration_framework: Option<String>,
    pub migration_table_name: Option<String>,
    /// Cut-overs end the queries and transactions in their way at once (not after waiting).
    pub aggressive_cutover: bool,
    pub allow_data_branching: bool,
    pub deletion_protected: bool,
    pub sharded: bool,
    pub default_branch_shard_count: u32,
    pub default_branch_read_only_regions_count: u32,
    pub insights_enabled: bool,
    pub plan: &'static str,
    pub notes: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub schema_last_updated_at: Option<String>,
}

pub fn database(api_url: &str, org: &str, d: &Database, branches: &[Branch]) -> DatabaseView {
    let url = format!("{api_url}/v1/organizations/{org}/databases/{}", d.name);
    let default = branches.iter().find(|b| b.name == d.default_branch);
    let ready = default.is_some_and(|b| b.state == BranchState::Ready);
    let prod = branches.iter().filter(|b| b.production).count();
    DatabaseView {
        id: d.id.clone(),
        kind_type: "Database",
        name: d.name.clone(),
        branches_url: format!("{url}/branches"),
        url,
        html_url: format!("{api_url}/{org}/{}", d.name),
        state: if ready { "ready" } else { "pending" },
        ready,
        kind: "mysql",
        region: region(),
        default_branch: d.default_branch.clone(),
        branches_count: branches.len(),
        development_branches_count: branches.len() - prod,
        production_branches_count: prod,
        require_approval_for_deploy: d.require_approval_for_deploy,
        foreign_keys_enabled: d.allow_foreign_key_constraints,
        automatic_migrations: d.automatic_migrations,
        migration_framework: d.migration_framework.clone(),
        migration_table_name: d.migration_table_name.clone(),
        aggressive_cutover: d.aggressive_cutover,
        allow_data_branching: false,
        deletion_protected: d.deletion_protected,
        sharded: false,
        default_branch_shard_count: 1,
        default_branch_read_only_regions_count: 0,
        insights_enabled: false,
        plan: "self-hosted",
        notes: None,
        created_at: ts(d.created_at),
        updated_at: ts(d.updated_at),
        schema_last_updated_at: ts_opt(default.and_then(|b| b.schema_last_updated_at)),
    }
}

/// The branch's server process, as the supervisor sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    /// `starting`, `running`, `crashed` (restart scheduled), `stopping`, `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    /// Loopback port of the instance (internal; clients connect through the gateway).
    pub port: u16,
    pub restarts: u32,
    pub ready_at: Option<String>,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
}

fn instance(s: &InstanceStatus) -> InstanceView {
    InstanceView {
        state: serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        pid: s.pid,
        port: s.port,
        restarts: s.restarts,
        ready_at: ts_opt(s.ready_at),
        last_exit: s.last_exit.clone(),
        last_error: s.last_error.clone(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BranchView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub name: String,
    pub parent_branch: Option<String>,
    pub production: bool,
    pub safe_migrations: bool,
    /// True once the branch serves with its parent's schema.
    pub ready: bool,
    pub schema_ready: bool,
    /// `pending`, `ready` or `failed`.
    pub state: &'static str,
    /// Why provisioning failed.
    pub error: Option<String>,
    pub kind: &'static str,
    pub region: Region,
    pub url: String,
    pub html_url: String,
    pub mysql_address: String,
    pub mysql_edge_address: String,
    pub cluster_name: &'static str,
    pub sharded: bool,
    pub shard_count: u32,
    pub stale_schema: bool,
    pub deletion_protected: bool,
    pub actor: Option<Actor>,
    pub restored_from_branch: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    pub schema_last_updated_at: Option<String>,
    /// The branch's instance; null while it has none (pending or failed).
    pub instance: Option<InstanceView>,
    /// Where the branch's data came from: `backup` (restored; see `restored_from_backup`),
    /// `parent` (a snapshot of the parent when it was made), or null (schema only).
    pub data_source: Option<&'static str>,
    pub restored_from_backup: Option<String>,
    /// While a restore or snapshot fills the branch: its phase and bytes.
    pub data_progress: Option<ProgressView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressView {
    /// `counting`, `copying`, `preparing`, `complete` for backups; `restoring`, `snapshotting`,
    /// `starting` for branches being filled.
    pub phase: String,
    pub copied_bytes: u64,
    pub total_bytes: u64,
    /// 0–100.
    pub percent: u32,
}

pub fn progress(p: &strata_engine::backup::Progress) -> ProgressView {
    let percent = (p.copied_bytes.min(p.total_bytes) * 100)
        .checked_div(p.total_bytes)
        .map(|v| v as u32)
        .unwrap_or(if p.phase == "complete" { 100 } else { 0 });
    ProgressView {
        phase: p.phase.clone(),
        copied_bytes: p.copied_bytes,
        total_bytes: p.total_bytes,
        percent,
    }
}

pub struct Edge<'a> {
    pub api_url: &'a str,
    pub org: &'a str,
    pub database: &'a str,
    pub mysql_host: &'a str,
    pub mysql_port: u16,
    pub http_port: u16,
}

impl Edge<'_> {
    fn mysql_address(&self) -> String {
        format!("{}:{}", self.mysql_host, self.mysql_port)
    }
}

pub fn branch(edge: &Edge, b: &Branch, status: Option<InstanceStatus>) -> BranchView {
    let url = format!(
        "{}/v1/organizations/{}/databases/{}/branches/{}",
        edge.api_url, edge.org, edge.database, b.name
    );
    BranchView {
        id: b.id.clone(),
        kind_type: "Branch",
        name: b.name.clone(),
        parent_branch: b.parent_branch.clone(),
        production: b.production,
        safe_migrations: b.safe_migrations,
        ready: b.state == BranchState::Ready,
        schema_ready: b.state == BranchState::Ready,
        state: b.state.as_str(),
        error: b.error.clone(),
        kind: "mysql",
        region: region(),
        url,
        html_url: format!("{}/{}/{}/{}", edge.api_url, edge.org, edge.database, b.name),
        mysql_address: edge.mysql_address(),
        mysql_edge_address: edge.mysql_address(),
        cluster_name: if b.production {
            "production"
        } else {
            "development"
        },
        sharded: false,
        shard_count: 1,
        stale_schema: false,
        deletion_protected: false,
        actor: None,
        restored_from_branch: None,
        created_at: ts(b.created_at),
        updated_at: ts(b.updated_at),
        deleted_at: None,
        schema_last_updated_at: ts_opt(b.schema_last_updated_at),
        instance: status.as_ref().map(instance),
        data_source: b.data_source.as_ref().map(|d| match d {
            strata_catalog::DataSource::Backup(_) => "backup",
            strata_catalog::DataSource::Parent => "parent",
        }),
        restored_from_backup: match &b.data_source {
            Some(strata_catalog::DataSource::Backup(id)) => Some(id.clone()),
            _ => None,
        },
        data_progress: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordBranch {
    pub id: String,
    pub name: String,
    pub production: bool,
    pub mysql_edge_address: String,
    pub private_edge_connectivity: bool,
}

/// How to connect with this password: through the gateway, to the database's schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub database: String,
    /// A ready-made URL; only in the create response, since it embeds the plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_url: Option<String>,
    /// The HTTP SQL endpoint for serverless drivers: `@planetscale/database` takes it as `url`
    /// (with the username and password) or its host part as `host`.
    pub http_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub name: String,
    pub role: String,
    pub role_description: &'static str,
    pub username: String,
    /// The password itself: only in the create response, never again.
    pub plain_text: Option<String>,
    pub access_host_url: String,
    pub access_host_regional_url: String,
    pub access_host_regional_urls: Vec<String>,
    pub database_branch: PasswordBranch,
    pub region: Region,
    pub actor: Option<Actor>,
    pub cidrs: Vec<String>,
    pub created_at: String,
    pub deleted_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub expired: bool,
    pub ttl_seconds: Option<i64>,
    pub renewable: bool,
    pub replica: bool,
    pub direct_vtgate: bool,
    pub direct_vtgate_addresses: Vec<String>,
    pub connection: Connection,
}

pub fn password(edge: &Edge, p: &Password, b: &Branch, plaintext: Option<String>) -> PasswordView {
    let address = edge.mysql_address();
    let mysql_url = plaintext
        .as_ref()
        .map(|pw| format!("mysql://{}:{pw}@{}/{}", p.username, address, edge.database));
    PasswordView {
        id: p.id.clone(),
        kind_type: "Password",
        name: p.name.clone(),
        role: p.role.as_str().to_string(),
        role_description: p.role.description(),
        username: p.username.clone(),
        plain_text: plaintext,
        access_host_url: address.clone(),
        access_host_regional_url: address.clone(),
        access_host_regional_urls: vec![address.clone()],
        database_branch: PasswordBranch {
            id: b.id.clone(),
            name: b.name.clone(),
            production: b.production,
            mysql_edge_address: address,
            private_edge_connectivity: false,
        },
        region: region(),
        actor: None,
        cidrs: p.cidrs.clone(),
        created_at: ts(p.created_at),
        deleted_at: None,
        expires_at: ts_opt(p.expires_at),
        last_used_at: ts_opt(p.last_used_at),
        expired: password_expired(p, now_millis()),
        ttl_seconds: p.ttl_seconds,
        renewable: p.ttl_seconds.is_some(),
        replica: false,
        direct_vtgate: false,
        direct_vtgate_addresses: Vec::new(),
        connection: Connection {
            host: edge.mysql_host.to_string(),
            port: edge.mysql_port,
            username: p.username.clone(),
            database: edge.database.to_string(),
            mysql_url,
            http_url: format!("https://{}:{}", edge.mysql_host, edge.http_port),
        },
    }
}

/// One lint finding, with every field PlanetScale's SchemaLintError carries (null where it does not
/// apply) and Strata's `severity`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintView {
    pub lint_error: &'static str,
    /// `error` blocks a deploy request; `warning` does not.
    pub severity: &'static str,
    pub subject_type: &'static str,
    pub keyspace_name: String,
    pub table_name: String,
    pub error_description: String,
    pub docs_url: String,
    pub column_name: Option<String>,
    pub foreign_key_column_names: Vec<String>,
    pub auto_increment_column_names: Vec<String>,
    pub charset_name: Option<String>,
    pub engine_name: Option<String>,
    pub vindex_name: Option<String>,
    pub json_path: Option<String>,
    pub check_constraint_name: Option<String>,
    pub enum_value: Option<String>,
    pub partitioning_type: Option<String>,
    pub partition_name: Option<String>,
}

pub fn lint(database: &str, f: strata_schema::lint::Finding) -> LintView {
    LintView {
        lint_error: f.code,
        severity: match f.severity {
            strata_schema::lint::Severity::Error => "error",
            strata_schema::lint::Severity::Warning => "warning",
        },
        subject_type: "table",
        keyspace_name: database.to_string(),
        table_name: f.table,
        error_description: f.description,
        docs_url: String::new(),
        column_name: f.column,
        foreign_key_column_names: f.foreign_key_columns,
        auto_increment_column_names: Vec::new(),
        charset_name: f.charset,
        engine_name: f.engine,
        vindex_name: None,
        json_path: None,
        check_constraint_name: None,
        enum_value: None,
        partitioning_type: None,
        partition_name: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeployRequestView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub number: i64,
    pub actor: Actor,
    pub closed_by: Option<Actor>,
    pub branch: String,
    pub branch_deleted: bool,
    pub into_branch: String,
    pub into_branch_sharded: bool,
    pub into_branch_shard_count: u32,
    pub approved: bool,
    /// `open` or `closed`.
    pub state: String,
    /// `ready` (deployable), `no_changes`, or `error` (see `problems`).
    pub deployment_state: &'static str,
    pub deployable: bool,
    /// What blocks the deploy: conflicts with the target's changes since the branch was made,
    /// broken references, lint errors.
    pub problems: Vec<String>,
    /// Worth a look, not blocking: destructive changes, likely renames.
    pub warnings: Vec<String>,
    pub num_comments: usize,
    pub html_url: String,
    pub notes: String,
    pub html_body: String,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub deployed_at: Option<String>,
    /// Cut over as soon as in sync (false: gated, waits for `apply-deploy`).
    pub auto_cutover: bool,
    /// The deployment, once the request is in the deploy queue.
    pub deployment: Option<DeploymentView>,
}

/// Copy progress of one table.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableProgressView {
    pub name: String,
    pub rows_copied: u64,
    pub rows_total: u64,
    pub copied: bool,
    pub verified: bool,
}

/// A deployment: its place in the deploy queue and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    /// PlanetScale's deployment states (`queued`, `in_progress`, `pending_cutover`,
    /// `in_progress_cutover`, `complete_pending_revert`, `complete`, `complete_revert`, …).
    pub state: &'static str,
    pub deploy_request_number: i64,
    pub into_branch: String,
    pub instant_ddl: bool,
    pub auto_cutover: bool,
    /// 0 (no throttling) to 95.
    pub throttle_ratio: i64,
    /// `queued`, `preparing`, `copying` (each chunk verified as it is copied), `building_keys`, `in_sync`, `cutting_over`, `cut_over`, `reverting`, `reverted`, `cancelled`, `failed`.
    pub phase: String,
    pub tables: Vec<TableProgressView>,
    pub rows_copied: u64,
    pub rows_total: u64,
    pub progress_percentage: f64,
    /// Seconds left of the copy, or of the key build after it, at the current pace.
    pub eta_seconds: Option<u64>,
    /// While the keys left out of the copy are built: how far the build is, in percent, as the
    /// server reports it.
    pub keys_percentage: Option<f64>,
    /// How long the cut-over held the application's writers, in milliseconds.
    pub cutover_stall_ms: Option<u64>,
    pub revert_stall_ms: Option<u64>,
    /// True while a revert can be asked for: in the revert window of a revertable deploy.
    pub revertable: bool,
    pub revert_expires_at: Option<String>,
    /// The last failed try of a step (tried again), or why the deployment failed. Steps held up
    /// by long-running transactions say "Migration delayed due to long-running transactions".
    pub error: Option<String>,
    /// Since when the deployment's steps have waited for long-running transactions.
    pub delayed_since: Option<String>,
    /// While queued behind another deployment into the same branch: which one, and what it
    /// waits for.
    pub queued_behind: Option<String>,
    /// When a forced cut-over was asked for (`force-cutover`).
    pub force_cutover_requested_at: Option<String>,
    /// Connections (their queries and transactions) a forced cut-over ended.
    pub ended_connections: u64,
    pub actor: Actor,
    pub cutover_actor: Option<Actor>,
    pub cancelled_actor: Option<Actor>,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub cutover_at: Option<String>,
    pub finished_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub fn deployment(d: &strata_catalog::Deployment, queue_note: Option<String>) -> DeploymentView {
    let p: strata_deploy::Progress = serde_json::from_str(&d.progress).unwrap_or_default();
    let plan: Option<strata_deploy::Plan> = serde_json::from_str(&d.plan).ok();
    let (rows_copied, rows_total) = p.rows();
    let copying = d.state == "in_progress" && p.phase == "copying";
    let building = d.state == "in_progress" && p.phase == "building_keys";
    let (phase, percent) = p.shown(&d.state);
    DeploymentView {
        id: d.id.clone(),
        kind_type: "Deployment",
        state: strata_control::deployment_state_name(&d.state),
        deploy_request_number: d.deploy_request_number,
        into_branch: d.into_branch.clone(),
        instant_ddl: d.instant,
        auto_cutover: d.auto_cutover,
        throttle_ratio: d.throttle_ratio,
        phase,
        tables: p
            .tables
            .iter()
            .map(|t| TableProgressView {
                name: t.table.clone(),
                rows_copied: t.rows_copied,
                rows_total: t.expected_total(),
                copied: t.copied,
                verified: t.verified,
            })
            .collect(),
        rows_copied,
        rows_total,
        progress_percentage: (percent * 10.0).round() / 10.0,
        eta_seconds: p.eta_seconds.filter(|_| copying || building),
        keys_percentage: p.keys_percent.filter(|_| building),
        cutover_stall_ms: p.cutover_stall_ms,
        revert_stall_ms: p.revert_stall_ms,
        // Whether a revert can be asked for now: only in the revert window.
        revertable: !d.instant
            && plan.is_some_and(|p| p.revertable())
            && d.state == "complete_pending_revert",
        // Only while the window is open: a closed window has no expiry left to show.
        revert_expires_at: ts_opt(d.revert_expires_at)
            .filter(|_| d.state == "complete_pending_revert"),
        error: d.error.clone(),
        delayed_since: ts_opt(p.delayed_since).filter(|_| d.is_active()),
        queued_behind: queue_note,
        force_cutover_requested_at: ts_opt(d.force_cutover_requested_at),
        ended_connections: p.ended_connections,
        actor: token_actor(&d.actor),
        cutover_actor: d.cutover_actor.as_deref().map(token_actor),
        cancelled_actor: d.cancelled_actor.as_deref().map(token_actor),
        queued_at: ts(d.queued_at),
        started_at: ts_opt(d.started_at),
        cutover_at: ts_opt(d.cutover_at),
        finished_at: ts_opt(d.finished_at),
        created_at: ts(d.queued_at),
        updated_at: ts(d.updated_at),
    }
}

pub fn deploy_request(
    api_url: &str,
    org: &str,
    db: &str,
    s: &strata_control::DeployRequestStatus,
) -> DeployRequestView {
    let r = &s.request;
    DeployRequestView {
        id: r.id.clone(),
        kind_type: "DeployRequest",
        number: r.number,
        actor: token_actor(&r.actor),
        closed_by: r.closed_by.as_deref().map(token_actor),
        branch: r.branch.clone(),
        branch_deleted: s.branch_deleted,
        into_branch: r.into_branch.clone(),
        into_branch_sharded: false,
        into_branch_shard_count: 1,
        approved: s.approved,
        state: r.state.clone(),
        deployment_state: s.deployment_state,
        deployable: s.deployable,
        problems: s.problems.clone(),
        warnings: s.warnings.clone(),
        num_comments: s.num_comments,
        html_url: format!("{api_url}/{org}/{db}/deploy-requests/{}", r.number),
        notes: r.notes.clone(),
        html_body: String::new(),
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
        closed_at: ts_opt(r.closed_at),
        deployed_at: ts_opt(s.deployment.as_ref().and_then(|d| d.cutover_at)),
        auto_cutover: r.auto_cutover,
        deployment: s
            .deployment
            .as_ref()
            .map(|d| deployment(d, s.queue_note.clone())),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    /// `approved` or `commented`.
    pub state: String,
    pub body: String,
    pub html_body: String,
    pub actor: Actor,
    pub created_at: String,
    pub updated_at: String,
}

pub fn review(r: &strata_catalog::Review) -> ReviewView {
    ReviewView {
        id: r.id.clone(),
        kind_type: "DeployRequestReview",
        state: r.state.clone(),
        body: r.body.clone(),
        html_body: String::new(),
        actor: token_actor(&r.actor),
        created_at: ts(r.created_at),
        updated_at: ts(r.created_at),
    }
}

/// PlanetScale's page envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub current_page: usize,
    pub per_page: usize,
    pub next_page: Option<usize>,
    pub next_page_url: Option<String>,
    pub prev_page: Option<usize>,
    pub prev_page_url: Option<String>,
    pub total_count: usize,
    pub total_pages: usize,
    pub data: Vec<T>,
}

/// Cuts one page out of a full list. `base` is the list's URL without query.
pub fn page<T>(items: Vec<T>, page: usize, per_page: usize, base: &str) -> Page<T> {
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let data: Vec<T> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let link = |p: usize| format!("{base}?page={p}&per_page={per_page}");
    let next = (page < total_pages).then_some(page + 1);
    let prev = (page > 1).then(|| (page - 1).min(total_pages));
    Page {
        kind: "list",
        current_page: page,
        per_page,
        next_page: next,
        next_page_url: next.map(link),
        prev_page: prev,
        prev_page_url: prev.map(link),
        total_count: total,
        total_pages,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let p = page((1..=57).collect::<Vec<_>>(), 1, 25, "http://x/l");
        assert_eq!(
            (p.total_count, p.total_pages, p.next_page, p.prev_page),
            (57, 3, Some(2), None)
        );
        assert_eq!(p.data.len(), 25);
        assert_eq!(
            p.next_page_url.as_deref(),
            Some("http://x/l?page=2&per_page=25")
        );
        let p = page((1..=57).collect::<Vec<_>>(), 3, 25, "http://x/l");
        assert_eq!((p.data.len(), p.next_page, p.prev_page), (7, None, Some(2)));
        let p = page(Vec::<u8>::new(), 1, 25, "http://x/l");
        assert_eq!((p.total_pages, p.next_page, p.data.len()), (1, None, 0));
        let p = page((1..=3).collect::<Vec<_>>(), 9, 25, "http://x/l");
        assert!(p.data.is_empty());
    }
}

// ------------------------------------------------------------------ backups

/// A branch a backup was taken of or restored into.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BranchRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
}

pub fn branch_ref(b: &Branch) -> BranchRef {
    BranchRef {
        id: b.id.clone(),
        kind: "Branch",
        name: b.name.clone(),
        created_at: ts(b.created_at),
        updated_at: ts(b.updated_at),
        deleted_at: None,
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupPolicyView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub display_name: String,
    pub name: String,
    /// `production` or `development`: which branches it backs up.
    pub target: String,
    pub retention_value: i64,
    pub retention_unit: String,
    pub frequency_value: i64,
    pub frequency_unit: String,
    pub schedule_time: String,
    pub schedule_day: Option<i64>,
    pub schedule_week: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub last_ran_at: Option<String>,
    pub next_run_at: Option<String>,
    pub required: bool,
}

pub fn backup_policy(p: &strata_catalog::BackupPolicy) -> BackupPolicyView {
    BackupPolicyView {
        id: p.id.clone(),
        kind: "BackupPolicy",
        display_name: p.name.clone(),
        name: p.name.clone(),
        target: p.target.clone(),
        retention_value: p.retention_value,
        retention_unit: p.retention_unit.clone(),
        frequency_value: p.frequency_value,
        frequency_unit: p.frequency_unit.clone(),
        schedule_time: ts(p.next_run_at).get(11..16).unwrap_or("00:00").to_string(),
        schedule_day: None,
        schedule_week: None,
        created_at: ts(p.created_at),
        updated_at: ts(p.updated_at),
        last_ran_at: ts_opt(p.last_ran_at),
        next_run_at: Some(ts(p.next_run_at)),
        required: false,
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    /// `pending`, `running`, `success`, `failed` or `canceled`.
    pub state: &'static str,
    /// Bytes in backup storage.
    pub size: i64,
    pub uncompressed_size: i64,
    pub estimated_storage_cost: f64,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub expires_at: Option<String>,
    pub completed_at: Option<String>,
    pub deleted_at: Option<String>,
    pub pvc_size: i64,
    pub protected: bool,
    pub required: bool,
    pub restored_branches: Vec<BranchRef>,
    pub actor: Option<Actor>,
    pub backup_policy: Option<BackupPolicyView>,
    pub database_branch: Option<BranchRef>,
    /// Why the backup failed.
    pub error: Option<String>,
    /// Milliseconds from start to completion.
    pub duration_ms: Option<i64>,
    pub progress: Option<ProgressView>,
    /// The restore check of a completed backup: `pending`, `running`, `passed`, `failed` (see
    /// `validation_error`), `skipped` (the backup failed).
    pub validation_state: String,
    pub validation_error: Option<String>,
    pub validated_at: Option<String>,
    /// Rows per table at the backup point (what validation compares against).
    pub table_rows: Option<std::collections::BTreeMap<String, i64>>,
}

pub fn backup(
    b: &strata_catalog::Backup,
    branch: &Branch,
    restored: &[Branch],
    policy: Option<&strata_catalog::BackupPolicy>,
) -> BackupView {
    let manifest: Option<strata_engine::backup::Manifest> = b
        .manifest
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    let progress_doc: Option<strata_engine::backup::Progress> = b
        .progress
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    BackupView {
        id: b.id.clone(),
        kind: "Backup",
        name: b.name.clone(),
        state: b.state.as_str(),
        size: b.size,
        uncompressed_size: b.size,
        estimated_storage_cost: 0.0,
        created_at: ts(b.created_at),
        updated_at: ts(b.updated_at),
        started_at: ts_opt(b.started_at),
        expires_at: if b.protected {
            None
        } else {
            ts_opt(b.expires_at)
        },
        completed_at: ts_opt(b.completed_at),
        deleted_at: None,
        pvc_size: b.size,
        protected: b.protected,
        required: false,
        restored_branches: restored.iter().map(branch_ref).collect(),
        actor: b.actor.as_deref().map(token_actor),
        backup_policy: policy.map(backup_policy),
        database_branch: Some(branch_ref(branch)),
        error: b.error.clone(),
        duration_ms: match (b.started_at, b.completed_at) {
            (Some(s), Some(c)) => Some(c - s),
            _ => None,
        },
        progress: progress_doc.as_ref().map(progress),
        validation_state: b.validation_state.clone(),
        validation_error: b.validation_error.clone(),
        validated_at: ts_opt(b.validated_at),
        table_rows: manifest.and_then(|m| m.tables),
    }
}
