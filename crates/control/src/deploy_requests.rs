//! Deploy requests: a branch's schema changes proposed for a branch with safe migrations, checked
//! three-way against the target's current schema, reviewed, closed. (Deploying them is the deploy
//! queue's job.)

use crate::error::not_found;
use crate::{model, Caller, ControlError, Platform, Result};
use strata_catalog::{Branch, Database, DeployRequest, Deployment, Review};
use strata_model::{ids, timefmt::now_millis};
use strata_schema::lint::{lint, lint_changes, Severity};
use strata_schema::merge::three_way;
use strata_schema::Change;
use strata_schema::Schema;

/// Rows past which an in-place change that holds the table's writers while the server rebuilds
/// the table is refused: about a tenth of a second of rebuilding on a small machine, well inside
/// the half second a deploy may stall writers.
const BLOCKING_ROWS: u64 = 10_000;

/// What opening a deploy request takes.
pub struct NewDeployRequest {
    pub branch: String,
    /// Default: the branch's parent, else the database's default branch.
    pub into: Option<String>,
    pub notes: Option<String>,
    /// Default: as the database's previous request.
    pub auto_cutover: Option<bool>,
}

/// A deploy request with what is known about it now.
pub struct DeployRequestStatus {
    pub request: DeployRequest,
    pub approved: bool,
    pub num_comments: usize,
    /// True when it has changes and nothing blocks them.
    pub deployable: bool,
    /// `ready`, `no_changes` or `error` (see `problems`).
    pub deployment_state: &'static str,
    /// What blocks the deploy: conflicts, broken references, lint errors.
    pub problems: Vec<String>,
    /// What is worth a look but does not block (destructive changes, likely renames, …).
    pub warnings: Vec<String>,
    /// The statements that would take the target to the result.
    pub changes: Vec<Change>,
    pub branch_deleted: bool,
    /// Its deployment, once queued.
    pub deployment: Option<Deployment>,
    /// While its deployment is queued behind another: which, and what that one waits for.
    pub queue_note: Option<String>,
    /// The target's schema now and the schema the deploy gives it.
    pub(crate) schemas: Option<(Schema, Schema)>,
}

/// The static name of a stored deployment state.
pub fn deployment_state_name(state: &str) -> &'static str {
    const STATES: [&str; 12] = [
        "queued",
        "in_progress",
        "pending_cutover",
        "in_progress_cutover",
        "complete_pending_revert",
        "in_progress_revert",
        "complete_revert",
        "in_progress_cancel",
        "complete_cancel",
        "cancelled",
        "complete",
        "complete_error",
    ];
    STATES.into_iter().find(|s| *s == state).unwrap_or("error")
}

impl Platform {
    fn request_parts(&self, caller: &Caller, org: &str, db: &str) -> Result<Database> {
        self.database(caller, org, db)
    }

    /// The database and the numbered request in it.
    pub(crate) fn numbered(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<(Database, DeployRequest)> {
        let database = self.database(caller, org, db)?;
        let r = self
            .catalog()
            .deploy_request(&database.id, number)
            .map_err(|_| ControlError::NotFound(format!("Deploy request #{number} not found")))?;
        Ok((database, r))
    }

    /// Opens a deploy request from `branch` into `into` (default: the branch's parent, else the
    /// database's default branch).
    pub async fn create_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        new: NewDeployRequest,
    ) -> Result<DeployRequestStatus> {
        let NewDeployRequest {
            branch,
            into,
            notes,
            auto_cutover,
        } = new;
        let branch = branch.as_str();
        let database = self.request_parts(caller, org, db)?;
        let b = self
            .catalog()
            .branch(&database.id, branch)
            .map_err(|_| not_found("Branch", branch))?;
        let into = into
            .or_else(|| b.parent_branch.clone())
            .unwrap_or_else(|| database.default_branch.clone());
        if into == b.name {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{branch}' cannot be deployed into itself"
            )));
        }
        let target = self
            .catalog()
            .branch(&database.id, &into)
            .map_err(|_| not_found("Branch", &into))?;
        if !target.safe_migrations {
            return Err(ControlError::Unprocessable(format!(
                "Branch '{into}' does not have safe migrations enabled: deploy requests go into branches with safe migrations"
            )));
        }
        if let Some(open) = self
            .catalog()
            .deploy_requests(&database.id)?
            .into_iter()
            .find(|d| d.branch == b.name && d.state == "open")
        {
            return Err(ControlError::Conflict(format!(
                "Branch '{branch}' already has an open deploy request (#{})",
                open.number
            )));
        }
        // Neither flag given: as the database's previous request (PlanetScale's rule).
        let auto_cutover = match auto_cutover {
            Some(v) => v,
            None => self
                .catalog()
                .deploy_requests(&database.id)?
                .first()
                .is_none_or(|d| d.auto_cutover),
        };
        let now = now_millis();
        let request = self.catalog().create_deploy_request(&DeployRequest {
            id: ids::public_id(),
            database_id: database.id.clone(),
            number: 0,
            branch: b.name.clone(),
            into_branch: target.name.clone(),
            state: "open".into(),
            notes: notes.unwrap_or_default(),
            actor: caller.token_id.clone(),
            closed_by: None,
            created_at: now,
            updated_at: now,
            closed_at: None,
            auto_cutover,
        })?;
        self.status_of(&database, request).await
    }

    pub async fn deploy_requests(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
    ) -> Result<Vec<DeployRequestStatus>> {
        let database = self.request_parts(caller, org, db)?;
        let mut out = Vec::new();
        for r in self.catalog().deploy_requests(&database.id)? {
            out.push(self.status_of(&database, r).await?);
        }
        Ok(out)
    }

    pub async fn deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, r) = self.numbered(caller, org, db, number)?;
        self.status_of(&database, r).await
    }

    pub async fn close_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<DeployRequestStatus> {
        let (database, mut r) = self.numbered(caller, org, db, number)?;
        if r.state == "closed" {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is already closed"
            )));
        }
        let now = now_millis();
        r.state = "closed".into();
        r.closed_at = Some(now);
        r.closed_by = Some(caller.token_id.clone());
        r.updated_at = now;
        self.catalog().update_deploy_request(&r)?;
        self.status_of(&database, r).await
    }

    /// Approves or comments on a deploy request. Nobody approves their own request while the
    /// organization has other admins who could. An approval is of the changes the request shows
    /// now: it is dismissed when they change.
    pub async fn review_deploy_request(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
        state: &str,
        body: Option<String>,
    ) -> Result<Review> {
        let (database, r) = self.numbered(caller, org, db, number)?;
        let state = match state {
            "approve" | "approved" => "approved",
            "comment" | "commented" => "commented",
            other => {
                return Err(ControlError::Invalid(format!(
                    "invalid review state '{other}': use approve or comment"
                )))
            }
        };
        if r.state == "closed" {
            return Err(ControlError::Unprocessable(format!(
                "Deploy request #{number} is closed"
            )));
        }
        if state == "approved" && r.actor == caller.token_id {
            let admins = self
                .catalog()
                .service_tokens(&caller.organization_id)?
                .len();
            if admins > 1 {
                return Err(ControlError::Unprocessable(
                    "You cannot approve your own deploy request: another administrator must review it".into(),
                ));
            }
        }
        if state == "commented" && body.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return Err(ControlError::Invalid("a comment needs a body".into()));
        }
        let changes_digest = if state == "approved" {
            // The live changes, as the approval is later compared with (not a queued record).
            let status = self.live_status(&database, r.clone()).await?;
            changes_digest(&status.changes)
        } else {
            String::new()
        };
        let review = Review {
            id: ids::public_id(),
            deploy_request_id: r.id,
            state: state.into(),
            body: body.unwrap_or_default(),
            actor: caller.token_id.clone(),
            created_at: now_millis(),
            changes_digest,
        };
        self.catalog().add_review(&review)?;
        Ok(review)
    }

    pub fn deploy_request_reviews(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        number: i64,
    ) -> Result<Vec<Review>> {
        let (_, r) = self.numbered(caller, org, db, number)?;
        Ok(self.catalog().reviews(&r.id)?)
    }

    /// A request as shown: its status now, with the changes of its deployment once one is queued
    /// or has deployed (what the deployment deploys, or did), not the branch's later ones.
    pub(crate) async fn status_of(
        &self,
        database: &Database,
        request: DeployRequest,
    ) -> Result<DeployRequestStatus> {
        let mut status = self.live_status(database, request).await?;
        status.queue_note = status.deployment.as_ref().and_then(|d| self.queue_note(d));
        if let Some(d) = &status.deployment {
            let recorded = !matches!(
                d.state.as_str(),
                "complete_error" | "complete_cancel" | "cancelled"
            );
            if let (true, Some(changes)) = (recorded, decode_changes(&d.changes)) {
                status.changes = changes;
            }
        }
        Ok(status)
    }

    /// The three-way check, lint and review state of a request, now.
    pub(crate) async fn live_status(
        &self,
        database: &Database,
        request: DeployRequest,
    ) -> Result<DeployRequestStatus> {
        let reviews = self.catalog().reviews(&request.id)?;
        let num_comments = reviews.iter().filter(|r| r.state == "commented").count();
        let mut status = DeployRequestStatus {
            // Set once the changes are known: an approval stands only for the changes it saw.
            approved: false,
            num_comments,
            deployable: false,
            deployment_state: "error",
            problems: Vec::new(),
            warnings: Vec::new(),
            changes: Vec::new(),
            branch_deleted: false,
            deployment: self.catalog().deployment(&request.id).ok(),
            queue_note: None,
            schemas: None,
            request,
        };
        let branch: Option<Branch> = self
            .catalog()
            .branch(&database.id, &status.request.branch)
            .ok();
        let Some(branch) = branch else {
            status.branch_deleted = true;
            status
                .problems
                .push(format!("Branch '{}' was deleted", status.request.branch));
            // A request that deployed says so still (it said `error` once its branch was gone).
            if let Some(d) = &status.deployment {
                status.deployment_state = deployment_state_name(&d.state);
            }
            return Ok(status);
        };
        let Ok(into) = self
            .catalog()
            .branch(&database.id, &status.request.into_branch)
        else {
            status.problems.push(format!(
                "Branch '{}' was deleted",
                status.request.into_branch
            ));
            if let Some(d) = &status.deployment {
                status.deployment_state = deployment_state_name(&d.state);
            }
            return Ok(status);
        };
        // An object the schema engine cannot read (a sequence, say) makes this request not
        // deployable, with the reason; it never fails the listing of every request.
        let schemas = (
            model(Platform::base_schema(&branch)),
            model(self.schema_in(database, &branch).await?),
            model(self.schema_in(database, &into).await?),
        );
        let (base, ours, target) = match schemas {
            (Ok(b), Ok(o), Ok(t)) => (b, o, t),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                status.problems.push(e.to_string());
                return Ok(status);
            }
        };
        let merge = three_way(&base, &ours, &target, &status.request.into_branch);
        status.problems.extend(merge.conflicts.iter().cloned());
        status.problems.extend(merge.invalid.iter().cloned());
        let mut changes = strata_schema::changes(&target, &merge.result)
            .map_err(|e| ControlError::Unprocessable(e.to_string()))?;
        // A conflicted object is left out of the merge; the diff still shows what the branch
        // changed in it, so the reviewer sees the conflict, not "no changes".
        if !merge.conflicted.is_empty() {
            let own = strata_schema::changes(&base, &ours)
                .map_err(|e| ControlError::Unprocessable(e.to_string()))?;
            changes.extend(
                own.into_iter()
                    .filter(|c| merge.conflicted.contains(&c.object)),
            );
        }
        let digest = changes_digest(&changes);
        let approvals: Vec<&Review> = reviews.iter().filter(|r| r.state == "approved").collect();
        // Once deployed there is nothing left to change: the approval given stands.
        let deployed = status.deployment.as_ref().is_some_and(|d| {
            matches!(
                d.state.as_str(),
                "complete" | "complete_pending_revert" | "complete_revert"
            )
        });
        status.approved = approvals
            .iter()
            .any(|r| r.changes_digest == digest || (deployed && changes.is_empty()));
        if !status.approved && !approvals.is_empty() && !changes.is_empty() {
            status.warnings.push(
                "The schema changes differ from those approved: the approval was dismissed, review again"
                    .into(),
            );
        }
        let touched: std::collections::BTreeSet<&str> =
            changes.iter().map(|c| c.object.as_str()).collect();
        // A view the change breaks (a column it reads renamed or dropped) fails the deploy only at
        // its cut-over, after production was changed: found here instead, on the branch, where
        // the view and the change both are.
        let suspects: Vec<String> = ours
            .views
            .values()
            .filter(|v| {
                touched.contains(v.name.as_str())
                    || touched
                        .iter()
                        .any(|t| strata_schema::merge::view_reads(&v.create, t))
            })
            .map(|v| v.name.clone())
            .collect();
        if !suspects.is_empty() {
            if let Ok(mut conn) = self.connect_branch(database, &branch).await {
                use strata_engine::mysql_async::prelude::Queryable;
                for v in suspects {
                    let probe = format!(
                        "SELECT * FROM {} LIMIT 0",
                        strata_model::role::quote_ident(&v)
                    );
                    if let Err(strata_engine::mysql_async::Error::Server(e)) =
                        conn.query_drop(probe).await
                    {
                        status.problems.push(format!(
                            "view `{v}` does not work on branch `{}`: {}",
                            status.request.branch, e.message
                        ));
                    }
                }
                let _ = conn.disconnect().await;
            }
        }
        for f in lint(&merge.result, database.allow_foreign_key_constraints) {
            if !touched.contains(f.table.as_str()) {
                continue;
            }
            match f.severity {
                Severity::Error => status.problems.push(f.description),
                Severity::Warning => status.warnings.push(f.description),
            }
        }
        status.warnings.extend(
            lint_changes(&target, &merge.result, &changes)
                .into_iter()
                .map(|f| f.description),
        );
        // Tables changed in place are copied online: old and new rows must be matched by a key.
        for (name, new) in &merge.result.tables {
            if let Some(old) = target.tables.get(name) {
                if touched.contains(name.as_str()) {
                    if let Some(f) = strata_schema::lint::shared_unique_key(old, new) {
                        status.problems.push(f.description);
                    }
                }
            }
        }
        // In-place changes the server could make only by holding the table's writers while it
        // rebuilds it: refused before anything is queued when that would stall them longer than a
        // deploy may (see `BLOCKING_ROWS`), said otherwise.
        if status.problems.is_empty()
            && !changes.is_empty()
            && status.request.state == "open"
            && status.deployment.as_ref().is_none_or(|d| !d.is_active())
        {
            if let Ok(plan) = strata_deploy::plan("00000000", &target, &merge.result, &changes) {
                if !plan.changed_in_place().is_empty() {
                    self.judge_in_place(database, &into, &plan, &mut status)
                        .await;
                }
            }
        }
        if database.require_approval_for_deploy && !status.approved {
            status
                .warnings
                .push("This database requires an approving review before a deploy".into());
        }
        status.deployment_state = if !status.problems.is_empty() {
            "error"
        } else if changes.is_empty() {
            "no_changes"
        } else {
            "ready"
        };
        let ready = status.deployment_state == "ready";
        // A deploy of a request that still needs its approval is refused: not deployable yet. A
        // closed request (deployed, reverted or closed by hand) deploys nothing more.
        status.deployable = ready
            && status.request.state == "open"
            && (status.approved || !database.require_approval_for_deploy);
        if ready {
            // A deploy's cut-over ends the revert window of earlier deploys into the branch: a
            // revert must never undo a schema this one builds on. Said before, not found after.
            if let Ok(active) = self.catalog().active_deployments() {
                for earlier in active.iter().filter(|o| {
                    o.database_id == database.id
                        && o.into_branch == status.request.into_branch
                        && o.state == "complete_pending_revert"
                        && o.deploy_request_number != status.request.number
                }) {
                    status.warnings.push(format!(
                        "Deploying this ends the revert window of deploy request #{}: once this deploy changes `{}`, #{} can no longer be reverted",
                        earlier.deploy_request_number,
                        status.request.into_branch,
                        earlier.deploy_request_number
                    ));
                }
            }
            // The data a deploy changes besides the schema, for the reviewer to see.
            if let Some(t) = crate::deployments::migration_table(database) {
                if merge.result.tables.contains_key(&t) {
                    status.warnings.push(format!(
                        "Deploying also copies the rows of `{t}` (the database's migration table) from `{}` to `{}`",
                        status.request.branch, status.request.into_branch
                    ));
                }
            }
            // Said before the deploy, not discovered after it.
            if let Ok(plan) = strata_deploy::plan("00000000", &target, &merge.result, &changes) {
                // As PlanetScale says of it: a dropped child's rows come back as they were.
                for s in &plan.steps {
                    if let strata_deploy::Step::DropTable {
                        table,
                        foreign_keys,
                        ..
                    } = s
                    {
                        if !foreign_keys.is_empty() {
                            status.warnings.push(format!(
                                "Table `{table}` has foreign keys: a revert of this deploy brings its rows back as they were, and those whose parent rows were deleted meanwhile stay without them"
                            ));
                        }
                    }
                }
                let tables = plan.changed_in_place();
                if !tables.is_empty() {
                    status.warnings.push(format!(
                        "This deploy cannot be reverted: {} changed in place (tables whose foreign keys change, cascade or reference their own table, tables another table's key to which changes, and partitions added or dropped are altered directly, without a copy to swap back)",
                        tables
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                            + if tables.len() == 1 { " is" } else { " are" }
                    ));
                }
            }
        }
        status.changes = changes;
        status.schemas = Some((target, merge.result));
        if let Some(d) = &status.deployment {
            status.deployment_state = deployment_state_name(&d.state);
        }
        Ok(status)
    }

    /// Tries the plan's in-place changes on empty copies of their tables (see
    /// [`strata_deploy::run::in_place_blocking`]) and says which would hold writers.
    async fn judge_in_place(
        &self,
        database: &Database,
        into: &Branch,
        plan: &strata_deploy::Plan,
        status: &mut DeployRequestStatus,
    ) {
        let judged = match self.connect_branch(database, into).await {
            Ok(mut conn) => {
                let r =
                    strata_deploy::run::in_place_blocking(&mut conn, &database.name, plan).await;
                let _ = conn.disconnect().await;
                r.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match judged {
            Ok(blocking) => {
                for b in blocking {
                    let what = format!(
                        "the change to `{}` cannot be made online: the table is changed in place, which the server can do here only by rebuilding it while holding its writers ({})",
                        b.table, b.reason
                    );
                    if b.rows > BLOCKING_ROWS {
                        status.problems.push(format!(
                            "{what}; with about {} rows that would stall the application: make the change in steps the server makes online (a new column filled by the application, say), or take the table's foreign keys that cascade or reference itself off first",
                            b.rows
                        ));
                    } else {
                        status.warnings.push(format!(
                            "{what}; the table is small (about {} rows), so the stall is short",
                            b.rows
                        ));
                    }
                }
            }
            Err(e) => status.warnings.push(format!(
                "Whether the in-place changes can be made online could not be checked: {e}"
            )),
        }
    }
}

/// The digest an approval records: the statements of the request's changes, in order.
fn changes_digest(changes: &[strata_schema::Change]) -> String {
    strata_model::changes_digest(changes.iter().map(|c| c.statement.as_str()))
}

/// The changes as a deployment records them.
pub(crate) fn encode_changes(changes: &[Change]) -> String {
    let rows: Vec<(&str, &str, bool)> = changes
        .iter()
        .map(|c| (c.object.as_str(), c.statement.as_str(), c.in_place))
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

/// A deployment's recorded changes (`None` for deployments made before they were recorded).
pub(crate) fn decode_changes(recorded: &str) -> Option<Vec<Change>> {
    let rows: Vec<(String, String, bool)> = serde_json::from_str(recorded).ok()?;
    Some(
        rows.into_iter()
            .map(|(object, statement, in_place)| Change {
                object,
                statement,
                in_place,
            })
            .collect(),
    )
}
