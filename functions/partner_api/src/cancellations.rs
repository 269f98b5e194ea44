//! `POST /warehouse/cancellations`: a warehouse answers a cancel request (CAN-2) for one of its
//! pick lists: `{"orderId", "dispatchId", "dispatchToken", "outcome": "cancelled" | "too_late"}`
//! with its bearer token. `dispatchToken` is the one of the latest pick list of that dispatch.
//!
//! - cancelled: the pick list's wait is answered (once, like a shipment report) with
//!   `{"cancelled": true}`; the workflow ends that dispatch and, when every dispatch has ended,
//!   settles the payment, releases what did not ship and records the end state.
//! - too_late: the goods are packed or gone; the warehouse reports the parcel as usual and it is
//!   charged as usual. Only the timeline records the answer.

use super::{bad, internal, issued_token, token_mismatch, warehouse_of, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::{is_order_id, TimelineEntry};
use orderflow_shared::http::error;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancellationAnswer {
    pub order_id: String,
    pub dispatch_id: String,
    pub dispatch_token: String,
    pub outcome: String,
}

pub async fn answer_cancellation(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let warehouse = match warehouse_of(&deps, &headers).await {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    let a: CancellationAnswer = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad("invalid_body", &format!("not a cancellation answer: {e}"), None),
    };
    if !is_order_id(&a.order_id) {
        return bad("invalid_order_id", "orderId is not an order id", Some("orderId"));
    }
    if a.outcome != "cancelled" && a.outcome != "too_late" {
        return bad("invalid_outcome", "outcome is \"cancelled\" or \"too_late\"", Some("outcome"));
    }
    if a.dispatch_token.is_empty() {
        return bad("invalid_dispatch_token", "dispatchToken from the latest pick list is required", Some("dispatchToken"));
    }
    let order = match deps.orders.get(&a.order_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return error(StatusCode::NOT_FOUND, "dispatch_not_found", "no such dispatch for this warehouse", None),
        Err(e) => return internal(e),
    };
    if !order.dispatches.iter().any(|d| d.dispatch_id == a.dispatch_id && d.warehouse == warehouse) {
        return error(StatusCode::NOT_FOUND, "dispatch_not_found", "no such dispatch for this warehouse", None);
    }
    let Some(token_hash) = issued_token(&order, &a.dispatch_id, &a.dispatch_token) else {
        return token_mismatch();
    };
    if order.cancel.is_none() {
        return error(StatusCode::CONFLICT, "no_cancel_requested", "no cancel was requested for this order", None);
    }
    let span = tracing::info_span!("cancellation", order_id = %a.order_id, %warehouse);
    tracing::Instrument::instrument(
        async move {
            if a.outcome == "too_late" {
                let event = TimelineEntry::now("cancel_too_late", Some(format!("{warehouse} had already packed or shipped its lines")));
                if let Err(e) = deps.orders.append_timeline(&a.order_id, event).await {
                    return internal(e);
                }
                tracing::info!("warehouse answered too late; its parcels ship and are charged as usual");
                return (StatusCode::OK, axum::Json(json!({"order_id": a.order_id, "outcome": "too_late"}))).into_response();
            }
            let event = TimelineEntry::now("dispatch_cancelled", Some(format!("{warehouse} cancelled its open lines")));
            match deps.orders.record_dispatch_cancelled(&a.order_id, &token_hash, event).await {
                Ok(true) => {}
                Ok(false) => {
                    let again = order.answered_tokens.get(&token_hash).is_some_and(|v| v == "cancelled");
                    if !again {
                        return error(
                            StatusCode::CONFLICT,
                            "dispatch_not_awaiting",
                            "this pick list's token was already answered (a parcel was reported against it)",
                            Some("dispatchToken"),
                        );
                    }
                    // A retry of an answer whose first response was lost: wake the workflow again below.
                }
                Err(e) => return internal(e),
            }
            // The parcel run ends the dispatch as cancelled (and the wait); a wait already over has
            // its own run (a timeout run finds this recorded answer).
            if let Err(e) = crate::run_parcel(&deps, &a.order_id, &a.dispatch_id, &a.dispatch_token, json!({"cancelled": true, "warehouse": warehouse})).await {
                return internal(e);
            }
            tracing::info!("dispatch cancelled by the warehouse");
            (StatusCode::ACCEPTED, axum::Json(json!({"order_id": a.order_id, "outcome": "cancelled"}))).into_response()
        },
        span,
    )
    .await
}
