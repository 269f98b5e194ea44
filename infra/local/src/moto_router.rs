//! Two moto processes, one front door. moto serves every service from one Python process, under
//! one interpreter lock, and it was the local stack's ceiling: one core busy through a whole bench
//! while the other sat mostly idle (docs/design.md, "What bounds the local stack's speed").
//! DynamoDB shares no state with the other services in moto (no state machine here calls DynamoDB
//! itself: our functions do, through the edge), so it runs in a process of its own; Step
//! Functions, SQS, Secrets Manager and the rest in the other (the engine's Lambda and SQS tasks go
//! through the edge, which routes them back).
//!
//! The edge sends each call straight to its process (`Backends::base_for`); this router does the
//! same on one URL (`Stack::moto_url`) for everything else that talks to moto directly:
//! provisioning, the observer's reads, tests' operator clients.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

/// The two moto processes' base URLs.
#[derive(Debug, Clone)]
pub struct Backends {
    pub dynamodb: String,
    pub rest: String,
}

impl Backends {
    /// The process that serves a request: DynamoDB's API (JSON 1.0, named by `X-Amz-Target`:
    /// `DynamoDB_20120810.*`, and Streams') goes to its own; everything else to the other.
    pub fn base_for(&self, headers: &HeaderMap) -> &str {
        match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            Some(t) if is_dynamodb_target(t) => &self.dynamodb,
            _ => &self.rest,
        }
    }
}

/// An `X-Amz-Target` of DynamoDB's API or DynamoDB Streams' (the edge names the service by it too).
pub fn is_dynamodb_target(target: &str) -> bool {
    target.starts_with("DynamoDB")
}

struct Front {
    backends: Backends,
    http: reqwest::Client,
}

pub fn router(backends: Backends) -> Result<Router, String> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build().map_err(|e| e.to_string())?;
    Ok(Router::new().fallback(forward).with_state(Arc::new(Front { backends, http })))
}

/// Headers that belong to one hop, not to the request or answer they travel with.
pub fn end_to_end(name: &axum::http::HeaderName) -> bool {
    name != "content-length" && name != "transfer-encoding" && name != "connection"
}

async fn forward(State(front): State<Arc<Front>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let url = format!("{}{}", front.backends.base_for(&headers), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut req = front.http.request(method, url).body(body);
    for (k, v) in headers.iter().filter(|(k, _)| end_to_end(k)) {
        req = req.header(k, v);
    }
    let answer = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("moto router: {e}")).into_response(),
    };
    let mut out = Response::builder().status(answer.status().as_u16());
    for (k, v) in answer.headers().iter().filter(|(k, _)| end_to_end(k)) {
        out = out.header(k, v);
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    out.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_calls_go_to_their_own_process_and_the_rest_to_the_other() {
        let b = Backends { dynamodb: "http://d".into(), rest: "http://r".into() };
        let with = |target: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-amz-target", target.parse().unwrap());
            h
        };
        assert_eq!(b.base_for(&with("DynamoDB_20120810.UpdateItem")), "http://d");
        assert_eq!(b.base_for(&with("DynamoDBStreams_20120810.GetRecords")), "http://d");
        assert_eq!(b.base_for(&with("AWSStepFunctions.StartExecution")), "http://r");
        assert_eq!(b.base_for(&with("AmazonSQS.SendMessage")), "http://r");
        assert_eq!(b.base_for(&HeaderMap::new()), "http://r"); // SESv2's REST paths, /moto-api
    }
}
