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
}
