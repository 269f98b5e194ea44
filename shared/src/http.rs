//! What the two HTTP functions (orders_api, partner_api) share: the error body every endpoint
//! answers with, and running an axum router on an API Gateway v2 event exactly as lambda_http does.

use crate::StepError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// `{"error": {"code", "message", "field"?}}` with a stable code.
pub fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(f) = field {
        e["field"] = json!(f);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

/// The largest request body any endpoint reads (#10 item 7): a webhook, a receipt, a return report
/// and every other route answer a larger one 413 `payload_too_large` before a handler sees it.
/// Endpoints with a tighter limit of their own (POST /orders 64 KB, returns 16 KB) check it too.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// A router layer: read the body up to MAX_REQUEST_BYTES, or answer 413 in the API's error shape.
pub async fn body_cap(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &format!("the body is larger than {} KB", MAX_REQUEST_BYTES / 1024), None),
    }
}

/// Feed an API Gateway (HTTP API v2) event through the router exactly as lambda_http does on AWS.
/// The local stack uses this so its HTTP port exercises the same event shape and conversion.
pub async fn invoke_apigw(router: Router, payload: Value) -> Result<Value, StepError> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request: lambda_http::request::LambdaRequest =
        serde_json::from_value(payload).map_err(|e| StepError::InvalidInput(format!("not an API Gateway event: {e}")))?;
    // The same conversion lambda_http::run applies on AWS (event -> http::Request).
    let http_request: lambda_http::Request = request.into();
    let response = router.oneshot(http_request).await.map_err(|e| StepError::Internal(format!("router: {e:?}")))?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(|e| StepError::Internal(format!("response body: {e}")))?.to_bytes();
    let headers: serde_json::Map<String, Value> = parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or("")))).collect();
    Ok(json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "body": String::from_utf8_lossy(&bytes),
        "isBase64Encoded": false
    }))
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Compare secrets in time independent of where they differ.
pub fn const_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Operator requests carry the operator token (read from Secrets Manager on first use). Err is the
/// answer to send: 401, or 503 while the token cannot be read.
pub async fn ops_authorized(token: &crate::secrets::SecretSource, headers: &axum::http::HeaderMap) -> Result<(), Response> {
    let expected = match token.get().await {
        Ok(t) => t,
        Err(_) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "temporarily unavailable; retry", None)),
    };
    if !expected.expose().is_empty() && bearer(headers).is_some_and(|t| const_eq(t, expected.expose())) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "operator token required", None))
    }
}

/// A failure of ours, never the client's: 503 when a retry can succeed, else 500; the detail is
/// logged, never answered.
pub fn internal(e: StepError, retry_hint: &str) -> Response {
    tracing::error!(error_type = e.error_type(), error = %e, "request failed");
    match e {
        StepError::Retryable(_) => error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", &format!("please retry{retry_hint}"), None),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", &format!("something went wrong on our side; retry{retry_hint}"), None),
    }
}
