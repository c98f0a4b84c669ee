//! Rows of the catalog. Timestamps are epoch milliseconds.

use strata_model::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub id: String,
    pub organization_id: String,
    pub name: Option<String>,
    /// SHA-256 of the token's plaintext.
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub default_branch: String,
    pub require_approval_for_deploy: bool,
    pub allow_foreign_key_constraints: bool,
    pub deletion_protected: bool,
    /// The throttle ratio (0–95) each deployment starts with.
    pub deploy_throttle_ratio: i64,
    /// Copy the migration framework's table rows with each deploy ("automatically copy migration
    /// data"); the table is `migration_table_name`, or the framework's own.
    pub automatic_migrations: bool,
    pub migration_framework: Option<String>,
    pub migration_table_name: Option<String>,
    /// A deploy's cut-over ends the transactions and queries in its way at once, instead of
    /// waiting for them (up to the platform's forced cut-over time).
    pub aggressive_cutover: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a branch is in its life. A branch is created `Pending`, becomes `Ready` once its instance
/// serves with the parent's schema, and `Failed` (with a reason) if provisioning cannot finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchState {
    Pending,
    Ready,
    Failed,
}

impl BranchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BranchState::Pending => "pending",
            BranchState::Ready => "ready",
            BranchState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(BranchState::Pending),
            "ready" => Some(BranchState::Ready),
            "failed" => Some(BranchState::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub parent_branch: Option<String>,
    pub production: bool,
    pub safe_migrations: bool,
    pub state: BranchState,
    /// Why provisioning failed, when `state` is `Failed`.
    pub error: Option<String>,
    /// The parent's schema when this branch was made (JSON list of CREATE statements): the base of
    /// later three-way deploys.
    pub base_schema: Option<String>,
    /// The loopback port of the branch's instance, kept stable across restarts when free.
    pub instance_port: Option<u16>,
    pub created_at: i64,
    pub updated_at: i64,
    pub schema_last_updated_at: Option<i64>,
    /// Where the branch's data came from; `None` for a branch made with its parent's schema only.
    pub data_source: Option<DataSource>,
}

/// The data a new branch starts with, besides its parent's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// Restored from this backup.
    Backup(String),
    /// The parent's data as of the moment the branch was made.
    Parent,
}

impl DataSource {
    pub fn encode(&self) -> String {
        match self {
            DataSource::Backup(id) => format!("backup:{id}"),
            DataSource::Parent => "parent".into(),
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parent" => Some(DataSource::Parent),
            _ => s
                .strip_prefix("backup:")
                .map(|id| DataSource::Backup(id.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Password {
    pub id: String,
    pub database_id: String,
    pub branch_id: String,
    pub name: String,
    pub role: Role,
    pub username: String,
    /// `SHA1(SHA1(plaintext))`.
    pub native_hash: Vec<u8>,
    /// `SHA256(SHA256(plaintext))`.
    pub sha2_hash: Vec<u8>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<i64>,
    /// IP ranges allowed to use the password (empty: any).
    pub cidrs: Vec<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A proposal to deploy a branch's schema changes into another branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub id: String,
    pub database_id: String,
    /// Per-database sequence number, as the API addresses it.
    pub number: i64,
    pub branch: String,
    pub into_branch: String,
    /// `open` or `closed`.
    pub state: String,
    pub notes: String,
    /// Who opened it (a service token id).
    pub actor: String,
    pub closed_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    /// Cut over as soon as the copy is in sync (false: a gated deploy waits for `apply`).
    pub auto_cutover: bool,
}

/// A deploy request's deployment: its place in the deploy queue and how far it got. `plan` and
/// `progress` are JSON documents of the deploy crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub database_id: String,
    pub deploy_request_id: String,
    pub deploy_request_number: i64,
    pub into_branch: String,
    /// PlanetScale's deployment states: `queued`, `in_progress`, `pending_cutover`,
    /// `in_progress_cutover`, `complete_pending_revert`, `in_progress_revert`, `complete_revert`,
    /// `in_progress_cancel`, `complete_cancel`, `cancelled`, `complete`, `complete_error`.
    pub state: String,
    pub instant: bool,
    pub auto_cutover: bool,
    /// 0..=95: how much the copy yields (PlanetScale's throttler scale).
    pub throttle_ratio: i64,
    pub plan: String,
    pub progress: String,
    pub error: Option<String>,
    pub actor: String,
    pub cutover_actor: Option<String>,
    pub cancelled_actor: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub cutover_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub revert_expires_at: Option<i64>,
    pub updated_at: i64,
    /// The changes as queued, JSON `[[object, statement, in_place], …]`: what the deployment must
    /// deploy, and the deploy request's record of it afterwards (empty for older deployments).
    pub changes: String,
    /// When a forced cut-over was asked for (`force-cutover`): its steps then end the queries
    /// and transactions in their way.
    pub force_cutover_requested_at: Option<i64>,
}

impl Deployment {
    /// States a deployment leaves only by itself finishing, being cancelled or reverted.
    pub fn is_active(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "complete" | "complete_error" | "complete_cancel" | "complete_revert" | "cancelled"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: String,
    pub deploy_request_id: String,
    /// `approved` or `commented`.
    pub state: String,
    pub body: String,
    pub actor: String,
    pub created_at: i64,
    /// For an approval, the digest of the changes it approved (`strata_model::changes_digest`):
    /// it stands only while the request's changes are still those.
    pub changes_digest: String,
}

/// A backup's life: `pending` (queued), `running`, then `success` or `failed`; `canceled` when its
/// branch went away first (PlanetScale's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    Pending,
    Running,
    Success,
    Failed,
    Canceled,
}

impl BackupState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Pending => "pending",
            BackupState::Running => "running",
            BackupState::Success => "success",
            BackupState::Failed => "failed",
            BackupState::Canceled => "canceled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => BackupState::Pending,
            "running" => BackupState::Running,
            "success" => BackupState::Success,
            "failed" => BackupState::Failed,
            "canceled" => BackupState::Canceled,
            _ => return None,
        })
    }
}

/// One physical backup of a branch. `manifest` and `progress` are JSON documents of the control
/// crate (per-table row counts at the backup point; the running phase and bytes copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: String,
    pub database_id: String,
    pub branch_id: String,
    pub name: String,
    pub state: BackupState,
    /// The schedule that made it; `None` for a manual backup.
    pub policy_id: Option<String>,
    /// The service token that asked for it.
    pub actor: Option<String>,
    /// Bytes in backup storage.
    pub size: i64,
    /// Protected backups are never deleted by retention.
    pub protected: bool,
    pub error: Option<String>,
    pub manifest: Option<String>,
    pub progress: Option<String>,
    /// `pending`, `running`, `passed` or `failed`: the restore check of a completed backup.
    pub validation_state: String,
    pub validation_error: Option<String>,
    pub validated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A backup schedule of a database: which branches (`production` or `development`), how often,
/// and how long its backups are kept. Units: `second`, `minute`, `hour`, `day`, `week`, `month`
/// (30 days), `year` (365 days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicy {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub target: String,
    pub frequency_value: i64,
    pub frequency_unit: String,
    pub retention_value: i64,
    pub retention_unit: String,
    pub last_ran_at: Option<i64>,
    pub next_run_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}
