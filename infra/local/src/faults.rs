//! Transient faults on the calls our functions make (the soak, #10 item 12): a share of DynamoDB and
//! SQS calls at the edge and of gateway and carrier calls at their sandboxes fail the way those
//! services fail under load. Half of them strike *before* the call takes effect (throttled, a 5xx
//! with nothing done) and half *after* it (the call took effect and its answer is lost: a 5xx, or a
//! timeout, which to the caller is the same lost answer; the real wait is not spent, to keep the
//! soak quick). Callers see exactly what they would see on AWS or from Stripe and EasyPost, and
//! retry as they would there: the SDK's standard retries, Step Functions' Retry, SQS redelivery,
//! the partners' idempotency keys.
//!
//! The draw is deterministic per run (a seed and a counter), so a failing soak can be rerun.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// Refused before doing anything: throttling (400 ThrottlingException, 429 rate_limit).
    Throttled,
    /// A 5xx before doing anything.
    ServerError,
    /// Done, and the answer lost on the way back (a 5xx to the caller).
    LostResponse,
    /// Done, and the caller timed out (a 504 to the caller).
    Timeout,
}

impl Kind {
    pub fn after_effect(&self) -> bool {
        matches!(self, Kind::LostResponse | Kind::Timeout)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub service: String,
    pub operation: String,
    pub order_id: Option<String>,
    pub kind: Kind,
}

pub struct Faults {
    rate: f64,
    seed: u64,
    counter: AtomicU64,
    /// Off until the stack has seeded its store data (that is set-up, not load).
    armed: std::sync::atomic::AtomicBool,
    /// One-shot faults a test aims at a call: (service, operation, text the request carries, kind).
    aimed: Mutex<Vec<(String, String, String, Kind)>>,
    pub injected: Mutex<Vec<Injected>>,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Faults {
    /// `rate` of the calls fail (0.05 = 5%); 0 turns injection off.
    pub fn new(rate: f64, seed: u64) -> Faults {
        Faults {
            rate: rate.clamp(0.0, 1.0),
            seed,
            counter: AtomicU64::new(0),
            armed: std::sync::atomic::AtomicBool::new(true),
            aimed: Mutex::new(vec![]),
            injected: Mutex::new(vec![]),
        }
    }

    pub fn off() -> Faults {
        Faults::new(0.0, 0)
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0 && self.armed.load(Ordering::Relaxed)
    }

    pub fn arm(&self, on: bool) {
        self.armed.store(on, Ordering::Relaxed);
    }

    /// Make the next `service` `operation` call whose request contains `carrying` fail with `kind`
    /// (tests aim one fault at one call; works with the random faults off).
    pub fn aim(&self, service: &str, operation: &str, carrying: &str, kind: Kind) {
        self.aimed.lock().unwrap().push((service.into(), operation.into(), carrying.into(), kind));
    }

    /// Whether this call (whose request is `request`) fails, and how; recorded when it does.
    pub fn roll(&self, service: &str, operation: &str, order_id: Option<String>, request: &str) -> Option<Kind> {
        let aimed = {
            let mut aimed = self.aimed.lock().unwrap();
            let at = aimed.iter().position(|(s, o, c, _)| s == service && o == operation && request.contains(c.as_str()));
            at.map(|i| aimed.remove(i).3)
        };
        if let Some(kind) = aimed {
            self.injected.lock().unwrap().push(Injected { service: service.into(), operation: operation.into(), order_id, kind });
            return Some(kind);
        }
        // The soak's random faults strike DynamoDB and SQS; a test may aim one at any service.
        if !self.enabled() || !matches!(service, "dynamodb" | "sqs") {
            return None;
        }
        let x = splitmix64(self.seed ^ self.counter.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.rate {
            return None;
        }
        let kind = match x & 3 {
            0 => Kind::Throttled,
            1 => Kind::ServerError,
            2 => Kind::LostResponse,
            _ => Kind::Timeout,
        };
        self.injected.lock().unwrap().push(Injected { service: service.into(), operation: operation.into(), order_id, kind });
        Some(kind)
    }

    /// Injected faults by "service kind" (for the soak's figures).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for i in self.injected.lock().unwrap().iter() {
            *out.entry(format!("{} {:?}", i.service, i.kind)).or_insert(0) += 1;
        }
        out
    }

    /// Orders on whose calls a fault struck after the call took effect.
    pub fn orders_hit_after_effect(&self) -> std::collections::BTreeSet<String> {
        self.injected.lock().unwrap().iter().filter(|i| i.kind.after_effect()).filter_map(|i| i.order_id.clone()).collect()
    }
}

/// The AWS JSON protocols' answer for a fault (DynamoDB and SQS speak JSON 1.0 here).
pub fn aws_error(service: &str, kind: Kind) -> Response {
    let (status, code) = match kind {
        Kind::Throttled => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        Kind::ServerError | Kind::LostResponse => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        Kind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "RequestTimeout"),
    };
    let prefix = if service == "sqs" { "com.amazonaws.sqs#" } else { "com.amazonaws.dynamodb.v20120810#" };
    (
        status,
        [("content-type", "application/x-amz-json-1.0"), ("x-amzn-errortype", code)],
        json!({"__type": format!("{prefix}{code}"), "message": "injected fault (orderflow-local soak)"}).to_string(),
    )
        .into_response()
}

/// A partner's answer for a fault: Stripe's and EasyPost's error bodies (`{"error": {...}}`).
fn partner_error(kind: Kind) -> Response {
    let (status, code) = match kind {
        Kind::Throttled => (StatusCode::TOO_MANY_REQUESTS, "rate_limit"),
        Kind::ServerError | Kind::LostResponse => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
        Kind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
    };
    let body = json!({"error": {"type": "api_error", "code": code, "message": "injected fault (orderflow-local soak)"}});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// Middleware for a sandbox partner (`service` names it in the figures): faults on its API calls.
pub async fn partner_layer(State((faults, service)): State<(Arc<Faults>, &'static str)>, req: Request, next: Next) -> Response {
    let operation = format!("{} {}", req.method(), req.uri().path());
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let order = crate::edge::find_order_id(&String::from_utf8_lossy(&bytes)).or_else(|| crate::edge::find_order_id(&operation));
    let fault = faults.roll(service, &operation, order, &String::from_utf8_lossy(&bytes));
    let req = Request::from_parts(parts, Body::from(bytes));
    match fault {
        None => next.run(req).await,
        Some(kind) if kind.after_effect() => {
            let _done = next.run(req).await;
            partner_error(kind)
        }
        Some(kind) => partner_error(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_the_rate_fails_and_half_of_those_after_the_effect() {
        let f = Faults::new(0.05, 7);
        let n = 40_000;
        let hits = (0..n).filter(|_| f.roll("dynamodb", "PutItem", None, "").is_some()).count();
        assert!((1_600..2_400).contains(&hits), "{hits} of {n}");
        let after = f.injected.lock().unwrap().iter().filter(|i| i.kind.after_effect()).count();
        assert!((after as f64 / hits as f64 - 0.5).abs() < 0.06, "{after} of {hits} after the effect");
        assert!(Faults::off().roll("sqs", "SendMessage", None, "").is_none());
    }
}
