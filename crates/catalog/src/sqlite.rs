//! The embedded SQLite catalog: one file under the data directory, WAL mode, one connection behind a
//! mutex (every statement is short; the platform has one writer).

use crate::migrations::migrate;
use crate::*;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteCatalog {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory catalog, for tests.
    pub fn in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(SqliteCatalog {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll back),
        // so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one row `sql` selects, or `NotFound(kind)`.
    fn one<T, P: rusqlite::Params>(
        &self,
        kind: &'static str,
        sql: &str,
        params: P,
        row: fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.conn()
            .query_row(sql, params, row)
            .optional()?
            .ok_or(CatalogError::NotFound(kind))
    }

    /// Every row `sql` selects.
    fn all<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let c = self.conn();
        let mut st = c.prepare(sql)?;
        let rows = st
            .query_map(params, row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

fn unique<'a>(
    kind: &'static str,
    name: &'a str,
) -> impl FnOnce(rusqlite::Error) -> CatalogError + 'a {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            CatalogError::AlreadyExists {
                kind,
                name: name.to_string(),
            }
        }
        _ => CatalogError::Storage(e),
    }
}

fn changed(n: usize, kind: &'static str) -> Result<()> {
    if n == 0 {
        Err(CatalogError::NotFound(kind))
    } else {
        Ok(())
    }
}

fn org_row(r: &Row) -> rusqlite::Result<Organization> {
    Ok(Organization {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}
const ORG_COLS: &str = "id, name, created_at, updated_at";

fn token_row(r: &Row) -> rusqlite::Result<ServiceToken> {
    Ok(ServiceToken {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        token_hash: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}
const TOKEN_COLS: &str =
    "id, organization_id, name, token_hash, created_at, last_used_at, expires_at";

fn db_row(r: &Row) -> rusqlite::Result<Database> {
    Ok(Database {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        default_branch: r.get(3)?,
        require_approval_for_deploy: r.get(4)?,
        allow_foreign_key_constraints: r.get(5)?,
        deletion_protected: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        deploy_throttle_ratio: r.get(9)?,
        automatic_migrations: r.get(10)?,
        migration_framework: r.get(11)?,
        migration_table_name: r.get(12)?,
        aggressive_cutover: r.get(13)?,
    })
}
const DB_COLS: &str = "id, organization_id, name, default_branch, require_approval_for_deploy, \
    allow_foreign_key_constraints, deletion_protected, created_at, updated_at, deploy_throttle_ratio, \
    automatic_migrations, migration_framework, migration_table_name, aggressive_cutover";

fn branch_row(r: &Row) -> rusqlite::Result<Branch> {
    let state: String = r.get(6)?;
    let port: Option<i64> = r.get(9)?;
    Ok(Branch {
        id: r.get(0)?,
        database_id: r.get(1)?,
        name: r.get(2)?,
        parent_branch: r.get(3)?,
        production: r.get(4)?,
        safe_migrations: r.get(5)?,
        state: BranchState::parse(&state).unwrap_or(BranchState::Failed),
        error: r.get(7)?,
        base_schema: r.get(8)?,
        instance_port: port.and_then(|p| u16::try_from(p).ok()),
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        schema_last_updated_at: r.get(12)?,
        data_source: r
            .get::<_, Option<String>>(13)?
            .and_then(|s| DataSource::parse(&s)),
    })
}
const BRANCH_COLS: &str =
    "id, database_id, name, parent_branch, production, safe_migrations, state, error, \
    base_schema, instance_port, created_at, updated_at, schema_last_updated_at, data_source";

fn backup_row(r: &Row) -> rusqlite::Result<Backup> {
    let state: String = r.get(4)?;
    Ok(Backup {
        id: r.get(0)?,
        database_id: r.get(1)?,
        branch_id: r.get(2)?,
        name: r.get(3)?,
        state: BackupState::parse(&state).unwrap_or(BackupState::Failed),
        policy_id: r.get(5)?,
        actor: r.get(6)?,
        size: r.get(7)?,
        protected: r.get(8)?,
        error: r.get(9)?,
        manifest: r.get(10)?,
        progress: r.get(11)?,
        validation_state: r.get(12)?,
        validation_error: r.get(13)?,
        validated_at: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        started_at: r.get(17)?,
        completed_at: r.get(18)?,
        expires_at: r.get(19)?,
    })
}
const BACKUP_COLS: &str = "id, database_id, branch_id, name, state, policy_id, actor, size, protected, \
    error, manifest, progress, validation_state, validation_error, validated_at, created_at, updated_at, \
    started_at, completed_at, expires_at";

fn policy_row(r: &Row) -> rusqlite::Result<BackupPolicy> {
    Ok(BackupPolicy {
        id: r.get(0)?,
        database_id: r.get(1)?,
        name: r.get(2)?,
        target: r.get(3)?,
        frequency_value: r.get(4)?,
        frequency_unit: r.get(5)?,
        retention_value: r.get(6)?,
        retention_unit: r.get(7)?,
        last_ran_at: r.get(8)?,
        next_run_at: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}
const POLICY_COLS: &str = "id, database_id, name, target, frequency_value, frequency_unit, \
    retention_value, retention_unit, last_ran_at, next_run_at, created_at, updated_at";

fn password_row(r: &Row) -> rusqlite::Result<Password> {
    let role: String = r.get(4)?;
    Ok(Password {
        id: r.get(0)?,
        database_id: r.get(1)?,
        branch_id: r.get(2)?,
        name: r.get(3)?,
        role: role.parse().map_err(|e: strata_model::role::RoleError| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        username: r.get(5)?,
        native_hash: r.get(6)?,
        sha2_hash: r.get(7)?,
        ttl_seconds: r.get(8)?,
        expires_at: r.get(9)?,
        cidrs: split_list(r.get::<_, Option<String>>(10)?),
        created_at: r.get(11)?,
        last_used_at: r.get(12)?,
    })
}
const PASSWORD_COLS: &str =
    "id, database_id, branch_id, name, role, username, native_hash, sha2_hash, \
    ttl_seconds, expires_at, cidrs, created_at, last_used_at";

fn split_list(s: Option<String>) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn insert_branch(conn: &Connection, b: &Branch) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO branches ({BRANCH_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"),
        params![
            b.id,
            b.database_id,
            b.name,
            b.parent_branch,
            b.production,
            b.safe_migrations,
            b.state.as_str(),
            b.error,
            b.base_schema,
            b.instance_port.map(i64::from),
            b.created_at,
            b.updated_at,
            b.schema_last_updated_at,
            b.data_source.as_ref().map(DataSource::encode)
        ],
    )
    .map_err(unique("Branch", &b.name))?;
    Ok(())
}

fn deploy_request_row(r: &Row) -> rusqlite::Result<DeployRequest> {
    Ok(DeployRequest {
        id: r.get(0)?,
        database_id: r.get(1)?,
        number: r.get(2)?,
        branch: r.get(3)?,
        into_branch: r.get(4)?,
        state: r.get(5)?,
        notes: r.get(6)?,
        actor: r.get(7)?,
        closed_by: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        closed_at: r.get(11)?,
        auto_cutover: r.get(12)?,
    })
}
const DR_COLS: &str =
    "id, database_id, number, branch, into_branch, state, notes, actor, closed_by, created_at, updated_at, closed_at, auto_cutover";

fn deployment_row(r: &Row) -> rusqlite::Result<Deployment> {
    Ok(Deployment {
        id: r.get(0)?,
        database_id: r.get(1)?,
        deploy_request_id: r.get(2)?,
        deploy_request_number: r.get(3)?,
        into_branch: r.get(4)?,
        state: r.get(5)?,
        instant: r.get(6)?,
        auto_cutover: r.get(7)?,
        throttle_ratio: r.get(8)?,
        plan: r.get(9)?,
        progress: r.get(10)?,
        error: r.get(11)?,
        actor: r.get(12)?,
        cutover_actor: r.get(13)?,
        cancelled_actor: r.get(14)?,
        queued_at: r.get(15)?,
        started_at: r.get(16)?,
        cutover_at: r.get(17)?,
        finished_at: r.get(18)?,
        revert_expires_at: r.get(19)?,
        updated_at: r.get(20)?,
        changes: r.get(21)?,
        force_cutover_requested_at: r.get(22)?,
    })
}
const DEPLOYMENT_COLS: &str = "id, database_id, deploy_request_id, deploy_request_number, into_branch, state, instant, auto_cutover, throttle_ratio, plan, progress, error, actor, cutover_actor, cancelled_actor, queued_at, started_at, cutover_at, finished_at, revert_expires_at, updated_at, changes, force_cutover_requested_at";

fn review_row(r: &Row) -> rusqlite::Result<Review> {
    Ok(Review {
        id: r.get(0)?,
        deploy_request_id: r.get(1)?,
        state: r.get(2)?,
        body: r.get(3)?,
        actor: r.get(4)?,
        created_at: r.get(5)?,
        changes_digest: r.get(6)?,
    })
}

impl Catalog for SqliteCatalog {
    fn create_deploy_request(&self, d: &DeployRequest) -> Result<DeployRequest> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let next: i64 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM deploy_requests WHERE database_id = ?1",
            [&d.database_id],
            |r| r.get(0),
        )?;
        let mut stored = d.clone();
        stored.number = next;
        tx.execute(
            &format!("INSERT INTO deploy_requests ({DR_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"),
            params![
                stored.id,
                stored.database_id,
                stored.number,
                stored.branch,
                stored.into_branch,
                stored.state,
                stored.notes,
                stored.actor,
                stored.closed_by,
                stored.created_at,
                stored.updated_at,
                stored.closed_at,
                stored.auto_cutover
            ],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    fn deploy_request(&self, database_id: &str, number: i64) -> Result<DeployRequest> {
        self.one(
            "Deploy request",
            &format!("SELECT {DR_COLS} FROM deploy_requests WHERE database_id=?1 AND number=?2"),
            params![database_id, number],
            deploy_request_row,
        )
    }

    fn deploy_requests(&self, database_id: &str) -> Result<Vec<DeployRequest>> {
        self.all(
            &format!(
                "SELECT {DR_COLS} FROM deploy_requests WHERE database_id=?1 ORDER BY number DESC"
            ),
            [database_id],
            deploy_request_row,
        )
    }

    fn update_deploy_request(&self, d: &DeployRequest) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE deploy_requests SET state=?2, notes=?3, closed_by=?4, updated_at=?5, closed_at=?6, auto_cutover=?7 WHERE id=?1",
            params![d.id, d.state, d.notes, d.closed_by, d.updated_at, d.closed_at, d.auto_cutover],
        )?;
        changed(n, "Deploy request")
    }

    fn add_review(&self, r: &Review) -> Result<()> {
        self.conn().execute(
            "INSERT INTO deploy_request_reviews (id, deploy_request_id, state, body, actor, created_at, changes_digest) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![r.id, r.deploy_request_id, r.state, r.body, r.actor, r.created_at, r.changes_digest],
        )?;
        Ok(())
    }

    fn save_deployment_progress(
        &self,
        deploy_request_id: &str,
        state: &str,
        progress: &str,
        updated_at: i64,
    ) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE deployments SET progress=?3, updated_at=?4 WHERE deploy_request_id=?1 AND state=?2",
            params![deploy_request_id, state, progress, updated_at],
        )?;
        Ok(n == 1)
    }

    fn save_deployment(&self, d: &Deployment) -> Result<()> {
        self.conn().execute(
            &format!(
                "INSERT INTO deployments ({DEPLOYMENT_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23)
                 ON CONFLICT(deploy_request_id) DO UPDATE SET id=excluded.id, state=excluded.state, instant=excluded.instant,
                 auto_cutover=excluded.auto_cutover, throttle_ratio=excluded.throttle_ratio, plan=excluded.plan,
                 progress=excluded.progress, error=excluded.error, actor=excluded.actor, cutover_actor=excluded.cutover_actor,
                 cancelled_actor=excluded.cancelled_actor, queued_at=excluded.queued_at, started_at=excluded.started_at,
                 cutover_at=excluded.cutover_at, finished_at=excluded.finished_at, revert_expires_at=excluded.revert_expires_at,
                 updated_at=excluded.updated_at, changes=excluded.changes,
                 force_cutover_requested_at=CASE WHEN excluded.id <> deployments.id
                   THEN excluded.force_cutover_requested_at ELSE deployments.force_cutover_requested_at END"
            ),
            params![
                d.id,
                d.database_id,
                d.deploy_request_id,
                d.deploy_request_number,
                d.into_branch,
                d.state,
                d.instant,
                d.auto_cutover,
                d.throttle_ratio,
                d.plan,
                d.progress,
                d.error,
                d.actor,
                d.cutover_actor,
                d.cancelled_actor,
                d.queued_at,
                d.started_at,
                d.cutover_at,
                d.finished_at,
                d.revert_expires_at,
                d.updated_at,
                d.changes,
                d.force_cutover_requested_at
            ],
        )?;
        Ok(())
    }

    fn request_force_cutover(&self, deploy_request_id: &str, at: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE deployments SET force_cutover_requested_at=?2 WHERE deploy_request_id=?1",
            params![deploy_request_id, at],
        )?;
        Ok(n == 1)
    }

    fn deployment(&self, deploy_request_id: &str) -> Result<Deployment> {
        self.one(
            "Deployment",
            &format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE deploy_request_id=?1"),
            [deploy_request_id],
            deployment_row,
        )
    }

    fn deployments(&self, database_id: &str) -> Result<Vec<Deployment>> {
        self.all(
            &format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE database_id=?1 ORDER BY queued_at, id"),
            [database_id],
            deployment_row,
        )
    }

    fn active_deployments(&self) -> Result<Vec<Deployment>> {
        self.all(
            &format!(
                "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE state NOT IN ('complete', 'complete_error', 'complete_cancel', 'complete_revert', 'cancelled') ORDER BY queued_at, id"
            ),
            [],
            deployment_row,
        )
    }

    fn create_backup(&self, b: &Backup) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO backups ({BACKUP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)"
                ),
                params![
                    b.id,
                    b.database_id,
                    b.branch_id,
                    b.name,
                    b.state.as_str(),
                    b.policy_id,
                    b.actor,
                    b.size,
                    b.protected,
                    b.error,
                    b.manifest,
                    b.progress,
                    b.validation_state,
                    b.validation_error,
                    b.validated_at,
                    b.created_at,
                    b.updated_at,
                    b.started_at,
                    b.completed_at,
                    b.expires_at
                ],
            )
            .map_err(unique("Backup", &b.id))?;
        Ok(())
    }

    fn backup(&self, id: &str) -> Result<Backup> {
        self.one(
            "Backup",
            &format!("SELECT {BACKUP_COLS} FROM backups WHERE id=?1"),
            [id],
            backup_row,
        )
    }

    fn backups_of_branch(&self, branch_id: &str) -> Result<Vec<Backup>> {
        self.all(
            &format!(
                "SELECT {BACKUP_COLS} FROM backups WHERE branch_id=?1 ORDER BY created_at DESC, id"
            ),
            [branch_id],
            backup_row,
        )
    }

    fn all_backups(&self) -> Result<Vec<Backup>> {
        self.all(
            &format!("SELECT {BACKUP_COLS} FROM backups ORDER BY created_at, id"),
            [],
            backup_row,
        )
    }

    fn update_backup(&self, b: &Backup) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE backups SET name=?2, state=?3, size=?4, protected=?5, error=?6, manifest=?7, progress=?8, \
             validation_state=?9, validation_error=?10, validated_at=?11, updated_at=?12, started_at=?13, \
             completed_at=?14, expires_at=?15 WHERE id=?1",
            params![
                b.id,
                b.name,
                b.state.as_str(),
                b.size,
                b.protected,
                b.error,
                b.manifest,
                b.progress,
                b.validation_state,
                b.validation_error,
                b.validated_at,
                b.updated_at,
                b.started_at,
                b.completed_at,
                b.expires_at
            ],
        )?;
        changed(n, "Backup")
    }

    fn save_backup_progress(&self, id: &str, progress: &str, updated_at: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE backups SET progress=?2, updated_at=?3 WHERE id=?1 AND state='running'",
            params![id, progress, updated_at],
        )?;
        Ok(n == 1)
    }

    fn delete_backup(&self, id: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM backups WHERE id=?1", [id])?;
        changed(n, "Backup")
    }

    fn expired_backups(&self, now: i64) -> Result<Vec<Backup>> {
        self.all(
            &format!(
                "SELECT {BACKUP_COLS} FROM backups WHERE protected=0 AND expires_at <= ?1 \
                 AND state IN ('success', 'failed') AND validation_state <> 'running' \
                 ORDER BY expires_at, id"
            ),
            [now],
            backup_row,
        )
    }

    fn set_backup_protected(&self, id: &str, protected: bool, updated_at: i64) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE backups SET protected=?2, updated_at=?3 WHERE id=?1",
            params![id, protected, updated_at],
        )?;
        changed(n, "Backup")
    }

    fn branches_restored_from(&self, backup_id: &str) -> Result<Vec<Branch>> {
        self.all(
            &format!(
                "SELECT {BRANCH_COLS} FROM branches WHERE data_source=?1 ORDER BY created_at, name"
            ),
            [DataSource::Backup(backup_id.to_string()).encode()],
            branch_row,
        )
    }

    fn create_backup_policy(&self, p: &BackupPolicy) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO backup_policies ({POLICY_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
                ),
                params![
                    p.id,
                    p.database_id,
                    p.name,
                    p.target,
                    p.frequency_value,
                    p.frequency_unit,
                    p.retention_value,
                    p.retention_unit,
                    p.last_ran_at,
                    p.next_run_at,
                    p.created_at,
                    p.updated_at
                ],
            )
            .map_err(unique("Backup policy", &p.name))?;
        Ok(())
    }

    fn backup_policy(&self, database_id: &str, id: &str) -> Result<BackupPolicy> {
        self.one(
            "Backup policy",
            &format!("SELECT {POLICY_COLS} FROM backup_policies WHERE database_id=?1 AND id=?2"),
            [database_id, id],
            policy_row,
        )
    }

    fn backup_policies(&self, database_id: &str) -> Result<Vec<BackupPolicy>> {
        self.all(
            &format!(
                "SELECT {POLICY_COLS} FROM backup_policies WHERE database_id=?1 ORDER BY created_at, id"
            ),
            [database_id],
            policy_row,
        )
    }

    fn all_backup_policies(&self) -> Result<Vec<BackupPolicy>> {
        self.all(
            &format!("SELECT {POLICY_COLS} FROM backup_policies ORDER BY next_run_at, id"),
            [],
            policy_row,
        )
    }

    fn update_backup_policy(&self, p: &BackupPolicy) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE backup_policies SET name=?2, target=?3, frequency_value=?4, frequency_unit=?5, \
             retention_value=?6, retention_unit=?7, last_ran_at=?8, next_run_at=?9, updated_at=?10 WHERE id=?1",
            params![
                p.id,
                p.name,
                p.target,
                p.frequency_value,
                p.frequency_unit,
                p.retention_value,
                p.retention_unit,
                p.last_ran_at,
                p.next_run_at,
                p.updated_at
            ],
        )?;
        changed(n, "Backup policy")
    }

    fn delete_backup_policy(&self, id: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM backup_policies WHERE id=?1", [id])?;
        changed(n, "Backup policy")
    }

    fn reviews(&self, deploy_request_id: &str) -> Result<Vec<Review>> {
        self.all(
            "SELECT id, deploy_request_id, state, body, actor, created_at, changes_digest FROM deploy_request_reviews WHERE deploy_request_id=?1 ORDER BY created_at, id",
            [deploy_request_id],
            review_row,
        )
    }

    fn create_organization(&self, o: &Organization) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO organizations ({ORG_COLS}) VALUES (?1,?2,?3,?4)"),
                params![o.id, o.name, o.created_at, o.updated_at],
            )
            .map_err(unique("Organization", &o.name))?;
        Ok(())
    }

    fn organization(&self, name: &str) -> Result<Organization> {
        self.one(
            "Organization",
            &format!("SELECT {ORG_COLS} FROM organizations WHERE name=?1"),
            [name],
            org_row,
        )
    }

    fn organizations(&self) -> Result<Vec<Organization>> {
        self.all(
            &format!("SELECT {ORG_COLS} FROM organizations ORDER BY name"),
            [],
            org_row,
        )
    }

    fn create_service_token(&self, t: &ServiceToken) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO service_tokens ({TOKEN_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"),
                params![
                    t.id,
                    t.organization_id,
                    t.name,
                    t.token_hash,
                    t.created_at,
                    t.last_used_at,
                    t.expires_at
                ],
            )
            .map_err(unique("Service token", &t.id))?;
        Ok(())
    }

    fn service_token(&self, id: &str) -> Result<ServiceToken> {
        self.one(
            "Service token",
            &format!("SELECT {TOKEN_COLS} FROM service_tokens WHERE id=?1"),
            [id],
            token_row,
        )
    }

    fn service_tokens(&self, org_id: &str) -> Result<Vec<ServiceToken>> {
        self.all(&format!(
            "SELECT {TOKEN_COLS} FROM service_tokens WHERE organization_id=?1 ORDER BY created_at, id"
        ), [org_id], token_row)
    }

    fn delete_service_token(&self, id: &str) -> Result<()> {
        changed(
            self.conn()
                .execute("DELETE FROM service_tokens WHERE id=?1", [id])?,
            "Service token",
        )
    }

    fn touch_service_token(&self, id: &str, at: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE service_tokens SET last_used_at=?2 WHERE id=?1",
            params![id, at],
        )?;
        Ok(())
    }

    fn create_database(&self, d: &Database, default_branch: &Branch) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO databases ({DB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
            ),
            params![
                d.id,
                d.organization_id,
                d.name,
                d.default_branch,
                d.require_approval_for_deploy,
                d.allow_foreign_key_constraints,
                d.deletion_protected,
                d.created_at,
                d.updated_at,
                d.deploy_throttle_ratio,
                d.automatic_migrations,
                d.migration_framework,
                d.migration_table_name,
                d.aggressive_cutover
            ],
        )
        .map_err(unique("Database", &d.name))?;
        insert_branch(&tx, default_branch)?;
        tx.commit()?;
        Ok(())
    }

    fn database(&self, org_id: &str, name: &str) -> Result<Database> {
        self.one(
            "Database",
            &format!("SELECT {DB_COLS} FROM databases WHERE organization_id=?1 AND name=?2"),
            [org_id, name],
            db_row,
        )
    }

    fn database_by_id(&self, id: &str) -> Result<Database> {
        self.one(
            "Database",
            &format!("SELECT {DB_COLS} FROM databases WHERE id=?1"),
            [id],
            db_row,
        )
    }

    fn databases(&self, org_id: &str) -> Result<Vec<Database>> {
        self.all(
            &format!(
            "SELECT {DB_COLS} FROM databases WHERE organization_id=?1 ORDER BY created_at, name"
        ),
            [org_id],
            db_row,
        )
    }

    fn update_database(&self, d: &Database) -> Result<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE databases SET name=?2, default_branch=?3, require_approval_for_deploy=?4, \
                 allow_foreign_key_constraints=?5, deletion_protected=?6, updated_at=?7, \
                 deploy_throttle_ratio=?8, automatic_migrations=?9, migration_framework=?10, \
                 migration_table_name=?11, aggressive_cutover=?12 WHERE id=?1",
                params![
                    d.id,
                    d.name,
                    d.default_branch,
                    d.require_approval_for_deploy,
                    d.allow_foreign_key_constraints,
                    d.deletion_protected,
                    d.updated_at,
                    d.deploy_throttle_ratio,
                    d.automatic_migrations,
                    d.migration_framework,
                    d.migration_table_name,
                    d.aggressive_cutover
                ],
            )
            .map_err(unique("Database", &d.name))?;
        changed(n, "Database")
    }

    fn delete_database(&self, id: &str) -> Result<()> {
        changed(
            self.conn()
                .execute("DELETE FROM databases WHERE id=?1", [id])?,
            "Database",
        )
    }

    fn create_branch(&self, b: &Branch) -> Result<()> {
        insert_branch(&self.conn(), b)
    }

    fn branch(&self, database_id: &str, name: &str) -> Result<Branch> {
        self.one(
            "Branch",
            &format!("SELECT {BRANCH_COLS} FROM branches WHERE database_id=?1 AND name=?2"),
            [database_id, name],
            branch_row,
        )
    }

    fn branch_by_id(&self, id: &str) -> Result<Branch> {
        self.one(
            "Branch",
            &format!("SELECT {BRANCH_COLS} FROM branches WHERE id=?1"),
            [id],
            branch_row,
        )
    }

    fn branches(&self, database_id: &str) -> Result<Vec<Branch>> {
        self.all(
            &format!(
                "SELECT {BRANCH_COLS} FROM branches WHERE database_id=?1 ORDER BY created_at, name"
            ),
            [database_id],
            branch_row,
        )
    }

    fn all_branches(&self) -> Result<Vec<Branch>> {
        self.all(
            &format!("SELECT {BRANCH_COLS} FROM branches ORDER BY created_at, id"),
            [],
            branch_row,
        )
    }

    fn update_branch(&self, b: &Branch) -> Result<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE branches SET name=?2, parent_branch=?3, production=?4, safe_migrations=?5, state=?6, \
                 error=?7, base_schema=?8, instance_port=?9, updated_at=?10 WHERE id=?1",
                params![
                    b.id,
                    b.name,
                    b.parent_branch,
                    b.production,
                    b.safe_migrations,
                    b.state.as_str(),
                    b.error,
                    b.base_schema,
                    b.instance_port.map(i64::from),
                    b.updated_at,
                ],
            )
            .map_err(unique("Branch", &b.name))?;
        changed(n, "Branch")
    }

    fn touch_branch_schema(&self, id: &str, at: i64) -> Result<()> {
        changed(
            self.conn().execute(
                "UPDATE branches SET schema_last_updated_at=?2 WHERE id=?1",
                params![id, at],
            )?,
            "Branch",
        )
    }

    fn set_branch_migration_base(&self, branch_id: &str, rows: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO branch_migration_bases (branch_id, rows) VALUES (?1, ?2) \
             ON CONFLICT(branch_id) DO UPDATE SET rows=excluded.rows",
            params![branch_id, rows],
        )?;
        Ok(())
    }

    fn branch_migration_base(&self, branch_id: &str) -> Result<Option<String>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT rows FROM branch_migration_bases WHERE branch_id=?1")?;
        let mut r = st.query([branch_id])?;
        Ok(match r.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    fn delete_branch(&self, id: &str) -> Result<()> {
        changed(
            self.conn()
                .execute("DELETE FROM branches WHERE id=?1", [id])?,
            "Branch",
        )
    }

    fn create_password(&self, p: &Password) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO passwords ({PASSWORD_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"),
                params![
                    p.id,
                    p.database_id,
                    p.branch_id,
                    p.name,
                    p.role.as_str(),
                    p.username,
                    p.native_hash,
                    p.sha2_hash,
                    p.ttl_seconds,
                    p.expires_at,
                    p.cidrs.join(","),
                    p.created_at,
                    p.last_used_at
                ],
            )
            .map_err(unique("Password", &p.username))?;
        Ok(())
    }

    fn password(&self, branch_id: &str, id: &str) -> Result<Password> {
        self.one(
            "Password",
            &format!("SELECT {PASSWORD_COLS} FROM passwords WHERE branch_id=?1 AND id=?2"),
            [branch_id, id],
            password_row,
        )
    }

    fn password_by_username(&self, username: &str) -> Result<Password> {
        self.one(
            "Password",
            &format!("SELECT {PASSWORD_COLS} FROM passwords WHERE username=?1"),
            [username],
            password_row,
        )
    }

    fn passwords_of_branch(&self, branch_id: &str) -> Result<Vec<Password>> {
        self.all(
            &format!(
                "SELECT {PASSWORD_COLS} FROM passwords WHERE branch_id=?1 ORDER BY created_at, id"
            ),
            [branch_id],
            password_row,
        )
    }

    fn passwords_of_database(&self, database_id: &str) -> Result<Vec<Password>> {
        self.all(
            &format!(
            "SELECT {PASSWORD_COLS} FROM passwords WHERE database_id=?1 ORDER BY created_at, id"
        ),
            [database_id],
            password_row,
        )
    }

    fn update_password(&self, p: &Password) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE passwords SET name=?2, ttl_seconds=?3, expires_at=?4, last_used_at=?5, cidrs=?6 WHERE id=?1",
            params![p.id, p.name, p.ttl_seconds, p.expires_at, p.last_used_at, p.cidrs.join(",")],
        )?;
        changed(n, "Password")
    }

    fn delete_password(&self, id: &str) -> Result<()> {
        changed(
            self.conn()
                .execute("DELETE FROM passwords WHERE id=?1", [id])?,
            "Password",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Role;

    fn org() -> Organization {
        Organization {
            id: "org1".into(),
            name: "acme".into(),
            created_at: 1,
            updated_at: 1,
        }
    }
    fn db(name: &str) -> Database {
        Database {
            id: format!("db-{name}"),
            organization_id: "org1".into(),
            name: name.into(),
            default_branch: "main".into(),
            require_approval_for_deploy: false,
            allow_foreign_key_constraints: false,
            deletion_protected: false,
            deploy_throttle_ratio: 0,
            automatic_migrations: false,
            migration_framework: None,
            migration_table_name: None,
            aggressive_cutover: false,
            created_at: 2,
            updated_at: 2,
        }
    }
    fn branch(db: &str, name: &str) -> Branch {
        Branch {
            id: format!("br-{db}-{name}"),
            database_id: format!("db-{db}"),
            name: name.into(),
            parent_branch: None,
            production: name == "main",
            safe_migrations: false,
            state: BranchState::Pending,
            error: None,
            base_schema: None,
            instance_port: None,
            created_at: 3,
            updated_at: 3,
            schema_last_updated_at: None,
            data_source: None,
        }
    }
    fn password(db: &str, br: &str, id: &str) -> Password {
        Password {
            id: id.into(),
            database_id: format!("db-{db}"),
            branch_id: format!("br-{db}-{br}"),
            name: "app".into(),
            role: Role::Readwriter,
            username: format!("user{id}"),
            native_hash: vec![1; 20],
            sha2_hash: vec![2; 32],
            ttl_seconds: None,
            expires_at: None,
            cidrs: vec!["10.0.0.0/8".into()],
            created_at: 4,
            last_used_at: None,
        }
    }

    #[test]
    fn round_trip_and_cascades() {
        let c = SqliteCatalog::in_memory().unwrap();
        c.create_organization(&org()).unwrap();
        assert!(matches!(
            c.create_organization(&org()),
            Err(CatalogError::AlreadyExists { .. })
        ));
        c.create_database(&db("shop"), &branch("shop", "main"))
            .unwrap();
        let dup = Database {
            id: "other".into(),
            ..db("shop")
        };
        let err = c.create_database(&dup, &branch("x", "main")).unwrap_err();
        assert_eq!(err.to_string(), "Database 'shop' already exists");
        // the failed create left no branch behind
        assert_eq!(c.all_branches().unwrap().len(), 1);

        let mut dev = branch("shop", "dev");
        dev.parent_branch = Some("main".into());
        c.create_branch(&dev).unwrap();
        assert!(matches!(
            c.create_branch(&dev),
            Err(CatalogError::AlreadyExists { .. })
        ));
        dev.state = BranchState::Ready;
        dev.instance_port = Some(40001);
        dev.base_schema = Some("[]".into());
        c.update_branch(&dev).unwrap();
        assert_eq!(c.branch("db-shop", "dev").unwrap(), dev);

        c.create_password(&password("shop", "dev", "p1")).unwrap();
        c.create_password(&password("shop", "main", "p2")).unwrap();
        assert_eq!(
            c.password_by_username("userp1").unwrap().role,
            Role::Readwriter
        );
        assert_eq!(
            c.password_by_username("userp1").unwrap().cidrs,
            ["10.0.0.0/8"]
        );
        assert_eq!(c.passwords_of_database("db-shop").unwrap().len(), 2);
        c.delete_branch(&dev.id).unwrap();
        assert!(matches!(
            c.password("br-shop-dev", "p1"),
            Err(CatalogError::NotFound("Password"))
        ));
        c.delete_database("db-shop").unwrap();
        assert!(c.all_branches().unwrap().is_empty());
        assert!(c.passwords_of_database("db-shop").unwrap().is_empty());
        assert!(matches!(
            c.delete_database("db-shop"),
            Err(CatalogError::NotFound(_))
        ));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let c = SqliteCatalog::open(&path).unwrap();
            c.create_organization(&org()).unwrap();
            c.create_database(&db("shop"), &branch("shop", "main"))
                .unwrap();
        }
        let c = SqliteCatalog::open(&path).unwrap();
        assert_eq!(c.organization("acme").unwrap(), org());
        assert_eq!(c.databases("org1").unwrap().len(), 1);
    }

    #[test]
    fn deploy_requests_are_numbered_per_database() {
        let c = SqliteCatalog::in_memory().unwrap();
        c.create_organization(&org()).unwrap();
        c.create_database(&db("shop"), &branch("shop", "main"))
            .unwrap();
        c.create_database(&db("blog"), &branch("blog", "main"))
            .unwrap();
        let dr = |id: &str, db: &str| DeployRequest {
            id: id.into(),
            database_id: format!("db-{db}"),
            number: 0,
            branch: "dev".into(),
            into_branch: "main".into(),
            state: "open".into(),
            notes: String::new(),
            actor: "tok".into(),
            closed_by: None,
            created_at: 1,
            updated_at: 1,
            closed_at: None,
            auto_cutover: true,
        };
        assert_eq!(c.create_deploy_request(&dr("a", "shop")).unwrap().number, 1);
        assert_eq!(c.create_deploy_request(&dr("b", "shop")).unwrap().number, 2);
        assert_eq!(c.create_deploy_request(&dr("c", "blog")).unwrap().number, 1);
        let mut d = c.deploy_request("db-shop", 2).unwrap();
        d.state = "closed".into();
        c.update_deploy_request(&d).unwrap();
        assert_eq!(c.deploy_request("db-shop", 2).unwrap().state, "closed");
        c.add_review(&Review {
            id: "r".into(),
            deploy_request_id: "a".into(),
            state: "approved".into(),
            body: String::new(),
            actor: "t".into(),
            created_at: 2,
            changes_digest: "d".into(),
        })
        .unwrap();
        assert_eq!(c.reviews("a").unwrap().len(), 1);
        let mut dep = Deployment {
            id: "dep1".into(),
            database_id: "db-shop".into(),
            deploy_request_id: "a".into(),
            deploy_request_number: 1,
            into_branch: "main".into(),
            state: "queued".into(),
            instant: false,
            auto_cutover: true,
            throttle_ratio: 0,
            plan: String::new(),
            progress: String::new(),
            error: None,
            actor: "tok".into(),
            cutover_actor: None,
            cancelled_actor: None,
            queued_at: 5,
            started_at: None,
            cutover_at: None,
            finished_at: None,
            revert_expires_at: None,
            updated_at: 5,
            changes: String::new(),
            force_cutover_requested_at: None,
        };
        c.save_deployment(&dep).unwrap();
        assert!(c.request_force_cutover("a", 6).unwrap());
        assert!(c.request_force_cutover("a", 7).unwrap());
        c.save_deployment(&dep).unwrap();
        assert_eq!(
            c.deployment("a").unwrap().force_cutover_requested_at,
            Some(7),
            "the latest request's, whatever a step saves"
        );
        assert_eq!(c.active_deployments().unwrap().len(), 1);
        dep.state = "complete_error".into();
        dep.error = Some("conflict".into());
        c.save_deployment(&dep).unwrap();
        assert!(c.active_deployments().unwrap().is_empty());
        // A new attempt replaces the finished one.
        dep.id = "dep2".into();
        dep.state = "queued".into();
        c.save_deployment(&dep).unwrap();
        assert_eq!(c.deployment("a").unwrap().id, "dep2");
        assert_eq!(c.deployment("a").unwrap().force_cutover_requested_at, None);
        assert_eq!(c.deployments("db-shop").unwrap().len(), 1);
        assert!(c.deployment("zz").is_err());
        assert_eq!(
            c.deploy_requests("db-shop")
                .unwrap()
                .iter()
                .map(|d| d.number)
                .collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn tokens() {
        let c = SqliteCatalog::in_memory().unwrap();
        c.create_organization(&org()).unwrap();
        let t = ServiceToken {
            id: "tok".into(),
            organization_id: "org1".into(),
            name: Some("ci".into()),
            token_hash: vec![9; 32],
            created_at: 1,
            last_used_at: None,
            expires_at: None,
        };
        c.create_service_token(&t).unwrap();
        c.touch_service_token("tok", 77).unwrap();
        assert_eq!(c.service_token("tok").unwrap().last_used_at, Some(77));
        c.delete_service_token("tok").unwrap();
        assert!(c.service_token("tok").is_err());
    }

    #[test]
    fn backups_and_their_policies() {
        let c = SqliteCatalog::in_memory().unwrap();
        c.create_organization(&org()).unwrap();
        c.create_database(&db("shop"), &branch("shop", "main"))
            .unwrap();
        // Every new database gets the default production schedule.
        let policies = c.backup_policies("db-shop").unwrap();
        assert_eq!(policies.len(), 1);
        let p = &policies[0];
        assert_eq!(
            (
                p.target.as_str(),
                p.frequency_value,
                p.frequency_unit.as_str()
            ),
            ("production", 12, "hour")
        );
        assert_eq!((p.retention_value, p.retention_unit.as_str()), (2, "day"));
        assert_eq!(p.next_run_at, 2 + 12 * 3_600_000);
        assert_eq!(p.id.len(), 12);

        let mut b = Backup {
            id: "bk1".into(),
            database_id: "db-shop".into(),
            branch_id: "br-shop-main".into(),
            name: "first".into(),
            state: BackupState::Pending,
            policy_id: None,
            actor: Some("tok".into()),
            size: 0,
            protected: false,
            error: None,
            manifest: None,
            progress: None,
            validation_state: "pending".into(),
            validation_error: None,
            validated_at: None,
            created_at: 10,
            updated_at: 10,
            started_at: None,
            completed_at: None,
            expires_at: None,
        };
        c.create_backup(&b).unwrap();
        // Progress is written only while the backup runs.
        assert!(!c.save_backup_progress("bk1", "{}", 11).unwrap());
        b.state = BackupState::Running;
        c.update_backup(&b).unwrap();
        assert!(c
            .save_backup_progress("bk1", "{\"phase\":\"copying\"}", 12)
            .unwrap());
        let got = c.backup("bk1").unwrap();
        assert_eq!(got.progress.as_deref(), Some("{\"phase\":\"copying\"}"));
        assert_eq!(c.backups_of_branch("br-shop-main").unwrap().len(), 1);

        let mut restored = branch("shop", "restored");
        restored.data_source = Some(DataSource::Backup("bk1".into()));
        c.create_branch(&restored).unwrap();
        let names: Vec<_> = c
            .branches_restored_from("bk1")
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["restored"]);
        assert_eq!(
            c.branch("db-shop", "restored").unwrap().data_source,
            Some(DataSource::Backup("bk1".into()))
        );

        // Expiry: only finished, unprotected backups past their time.
        b.state = BackupState::Success;
        b.expires_at = Some(100);
        c.update_backup(&b).unwrap();
        assert!(c.expired_backups(99).unwrap().is_empty());
        assert_eq!(c.expired_backups(100).unwrap().len(), 1);
        c.set_backup_protected("bk1", true, 101).unwrap();
        assert!(c.expired_backups(200).unwrap().is_empty());
        c.set_backup_protected("bk1", false, 102).unwrap();
        b = c.backup("bk1").unwrap();
        b.validation_state = "running".into();
        c.update_backup(&b).unwrap();
        assert!(c.expired_backups(200).unwrap().is_empty());

        // A branch's backups go with it.
        c.delete_branch("br-shop-main").unwrap();
        assert!(c.backup("bk1").is_err());
    }

    #[test]
    fn data_sources_round_trip() {
        for d in [DataSource::Parent, DataSource::Backup("abc123".into())] {
            assert_eq!(DataSource::parse(&d.encode()), Some(d));
        }
        assert_eq!(DataSource::parse("nonsense"), None);
    }
}
