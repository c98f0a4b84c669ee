//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! A 20-line runner rather than rusqlite_migration: that crate pins rusqlite's minor version in lock-step,
//! and this is all it would do for us. Append migrations; never edit a released one.

use crate::{CatalogError, Result};
use rusqlite::Connection;

pub const MIGRATIONS: &[&str] = &[
    // 1: organizations, service tokens, databases, branches, passwords.
    r#"
    CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE service_tokens (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        name TEXT,
        token_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        expires_at INTEGER
    );
    CREATE TABLE databases (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        default_branch TEXT NOT NULL,
        require_approval_for_deploy INTEGER NOT NULL DEFAULT 0,
        allow_foreign_key_constraints INTEGER NOT NULL DEFAULT 0,
        deletion_protected INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (organization_id, name)
    );
    CREATE TABLE branches (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        parent_branch TEXT,
        production INTEGER NOT NULL,
        safe_migrations INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        error TEXT,
        base_schema TEXT,
        instance_port INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        schema_last_updated_at INTEGER,
        UNIQUE (database_id, name)
    );
    CREATE TABLE passwords (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        branch_id TEXT NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        username TEXT NOT NULL UNIQUE,
        native_hash BLOB NOT NULL,
        sha2_hash BLOB NOT NULL,
        ttl_seconds INTEGER,
        expires_at INTEGER,
        cidrs TEXT,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX passwords_branch ON passwords(branch_id);
    "#,
    // 2: deploy requests and their reviews.
    r#"
    CREATE TABLE deploy_requests (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        branch TEXT NOT NULL,
        into_branch TEXT NOT NULL,
        state TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL,
        closed_by TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        closed_at INTEGER,
        UNIQUE (database_id, number)
    );
    CREATE TABLE deploy_request_reviews (
        id TEXT PRIMARY KEY,
        deploy_request_id TEXT NOT NULL REFERENCES deploy_requests(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 3: deployments (the deploy queue) and gated deploys.
    r#"
    ALTER TABLE deploy_requests ADD COLUMN auto_cutover INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        deploy_request_id TEXT NOT NULL UNIQUE REFERENCES deploy_requests(id) ON DELETE CASCADE,
        deploy_request_number INTEGER NOT NULL,
        into_branch TEXT NOT NULL,
        state TEXT NOT NULL,
        instant INTEGER NOT NULL,
        auto_cutover INTEGER NOT NULL,
        throttle_ratio INTEGER NOT NULL DEFAULT 0,
        plan TEXT NOT NULL DEFAULT '',
        progress TEXT NOT NULL DEFAULT '',
        error TEXT,
        actor TEXT NOT NULL,
        cutover_actor TEXT,
        cancelled_actor TEXT,
        queued_at INTEGER NOT NULL,
        started_at INTEGER,
        cutover_at INTEGER,
        finished_at INTEGER,
        revert_expires_at INTEGER,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX deployments_by_state ON deployments(state, queued_at);
    "#,
    // 4: the database's deploy throttle, the default of every deployment queued after it is set.
    r#"
    ALTER TABLE databases ADD COLUMN deploy_throttle_ratio INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: backups, backup policies (every database gets the default production policy: every 12
    // hours, kept 2 days), and where a branch's data came from.
    r#"
    ALTER TABLE branches ADD COLUMN data_source TEXT;
    CREATE TABLE backup_policies (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        target TEXT NOT NULL,
        frequency_value INTEGER NOT NULL,
        frequency_unit TEXT NOT NULL,
        retention_value INTEGER NOT NULL,
        retention_unit TEXT NOT NULL,
        last_ran_at INTEGER,
        next_run_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE backups (
        id TEXT PRIMARY KEY,
        database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        branch_id TEXT NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        policy_id TEXT,
        actor TEXT,
        size INTEGER NOT NULL DEFAULT 0,
        protected INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        manifest TEXT,
        progress TEXT,
        validation_state TEXT NOT NULL DEFAULT 'pending',
        validation_error TEXT,
        validated_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        expires_at INTEGER
    );
    CREATE INDEX backups_by_branch ON backups(branch_id, created_at);
    CREATE TRIGGER databases_default_backup_policy AFTER INSERT ON databases BEGIN
        INSERT INTO backup_policies (id, database_id, name, target, frequency_value, frequency_unit,
            retention_value, retention_unit, next_run_at, created_at, updated_at)
        VALUES (lower(hex(randomblob(6))), NEW.id, 'Default production schedule', 'production', 12, 'hour',
            2, 'day', NEW.created_at + 43200000, NEW.created_at, NEW.created_at);
    END;
    INSERT INTO backup_policies (id, database_id, name, target, frequency_value, frequency_unit,
        retention_value, retention_unit, next_run_at, created_at, updated_at)
    SELECT lower(hex(randomblob(6))), id, 'Default production schedule', 'production', 12, 'hour',
        2, 'day', CAST(strftime('%s','now') AS INTEGER) * 1000 + 43200000, created_at, created_at FROM databases;
    "#,
    // Automatic copy of migration data with deploys.
    r#"
    ALTER TABLE databases ADD COLUMN automatic_migrations INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE databases ADD COLUMN migration_framework TEXT;
    ALTER TABLE databases ADD COLUMN migration_table_name TEXT;
    "#,
    // What an approval approved: the digest of the request's changes when it was given.
    r#"
    ALTER TABLE deploy_request_reviews ADD COLUMN changes_digest TEXT NOT NULL DEFAULT '';
    "#,
    // The changes a deployment was queued with (its record once deployed).
    r#"
    ALTER TABLE deployments ADD COLUMN changes TEXT NOT NULL DEFAULT '';
    "#,
    r#"
    ALTER TABLE databases ADD COLUMN aggressive_cutover INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deployments ADD COLUMN force_cutover_requested_at INTEGER;
    "#,
    // The migration table's rows a branch was made with (automatic copy of migration data): a
    // deploy copies a table of heads only when the branch changed it since.
    r#"
    CREATE TABLE branch_migration_bases (
        branch_id TEXT PRIMARY KEY,
        rows TEXT NOT NULL
    );
    "#,
];

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(CatalogError::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
