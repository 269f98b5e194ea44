//! `POST /ops/orders/{id}/uncharged` (operator token): goods shipped and were never charged (the
//! order is FAILED; `shared/src/domain/collection.rs`). `{"action": "retry_charge" |
//! "record_external" | "write_off", "note", "reference"?}`. One decision takes effect: the first
//! conditional write wins, a second (or a conflicting one at the same moment) is 409
//! `collection_already_decided`. The decision is recorded with the operator's note on the timeline
//! (operators' view only) and queued for refund_payment, the function that holds the gateway key:
//! it captures what is owed on the still-valid hold (retry_charge), or releases what is left of the
//! hold (record_external, write_off).

use super::{error, internal, ops_authorized, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::collection::{refusal, uncharged, Collection, CollectionRequest};
use orderflow_shared::domain::order::{is_order_id, now_rfc3339, TimelineEntry};
use serde_json::json;

pub async fn ops_uncharged(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let req: CollectionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("expected {{\"action\", \"note\", \"reference\"?}}: {e}"), None),
    };
    if !is_order_id(&id) {
        return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None);
    }
    let span = tracing::info_span!("uncharged", order_id = %id, action = %req.action);
    tracing::Instrument::instrument(
        async move {
            let order = match deps.orders.get(&id).await {
                Ok(Some(o)) => o,
                Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
                Err(e) => return internal(e),
            };
            if let Some((code, message)) = refusal(&order, &req) {
                let status = if code.starts_with("invalid_") { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
                let field = match code {
                    "invalid_action" => Some("action"),
                    "invalid_field" if message.starts_with("note") => Some("note"),
                    "invalid_field" => Some("reference"),
                    _ => None,
                };
                return error(status, code, &message, field);
            }
            let amount: i64 = uncharged(&order).iter().map(|(_, m)| m.minor).sum();
            let c = Collection {
                action: req.action.clone(),
                note: req.note.trim().to_string(),
                reference: req.reference.as_ref().map(|r| r.trim().to_string()),
                amount_minor: amount,
                requested_at: now_rfc3339(),
                status: "requested".into(),
                detail: None,
            };
            let event = TimelineEntry::now("uncharged_decision", Some(format!("{} of {amount}: {}", c.action, c.note)));
            match deps.orders.record_collection(&id, &c, event).await {
                Ok(true) => {}
                Ok(false) => return error(StatusCode::CONFLICT, "collection_already_decided", "an operator already decided about this amount", None),
                Err(e) => return internal(e),
            }
            // If queueing fails the decision stays recorded: the answer says retry, and a retry is
            // 409; the decision is then redriven by queueing it from the operator's view (rare).
            if let Err(e) = deps.queue.send(&deps.refunds_queue_url, &json!({"orderId": id, "collection": true})).await {
                return internal(e);
            }
            tracing::info!(amount_minor = amount, "uncharged decision recorded and queued");
            (StatusCode::ACCEPTED, axum::Json(json!({"order_id": id, "action": c.action, "amount_minor": amount, "status": c.status}))).into_response()
        },
        span,
    )
    .await
}
