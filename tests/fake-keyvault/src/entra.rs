//! The Microsoft Entra token service (client credentials with a secret or a federated assertion,
//! OpenID discovery) and the managed-identity endpoints (IMDS and App Service style).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::seed::IdentityKind;
use crate::token::{Claims, LIFETIME_SECS};
use crate::{GrantMethod, Shared, TokenGrant, lock, now_unix};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Routes for every non-vault host on the HTTPS port.
pub(crate) fn login_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/common/discovery/instance", get(instance_discovery))
        .fallback(|| async {
            entra_error(
                StatusCode::NOT_FOUND,
                "invalid_request",
                90002,
                "this path is not an Entra endpoint this fake serves",
            )
        })
        .with_state(shared)
}

/// Routes of the plain-HTTP managed-identity port.
pub(crate) fn managed_identity_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", get(imds_token))
        .route("/msi/token", get(app_service_token))
        .with_state(shared)
}

/// Entra's OAuth error body: `error`, `error_description` (with the AADSTS code), `error_codes`.
fn entra_error(status: StatusCode, error: &str, code: u32, message: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {message}"),
        "error_codes": [code],
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "trace_id": crate::store::new_version(),
        "correlation_id": crate::store::new_version(),
    });
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn service_down() -> Response {
    entra_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        50196,
        "the token service is down (set_token_service_up(false))",
    )
}

/// `https://<host as requested>`, so discovery documents point back at this server.
fn authority(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("login.microsoftonline.com");
    format!("https://{host}")
}

async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !lock(&shared.knobs).token_service_up {
        return service_down();
    }
    if tenant != shared.tenant {
        return unknown_tenant(&tenant);
    }
    let base = format!("{}/{tenant}", authority(&headers));
    axum::Json(json!({
        "issuer": format!("{base}/v2.0"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "WW",
    }))
    .into_response()
}

async fn instance_discovery(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let authority = authority(&headers);
    let host = authority.trim_start_matches("https://");
    axum::Json(json!({
        "tenant_discovery_endpoint": format!("{authority}/{}/v2.0/.well-known/openid-configuration", shared.tenant),
        "api-version": "1.1",
        "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }],
    }))
    .into_response()
}

fn unknown_tenant(tenant: &str) -> Response {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant.
async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if !lock(&shared.knobs).token_service_up {
        return service_down();
    }
    if tenant != shared.tenant {
        return unknown_tenant(&tenant);
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |name: &str| {
        entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    match field("grant_type") {
        None => return missing("grant_type"),
        Some("client_credentials") => {}
        Some(other) => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!(
                    "The app requested an unsupported grant type '{other}'; this fake serves client_credentials."
                ),
            );
        }
    }
    let Some(client_id) = field("client_id") else {
        return missing("client_id");
    };
    let Some(scope) = field("scope") else {
        return missing("scope");
    };
    let Some(resource) = scope
        .split(' ')
        .next()
        .and_then(|s| s.strip_suffix("/.default"))
    else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let Some(identity) = shared.identities.iter().find(|i| i.client_id == client_id) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let method = match identity.kind() {
        IdentityKind::ClientSecret => {
            if field("client_secret").is_none() {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                );
            }
            if field("client_secret") != identity.client_secret.as_deref() {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                );
            }
            GrantMethod::ClientSecret
        }
        IdentityKind::Federated => {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return entra_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    7000218,
                    &format!(
                        "The request body must contain client_assertion_type={JWT_BEARER} and a client_assertion for app '{client_id}'."
                    ),
                );
            }
            if field("client_assertion") != identity.federated_token.as_deref() {
                return entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700213,
                    &format!(
                        "No matching federated identity record found for presented assertion for app '{client_id}'."
                    ),
                );
            }
            GrantMethod::ClientAssertion
        }
        IdentityKind::Managed => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "'{client_id}' is a managed identity; it gets tokens from the managed identity endpoint."
                ),
            );
        }
    };
    let claims = Claims::new(client_id, &shared.tenant, resource, now_unix());
    let access_token = shared.signer.issue(&claims);
    lock(&shared.grants).push(TokenGrant {
        identity: client_id.to_string(),
        method,
        scope: scope.to_string(),
    });
    tracing::info!(client_id, ?method, scope, "token issued");
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": LIFETIME_SECS,
            "ext_expires_in": LIFETIME_SECS,
            "access_token": access_token,
        })),
    )
        .into_response()
}

/// IMDS: `GET /metadata/identity/oauth2/token` with `Metadata: true`.
async fn imds_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    managed_identity_token(&shared, &query)
}

/// App Service: `GET /msi/token` with `X-IDENTITY-HEADER`.
async fn app_service_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(shared.identity_header.as_str())
    {
        return mi_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-IDENTITY-HEADER is missing or does not match (IDENTITY_HEADER)",
        );
    }
    managed_identity_token(&shared, &query)
}

fn mi_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn managed_identity_token(shared: &Shared, query: &HashMap<String, String>) -> Response {
    if !lock(&shared.knobs).token_service_up {
        return mi_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the token service is down",
        );
    }
    if query.get("api-version").is_none_or(|v| v.is_empty()) {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    for unsupported in ["object_id", "msi_res_id", "mi_res_id", "principal_id"] {
        if query.contains_key(unsupported) {
            return mi_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "this fake selects user-assigned identities by client_id only, not {unsupported}"
                ),
            );
        }
    }
    let client_id = query
        .get("client_id")
        .map(String::as_str)
        .unwrap_or("system");
    let known = shared
        .identities
        .iter()
        .any(|i| i.client_id == client_id && i.kind() == IdentityKind::Managed);
    if !known {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Identity not found: '{client_id}'"),
        );
    }
    let resource = resource.trim_end_matches('/');
    let now = now_unix();
    let claims = Claims::new(client_id, &shared.tenant, resource, now);
    let access_token = shared.signer.issue(&claims);
    lock(&shared.grants).push(TokenGrant {
        identity: client_id.to_string(),
        method: GrantMethod::ManagedIdentity,
        scope: format!("{resource}/.default"),
    });
    tracing::info!(client_id, resource, "managed identity token issued");
    let body: Value = json!({
        "access_token": access_token,
        "client_id": client_id,
        "expires_in": LIFETIME_SECS.to_string(),
        "ext_expires_in": LIFETIME_SECS.to_string(),
        "expires_on": (now + LIFETIME_SECS).to_string(),
        "not_before": claims.nbf.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    axum::Json(body).into_response()
}
