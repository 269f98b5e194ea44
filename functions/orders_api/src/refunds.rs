//! `POST /ops/orders/{id}/refunds` (operator token, `Idempotency-Key` required):
//! `{"amount_minor"}` or `{"lines": [{"sku", "quantity"}]}`, with `reason` (Stripe's
//! duplicate | fraudulent | requested_by_customer) and an optional `note` for operators.
//!
//! The refund is recorded on the order's ledger in one conditional write (the ledger as read must
//! be the ledger written over), so two refunds at once can never together exceed what was captured
//! (PAY-4) or refund a unit twice; then it is queued for refund_payment, which sends it to the
//! gateway once. The same Idempotency-Key is the same refund (a double click is one refund); the
//! same key with another request is 422.

use super::{error, internal, ops_authorized, sha256_hex, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::{is_order_id, now_rfc3339};
use orderflow_shared::domain::refund::{plan, refund_id, Refund, RefundRequest};
use orderflow_shared::ports::RecordRefund;
use serde_json::json;

fn view(r: &Refund) -> serde_json::Value {
    json!({"refund_id": r.refund_id, "amount_minor": r.amount_minor, "lines": r.lines, "reason": r.reason, "note": r.note, "status": r.status, "requested_at": r.requested_at})
}

pub async fn ops_refund(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let key = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => return error(StatusCode::BAD_REQUEST, "idempotency_key_missing", "send an Idempotency-Key header (one per refund)", Some("Idempotency-Key")),
    };
    let req: RefundRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("expected {{\"amount_minor\" | \"lines\", \"reason\", \"note\"?}}: {e}"), None)
        }
    };
    if !is_order_id(&id) {
        return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None);
    }
    let span = tracing::info_span!("refund", order_id = %id);
    tracing::Instrument::instrument(
        async move {
            let rid = refund_id(&id, &key);
            let request_hash = sha256_hex(&body);
            for _ in 0..5 {
                let order = match deps.orders.get(&id).await {
                    Ok(Some(o)) => o,
                    Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
                    Err(e) => return internal(e),
                };
                if let Some(existing) = order.refunds.get(&rid) {
                    if existing.request_hash == request_hash && existing.status == "requested" {
                        // Recorded but perhaps never queued (the first answer was a 5xx): queue it again.
                        if let Err(e) = deps.queue.send(&deps.refunds_queue_url, &json!({"orderId": id, "refundId": rid})).await {
                            return internal(e);
                        }
                    }
                    return replay(existing, &request_hash);
                }
                let (amount, lines) = match plan(&order, &req) {
                    Ok(p) => p,
                    Err(i) => {
                        let status = if i.code.starts_with("refund_exceeds") { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
                        return error(status, i.code, &i.message, i.field.as_deref());
                    }
                };
                let refund = Refund {
                    refund_id: rid.clone(),
                    amount_minor: amount,
                    lines,
                    reason: req.reason.clone(),
                    note: req.note.clone().filter(|n| !n.trim().is_empty()),
                    status: "requested".into(),
                    gateway_refund_id: None,
                    requested_at: now_rfc3339(),
                    request_hash: request_hash.clone(),
                    return_id: None,
                };
                let units_before = refund.lines.keys().map(|k| (k.clone(), order.refunded_units.get(k).copied().unwrap_or(0))).collect();
                match deps.orders.record_refund(&id, &refund, order.refunded_minor, &units_before, order.return_seq).await {
                    Ok(RecordRefund::Recorded) => {}
                    Ok(RecordRefund::Exists(existing)) => return replay(&existing, &request_hash),
                    // Another refund (or a capture) moved the ledger: plan again from a fresh read.
                    Ok(RecordRefund::Conflict) => continue,
                    Err(e) => return internal(e),
                }
                // Recorded: hand it to refund_payment. If queueing fails, the operator's retry with the
                // same key finds the refund recorded and queues it again (the gateway key keeps it one).
                if let Err(e) = deps.queue.send(&deps.refunds_queue_url, &json!({"orderId": id, "refundId": rid})).await {
                    return internal(e);
                }
                tracing::info!(refund_id = %rid, amount_minor = amount, "refund recorded and queued");
                return (StatusCode::ACCEPTED, axum::Json(view(&refund))).into_response();
            }
            error(StatusCode::CONFLICT, "refund_conflict", "the order's refunds kept changing; retry with the same Idempotency-Key", None)
        },
        span,
    )
    .await
}

fn replay(existing: &Refund, request_hash: &str) -> Response {
    if existing.request_hash != request_hash {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "this Idempotency-Key was used for another refund", Some("Idempotency-Key"));
    }
    let mut r = (StatusCode::ACCEPTED, axum::Json(view(existing))).into_response();
    r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}
