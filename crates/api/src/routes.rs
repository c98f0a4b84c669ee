//! The handlers: each parses its input, calls the control plane, and shapes the answer. No logic here.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery};
use crate::views::{self, Edge, Page};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use strata_catalog::Database;
use strata_control::{
    BackupRequest, BranchRequest, Caller, DatabaseUpdate, PasswordRequest, PasswordUpdate,
    PolicyRequest, SeedData,
};
use utoipa::ToSchema;

type Org = Path<String>;
type OrgDb = Path<(String, String)>;
type OrgDbBranch = Path<(String, String, String)>;
type OrgDbBranchId = Path<(String, String, String, String)>;

fn edge<'a>(st: &'a AppState, org: &'a str, db: &'a str) -> Edge<'a> {
    let s = st.platform.settings();
    Edge {
        api_url: &st.api_url,
        org,
        database: db,
        mysql_host: &s.mysql_host,
        mysql_port: s.mysql_port,
        http_port: s.http_port,
    }
}

fn list_url(st: &AppState, path: &str) -> String {
    format!("{}/v1/{path}", st.api_url)
}

// ------------------------------------------------------------------ organizations

#[utoipa::path(get, path = "/v1/organizations", tag = "organizations",
    responses((status = 200, body = Page<views::OrganizationView>), (status = 401, body = ApiError)))]
pub async fn list_organizations(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::OrganizationView>>> {
    let (page, per) = q.parse()?;
    let orgs = st.platform.organizations(&c)?;
    let mut out = Vec::new();
    for o in &orgs {
        out.push(views::organization(o, st.platform.database_count(o)?));
    }
    Ok(Json(views::page(
        out,
        page,
        per,
        &list_url(&st, "organizations"),
    )))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}", tag = "organizations",
    responses((status = 200, body = views::OrganizationView), (status = 404, body = ApiError)))]
pub async fn get_organization(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(org): Org,
) -> ApiResult<Json<views::OrganizationView>> {
    let o = st.platform.organization(&c, &org)?;
    Ok(Json(views::organization(
        &o,
        st.platform.database_count(&o)?,
    )))
}

// ------------------------------------------------------------------ service tokens

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateServiceToken {
    #[schema(pattern = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub name: Option<String>,
    /// Seconds until the token expires; absent: never.
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 1, maximum = 3_153_600_000_i64)]
    pub ttl: Option<i64>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/service-tokens", tag = "service tokens",
    responses((status = 200, body = Page<views::ServiceTokenView>)))]
pub async fn list_service_tokens(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(org): Org,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::ServiceTokenView>>> {
    let (page, per) = q.parse()?;
    let list = st
        .platform
        .service_tokens(&c, &org)?
        .iter()
        .map(|t| views::service_token(t, None))
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(&st, &format!("organizations/{org}/service-tokens")),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/service-tokens", tag = "service tokens",
    request_body = CreateServiceToken, responses((status = 200, body = views::ServiceTokenView)))]
pub async fn create_service_token(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(org): Org,
    Body(b): Body<CreateServiceToken>,
) -> ApiResult<Json<views::ServiceTokenView>> {
    let t = st.platform.create_service_token(&c, &org, b.name, b.ttl)?;
    Ok(Json(views::service_token(&t.token, Some(t.plaintext))))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/service-tokens/{id}", tag = "service tokens",
    responses((status = 200, body = views::ServiceTokenView), (status = 404, body = ApiError)))]
pub async fn get_service_token(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<views::ServiceTokenView>> {
    Ok(Json(views::service_token(
        &st.platform.service_token(&c, &org, &id)?,
        None,
    )))
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/service-tokens/{id}", tag = "service tokens",
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete_service_token(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.platform.delete_service_token(&c, &org, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ databases

fn database_view(st: &AppState, org: &str, d: &Database) -> ApiResult<views::DatabaseView> {
    let branches = st.platform.branches_of(d)?;
    Ok(views::database(&st.api_url, org, d, &branches))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateDatabase {
    #[schema(
        required = true,
        nullable = false,
        pattern = "^(?!(mysql|information_schema|performance_schema|sys)$)[a-z0-9][a-z0-9_-]{0,63}$"
    )]
    pub name: Option<String>,
    /// Accepted for compatibility; Strata has one region, `local`.
    #[schema(schema_with = crate::contract::region)]
    pub region: Option<String>,
    /// Accepted for pscale compatibility; instance sizing follows the branch kind.
    #[allow(dead_code)]
    pub cluster_size: Option<String>,
    /// `mysql` (the default) is the only kind served.
    #[schema(schema_with = crate::contract::database_kind)]
    pub kind: Option<String>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases", tag = "databases",
    responses((status = 200, body = Page<views::DatabaseView>)))]
pub async fn list_databases(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(org): Org,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::DatabaseView>>> {
    let (page, per) = q.parse()?;
    let mut out = Vec::new();
    for d in st.platform.databases(&c, &org)? {
        out.push(database_view(&st, &org, &d)?);
    }
    Ok(Json(views::page(
        out,
        page,
        per,
        &list_url(&st, &format!("organizations/{org}/databases")),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases", tag = "databases",
    request_body = CreateDatabase,
    responses((status = 201, body = views::DatabaseView), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_database(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(org): Org,
    Body(b): Body<CreateDatabase>,
) -> ApiResult<(StatusCode, Json<views::DatabaseView>)> {
    let name = b
        .name
        .ok_or_else(|| ApiError::invalid("name is required"))?;
    if let Some(kind) = b.kind.as_deref().filter(|k| !k.is_empty()) {
        if kind != "mysql" {
            return Err(ApiError::invalid(format!(
                "kind '{kind}' is not supported: Strata serves mysql databases"
            )));
        }
    }
    if let Some(r) = b.region.as_deref().filter(|r| !r.is_empty()) {
        if r != "local" {
            return Err(ApiError::invalid(format!(
                "region '{r}' does not exist: this Strata has one region, 'local'"
            )));
        }
    }
    let d = st.platform.create_database(&c, &org, &name)?;
    Ok((StatusCode::CREATED, Json(database_view(&st, &org, &d)?)))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}", tag = "databases",
    responses((status = 200, body = views::DatabaseView), (status = 404, body = ApiError)))]
pub async fn get_database(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
) -> ApiResult<Json<views::DatabaseView>> {
    let d = st.platform.database(&c, &org, &db)?;
    Ok(Json(database_view(&st, &org, &d)?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateDatabase {
    pub default_branch: Option<String>,
    pub require_approval_for_deploy: Option<bool>,
    pub allow_foreign_key_constraints: Option<bool>,
    pub deletion_protected: Option<bool>,
    /// Copy the migration table's rows from the deployed branch with each deploy.
    pub automatic_migrations: Option<bool>,
    /// rails, phoenix, laravel, django, dotnet, sequelize or other.
    #[schema(schema_with = crate::contract::migration_framework)]
    pub migration_framework: Option<String>,
    /// The migration table (for `other`, or to override the framework's).
    pub migration_table_name: Option<String>,
    /// A deploy's cut-over ends the queries and transactions in its way at once instead of
    /// waiting for them (PlanetScale's aggressive cut-over setting).
    pub aggressive_cutover: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}", tag = "databases",
    request_body = UpdateDatabase, responses((status = 200, body = views::DatabaseView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_database(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Body(b): Body<UpdateDatabase>,
) -> ApiResult<Json<views::DatabaseView>> {
    let d = st.platform.update_database(
        &c,
        &org,
        &db,
        DatabaseUpdate {
            default_branch: b.default_branch,
            require_approval_for_deploy: b.require_approval_for_deploy,
            allow_foreign_key_constraints: b.allow_foreign_key_constraints,
            deletion_protected: b.deletion_protected,
            automatic_migrations: b.automatic_migrations,
            migration_framework: b.migration_framework,
            migration_table_name: b.migration_table_name,
            aggressive_cutover: b.aggressive_cutover,
        },
    )?;
    Ok(Json(database_view(&st, &org, &d)?))
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}", tag = "databases",
    responses((status = 204), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn delete_database(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
) -> ApiResult<StatusCode> {
    st.platform.delete_database(&c, &org, &db).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ branches

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateBranch {
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[a-z0-9][a-z0-9_-]{0,63}$"
    )]
    pub name: Option<String>,
    /// Defaults to the database's default branch.
    pub parent_branch: Option<String>,
    #[schema(schema_with = crate::contract::region)]
    pub region: Option<String>,
    /// Accepted for pscale compatibility; instance sizing follows the branch kind.
    #[allow(dead_code)]
    pub cluster_size: Option<String>,
    pub backup_id: Option<String>,
    #[schema(schema_with = crate::contract::seed_data)]
    pub seed_data: Option<String>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches", tag = "branches",
    responses((status = 200, body = Page<views::BranchView>)))]
pub async fn list_branches(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::BranchView>>> {
    let (page, per) = q.parse()?;
    let e = edge(&st, &org, &db);
    let list = st
        .platform
        .branches(&c, &org, &db)?
        .iter()
        .map(|b| views::branch(&e, b, st.platform.instance_status(&b.id)))
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(&st, &format!("organizations/{org}/databases/{db}/branches")),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches", tag = "branches",
    request_body = CreateBranch,
    responses((status = 201, body = views::BranchView), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Body(b): Body<CreateBranch>,
) -> ApiResult<(StatusCode, Json<views::BranchView>)> {
    let name = b
        .name
        .ok_or_else(|| ApiError::invalid("name is required"))?;
    let seed_data = match b.seed_data.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("last_successful_backup") => Some(SeedData::LastSuccessfulBackup),
        Some("current") => Some(SeedData::Current),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "seed_data must be 'last_successful_backup' or 'current' (got '{other}')"
            )))
        }
    };
    if let Some(r) = b.region.as_deref().filter(|r| !r.is_empty()) {
        if r != "local" {
            return Err(ApiError::invalid(format!(
                "region '{r}' does not exist: this Strata has one region, 'local'"
            )));
        }
    }
    let br = st.platform.create_branch(
        &c,
        &org,
        &db,
        BranchRequest {
            name,
            parent_branch: b.parent_branch.filter(|p| !p.is_empty()),
            backup_id: b.backup_id.filter(|p| !p.is_empty()),
            seed_data,
        },
    )?;
    let e = edge(&st, &org, &db);
    Ok((
        StatusCode::CREATED,
        Json(views::branch(&e, &br, st.platform.instance_status(&br.id))),
    ))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}", tag = "branches",
    responses((status = 200, body = views::BranchView), (status = 404, body = ApiError)))]
pub async fn get_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    let b = st.platform.branch(&c, &org, &db, &branch)?;
    let mut v = views::branch(
        &edge(&st, &org, &db),
        &b,
        st.platform.instance_status(&b.id),
    );
    v.data_progress = st
        .platform
        .data_progress(&b.id)
        .as_ref()
        .map(views::progress);
    Ok(Json(v))
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteBranchQuery {
    pub delete_descendants: Option<String>,
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}", tag = "branches",
    params(("delete_descendants" = Option<bool>, Query, description = "also delete the branches made from it")),
    responses((status = 204), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn delete_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Query(q): Query<DeleteBranchQuery>,
) -> ApiResult<StatusCode> {
    let descendants = match q.delete_descendants.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "delete_descendants must be true or false, not '{other}'"
            )))
        }
    };
    st.platform
        .delete_branch(&c, &org, &db, &branch, descendants)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/promote", tag = "branches",
    responses((status = 200, body = views::BranchView), (status = 422, body = ApiError)))]
pub async fn promote_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    let b = st.platform.promote_branch(&c, &org, &db, &branch).await?;
    Ok(Json(views::branch(
        &edge(&st, &org, &db),
        &b,
        st.platform.instance_status(&b.id),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/demote", tag = "branches",
    responses((status = 200, body = views::BranchView), (status = 422, body = ApiError)))]
pub async fn demote_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    let b = st.platform.demote_branch(&c, &org, &db, &branch).await?;
    Ok(Json(views::branch(
        &edge(&st, &org, &db),
        &b,
        st.platform.instance_status(&b.id),
    )))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SafeMigrations {
    #[schema(required = true, nullable = false)]
    pub safe_migrations: Option<bool>,
}

async fn set_safe_migrations(
    st: &AppState,
    c: &Caller,
    org: &str,
    db: &str,
    branch: &str,
    on: bool,
) -> ApiResult<Json<views::BranchView>> {
    let b = st
        .platform
        .set_safe_migrations(c, org, db, branch, on)
        .await?;
    Ok(Json(views::branch(
        &edge(st, org, db),
        &b,
        st.platform.instance_status(&b.id),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/safe-migrations", tag = "branches",
    responses((status = 200, body = views::BranchView)))]
pub async fn enable_safe_migrations(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    set_safe_migrations(&st, &c, &org, &db, &branch, true).await
}

#[utoipa::path(put, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/safe-migrations", tag = "branches",
    request_body = SafeMigrations, responses((status = 200, body = views::BranchView)))]
pub async fn update_safe_migrations(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Body(b): Body<SafeMigrations>,
) -> ApiResult<Json<views::BranchView>> {
    let on = b
        .safe_migrations
        .ok_or_else(|| ApiError::invalid("safe_migrations (true or false) is required"))?;
    set_safe_migrations(&st, &c, &org, &db, &branch, on).await
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/safe-migrations", tag = "branches",
    responses((status = 200, body = views::BranchView)))]
pub async fn disable_safe_migrations(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    set_safe_migrations(&st, &c, &org, &db, &branch, false).await
}

// ------------------------------------------------------------------ passwords

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreatePassword {
    #[schema(pattern = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub name: Option<String>,
    /// reader, writer, readwriter or admin (default).
    #[schema(schema_with = crate::contract::password_role)]
    pub role: Option<String>,
    /// Seconds until the password expires; 0 or absent: never.
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 0, maximum = 3_153_600_000_i64)]
    pub ttl: Option<i64>,
    pub cidrs: Option<Vec<String>>,
    pub replica: Option<bool>,
}

/// A password's role cannot change (its grants are the server user's): a body naming anything but
/// these fields is refused rather than half applied.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePassword {
    #[schema(pattern = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub name: Option<String>,
    pub cidrs: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/passwords", tag = "passwords",
    responses((status = 200, body = Page<views::PasswordView>)))]
pub async fn list_database_passwords(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::PasswordView>>> {
    let (page, per) = q.parse()?;
    let e = edge(&st, &org, &db);
    let list = st
        .platform
        .passwords(&c, &org, &db, None)?
        .iter()
        .map(|(p, b)| views::password(&e, p, b, None))
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(
            &st,
            &format!("organizations/{org}/databases/{db}/passwords"),
        ),
    )))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords", tag = "passwords",
    responses((status = 200, body = Page<views::PasswordView>)))]
pub async fn list_passwords(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::PasswordView>>> {
    let (page, per) = q.parse()?;
    let e = edge(&st, &org, &db);
    let list = st
        .platform
        .passwords(&c, &org, &db, Some(&branch))?
        .iter()
        .map(|(p, b)| views::password(&e, p, b, None))
        .collect();
    let url = list_url(
        &st,
        &format!("organizations/{org}/databases/{db}/branches/{branch}/passwords"),
    );
    Ok(Json(views::page(list, page, per, &url)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords", tag = "passwords",
    request_body = CreatePassword,
    responses((status = 201, body = views::PasswordView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_password(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Body(b): Body<CreatePassword>,
) -> ApiResult<(StatusCode, Json<views::PasswordView>)> {
    if b.replica == Some(true) {
        return Err(ApiError::invalid(
            "replica passwords are not available: branches have no replicas yet",
        ));
    }
    let np = st.platform.create_password(
        &c,
        &org,
        &db,
        &branch,
        PasswordRequest {
            name: b.name,
            role: b.role,
            ttl_seconds: b.ttl,
            cidrs: b.cidrs,
        },
    )?;
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    let e = edge(&st, &org, &db);
    Ok((
        StatusCode::CREATED,
        Json(views::password(&e, &np.password, &br, Some(np.plaintext))),
    ))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords/{id}", tag = "passwords",
    responses((status = 200, body = views::PasswordView), (status = 404, body = ApiError)))]
pub async fn get_password(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<Json<views::PasswordView>> {
    let (p, b) = st.platform.password(&c, &org, &db, &branch, &id)?;
    Ok(Json(views::password(&edge(&st, &org, &db), &p, &b, None)))
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords/{id}", tag = "passwords",
    request_body = UpdatePassword, responses((status = 200, body = views::PasswordView), (status = 404, body = ApiError)))]
pub async fn update_password(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
    Body(b): Body<UpdatePassword>,
) -> ApiResult<Json<views::PasswordView>> {
    let (p, br) = st.platform.update_password(
        &c,
        &org,
        &db,
        &branch,
        &id,
        PasswordUpdate {
            name: b.name,
            cidrs: b.cidrs,
        },
    )?;
    Ok(Json(views::password(&edge(&st, &org, &db), &p, &br, None)))
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords/{id}", tag = "passwords",
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete_password(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<StatusCode> {
    st.platform.delete_password(&c, &org, &db, &branch, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords/{id}/renew", tag = "passwords",
    responses((status = 200, body = views::PasswordView), (status = 422, body = ApiError)))]
pub async fn renew_password(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<Json<views::PasswordView>> {
    let (p, b) = st.platform.renew_password(&c, &org, &db, &branch, &id)?;
    Ok(Json(views::password(&edge(&st, &org, &db), &p, &b, None)))
}

/// One object of a branch schema, as PlanetScale's get_branch_schema returns it.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SchemaEntry {
    pub name: String,
    /// The CREATE statement.
    pub raw: String,
    /// The same, HTML-escaped in a `<pre>` block.
    pub html: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SchemaList {
    pub data: Vec<SchemaEntry>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/schema", tag = "branches",
    responses((status = 200, body = SchemaList), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn get_branch_schema(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<SchemaList>> {
    let objects = st.platform.branch_schema(&c, &org, &db, &branch).await?;
    let data = objects
        .into_iter()
        .map(|o| {
            let raw = strata_control::Platform::shown_statement(&o);
            SchemaEntry {
                html: format!("<pre>{}</pre>", html_escape(&raw)),
                name: o.name,
                raw,
            }
        })
        .collect();
    Ok(Json(SchemaList { data }))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/diff", tag = "branches",
    responses((status = 200, body = SchemaList), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn get_branch_diff(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<SchemaList>> {
    let changes = st.platform.branch_diff(&c, &org, &db, &branch).await?;
    let mut data: Vec<SchemaEntry> = Vec::new();
    for ch in changes {
        match data.iter_mut().find(|e| e.name == ch.object) {
            Some(e) => e.raw.push_str(&format!(";\n{}", ch.statement)),
            None => data.push(SchemaEntry {
                name: ch.object,
                raw: ch.statement,
                html: String::new(),
            }),
        }
    }
    for e in &mut data {
        e.raw.push(';');
        e.html = format!("<pre>{}</pre>", html_escape(&e.raw));
    }
    Ok(Json(SchemaList { data }))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/schema/lint", tag = "branches",
    responses((status = 200, body = Page<views::LintView>), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn lint_branch_schema(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::LintView>>> {
    let (page, per) = q.parse()?;
    let findings = st.platform.branch_lint(&c, &org, &db, &branch).await?;
    let list = findings.into_iter().map(|f| views::lint(&db, f)).collect();
    let url = list_url(
        &st,
        &format!("organizations/{org}/databases/{db}/branches/{branch}/schema/lint"),
    );
    Ok(Json(views::page(list, page, per, &url)))
}

// ------------------------------------------------------------------ deploy requests

type OrgDbNumber = Path<(String, String, i64)>;

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateDeployRequest {
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[a-z0-9][a-z0-9_-]{0,63}$"
    )]
    pub branch: Option<String>,
    /// Defaults to the branch's parent, else the database's default branch.
    pub into_branch: Option<String>,
    pub notes: Option<String>,
    /// Cut over as soon as in sync; false makes a gated deploy. Defaults to the previous request's.
    pub auto_cutover: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct QueueDeployRequest {
    /// Apply every change with ALGORITHM=INSTANT (not revertable).
    pub instant_ddl: Option<bool>,
    /// `serial` (the only strategy: tables are copied one after another).
    #[schema(schema_with = crate::contract::deploy_strategy)]
    pub strategy: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateAutoApply {
    #[schema(required = true, nullable = false)]
    pub enable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateThrottler {
    /// 0 (no throttling) to 95.
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 0, maximum = 95)]
    pub ratio: Option<i64>,
    /// PlanetScale's per-keyspace form: the first entry's ratio is used.
    pub configurations: Option<Vec<ThrottlerConfiguration>>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct ThrottlerConfiguration {
    pub keyspace_name: Option<String>,
    #[serde(deserialize_with = "crate::contract::whole")]
    #[schema(minimum = 0, maximum = 95)]
    pub ratio: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThrottlerConfigurations {
    pub keyspaces: Vec<String>,
    pub configurable: bool,
    pub configurations: Vec<ThrottlerConfiguration>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateDeployRequest {
    /// Only `closed`.
    #[schema(required = true, schema_with = crate::contract::close_state)]
    pub state: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateReview {
    /// `approve` or `comment`.
    #[schema(required = true, schema_with = crate::contract::review_state)]
    pub state: Option<String>,
    pub body: Option<String>,
}

/// The list's filters, as PlanetScale's: `pscale deploy-request show <db> <branch>` finds a
/// branch's open request with `?branch=<name>&state=open`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct DeployRequestFilter {
    /// `open` or `closed`.
    #[param(schema_with = crate::contract::request_state)]
    pub state: Option<String>,
    /// Only requests from this branch.
    pub branch: Option<String>,
    /// Only requests into this branch.
    pub into_branch: Option<String>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests", tag = "deploy requests",
    params(DeployRequestFilter),
    responses((status = 200, body = Page<views::DeployRequestView>), (status = 422, body = ApiError)))]
pub async fn list_deploy_requests(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Query(q): Query<PageQuery>,
    Query(f): Query<DeployRequestFilter>,
) -> ApiResult<Json<Page<views::DeployRequestView>>> {
    let (page, per) = q.parse()?;
    if let Some(s) = f.state.as_deref() {
        if s != "open" && s != "closed" {
            return Err(ApiError::invalid("state must be `open` or `closed`"));
        }
    }
    let list = st
        .platform
        .deploy_requests(&c, &org, &db)
        .await?
        .iter()
        .map(|s| views::deploy_request(&st.api_url, &org, &db, s))
        .filter(|v| {
            f.state.as_deref().is_none_or(|s| v.state == s)
                && f.branch.as_deref().is_none_or(|b| v.branch == b)
                && f.into_branch.as_deref().is_none_or(|b| v.into_branch == b)
        })
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(
            &st,
            &format!("organizations/{org}/databases/{db}/deploy-requests"),
        ),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests", tag = "deploy requests",
    request_body = CreateDeployRequest,
    responses((status = 201, body = views::DeployRequestView), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Body(b): Body<CreateDeployRequest>,
) -> ApiResult<(StatusCode, Json<views::DeployRequestView>)> {
    let branch = b
        .branch
        .filter(|x| !x.is_empty())
        .ok_or_else(|| ApiError::invalid("branch is required"))?;
    let s = st
        .platform
        .create_deploy_request(
            &c,
            &org,
            &db,
            strata_control::NewDeployRequest {
                branch,
                into: b.into_branch.filter(|x| !x.is_empty()),
                notes: b.notes,
                auto_cutover: b.auto_cutover,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(views::deploy_request(&st.api_url, &org, &db, &s)),
    ))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 404, body = ApiError)))]
pub async fn get_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> ApiResult<Json<views::DeployRequestView>> {
    let s = st.platform.deploy_request(&c, &org, &db, number).await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}", tag = "deploy requests",
    request_body = UpdateDeployRequest, responses((status = 200, body = views::DeployRequestView), (status = 404, body = ApiError)))]
pub async fn close_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Body(b): Body<UpdateDeployRequest>,
) -> ApiResult<Json<views::DeployRequestView>> {
    match b.state.as_deref() {
        Some("closed") => {}
        other => {
            return Err(ApiError::invalid(format!(
                "state must be \"closed\" (got {other:?})"
            )))
        }
    }
    let s = st
        .platform
        .close_deploy_request(&c, &org, &db, number)
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/diff", tag = "deploy requests",
    responses((status = 200, body = SchemaList), (status = 404, body = ApiError)))]
pub async fn get_deploy_request_diff(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> ApiResult<Json<SchemaList>> {
    let s = st.platform.deploy_request(&c, &org, &db, number).await?;
    Ok(Json(schema_list(s.changes)))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/reviews", tag = "deploy requests",
    responses((status = 200, body = Page<views::ReviewView>)))]
pub async fn list_reviews(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::ReviewView>>> {
    let (page, per) = q.parse()?;
    let list = st
        .platform
        .deploy_request_reviews(&c, &org, &db, number)?
        .iter()
        .map(views::review)
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(
            &st,
            &format!("organizations/{org}/databases/{db}/deploy-requests/{number}/reviews"),
        ),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/reviews", tag = "deploy requests",
    request_body = CreateReview, responses((status = 201, body = views::ReviewView), (status = 422, body = ApiError)))]
pub async fn review_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Body(b): Body<CreateReview>,
) -> ApiResult<(StatusCode, Json<views::ReviewView>)> {
    let state = b
        .state
        .ok_or_else(|| ApiError::invalid("state (approve or comment) is required"))?;
    let r = st
        .platform
        .review_deploy_request(&c, &org, &db, number, &state, b.body)
        .await?;
    Ok((StatusCode::CREATED, Json(views::review(&r))))
}

/// Changes grouped per object, as PlanetScale's diff endpoints answer.
fn schema_list(changes: Vec<strata_schema::Change>) -> SchemaList {
    let mut data: Vec<SchemaEntry> = Vec::new();
    for ch in changes {
        match data.iter_mut().find(|e| e.name == ch.object) {
            Some(e) => e.raw.push_str(&format!(";\n{}", ch.statement)),
            None => data.push(SchemaEntry {
                name: ch.object,
                raw: ch.statement,
                html: String::new(),
            }),
        }
    }
    for e in &mut data {
        e.raw.push(';');
        e.html = format!("<pre>{}</pre>", html_escape(&e.raw));
    }
    SchemaList { data }
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/rebase", tag = "branches",
    responses((status = 200, body = views::BranchView), (status = 422, body = ApiError)))]
pub async fn rebase_branch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
) -> ApiResult<Json<views::BranchView>> {
    let b = st.platform.rebase_branch(&c, &org, &db, &branch).await?;
    Ok(Json(views::branch(
        &edge(&st, &org, &db),
        &b,
        st.platform.instance_status(&b.id),
    )))
}

type DrResult = ApiResult<Json<views::DeployRequestView>>;

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/deploy", tag = "deploy requests",
    request_body = QueueDeployRequest,
    responses((status = 200, body = views::DeployRequestView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn queue_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Body(b): Body<QueueDeployRequest>,
) -> DrResult {
    match b.strategy.as_deref() {
        None | Some("") | Some("serial") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "strategy must be \"serial\" (got \"{other}\")"
            )))
        }
    }
    let s = st
        .platform
        .deploy_deploy_request(&c, &org, &db, number, b.instant_ddl.unwrap_or(false))
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/apply-deploy", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 422, body = ApiError)))]
pub async fn apply_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> DrResult {
    let s = st
        .platform
        .apply_deploy_request(&c, &org, &db, number)
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/cancel", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 422, body = ApiError)))]
pub async fn cancel_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> DrResult {
    let s = st
        .platform
        .cancel_deploy_request(&c, &org, &db, number)
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/revert", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 422, body = ApiError)))]
pub async fn revert_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> DrResult {
    let s = st
        .platform
        .revert_deploy_request(&c, &org, &db, number)
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/skip-revert", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 422, body = ApiError)))]
pub async fn skip_revert_period(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> DrResult {
    let s = st.platform.skip_revert(&c, &org, &db, number).await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/force-cutover", tag = "deploy requests",
    responses((status = 200, body = views::DeployRequestView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn force_cutover_deploy_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> DrResult {
    let s = st.platform.force_cutover(&c, &org, &db, number).await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(put, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/auto-apply", tag = "deploy requests",
    request_body = UpdateAutoApply,
    responses((status = 200, body = views::DeployRequestView), (status = 400, body = ApiError)))]
pub async fn update_auto_apply(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Body(b): Body<UpdateAutoApply>,
) -> DrResult {
    let on = b
        .enable
        .ok_or_else(|| ApiError::invalid("enable (true or false) is required"))?;
    let s = st
        .platform
        .set_auto_apply(&c, &org, &db, number, on)
        .await?;
    Ok(Json(views::deploy_request(&st.api_url, &org, &db, &s)))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/deployment", tag = "deploy requests",
    responses((status = 200, body = views::DeploymentView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn get_deployment(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> ApiResult<Json<views::DeploymentView>> {
    let d = st.platform.deployment(&c, &org, &db, number)?;
    let note = st.platform.queue_note(&d);
    Ok(Json(views::deployment(&d, note)))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-queue", tag = "deploy requests",
    responses((status = 200, body = Page<views::DeploymentView>)))]
pub async fn get_deploy_queue(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::DeploymentView>>> {
    let (page, per) = q.parse()?;
    let list = st
        .platform
        .deploy_queue(&c, &org, &db)?
        .iter()
        .map(|d| views::deployment(d, st.platform.queue_note(d)))
        .collect();
    Ok(Json(views::page(
        list,
        page,
        per,
        &list_url(
            &st,
            &format!("organizations/{org}/databases/{db}/deploy-queue"),
        ),
    )))
}

fn throttler(ratio: i64) -> ThrottlerConfigurations {
    ThrottlerConfigurations {
        keyspaces: Vec::new(),
        configurable: true,
        configurations: vec![ThrottlerConfiguration {
            keyspace_name: None,
            ratio,
        }],
    }
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/throttler", tag = "databases",
    responses((status = 200, body = ThrottlerConfigurations), (status = 404, body = ApiError)))]
pub async fn get_database_throttler(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
) -> ApiResult<Json<ThrottlerConfigurations>> {
    Ok(Json(throttler(
        st.platform.database_throttle(&c, &org, &db)?,
    )))
}

/// The database's deploy throttle: every deployment queued from now on starts with it.
#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/throttler", tag = "databases",
    request_body = UpdateThrottler,
    responses((status = 200, body = ThrottlerConfigurations), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_database_throttler(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Body(b): Body<UpdateThrottler>,
) -> ApiResult<Json<ThrottlerConfigurations>> {
    let Some(ratio) = throttle_ratio(b)? else {
        // Nothing to change (PlanetScale's fields are both optional): the settings as they are.
        return Ok(Json(throttler(
            st.platform.database_throttle(&c, &org, &db)?,
        )));
    };
    Ok(Json(throttler(
        st.platform.set_database_throttle(&c, &org, &db, ratio)?,
    )))
}

/// The ratio a body sets: `ratio`, else the first of PlanetScale's per-keyspace `configurations`
/// (every ratio given is checked, used or not).
fn throttle_ratio(b: UpdateThrottler) -> ApiResult<Option<i64>> {
    let given = b.configurations.iter().flatten().map(|c| c.ratio);
    if let Some(bad) = b
        .ratio
        .into_iter()
        .chain(given)
        .find(|r| !(0..=95).contains(r))
    {
        return Err(ApiError::invalid(format!(
            "throttle ratio {bad} is out of range: use 0 (no throttling) to 95"
        )));
    }
    Ok(b.ratio
        .or_else(|| b.configurations.and_then(|c| c.first().map(|c| c.ratio))))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/throttler", tag = "deploy requests",
    responses((status = 200, body = ThrottlerConfigurations), (status = 422, body = ApiError)))]
pub async fn get_deploy_request_throttler(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
) -> ApiResult<Json<ThrottlerConfigurations>> {
    let d = st.platform.deployment(&c, &org, &db, number)?;
    Ok(Json(throttler(d.throttle_ratio)))
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/deploy-requests/{number}/throttler", tag = "deploy requests",
    request_body = UpdateThrottler,
    responses((status = 200, body = ThrottlerConfigurations), (status = 400, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_deploy_request_throttler(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, number)): OrgDbNumber,
    Body(b): Body<UpdateThrottler>,
) -> ApiResult<Json<ThrottlerConfigurations>> {
    let d = match throttle_ratio(b)? {
        Some(ratio) => st
            .platform
            .set_deploy_throttle(&c, &org, &db, number, ratio)?,
        None => st.platform.deployment(&c, &org, &db, number)?,
    };
    Ok(Json(throttler(d.throttle_ratio)))
}

// ------------------------------------------------------------------ backups

fn backup_view(
    st: &AppState,
    b: &strata_catalog::Backup,
    branch: &strata_catalog::Branch,
) -> views::BackupView {
    let restored = st.platform.restored_branches(&b.id).unwrap_or_default();
    let policy = st.platform.policy_of(b);
    views::backup(b, branch, &restored, policy.as_ref())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateBackup {
    #[schema(pattern = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub name: Option<String>,
    /// `hour`, `day`, `week`, `month` or `year` (also `minute`, `second`).
    #[schema(schema_with = crate::contract::time_unit)]
    pub retention_unit: Option<String>,
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub retention_value: Option<i64>,
    /// Accepted for compatibility; every backup runs at once.
    #[allow(dead_code)]
    pub emergency: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BackupListQuery {
    pub page: Option<String>,
    pub per_page: Option<String>,
    /// Only backups in this state.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups", tag = "backups",
    params(("state" = Option<String>, Query, description = "only backups in this state: pending, running, success, failed or canceled",
        pattern = "^(pending|running|success|failed|canceled)$")),
    responses((status = 200, body = Page<views::BackupView>), (status = 404, body = ApiError)))]
pub async fn list_backups(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Query(q): Query<BackupListQuery>,
) -> ApiResult<Json<Page<views::BackupView>>> {
    let (page, per) = PageQuery {
        page: q.page,
        per_page: q.per_page,
    }
    .parse()?;
    if let Some(s) = q.state.as_deref() {
        if strata_catalog::BackupState::parse(s).is_none() {
            return Err(ApiError::invalid(format!(
                "state must be one of pending, running, success, failed, canceled (got '{s}')"
            )));
        }
    }
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    let list = st
        .platform
        .backups(&c, &org, &db, &branch)?
        .iter()
        .filter(|b| q.state.as_deref().is_none_or(|s| b.state.as_str() == s))
        .map(|b| backup_view(&st, b, &br))
        .collect();
    let url = list_url(
        &st,
        &format!("organizations/{org}/databases/{db}/branches/{branch}/backups"),
    );
    Ok(Json(views::page(list, page, per, &url)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups", tag = "backups",
    request_body = CreateBackup,
    responses((status = 201, body = views::BackupView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_backup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch)): OrgDbBranch,
    Body(b): Body<CreateBackup>,
) -> ApiResult<(StatusCode, Json<views::BackupView>)> {
    let bk = st.platform.create_backup(
        &c,
        &org,
        &db,
        &branch,
        BackupRequest {
            name: b.name,
            retention_value: b.retention_value,
            retention_unit: b.retention_unit,
        },
    )?;
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    Ok((StatusCode::CREATED, Json(backup_view(&st, &bk, &br))))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups/{id}", tag = "backups",
    responses((status = 200, body = views::BackupView), (status = 404, body = ApiError)))]
pub async fn get_backup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<Json<views::BackupView>> {
    let bk = st.platform.backup(&c, &org, &db, &branch, &id)?;
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    Ok(Json(backup_view(&st, &bk, &br)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateBackup {
    /// A protected backup is never deleted by retention, nor by a delete call.
    pub protected: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups/{id}", tag = "backups",
    request_body = UpdateBackup,
    responses((status = 200, body = views::BackupView), (status = 404, body = ApiError)))]
pub async fn update_backup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
    Body(b): Body<UpdateBackup>,
) -> ApiResult<Json<views::BackupView>> {
    let bk = st
        .platform
        .update_backup(&c, &org, &db, &branch, &id, b.protected)?;
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    Ok(Json(backup_view(&st, &bk, &br)))
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups/{id}", tag = "backups",
    responses((status = 204), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn delete_backup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<StatusCode> {
    st.platform
        .delete_backup(&c, &org, &db, &branch, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/branches/{branch}/backups/{id}/validate", tag = "backups",
    responses((status = 202, body = views::BackupView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn validate_backup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, branch, id)): OrgDbBranchId,
) -> ApiResult<(StatusCode, Json<views::BackupView>)> {
    let bk = st.platform.revalidate_backup(&c, &org, &db, &branch, &id)?;
    let br = st.platform.branch(&c, &org, &db, &branch)?;
    Ok((StatusCode::ACCEPTED, Json(backup_view(&st, &bk, &br))))
}

// ------------------------------------------------------------------ backup policies

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct BackupPolicyBody {
    #[schema(pattern = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub name: Option<String>,
    /// `production` or `development`.
    #[schema(schema_with = crate::contract::policy_target)]
    pub target: Option<String>,
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub retention_value: Option<i64>,
    #[schema(schema_with = crate::contract::time_unit)]
    pub retention_unit: Option<String>,
    #[serde(default, deserialize_with = "crate::contract::whole_number")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub frequency_value: Option<i64>,
    #[schema(schema_with = crate::contract::time_unit)]
    pub frequency_unit: Option<String>,
}

impl From<BackupPolicyBody> for PolicyRequest {
    fn from(b: BackupPolicyBody) -> Self {
        PolicyRequest {
            name: b.name,
            target: b.target,
            frequency_value: b.frequency_value,
            frequency_unit: b.frequency_unit,
            retention_value: b.retention_value,
            retention_unit: b.retention_unit,
        }
    }
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/backup-policies", tag = "backups",
    responses((status = 200, body = Page<views::BackupPolicyView>)))]
pub async fn list_backup_policies(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<views::BackupPolicyView>>> {
    let (page, per) = q.parse()?;
    let list = st
        .platform
        .backup_policies(&c, &org, &db)?
        .iter()
        .map(views::backup_policy)
        .collect();
    let url = list_url(
        &st,
        &format!("organizations/{org}/databases/{db}/backup-policies"),
    );
    Ok(Json(views::page(list, page, per, &url)))
}

#[utoipa::path(post, path = "/v1/organizations/{organization}/databases/{database}/backup-policies", tag = "backups",
    request_body = BackupPolicyBody,
    responses((status = 201, body = views::BackupPolicyView), (status = 422, body = ApiError)))]
pub async fn create_backup_policy(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db)): OrgDb,
    Body(b): Body<BackupPolicyBody>,
) -> ApiResult<(StatusCode, Json<views::BackupPolicyView>)> {
    let p = st.platform.create_backup_policy(&c, &org, &db, b.into())?;
    Ok((StatusCode::CREATED, Json(views::backup_policy(&p))))
}

#[utoipa::path(get, path = "/v1/organizations/{organization}/databases/{database}/backup-policies/{id}", tag = "backups",
    responses((status = 200, body = views::BackupPolicyView), (status = 404, body = ApiError)))]
pub async fn get_backup_policy(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, id)): Path<(String, String, String)>,
) -> ApiResult<Json<views::BackupPolicyView>> {
    let p = st.platform.backup_policy(&c, &org, &db, &id)?;
    Ok(Json(views::backup_policy(&p)))
}

#[utoipa::path(patch, path = "/v1/organizations/{organization}/databases/{database}/backup-policies/{id}", tag = "backups",
    request_body = BackupPolicyBody,
    responses((status = 200, body = views::BackupPolicyView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_backup_policy(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, id)): Path<(String, String, String)>,
    Body(b): Body<BackupPolicyBody>,
) -> ApiResult<Json<views::BackupPolicyView>> {
    let p = st
        .platform
        .update_backup_policy(&c, &org, &db, &id, b.into())?;
    Ok(Json(views::backup_policy(&p)))
}

#[utoipa::path(delete, path = "/v1/organizations/{organization}/databases/{database}/backup-policies/{id}", tag = "backups",
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete_backup_policy(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((org, db, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    st.platform.delete_backup_policy(&c, &org, &db, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
