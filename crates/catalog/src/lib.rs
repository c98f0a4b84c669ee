//! The catalog: Strata's metadata, behind the [`Catalog`] trait so that a server database can replace
//! the embedded SQLite store ([`SqliteCatalog`]) when the control plane runs on several nodes.
//!
//! The catalog keeps only hashes of secrets: service tokens as SHA-256, passwords as the two MySQL
//! verifier hashes.

mod migrations;
mod records;
mod sqlite;

pub use records::*;
pub use sqlite::SqliteCatalog;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("catalog storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("catalog schema is newer ({found}) than this build understands ({known})")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// Everything the control plane reads and writes about the platform's resources.
///
/// Methods are synchronous and short; callers on an async runtime may call them directly.
pub trait Catalog: Send + Sync {
    // Organizations
    fn create_organization(&self, org: &Organization) -> Result<()>;
    fn organization(&self, name: &str) -> Result<Organization>;
    fn organizations(&self) -> Result<Vec<Organization>>;

    // Service tokens
    fn create_service_token(&self, token: &ServiceToken) -> Result<()>;
    fn service_token(&self, id: &str) -> Result<ServiceToken>;
    fn service_tokens(&self, org_id: &str) -> Result<Vec<ServiceToken>>;
    fn delete_service_token(&self, id: &str) -> Result<()>;
    fn touch_service_token(&self, id: &str, at: i64) -> Result<()>;

    // Databases: a database is created together with its default branch, in one transaction.
    fn create_database(&self, db: &Database, default_branch: &Branch) -> Result<()>;
    fn database(&self, org_id: &str, name: &str) -> Result<Database>;
    fn database_by_id(&self, id: &str) -> Result<Database>;
    fn databases(&self, org_id: &str) -> Result<Vec<Database>>;
    fn update_database(&self, db: &Database) -> Result<()>;
    /// Deletes the database with its branches and passwords.
    fn delete_database(&self, id: &str) -> Result<()>;

    // Branches
    fn create_branch(&self, branch: &Branch) -> Result<()>;
    fn branch(&self, database_id: &str, name: &str) -> Result<Branch>;
    fn branch_by_id(&self, id: &str) -> Result<Branch>;
    fn branches(&self, database_id: &str) -> Result<Vec<Branch>>;
    /// Every branch of every database: what `strata up` brings back on start.
    fn all_branches(&self) -> Result<Vec<Branch>>;
    /// Everything but `schema_last_updated_at`, which only [`Catalog::touch_branch_schema`] sets.
    fn update_branch(&self, branch: &Branch) -> Result<()>;
    /// Records that the branch's schema changed at `at` (ms).
    fn touch_branch_schema(&self, id: &str, at: i64) -> Result<()>;
    /// Records the migration table's rows (JSON) a branch was made with.
    fn set_branch_migration_base(&self, branch_id: &str, rows: &str) -> Result<()>;
    /// The migration table's rows a branch was made with, if recorded.
    fn branch_migration_base(&self, branch_id: &str) -> Result<Option<String>>;
    /// Deletes the branch and its passwords.
    fn delete_branch(&self, id: &str) -> Result<()>;

    // Passwords
    fn create_password(&self, password: &Password) -> Result<()>;
    fn password(&self, branch_id: &str, id: &str) -> Result<Password>;
    fn password_by_username(&self, username: &str) -> Result<Password>;
    fn passwords_of_branch(&self, branch_id: &str) -> Result<Vec<Password>>;
    fn passwords_of_database(&self, database_id: &str) -> Result<Vec<Password>>;
    fn update_password(&self, password: &Password) -> Result<()>;
    fn delete_password(&self, id: &str) -> Result<()>;

    // Deploy requests: numbered per database, in order.
    /// Inserts with the next number of the database; returns the request as stored.
    fn create_deploy_request(&self, request: &DeployRequest) -> Result<DeployRequest>;
    fn deploy_request(&self, database_id: &str, number: i64) -> Result<DeployRequest>;
    fn deploy_requests(&self, database_id: &str) -> Result<Vec<DeployRequest>>;
    fn update_deploy_request(&self, request: &DeployRequest) -> Result<()>;
    fn add_review(&self, review: &Review) -> Result<()>;
    fn reviews(&self, deploy_request_id: &str) -> Result<Vec<Review>>;

    // Deployments: at most one per deploy request (a new attempt replaces a finished one).
    fn save_deployment(&self, deployment: &Deployment) -> Result<()>;
    /// Writes only a deployment's progress, and only while it is in `state`: false when it has
    /// moved on (cancelled, say), so a worker never overwrites a state it did not set.
    fn save_deployment_progress(
        &self,
        deploy_request_id: &str,
        state: &str,
        progress: &str,
        updated_at: i64,
    ) -> Result<bool>;
    /// Marks the deployment's next cut-over (or revert) as forced, at `at`; only this writes that
    /// mark, so a step saving the deployment never loses it. False: no deployment.
    fn request_force_cutover(&self, deploy_request_id: &str, at: i64) -> Result<bool>;
    fn deployment(&self, deploy_request_id: &str) -> Result<Deployment>;
    /// A database's deployments, oldest queued first.
    fn deployments(&self, database_id: &str) -> Result<Vec<Deployment>>;
    /// Every deployment not yet finished, oldest queued first: the deploy queues' work.
    fn active_deployments(&self) -> Result<Vec<Deployment>>;

    // Backups
    fn create_backup(&self, backup: &Backup) -> Result<()>;
    fn backup(&self, id: &str) -> Result<Backup>;
    /// A branch's backups, newest first.
    fn backups_of_branch(&self, branch_id: &str) -> Result<Vec<Backup>>;
    fn all_backups(&self) -> Result<Vec<Backup>>;
    fn update_backup(&self, backup: &Backup) -> Result<()>;
    /// Writes only a backup's progress, and only while it is running.
    fn save_backup_progress(&self, id: &str, progress: &str, updated_at: i64) -> Result<bool>;
    fn delete_backup(&self, id: &str) -> Result<()>;
    /// Finished backups past `expires_at` at `now` that are neither protected nor being validated.
    fn expired_backups(&self, now: i64) -> Result<Vec<Backup>>;
    /// Sets only `protected` (a job's concurrent write of the rest stays).
    fn set_backup_protected(&self, id: &str, protected: bool, updated_at: i64) -> Result<()>;
    /// Branches whose data was restored from a backup.
    fn branches_restored_from(&self, backup_id: &str) -> Result<Vec<Branch>>;

    // Backup policies
    fn create_backup_policy(&self, policy: &BackupPolicy) -> Result<()>;
    fn backup_policy(&self, database_id: &str, id: &str) -> Result<BackupPolicy>;
    fn backup_policies(&self, database_id: &str) -> Result<Vec<BackupPolicy>>;
    fn all_backup_policies(&self) -> Result<Vec<BackupPolicy>>;
    fn update_backup_policy(&self, policy: &BackupPolicy) -> Result<()>;
    fn delete_backup_policy(&self, id: &str) -> Result<()>;
}
