//! The control plane: what `strata up` does for the API. It keeps the catalog and the running instances
//! in step:
//!
//! - a database is created with its `main` production branch; a branch is created `pending`, then a
//!   job provisions its instance from the template, copies the parent's schema (no data) and records
//!   that schema as the branch's base; the branch becomes `ready`;
//! - a job interrupted by a crash or restart is redone from scratch on the next start (a pending
//!   branch's instance directory is wiped and provisioned again), so no half-made branch is ever ready;
//! - deleting removes the catalog rows first and the instances after; directories left by a crash in
//!   between are removed on the next start.

mod backups;
mod deploy_requests;
mod deployments;
mod error;
mod passwords;

pub use backups::{unit_millis, BackupRequest, PolicyRequest};
pub use deploy_requests::{deployment_state_name, DeployRequestStatus, NewDeployRequest};
pub use error::{ControlError, Result};
pub use passwords::{
    expired as password_expired, Login, NewPassword, PasswordRequest, PasswordUpdate,
};
pub use strata_deploy::gate;

use error::not_found;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use strata_catalog::{Branch, BranchState, Catalog, Database, Organization, ServiceToken};
use strata_engine::supervisor::{self, InstanceSpec};
use strata_engine::{admin, Instance, InstanceStatus, SchemaObject, ServerBinaries};
use strata_model::{credentials, ids, names, timefmt::now_millis};
use tokio::task::JoinHandle;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where clients reach the platform; goes into connection details.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Host and port of the MySQL gateway, as clients should dial it.
    pub mysql_host: String,
    pub mysql_port: u16,
    /// Port of the HTTP SQL endpoint (same host as the gateway).
    pub http_port: u16,
    /// How long after a cut-over a deploy can be reverted.
    pub revert_window: std::time::Duration,
    /// How long a deployment's steps wait for long-running transactions to leave their tables
    /// before they end them (forced cut-over; PlanetScale: an hour).
    pub force_cutover_after: std::time::Duration,
    /// Where backups are staged, and stored unless `backup_s3` is set (on the instances' file
    /// system, restores are reflinks).
    pub backup_dir: PathBuf,
    /// S3-compatible object storage for backups.
    pub backup_s3: Option<strata_engine::backup::S3Settings>,
}

/// The organization a request acts in, established from its service token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: String,
    pub organization: String,
    pub token_id: String,
}

/// A service token with its plaintext, which exists only in the create response.
pub struct NewServiceToken {
    pub token: ServiceToken,
    pub plaintext: String,
}

/// What `strata up` creates on the very first start.
pub struct Bootstrap {
    pub organization: Organization,
    pub token: NewServiceToken,
}

/// The new branch's parent, or the database's default branch, and the data it starts with.
#[derive(Debug, Default, Clone)]
pub struct BranchRequest {
    pub name: String,
    pub parent_branch: Option<String>,
    /// Restore this backup into the branch.
    pub backup_id: Option<String>,
    pub seed_data: Option<SeedData>,
}

/// `seed_data` of a new branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedData {
    /// The parent's latest successful backup (PlanetScale's `last_successful_backup`).
    LastSuccessfulBackup,
    /// The parent's data as of now: a consistent snapshot of its running instance.
    Current,
}

pub struct Platform {
    me: Weak<Platform>,
    catalog: Arc<dyn Catalog>,
    binaries: Arc<ServerBinaries>,
    template: PathBuf,
    settings: Settings,
    instances: Mutex<HashMap<String, Arc<Instance>>>,
    jobs: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Held by deploy steps that change tables (cut-over, revert, cleanup): one at a time.
    deploy_lock: tokio::sync::Mutex<()>,
    /// Deployments with a driver task running.
    deploy_running: Mutex<std::collections::HashSet<String>>,
    deploy_wake: tokio::sync::Notify,
    /// Backup copies run one at a time.
    backup_slots: tokio::sync::Semaphore,
    /// Branches being filled with data (restore or snapshot): where they are.
    data_progress: Mutex<HashMap<String, strata_engine::backup::Progress>>,
    backup_store: strata_engine::backup::BackupStore,
    /// When each branch's server grants last changed (safe migrations switched): connections
    /// opened before read their database privileges again before they are used.
    grants_changed: Mutex<HashMap<String, std::time::Instant>>,
    /// Each branch's gate: deploy steps close it while they wait for a free table, the front doors
    /// hold new transactions while it is closed (see `strata_deploy::gate`).
    gates: Mutex<HashMap<String, Arc<strata_deploy::gate::Gate>>>,
    /// Passwords deleted (expiry 0) or renewed while `strata up` runs: their expiry now, which
    /// sessions logged in before read instead of the one they logged in with.
    password_changes: Mutex<HashMap<String, Option<i64>>>,
    any_password_changes: std::sync::atomic::AtomicBool,
}

/// The longest time to live a password or service token may have: 100 years (an expiry further
/// out would not fit the clock's milliseconds, and would be a mistake anyway).
pub const MAX_TTL_SECONDS: i64 = 100 * 365 * 24 * 3600;

pub(crate) fn check_ttl(ttl_seconds: i64) -> Result<()> {
    if ttl_seconds > MAX_TTL_SECONDS {
        return Err(ControlError::Invalid(format!(
            "ttl must be at most {MAX_TTL_SECONDS} seconds (100 years)"
        )));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn server_id(branch_id: &str) -> u32 {
    (crc32fast::hash(branch_id.as_bytes()) & 0x7fff_ffff) | 1
}

impl Platform {
    /// Opens the platform over a catalog; prepares the template datadir (first start only).
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        binaries: ServerBinaries,
        settings: Settings,
    ) -> Result<Arc<Self>> {
        let binaries = Arc::new(binaries);
        let backup_store = match &settings.backup_s3 {
            Some(s3) => strata_engine::backup::BackupStore::s3(s3, settings.backup_dir.clone())?,
            None => strata_engine::backup::BackupStore::local(settings.backup_dir.clone()),
        };
        let root = settings.data_dir.clone();
        let bins = binaries.clone();
        let template = tokio::task::spawn_blocking(move || {
            strata_engine::template::ensure_template(&bins, &root)
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))??;
        Ok(Arc::new_cyclic(|me| Platform {
            me: me.clone(),
            catalog,
            binaries,
            template,
            settings,
            instances: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            deploy_lock: tokio::sync::Mutex::new(()),
            deploy_running: Mutex::new(std::collections::HashSet::new()),
            deploy_wake: tokio::sync::Notify::new(),
            backup_slots: tokio::sync::Semaphore::new(1),
            data_progress: Mutex::new(HashMap::new()),
            backup_store,
            grants_changed: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            password_changes: Mutex::new(HashMap::new()),
            any_password_changes: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    fn arc(&self) -> Arc<Platform> {
        self.me
            .upgrade()
            .expect("platform is alive while its methods run")
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn server_description(&self) -> String {
        self.binaries.describe()
    }

    fn instances_dir(&self) -> PathBuf {
        self.settings.data_dir.join("instances")
    }

    // ---------------------------------------------------------------- start-up and shutdown

    /// First start: creates the default organization and an admin service token. Returns `None` when
    /// the catalog already has an organization.
    pub fn bootstrap(&self, organization: &str) -> Result<Option<Bootstrap>> {
        if !self.catalog.organizations()?.is_empty() {
            return Ok(None);
        }
        names::validate_organization_name(organization)?;
        let now = now_millis();
        let org = Organization {
            id: ids::public_id(),
            name: organization.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.catalog.create_organization(&org)?;
        let token = self.new_service_token(&org.id, Some("admin".to_string()))?;
        Ok(Some(Bootstrap {
            organization: org,
            token,
        }))
    }

    /// Brings back every branch: ready ones are started, pending ones provisioned again, and instance
    /// directories that no branch owns (a delete cut short) are removed.
    pub async fn resume(&self) -> Result<()> {
        let branches = self.catalog.all_branches()?;
        let known: std::collections::HashSet<_> = branches.iter().map(|b| b.id.clone()).collect();
        if let Ok(entries) = std::fs::read_dir(self.instances_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::warn!(dir = %e.path().display(), "removing an instance directory no branch owns");
                    let _ = supervisor::destroy(&e.path());
                }
            }
        }
        for b in branches {
            let db = self.catalog.database_by_id(&b.database_id)?;
            match b.state {
                BranchState::Ready => {
                    let spec = self.spec(&b, &db);
                    match Instance::start(self.binaries.clone(), spec) {
                        Ok(inst) => {
                            self.register_instance(&b.id, inst.clone());
                            self.persist_port_when_ready(b.id.clone(), inst);
                        }
                        Err(e) => {
                            tracing::error!(branch = %b.name, error = %e, "cannot start instance")
                        }
                    }
                }
                BranchState::Pending => {
                    tracing::info!(database = %db.name, branch = %b.name, "provisioning a branch left pending");
                    self.spawn_provision(b, db);
                }
                BranchState::Failed => {}
            }
        }
        self.start_deploy_worker();
        self.resume_backups()?;
        self.start_backup_scheduler();
        Ok(())
    }

    /// Stops every job and instance, cleanly.
    pub async fn shutdown(&self) {
        let jobs: Vec<_> = lock(&self.jobs).drain().collect();
        for (_, j) in jobs {
            j.abort();
            let _ = j.await;
        }
        // A cut-over or revert in flight finishes first: a server stopped in the middle of its
        // RENAME can be left with a broken trigger file (see the supervisor).
        let _deploys = tokio::time::timeout(Duration::from_secs(30), self.deploy_lock.lock()).await;
        let instances: Vec<_> = lock(&self.instances).drain().map(|(_, i)| i).collect();
        let mut stops = tokio::task::JoinSet::new();
        for inst in instances {
            stops.spawn(async move { inst.stop().await });
        }
        while stops.join_next().await.is_some() {}
    }

    // ---------------------------------------------------------------- authentication and organizations

    /// Checks a service token (`id`, plaintext) and returns the organization it acts for.
    pub fn authenticate(&self, token_id: &str, token: &str) -> Result<Caller> {
        let bad = || {
            ControlError::Unauthorized("the service token is invalid or has been deleted".into())
        };
        let record = self.catalog.service_token(token_id).map_err(|_| bad())?;
        if !credentials::hashes_equal(&record.token_hash, &credentials::token_hash(token)) {
            return Err(bad());
        }
        let now = now_millis();
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(ControlError::Unauthorized(
                "the service token has expired".into(),
            ));
        }
        let org = self
            .catalog
            .organizations()?
            .into_iter()
            .find(|o| o.id == record.organization_id)
            .ok_or_else(bad)?;
        // Last-used is informative; a failed write must not fail the request.
        if record.last_used_at.is_none_or(|t| now - t > 60_000) {
            let _ = self.catalog.touch_service_token(token_id, now);
        }
        Ok(Caller {
            organization_id: org.id,
            organization: org.name,
            token_id: record.id,
        })
    }

    /// The organizations the caller can see (its own).
    pub fn organizations(&self, caller: &Caller) -> Result<Vec<Organization>> {
        Ok(self
            .catalog
            .organizations()?
            .into_iter()
            .filter(|o| o.id == caller.organization_id)
            .collect())
    }

    /// The named organization, if the caller belongs to it (else not found, as PlanetScale answers).
    pub fn organization(&self, caller: &Caller, name: &str) -> Result<Organization> {
        match self.catalog.organization(name) {
            Ok(o) if o.id == caller.organization_id => Ok(o),
            _ => Err(not_found("Organization", name)),
        }
    }

    pub fn database_count(&self, org: &Organization) -> Result<usize> {
        Ok(self.catalog.databases(&org.id)?.len())
    }

    // ---------------------------------------------------------------- service tokens

    fn new_service_token(&self, org_id: &str, name: Option<String>) -> Result<NewServiceToken> {
        if let Some(n) = &name {
            names::validate_display_name("Service token", n)?;
        }
        let plaintext = ids::new_service_token_secret();
        let token = ServiceToken {
            id: ids::public_id(),
            organization_id: org_id.to_string(),
            name,
            token_hash: credentials::token_hash(&plaintext).to_vec(),
            created_at: now_millis(),
            last_used_at: None,
            expires_at: None,
        };
        self.catalog.create_service_token(&token)?;
        Ok(NewServiceToken { token, plaintext })
    }

    pub fn create_service_token(
        &self,
        caller: &Caller,
        org: &str,
        name: Option<String>,
        ttl_seconds: Option<i64>,
    ) -> Result<NewServiceToken> {
        let org = self.organization(caller, org)?;
        if ttl_seconds.is_some_and(|t| t <= 0) {
            return Err(ControlError::Invalid(
                "ttl must be a positive number of seconds".into(),
            ));
        }
        if let Some(t) = ttl_seconds {
            check_ttl(t)?;
        }
        let mut t = self.new_service_token(&org.id, name)?;
        if let Some(ttl) = ttl_seconds {
            t.token.expires_at = Some(t.token.created_at + ttl * 1000);
            self.catalog.delete_service_token(&t.token.id)?;
            self.catalog.create_service_token(&t.token)?;
        }
        Ok(t)
    }

    pub fn service_tokens(&self, caller: &Caller, org: &str) -> Result<Vec<ServiceToken>> {
        let org = self.organization(caller, org)?;
        Ok(self.catalog.service_tokens(&org.id)?)
    }

    pub fn service_token(&self, caller: &Caller, org: &str, id: &str) -> Result<ServiceToken> {
        let org = self.organization(caller, org)?;
        match self.catalog.service_token(id) {
            Ok(t) if t.organization_id == org.id => Ok(t),
            _ => Err(not_found("Service token", id)),
        }
    }

    pub fn delete_service_token(&self, caller: &Caller, org: &str, id: &str) -> Result<()> {
        let t = self.service_token(caller, org, id)?;
        Ok(self.catalog.delete_service_token(&t.id)?)
    }

    // ---------------------------------------------------------------- databases

    pub fn databases(&self, caller: &Caller, org: &str) -> Result<Vec<Database>> {
        let org = self.organization(caller, org)?;
        Ok(self.catalog.databases(&org.id)?)
    }

    pub fn database(&self, caller: &Caller, org: &str, name: &str) -> Result<Database> {
        let org = self.organization(caller, org)?;
        self.catalog
            .database(&org.id, name)
            .map_err(|_| not_found("Database", name))
    }

    /// Creates a database and starts provisioning its `main` production branch.
    pub fn create_database(&self, caller: &Caller, org: &str, name: &str) -> Result<Database> {
        let org = self.organization(caller, org)?;
        names::validate_database_name(name)?;
        let now = now_millis();
        let db = Database {
            id: ids::public_id(),
            organization_id: org.id.clone(),
            name: name.to_string(),
            default_branch: "main".into(),
            require_approval_for_deploy: false,
            allow_foreign_key_constraints: false,
            deletion_protected: false,
            deploy_throttle_ratio: 0,
            automatic_migrations: false,
            migration_framework: None,
            migration_table_name: None,
            aggressive_cutover: false,
            created_at: now,
            updated_at: now,
        };
        let main = Branch {
            id: ids::public_id(),
            database_id: db.id.clone(),
            name: "main".into(),
            parent_branch: None,
            production: true,
            safe_migrations: false,
            state: BranchState::Pending,
            error: None,
            base_schema: None,
            instance_port: Some(supervisor::pick_port()?),
            created_at: now,
            updated_at: now,
            schema_last_updated_at: None,
            data_source: None,
        };
        self.catalog
            .create_database(&db, &main)
            .map_err(|e| match e {
                strata_catalog::CatalogError::AlreadyExists { .. } => {
                    ControlError::Conflict(format!(
                        "Database '{name}' already exists in organization '{}'",
                        org.name
                    ))
                }
                other => other.into(),
            })?;
        self.spawn_provision(main, db.clone());
        Ok(db)
    }

    pub fn update_database(
        &self,
        caller: &Caller,
        org: &str,
        name: &str,
        update: DatabaseUpdate,
    ) -> Result<Database> {
        let mut db = self.database(caller, org, name)?;
        if let Some(b) = update.default_branch {
            self.catalog
                .branch(&db.id, &b)
                .map_err(|_| not_found("Branch", &b))?;
            db.default_branch = b;
        }
        if let Some(v) = update.require_approval_for_deploy {
            db.require_approval_for_deploy = v;
        }
        if let Some(v) = update.allow_foreign_key_constraints {
            db.allow_foreign_key_constraints = v;
        }
        if let Some(v) = update.deletion_protected {
            db.deletion_protected = v;
        }
        if let Some(v) = update.aggressive_cutover {
            db.aggressive_cutover = v;
        }
        let invalid = |e: strata_model::migration_data::MigrationDataError| {
            ControlError::Invalid(e.to_string())
        };
        if let Some(f) = update.migration_framework {
            db.migration_framework = if f.is_empty() {
                None
            } else {
                Some(
                    strata_model::migration_data::framework(&f)
                        .map_err(invalid)?
                        .to_string(),
                )
            };
        }
        if let Some(t) = update.migration_table_name {
            db.migration_table_name = if t.is_empty() {
                None
            } else {
                strata_model::migration_data::validate_table(&t).map_err(invalid)?;
                Some(t)
            };
        }
        if let Some(v) = update.automatic_migrations {
            db.automatic_migrations = v;
        }
        if db.automatic_migrations
            && strata_model::migration_data::table(
                db.migration_framework.as_deref(),
                db.migration_table_name.as_deref(),
            )
            .is_none()
        {
            return Err(invalid(
                strata_model::migration_data::MigrationDataError::NoTable,
            ));
        }
        db.updated_at = now_millis();
        self.catalog.update_database(&db)?;
        Ok(db)
    }

    /// Deletes a database: its catalog rows at once, then its instances and their files.
    pub async fn delete_database(&self, caller: &Caller, org: &str, name: &str) -> Result<()> {
        let db = self.database(caller, org, name)?;
        if db.deletion_protected {
            return Err(ControlError::Unprocessable(format!(
                "Database '{name}' has deletion protection enabled; disable it before deleting the database"
            )));
        }
        let branches = self.catalog.branches(&db.id)?;
        let mut backups = Vec::new();
        for b in &branches {
            backups.extend(self.catalog.backups_of_branch(&b.id)?);
        }
        if let Some(p) = backups.iter().find(|b| b.protected) {
            return Err(ControlError::Unprocessable(format!(
                "Database '{name}' has protected backups (e.g. '{}'); unprotect them before deleting the database",
                p.id
            )));
        }
        self.catalog.delete_database(&db.id)?;
        // Backups first: a backup running against an instance holds it up.
        for bk in backups {
            self.drop_backup_job_and_files(&bk.id).await;
        }
        for b in branches {
            self.teardown(&b.id).await;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- branches

    pub fn branches(&self, caller: &Caller, org: &str, db: &str) -> Result<Vec<Branch>> {
        let db = self.database(caller, org, db)?;
        Ok(self.catalog.branches(&db.id)?)
    }

    /// A database and one of its branches, or not found.
    fn database_and_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<(Database, Branch)> {
        let database = self.database(caller, org, db)?;
        let branch = self
            .catalog
            .branch(&database.id, name)
            .map_err(|_| not_found("Branch", name))?;
        Ok((database, branch))
    }

    /// Branches of a database the caller already holds.
    pub fn branches_of(&self, db: &Database) -> Result<Vec<Branch>> {
        Ok(self.catalog.branches(&db.id)?)
    }

    pub fn branch(&self, caller: &Caller, org: &str, db: &str, name: &str) -> Result<Branch> {
        Ok(self.database_and_branch(caller, org, db, name)?.1)
    }

    /// The live state of a branch's instance, if it has one.
    pub fn instance_status(&self, branch_id: &str) -> Option<InstanceStatus> {
        lock(&self.instances).get(branch_id).map(|i| i.status())
    }

    /// The instance of a branch (for internal users such as the gateway).
    /// Keeps a branch's running instance, with its passwords' server users to maintain.
    fn register_instance(&self, branch_id: &str, inst: Arc<Instance>) {
        lock(&self.instances).insert(branch_id.to_string(), inst);
        self.password_users_changed(branch_id);
    }

    /// Tells the branch's instance which passwords it has now (see
    /// [`Instance::set_password_users`]).
    pub(crate) fn password_users_changed(&self, branch_id: &str) {
        let Some(inst) = self.instance(branch_id) else {
            return;
        };
        match self.catalog.passwords_of_branch(branch_id) {
            Ok(passwords) => inst.set_password_users(
                passwords
                    .into_iter()
                    .map(|p| strata_engine::PasswordUser {
                        id: p.id,
                        role: p.role,
                        expires_at: p.expires_at,
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(branch = %branch_id, error = %e, "passwords not read for the instance")
            }
        }
    }

    pub fn instance(&self, branch_id: &str) -> Option<Arc<Instance>> {
        lock(&self.instances).get(branch_id).cloned()
    }

    /// Creates a development branch from a parent (default: the database's default branch). The branch
    /// is returned pending; a job makes it ready.
    pub fn create_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        req: BranchRequest,
    ) -> Result<Branch> {
        let db = self.database(caller, org, db)?;
        names::validate_branch_name(&req.name)?;
        let restore = match &req.backup_id {
            Some(id) => Some(self.restorable(&db.id, id)?),
            None => None,
        };
        let parent_name = match (&req.parent_branch, &restore) {
            (Some(p), _) => p.clone(),
            // A restored branch descends from the branch its backup was taken of.
            (None, Some(bk)) => self.catalog.branch_by_id(&bk.branch_id)?.name,
            (None, None) => db.default_branch.clone(),
        };
        let parent = self.catalog.branch(&db.id, &parent_name).map_err(|_| {
            ControlError::NotFound(format!("Parent branch '{parent_name}' not found"))
        })?;
        let data_source = match (restore, req.seed_data) {
            (Some(_), Some(_)) => {
                return Err(ControlError::Invalid(
                    "give either backup_id or seed_data, not both".into(),
                ))
            }
            (Some(bk), None) => Some(strata_catalog::DataSource::Backup(bk.id)),
            (None, Some(SeedData::LastSuccessfulBackup)) => {
                let last = self
                    .catalog
                    .backups_of_branch(&parent.id)?
                    .into_iter()
                    // The newest that passed validation; else the newest not known bad.
                    .filter(|b| {
                        b.state == strata_catalog::BackupState::Success
                            && b.validation_state != "failed"
                    })
                    .max_by_key(|b| (b.validation_state == "passed", b.created_at))
                    .ok_or_else(|| {
                        ControlError::Unprocessable(format!(
                            "Branch '{parent_name}' has no successful backup to seed data from"
                        ))
                    })?;
                Some(strata_catalog::DataSource::Backup(last.id))
            }
            (None, Some(SeedData::Current)) => Some(strata_catalog::DataSource::Parent),
            (None, None) => None,
        };
        let restoring = matches!(data_source, Some(strata_catalog::DataSource::Backup(_)));
        if parent.state != BranchState::Ready && !restoring {
            return Err(ControlError::Unprocessable(format!(
                "Parent branch '{parent_name}' is not ready yet; try again when it is"
            )));
        }
        if self.catalog.branch(&db.id, &req.name).is_ok() {
            return Err(ControlError::Conflict(format!(
                "Branch '{}' already exists in database '{}'",
                req.name, db.name
            )));
        }
        let now = now_millis();
        let branch = Branch {
            id: ids::public_id(),
            database_id: db.id.clone(),
            name: req.name.clone(),
            parent_branch: Some(parent.name),
            production: false,
            safe_migrations: false,
            state: BranchState::Pending,
            error: None,
            base_schema: None,
            instance_port: Some(supervisor::pick_port()?),
            created_at: now,
            updated_at: now,
            schema_last_updated_at: None,
            data_source,
        };
        self.catalog.create_branch(&branch).map_err(|e| match e {
            strata_catalog::CatalogError::AlreadyExists { .. } => ControlError::Conflict(format!(
                "Branch '{}' already exists in database '{}'",
                req.name, db.name
            )),
            other => other.into(),
        })?;
        self.spawn_provision(branch.clone(), db);
        Ok(branch)
    }

    /// Deletes a branch (and, if asked, its descendants). The default branch and production branches
    /// with safe migrations on are refused.
    pub async fn delete_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
        delete_descendants: bool,
    ) -> Result<()> {
        let db = self.database(caller, org, db)?;
        let branch = self
            .catalog
            .branch(&db.id, name)
            .map_err(|_| not_found("Branch", name))?;
        if db.default_branch == branch.name {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{name}' is the default branch of database '{}' and cannot be deleted",
                db.name
            )));
        }
        let all = self.catalog.branches(&db.id)?;
        let mut doomed = vec![branch];
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i].name.clone();
            for b in all
                .iter()
                .filter(|b| b.parent_branch.as_deref() == Some(parent.as_str()))
            {
                if !delete_descendants {
                    return Err(ControlError::Unprocessable(format!(
                        "Branch '{name}' has child branches (e.g. '{}'); delete them first or pass delete_descendants",
                        b.name
                    )));
                }
                if !doomed.iter().any(|d| d.id == b.id) {
                    doomed.push(b.clone());
                }
            }
            i += 1;
        }
        for b in &doomed {
            if b.name == db.default_branch {
                return Err(ControlError::Unprocessable(format!(
                    "Branch '{}' is the default branch and cannot be deleted",
                    b.name
                )));
            }
            if b.production && b.safe_migrations {
                return Err(ControlError::Unprocessable(format!(
                    "Branch '{}' is a production branch with safe migrations enabled; disable safe migrations before deleting it",
                    b.name
                )));
            }
        }
        for b in &doomed {
            if let Some(p) = self
                .catalog
                .backups_of_branch(&b.id)?
                .into_iter()
                .find(|x| x.protected)
            {
                return Err(ControlError::Unprocessable(format!(
                    "Branch '{}' has protected backups (e.g. '{}'); unprotect them before deleting the branch",
                    b.name, p.id
                )));
            }
        }
        for b in doomed.iter().rev() {
            let backups = self.catalog.backups_of_branch(&b.id)?;
            self.catalog.delete_branch(&b.id)?;
            self.teardown(&b.id).await;
            for bk in backups {
                self.drop_backup_job_and_files(&bk.id).await;
            }
            // Its open deploy requests close with it (a branch made again under the name starts
            // afresh); one whose deployment is under way keeps going on its stored plan.
            for mut r in self.catalog.deploy_requests(&db.id)? {
                let deploying = self.catalog.deployment(&r.id).is_ok_and(|d| d.is_active());
                if r.branch == b.name && r.state == "open" && !deploying {
                    let now = now_millis();
                    r.state = "closed".into();
                    r.closed_at = Some(now);
                    r.closed_by = Some(caller.token_id.clone());
                    r.updated_at = now;
                    self.catalog.update_deploy_request(&r)?;
                }
            }
        }
        Ok(())
    }

    pub async fn promote_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Branch> {
        let mut b = self.branch(caller, org, db, name)?;
        if b.state != BranchState::Ready {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{name}' is not ready and cannot be promoted"
            )));
        }
        if !b.production {
            self.set_production(&mut b, true).await?;
        }
        Ok(b)
    }

    pub async fn demote_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Branch> {
        let (database, mut b) = self.database_and_branch(caller, org, db, name)?;
        if b.production {
            let others = self
                .catalog
                .branches(&database.id)?
                .into_iter()
                .filter(|x| x.production && x.id != b.id)
                .count();
            if others == 0 {
                return Err(ControlError::Unprocessable(
                    "Databases must have at least one production branch; promote another branch first".into(),
                ));
            }
            if database.default_branch == b.name {
                return Err(ControlError::Unprocessable(format!(
                    "Branch '{name}' is the default branch; make another production branch the default first"
                )));
            }
            self.set_production(&mut b, false).await?;
        }
        Ok(b)
    }

    /// Records the branch kind and resizes its instance live (the option file follows at next start).
    async fn set_production(&self, b: &mut Branch, production: bool) -> Result<()> {
        b.production = production;
        b.updated_at = now_millis();
        self.catalog.update_branch(b)?;
        if let Some(inst) = self.instance(&b.id) {
            if let Err(e) = inst.set_production(production).await {
                tracing::warn!(branch = %b.name, error = %e, "new sizing applies at the next restart");
            }
        }
        Ok(())
    }

    /// Safe migrations on or off: the server's grants first (an admin password then cannot change
    /// the schema whatever the SQL looks like), then the flag the gateway reads for its errors.
    pub async fn set_safe_migrations(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
        on: bool,
    ) -> Result<Branch> {
        let mut b = self.branch(caller, org, db, name)?;
        if b.safe_migrations != on {
            if let Some(inst) = self.instance(&b.id) {
                if inst.status().state == strata_engine::InstanceState::Running {
                    inst.set_safe_migrations(on).await?;
                }
            }
            b.safe_migrations = on;
            b.updated_at = now_millis();
            self.catalog.update_branch(&b)?;
            lock(&self.grants_changed).insert(b.id.clone(), std::time::Instant::now());
        }
        Ok(b)
    }

    /// The branch's gate (made on first use).
    pub fn gate(&self, branch_id: &str) -> Arc<strata_deploy::gate::Gate> {
        lock(&self.gates)
            .entry(branch_id.to_string())
            .or_default()
            .clone()
    }

    /// When the branch's server grants last changed while `strata up` ran.
    pub fn grants_changed_at(&self, branch_id: &str) -> Option<std::time::Instant> {
        lock(&self.grants_changed).get(branch_id).copied()
    }

    /// The branch's schema now, as its instance prints it (tables, views, sequences; name order).
    pub async fn branch_schema(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Vec<SchemaObject>> {
        let (database, b) = self.database_and_branch(caller, org, db, name)?;
        self.schema_in(&database, &b).await
    }

    /// An admin connection to the branch's instance, in the database's schema.
    pub(crate) async fn connect_branch(
        &self,
        database: &Database,
        b: &Branch,
    ) -> Result<strata_engine::mysql_async::Conn> {
        use strata_engine::mysql_async::prelude::Queryable;
        let inst = self.instance(&b.id).ok_or_else(|| {
            ControlError::Unprocessable(format!("Branch '{}' is not ready", b.name))
        })?;
        let mut conn = inst.connect().await.map_err(|e| {
            ControlError::Unprocessable(format!(
                "Branch '{}' is not serving right now: {e}",
                b.name
            ))
        })?;
        conn.query_drop(format!(
            "USE {}",
            strata_model::role::quote_ident(&database.name)
        ))
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        Ok(conn)
    }

    /// The schema of a branch the caller already holds.
    pub(crate) async fn schema_in(
        &self,
        database: &Database,
        b: &Branch,
    ) -> Result<Vec<SchemaObject>> {
        let mut conn = self.connect_branch(database, b).await?;
        let objects = admin::read_schema(&mut conn, &database.name).await?;
        let _ = conn.disconnect().await;
        Ok(objects)
    }

    /// A schema object's statement as a person reads it in the branch's schema: without the
    /// table's `AUTO_INCREMENT=n` counter or the view's `DEFINER` (an internal user), neither of
    /// which is schema.
    pub fn shown_statement(o: &SchemaObject) -> String {
        match o.kind {
            admin::ObjectKind::Table => admin::strip_auto_increment(&o.create),
            admin::ObjectKind::View => strata_schema::without_definer(&o.create),
            admin::ObjectKind::Sequence => o.create.clone(),
        }
    }

    /// What the branch changed against its parent: per table or view, the statements that take the
    /// parent's schema to the branch's.
    pub async fn branch_diff(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Vec<strata_schema::Change>> {
        let branch = self.branch(caller, org, db, name)?;
        let parent = branch.parent_branch.clone().ok_or_else(|| {
            ControlError::Unprocessable(format!(
                "Branch '{name}' has no parent branch to compare with"
            ))
        })?;
        let to = model(self.branch_schema(caller, org, db, name).await?)?;
        let from = model(self.branch_schema(caller, org, db, &parent).await?)?;
        let unreadable = |e: strata_schema::SchemaError| ControlError::Unprocessable(e.to_string());
        if branch.base_schema.is_none() {
            return strata_schema::changes(&from, &to).map_err(unreadable);
        }
        // The branch's own changes, as its deploy request would carry them: what the parent
        // changed since the branch was made is not shown as the branch undoing it.
        let base = model(Platform::base_schema(&branch))?;
        let merge = strata_schema::merge::three_way(&base, &to, &from, &parent);
        let mut changes = strata_schema::changes(&from, &merge.result).map_err(unreadable)?;
        if !merge.conflicted.is_empty() {
            let own = strata_schema::changes(&base, &to).map_err(unreadable)?;
            changes.extend(
                own.into_iter()
                    .filter(|c| merge.conflicted.contains(&c.object)),
            );
        }
        Ok(changes)
    }

    /// Deployability findings for a branch: its schema (charsets, engines, keys, foreign keys against
    /// the database's setting), what it changes against its parent, and objects deploys cannot carry
    /// (triggers, stored routines, events).
    pub async fn branch_lint(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Vec<strata_schema::lint::Finding>> {
        use strata_engine::mysql_async::prelude::Queryable;
        use strata_schema::lint::{Finding, Severity};
        let (database, branch) = self.database_and_branch(caller, org, db, name)?;
        let schema = model(self.branch_schema(caller, org, db, name).await?)?;
        let mut out = strata_schema::lint::lint(&schema, database.allow_foreign_key_constraints);
        if let Some(parent) = &branch.parent_branch {
            let from = model(self.branch_schema(caller, org, db, parent).await?)?;
            let changes = strata_schema::changes(&from, &schema)
                .map_err(|e| ControlError::Unprocessable(e.to_string()))?;
            out.extend(strata_schema::lint::lint_changes(&from, &schema, &changes));
        }
        if let Some(inst) = self.instance(&branch.id) {
            let mut conn = inst.connect().await?;
            let q = |what: &str, table: &str, schema_col: &str| {
                format!("SELECT {what}, {table} FROM information_schema.{schema_col}")
            };
            let checks = [
                (
                    "UNSUPPORTED_TRIGGER",
                    "trigger",
                    q(
                        "TRIGGER_NAME",
                        "EVENT_OBJECT_TABLE",
                        "TRIGGERS WHERE TRIGGER_SCHEMA = ?",
                    ),
                ),
                (
                    "UNSUPPORTED_ROUTINE",
                    "stored routine",
                    q("ROUTINE_NAME", "''", "ROUTINES WHERE ROUTINE_SCHEMA = ?"),
                ),
                (
                    "UNSUPPORTED_EVENT",
                    "event",
                    q("EVENT_NAME", "''", "EVENTS WHERE EVENT_SCHEMA = ?"),
                ),
            ];
            for (code, kind, sql) in checks {
                let rows: Vec<(String, String)> = conn
                    .exec(sql, (database.name.clone(),))
                    .await
                    .map_err(strata_engine::EngineError::from)?;
                for (object, table) in rows {
                    out.push(Finding {
                        code,
                        severity: Severity::Error,
                        table,
                        column: None,
                        charset: None,
                        engine: None,
                        foreign_key_columns: Vec::new(),
                        description: format!("The {kind} `{object}` cannot be deployed: triggers, stored routines and events are not supported"),
                    });
                }
            }
            // Views that no longer work (a table or column they read gone): a deploy request
            // carrying them is refused, so the lint says so first.
            for v in schema.views.keys() {
                let probe = format!(
                    "SELECT * FROM {} LIMIT 0",
                    strata_model::role::quote_ident(v)
                );
                if let Err(strata_engine::mysql_async::Error::Server(e)) =
                    conn.query_drop(probe).await
                {
                    out.push(Finding {
                        code: "BROKEN_VIEW",
                        severity: Severity::Error,
                        table: v.clone(),
                        column: None,
                        charset: None,
                        engine: None,
                        foreign_key_columns: Vec::new(),
                        description: format!("The view `{v}` does not work: {}", e.message),
                    });
                }
            }
            let _ = conn.disconnect().await;
        }
        Ok(out)
    }

    /// Brings a branch up to date with its parent: the parent's changes since the branch's base are
    /// applied to the branch (keeping the branch's own changes), and the parent's current schema
    /// becomes the new base. Refused, with the reasons, when the two sides conflict.
    pub async fn rebase_branch(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        name: &str,
    ) -> Result<Branch> {
        let (database, mut branch) = self.database_and_branch(caller, org, db, name)?;
        let parent = branch.parent_branch.clone().ok_or_else(|| {
            ControlError::Unprocessable(format!(
                "Branch '{name}' has no parent branch to rebase onto"
            ))
        })?;
        let base = model(Platform::base_schema(&branch))?;
        let ours = model(self.branch_schema(caller, org, db, name).await?)?;
        let parent_objects = self.branch_schema(caller, org, db, &parent).await?;
        let target = model(parent_objects.clone())?;
        let merge = strata_schema::merge::three_way(&base, &ours, &target, &parent);
        let mut problems = merge.conflicts.clone();
        problems.extend(merge.invalid.iter().cloned());
        if !problems.is_empty() {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{name}' cannot be rebased onto '{parent}': {}",
                problems.join("; ")
            )));
        }
        let statements = strata_schema::diff(&ours, &merge.result)
            .map_err(|e| ControlError::Unprocessable(e.to_string()))?;
        if !statements.is_empty() {
            use strata_engine::mysql_async::prelude::Queryable;
            let inst = self.instance(&branch.id).ok_or_else(|| {
                ControlError::Unprocessable(format!("Branch '{name}' is not ready"))
            })?;
            let mut conn = inst.connect().await?;
            conn.query_drop(format!(
                "USE {}",
                strata_model::role::quote_ident(&database.name)
            ))
            .await
            .map_err(strata_engine::EngineError::from)?;
            conn.query_drop("SET SESSION foreign_key_checks = 0")
                .await
                .map_err(strata_engine::EngineError::from)?;
            for s in &statements {
                conn.query_drop(s).await.map_err(|e| {
                    ControlError::Unprocessable(format!(
                        "Branch '{name}' could not take the change `{s}`: {e}"
                    ))
                })?;
            }
            let _ = conn.disconnect().await;
        }
        branch.base_schema = Some(
            serde_json::to_string(&parent_objects)
                .map_err(|e| ControlError::Internal(e.to_string()))?,
        );
        branch.updated_at = now_millis();
        branch.schema_last_updated_at = Some(branch.updated_at);
        self.catalog.update_branch(&branch)?;
        self.catalog
            .touch_branch_schema(&branch.id, branch.updated_at)?;
        Ok(branch)
    }

    /// After DDL a password ran on a branch: views it made name the admin role's shared user as
    /// definer, not the password's own (see `admin::VIEW_DEFINER`). Failures are only logged: the
    /// view works on its branch meanwhile, and branches made from it are fixed as they are made.
    pub fn after_password_ddl(self: &Arc<Self>, branch_id: &str) {
        self.schema_changed(branch_id);
        let Some(inst) = self.instance(branch_id) else {
            return;
        };
        let schema = self
            .catalog
            .branch_by_id(branch_id)
            .and_then(|b| self.catalog.database_by_id(&b.database_id))
            .map(|d| d.name);
        let Ok(schema) = schema else { return };
        tokio::spawn(async move {
            if let Err(e) = portable_view_definers(&inst, &schema).await {
                tracing::warn!(error = %e, "view definers not made portable");
            }
        });
    }

    /// The branch's schema as recorded when it was made (its base for three-way deploys).
    pub fn base_schema(branch: &Branch) -> Vec<SchemaObject> {
        branch
            .base_schema
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    // ---------------------------------------------------------------- jobs

    fn spec(&self, b: &Branch, db: &Database) -> InstanceSpec {
        InstanceSpec {
            id: b.id.clone(),
            dir: self.instances_dir().join(&b.id),
            schema: db.name.clone(),
            production: b.production,
            safe_migrations: b.safe_migrations,
            port: b.instance_port.unwrap_or(0),
            server_id: server_id(&b.id),
        }
    }

    fn spawn_provision(&self, branch: Branch, db: Database) {
        let me = self.arc();
        let id = branch.id.clone();
        let mut jobs = lock(&self.jobs);
        let job = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = me.provision(&branch, &db).await;
            let mut b = match me.catalog.branch_by_id(&branch.id) {
                Ok(b) => b,
                Err(_) => return, // deleted meanwhile
            };
            match outcome {
                Ok(base) => {
                    b.state = BranchState::Ready;
                    b.error = None;
                    b.base_schema =
                        Some(serde_json::to_string(&base).unwrap_or_else(|_| "[]".into()));
                    b.schema_last_updated_at = Some(now_millis());
                    if let Some(s) = me.instance_status(&b.id) {
                        b.instance_port = Some(s.port);
                    }
                    tracing::info!(database = %db.name, branch = %b.name, tables = base.len(), ms = started.elapsed().as_millis() as u64, "branch ready");
                }
                Err(e) => {
                    tracing::error!(database = %db.name, branch = %b.name, error = %e, "branch provisioning failed");
                    b.state = BranchState::Failed;
                    b.error = Some(e.to_string());
                    let inst = lock(&me.instances).remove(&b.id);
                    if let Some(inst) = inst {
                        inst.stop().await;
                    }
                }
            }
            b.updated_at = now_millis();
            if let Err(e) = me.catalog.update_branch(&b) {
                tracing::error!(branch = %b.name, error = %e, "cannot record branch state");
            }
            if let Some(at) = b.schema_last_updated_at {
                let _ = me.catalog.touch_branch_schema(&b.id, at);
            }
            lock(&me.jobs).remove(&b.id);
        });
        jobs.insert(id, job);
    }

    async fn provision(&self, branch: &Branch, db: &Database) -> Result<Vec<SchemaObject>> {
        if let Some(source) = &branch.data_source {
            let inst = self.start_with_data(branch, db, source).await;
            lock(&self.data_progress).remove(&branch.id);
            let inst = inst?;
            // A backup's views may name a password user of the branch it was taken from.
            portable_view_definers(&inst, &db.name).await?;
            let mut c = inst.connect().await?;
            let objects = admin::read_schema(&mut c, &db.name).await?;
            let _ = c.disconnect().await;
            return Ok(objects);
        }
        // The parent's schema is read while the new instance is being made and started.
        let t = std::time::Instant::now();
        let (objects, inst) = tokio::join!(
            self.parent_schema(branch, db),
            self.start_new_instance(branch, db)
        );
        let (objects, inst) = (objects?, inst?);
        let started = t.elapsed();
        if !objects.is_empty() {
            admin::apply_schema(inst.admin_opts(), &db.name, &objects).await?;
            self.copy_migration_log(branch, db, &inst).await?;
        }
        tracing::debug!(branch = %branch.name, start_ms = started.as_millis() as u64, copy_ms = (t.elapsed() - started).as_millis() as u64, "provisioned");
        Ok(objects)
    }

    /// With automatic copy of migration data, a new branch gets its parent's migration log with
    /// the schema, so the framework's next migrate there starts from what the parent has applied.
    async fn copy_migration_log(
        &self,
        branch: &Branch,
        db: &Database,
        inst: &Instance,
    ) -> Result<()> {
        let Some(table) = db
            .automatic_migrations
            .then(|| {
                strata_model::migration_data::table(
                    db.migration_framework.as_deref(),
                    db.migration_table_name.as_deref(),
                )
            })
            .flatten()
        else {
            return Ok(());
        };
        let Some(parent) = branch
            .parent_branch
            .as_ref()
            .and_then(|p| self.catalog.branch(&db.id, p).ok())
            .and_then(|p| self.instance(&p.id))
        else {
            return Ok(());
        };
        let mut from = parent.connect().await?;
        let rows = strata_deploy::run::read_rows(&mut from, &db.name, &table).await;
        let _ = from.disconnect().await;
        let rows = match rows {
            Ok(Some(rows)) => rows,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(branch = %branch.name, error = %e, "migration log not copied");
                return Ok(());
            }
        };
        let mut to = inst.connect().await?;
        let copied = strata_deploy::run::replace_rows(&mut to, &db.name, &rows).await;
        let _ = to.disconnect().await;
        copied.map_err(|e| ControlError::Internal(e.to_string()))?;
        // What the branch starts from: a deploy copies a table of heads only if it moved since.
        if let Ok(json) = serde_json::to_string(&rows) {
            self.catalog.set_branch_migration_base(&branch.id, &json)?;
        }
        Ok(())
    }

    /// The schema of the branch's parent now (empty for a branch without a parent).
    async fn parent_schema(&self, branch: &Branch, db: &Database) -> Result<Vec<SchemaObject>> {
        let Some(parent_name) = &branch.parent_branch else {
            return Ok(Vec::new());
        };
        let parent = self.catalog.branch(&db.id, parent_name).map_err(|_| {
            ControlError::Unprocessable(format!("parent branch '{parent_name}' no longer exists"))
        })?;
        let parent_inst = self.instance(&parent.id).ok_or_else(|| {
            ControlError::Unprocessable(format!(
                "parent branch '{parent_name}' has no running instance"
            ))
        })?;
        parent_inst.wait_ready(READY_TIMEOUT).await?;
        let mut from = parent_inst.connect().await?;
        let objects = admin::read_schema(&mut from, &db.name).await?;
        let _ = from.disconnect().await;
        Ok(objects)
    }

    /// Where a branch being filled with data is (restore or snapshot).
    pub fn data_progress(&self, branch_id: &str) -> Option<strata_engine::backup::Progress> {
        lock(&self.data_progress).get(branch_id).cloned()
    }

    /// Makes the branch's instance with data (a backup restored, or a snapshot of the parent) and
    /// starts it; returns once it answers.
    async fn start_with_data(
        &self,
        branch: &Branch,
        db: &Database,
        source: &strata_catalog::DataSource,
    ) -> Result<Arc<Instance>> {
        let spec = self.spec(branch, db);
        let old = lock(&self.instances).remove(&branch.id);
        if let Some(old) = old {
            old.stop().await;
        }
        let s = spec.clone();
        tokio::task::spawn_blocking(move || supervisor::prepare_instance_dir(&s))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        let datadir = supervisor::datadir_of(&spec);
        let t = std::time::Instant::now();
        let progress = {
            let me = self.arc();
            let id = branch.id.clone();
            move |p: strata_engine::backup::Progress| {
                lock(&me.data_progress).insert(id.clone(), p);
            }
        };
        let method = match source {
            strata_catalog::DataSource::Backup(id) => {
                let bk = self.restorable(&db.id, id)?;
                progress(strata_engine::backup::Progress {
                    phase: "restoring".into(),
                    copied_bytes: 0,
                    total_bytes: bk.size.max(0) as u64,
                });
                let reflinked = self
                    .backup_store
                    .fetch_into(&bk.id, &datadir, &progress)
                    .await?;
                if reflinked {
                    "reflink"
                } else {
                    "copy"
                }
            }
            strata_catalog::DataSource::Parent => {
                let parent_name = branch.parent_branch.clone().unwrap_or_default();
                let parent = self.catalog.branch(&db.id, &parent_name).map_err(|_| {
                    ControlError::Unprocessable(format!(
                        "parent branch '{parent_name}' no longer exists"
                    ))
                })?;
                let parent_inst = self.instance(&parent.id).ok_or_else(|| {
                    ControlError::Unprocessable(format!(
                        "parent branch '{parent_name}' has no running instance"
                    ))
                })?;
                parent_inst.wait_ready(READY_TIMEOUT).await?;
                let tools = self.backup_tools()?;
                progress(strata_engine::backup::Progress {
                    phase: "snapshotting".into(),
                    ..Default::default()
                });
                match strata_engine::backup::snapshot_into(
                    &tools,
                    &parent_inst,
                    &datadir,
                    &progress,
                )
                .await?
                {
                    strata_engine::backup::SnapshotMethod::Reflink => "reflink",
                    strata_engine::backup::SnapshotMethod::Copy => "copy",
                }
            }
        };
        let filled = t.elapsed();
        progress(strata_engine::backup::Progress {
            phase: "starting".into(),
            ..Default::default()
        });
        let inst = Instance::start(self.binaries.clone(), spec)?;
        self.register_instance(&branch.id, inst.clone());
        inst.wait_ready(READY_TIMEOUT).await?;
        tracing::info!(branch = %branch.name, method, data_ms = filled.as_millis() as u64, ready_ms = (t.elapsed() - filled).as_millis() as u64, "branch data in place");
        Ok(inst)
    }

    /// Makes the branch's instance from the template and starts it; returns once it answers.
    async fn start_new_instance(&self, branch: &Branch, db: &Database) -> Result<Arc<Instance>> {
        let spec = self.spec(branch, db);
        // A previous attempt may have left an instance running.
        let old = lock(&self.instances).remove(&branch.id);
        if let Some(old) = old {
            old.stop().await;
        }
        let template = self.template.clone();
        let s = spec.clone();
        let t = std::time::Instant::now();
        tokio::task::spawn_blocking(move || supervisor::provision(&s, &template))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        let cloned = t.elapsed();
        let inst = Instance::start(self.binaries.clone(), spec)?;
        self.register_instance(&branch.id, inst.clone());
        inst.wait_ready(READY_TIMEOUT).await?;
        tracing::debug!(branch = %branch.name, clone_ms = cloned.as_millis() as u64, ready_ms = (t.elapsed() - cloned).as_millis() as u64, "instance started");
        Ok(inst)
    }

    fn persist_port_when_ready(&self, branch_id: String, inst: Arc<Instance>) {
        let catalog = self.catalog.clone();
        tokio::spawn(async move {
            if inst.wait_ready(READY_TIMEOUT).await.is_ok() {
                let port = inst.status().port;
                if let Ok(mut b) = catalog.branch_by_id(&branch_id) {
                    if b.instance_port != Some(port) {
                        b.instance_port = Some(port);
                        let _ = catalog.update_branch(&b);
                    }
                }
            }
        });
    }

    /// Stops a branch's job and instance and removes its files.
    async fn teardown(&self, branch_id: &str) {
        let job = lock(&self.jobs).remove(branch_id);
        if let Some(job) = job {
            job.abort();
            let _ = job.await;
        }
        let inst = lock(&self.instances).remove(branch_id);
        if let Some(inst) = inst {
            // Its data goes next: no clean shutdown to wait for.
            inst.discard().await;
        }
        let dir = self.instances_dir().join(branch_id);
        if let Err(e) = tokio::task::spawn_blocking(move || supervisor::destroy(&dir)).await {
            tracing::error!(error = %e, "cannot remove instance directory");
        }
    }

    pub(crate) fn catalog(&self) -> &dyn Catalog {
        self.catalog.as_ref()
    }
}

/// The schema engine's model of objects read from an instance.
fn model(objects: Vec<SchemaObject>) -> Result<strata_schema::Schema> {
    let items: Vec<(&str, &str, &str)> = objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str(), o.create.as_str()))
        .collect();
    strata_schema::Schema::from_statements(items)
        .map_err(|e| ControlError::Unprocessable(e.to_string()))
}

/// Settings a database update may change.
#[derive(Debug, Default, Clone)]
pub struct DatabaseUpdate {
    pub default_branch: Option<String>,
    pub require_approval_for_deploy: Option<bool>,
    pub allow_foreign_key_constraints: Option<bool>,
    pub deletion_protected: Option<bool>,
    pub automatic_migrations: Option<bool>,
    pub migration_framework: Option<String>,
    pub migration_table_name: Option<String>,
    pub aggressive_cutover: Option<bool>,
}

/// Re-creates the schema's views whose definer is a password's own user with the admin role's
/// shared user as definer (see `admin::VIEW_DEFINER`); returns how many.
async fn portable_view_definers(inst: &Instance, schema: &str) -> Result<usize> {
    use strata_engine::mysql_async::prelude::Queryable;
    let err = strata_engine::EngineError::from;
    let mut conn = inst.connect().await?;
    let views: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND DEFINER LIKE 'strata\\_p\\_%'",
            (schema,),
        )
        .await
        .map_err(err)?;
    let q = strata_model::role::quote_ident;
    conn.query_drop(format!("USE {}", q(schema)))
        .await
        .map_err(err)?;
    for v in &views {
        let row: Option<strata_engine::mysql_async::Row> = conn
            .query_first(format!("SHOW CREATE VIEW {}", q(v)))
            .await
            .map_err(err)?;
        let Some(create) = row.and_then(|r| r.get::<String, _>(1)) else {
            continue;
        };
        let portable = admin::portable_definer(&create);
        if let Some(rest) = portable.strip_prefix("CREATE ") {
            conn.query_drop(format!("CREATE OR REPLACE {rest}"))
                .await
                .map_err(err)?;
        }
    }
    let _ = conn.disconnect().await;
    Ok(views.len())
}
