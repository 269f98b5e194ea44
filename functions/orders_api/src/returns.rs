//! `POST /orders/{id}/returns` (the customer, with the order's access token and an
//! `Idempotency-Key`): `{"lines": [{"sku", "quantity"}], "reason"}`, reason from a fixed list.
//!
//! Units may go back when the parcel that carried them was delivered within the store's return
//! window (`RETURN_WINDOW_DAYS`, 30) and they are not in another return or already refunded; a line
//! that cannot is refused naming it. The return is recorded in one conditional write (no other
//! return or refund recorded since the order was read), then its Standard workflow starts (execution
//! name = return id): a prepaid return label per warehouse, the wait for the warehouse's
//! inspection, restock or write-off, and the refund (statemachines/returns.asl.json).

use super::{bearer, const_eq, error, internal, sha256_hex, AppState, Deps};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::{is_order_id, Order, TimelineEntry};
use orderflow_shared::domain::returns::{new_return, plan_return, return_id, ReturnRecord, ReturnRequest};
use orderflow_shared::ports::RecordReturn;
use serde_json::{json, Value};

/// What the customer sees of a return: its parcels' state, label and tracking; no operator text.
pub fn view(r: &ReturnRecord) -> Value {
    json!({
        "return_id": r.return_id,
        "reason": r.reason,
        "requested_at": r.requested_at,
        "parcels": r.parcels.values().map(|p| json!({
            "status": p.status,
            "lines": p.lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
            "label_url": p.label.as_ref().map(|l| &l.label_url),
            "tracking_code": p.label.as_ref().map(|l| &l.tracking_code),
        })).collect::<Vec<_>>(),
    })
}

pub async fn customer_return(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "order_not_found", "no order with this id for this access token", None);
    let Some(token) = bearer(&headers) else { return not_found() };
    if !is_order_id(&id) {
        return not_found();
    }
    let order = match deps.orders.get(&id).await {
        Ok(Some(o)) if const_eq(&o.access_token_sha256, &sha256_hex(token.as_bytes())) => o,
        Ok(_) => return not_found(),
        Err(e) => return internal(e),
    };
    let key = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => return error(StatusCode::BAD_REQUEST, "idempotency_key_missing", "send an Idempotency-Key header (one per return)", Some("Idempotency-Key")),
    };
    if body.len() > 16 * 1024 {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than 16 KB", None);
    }
    let req: ReturnRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("expected {{\"lines\": [{{\"sku\", \"quantity\"}}], \"reason\"}}: {e}"), None)
        }
    };
    let span = tracing::info_span!("return", order_id = %id);
    tracing::Instrument::instrument(request_return(&deps, order, key, sha256_hex(&body), req), span).await
}

async fn request_return(deps: &Deps, mut order: Order, key: String, request_hash: String, req: ReturnRequest) -> Response {
    let rid = return_id(&order.order_id, &key);
    for attempt in 0..5 {
        if attempt > 0 {
            order = match deps.orders.get(&order.order_id).await {
                Ok(Some(o)) => o,
                Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
                Err(e) => return internal(e),
            };
        }
        if let Some(existing) = order.returns.get(&rid) {
            return replay(deps, &order.order_id, existing, &request_hash).await;
        }
        let plan = match plan_return(&order, &req, chrono::Utc::now().timestamp(), deps.return_window_days * 86_400) {
            Ok(p) => p,
            Err(i) => {
                let status = if i.code.starts_with("invalid_") { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
                return error(status, i.code, &i.message, i.field.as_deref());
            }
        };
        let ret = new_return(&rid, &req.reason, "customer", &request_hash, None, plan);
        let units: i64 = ret.parcels.values().flat_map(|p| p.lines.values()).sum();
        let event = TimelineEntry::now("return_requested", Some(format!("{rid}: {units} unit(s), {}", req.reason)));
        match deps.orders.record_return(&order.order_id, &ret, order.return_seq, order.refunded_minor, event).await {
            Ok(RecordReturn::Recorded) => return start(deps, &order.order_id, &ret, StatusCode::ACCEPTED).await,
            Ok(RecordReturn::Exists(existing)) => return replay(deps, &order.order_id, &existing, &request_hash).await,
            // Another return or refund was recorded meanwhile: plan again from a fresh read.
            Ok(RecordReturn::Conflict) => continue,
            Err(e) => return internal(e),
        }
    }
    error(StatusCode::CONFLICT, "return_conflict", "the order's returns kept changing; retry with the same Idempotency-Key", None)
}

/// Start (or, on a replay, start again: the name makes it one execution) the return's workflow.
/// If the start fails, the customer's retry with the same key finds the return and starts it.
async fn start(deps: &Deps, order_id: &str, ret: &ReturnRecord, status: StatusCode) -> Response {
    if let Err(e) = deps.workflows.start_return(&ret.return_id, &json!({"orderId": order_id, "returnId": ret.return_id})).await {
        return internal(e);
    }
    tracing::info!(return_id = %ret.return_id, "return recorded and started");
    (status, axum::Json(view(ret))).into_response()
}

async fn replay(deps: &Deps, order_id: &str, existing: &ReturnRecord, request_hash: &str) -> Response {
    if existing.request_hash != request_hash {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "this Idempotency-Key was used for another return", Some("Idempotency-Key"));
    }
    let mut r = start(deps, order_id, existing, StatusCode::ACCEPTED).await;
    if r.status().is_success() {
        r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}
