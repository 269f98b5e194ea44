//! The orders API on a local port, the way API Gateway (HTTP API, payload format 2.0) fronts it:
//! each HTTP request becomes the same JSON event the function receives on AWS, goes through the
//! Lambda Invoke path of the edge, and the function's response event becomes the HTTP response.

use crate::edge::Edge;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// (path template segments, function) from infra/openapi.yaml's integrations, so the local API
/// routes exactly as API Gateway would.
pub type Routes = Arc<Vec<(Vec<String>, String)>>;

pub fn routes(openapi: &std::path::Path, template: &crate::template::Template) -> Result<Routes, String> {
    let text = std::fs::read_to_string(openapi).map_err(|e| format!("{}: {e}", openapi.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", openapi.display()))?;
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_mapping().ok_or("openapi: no paths")? {
        let path = path.as_str().unwrap_or_default();
        for (_, op) in ops.as_mapping().into_iter().flatten() {
            let uri = op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"].as_str().unwrap_or_default();
            let logical = uri
                .split("${")
                .find(|r| r.contains(".Arn}"))
                .and_then(|r| r.split(".Arn}").next())
                .ok_or_else(|| format!("openapi {path}: no function in the integration uri"))?;
            let binary = template.function_binary(logical).ok_or_else(|| format!("openapi {path}: {logical} is not a function of the template"))?;
            out.push((path.trim_matches('/').split('/').map(String::from).collect(), binary));
        }
    }
    Ok(Arc::new(out))
}

fn function_for(routes: &Routes, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    routes.iter().find(|(tpl, _)| tpl.len() == segs.len() && tpl.iter().zip(&segs).all(|(t, s)| t.starts_with('{') || t == s)).map(|(_, f)| f.clone())
}

pub fn router(edge: Arc<Edge>, routes: Routes) -> Router {
    Router::new().fallback(handle).with_state((edge, routes))
}

pub fn to_event(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut h = Map::new();
    for (k, v) in headers {
        let v = v.to_str().unwrap_or("").to_string();
        let key = k.as_str().to_ascii_lowercase();
        let merged = match h.get(&key).and_then(|x| x.as_str()) {
            Some(prev) => format!("{prev},{v}"),
            None => v,
        };
        h.insert(key, json!(merged));
    }
    let now = chrono::Utc::now();
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut ev = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": h,
        "requestContext": {
            "accountId": crate::provision::ACCOUNT, "apiId": "local", "domainName": headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost"),
            "domainPrefix": "local",
            "http": {"method": method.as_str(), "path": uri.path(), "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("")},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(), "timeEpoch": now.timestamp_millis()
        },
        "isBase64Encoded": b64
    });
    if !body.is_empty() {
        ev["body"] = json!(body);
    }
    ev
}

async fn handle(State((edge, routes)): State<(Arc<Edge>, Routes)>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(function) = function_for(&routes, uri.path()) else {
        // API Gateway's own answer to a route it does not have.
        return (StatusCode::NOT_FOUND, [("content-type", "application/json")], r#"{"message":"Not Found"}"#).into_response();
    };
    let event = to_event(&method, &uri, &headers, &body);
    match edge.invoke(&function, event).await {
        Ok(resp) => from_response_event(&resp),
        // API Gateway answers a function error with 500 {"message":"Internal Server Error"}.
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], r#"{"message":"Internal Server Error"}"#).into_response(),
    }
}

pub fn from_response_event(resp: &Value) -> Response {
    let status = resp["statusCode"].as_u64().unwrap_or(200) as u16;
    let mut out = Response::builder().status(status);
    if let Some(hs) = resp["headers"].as_object() {
        for (k, v) in hs {
            if let Some(v) = v.as_str() {
                out = out.header(k, v);
            }
        }
    }
    let body = resp["body"].as_str().unwrap_or("");
    let bytes = if resp["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    out.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
