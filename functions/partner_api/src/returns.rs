//! `POST /warehouse/returns`: a warehouse reports a return parcel that arrived, with what it found
//! per SKU: `{"orderId", "returnId", "returnToken", "units": [{"sku", "resellable", "damaged"}]}`
//! (its bearer token; `returnToken` came with the `return_expected` message on its queue).
//!
//! The inspection is recorded on the return parcel once (only while it is awaited), then the
//! return's workflow is woken; it restocks the resellable units at this warehouse, writes off the
//! damaged ones and refunds what was charged for them (functions/receive_return). A repeated report
//! with the same counts is a replay (it wakes the workflow again, in case the first call never
//! reached it); other counts are 409. An arrival after the authorization expired is 409.

use super::{bad, internal, warehouse_of, AppState, MAX_BODY};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::{is_order_id, now_rfc3339, TimelineEntry};
use orderflow_shared::domain::returns::{check_inspection, status, Inspection};
use orderflow_shared::http::error;
use orderflow_shared::StepError;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReturnArrival {
    pub order_id: String,
    pub return_id: String,
    pub return_token: String,
    pub units: Vec<InspectedUnits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectedUnits {
    pub sku: String,
    #[serde(default)]
    pub resellable: i64,
    #[serde(default)]
    pub damaged: i64,
}

pub async fn report_return(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let warehouse = match warehouse_of(&deps, &headers).await {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    if body.len() > MAX_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than 64 KB", None);
    }
    let a: ReturnArrival = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad("invalid_body", &format!("not a return arrival: {e}"), None),
    };
    if !is_order_id(&a.order_id) {
        return bad("invalid_order_id", "orderId is not an order id", Some("orderId"));
    }
    if a.return_token.is_empty() {
        return bad("invalid_return_token", "returnToken from the return_expected message is required", Some("returnToken"));
    }
    if a.units.is_empty() || a.units.len() > 100 {
        return bad("invalid_units", "units lists 1-100 SKUs", Some("units"));
    }
    let mut inspection: BTreeMap<String, Inspection> = BTreeMap::new();
    for u in &a.units {
        if !(0..=9999).contains(&u.resellable) || !(0..=9999).contains(&u.damaged) {
            return bad("invalid_units", "resellable and damaged are 0..=9999", Some("units"));
        }
        let e = inspection.entry(u.sku.clone()).or_default();
        e.resellable += u.resellable;
        e.damaged += u.damaged;
    }
    let span = tracing::info_span!("return_arrival", order_id = %a.order_id, return_id = %a.return_id, %warehouse);
    tracing::Instrument::instrument(
        async move {
            let parcel = match parcel_of(&deps, &a.order_id, &a.return_id, &warehouse).await {
                Ok(p) => p,
                Err(answer) => return answer,
            };
            if let Err(m) = check_inspection(&parcel, &inspection) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "inspection_invalid", &m, Some("units"));
            }
            let units: i64 = inspection.values().map(Inspection::units).sum();
            let damaged: i64 = inspection.values().map(|i| i.damaged).sum();
            let recorded = match deps
                .orders
                .update_return_parcel(
                    &a.order_id,
                    &a.return_id,
                    &warehouse,
                    &[status::AWAITING],
                    vec![("status", json!(status::RECEIVED)), ("inspection", json!(inspection)), ("received_at", json!(now_rfc3339()))],
                    Some(TimelineEntry::now("return_received", Some(format!("{}: {units} unit(s) at {warehouse}, {damaged} damaged", a.return_id)))),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => return internal(e),
            };
            if !recorded {
                // Arrived before (a replay, or other counts) or the authorization expired.
                let p = match parcel_of(&deps, &a.order_id, &a.return_id, &warehouse).await {
                    Ok(p) => p,
                    Err(answer) => return answer,
                };
                match p.status.as_str() {
                    status::RECEIVED | status::REFUNDED if p.inspection == inspection => {
                        if p.status == status::RECEIVED {
                            if let Err(e) = wake(&deps, &a.return_token, &a.return_id).await {
                                return internal(e);
                            }
                        }
                        return (StatusCode::OK, [("idempotent-replayed", "true")], axum::Json(json!({"return_id": a.return_id, "status": "accepted"})))
                            .into_response();
                    }
                    status::RECEIVED | status::REFUNDED => {
                        return error(StatusCode::CONFLICT, "return_already_received", "this return parcel was reported with other counts", Some("units"))
                    }
                    status::EXPIRED => return error(StatusCode::CONFLICT, "return_expired", "this return's authorization expired; contact the store", None),
                    _ => return error(StatusCode::CONFLICT, "return_not_awaiting", "this return's label is still being prepared; retry shortly", None),
                }
            }
            if let Err(e) = wake(&deps, &a.return_token, &a.return_id).await {
                return internal(e);
            }
            tracing::info!(units, damaged, "return parcel received");
            (StatusCode::ACCEPTED, axum::Json(json!({"return_id": a.return_id, "status": "accepted"}))).into_response()
        },
        span,
    )
    .await
}

/// The return parcel a warehouse reports about, as stored now; Err is the answer to send (404:
/// another warehouse's parcel is indistinguishable from a missing one; 503 on a read failure).
async fn parcel_of(deps: &AppState, order_id: &str, return_id: &str, warehouse: &str) -> Result<orderflow_shared::domain::returns::ReturnParcel, Response> {
    let not_found = || error(StatusCode::NOT_FOUND, "return_not_found", "no such return for this warehouse", None);
    match deps.orders.get(order_id).await {
        Ok(Some(o)) => o.returns.get(return_id).and_then(|r| r.parcels.get(warehouse)).cloned().ok_or_else(not_found),
        Ok(None) => Err(not_found()),
        Err(e) => Err(internal(e)),
    }
}

/// Wake the return's wait. A token no longer waiting is fine: either the same arrival woke it
/// before, or the wait timed out just now and the expiry step finds the parcel received and goes
/// on to restock and refund it (never both: the parcel's status decides).
async fn wake(deps: &AppState, token: &str, return_id: &str) -> Result<(), StepError> {
    match deps.workflows.send_task_success(token, &json!({"returnId": return_id, "received": true})).await {
        Ok(()) | Err(StepError::InvalidState(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
