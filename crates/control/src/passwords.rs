//! Branch passwords: created with a role, shown once in plaintext, stored as hashes only.

use crate::error::not_found;
use crate::{Caller, ControlError, Platform, Result};
use strata_catalog::{Branch, Password};
use strata_model::cidr::Cidr;
use strata_model::credentials::PasswordHashes;
use strata_model::timefmt::now_millis;
use strata_model::{ids, names, Role};

/// A password with its plaintext, which exists only in the create response.
pub struct NewPassword {
    pub password: Password,
    pub plaintext: String,
}

/// What a create request may set.
#[derive(Debug, Default, Clone)]
pub struct PasswordRequest {
    pub name: Option<String>,
    pub role: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub cidrs: Option<Vec<String>>,
}

/// What an update may change (a password's role never changes).
#[derive(Debug, Default, Clone)]
pub struct PasswordUpdate {
    pub name: Option<String>,
    pub cidrs: Option<Vec<String>>,
}

fn check_cidrs(cidrs: &[String]) -> Result<Vec<String>> {
    cidrs
        .iter()
        .map(|c| {
            Cidr::parse(c.trim())
                .map(|c| c.to_string())
                .map_err(|e| ControlError::Invalid(e.to_string()))
        })
        .collect()
}

/// True when the password has a TTL that has run out.
pub fn expired(p: &Password, now: i64) -> bool {
    p.expires_at.is_some_and(|t| t <= now)
}

/// What the gateway learns from a password's username.
#[derive(Debug, Clone)]
pub struct Login {
    pub password: Password,
    pub branch: Branch,
    pub database: strata_catalog::Database,
}

impl Platform {
    /// True while a password a session logged in with may still be used: not deleted since, and
    /// not past its expiry (as renewed since). Checked before each command of a session; memory
    /// only, no catalog read.
    pub fn password_current(&self, p: &Password) -> bool {
        let expires_at = if self
            .any_password_changes
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            crate::lock(&self.password_changes)
                .get(&p.id)
                .copied()
                .unwrap_or(p.expires_at)
        } else {
            p.expires_at
        };
        expires_at.is_none_or(|t| now_millis() < t)
    }

    /// Looks up a password by its username, for the gateway. Expired passwords are not found.
    pub fn login(&self, username: &str) -> Option<Login> {
        let password = self.catalog().password_by_username(username).ok()?;
        if expired(&password, now_millis()) {
            return None;
        }
        let branch = self.catalog().branch_by_id(&password.branch_id).ok()?;
        let database = self.catalog().database_by_id(&password.database_id).ok()?;
        Some(Login {
            password,
            branch,
            database,
        })
    }

    /// Whether a branch refuses direct DDL now (read at the moment of asking).
    pub fn safe_migrations(&self, branch_id: &str) -> bool {
        self.catalog()
            .branch_by_id(branch_id)
            .map(|b| b.safe_migrations)
            .unwrap_or(false)
    }

    /// Records that a statement changed the branch's schema (the gateway saw DDL succeed).
    pub fn schema_changed(&self, branch_id: &str) {
        let _ = self.catalog().touch_branch_schema(branch_id, now_millis());
    }

    /// True when the branch's database allows foreign key constraints.
    pub fn foreign_keys_allowed(&self, branch_id: &str) -> bool {
        self.catalog()
            .branch_by_id(branch_id)
            .and_then(|b| self.catalog().database_by_id(&b.database_id))
            .map(|d| d.allow_foreign_key_constraints)
            .unwrap_or(false)
    }

    /// Records that a password was used (at most once a minute per password).
    pub fn password_used(&self, password: &Password) {
        let now = now_millis();
        if password.last_used_at.is_none_or(|t| now - t > 60_000) {
            let mut p = password.clone();
            p.last_used_at = Some(now);
            let _ = self.catalog().update_password(&p);
        }
    }

    pub fn create_password(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        req: PasswordRequest,
    ) -> Result<NewPassword> {
        let b = self.branch(caller, org, db, branch)?;
        let role: Role = match req.role.as_deref() {
            None | Some("") => Role::Admin,
            Some(r) => r
                .parse()
                .map_err(|e: strata_model::role::RoleError| ControlError::Invalid(e.to_string()))?,
        };
        let id = ids::public_id();
        let name = match req.name {
            Some(n) => {
                names::validate_display_name("Password", &n)?;
                n
            }
            None => format!("password-{id}"),
        };
        if let Some(ttl) = req.ttl_seconds {
            if ttl < 0 {
                return Err(ControlError::Invalid(
                    "ttl must be zero (never expires) or a positive number of seconds".into(),
                ));
            }
            crate::check_ttl(ttl)?;
        }
        let ttl = req.ttl_seconds.filter(|t| *t > 0);
        let cidrs = check_cidrs(req.cidrs.as_deref().unwrap_or_default())?;
        let plaintext = ids::new_password_secret();
        let hashes = PasswordHashes::from_plaintext(&plaintext);
        let now = now_millis();
        let password = Password {
            id,
            database_id: b.database_id.clone(),
            branch_id: b.id.clone(),
            name,
            role,
            username: ids::password_username(),
            native_hash: hashes.native.to_vec(),
            sha2_hash: hashes.sha2.to_vec(),
            ttl_seconds: ttl,
            expires_at: ttl.map(|t| now + t * 1000),
            cidrs,
            created_at: now,
            last_used_at: None,
        };
        self.catalog().create_password(&password)?;
        self.password_users_changed(&password.branch_id);
        Ok(NewPassword {
            password,
            plaintext,
        })
    }

    /// Passwords of one branch, or of every branch of the database when `branch` is `None`.
    pub fn passwords(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: Option<&str>,
    ) -> Result<Vec<(Password, Branch)>> {
        let database = self.database(caller, org, db)?;
        let branches = self.catalog().branches(&database.id)?;
        let list = match branch {
            Some(name) => {
                let b = branches
                    .iter()
                    .find(|b| b.name == name)
                    .ok_or_else(|| not_found("Branch", name))?;
                self.catalog().passwords_of_branch(&b.id)?
            }
            None => self.catalog().passwords_of_database(&database.id)?,
        };
        Ok(list
            .into_iter()
            .filter_map(|p| {
                branches
                    .iter()
                    .find(|b| b.id == p.branch_id)
                    .cloned()
                    .map(|b| (p, b))
            })
            .collect())
    }

    pub fn password(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<(Password, Branch)> {
        let b = self.branch(caller, org, db, branch)?;
        let p = self
            .catalog()
            .password(&b.id, id)
            .map_err(|_| {
                ControlError::NotFound(format!(
                    "Password '{id}' not found on branch '{branch}': passwords are named by their id (strata password list {db} {branch})"
                ))
            })?;
        Ok((p, b))
    }

    /// Renames a password or changes its IP restrictions.
    pub fn update_password(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
        update: PasswordUpdate,
    ) -> Result<(Password, Branch)> {
        let PasswordUpdate { name, cidrs } = update;
        let (mut p, b) = self.password(caller, org, db, branch, id)?;
        if let Some(n) = name {
            names::validate_display_name("Password", &n)?;
            p.name = n;
        }
        if let Some(c) = cidrs {
            p.cidrs = check_cidrs(&c)?;
        }
        self.catalog().update_password(&p)?;
        Ok((p, b))
    }

    pub fn delete_password(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<()> {
        let (p, _) = self.password(caller, org, db, branch, id)?;
        self.catalog().delete_password(&p.id)?;
        // Its sessions end at their next command (a deleted password's expiry is the past).
        crate::lock(&self.password_changes).insert(p.id.clone(), Some(0));
        self.any_password_changes
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.password_users_changed(&p.branch_id);
        Ok(())
    }

    /// Extends a password with a TTL by another TTL from now.
    pub fn renew_password(
        &self,
        caller: &Caller,
        org: &str,
        db: &str,
        branch: &str,
        id: &str,
    ) -> Result<(Password, Branch)> {
        let (mut p, b) = self.password(caller, org, db, branch, id)?;
        let Some(ttl) = p.ttl_seconds else {
            return Err(ControlError::Unprocessable(format!(
                "Password '{}' has no TTL and does not need renewing",
                p.name
            )));
        };
        let now = now_millis();
        if expired(&p, now) {
            return Err(ControlError::Unprocessable(format!(
                "Password '{}' has expired and can no longer be renewed",
                p.name
            )));
        }
        p.expires_at = Some(now + ttl * 1000);
        self.catalog().update_password(&p)?;
        crate::lock(&self.password_changes).insert(p.id.clone(), p.expires_at);
        self.any_password_changes
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.password_users_changed(&p.branch_id);
        Ok((p, b))
    }
}
