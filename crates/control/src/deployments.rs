//! The deploy queue and each deployment's life, as a state machine kept in the catalog.
//!
//! One worker loop looks at every unfinished deployment and moves it on: `queued` (waits for the
//! ones ahead on the same branch, then is checked again and planned) → `in_progress` (shadow tables,
//! copy, verification) → `pending_cutover` (gated: in sync until applied) → `in_progress_cutover` →
//! `complete_pending_revert` (revert window) → `complete`; or `in_progress_revert` →
//! `complete_revert`, `in_progress_cancel` → `complete_cancel`, and `complete_error`. Every step
//! reads where the tables are from the instance itself, so a restart at any point resumes or
//! cleanly cancels.

use crate::deploy_requests::DeployRequestStatus;
use crate::error::not_found;
use crate::{lock, Caller, ControlError, Platform, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_catalog::{Database, DeployRequest, Deployment};
use strata_deploy::force::{Force, FORCE};
use strata_deploy::gate::{Gate, BRANCH_GATE};
use strata_deploy::run::{self, Placement};
use strata_deploy::{DeployError, Plan, Progress, TableProgress};
use strata_engine::mysql_async::{prelude::Queryable, Conn};
use strata_engine::SchemaObject;
use strata_model::{ids, timefmt::now_millis};

/// A cut-over or revert waits at most this long for the table locks per attempt, so writers are
/// never held longer; it retries when long transactions are in the way.
const SWAP_LOCK_WAIT: Duration = Duration::from_millis(400);
const SWAP_ATTEMPTS: u32 = 25;
/// Copy chunks aim at this duration: short enough that the shared locks on the copied rows do not
/// stall writers noticeably.
const CHUNK_TARGET: Duration = Duration::from_millis(250);
/// The copy pauses while the instance runs more threads than this (the throttler's load signal).
const BUSY_THREADS: u64 = 32;
/// Tables with at least this many rows are copied by `COPY_WORKERS` connections at once, each over
/// its own range of keys (two keep both cores of a small machine busy without starving the
/// application).
const PARALLEL_COPY_ROWS: u64 = 50_000;
const COPY_WORKERS: u64 = 2;
/// How often each copy worker counts what is left of its range (progress and ETA).
const REFINE_EVERY: Duration = Duration::from_secs(5);

fn plan_of(d: &Deployment) -> Result<Plan> {
    serde_json::from_str(&d.plan)
        .map_err(|e| ControlError::Internal(format!("deployment plan unreadable: {e}")))
}

/// The copy's shared state: its workers each take the lock only between chunks.
struct CopyState {
    inner: std::sync::Mutex<CopyInner>,
}

struct CopyInner {
    d: Deployment,
    p: Progress,
    copied_now: u64,
    last_save: Instant,
    /// Chunks copied again, or rows retried one by one, after meeting a lock (logged).
    retries: u64,
    /// Time the chunks' verification took (logged).
    verify: Duration,
    /// The start of the window the copy's rate is read over (and the rows copied then): the
    /// rate since the start, dragged down by the first small chunks, made the first ETAs wild.
    rate_window: (Instant, u64),
}

/// How long the copy's rate is read over for its ETA.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// A stall in whole milliseconds, rounded up: a RENAME that held writers for a fraction of a
/// millisecond is not shown as none.
/// The deployment `d` waits behind in its branch's deploy queue, if any: the earliest one into
/// the same branch that has not cut over yet (one in its revert window holds nobody up).
fn queued_behind<'a>(d: &Deployment, active: &'a [Deployment]) -> Option<&'a Deployment> {
    active
        .iter()
        .filter(|o| {
            o.database_id == d.database_id
                && o.into_branch == d.into_branch
                && o.id != d.id
                && o.state != "complete_pending_revert"
                && (o.queued_at, &o.id) < (d.queued_at, &d.id)
        })
        .min_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)))
}

/// The first request ahead in the queue (number, changes) that changes an object `mine` also
/// changes, with another statement, and that object.
fn queue_conflict(
    mine: &[strata_schema::Change],
    ahead: &[(i64, Vec<strata_schema::Change>)],
) -> Option<(i64, String)> {
    ahead.iter().find_map(|(number, theirs)| {
        mine.iter()
            .find(|c| {
                theirs
                    .iter()
                    .any(|t| t.object == c.object && t.statement != c.statement)
            })
            .map(|c| (*number, c.object.clone()))
    })
}

/// What a queued deployment is told of the one ahead of it.
fn waiting_behind(ahead: &Deployment) -> String {
    let number = ahead.deploy_request_number;
    let progress = progress_of(ahead);
    let doing = match ahead.state.as_str() {
        _ if progress.delayed_since.is_some() => {
            "delayed by long-running transactions on its tables"
        }
        "in_progress" if progress.phase == "preparing" => "preparing its tables",
        "in_progress" if progress.phase == "building_keys" => "building its tables' keys",
        "queued" => "queued before it",
        "pending_cutover" if !ahead.auto_cutover => {
            "in sync and waiting to be applied: `deploy-request apply` (or `cancel`) it to let this one start"
        }
        "pending_cutover" | "in_progress_cutover" => "cutting over",
        "in_progress" => "copying its tables",
        "in_progress_revert" => "being reverted",
        "in_progress_cancel" => "being cancelled",
        _ => "deploying",
    };
    format!("Waiting behind deploy request #{number}, which is {doing}")
}

fn stall_ms(stall: Duration) -> u64 {
    (stall.as_micros() as u64).div_ceil(1000)
}

/// How often the key build's progress is read and saved.
const KEYS_REPORT_EVERY: Duration = Duration::from_millis(500);

fn lock_state(state: &CopyState) -> std::sync::MutexGuard<'_, CopyInner> {
    state.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// The migration table whose rows deploys copy, when the database has that setting on.
pub(crate) fn migration_table(database: &Database) -> Option<String> {
    if !database.automatic_migrations {
        return None;
    }
    strata_model::migration_data::table(
        database.migration_framework.as_deref(),
        database.migration_table_name.as_deref(),
    )
}

fn check_ratio(ratio: i64) -> Result<()> {
    if !(0..=95).contains(&ratio) {
        return Err(ControlError::Invalid(format!(
            "throttle ratio {ratio} is out of range: use 0 (no throttling) to 95"
        )));
    }
    Ok(())
}

fn progress_of(d: &Deployment) -> Progress {
    serde_json::from_str(&d.progress).unwrap_or_default()
}

fn set_progress(d: &mut Deployment, p: &Progress) {
    d.progress = serde_json::to_string(p).unwrap_or_default();
}

/// A digest of a schema as the server prints it (counters left out): equal digests, same schema.
fn schema_digest(objects: &[SchemaObject]) -> String {
    schema_digest_leaving_out(objects, &[])
}

/// The digest of the target's schema a plan compares (see `Plan::digest_leaves_out_in_place`).
fn plan_digest(plan: &strata_deploy::Plan, objects: &[SchemaObject]) -> String {
    if plan.digest_leaves_out_in_place {
        schema_digest_leaving_out(objects, &plan.changed_in_place())
    } else {
        schema_digest(objects)
    }
}

fn schema_digest_leaving_out(objects: &[SchemaObject], left_out: &[&str]) -> String {
    let mut h = crc32fast::Hasher::new();
    for o in objects
        .iter()
        .filter(|o| !left_out.contains(&o.name.as_str()))
    {
        h.update(o.name.as_bytes());
        h.update(&[0]);
        h.update(strata_engine::admin::strip_auto_increment(&o.create).as_bytes());
        h.update(&[0]);
    }
    format!("{:08x}", h.finalize())
}

/// The longest a deployment's statement waits for a table's metadata lock.
const DEPLOY_LOCK_WAIT: Duration = Duration::from_secs(30);

/// The force a step runs under, if any (see `strata_deploy::force`).
type StepForce = Option<Arc<Force>>;

/// How a deployment whose steps wait for long-running transactions says so (PlanetScale's
/// notice), at the start of its error.
pub const DELAYED: &str = "Migration delayed due to long-running transactions";

fn deploy_err(e: DeployError) -> ControlError {
    match e {
        DeployError::Query(q) => ControlError::Internal(q.to_string()),
        // Long transactions in the way: a passing condition, the step is tried again later (and
        // forced once it has waited long enough).
        e @ DeployError::LockTimeout { .. } => ControlError::Internal(format!("{DELAYED}: {e}")),
        other => ControlError::Unprocessable(other.to_string()),
    }
}

/// True for errors that end a deployment (the data or schema forbid it), false for passing ones
/// (an instance restarting, locks held by long transactions).
fn is_final(e: &ControlError) -> bool {
    matches!(e, ControlError::Unprocessable(_))
}

impl Platform {
    /// Saves a copy's progress, only while the deployment is still in progress: `Some(latest)` when
    /// it has moved on (a cancel), which the copy must not overwrite.
    fn save_copy_progress(&self, d: &mut Deployment) -> Result<Option<Deployment>> {
        d.updated_at = now_millis();
        if self.catalog().save_deployment_progress(
            &d.deploy_request_id,
            "in_progress",
            &d.progress,
            d.updated_at,
        )? {
            Ok(None)
        } else {
            Ok(Some(self.catalog().deployment(&d.deploy_request_id)?))
        }
    }

    fn save(&self, d: &mut Deployment) -> Result<()> {
        d.updated_at = now_millis();
        Ok(self.catalog().save_deployment(d)?)
    }

    fn deployment_for(&self, request: &DeployRequest) -> Result<Deployment> {
        self.catalog().deployment(&request.id).map_err(|_| {
            ControlError::Unprocessable(format!(
                "Deploy request #{} has not been deployed",
                request.number
            ))
        })
    }

    /// Puts an open, deployable (and, where required, approved) request in its branch's deploy queue.
    pub async fn deploy_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
        instant: bool,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        if request.state != "open" {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is closed"
            )));
        }
        if let Ok(d) = self.catalog().deployment(&request.id) {
            if d.is_active() {
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} is already deployed or in the deploy queue ({})",
                    d.state
                )));
            }
        }
        let status = self.live_status(&database, request.clone()).await?;
        if !status.problems.is_empty() || status.changes.is_empty() {
            let why = if status.problems.is_empty() {
                "there are no schema changes to deploy".to_string()
            } else {
                status.problems.join("; ")
            };
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is not deployable: {why}"
            )));
        }
        if !status.deployable {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} must be approved by an administrator before it is deployed"
            )));
        }
        // Planned now as it will be at the front of the queue: a change that cannot be made online
        // is refused here, with the reason, never queued to fail later.
        let (target, result) = status.schemas.clone().unwrap_or_default();
        // A tag of its own, so two requests probed at once do not share a probe table.
        let tag = format!("{:08x}", crc32fast::hash(ids::public_id().as_bytes()));
        let plan = strata_deploy::plan(&tag, &target, &result, &status.changes).map_err(|e| {
            ControlError::Unprocessable(format!("Deploy request #{number} is not deployable: {e}"))
        })?;
        if instant {
            let into = self
                .catalog()
                .branch(&database.id, &request.into_branch)
                .map_err(|_| not_found("Branch", &request.into_branch))?;
            let mut conn = self.connect_branch(&database, &into).await?;
            if let Some(why) = run::instant_eligible(&mut conn, &plan)
                .await
                .map_err(deploy_err)?
            {
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} cannot be deployed instantly: {why}"
                )));
            }
        }
        // As PlanetScale does when a request joins the queue: one that changes an object a
        // request ahead of it in the queue changes otherwise is refused now, not failed once
        // that one has deployed.
        let ahead: Vec<(i64, Vec<strata_schema::Change>)> = self
            .catalog()
            .active_deployments()?
            .into_iter()
            .filter(|o| {
                o.database_id == database.id
                    && o.into_branch == request.into_branch
                    && o.state != "complete_pending_revert"
            })
            .filter_map(|o| {
                crate::deploy_requests::decode_changes(&o.changes)
                    .map(|c| (o.deploy_request_number, c))
            })
            .collect();
        if let Some((other, object)) = queue_conflict(&status.changes, &ahead) {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} conflicts with deploy request #{other}, ahead of it in the deploy queue: both change `{object}`, differently. Deploy it once #{other} has deployed, from a branch made after that (or with the change made there)"
            )));
        }
        let now = now_millis();
        let mut d = Deployment {
            id: ids::public_id(),
            database_id: database.id.clone(),
            deploy_request_id: request.id.clone(),
            deploy_request_number: request.number,
            into_branch: request.into_branch.clone(),
            state: "queued".into(),
            instant,
            auto_cutover: request.auto_cutover || instant,
            throttle_ratio: database.deploy_throttle_ratio,
            plan: String::new(),
            progress: String::new(),
            error: None,
            actor: caller.token_id.clone(),
            cutover_actor: None,
            cancelled_actor: None,
            queued_at: now,
            started_at: None,
            cutover_at: None,
            finished_at: None,
            revert_expires_at: None,
            updated_at: now,
            changes: crate::deploy_requests::encode_changes(&status.changes),
            force_cutover_requested_at: None,
        };
        self.save(&mut d)?;
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// Cuts a gated deployment over (now if it is in sync, else as soon as it is).
    pub async fn apply_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        let mut d = self.deployment_for(&request)?;
        if !matches!(
            d.state.as_str(),
            "queued" | "in_progress" | "pending_cutover"
        ) {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} has no deployment waiting to be applied ({})",
                d.state
            )));
        }
        d.auto_cutover = true;
        d.cutover_actor = Some(caller.token_id.clone());
        self.save(&mut d)?;
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// Turns auto-apply on or off for a request (and its deployment, if not cut over yet).
    pub async fn set_auto_apply(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
        on: bool,
    ) -> Result<DeployRequestStatus> {
        let (database, mut request) = self.numbered(caller, org, db, number)?;
        let active = self.catalog().deployment(&request.id).is_ok_and(|d| {
            matches!(
                d.state.as_str(),
                "queued" | "in_progress" | "pending_cutover"
            )
        });
        if request.state == "closed" && !active {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is closed: its auto-apply setting no longer matters"
            )));
        }
        request.auto_cutover = on;
        request.updated_at = now_millis();
        self.catalog().update_deploy_request(&request)?;
        if let Ok(mut d) = self.catalog().deployment(&request.id) {
            if matches!(
                d.state.as_str(),
                "queued" | "in_progress" | "pending_cutover"
            ) && !d.instant
            {
                d.auto_cutover = on;
                self.save(&mut d)?;
                self.wake_deploys();
            }
        }
        self.status_of(&database, request).await
    }

    /// Cancels a deployment that has not cut over: a queued one leaves the queue, a running one
    /// drops its shadow tables; production keeps its schema.
    pub async fn cancel_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        let _guard = self.deploy_lock.lock().await;
        let mut d = self.deployment_for(&request)?;
        match d.state.as_str() {
            "queued" => d.state = "cancelled".into(),
            "in_progress" | "pending_cutover" => d.state = "in_progress_cancel".into(),
            other => {
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} cannot be cancelled now ({other})"
                )))
            }
        }
        d.cancelled_actor = Some(caller.token_id.clone());
        if d.state == "cancelled" {
            d.finished_at = Some(now_millis());
        }
        self.save(&mut d)?;
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// Swaps the old tables back, with every write made since the cut-over; refused, with the reason,
    /// when a write since could not be kept in the old schema.
    pub async fn revert_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (gate, force) = self.request_gate(caller, org, db, number)?;
        let r = self
            .gated(
                gate,
                force.clone(),
                self.revert_deploy_request_gated(caller, org, db, number),
            )
            .await;
        self.count_ended(caller, org, db, number, force.as_ref());
        r
    }

    async fn revert_deploy_request_gated(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        let reverted = {
            let _guard = self.deploy_lock.lock().await;
            let mut d = self.deployment_for(&request)?;
            if d.state != "complete_pending_revert" {
                // A window a later deploy closed says which one (an expired one looks the same).
                let closed_by = (d.state == "complete")
                    .then(|| self.catalog().deployments(&database.id).ok())
                    .flatten()
                    .and_then(|all| {
                        all.into_iter()
                            .filter(|o| {
                                o.into_branch == d.into_branch
                                    && o.id != d.id
                                    && o.cutover_at.is_some()
                                    && o.cutover_at >= d.cutover_at
                                    && d.revert_expires_at
                                        .zip(o.cutover_at)
                                        .is_some_and(|(expires, cut)| cut < expires)
                            })
                            .min_by_key(|o| o.cutover_at)
                    });
                let why = if d.instant {
                    "instant deployments cannot be reverted".to_string()
                } else if let Some(o) = closed_by {
                    format!(
                        "its revert window was closed when deploy request #{} was deployed into `{}`",
                        o.deploy_request_number, d.into_branch
                    )
                } else {
                    format!("its deployment is {}", d.state)
                };
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} cannot be reverted: {why}"
                )));
            }
            let plan = plan_of(&d)?;
            let mut conn = self.deploy_conn(&database, &d).await?;
            let blockers = run::revert_blockers(&mut conn, &plan)
                .await
                .map_err(deploy_err)?;
            if !blockers.is_empty() {
                let why: Vec<String> = blockers
                    .iter()
                    .map(|(t, r, n)| {
                        let rows = if *n == 1 {
                            "a row written since the deploy does".to_string()
                        } else {
                            format!("{n} rows written since the deploy do")
                        };
                        format!(
                            "table `{t}`: {rows} not fit the old schema ({})",
                            run::plain_names(&plan, r)
                        )
                    })
                    .collect();
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} cannot be reverted without losing data: {}",
                    why.join("; ")
                )));
            }
            d.state = "in_progress_revert".into();
            self.save(&mut d)?;
            let stall = match run::revert(
                &mut conn,
                &database.name,
                &plan,
                SWAP_LOCK_WAIT,
                SWAP_ATTEMPTS,
            )
            .await
            {
                Ok(stall) => Some(stall),
                // Long transactions in the way: the revert stays under way and the worker goes
                // on trying, as a deploy's cut-over waits (forced past `force_cutover_after`, or
                // at `force-cutover`); the answer says so. It was told as a failure once, and the
                // worker then finished it.
                Err(e @ strata_deploy::DeployError::LockTimeout { .. }) => {
                    let message = run::plain_names(&plan, &e.to_string());
                    d.error = Some(format!("{DELAYED}: {message}"));
                    let mut p = progress_of(&d);
                    p.delayed_since.get_or_insert_with(now_millis);
                    set_progress(&mut d, &p);
                    self.save(&mut d)?;
                    tracing::info!(deployment = %d.id, error = %message, "revert delayed: the worker goes on");
                    None
                }
                Err(e) => {
                    // Refused at the swap (a write that arrived after the check): nothing was
                    // swapped, so the deployment stays as it was, its window open, and the
                    // caller is told why.
                    if run::revert_untouched(&mut conn, &database.name, &plan)
                        .await
                        .unwrap_or(false)
                    {
                        d.state = "complete_pending_revert".into();
                        self.save(&mut d)?;
                        return Err(ControlError::Unprocessable(format!(
                            "Deploy request #{number} was not reverted: {}",
                            run::plain_names(&plan, &e.to_string())
                        )));
                    }
                    if matches!(e, strata_deploy::DeployError::RevertRefused { .. }) {
                        // Other tables are reverted already: the worker finishes once the row is
                        // fixed (the deployment stays `in_progress_revert`, with this reason).
                        let why = format!(
                            "{}; the other tables are reverted already: the revert finishes once such rows are fixed",
                            run::plain_names(&plan, &e.to_string())
                        );
                        d.error = Some(why.clone());
                        self.save(&mut d)?;
                        return Err(ControlError::Unprocessable(format!(
                            "Deploy request #{number} is partly reverted: {why}"
                        )));
                    }
                    return Err(deploy_err(e));
                }
            };
            let Some(stall) = stall else {
                let _ = conn.disconnect().await;
                drop(_guard);
                self.wake_deploys();
                return self.status_of(&database, request).await;
            };
            let mut p = progress_of(&d);
            // The deploy's migrations undone in the log, so the framework sees them so; rows
            // the application recorded since stay.
            run::undo_migration_rows(&mut conn, &database.name, &p)
                .await
                .map_err(deploy_err)?;
            p.phase = "reverted".into();
            p.revert_stall_ms = Some(stall_ms(stall));
            set_progress(&mut d, &p);
            self.save(&mut d)?;
            let _ = conn.disconnect().await;
            self.refresh_base(&database, &request).await?;
            d
        };
        // The artifacts go now, so the answer is the final state (a failure here is retried by
        // the worker, which finds the revert already done).
        match self
            .close_window(database.clone(), reverted, "complete_revert")
            .await
        {
            Ok(mut d) => self.clear_error(&mut d),
            Err(e) => tracing::warn!(error = %e, "revert clean-up will be retried"),
        }
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// Closes the revert window now: the deploy becomes permanent and its artifacts are dropped.
    pub async fn skip_revert(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (gate, force) = self.request_gate(caller, org, db, number)?;
        let r = self
            .gated(
                gate,
                force.clone(),
                self.skip_revert_gated(caller, org, db, number),
            )
            .await;
        self.count_ended(caller, org, db, number, force.as_ref());
        r
    }

    async fn skip_revert_gated(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        let closing = {
            let _guard = self.deploy_lock.lock().await;
            let mut d = self.deployment_for(&request)?;
            if d.state != "complete_pending_revert" {
                return Err(ControlError::Unprocessable(format!(
                    "Deploy request #{number} has no open revert window ({})",
                    d.state
                )));
            }
            d.revert_expires_at = Some(now_millis());
            self.save(&mut d)?;
            d
        };
        // Closed now, so the answer is the final state; a failure is retried by the worker.
        if let Err(e) = self
            .close_window(database.clone(), closing, "complete")
            .await
        {
            tracing::warn!(error = %e, "closing the revert window will be retried");
        }
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// A request's deployment.
    pub fn deployment(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<Deployment> {
        let (_, request) = self.numbered(caller, org, db, number)?;
        self.deployment_for(&request)
    }

    /// The database's deploy queue: deployments not finished, in order.
    pub fn deploy_queue(&self, caller: &Caller, org: &str, db: &str) -> Result<Vec<Deployment>> {
        let database = self.database(caller, org, db)?;
        Ok(self
            .catalog()
            .deployments(&database.id)?
            .into_iter()
            .filter(Deployment::is_active)
            .collect())
    }

    /// Sets a deployment's throttle ratio (0..=95).
    pub fn set_deploy_throttle(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
        ratio: i64,
    ) -> Result<Deployment> {
        check_ratio(ratio)?;
        let (_, request) = self.numbered(caller, org, db, number)?;
        let mut d = self.deployment_for(&request)?;
        if !d.is_active() {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is not being deployed ({}): there is nothing to throttle",
                crate::deploy_requests::deployment_state_name(&d.state)
            )));
        }
        d.throttle_ratio = ratio;
        self.save(&mut d)?;
        Ok(d)
    }

    /// The database's deploy throttle: the ratio every deployment queued from now on starts with
    /// (each deploy request can still be throttled on its own).
    pub fn database_throttle(&self, caller: &Caller, org: &str, db: &str) -> Result<i64> {
        Ok(self.database(caller, org, db)?.deploy_throttle_ratio)
    }

    pub fn set_database_throttle(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        ratio: i64,
    ) -> Result<i64> {
        check_ratio(ratio)?;
        let mut database = self.database(caller, org, db)?;
        database.deploy_throttle_ratio = ratio;
        database.updated_at = now_millis();
        self.catalog().update_database(&database)?;
        Ok(ratio)
    }

    pub(crate) fn wake_deploys(&self) {
        self.deploy_wake.notify_one();
    }

    /// Starts the deploy queue's worker (once, from `resume`).
    pub(crate) fn start_deploy_worker(&self) {
        let me = self.arc();
        let job = tokio::spawn(async move {
            loop {
                me.deploy_tick();
                tokio::select! {
                    _ = me.deploy_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        lock(&self.jobs).insert("deploy-worker".into(), job);
    }

    /// Spawns a driver for each deployment that has work to do and none running.
    fn deploy_tick(&self) {
        let Ok(active) = self.catalog().active_deployments() else {
            return;
        };
        let now = now_millis();
        for d in &active {
            let ready = match d.state.as_str() {
                "queued" => queued_behind(d, &active).is_none(),
                "pending_cutover" => d.auto_cutover,
                "complete_pending_revert" => d.revert_expires_at.is_none_or(|t| now >= t),
                _ => true,
            };
            if !ready || !lock(&self.deploy_running).insert(d.id.clone()) {
                continue;
            }
            let me = self.arc();
            let d = d.clone();
            tokio::spawn(async move {
                let id = d.id.clone();
                me.clone().drive(d).await;
                lock(&me.deploy_running).remove(&id);
                me.wake_deploys();
            });
        }
    }

    /// Why a queued deployment has not started: the deployment ahead of it in its branch's
    /// queue, and what that one waits for.
    pub fn queue_note(&self, d: &Deployment) -> Option<String> {
        if d.state != "queued" {
            return None;
        }
        let active = self.catalog().active_deployments().ok()?;
        let ahead = queued_behind(d, &active)?;
        Some(waiting_behind(ahead))
    }

    /// The gate of the branch a numbered request's deployment changes (none before it deploys).
    fn request_gate(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<(Option<Arc<Gate>>, StepForce)> {
        let (_, request) = self.numbered(caller, org, db, number)?;
        Ok(match self.deployment_for(&request) {
            Ok(d) => (self.deploy_gate(&d), self.deploy_force(&d)),
            Err(_) => (None, None),
        })
    }

    /// The force a deployment's steps run under (see `strata_deploy::force`), armed by the
    /// database's aggressive cut-over, a force asked for on the request, or steps that have waited
    /// for long-running transactions past `force_cutover_after`.
    fn deploy_force(&self, d: &Deployment) -> Option<Arc<Force>> {
        let database = self.catalog().database_by_id(&d.database_id).ok()?;
        let plan = plan_of(d).ok()?;
        let after = self.settings().force_cutover_after.as_millis() as i64;
        let catalog = self.catalog.clone();
        let request = d.deploy_request_id.clone();
        // Read afresh as the step waits, at most every `FORCE_GRACE`: a force asked for now, or a
        // delay that passes its bound, takes effect in the middle of a try.
        let armed = Box::new(move || {
            let Ok(d) = catalog.deployment(&request) else {
                return false;
            };
            let waited_enough = progress_of(&d)
                .delayed_since
                .is_some_and(|since| now_millis() - since >= after);
            // A force asked for applies to what comes next: the cut-over, or, asked for after it,
            // the revert (a force of the cut-over is not carried over to a later revert).
            d.force_cutover_requested_at
                .is_some_and(|at| d.cutover_at.is_none_or(|cut| at > cut))
                || waited_enough
                || catalog
                    .database_by_id(&d.database_id)
                    .is_ok_and(|db| db.aggressive_cutover)
        });
        Some(Force::new(&database.name, plan.application_tables(), armed))
    }

    /// Counts the connections a forced revert (or clean-up) asked for through the API ended.
    fn count_ended(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
        force: Option<&Arc<Force>>,
    ) {
        let Some(n) = force.map(|f| f.ended()).filter(|n| *n > 0) else {
            return;
        };
        let Ok((_, request)) = self.numbered(caller, org, db, number) else {
            return;
        };
        if let Ok(mut d) = self.deployment_for(&request) {
            let mut p = progress_of(&d);
            p.ended_connections += n;
            set_progress(&mut d, &p);
            let _ = self.save(&mut d);
        }
    }

    /// Counts the connections a forced step ended into the deployment's progress: into the
    /// deployment the step returned (the next step goes on from it), else the one saved.
    fn note_ended(
        &self,
        d: &Deployment,
        advanced: &mut Result<Deployment>,
        force: Option<&Arc<Force>>,
    ) {
        let Some(n) = force.map(|f| f.ended()).filter(|n| *n > 0) else {
            return;
        };
        let add = |d: &mut Deployment| {
            let mut p = progress_of(d);
            p.ended_connections += n;
            set_progress(d, &p);
            let _ = self.save(d);
        };
        match advanced {
            Ok(next) => add(next),
            Err(_) => {
                if let Ok(mut latest) = self.catalog().deployment(&d.deploy_request_id) {
                    add(&mut latest);
                }
            }
        }
    }

    /// Asks for the deployment's cut-over to be forced: its steps end the queries and transactions
    /// holding its tables instead of waiting for them.
    pub async fn force_cutover(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, request) = self.numbered(caller, org, db, number)?;
        let d = self.deployment_for(&request)?;
        if !d.is_active() {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is not being deployed ({}): there is no cut-over to force",
                crate::deploy_requests::deployment_state_name(&d.state)
            )));
        }
        self.catalog()
            .request_force_cutover(&d.deploy_request_id, now_millis())?;
        self.wake_deploys();
        self.status_of(&database, request).await
    }

    /// The gate of the branch a deployment changes.
    fn deploy_gate(&self, d: &Deployment) -> Option<Arc<Gate>> {
        let database = self.catalog().database_by_id(&d.database_id).ok()?;
        let branch = self.target_branch(&database, d).ok()?;
        Some(self.gate(&branch.id))
    }

    /// Runs a deploy step with its branch's gate at hand (see `strata_deploy::gate`), forced when
    /// `force` is set (see `strata_deploy::force`).
    async fn gated<T>(
        &self,
        gate: Option<Arc<Gate>>,
        force: Option<Arc<Force>>,
        step: impl std::future::Future<Output = T>,
    ) -> T {
        let step = async move {
            match force {
                Some(f) => FORCE.scope(f, step).await,
                None => step.await,
            }
        };
        match gate {
            Some(g) => BRANCH_GATE.scope(g, step).await,
            None => step.await,
        }
    }

    /// Moves one deployment on until it must wait; passing failures are retried by a later tick.
    async fn drive(self: Arc<Self>, d: Deployment) {
        let gate = self.deploy_gate(&d);
        let me = self.clone();
        me.gated(gate, None, self.drive_gated(d)).await
    }

    async fn drive_gated(self: Arc<Self>, d: Deployment) {
        let mut d = d;
        loop {
            let before = d.state.clone();
            let force = self.deploy_force(&d);
            let mut advanced = match &force {
                Some(f) => FORCE.scope(f.clone(), self.advance(d.clone())).await,
                None => self.advance(d.clone()).await,
            };
            self.note_ended(&d, &mut advanced, force.as_ref());
            if let Ok(next) = &mut advanced {
                // A step that went through: the error a failed try left is history.
                self.clear_error(next);
            }
            match advanced {
                Ok(next) if next.is_active() && next.state != before => d = next,
                Ok(_) => return,
                Err(e) if is_final(&e) => {
                    tracing::warn!(deployment = %d.id, error = %e, "deployment failed");
                    let _ = self.fail(d, &e.to_string()).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(deployment = %d.id, error = %e, "deployment step will be retried");
                    if let Ok(mut latest) = self.catalog().deployment(&d.deploy_request_id) {
                        let message = e.to_string();
                        // A delay is a notice, said as PlanetScale says it; other passing errors
                        // keep their kind.
                        let delayed = message.find(DELAYED).map(|i| message[i..].to_string());
                        latest.error = Some(delayed.clone().unwrap_or(message));
                        let mut p = progress_of(&latest);
                        if delayed.is_some() && p.delayed_since.is_none() {
                            p.delayed_since = Some(now_millis());
                            set_progress(&mut latest, &p);
                        }
                        let _ = self.save(&mut latest);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
            }
        }
    }

    /// Takes back the error (and the delay) a failed try of a step recorded (not a failed
    /// deployment's reason): in the catalog, and in `d`, which the next step goes on from (it
    /// saves its own copy: a stale error there came back).
    fn clear_error(&self, d: &mut Deployment) {
        let clear = |x: &mut Deployment| {
            let mut p = progress_of(x);
            let delayed = p.delayed_since.take().is_some();
            if delayed {
                set_progress(x, &p);
            }
            let had = x.error.take().is_some();
            delayed || had
        };
        if d.state != "complete_error" {
            clear(d);
        }
        if let Ok(mut latest) = self.catalog().deployment(&d.deploy_request_id) {
            if latest.state != "complete_error" && clear(&mut latest) {
                let _ = self.save(&mut latest);
            }
        }
    }

    /// The branch the deployment changes.
    fn target_branch(&self, database: &Database, d: &Deployment) -> Result<strata_catalog::Branch> {
        self.catalog()
            .branch(&database.id, &d.into_branch)
            .map_err(|_| {
                ControlError::Unprocessable(format!("Branch '{}' was deleted", d.into_branch))
            })
    }

    /// The deployment's target schema as its server has it now (artifacts left out).
    async fn target_schema(
        &self,
        database: &Database,
        d: &Deployment,
    ) -> Result<Vec<SchemaObject>> {
        let into = self.target_branch(database, d)?;
        self.schema_in(database, &into)
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))
    }

    async fn deploy_conn(&self, database: &Database, d: &Deployment) -> Result<Conn> {
        let into = self.target_branch(database, d)?;
        let mut conn = self
            .connect_branch(database, &into)
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        // A metadata lock held by a client (LOCK TABLES, a long transaction) makes a step wait at
        // most this long; the step then fails with the reason in the deployment and is tried again.
        conn.query_drop(format!(
            "SET SESSION lock_wait_timeout = {}",
            DEPLOY_LOCK_WAIT.as_secs()
        ))
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        Ok(conn)
    }

    /// Ends a deployment that cannot go on: production keeps (or gets back) its old schema.
    async fn fail(&self, mut d: Deployment, why: &str) -> Result<()> {
        let _guard = self.deploy_lock.lock().await;
        // As saved last (the step's own copy is from before it ran: a failed copy showed 0 rows
        // copied).
        if let Ok(latest) = self.catalog().deployment(&d.deploy_request_id) {
            if latest.id == d.id {
                d = latest;
            }
        }
        if let (Ok(database), Ok(plan)) =
            (self.catalog().database_by_id(&d.database_id), plan_of(&d))
        {
            if let Ok(mut conn) = self.deploy_conn(&database, &d).await {
                if matches!(
                    run::placement(&mut conn, &database.name, &plan).await.ok(),
                    Some(Placement::Before | Placement::Reverted)
                ) {
                    let _ = run::cleanup(&mut conn, &database.name, &plan).await;
                }
            }
        }
        d.state = "complete_error".into();
        d.error = Some(why.to_string());
        d.finished_at = Some(now_millis());
        self.save(&mut d)
    }

    /// The number of a deploy request into the same branch reverted after `d` started (and
    /// planned against the target's schema), if any.
    fn reverted_since_start(&self, d: &Deployment) -> Option<i64> {
        let started = d.started_at?;
        plan_of(d).ok()?.target_digest.as_ref()?;
        self.catalog()
            .deployments(&d.database_id)
            .ok()?
            .into_iter()
            .find(|o| {
                o.id != d.id
                    && o.into_branch == d.into_branch
                    && o.state == "complete_revert"
                    && o.finished_at.is_some_and(|f| f > started)
            })
            .map(|o| o.deploy_request_number)
    }

    /// One step of the state machine; returns the deployment as saved.
    async fn advance(&self, d: Deployment) -> Result<Deployment> {
        let database = self.catalog().database_by_id(&d.database_id)?;
        // A revert into the same branch since this deployment started changed the schema it
        // planned against: its cut-over would refuse. Said now, before a forced step ends anyone's
        // transaction for a deployment already decided.
        if matches!(d.state.as_str(), "in_progress" | "pending_cutover") {
            if let Some(number) = self.reverted_since_start(&d) {
                return Err(ControlError::Unprocessable(format!(
                    "the schema of `{}` changed since the deploy started (deploy request #{number} was reverted): nothing was deployed; look at the request's diff and deploy it again",
                    d.into_branch
                )));
            }
        }
        match d.state.as_str() {
            "queued" => self.start(database, d).await,
            "in_progress" => self.copy(database, d).await,
            "pending_cutover" => {
                let mut d = d;
                if d.auto_cutover {
                    d.state = "in_progress_cutover".into();
                    self.save(&mut d)?;
                }
                Ok(d)
            }
            "in_progress_cutover" => {
                // Outside the cut-over's lock (closing a window takes it too). A revert made
                // before this is found by the cut-over's digest check; after it, refused.
                self.close_earlier_windows(&database, &d).await?;
                self.cut_over(database, d).await
            }
            "complete_pending_revert" => {
                if d.revert_expires_at.is_some_and(|t| now_millis() < t) {
                    return Ok(d);
                }
                self.close_window(database, d, "complete").await
            }
            "in_progress_revert" => self.close_window(database, d, "complete_revert").await,
            "in_progress_cancel" => self.close_window(database, d, "complete_cancel").await,
            _ => Ok(d),
        }
    }

    /// Front of the queue: checked again against the target as it is now, then planned.
    async fn start(&self, database: Database, mut d: Deployment) -> Result<Deployment> {
        let request = self
            .catalog()
            .deploy_requests(&database.id)?
            .into_iter()
            .find(|r| r.id == d.deploy_request_id)
            .ok_or_else(|| ControlError::NotFound("Deploy request not found".into()))?;
        // Reading the schemas fails while an instance restarts: a passing error, tried again.
        let status = self
            .live_status(&database, request.clone())
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        // What deploys is what was queued: a branch changed since (or a target that moved under
        // it) is not deployed unseen.
        // An instant deploy whose earlier try stopped part-way (a later table's locks were not
        // free in time) finds part of it on the target already: what is left of what was queued
        // goes on.
        let rest_of_queued = || {
            crate::deploy_requests::decode_changes(&d.changes).is_some_and(|queued| {
                status.changes.iter().all(|c| {
                    queued
                        .iter()
                        .any(|q| q.object == c.object && q.statement == c.statement)
                })
            })
        };
        if !d.changes.is_empty()
            && status.problems.is_empty()
            && crate::deploy_requests::encode_changes(&status.changes) != d.changes
            && !(d.instant && !status.changes.is_empty() && rest_of_queued())
        {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{} changed after it was deployed (its branch or the target's schema moved): nothing was deployed; look at its diff and deploy it again",
                request.number
            )));
        }
        if !status.problems.is_empty() || status.changes.is_empty() {
            let why = if status.problems.is_empty() {
                "the target already has these changes".to_string()
            } else {
                status.problems.join("; ")
            };
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{} is no longer deployable: {why}",
                request.number
            )));
        }
        // An instant deploy changes the target now: an earlier revert window closes first.
        if d.instant {
            self.close_earlier_windows(&database, &d).await?;
        }
        let (target, result) = status.schemas.unwrap_or_default();
        let tag = format!("{:08x}", crc32fast::hash(d.id.as_bytes()));
        let mut plan = strata_deploy::plan(&tag, &target, &result, &status.changes)
            .map_err(|e| ControlError::Unprocessable(e.to_string()))?;
        plan.digest_leaves_out_in_place = true;
        plan.target_digest = Some(plan_digest(
            &plan,
            &self.target_schema(&database, &d).await?,
        ));
        d.plan = serde_json::to_string(&plan).map_err(|e| ControlError::Internal(e.to_string()))?;
        d.started_at = Some(now_millis());
        d.error = None;
        if d.instant {
            let mut conn = self.deploy_conn(&database, &d).await?;
            run::instant(&mut conn, &database.name, &plan)
                .await
                .map_err(deploy_err)?;
            d.state = "complete".into();
            d.cutover_at = Some(now_millis());
            d.finished_at = d.cutover_at;
            self.deployed(&database, &request).await?;
        } else {
            let mut conn = self.deploy_conn(&database, &d).await?;
            let mut p = Progress {
                phase: "preparing".into(),
                ..Default::default()
            };
            for a in plan.online_alters() {
                p.tables.push(TableProgress {
                    table: a.table.clone(),
                    rows_total: run::count_rows(&mut conn, a, None, None)
                        .await
                        .map_err(deploy_err)?,
                    ..Default::default()
                });
            }
            set_progress(&mut d, &p);
            d.state = "in_progress".into();
        }
        self.save(&mut d)?;
        Ok(d)
    }

    /// Closes the revert window of earlier deploys into the same branch: a revert must never undo
    /// a schema a later deploy built on. Called only when the later deploy changes the target (its
    /// cut-over, or an instant deploy): one cancelled or failed before leaves the window open. A
    /// revert made while the later deploy copies changes the target under it, which its cut-over
    /// finds (the target's digest) and refuses.
    async fn close_earlier_windows(&self, database: &Database, d: &Deployment) -> Result<()> {
        for earlier in self.catalog().active_deployments()? {
            if earlier.id != d.id
                && earlier.database_id == d.database_id
                && earlier.into_branch == d.into_branch
                && earlier.state == "complete_pending_revert"
            {
                self.close_window(database.clone(), earlier, "complete")
                    .await?;
            }
        }
        Ok(())
    }

    /// The deploy request is done: closed, as PlanetScale closes a deployed request.
    async fn deployed(&self, database: &Database, request: &DeployRequest) -> Result<()> {
        let mut r = request.clone();
        let now = now_millis();
        r.state = "closed".into();
        r.closed_at = Some(now);
        r.updated_at = now;
        self.catalog().update_deploy_request(&r)?;
        self.refresh_base(database, request).await
    }

    /// The source branch's base becomes the target's schema as it is now (after a deploy or a
    /// revert), so its next request holds only what changed since.
    async fn refresh_base(&self, database: &Database, request: &DeployRequest) -> Result<()> {
        let (Ok(mut branch), Ok(into)) = (
            self.catalog().branch(&database.id, &request.branch),
            self.catalog().branch(&database.id, &request.into_branch),
        ) else {
            return Ok(());
        };
        let now = self.schema_in(database, &into).await?;
        // Only what the deploy touched takes the target's version now (the branch's after a
        // deploy, the old one after a revert); everything else keeps the branch's base. Taking the
        // whole target made changes deployed from other branches look like the branch's own
        // removals of them, and its next request undid them.
        let touched: Option<std::collections::BTreeSet<String>> = self
            .catalog()
            .deployment(&request.id)
            .ok()
            .and_then(|d| crate::deploy_requests::decode_changes(&d.changes))
            .map(|changes| changes.into_iter().map(|c| c.object).collect());
        let objects = match touched {
            Some(touched) if branch.base_schema.is_some() => {
                let mut base = Platform::base_schema(&branch);
                base.retain(|o| !touched.contains(&o.name));
                base.extend(now.into_iter().filter(|o| touched.contains(&o.name)));
                base.sort_by(|a, b| a.name.cmp(&b.name));
                base
            }
            _ => now,
        };
        branch.base_schema = Some(
            serde_json::to_string(&objects).map_err(|e| ControlError::Internal(e.to_string()))?,
        );
        branch.updated_at = now_millis();
        self.catalog().update_branch(&branch)?;
        // The target's schema changed (a deploy or a revert).
        self.catalog()
            .touch_branch_schema(&into.id, branch.updated_at)?;
        Ok(())
    }

    /// Preparation, copy and verification; ends in sync, waiting for (or going to) the cut-over.
    async fn copy(&self, database: Database, mut d: Deployment) -> Result<Deployment> {
        let plan = plan_of(&d)?;
        let mut p = progress_of(&d);
        let mut conn = self.deploy_conn(&database, &d).await?;
        if run::placement(&mut conn, &database.name, &plan)
            .await
            .map_err(deploy_err)?
            != Placement::Before
        {
            // Cut over already (a restart after the RENAME, before the catalog heard of it).
            d.state = "in_progress_cutover".into();
            self.save(&mut d)?;
            return Ok(d);
        }
        if p.phase == "preparing" || p.phase.is_empty() {
            let started = Instant::now();
            run::prepare(&mut conn, &database.name, &plan)
                .await
                .map_err(deploy_err)?;
            tracing::info!(deployment = %d.id, seconds = started.elapsed().as_secs_f64(), "deployment prepared");
            // The preparation went through: a delay its earlier tries recorded is history (it
            // stayed in the request's error through the copy).
            p.delayed_since = None;
            self.clear_error(&mut d);
            for t in &mut p.tables {
                t.rows_copied = 0;
                t.checkpoint = None;
                t.ranges.clear();
                t.copied = false;
                t.verified = false;
            }
            p.phase = "copying".into();
            set_progress(&mut d, &p);
            if let Some(latest) = self.save_copy_progress(&mut d)? {
                return Ok(latest);
            }
        }
        strata_engine::mysql_async::prelude::Queryable::query_drop(
            &mut conn,
            strata_deploy::sql::RELAXED_MODE,
        )
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        let started = Instant::now();
        let state = CopyState {
            inner: std::sync::Mutex::new(CopyInner {
                d,
                p,
                copied_now: 0,
                last_save: Instant::now(),
                retries: 0,
                verify: Duration::ZERO,
                rate_window: (Instant::now(), 0),
            }),
        };
        for (i, a) in plan.online_alters().enumerate() {
            let (copied, ranges, rows) = {
                let s = lock_state(&state);
                let t = &s.p.tables[i];
                (t.copied, t.ranges.len(), t.rows_total)
            };
            if copied {
                continue;
            }
            if ranges == 0 {
                // Big tables are copied by several workers, each over its own range of keys.
                let parts = if rows >= PARALLEL_COPY_ROWS {
                    COPY_WORKERS
                } else {
                    1
                };
                let bounds = run::split(&mut conn, a, rows, parts)
                    .await
                    .map_err(deploy_err)?;
                let mut s = lock_state(&state);
                let CopyInner { d, p, .. } = &mut *s;
                let legacy = p.tables[i].checkpoint.take();
                p.tables[i].ranges = strata_deploy::RangeProgress::between(
                    if legacy.is_some() { Vec::new() } else { bounds },
                    legacy,
                );
                set_progress(d, p);
                if let Some(latest) = self.save_copy_progress(d)? {
                    return Ok(latest);
                }
            }
            let ranges = lock_state(&state).p.tables[i].ranges.len();
            let mut conns = Vec::with_capacity(ranges);
            let d_now = lock_state(&state).d.clone();
            for _ in 0..ranges {
                let mut c = self.deploy_conn(&database, &d_now).await?;
                run::copier_session(&mut c).await.map_err(deploy_err)?;
                conns.push(c);
            }
            let ended = futures_util::future::try_join_all(
                conns
                    .iter_mut()
                    .enumerate()
                    .map(|(r, c)| self.copy_range(c, a, i, r, &state)),
            )
            .await;
            for c in conns {
                let _ = c.disconnect().await;
            }
            if let Some(latest) = ended?.into_iter().flatten().next() {
                // Cancelled, or the platform is going away.
                return Ok(latest);
            }
            let mut s = lock_state(&state);
            let CopyInner { d, p, .. } = &mut *s;
            p.tables[i].copied = true;
            set_progress(d, p);
            if let Some(latest) = self.save_copy_progress(d)? {
                return Ok(latest);
            }
        }
        let CopyInner {
            mut d,
            mut p,
            copied_now,
            retries,
            verify,
            ..
        } = state.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        tracing::info!(deployment = %d.id, rows = copied_now, retries, verify_seconds = verify.as_secs_f64(), seconds = started.elapsed().as_secs_f64(), "deployment copied");
        p.phase = "building_keys".into();
        p.eta_seconds = None;
        // Every chunk was verified as it was copied (see `run::copy_chunk`).
        for t in &mut p.tables {
            t.verified = true;
        }
        set_progress(&mut d, &p);
        if let Some(latest) = self.save_copy_progress(&mut d)? {
            return Ok(latest);
        }
        let started = Instant::now();
        self.build_keys_watched(&database, &mut conn, &plan, &mut d, &mut p)
            .await?;
        let keys_took = started.elapsed();
        run::arm_reverse_capture(&mut conn, &plan)
            .await
            .map_err(deploy_err)?;
        tracing::info!(deployment = %d.id, keys_seconds = keys_took.as_secs_f64(), seconds = started.elapsed().as_secs_f64(), "deployment keys built, reverse capture armed");
        let _ = conn.disconnect().await;
        let latest = self.catalog().deployment(&d.deploy_request_id)?;
        if latest.state != "in_progress" {
            return Ok(latest);
        }
        p.phase = "in_sync".into();
        set_progress(&mut d, &p);
        d.auto_cutover = latest.auto_cutover;
        d.state = if d.auto_cutover {
            "in_progress_cutover"
        } else {
            "pending_cutover"
        }
        .into();
        self.save(&mut d)?;
        Ok(d)
    }

    /// Builds the keys left out of the copy, saving the server's report of how far the build is
    /// (and the time left at that pace) every half second, read on a second connection. A cancel
    /// waits for the build (as before the report): the server finishes the statement anyway.
    async fn build_keys_watched(
        &self,
        database: &Database,
        conn: &mut Conn,
        plan: &strata_deploy::Plan,
        d: &mut Deployment,
        p: &mut Progress,
    ) -> Result<()> {
        let mut watcher = self.deploy_conn(database, d).await.ok();
        let started = Instant::now();
        let build = run::build_keys(conn, &database.name, plan);
        tokio::pin!(build);
        loop {
            tokio::select! {
                r = &mut build => {
                    if let Some(w) = watcher {
                        let _ = w.disconnect().await;
                    }
                    return r.map_err(deploy_err);
                }
                _ = tokio::time::sleep(KEYS_REPORT_EVERY) => {}
            }
            let Some(w) = watcher.as_mut() else { continue };
            if let Ok(Some(percent)) = run::key_build_progress(w).await {
                p.keys_percent = Some((percent * 10.0).round() / 10.0);
                p.eta_seconds = strata_deploy::eta_from_percent(percent, started.elapsed());
                set_progress(d, p);
                // Not in progress any more (cancelled): the build ends on its own, as above.
                let _ = self.save_copy_progress(d)?;
            }
        }
    }

    /// Copies one range of a table's keys, chunk by chunk, until it is done; `Some` when the
    /// deployment stopped being in progress (cancelled, or the platform going away).
    async fn copy_range(
        &self,
        conn: &mut Conn,
        a: &strata_deploy::OnlineAlter,
        table: usize,
        range: usize,
        state: &CopyState,
    ) -> Result<Option<Deployment>> {
        let mut size = 2_000u64;
        let mut chunks = 0u64;
        let mut counted = Instant::now();
        loop {
            let (request, after, to) = {
                let s = lock_state(state);
                let r = &s.p.tables[table].ranges[range];
                if r.done {
                    return Ok(None);
                }
                (
                    s.d.deploy_request_id.clone(),
                    r.resume_after().map(<[String]>::to_vec),
                    r.to.clone(),
                )
            };
            let latest = self.catalog().deployment(&request)?;
            if latest.state != "in_progress" {
                return Ok(Some(latest));
            }
            let ratio = latest.throttle_ratio.clamp(0, 95) as u8;
            {
                let mut s = lock_state(state);
                s.d.auto_cutover = latest.auto_cutover;
                s.d.throttle_ratio = latest.throttle_ratio;
            }
            chunks += 1;
            while chunks & 7 == 0
                && run::threads_running(conn).await.map_err(deploy_err)? > BUSY_THREADS
            {
                // Waiting for the instance to calm down; a cancel still ends the wait.
                let latest = self.catalog().deployment(&request)?;
                if latest.state != "in_progress" {
                    return Ok(Some(latest));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let t0 = Instant::now();
            let chunk = run::copy_chunk(conn, a, after.as_deref(), to.as_deref(), size)
                .await
                .map_err(deploy_err)?;
            let took = t0.elapsed();
            // Every few seconds, what is left of the range is counted again, so the total and the
            // ETA follow the writers' inserts and deletes.
            let remaining = match &chunk.until {
                Some(k) if counted.elapsed() >= REFINE_EVERY => {
                    counted = Instant::now();
                    Some(
                        run::count_rows(conn, a, Some(k), to.as_deref())
                            .await
                            .map_err(deploy_err)?,
                    )
                }
                Some(_) => None,
                None => Some(0),
            };
            {
                let mut s = lock_state(state);
                let CopyInner {
                    d,
                    p,
                    copied_now,
                    last_save,
                    retries,
                    verify,
                    rate_window,
                } = &mut *s;
                *copied_now += chunk.rows;
                *retries += u64::from(chunk.retries);
                *verify += chunk.verify;
                let t = &mut p.tables[table];
                t.rows_copied += chunk.rows;
                let r = &mut t.ranges[range];
                let done = chunk.until.is_none();
                match chunk.until {
                    Some(k) => r.checkpoint = Some(k),
                    None => r.done = true,
                }
                r.remaining = remaining.or(r.remaining.map(|n| n.saturating_sub(chunk.rows)));
                let (c, total) = p.rows();
                // Over the last window: none until the first one is whole.
                let (since, then) = *rate_window;
                if since.elapsed() >= RATE_WINDOW {
                    let rate = (*copied_now - then) as f64 / since.elapsed().as_secs_f64();
                    p.eta_seconds =
                        (rate > 0.0).then(|| (total.saturating_sub(c) as f64 / rate) as u64);
                    *rate_window = (Instant::now(), *copied_now);
                }
                // The checkpoint may lag the copy: chunks copied again are skipped by INSERT IGNORE.
                if last_save.elapsed() >= Duration::from_millis(500) || done {
                    set_progress(d, p);
                    if let Some(latest) = self.save_copy_progress(d)? {
                        return Ok(Some(latest));
                    }
                    *last_save = Instant::now();
                }
            }
            size = strata_deploy::next_chunk_size(size, took, CHUNK_TARGET);
            let pause = strata_deploy::throttle_pause(ratio, took);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Every table swapped in one RENAME; the revert window opens (or, for changes that cannot be
    /// reverted, the artifacts go at once).
    async fn cut_over(&self, database: Database, mut d: Deployment) -> Result<Deployment> {
        let _guard = self.deploy_lock.lock().await;
        let plan = plan_of(&d)?;
        let mut p = progress_of(&d);
        let mut conn = self.deploy_conn(&database, &d).await?;
        // The swap puts the shadows in place of the tables as they were when the deploy started:
        // a table changed directly on the target since (safe migrations switched off) would lose
        // that change, unseen by any review. Nothing is swapped then; the deployment ends.
        if let Some(want) = &plan.target_digest {
            let placed = run::placement(&mut conn, &database.name, &plan)
                .await
                .map_err(deploy_err)?;
            if placed == Placement::Before
                && &plan_digest(&plan, &self.target_schema(&database, &d).await?) != want
            {
                return Err(ControlError::Unprocessable(format!(
                    "the schema of `{}` changed since the deploy started (changed directly, or an earlier deploy reverted): nothing was deployed; look at the request's diff and deploy it again",
                    d.into_branch
                )));
            }
        }
        p.phase = "cutting_over".into();
        set_progress(&mut d, &p);
        self.save(&mut d)?;
        let started = Instant::now();
        let stall = run::cut_over(
            &mut conn,
            &database.name,
            &plan,
            SWAP_LOCK_WAIT,
            SWAP_ATTEMPTS,
        )
        .await;
        let stall = match stall {
            Ok(stall) => stall,
            Err(e @ DeployError::ViewRejected { .. }) => {
                // The tables were swapped but a view of the request cannot exist on the target:
                // production goes back to where it was, and the deployment ends with the reason.
                run::revert(
                    &mut conn,
                    &database.name,
                    &plan,
                    SWAP_LOCK_WAIT,
                    SWAP_ATTEMPTS,
                )
                .await
                .map_err(deploy_err)?;
                return Err(ControlError::Unprocessable(format!(
                    "{e}; the deployment was reverted"
                )));
            }
            // Refused after other tables were swapped (a write that arrived in the milliseconds
            // before this table's swap): tried again until the row is fixed, never left half.
            Err(e @ DeployError::WriteRefused { .. })
                if !run::cutover_untouched(&mut conn, &database.name, &plan)
                    .await
                    .unwrap_or(true) =>
            {
                return Err(ControlError::Internal(format!(
                    "{}; the other tables are cut over already: the cut-over finishes once such rows are fixed",
                    run::plain_names(&plan, &e.to_string())
                )));
            }
            Err(e) => return Err(deploy_err(e)),
        };
        tracing::info!(deployment = %d.id, stall_ms = stall.as_millis() as u64, seconds = started.elapsed().as_secs_f64(), "deployment cut over");
        self.copy_migration_data(&database, &d, &mut p, &mut conn)
            .await?;
        let now = now_millis();
        p.phase = "cut_over".into();
        p.cutover_stall_ms = Some(stall_ms(stall));
        set_progress(&mut d, &p);
        d.cutover_at = Some(now);
        d.finished_at = Some(now);
        d.error = None;
        if plan.revertable() {
            d.state = "complete_pending_revert".into();
            d.revert_expires_at = Some(now + self.settings().revert_window.as_millis() as i64);
        } else {
            run::cleanup(&mut conn, &database.name, &plan)
                .await
                .map_err(deploy_err)?;
            d.state = "complete".into();
        }
        self.save(&mut d)?;
        if let Some(r) = self
            .catalog()
            .deploy_requests(&database.id)?
            .into_iter()
            .find(|r| r.id == d.deploy_request_id)
        {
            self.deployed(&database, &r).await?;
        }
        let _ = conn.disconnect().await;
        Ok(d)
    }

    /// Automatic copy of migration data: after the cut-over, the migration table on the target gets
    /// the source branch's rows, so the framework's next migrate there finds every migration of the
    /// deploy applied. The target's rows before are saved with the deployment first (a revert puts
    /// them back); both steps are safe to repeat after a crash.
    async fn copy_migration_data(
        &self,
        database: &Database,
        d: &Deployment,
        p: &mut Progress,
        conn: &mut Conn,
    ) -> Result<()> {
        let Some(table) = migration_table(database) else {
            return Ok(());
        };
        if p.migration_rows_copied {
            return Ok(());
        }
        let Some(request) = self
            .catalog()
            .deploy_requests(&database.id)?
            .into_iter()
            .find(|r| r.id == d.deploy_request_id)
        else {
            return Ok(());
        };
        let Ok(source) = self.catalog().branch(&database.id, &request.branch) else {
            return Ok(());
        };
        let mut from = self
            .connect_branch(database, &source)
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let rows = run::read_rows(&mut from, &database.name, &table).await;
        let _ = from.disconnect().await;
        // The schema change is deployed either way; a table too large to be a migration log (or
        // gone) only skips the copy of its rows.
        let usable = |rows: std::result::Result<Option<run::TableRows>, DeployError>| match rows {
            Ok(rows) => Ok(rows),
            Err(e @ DeployError::MigrationTableTooLarge { .. }) => {
                tracing::warn!(deployment = %d.id, error = %e, "migration data not copied");
                Ok(None)
            }
            Err(e) => Err(deploy_err(e)),
        };
        let Some(rows) = usable(rows)? else {
            return Ok(());
        };
        // A table of heads (Alembic's) the branch never moved is not copied: the target may have
        // moved on meanwhile (another branch deployed a migration), and copying the branch's old
        // heads would take it back.
        if strata_model::migration_data::keeps_heads(&rows.table) {
            let base: Option<run::TableRows> = self
                .catalog()
                .branch_migration_base(&source.id)?
                .and_then(|json| serde_json::from_str(&json).ok());
            if base.is_some_and(|b| b.rows == rows.rows) {
                tracing::info!(deployment = %d.id, table, "migration heads unchanged on the branch: not copied");
                p.migration_rows_copied = true;
                return Ok(());
            }
        }
        let mut d = d.clone();
        if p.migration_rows_before.is_none() {
            let Some(before) = usable(run::read_rows(conn, &database.name, &table).await)? else {
                return Ok(());
            };
            p.migration_rows_before = Some(before);
            set_progress(&mut d, p);
            self.save(&mut d)?;
        }
        p.migration_rows_added = run::merge_rows(conn, &database.name, &rows)
            .await
            .map_err(deploy_err)?;
        p.migration_rows_copied = true;
        tracing::info!(deployment = %d.id, table, rows = rows.rows.len(), "migration data copied");
        Ok(())
    }

    /// Drops the deployment's artifacts and records how it ended. For a revert cut short before its
    /// RENAME, the revert is finished first.
    async fn close_window(
        &self,
        database: Database,
        mut d: Deployment,
        end: &str,
    ) -> Result<Deployment> {
        let _guard = self.deploy_lock.lock().await;
        let latest = self.catalog().deployment(&d.deploy_request_id)?;
        if latest.state != d.state {
            return Ok(latest);
        }
        let plan = plan_of(&d)?;
        let mut conn = self.deploy_conn(&database, &d).await?;
        let placement = run::placement(&mut conn, &database.name, &plan)
            .await
            .map_err(deploy_err)?;
        // Also when already swapped back: a revert stopped after its RENAME still owes the views
        // and the migration log (both steps are safe to repeat).
        if end == "complete_revert" && matches!(placement, Placement::Swapped | Placement::Reverted)
        {
            let stall = match run::revert(
                &mut conn,
                &database.name,
                &plan,
                SWAP_LOCK_WAIT,
                SWAP_ATTEMPTS,
            )
            .await
            {
                Ok(stall) => stall,
                Err(e @ strata_deploy::DeployError::RevertRefused { .. })
                    if run::revert_untouched(&mut conn, &database.name, &plan)
                        .await
                        .unwrap_or(false) =>
                {
                    // A resumed revert refused before its first swap: the deployment stays, its
                    // window open.
                    tracing::warn!(deployment = %d.id, error = %e, "revert refused at the swap");
                    d.state = "complete_pending_revert".into();
                    d.error = Some(run::plain_names(&plan, &e.to_string()));
                    self.save(&mut d)?;
                    return Ok(d);
                }
                // Refused after other tables were reverted (a write that arrived in the
                // milliseconds before this table's swap): tried again until the row is fixed,
                // never half undone.
                Err(e @ strata_deploy::DeployError::RevertRefused { .. }) => {
                    return Err(ControlError::Internal(format!(
                        "{}; the other tables are reverted already: the revert finishes once such rows are fixed",
                        run::plain_names(&plan, &e.to_string())
                    )))
                }
                Err(e) => return Err(deploy_err(e)),
            };
            let mut p = progress_of(&d);
            run::undo_migration_rows(&mut conn, &database.name, &p)
                .await
                .map_err(deploy_err)?;
            // Finished here (a revert resumed by the worker): its phase and stall say so, as when
            // the revert command finishes it (a RENAME already done adds no stall).
            p.phase = "reverted".into();
            p.revert_stall_ms = Some(p.revert_stall_ms.unwrap_or(0) + stall_ms(stall));
            set_progress(&mut d, &p);
            // The branch's base takes the old schema back, as when the revert command finishes
            // it: else the branch's own changes no longer showed in its diff, and a rebase
            // dropped them.
            let request = self
                .catalog()
                .deploy_requests(&database.id)?
                .into_iter()
                .find(|r| r.id == d.deploy_request_id);
            if let Some(request) = request {
                self.refresh_base(&database, &request).await?;
            }
        }
        if end == "complete_cancel" && placement == Placement::Swapped {
            // The cut-over won the race with the cancel: the deploy stands, with its window.
            d.state = "complete_pending_revert".into();
            self.save(&mut d)?;
            return Ok(d);
        }
        run::cleanup(&mut conn, &database.name, &plan)
            .await
            .map_err(deploy_err)?;
        let _ = conn.disconnect().await;
        d.state = end.into();
        if end != "complete" {
            d.finished_at = Some(now_millis());
        }
        self.save(&mut d)?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: &str, branch: &str, state: &str, queued_at: i64) -> Deployment {
        Deployment {
            id: id.into(),
            database_id: "db".into(),
            deploy_request_id: format!("r-{id}"),
            deploy_request_number: id.trim_start_matches('d').parse().unwrap_or(0),
            into_branch: branch.into(),
            state: state.into(),
            instant: false,
            auto_cutover: true,
            throttle_ratio: 0,
            plan: String::new(),
            progress: String::new(),
            error: None,
            actor: String::new(),
            cutover_actor: None,
            cancelled_actor: None,
            queued_at,
            started_at: None,
            cutover_at: None,
            finished_at: None,
            revert_expires_at: None,
            updated_at: queued_at,
            changes: String::new(),
            force_cutover_requested_at: None,
        }
    }

    #[test]
    fn a_queued_deployment_waits_behind_the_earliest_one_into_its_branch_not_yet_cut_over() {
        let me = deployment("d9", "main", "queued", 100);
        // (others, the number it waits behind)
        let cases: Vec<(Vec<Deployment>, Option<i64>)> = vec![
            (vec![], None),
            // In its revert window: holds nobody up.
            (
                vec![deployment("d1", "main", "complete_pending_revert", 10)],
                None,
            ),
            // Another branch, or queued later.
            (vec![deployment("d1", "other", "in_progress", 10)], None),
            (vec![deployment("d1", "main", "queued", 200)], None),
            (vec![deployment("d1", "main", "in_progress", 10)], Some(1)),
            (
                vec![deployment("d1", "main", "pending_cutover", 10)],
                Some(1),
            ),
            (
                vec![deployment("d1", "main", "in_progress_revert", 10)],
                Some(1),
            ),
            // The earliest of several.
            (
                vec![
                    deployment("d3", "main", "queued", 50),
                    deployment("d2", "main", "in_progress", 20),
                ],
                Some(2),
            ),
            // Queued at the same millisecond: the id decides, as in the queue itself.
            (vec![deployment("d8", "main", "queued", 100)], Some(8)),
            (vec![deployment("e1", "main", "queued", 100)], None),
        ];
        for (others, want) in cases {
            let mut all = others.clone();
            all.push(me.clone());
            let got = queued_behind(&me, &all).map(|d| d.deploy_request_number);
            assert_eq!(got, want, "{others:?}");
        }
    }

    #[test]
    fn a_request_conflicts_with_one_ahead_that_changes_the_same_object_otherwise() {
        let change = |object: &str, statement: &str| strata_schema::Change {
            object: object.into(),
            statement: statement.into(),
            in_place: false,
        };
        let mine = vec![
            change("orders", "ALTER TABLE `orders` ADD KEY `c` (`customer_id`)"),
            change("v", "CREATE VIEW `v` AS SELECT 1"),
        ];
        type Queue = Vec<(i64, Vec<strata_schema::Change>)>;
        let cases: Vec<(Queue, Option<(i64, &str)>)> = vec![
            (vec![], None),
            // Other objects.
            (
                vec![(
                    1,
                    vec![change("users", "ALTER TABLE `users` ADD COLUMN `x` int")],
                )],
                None,
            ),
            // The same change: nothing to conflict over.
            (
                vec![(
                    1,
                    vec![change(
                        "orders",
                        "ALTER TABLE `orders` ADD KEY `c` (`customer_id`)",
                    )],
                )],
                None,
            ),
            (
                vec![(
                    1,
                    vec![change(
                        "orders",
                        "ALTER TABLE `orders` ADD COLUMN `status` varchar(20)",
                    )],
                )],
                Some((1, "orders")),
            ),
            (
                vec![
                    (1, vec![change("users", "DROP TABLE `users`")]),
                    (2, vec![change("v", "DROP VIEW `v`")]),
                ],
                Some((2, "v")),
            ),
        ];
        for (ahead, want) in cases {
            let got = queue_conflict(&mine, &ahead);
            assert_eq!(
                got.as_ref().map(|(n, o)| (*n, o.as_str())),
                want,
                "{ahead:?}"
            );
        }
    }

    #[test]
    fn the_note_of_a_queued_deployment_says_what_the_one_ahead_waits_for() {
        let mut gated = deployment("d4", "main", "pending_cutover", 10);
        gated.auto_cutover = false;
        let cases = [
            (
                gated,
                "#4, which is in sync and waiting to be applied: `deploy-request apply`",
            ),
            (
                deployment("d4", "main", "pending_cutover", 10),
                "#4, which is cutting over",
            ),
            (
                deployment("d4", "main", "in_progress", 10),
                "#4, which is copying its tables",
            ),
            (
                deployment("d4", "main", "queued", 10),
                "#4, which is queued before it",
            ),
            (
                deployment("d4", "main", "in_progress_revert", 10),
                "#4, which is being reverted",
            ),
        ];
        let mut p = Progress {
            phase: "preparing".into(),
            ..Default::default()
        };
        let mut preparing = deployment("d4", "main", "in_progress", 10);
        set_progress(&mut preparing, &p);
        p.delayed_since = Some(5);
        let mut delayed = deployment("d4", "main", "in_progress", 10);
        set_progress(&mut delayed, &p);
        let more = [
            (preparing, "#4, which is preparing its tables"),
            (delayed, "#4, which is delayed by long-running transactions"),
        ];
        for (ahead, want) in cases.into_iter().chain(more) {
            let note = waiting_behind(&ahead);
            assert!(note.contains(want), "{note}");
        }
    }
}
