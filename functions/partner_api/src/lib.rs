//! The HTTP API partners call (behind the same API Gateway as the orders API):
//! - `POST /warehouse/shipments`: a warehouse reports a parcel it shipped for a pick list
//!   (authenticated per warehouse; partial shipments allowed), which wakes the waiting workflow;
//! - `POST /warehouse/receipts`: a warehouse received a purchase order's units (restock);
//! - `POST /webhooks/carrier`: carrier tracking events (`X-Hmac-Signature`);
//! - `POST /webhooks/gateway`: payment gateway events (`Stripe-Signature`).
//!
//! Webhooks are verified, de-duplicated on the event id, queued and answered at once (WH-4); the
//! work happens in apply_webhook_events off the queue.

mod cancellations;
mod returns;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use orderflow_shared::domain::order::{is_order_id, now_rfc3339, Order, Parcel, ShipLine, Shipment};
use orderflow_shared::http::error;
use orderflow_shared::ports::{AddShipment, OnceClaim, ReceiveOutcome};
use orderflow_shared::ports::{OnceLedger, OrderRepository, Queue, StockLedger, Workflows};
use orderflow_shared::secrets::SecretSource;
use orderflow_shared::webhooks::{verify_carrier, verify_stripe};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub once: Arc<dyn OnceLedger>,
    pub queue: Arc<dyn Queue>,
    pub webhook_events_queue_url: String,
    pub workflows: Arc<dyn Workflows>,
    pub carrier_webhook_secret: Arc<SecretSource>,
    pub gateway_webhook_secret: Arc<SecretSource>,
    pub warehouse_api_tokens: Arc<SecretSource>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            stock: w.stock()?,
            once: w.idempotency()?,
            queue: w.queue(),
            webhook_events_queue_url: w.queue_url("WEBHOOK_EVENTS_QUEUE_URL")?,
            workflows: w.parcel_starter()?,
            carrier_webhook_secret: Arc::new(w.env.secret("CARRIER_WEBHOOK_SECRET")?),
            gateway_webhook_secret: Arc::new(w.env.secret("GATEWAY_WEBHOOK_SECRET")?),
            warehouse_api_tokens: Arc::new(w.env.secret("WAREHOUSE_API_TOKENS")?),
        })
    }
}

pub type AppState = Arc<Deps>;

pub fn router(deps: AppState) -> Router {
    Router::new()
        .route("/warehouse/shipments", post(report_shipment))
        .route("/warehouse/receipts", post(receive_stock))
        .route("/warehouse/cancellations", post(cancellations::answer_cancellation))
        .route("/warehouse/returns", post(returns::report_return))
        .route("/webhooks/carrier", post(carrier_webhook))
        .route("/webhooks/gateway", post(gateway_webhook))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route", None) })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route", None) })
        .layer(axum::middleware::from_fn(orderflow_shared::http::body_cap))
        .with_state(deps)
}

pub async fn invoke_apigw(deps: AppState, payload: Value) -> Result<Value, StepError> {
    orderflow_shared::http::invoke_apigw(router(deps), payload).await
}

const MAX_BODY: usize = 64 * 1024;
/// Stripe's default tolerance for webhook timestamps.
const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

fn internal(e: StepError) -> Response {
    tracing::error!(error_type = e.error_type(), error = %e, "request failed");
    match e {
        StepError::Retryable(_) => error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "temporarily unavailable; retry", None),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error", None),
    }
}

/// The warehouse a request authenticates as (`Authorization: Bearer <that warehouse's token>`).
/// Err is the answer to send: 401, or 503 while the tokens cannot be read.
async fn warehouse_of(deps: &Deps, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = || error(StatusCode::UNAUTHORIZED, "unauthorized", "a warehouse bearer token is required", None);
    let Some(token) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(unauthorized());
    };
    let tokens = deps.warehouse_api_tokens.get().await.map_err(internal)?;
    warehouse_for_token(tokens.expose(), token.trim()).ok_or_else(unauthorized)
}

/// The warehouse a bearer token belongs to, from the JSON object warehouse id -> token (compared
/// in constant time).
pub fn warehouse_for_token(tokens_json: &str, token: &str) -> Option<String> {
    let tokens: std::collections::BTreeMap<String, String> = serde_json::from_str(tokens_json).ok()?;
    let mut found = None;
    for (wh, t) in tokens {
        if !t.is_empty() && t.len() == token.len() && bool::from(subtle::ConstantTimeEq::ct_eq(t.as_bytes(), token.as_bytes())) {
            found = Some(wh);
        }
    }
    found
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShipmentReport {
    pub order_id: String,
    pub dispatch_id: String,
    /// The warehouse's own parcel id: reporting it again is a replay, not a second parcel.
    pub shipment_id: String,
    /// The token that came with the pick list this parcel answers.
    pub dispatch_token: String,
    pub lines: Vec<ShipLine>,
    pub weight_grams: u32,
    pub parcel: ParcelReport,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParcelReport {
    pub length_cm: u32,
    pub width_cm: u32,
    pub height_cm: u32,
}

/// The token's hash, when the token was issued for this order's `dispatch_id` (send_pick_list records
/// each before its pick list leaves). A token of another order or another warehouse's dispatch never
/// reaches the workflow (#10 item 9): the caller answers `token_mismatch()`.
fn issued_token(order: &Order, dispatch_id: &str, token: &str) -> Option<String> {
    let hash = orderflow_shared::dispatch::token_hash(token);
    if order.issued_tokens.get(&hash).is_some_and(|d| d == dispatch_id) {
        return Some(hash);
    }
    tracing::warn!(order_id = %order.order_id, %dispatch_id, "dispatch token not issued for this dispatch");
    None
}

fn token_mismatch() -> Response {
    error(
        StatusCode::CONFLICT,
        "dispatch_token_mismatch",
        "this dispatchToken was not issued for this order's dispatch; use the token of its pick list",
        Some("dispatchToken"),
    )
}

fn bad(code: &str, message: &str, field: Option<&str>) -> Response {
    error(StatusCode::BAD_REQUEST, code, message, field)
}

async fn report_shipment(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let warehouse = match warehouse_of(&deps, &headers).await {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    if body.len() > MAX_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than 64 KB", None);
    }
    let r: ShipmentReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad("invalid_body", &format!("not a shipment report: {e}"), None),
    };
    if !is_order_id(&r.order_id) {
        return bad("invalid_order_id", "orderId is not an order id", Some("orderId"));
    }
    if r.shipment_id.is_empty() || r.shipment_id.len() > 64 || !r.shipment_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return bad("invalid_shipment_id", "shipmentId must be 1-64 letters, digits, '-' or '_'", Some("shipmentId"));
    }
    if r.lines.is_empty() || r.lines.len() > 100 || r.lines.iter().any(|l| !(1..=9999).contains(&l.quantity)) {
        return bad("invalid_lines", "lines must list 1-100 SKUs with quantities 1..=9999", Some("lines"));
    }
    if !(1..=70_000).contains(&r.weight_grams) {
        return bad("invalid_weight", "weightGrams must be 1..=70000", Some("weightGrams"));
    }
    if [r.parcel.length_cm, r.parcel.width_cm, r.parcel.height_cm].iter().any(|d| !(1..=300).contains(d)) {
        return bad("invalid_parcel", "parcel dimensions must be 1..=300 cm", Some("parcel"));
    }
    if r.dispatch_token.is_empty() {
        return bad("invalid_dispatch_token", "dispatchToken from the pick list is required", Some("dispatchToken"));
    }
    let order = match deps.orders.get(&r.order_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return error(StatusCode::NOT_FOUND, "dispatch_not_found", "no such dispatch for this warehouse", None),
        Err(e) => return internal(e),
    };
    // Another warehouse's dispatch is indistinguishable from a missing one.
    let Some(dispatch) = order.dispatches.iter().find(|d| d.dispatch_id == r.dispatch_id && d.warehouse == warehouse) else {
        return error(StatusCode::NOT_FOUND, "dispatch_not_found", "no such dispatch for this warehouse", None);
    };
    let Some(token_hash) = issued_token(&order, &dispatch.dispatch_id, &r.dispatch_token) else {
        return token_mismatch();
    };
    // Parcel ids are the warehouse's own: two warehouses may both call theirs "P1" (#10 item 9). The
    // order keeps the first under its own id and any other warehouse's under `<warehouse>:<id>`.
    let sid = match order.shipments.get(&r.shipment_id) {
        Some(s) if s.warehouse != warehouse => format!("{warehouse}:{}", r.shipment_id),
        _ => r.shipment_id.clone(),
    };
    let mut merged: std::collections::BTreeMap<String, i64> = Default::default();
    for l in &r.lines {
        *merged.entry(l.sku.clone()).or_default() += l.quantity;
    }
    let lines: Vec<ShipLine> = merged.iter().map(|(s, q)| ShipLine { sku: s.clone(), quantity: *q }).collect();
    // Open = the dispatch's lines minus what earlier parcels of it (other ids) reported.
    for l in &lines {
        let Some(ordered) = dispatch.lines.iter().find(|d| d.sku == l.sku) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "sku_not_in_dispatch", &format!("{} is not on this pick list", l.sku), Some("lines"));
        };
        let reported: i64 = order
            .shipments
            .values()
            .filter(|s| s.dispatch_id == dispatch.dispatch_id && s.shipment_id != sid)
            .flat_map(|s| s.lines.iter().filter(|x| x.sku == l.sku).map(|x| x.quantity))
            .sum();
        if reported + l.quantity > ordered.quantity {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "quantity_exceeds_open",
                &format!("{}: {} open, {} reported", l.sku, ordered.quantity - reported, l.quantity),
                Some("lines"),
            );
        }
    }
    let parcel = Parcel { length_cm: r.parcel.length_cm, width_cm: r.parcel.width_cm, height_cm: r.parcel.height_cm };
    let shipment = Shipment::reported(&sid, &dispatch.dispatch_id, &warehouse, lines, r.weight_grams, parcel, now_rfc3339());
    match deps.orders.add_shipment(&order.order_id, &shipment, &token_hash).await {
        Ok(AddShipment::Added) => {}
        Ok(AddShipment::Exists(prev)) => {
            if prev.warehouse != warehouse {
                // Another warehouse's parcel of the same id was recorded a moment ago: the retry
                // finds it and keeps this one under `<warehouse>:<id>`.
                return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "temporarily unavailable; retry", None);
            }
            if prev.lines != shipment.lines || prev.dispatch_id != shipment.dispatch_id {
                return error(StatusCode::CONFLICT, "shipment_id_reused", "this shipmentId was already reported with other contents", Some("shipmentId"));
            }
            // A retry of a report whose first answer was lost: if the wait is still open, the first
            // attempt may have died before starting the parcel run, so start it again (a second run
            // of the same parcel changes nothing). A wait that is over was ended by the parcel run,
            // or timed out, and then its timeout run processes this recorded answer (end_dispatch).
            let answered_by_this = match deps.orders.get(&order.order_id).await {
                Ok(Some(o)) => o.answered_tokens.get(&token_hash).is_some_and(|sid| *sid == prev.shipment_id),
                Ok(None) => false,
                Err(e) => return internal(e),
            };
            if answered_by_this {
                match run_parcel(&deps, &order.order_id, &dispatch.dispatch_id, &r.dispatch_token, json!({"shipmentId": prev.shipment_id})).await {
                    Ok(_) => {}
                    Err(e) => return internal(e),
                }
            }
            return (StatusCode::OK, [("idempotent-replayed", "true")], axum::Json(json!({"shipment_id": r.shipment_id, "status": "accepted"})))
                .into_response();
        }
        Ok(AddShipment::TokenAnswered) => {
            return error(
                StatusCode::CONFLICT,
                "dispatch_not_awaiting",
                "this pick list's token was already answered; report against the latest pick list",
                Some("dispatchToken"),
            );
        }
        Ok(AddShipment::NotShippable(st)) => {
            return error(StatusCode::CONFLICT, "order_not_shippable", &format!("the order is {}; it takes no shipments", st.as_str()), None);
        }
        Err(e) => return internal(e),
    }
    // The parcel run for this answer: started here, once the wait is known to be open. A token
    // that is no longer waiting (already used by another parcel, or timed out) means this report
    // answers nothing: take it back. A transient failure keeps the record: the warehouse's retry
    // of the same report is then a replay that starts the run again, and if no retry comes the
    // wait's own timeout run finds this recorded answer and processes it (end_dispatch).
    match run_parcel(&deps, &order.order_id, &dispatch.dispatch_id, &r.dispatch_token, json!({"shipmentId": shipment.shipment_id})).await {
        Ok(true) => {}
        Ok(false) => {
            if let Err(e) = deps.orders.remove_shipment(&order.order_id, &shipment.shipment_id, &token_hash).await {
                return internal(e);
            }
            tracing::warn!(order_id = %order.order_id, shipment_id = %shipment.shipment_id, "shipment report for a dispatch that is not waiting");
            return error(
                StatusCode::CONFLICT,
                "dispatch_not_awaiting",
                "this pick list's token was already answered or has expired; report against the latest pick list",
                Some("dispatchToken"),
            );
        }
        Err(e) => return internal(e),
    }
    tracing::info!(order_id = %order.order_id, shipment_id = %shipment.shipment_id, %warehouse, "shipment accepted");
    (StatusCode::ACCEPTED, axum::Json(json!({"shipment_id": r.shipment_id, "status": "accepted"}))).into_response()
}

/// Start the parcel run for a warehouse's answer to a pick list, once its wait is known to be open
/// (a heartbeat on the token: a free call that changes nothing). The run's first state answers the
/// token, so the Standard wait bills one state; should the wait time out between the heartbeat and
/// that answer, its timeout run finds the recorded answer and processes it (end_dispatch), and the
/// two runs' steps are idempotent. Ok(false): the wait is over (answered, timed out or gone) and
/// nothing was started.
pub(crate) async fn run_parcel(deps: &Deps, order_id: &str, dispatch_id: &str, token: &str, answer: Value) -> Result<bool, StepError> {
    match deps.workflows.task_heartbeat(token).await {
        Ok(()) => {}
        Err(StepError::InvalidState(_)) | Err(StepError::InvalidInput(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let input = json!({"orderId": order_id, "dispatch": {"dispatchId": dispatch_id}, "shipment": answer, "taskToken": token});
    deps.workflows.start_parcel(order_id, &input).await?;
    Ok(true)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    pub purchase_order_id: String,
    pub warehouse: String,
    pub sku: String,
    pub quantity: i64,
}

async fn receive_stock(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let warehouse = match warehouse_of(&deps, &headers).await {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    let r: Receipt = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad("invalid_body", &format!("not a receipt: {e}"), None),
    };
    if r.warehouse != warehouse {
        return error(StatusCode::NOT_FOUND, "unknown_purchase_order", "no such open purchase order for this warehouse", None);
    }
    if !(1..=1_000_000).contains(&r.quantity) {
        return bad("invalid_quantity", "quantity must be 1..=1000000", Some("quantity"));
    }
    match deps.stock.receive_purchase_order(&r.purchase_order_id, &r.sku, &warehouse, r.quantity).await {
        Ok(ReceiveOutcome::Received) => {
            tracing::info!(po_id = %r.purchase_order_id, sku = %r.sku, %warehouse, quantity = r.quantity, "stock received");
            (StatusCode::OK, axum::Json(json!({"purchase_order_id": r.purchase_order_id, "status": "received"}))).into_response()
        }
        Ok(ReceiveOutcome::AlreadyReceived) => {
            (StatusCode::OK, [("idempotent-replayed", "true")], axum::Json(json!({"purchase_order_id": r.purchase_order_id, "status": "received"})))
                .into_response()
        }
        Ok(ReceiveOutcome::UnknownPurchaseOrder) => {
            error(StatusCode::NOT_FOUND, "unknown_purchase_order", "no such open purchase order for this warehouse", None)
        }
        Err(e) => internal(e),
    }
}

/// A webhook signing secret; while it cannot be read the sender is told to retry (503).
async fn signing_secret(source: &SecretSource) -> Result<orderflow_shared::env::Secret, Response> {
    source.get().await.map_err(internal)
}

fn secrets(s: &str) -> Vec<&str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect()
}

/// Record (once per event id) and queue a verified event; answer at once.
async fn intake(deps: &Deps, source: &str, event_id: &str, event: Value) -> Response {
    let marker = format!("webhook:{source}:{event_id}");
    match deps.once.begin(&marker).await {
        Ok(OnceClaim::Go) => {}
        // Queued before: the sender may stop retrying.
        Ok(OnceClaim::AlreadyDone) => {
            return (StatusCode::OK, axum::Json(json!({"received": true, "duplicate": true}))).into_response();
        }
        // Another delivery of it is being taken in right now and has not queued it yet; if that one
        // dies, only a retry can bring the event back, so the sender must keep retrying (Stripe and
        // EasyPost retry any non-2xx). A claim left by a dead delivery is taken over after its lease.
        Ok(OnceClaim::InProgress) => {
            return error(StatusCode::CONFLICT, "event_in_progress", "another delivery of this event is being taken in; retry later", None);
        }
        Err(e) => return internal(e),
    }
    let msg = json!({"source": source, "eventId": event_id, "receivedAt": now_rfc3339(), "event": event});
    if let Err(e) = deps.queue.send(&deps.webhook_events_queue_url, &msg).await {
        let _ = deps.once.forget(&marker).await;
        return internal(e);
    }
    if let Err(e) = deps.once.finish(&marker).await {
        return internal(e);
    }
    tracing::info!(%source, %event_id, "webhook queued");
    (StatusCode::OK, axum::Json(json!({"received": true}))).into_response()
}

fn signature_error(e: orderflow_shared::webhooks::SignatureError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = if status == StatusCode::BAD_REQUEST { "malformed_signature" } else { "invalid_signature" };
    error(status, code, &e.to_string(), None)
}

async fn carrier_webhook(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(header) = headers.get("x-hmac-signature").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "malformed_signature", "X-Hmac-Signature header is required", None);
    };
    let secret = match signing_secret(&deps.carrier_webhook_secret).await {
        Ok(s) => s,
        Err(unavailable) => return unavailable,
    };
    if let Err(e) = verify_carrier(header, &body, &secrets(secret.expose())) {
        return signature_error(e);
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("invalid_body", &format!("not JSON: {e}"), None),
    };
    // EasyPost sends every event type (batch, scan form, refund, ...) to one URL and retries any
    // non-2xx for days: what we do not use is acknowledged and ignored, not refused.
    let description = event["description"].as_str().unwrap_or("");
    if !description.starts_with("tracker.") {
        tracing::info!(event_id = event["id"].as_str().unwrap_or(""), description, "carrier event not used; acknowledged");
        return (StatusCode::OK, axum::Json(json!({"received": true, "ignored": description}))).into_response();
    }
    let (Some(id), Some(_code), Some(_status)) = (event["id"].as_str(), event["result"]["tracking_code"].as_str(), event["result"]["status"].as_str()) else {
        return bad("invalid_event", "expected a tracker event with id, result.tracking_code and result.status", None);
    };
    let id = id.to_string();
    intake(&deps, "carrier", &id, event).await
}

async fn gateway_webhook(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(header) = headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "malformed_signature", "Stripe-Signature header is required", None);
    };
    let secret = match signing_secret(&deps.gateway_webhook_secret).await {
        Ok(s) => s,
        Err(unavailable) => return unavailable,
    };
    if let Err(e) = verify_stripe(header, &body, &secrets(secret.expose()), chrono::Utc::now().timestamp(), WEBHOOK_TOLERANCE_SECONDS) {
        return signature_error(e);
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("invalid_body", &format!("not JSON: {e}"), None),
    };
    let (Some(id), Some(_ty)) = (event["id"].as_str(), event["type"].as_str()) else {
        return bad("invalid_event", "expected an event with id and type", None);
    };
    let id = id.to_string();
    intake(&deps, "gateway", &id, event).await
}
