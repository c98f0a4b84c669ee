//! Strata's REST API, `/v1`, shaped like PlanetScale's so that its clients work: the same paths,
//! status codes, object fields, page envelope and `{"code","message"}` errors. Every route but the
//! OpenAPI document and the health check needs a service token, sent as PlanetScale sends it:
//! `Authorization: <token id>:<token>`.

mod contract;
mod error;
mod extract;
mod routes;
pub mod views;

pub use error::ApiError;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::sync::Arc;
use strata_control::Platform;
use utoipa::OpenApi;

#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
    /// The API's public base URL, without a trailing slash (for `url` fields).
    pub api_url: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Strata API", description = "Databases, branches and passwords; PlanetScale-compatible paths and shapes."),
    paths(
        routes::list_organizations, routes::get_organization,
        routes::list_service_tokens, routes::create_service_token, routes::get_service_token, routes::delete_service_token,
        routes::list_databases, routes::create_database, routes::get_database, routes::update_database, routes::delete_database,
        routes::list_branches, routes::create_branch, routes::get_branch, routes::delete_branch,
        routes::promote_branch, routes::demote_branch, routes::get_branch_schema, routes::get_branch_diff, routes::rebase_branch, routes::lint_branch_schema,
        routes::list_deploy_requests, routes::create_deploy_request, routes::get_deploy_request, routes::close_deploy_request,
        routes::get_deploy_request_diff, routes::list_reviews, routes::review_deploy_request,
        routes::queue_deploy_request, routes::apply_deploy_request, routes::cancel_deploy_request,
        routes::revert_deploy_request, routes::skip_revert_period, routes::force_cutover_deploy_request, routes::update_auto_apply,
        routes::get_deployment, routes::get_deploy_queue, routes::get_deploy_request_throttler,
        routes::update_deploy_request_throttler, routes::get_database_throttler, routes::update_database_throttler,
        routes::enable_safe_migrations, routes::update_safe_migrations, routes::disable_safe_migrations,
        routes::list_database_passwords, routes::list_passwords, routes::create_password, routes::get_password,
        routes::update_password, routes::delete_password, routes::renew_password,
        routes::list_backups, routes::create_backup, routes::get_backup, routes::update_backup,
        routes::delete_backup, routes::validate_backup, routes::list_backup_policies,
        routes::create_backup_policy, routes::get_backup_policy, routes::update_backup_policy,
        routes::delete_backup_policy,
    ),
    components(schemas(ApiError)),
    modifiers(&ServiceTokenAuth, &PathParameters),
)]
pub struct ApiDoc;

/// Declares each operation's path parameters from its path (`{organization}`, `{number}`, …) and
/// the errors every call can meet (401 without a valid token; 404 for a path naming something that
/// is not there), so the document is exact without repeating them on sixty handlers.
struct PathParameters;
impl utoipa::Modify for PathParameters {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Required, ResponseBuilder};
        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ApiError")))
                            .build(),
                    )
                    .build(),
            )
        };
        // Request bodies whose every field is optional may be left out (an empty body means the
        // defaults); the others are required.
        let optional_bodies: Vec<String> = api
            .components
            .as_ref()
            .map(|c| {
                c.schemas
                    .iter()
                    .filter(|(_, s)| match s {
                        RefOr::T(utoipa::openapi::Schema::Object(o)) => o.required.is_empty(),
                        _ => false,
                    })
                    .map(|(name, _)| format!("#/components/schemas/{name}"))
                    .collect()
            })
            .unwrap_or_default();
        for (path, item) in api.paths.paths.iter_mut() {
            let names: Vec<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_string)
                .collect();
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    let declared = params
                        .iter()
                        .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
                    if declared {
                        continue;
                    }
                    let (ty, description) = path_parameter(name);
                    let mut schema = ObjectBuilder::new().schema_type(ty.clone());
                    if ty == utoipa::openapi::Type::Integer {
                        schema = schema
                            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                utoipa::openapi::KnownFormat::Int64,
                            )))
                            .minimum(Some(1))
                            .maximum(Some(MAX_JSON_INTEGER));
                    }
                    params.push(
                        ParameterBuilder::new()
                            .name(name)
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .description(Some(description))
                            .schema(Some(schema))
                            .build(),
                    );
                }
                if let Some(body) = op.request_body.as_mut() {
                    let optional = body.content.values().all(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if optional_bodies.contains(&r.ref_location))
                    });
                    body.required = Some(if optional {
                        Required::False
                    } else {
                        Required::True
                    });
                }
                let responses = &mut op.responses.responses;
                responses.entry("400".into()).or_insert_with(|| {
                    error("The request cannot be read: a body that is not JSON of this call's shape, or a parameter of the wrong type")
                });
                responses.entry("422".into()).or_insert_with(|| {
                    error("A value is not acceptable (the message says which and why)")
                });
                responses.entry("401".into()).or_insert_with(|| {
                    error("No valid service token (`Authorization: <id>:<token>`)")
                });
                if !names.is_empty() {
                    responses.entry("404".into()).or_insert_with(|| {
                        error("What the path names does not exist, or the token may not see it")
                    });
                }
            }
        }
    }
}

/// The largest integer a JSON document states exactly (2^53 − 1): i64::MAX would print rounded up.
const MAX_JSON_INTEGER: i64 = (1 << 53) - 1;

/// The type and meaning of a path parameter, by name.
fn path_parameter(name: &str) -> (utoipa::openapi::Type, &'static str) {
    use utoipa::openapi::Type;
    match name {
        "organization" => (Type::String, "The organization's name"),
        "database" => (Type::String, "The database's name"),
        "branch" => (Type::String, "The branch's name"),
        "number" => (Type::Integer, "The deploy request's number"),
        "id" => (Type::String, "The object's id"),
        _ => (Type::String, "Names the object the call is about"),
    }
}

struct ServiceTokenAuth;
impl utoipa::Modify for ServiceTokenAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`<service token id>:<service token>`",
            ))),
        );
        api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "service_token",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document of this API (served at `/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn authenticate(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized("a service token is required: send 'Authorization: <id>:<token>'")
        })?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    let (id, token) = value.trim().split_once(':').ok_or_else(|| {
        unauthorized("the Authorization header must be '<service token id>:<service token>'")
    })?;
    let caller = st.platform.authenticate(id.trim(), token.trim())?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Turns any error answer that is not already JSON (an unknown path, a wrong method, a bad path
/// parameter) into the `{"code","message"}` shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            if text.is_empty() {
                "Not Found".to_string()
            } else {
                text
            },
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This method is not allowed on this path".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("bad_request", text),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("bad_request", "The request body is too large".to_string())
        }
        s if s.is_server_error() => ("internal_error", text),
        _ => ("bad_request", text),
    };
    ApiError::new(status, code, message).into_response()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

async fn health(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "server": st.platform.server_description()}))
}

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    use routes::*;
    let org = "/v1/organizations/{organization}";
    let db = "/v1/organizations/{organization}/databases/{database}";
    let br = "/v1/organizations/{organization}/databases/{database}/branches/{branch}";
    let authed = Router::new()
        .route("/v1/organizations", get(list_organizations))
        .route(org, get(get_organization))
        .route(
            &format!("{org}/service-tokens"),
            get(list_service_tokens).post(create_service_token),
        )
        .route(
            &format!("{org}/service-tokens/{{id}}"),
            get(get_service_token).delete(delete_service_token),
        )
        .route(
            &format!("{org}/databases"),
            get(list_databases).post(create_database),
        )
        .route(
            db,
            get(get_database)
                .patch(update_database)
                .delete(delete_database),
        )
        .route(&format!("{db}/passwords"), get(list_database_passwords))
        .route(
            &format!("{db}/deploy-requests"),
            get(list_deploy_requests).post(create_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}"),
            get(get_deploy_request).patch(close_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/diff"),
            get(get_deploy_request_diff),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/reviews"),
            get(list_reviews).post(review_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/deploy"),
            post(queue_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/apply-deploy"),
            post(apply_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/cancel"),
            post(cancel_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/revert"),
            post(revert_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/skip-revert"),
            post(skip_revert_period),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/force-cutover"),
            post(force_cutover_deploy_request),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/auto-apply"),
            put(update_auto_apply),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/deployment"),
            get(get_deployment),
        )
        .route(
            &format!("{db}/deploy-requests/{{number}}/throttler"),
            get(get_deploy_request_throttler).patch(update_deploy_request_throttler),
        )
        .route(
            &format!("{db}/throttler"),
            get(get_database_throttler).patch(update_database_throttler),
        )
        .route(&format!("{db}/deploy-queue"), get(get_deploy_queue))
        .route(
            &format!("{db}/branches"),
            get(list_branches).post(create_branch),
        )
        .route(br, get(get_branch).delete(delete_branch))
        .route(&format!("{br}/schema"), get(get_branch_schema))
        .route(&format!("{br}/diff"), get(get_branch_diff))
        .route(&format!("{br}/rebase"), post(rebase_branch))
        .route(&format!("{br}/schema/lint"), get(lint_branch_schema))
        .route(&format!("{br}/promote"), post(promote_branch))
        .route(&format!("{br}/demote"), post(demote_branch))
        .route(
            &format!("{br}/safe-migrations"),
            post(enable_safe_migrations)
                .put(update_safe_migrations)
                .delete(disable_safe_migrations),
        )
        .route(
            &format!("{br}/passwords"),
            get(list_passwords).post(create_password),
        )
        .route(
            &format!("{br}/passwords/{{id}}"),
            get(get_password)
                .patch(update_password)
                .delete(delete_password),
        )
        .route(
            &format!("{br}/passwords/{{id}}/renew"),
            post(renew_password),
        )
        .route(
            &format!("{br}/backups"),
            get(list_backups).post(create_backup),
        )
        .route(
            &format!("{br}/backups/{{id}}"),
            get(get_backup).patch(update_backup).delete(delete_backup),
        )
        .route(
            &format!("{br}/backups/{{id}}/validate"),
            post(validate_backup),
        )
        .route(
            &format!("{db}/backup-policies"),
            get(list_backup_policies).post(create_backup_policy),
        )
        .route(
            &format!("{db}/backup-policies/{{id}}"),
            get(get_backup_policy)
                .patch(update_backup_policy)
                .delete(delete_backup_policy),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/healthz", get(health))
        .merge(authed)
        .fallback(|| async { ApiError::not_found("Not Found") })
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::map_response(
            |mut res: Response<AxumBody>| async move {
                res.headers_mut().insert(
                    "x-content-type-options",
                    HeaderValue::from_static("nosniff"),
                );
                res
            },
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    /// Every operation declares each parameter of its path, and the errors any call can meet.
    #[test]
    fn the_document_declares_every_path_parameter() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() > 30);
        for (path, item) in paths {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                for name in &names {
                    let p = params
                        .iter()
                        .find(|p| p["name"] == *name && p["in"] == "path")
                        .unwrap_or_else(|| panic!("{method} {path}: no path parameter {name}"));
                    assert_eq!(p["required"], true, "{method} {path} {name}");
                    let ty = if *name == "number" {
                        "integer"
                    } else {
                        "string"
                    };
                    assert_eq!(p["schema"]["type"], ty, "{method} {path} {name}");
                }
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
                if !names.is_empty() {
                    assert!(op["responses"]["404"].is_object(), "{method} {path}");
                }
            }
        }
    }
}
