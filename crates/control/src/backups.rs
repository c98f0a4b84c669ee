//! Backups of branches, their schedules and retention, their validation, and restoring them.
//!
//! A backup is a catalog row first (`pending`), then a job: `running` while `mariadb-backup` copies
//! into `<backups>/<id>.partial`, `success` only once the prepared copy and its manifest are renamed
//! to `<backups>/<id>`. A crash at any point leaves a row that is not `success` and, at most, a
//! partial directory: on the next start the job is redone from scratch. Every successful backup is
//! then restored on a scratch instance and checked (`validation_state`).

use crate::error::not_found;
use crate::{lock, Caller, ControlError, Platform, Result};
use std::path::PathBuf;
use std::time::Duration;
use strata_catalog::{Backup, BackupPolicy, BackupState, Branch, BranchState};
use strata_engine::backup::{self, BackupTools, Manifest, Progress, Validation};
use strata_engine::supervisor::{self, InstanceSpec};
use strata_model::{ids, timefmt::now_millis};

/// Units of schedules and retention, in milliseconds.
pub fn unit_millis(unit: &str) -> Option<i64> {
    Some(match unit {
        "second" => 1_000,
        "minute" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        "week" => 7 * 86_400_000,
        "month" => 30 * 86_400_000,
        "year" => 365 * 86_400_000,
        _ => return None,
    })
}

/// The largest count of units in a schedule or a retention (100,000 years at most).
pub const MAX_SPAN_VALUE: i64 = 100_000;

fn span(value: i64, unit: &str, what: &str) -> Result<i64> {
    let ms = unit_millis(unit).ok_or_else(|| {
        ControlError::Invalid(format!(
            "{what}_unit must be one of second, minute, hour, day, week, month, year (got '{unit}')"
        ))
    })?;
    if !(1..=MAX_SPAN_VALUE).contains(&value) {
        return Err(ControlError::Invalid(format!(
            "{what}_value must be from 1 to {MAX_SPAN_VALUE}"
        )));
    }
    value
        .checked_mul(ms)
        .ok_or_else(|| ControlError::Invalid(format!("{what}_value is too large")))
}

/// What `POST …/backups` may set.
#[derive(Debug, Default, Clone)]
pub struct BackupRequest {
    pub name: Option<String>,
    pub retention_value: Option<i64>,
    pub retention_unit: Option<String>,
}

/// What creating or updating a backup policy may set.
#[derive(Debug, Default, Clone)]
pub struct PolicyRequest {
    pub name: Option<String>,
    pub target: Option<String>,
    pub frequency_value: Option<i64>,
    pub frequency_unit: Option<String>,
    pub retention_value: Option<i64>,
    pub retention_unit: Option<String>,
}

/// Default retention of a manual backup without one: PlanetScale keeps them until deleted; we keep
/// them 30 days unless protected.
const MANUAL_RETENTION_MS: i64 = 30 * 86_400_000;

impl Platform {
    /// Where a backup's files are, when they are on this machine (local storage).
    pub fn backup_path(&self, id: &str) -> Option<PathBuf> {
        self.backup_store.local_path(id)
    }

    fn scratch_dir(&self) -> PathBuf {
        self.settings.data_dir.join("scratch")
    }

    pub(crate) fn backup_tools(&self) -> Result<BackupTools> {
        BackupTools::detect().map_err(|e| ControlError::Unprocessable(e.to_string()))
    }

    // ---------------------------------------------------------------- backups

    pub fn create_backup(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        req: BackupRequest,
    ) -> Result<Backup> {
        let (_, b) = self.database_and_branch(caller, org, db, branch)?;
        if b.state != BranchState::Ready {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{branch}' is not ready; it can be backed up once it is"
            )));
        }
        self.backup_tools()?;
        let retention = match (req.retention_value, req.retention_unit.as_deref()) {
            (None, None) => MANUAL_RETENTION_MS,
            (v, u) => span(v.unwrap_or(1), u.unwrap_or("day"), "retention")?,
        };
        let name = match req.name {
            Some(n) => {
                strata_model::names::validate_display_name("Backup", &n)?;
                n
            }
            None => default_name(now_millis()),
        };
        self.queue_backup(&b, name, None, Some(caller.token_id.clone()), retention)
    }

    fn queue_backup(
        &self,
        b: &Branch,
        name: String,
        policy_id: Option<String>,
        actor: Option<String>,
        retention_ms: i64,
    ) -> Result<Backup> {
        let now = now_millis();
        let backup = Backup {
            id: ids::public_id(),
            database_id: b.database_id.clone(),
            branch_id: b.id.clone(),
            name,
            state: BackupState::Pending,
            policy_id,
            actor,
            size: 0,
            protected: false,
            error: None,
            manifest: None,
            progress: None,
            validation_state: "pending".into(),
            validation_error: None,
            validated_at: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            // Counted from creation; set again at completion.
            expires_at: Some(now.saturating_add(retention_ms)),
        };
        self.catalog.create_backup(&backup)?;
        self.spawn_backup(backup.id.clone(), retention_ms);
        Ok(backup)
    }

    pub fn backups(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
    ) -> Result<Vec<Backup>> {
        let (_, b) = self.database_and_branch(caller, org, db, branch)?;
        Ok(self.catalog.backups_of_branch(&b.id)?)
    }

    pub fn backup(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<Backup> {
        let (_, b) = self.database_and_branch(caller, org, db, branch)?;
        match self.catalog.backup(id) {
            Ok(bk) if bk.branch_id == b.id => Ok(bk),
            _ => Err(not_found("Backup", id)),
        }
    }

    /// Branches restored from a backup.
    pub fn restored_branches(&self, backup_id: &str) -> Result<Vec<Branch>> {
        Ok(self.catalog.branches_restored_from(backup_id)?)
    }

    /// The policy that made a backup, if any.
    pub fn policy_of(&self, backup: &Backup) -> Option<BackupPolicy> {
        let id = backup.policy_id.as_deref()?;
        self.catalog.backup_policy(&backup.database_id, id).ok()
    }

    pub fn update_backup(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
        protected: Option<bool>,
    ) -> Result<Backup> {
        let bk = self.backup(caller, org, db, branch, id)?;
        if let Some(p) = protected {
            // Only this column: a job finishing at the same moment keeps its own write.
            self.catalog.set_backup_protected(&bk.id, p, now_millis())?;
        }
        Ok(self.catalog.backup(&bk.id)?)
    }

    pub async fn delete_backup(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<()> {
        let bk = self.backup(caller, org, db, branch, id)?;
        if bk.protected {
            return Err(ControlError::Unprocessable(format!(
                "Backup '{id}' is protected; unprotect it before deleting it"
            )));
        }
        if matches!(bk.state, BackupState::Running) || bk.validation_state == "running" {
            return Err(ControlError::Unprocessable(format!(
                "Backup '{id}' is running or being validated; delete it once it has finished"
            )));
        }
        if let Some(b) = self
            .catalog
            .branches_restored_from(id)?
            .into_iter()
            .find(|b| b.state == BranchState::Pending)
        {
            return Err(ControlError::Unprocessable(format!(
                "Backup '{id}' is being restored into branch '{}'; delete it once that branch is ready",
                b.name
            )));
        }
        self.remove_backup(&bk).await
    }

    async fn remove_backup(&self, bk: &Backup) -> Result<()> {
        self.stop_backup_job(&bk.id).await;
        // Files first: a row is never gone while its files stay behind unknown.
        self.backup_store.delete(&bk.id).await.map_err(|e| {
            ControlError::Internal(format!("cannot delete the backup's files: {e}"))
        })?;
        self.catalog.delete_backup(&bk.id)?;
        Ok(())
    }

    async fn stop_backup_job(&self, id: &str) {
        for key in [job_key(id), format!("validate:{id}")] {
            let job = lock(&self.jobs).remove(&key);
            if let Some(job) = job {
                job.abort();
                let _ = job.await;
            }
        }
        // A validation cut short leaves its scratch server registered: stop it.
        let scratch = lock(&self.instances).remove(&format!("validate-{id}"));
        if let Some(inst) = scratch {
            inst.discard().await;
            let dir = self.scratch_dir().join(id);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }

    /// Stops a backup's job and removes its files (its catalog row is gone or going).
    pub(crate) async fn drop_backup_job_and_files(&self, id: &str) {
        self.stop_backup_job(id).await;
        self.remove_backup_files(id).await;
    }

    pub(crate) async fn remove_backup_files(&self, id: &str) {
        if let Err(e) = self.backup_store.delete(id).await {
            tracing::error!(backup = %id, error = %e, "cannot delete a backup's files");
        }
    }

    /// A successful backup of this database, for a restore.
    pub(crate) fn restorable(&self, database_id: &str, id: &str) -> Result<Backup> {
        let bk = self
            .catalog
            .backup(id)
            .ok()
            .filter(|b| b.database_id == database_id)
            .ok_or_else(|| not_found("Backup", id))?;
        require_success(&bk, "restored")?;
        Ok(bk)
    }

    // ---------------------------------------------------------------- the backup job

    fn spawn_backup(&self, id: String, retention_ms: i64) {
        let me = self.arc();
        let key = job_key(&id);
        let job = tokio::spawn(async move {
            // One backup copies at a time: it is disk-bound, and so is everything else.
            let _slot = me.backup_slots.acquire().await;
            me.run_backup(&id, retention_ms).await;
            lock(&me.jobs).remove(&job_key(&id));
        });
        lock(&self.jobs).insert(key, job);
    }

    async fn run_backup(&self, id: &str, retention_ms: i64) {
        let Ok(mut bk) = self.catalog.backup(id) else {
            return;
        };
        let partial = self.backup_store.staging_dir(id);
        let _ = std::fs::remove_dir_all(&partial);
        // A redone backup starts from nothing (objects of an earlier attempt included).
        if let Err(e) = self.backup_store.delete(id).await {
            tracing::warn!(backup = %id, error = %e, "cannot clear an earlier attempt's files");
        }
        let started = now_millis();
        bk.state = BackupState::Running;
        bk.started_at = Some(started);
        bk.updated_at = started;
        bk.progress = None;
        if self.catalog.update_backup(&bk).is_err() {
            return;
        }
        let outcome = self.copy_backup(&bk, &partial).await;
        let Ok(mut bk) = self.catalog.backup(id) else {
            // Deleted meanwhile (its branch went away).
            self.remove_backup_files(id).await;
            return;
        };
        let now = now_millis();
        bk.updated_at = now;
        match outcome {
            Ok(manifest) => {
                bk.state = BackupState::Success;
                bk.completed_at = Some(now);
                bk.expires_at = Some(now.saturating_add(retention_ms));
                bk.size = manifest.bytes as i64;
                bk.manifest = serde_json::to_string(&manifest).ok();
                bk.progress = serde_json::to_string(&Progress {
                    phase: "complete".into(),
                    copied_bytes: manifest.bytes,
                    total_bytes: manifest.bytes,
                })
                .ok();
                tracing::info!(backup = %id, bytes = manifest.bytes, ms = now - started, "backup complete");
            }
            Err(e) => {
                tracing::error!(backup = %id, error = %e, "backup failed");
                bk.state = BackupState::Failed;
                bk.error = Some(e.to_string());
                bk.validation_state = "skipped".into();
                let _ = std::fs::remove_dir_all(&partial);
            }
        }
        let success = bk.state == BackupState::Success;
        if let Err(e) = self.catalog.update_backup(&bk) {
            tracing::error!(backup = %id, error = %e, "cannot record backup state");
            return;
        }
        if success {
            self.validate_backup(id).await;
        }
    }

    async fn copy_backup(&self, bk: &Backup, partial: &std::path::Path) -> Result<Manifest> {
        let tools = self.backup_tools()?;
        let inst = self.instance(&bk.branch_id).ok_or_else(|| {
            ControlError::Unprocessable("the branch has no running instance".into())
        })?;
        inst.wait_ready(Duration::from_secs(120)).await?;
        let catalog = self.catalog.clone();
        let id = bk.id.clone();
        let report = move |p: Progress| {
            if let Ok(json) = serde_json::to_string(&p) {
                let _ = catalog.save_backup_progress(&id, &json, now_millis());
            }
        };
        let mut manifest =
            backup::take_backup(&tools, &inst, &self.binaries.version, partial, &report).await?;
        manifest.bytes = self.backup_store.save(&bk.id, partial, &report).await?;
        Ok(manifest)
    }

    /// Restores a successful backup on a scratch instance and records whether it held up.
    pub(crate) async fn validate_backup(&self, id: &str) {
        let Ok(mut bk) = self.catalog.backup(id) else {
            return;
        };
        let Some(manifest) = bk
            .manifest
            .as_deref()
            .and_then(|m| serde_json::from_str::<Manifest>(m).ok())
        else {
            return;
        };
        bk.validation_state = "running".into();
        bk.updated_at = now_millis();
        if self.catalog.update_backup(&bk).is_err() {
            return;
        }
        let port = match supervisor::pick_port() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "no port for a validation instance");
                return;
            }
        };
        let scratch = InstanceSpec {
            id: format!("validate-{id}"),
            dir: self.scratch_dir().join(id),
            schema: manifest.schema.clone(),
            production: false,
            safe_migrations: false,
            port,
            server_id: crate::server_id(id),
        };
        let t = std::time::Instant::now();
        // Registered with the instances while it runs, so a shutdown stops it cleanly.
        let key = format!("validate-{id}");
        let register = {
            let me = self.arc();
            let key = key.clone();
            move |inst: std::sync::Arc<strata_engine::Instance>| {
                lock(&me.instances).insert(key.clone(), inst);
            }
        };
        let outcome = backup::validate(
            self.binaries.clone(),
            &self.backup_store,
            id,
            scratch,
            &manifest,
            &register,
        )
        .await;
        lock(&self.instances).remove(&key);
        let Ok(mut bk) = self.catalog.backup(id) else {
            return;
        };
        match outcome {
            Validation::Passed => {
                bk.validation_state = "passed".into();
                bk.validation_error = None;
            }
            Validation::Failed(why) => {
                tracing::warn!(backup = %id, reason = %why, "backup failed validation");
                bk.validation_state = "failed".into();
                bk.validation_error = Some(why);
            }
        }
        tracing::info!(backup = %id, state = %bk.validation_state, ms = t.elapsed().as_millis() as u64, "backup validated");
        bk.validated_at = Some(now_millis());
        bk.updated_at = now_millis();
        let _ = self.catalog.update_backup(&bk);
    }

    /// Runs validation again (after a repair, or to check stored backups still hold up).
    pub fn revalidate_backup(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<Backup> {
        let bk = self.backup(caller, org, db, branch, id)?;
        require_success(&bk, "validated")?;
        let key = format!("validate:{id}");
        let mut jobs = lock(&self.jobs);
        if bk.validation_state == "running" || jobs.contains_key(&key) {
            return Err(ControlError::Unprocessable(format!(
                "Backup '{id}' is being validated already"
            )));
        }
        // Pending from now on, not from when a backup slot frees: a follower must not read the
        // previous validation's outcome as this one's.
        let mut bk = bk;
        bk.validation_state = "pending".into();
        bk.updated_at = now_millis();
        self.catalog.update_backup(&bk)?;
        let me = self.arc();
        let bid = id.to_string();
        let job = tokio::spawn(async move {
            let _slot = me.backup_slots.acquire().await;
            me.validate_backup(&bid).await;
            lock(&me.jobs).remove(&format!("validate:{bid}"));
        });
        jobs.insert(key, job);
        Ok(bk)
    }

    // ---------------------------------------------------------------- start-up, schedules, retention

    /// Redoes what a stop cut short: backups not finished start again from scratch, successful ones
    /// not yet validated are validated; directories no backup owns are removed.
    pub(crate) fn resume_backups(&self) -> Result<()> {
        let all = self.catalog.all_backups()?;
        let known: std::collections::HashSet<_> = all.iter().map(|b| b.id.clone()).collect();
        for dir in self.backup_store.local_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // Only names this platform makes: the directory may be shared.
                if !is_backup_entry(&name) {
                    continue;
                }
                let id = name
                    .trim_end_matches(".cnf")
                    .trim_end_matches(".partial")
                    .trim_end_matches(".copying");
                let finished = all
                    .iter()
                    .any(|b| b.id == id && b.state == BackupState::Success && name == b.id);
                if !known.contains(id) || !finished {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        stop_leftover_servers(&self.scratch_dir());
        let _ = std::fs::remove_dir_all(self.scratch_dir());
        for mut b in all {
            match b.state {
                BackupState::Pending | BackupState::Running => {
                    tracing::info!(backup = %b.id, "redoing a backup a stop cut short");
                    let retention = b
                        .expires_at
                        .map(|e| (e - b.created_at).max(0))
                        .unwrap_or(MANUAL_RETENTION_MS);
                    b.state = BackupState::Pending;
                    b.progress = None;
                    b.updated_at = now_millis();
                    self.catalog.update_backup(&b)?;
                    self.spawn_backup(b.id.clone(), retention);
                }
                BackupState::Success
                    if matches!(b.validation_state.as_str(), "pending" | "running") =>
                {
                    let me = self.arc();
                    let id = b.id.clone();
                    let job = tokio::spawn(async move {
                        let _slot = me.backup_slots.acquire().await;
                        me.validate_backup(&id).await;
                    });
                    lock(&self.jobs).insert(format!("validate:{}", b.id), job);
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn start_backup_scheduler(&self) {
        let me = self.arc();
        let job = tokio::spawn(async move {
            loop {
                me.schedule_tick().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        lock(&self.jobs).insert("backup-scheduler".into(), job);
    }

    /// Queues the backups of every policy that is due and deletes expired backups.
    async fn schedule_tick(&self) {
        let now = now_millis();
        if let Ok(policies) = self.catalog.all_backup_policies() {
            for mut p in policies.into_iter().filter(|p| p.next_run_at <= now) {
                let every =
                    span(p.frequency_value, &p.frequency_unit, "frequency").unwrap_or(43_200_000);
                let keep =
                    span(p.retention_value, &p.retention_unit, "retention").unwrap_or(172_800_000);
                let production = p.target == "production";
                for b in self
                    .catalog
                    .branches(&p.database_id)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|b| b.production == production && b.state == BranchState::Ready)
                {
                    // A schedule never piles up behind itself.
                    let busy = self
                        .catalog
                        .backups_of_branch(&b.id)
                        .unwrap_or_default()
                        .iter()
                        .any(|x| {
                            x.policy_id.as_deref() == Some(p.id.as_str())
                                && matches!(x.state, BackupState::Pending | BackupState::Running)
                        });
                    if busy {
                        continue;
                    }
                    let name = format!("{} {}", p.name, default_name(now));
                    if let Err(e) = self.queue_backup(&b, name, Some(p.id.clone()), None, keep) {
                        tracing::error!(branch = %b.name, error = %e, "cannot queue a scheduled backup");
                    }
                }
                p.last_ran_at = Some(now);
                // The next run keeps the cadence even if this tick came late.
                let mut next = p.next_run_at.saturating_add(every);
                if next <= now {
                    next = now + every;
                }
                p.next_run_at = next;
                p.updated_at = now;
                let _ = self.catalog.update_backup_policy(&p);
            }
        }
        if let Ok(expired) = self.catalog.expired_backups(now) {
            for b in expired {
                let restoring = self
                    .catalog
                    .branches_restored_from(&b.id)
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.state == BranchState::Pending);
                if restoring {
                    continue;
                }
                tracing::info!(backup = %b.id, "deleting an expired backup");
                let _ = self.remove_backup(&b).await;
            }
        }
    }

    // ---------------------------------------------------------------- policies

    pub fn backup_policies(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
    ) -> Result<Vec<BackupPolicy>> {
        let d = self.database(caller, org, db)?;
        Ok(self.catalog.backup_policies(&d.id)?)
    }

    pub fn backup_policy(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        id: &str,
    ) -> Result<BackupPolicy> {
        let d = self.database(caller, org, db)?;
        self.catalog
            .backup_policy(&d.id, id)
            .map_err(|_| not_found("Backup policy", id))
    }

    pub fn create_backup_policy(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        req: PolicyRequest,
    ) -> Result<BackupPolicy> {
        let d = self.database(caller, org, db)?;
        let now = now_millis();
        let mut p = BackupPolicy {
            id: ids::public_id(),
            database_id: d.id,
            name: req.name.clone().unwrap_or_else(|| "Backup schedule".into()),
            target: "production".into(),
            frequency_value: 12,
            frequency_unit: "hour".into(),
            retention_value: 2,
            retention_unit: "day".into(),
            last_ran_at: None,
            next_run_at: now,
            created_at: now,
            updated_at: now,
        };
        apply_policy(&mut p, req)?;
        p.next_run_at = now + span(p.frequency_value, &p.frequency_unit, "frequency")?;
        self.catalog.create_backup_policy(&p)?;
        Ok(p)
    }

    pub fn update_backup_policy(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        id: &str,
        req: PolicyRequest,
    ) -> Result<BackupPolicy> {
        let mut p = self.backup_policy(caller, org, db, id)?;
        let old_every = span(p.frequency_value, &p.frequency_unit, "frequency").unwrap_or(0);
        apply_policy(&mut p, req)?;
        let every = span(p.frequency_value, &p.frequency_unit, "frequency")?;
        if every != old_every {
            p.next_run_at = p
                .last_ran_at
                .unwrap_or(p.created_at)
                .max(now_millis() - every)
                + every;
        }
        p.updated_at = now_millis();
        self.catalog.update_backup_policy(&p)?;
        Ok(p)
    }

    pub fn delete_backup_policy(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        id: &str,
    ) -> Result<()> {
        let p = self.backup_policy(caller, org, db, id)?;
        self.catalog.delete_backup_policy(&p.id)?;
        Ok(())
    }
}

fn apply_policy(p: &mut BackupPolicy, req: PolicyRequest) -> Result<()> {
    if let Some(n) = req.name {
        strata_model::names::validate_display_name("Backup policy", &n)?;
        p.name = n;
    }
    if let Some(t) = req.target {
        if t != "production" && t != "development" {
            return Err(ControlError::Invalid(format!(
                "target must be production or development (got '{t}')"
            )));
        }
        p.target = t;
    }
    if let Some(v) = req.frequency_value {
        p.frequency_value = v;
    }
    if let Some(u) = req.frequency_unit {
        p.frequency_unit = u;
    }
    if let Some(v) = req.retention_value {
        p.retention_value = v;
    }
    if let Some(u) = req.retention_unit {
        p.retention_unit = u;
    }
    span(p.frequency_value, &p.frequency_unit, "frequency")?;
    span(p.retention_value, &p.retention_unit, "retention")?;
    Ok(())
}

/// Kills scratch servers an earlier run left behind.
fn stop_leftover_servers(scratch: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(scratch) {
        for e in entries.flatten() {
            supervisor::kill_leftover_server(&e.path());
        }
    }
}

/// Only a successful backup can be restored or validated.
fn require_success(bk: &Backup, verb: &str) -> Result<()> {
    if bk.state == BackupState::Success {
        return Ok(());
    }
    Err(ControlError::Unprocessable(format!(
        "Backup '{}' is {}; only a successful backup can be {verb}",
        bk.id,
        bk.state.as_str()
    )))
}

/// `<id>`, `<id>.partial`, `<id>.partial.cnf`, `<id>.partial.copying`: what backups leave in
/// their directory (ids are 12 lowercase letters and digits).
fn is_backup_entry(name: &str) -> bool {
    let id = name.split('.').next().unwrap_or_default();
    let rest = &name[id.len()..];
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && matches!(rest, "" | ".partial" | ".partial.cnf" | ".partial.copying")
}

fn job_key(backup_id: &str) -> String {
    format!("backup:{backup_id}")
}

/// PlanetScale-style backup names: the time it was asked for, UTC.
fn default_name(at_ms: i64) -> String {
    strata_model::timefmt::iso8601(at_ms)
        .get(..19)
        .map(|s| s.replace('T', " ").replace('-', "."))
        .unwrap_or_else(|| at_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_units() {
        assert_eq!(span(12, "hour", "frequency").unwrap(), 43_200_000);
        assert_eq!(span(2, "day", "retention").unwrap(), 172_800_000);
        assert_eq!(span(3, "second", "frequency").unwrap(), 3_000);
        assert!(span(0, "hour", "frequency").is_err());
        assert!(span(1, "fortnight", "frequency")
            .unwrap_err()
            .to_string()
            .contains("frequency_unit"));
        assert!(span(i64::MAX, "year", "retention").is_err());
    }

    #[test]
    fn policy_validation() {
        let mut p = BackupPolicy {
            id: "p".into(),
            database_id: "d".into(),
            name: "n".into(),
            target: "production".into(),
            frequency_value: 12,
            frequency_unit: "hour".into(),
            retention_value: 2,
            retention_unit: "day".into(),
            last_ran_at: None,
            next_run_at: 0,
            created_at: 0,
            updated_at: 0,
        };
        let bad_target = PolicyRequest {
            target: Some("staging".into()),
            ..Default::default()
        };
        assert!(apply_policy(&mut p.clone(), bad_target).is_err());
        let ok = PolicyRequest {
            target: Some("development".into()),
            frequency_value: Some(30),
            frequency_unit: Some("minute".into()),
            ..Default::default()
        };
        apply_policy(&mut p, ok).unwrap();
        assert_eq!((p.target.as_str(), p.frequency_value), ("development", 30));
    }

    #[test]
    fn only_backup_entries_are_cleaned_up() {
        for ours in [
            "yfrnnjofp037",
            "yfrnnjofp037.partial",
            "yfrnnjofp037.partial.cnf",
        ] {
            assert!(is_backup_entry(ours), "{ours}");
        }
        for theirs in [
            "catalog.db",
            "instances",
            "YFRNNJOFP037",
            "yfrnnjofp03",
            "yfrnnjofp037.tar",
            "notes.txt",
            "",
        ] {
            assert!(!is_backup_entry(theirs), "{theirs}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(default_name(0), "1970.01.01 00:00:00");
    }
}
