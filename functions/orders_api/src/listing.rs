//! `GET /ops/orders` (operator token): the orders that need someone, by `status` (PENDING,
//! UNDER_REVIEW or FAILED) or by customer `email`, optionally `from` / `to` (RFC 3339), oldest first,
//! `limit` per page (1-100, 25) and `next_cursor` to pass as `cursor` for the next page. Served from
//! the orders table's sparse indexes (`domain::order_index`), never a scan.

use super::{error, internal, invalid, ops_authorized, AppState};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_shared::domain::order::Order;
use orderflow_shared::domain::order_index::parse;
use serde_json::{json, Value};

fn summary(o: &Order) -> Value {
    json!({
        "order_id": o.order_id, "status": o.status.as_str(), "reason": o.status_reason, "customer_email": o.customer_email,
        "total": o.totals.total.minor, "currency": o.totals.total.currency.as_str(), "created_at": o.created_at, "updated_at": o.updated_at,
    })
}

pub async fn ops_list(State(deps): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or("")) else {
        return error(StatusCode::BAD_REQUEST, "invalid_query", "the query string is not form-encoded", None);
    };
    let query = match parse(&params) {
        Ok(q) => q,
        Err(i) => {
            let (status, body) = invalid(i);
            return (status, axum::Json(body)).into_response();
        }
    };
    match deps.orders.list(&query).await {
        Ok((orders, next)) => {
            (StatusCode::OK, axum::Json(json!({"orders": orders.iter().map(summary).collect::<Vec<_>>(), "next_cursor": next}))).into_response()
        }
        Err(e) => internal(e),
    }
}
