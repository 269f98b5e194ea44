//! A stand-in for the AWS Parameters and Secrets Lambda Extension's HTTP interface
//! (`GET /secretsmanager/get?secretId=<arn>` with `X-Aws-Parameters-Secrets-Token: <the function's
//! session token>`). Like the extension, it calls Secrets Manager's GetSecretValue with the
//! function's own credentials: the request goes through the edge, which checks the function's
//! role, to moto's Secrets Manager, where provisioning stored the secrets. So a function gets only
//! the secrets its role may read, with Secrets Manager's answer (AccessDeniedException included)
//! passed on.

use crate::functions::Identity;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Extension {
    pub edge_url: String,
    /// Session token -> the function's credentials.
    pub sessions: BTreeMap<String, Identity>,
    pub http: reqwest::Client,
}

pub fn router(ext: Arc<Extension>) -> Router {
    Router::new().route("/secretsmanager/get", get(get_secret)).with_state(ext)
}

async fn get_secret(State(ext): State<Arc<Extension>>, headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let token = headers.get("x-aws-parameters-secrets-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(identity) = ext.sessions.get(token) else {
        // The extension refuses requests without the caller's session token.
        return (StatusCode::UNAUTHORIZED, "missing or unknown X-Aws-Parameters-Secrets-Token").into_response();
    };
    let Some(secret_id) = q.get("secretId").filter(|s| !s.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "secretId is required").into_response();
    };
    let resp = secretsmanager_request(&ext.http, &ext.edge_url, &identity.access_key_id, "GetSecretValue", serde_json::json!({"SecretId": secret_id}))
        .header("x-amz-security-token", &identity.session_token)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [("content-type", "application/json")], r.text().await.unwrap_or_default()).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("secrets manager unreachable: {e}")).into_response(),
    }
}

/// A Secrets Manager call in its JSON protocol, as the SDK sends it, from `access_key_id`.
pub fn secretsmanager_request(http: &reqwest::Client, url: &str, access_key_id: &str, operation: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("x-amz-target", format!("secretsmanager.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", sigv4_scope(access_key_id, "secretsmanager"))
        .body(body.to_string())
}

/// The credential scope of a SigV4 Authorization header: all the edge reads to know the caller
/// (moto does not verify signatures).
pub fn sigv4_scope(access_key_id: &str, service: &str) -> String {
    let day = chrono::Utc::now().format("%Y%m%d");
    format!("AWS4-HMAC-SHA256 Credential={access_key_id}/{day}/{}/{service}/aws4_request, SignedHeaders=host, Signature=local", crate::template::REGION)
}
