//! Cancelling an order (CAN-1, CAN-2): `POST /orders/{id}/cancel` (the customer, with the order's
//! access token; 404 otherwise, as GET) and `POST /ops/orders/{id}/cancel` `{"reason"}` (an
//! operator). The cancel is recorded once (a second, or one racing a review decision, is 409) and
//! then takes effect through the lifecycle workflow, never around it:
//! - under review: the review wait is answered with "cancel" and the workflow voids the hold,
//!   releases the stock and records CANCELLED (one email);
//! - confirmed, before routing: routing dispatches nothing, the workflow settles and releases;
//! - pick lists out: each warehouse still holding open lines gets a cancel request on its queue and
//!   answers (partner_api `POST /warehouse/cancellations`) cancelled or too late. Until it answers,
//!   a shipment report is accepted and charged as usual, so goods never ship uncharged; the order
//!   ends CANCELLED, or PARTIALLY_FULFILLED when some parcels had shipped.

use super::{bearer, const_eq, error, internal, ops_authorized, sha256_hex, AppState, Deps};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::{is_order_id, now_rfc3339, CancelRequest, Order, OrderStatus, TimelineEntry};
use serde_json::json;

pub async fn customer_cancel(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "order_not_found", "no order with this id for this access token", None);
    let Some(token) = bearer(&headers) else { return not_found() };
    if !is_order_id(&id) {
        return not_found();
    }
    match deps.orders.get(&id).await {
        Ok(Some(order)) if const_eq(&order.access_token_sha256, &sha256_hex(token.as_bytes())) => cancel(&deps, &id, "customer", "customer_request").await,
        Ok(_) => not_found(),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OpsCancel {
    reason: String,
}

pub async fn ops_cancel(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let reason = match serde_json::from_slice::<OpsCancel>(&body) {
        Ok(c) if !c.reason.trim().is_empty() && c.reason.chars().count() <= 500 => c.reason.trim().to_string(),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "invalid_field", "reason is 1-500 characters", Some("reason")),
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("expected {{\"reason\": string}}: {e}"), None),
    };
    if !is_order_id(&id) {
        return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None);
    }
    cancel(&deps, &id, "operator", &reason).await
}

async fn cancel(deps: &Deps, order_id: &str, by: &str, reason: &str) -> Response {
    let span = tracing::info_span!("cancel", order_id = %order_id);
    tracing::Instrument::instrument(
        async move {
            let request = CancelRequest { requested_at: now_rfc3339(), by: by.to_string(), reason: reason.to_string() };
            // The operator's words stay in `cancel.reason` (operators' view); the timeline says who.
            let event = TimelineEntry::now("cancel_requested", Some(format!("by the {by}")));
            match deps.orders.request_cancel(order_id, &request, event).await {
                Ok(Some(order)) => take_effect(deps, &order).await,
                Ok(None) => refusal(deps, order_id).await,
                Err(e) => internal(e),
            }
        },
        span,
    )
    .await
}

/// Why the cancel was not recorded, read after the refused write.
async fn refusal(deps: &Deps, order_id: &str) -> Response {
    let order = match deps.orders.get(order_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
        Err(e) => return internal(e),
    };
    let (code, message) = if order.cancel.is_some() {
        ("cancel_already_requested", "a cancel of this order was already requested".to_string())
    } else if order.review_decision.is_some() {
        ("review_already_decided", "the review of this order was already decided".to_string())
    } else if order.status == OrderStatus::UnderReview {
        ("review_not_ready", "the review task is still being queued; retry in a few seconds".to_string())
    } else if order.status == OrderStatus::Pending {
        ("checkout_in_progress", "checkout is still deciding this order; retry shortly".to_string())
    } else {
        ("not_cancellable", format!("the order is {}: it can no longer be cancelled", order.status.as_str()))
    };
    error(StatusCode::CONFLICT, code, &message, None)
}

async fn take_effect(deps: &Deps, order: &Order) -> Response {
    let id = &order.order_id;
    if order.status == OrderStatus::UnderReview {
        let token = order.review_task_token.as_deref().unwrap_or_default();
        if let Err(e) = deps.workflows.send_task_success(token, &json!({"decision": "cancel", "note": "", "orderId": id})).await {
            // The review wait ended meanwhile (its timeout): that path voids and releases anyway.
            tracing::warn!(error = %e, "the review wait was no longer open for the cancel");
        }
        tracing::info!("cancel handed to the review wait");
        return (StatusCode::ACCEPTED, axum::Json(json!({"order_id": id, "cancel": "accepted"}))).into_response();
    }
    // Pick lists out: ask each warehouse that still has open lines. No dispatch yet: routing sees
    // the cancel and dispatches nothing.
    let mut asked = Vec::new();
    for d in &order.dispatches {
        let shipped: i64 = order.shipments.values().filter(|s| s.warehouse == d.warehouse).flat_map(|s| s.lines.iter().map(|l| l.quantity)).sum();
        let ordered: i64 = d.lines.iter().map(|l| l.quantity).sum();
        if ordered <= shipped {
            continue;
        }
        let Some(url) = deps.warehouse_queue_urls.get(&d.warehouse) else {
            return internal(orderflow_shared::StepError::Internal(format!("no queue for warehouse {}", d.warehouse)));
        };
        let message = json!({"type": "cancel_request", "orderId": id, "dispatchId": d.dispatch_id, "warehouse": d.warehouse, "requestedAt": order.cancel.as_ref().map(|c| c.requested_at.clone())});
        if let Err(e) = deps.queue.send(url, &message).await {
            tracing::error!(warehouse = %d.warehouse, error = %e, "cancel recorded but the warehouse could not be asked");
            return internal(e);
        }
        asked.push(d.warehouse.clone());
    }
    tracing::info!(warehouses = ?asked, "cancel requested");
    let state = if asked.is_empty() { "accepted" } else { "requested" };
    (StatusCode::ACCEPTED, axum::Json(json!({"order_id": id, "cancel": state, "waiting_for": asked}))).into_response()
}
