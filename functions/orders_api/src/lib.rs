//! The orders HTTP API.
//!
//! - `POST /orders` (Idempotency-Key required): validate, price from the catalog, store the order,
//!   run the Express checkout workflow synchronously and answer with its decision.
//! - `GET /orders/{id}` with the order's access token (`Authorization: Bearer <token>`): status,
//!   lines, totals, timeline. Without the right token: 404, never 403 (SEC-1).
//! - `POST /ops/orders/{id}/review` and `GET /ops/orders/{id}` with the operator token;
//!   `GET /ops/orders?status=|email=` lists the orders that need someone (listing.rs).
//!
//! Every error is JSON `{"error": {"code", "message", "field"?}}` with a stable code; bad input is
//! always a 4xx.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use orderflow_shared::domain::checkout::{carries_card_number, parse_body, validate, Invalid, MAX_BODY_BYTES};
use orderflow_shared::domain::order::{is_order_id, new_order_id, now_rfc3339, Order, OrderStatus, TimelineEntry};
use orderflow_shared::domain::pricing::{quote, PricingError};
use orderflow_shared::money::Money;
use orderflow_shared::ports::Claim;
use orderflow_shared::ports::{Catalog, IdempotencyStore, OrderRepository, Queue, Workflows};
use orderflow_shared::secrets::SecretSource;
use orderflow_shared::{ConfigError, Env, StepError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub catalog: Arc<dyn Catalog>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub workflows: Arc<dyn Workflows>,
    pub ops_api_token: Arc<SecretSource>,
    /// Cancel requests go to the warehouses holding an order's pick lists.
    pub queue: Arc<dyn Queue>,
    pub warehouse_queue_urls: std::collections::BTreeMap<String, String>,
    /// Recorded refunds go to refund_payment through this queue.
    pub refunds_queue_url: String,
    /// The API answers before API Gateway's 30 s integration timeout and its own 29 s Lambda
    /// timeout (`CHECKOUT_BUDGET_SECONDS`, 25): a checkout still running then is answered 202
    /// PENDING and the claim stays open for the retry.
    pub checkout_budget: std::time::Duration,
    /// How long after its parcel's delivery a unit may be returned (`RETURN_WINDOW_DAYS`, a store setting).
    pub return_window_days: i64,
    /// Checkout attempts per email / shopper IP per hour before 429 (`CHECKOUT_ATTEMPTS_PER_HOUR`).
    pub velocity: Arc<dyn orderflow_shared::ports::VelocityCounter>,
    pub checkout_attempts_per_hour: u32,
    /// The dead-letter queues operators may redrive, by name (`DEAD_LETTER_QUEUES`).
    pub dead_letter_queues: std::collections::BTreeMap<String, dead_letters::DeadLetterQueue>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            catalog: w.catalog()?,
            idempotency: w.idempotency()?,
            workflows: Arc::new(w.returns_starter()?.starting_checkout(w.env.require("CHECKOUT_STATE_MACHINE_ARN")?)),
            ops_api_token: Arc::new(w.env.secret("OPS_API_TOKEN")?),
            queue: w.queue_on_first_use(),
            warehouse_queue_urls: w.env.warehouse_queue_urls()?,
            refunds_queue_url: w.queue_url("REFUNDS_QUEUE_URL")?,
            checkout_budget: std::time::Duration::from_secs(w.env.parse("CHECKOUT_BUDGET_SECONDS")?),
            return_window_days: w.env.parse("RETURN_WINDOW_DAYS")?,
            dead_letter_queues: w.env.json("DEAD_LETTER_QUEUES")?,
            velocity: w.velocity()?,
            checkout_attempts_per_hour: w.env.parse("CHECKOUT_ATTEMPTS_PER_HOUR")?,
        })
    }
}

pub type AppState = Arc<Deps>;

mod attempts;
mod cancel;
mod dead_letters;
mod listing;
mod refunds;
mod returns;
mod uncharged;

pub fn router(deps: AppState) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/ops/orders", get(listing::ops_list))
        .route("/ops/orders/{id}", get(ops_get_order))
        .route("/ops/orders/{id}/review", post(ops_review))
        .route("/orders/{id}/cancel", post(cancel::customer_cancel))
        .route("/ops/orders/{id}/cancel", post(cancel::ops_cancel))
        .route("/ops/orders/{id}/refunds", post(refunds::ops_refund))
        .route("/orders/{id}/returns", post(returns::customer_return))
        .route("/ops/orders/{id}/uncharged", post(uncharged::ops_uncharged))
        .route("/ops/dead-letters/{queue}/redrive", post(dead_letters::ops_redrive))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route", None) })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route", None) })
        .layer(axum::middleware::from_fn(orderflow_shared::http::body_cap))
        .with_state(deps)
}

/// Feed an API Gateway (HTTP API v2) event through the router (the local stack's API port).
pub async fn invoke_apigw(deps: AppState, payload: Value) -> Result<Value, StepError> {
    orderflow_shared::http::invoke_apigw(router(deps), payload).await
}

pub use orderflow_shared::http::error;
use orderflow_shared::http::{bearer, const_eq};

pub(crate) fn invalid(i: Invalid) -> (StatusCode, Value) {
    let mut e = json!({"code": i.code, "message": i.message});
    if let Some(f) = i.field {
        e["field"] = json!(f);
    }
    (StatusCode::BAD_REQUEST, json!({ "error": e }))
}

fn money_json(m: &Money) -> Value {
    json!(m.minor)
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What the storefront sees of an order. Fraud scores and reasons are for operators only: telling a
/// fraudster which rule fired teaches them to avoid it.
pub fn customer_view(order: &Order) -> Value {
    let reason = customer_reason(order);
    // Operators' business (fraud signals, the review, suppressed emails, the refund ledger's entries,
    // which have their own section) stays off the customer's timeline, and only the carrier's words
    // about a parcel keep their detail: every other detail may carry gateway codes, internal error
    // text or operators' notes (OPS-2). An allowlist, so a new event is private until chosen.
    let timeline: Vec<Value> = order
        .timeline
        .iter()
        .filter(|t| {
            !(t.event.starts_with("fraud")
                || t.event.starts_with("refund_")
                || t.event.starts_with("uncharged_")
                || matches!(t.event.as_str(), "under_review" | "email_skipped" | "awaiting_review"))
        })
        .map(|t| {
            let detail = if t.event.starts_with("tracking_") { t.detail.clone() } else { None };
            json!({"at": t.at, "event": t.event, "detail": detail})
        })
        .collect();
    let t = &order.totals;
    let mut v = json!({
        "order_id": order.order_id,
        "status": order.status.as_str(),
        "reason": reason,
        "lines": order.lines.iter().map(|l| json!({"sku": l.sku, "name": l.name, "quantity": l.quantity, "unit_price": money_json(&l.unit_price), "line_total": money_json(&l.line_total)})).collect::<Vec<_>>(),
        "totals": {"currency": t.currency().as_str(), "subtotal": money_json(&t.subtotal), "shipping": money_json(&t.shipping), "tax": money_json(&t.tax), "total": money_json(&t.total)},
        "shipping_method": order.shipping_method,
        "estimated_delivery": order.estimated_delivery,
        "timeline": timeline,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    });
    if !order.shipments.is_empty() {
        v["shipments"] = json!(order
            .shipments
            .values()
            .map(|s| json!({
                "shipment_id": s.shipment_id,
                "lines": s.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity})).collect::<Vec<_>>(),
                "carrier": s.carrier, "tracking_code": s.tracking_code, "tracking_url": s.tracking_url,
                "tracking_status": s.tracking_status,
            }))
            .collect::<Vec<_>>());
    }
    if let Some(p) = order.payment.as_ref().filter(|p| p.captured_minor > 0) {
        v["charged"] = money_json(&orderflow_shared::money::Money::new(p.captured_minor, p.amount_authorized.currency));
    }
    if !order.refunds.is_empty() {
        // Each refund's amount and state; never the operator's reason or note (OPS-2).
        v["refunds"] =
            json!(order.refunds.values().map(|r| json!({"amount": r.amount_minor, "status": r.status, "requested_at": r.requested_at})).collect::<Vec<_>>());
        v["refunded"] = json!(order.refunded_minor);
    }
    if !order.returns.is_empty() {
        v["returns"] = json!(order.returns.values().map(returns::view).collect::<Vec<_>>());
    }
    if order.status == OrderStatus::OutOfStock {
        v["out_of_stock"] =
            json!(order.stock_shortage.iter().map(|s| json!({"sku": s.sku, "requested": s.requested, "available": s.available})).collect::<Vec<_>>());
    }
    v
}

/// The reason a customer reads: a fixed text or code, never the stored reason of a failure (it holds
/// the failed step's error text) nor anything that is not a plain reason code.
fn customer_reason(order: &Order) -> Option<String> {
    let stored = order.status_reason.as_deref().unwrap_or_default();
    match order.status {
        OrderStatus::Rejected => Some("payment_rejected".to_string()),
        OrderStatus::Declined => Some(decline_message(stored).to_string()),
        OrderStatus::UnderReview => Some("the order is being reviewed; we will email you".to_string()),
        OrderStatus::Failed => Some("we could not complete this order; we have emailed you, and nothing was charged for what did not ship".to_string()),
        _ => (!stored.is_empty() && stored.len() <= 40 && stored.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then(|| stored.to_string()),
    }
}

/// What a customer reads about a declined card: what to do, never the gateway's decline code or
/// message (OPS-2; operators see those in GET /ops/orders/{id}). The codes are Stripe's.
pub fn decline_message(gateway_reason: &str) -> &'static str {
    let code = |c: &str| gateway_reason.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).any(|w| w == c);
    if code("insufficient_funds") {
        "The card has insufficient funds. Use another card."
    } else if code("expired_card") {
        "The card has expired. Use another card."
    } else if code("incorrect_cvc") || code("invalid_cvc") {
        "The card's security code is incorrect. Check it and try again."
    } else if code("authentication_required") {
        "The card's bank requires authentication (3-D Secure), which this checkout cannot complete. Use another card."
    } else {
        "The card was declined. Use another card or contact the card's bank."
    }
}

fn decision_status(status: OrderStatus) -> StatusCode {
    match status {
        // An order confirmed at checkout that a replay finds already further along is still "created".
        OrderStatus::Confirmed | OrderStatus::PartiallyShipped | OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::PartiallyFulfilled => {
            StatusCode::CREATED
        }
        OrderStatus::UnderReview | OrderStatus::Pending => StatusCode::ACCEPTED,
        OrderStatus::Declined | OrderStatus::Rejected => StatusCode::PAYMENT_REQUIRED,
        OrderStatus::OutOfStock => StatusCode::CONFLICT,
        OrderStatus::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        // Only a replay can find an order already cancelled.
        OrderStatus::Cancelled => StatusCode::OK,
    }
}

async fn place_order(State(deps): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_BODY_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()), None);
    }
    let key = match headers.get("idempotency-key").map(|v| v.to_str().map(str::trim)) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "idempotency_key_missing",
                "send an Idempotency-Key header (a unique value per checkout attempt)",
                Some("Idempotency-Key"),
            )
        }
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        Some(_) => {
            return error(StatusCode::BAD_REQUEST, "idempotency_key_invalid", "Idempotency-Key must be 1-255 visible ASCII characters", Some("Idempotency-Key"))
        }
    };
    // Before anything is parsed, logged or stored.
    if carries_card_number(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            "card_number_rejected",
            "card numbers are never accepted; tokenize the card with the payment gateway and send its payment_method token",
            None,
        );
    }
    let request_hash = sha256_hex(&body);
    let order_id = new_order_id();
    let access_token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let claim = match deps.idempotency.claim(&key, &request_hash, &order_id, &access_token).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    match claim {
        Claim::Existing(rec) if rec.request_hash != request_hash => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
                Some("Idempotency-Key"),
            );
        }
        Claim::Existing(rec) => {
            return match rec.response {
                Some((status, body)) => replayed((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)),
                // The first request has not answered. If its order is already decided (its answer
                // was lost: a timeout, a killed function), answer about that order (IDEM-4).
                None => match decided(&deps, &rec.order_id, rec.access_token.as_deref()).await {
                    Some((status, view)) => {
                        let text = view.to_string();
                        let _ = deps.idempotency.complete(&key, status.as_u16(), &text).await;
                        replayed((status, text))
                    }
                    None if lease_expired(rec.claimed_at) => take_over(&deps, &key, &rec, &body).await,
                    None => error(
                        StatusCode::CONFLICT,
                        "idempotency_key_in_use",
                        "a request with this Idempotency-Key is still being processed; retry shortly",
                        Some("Idempotency-Key"),
                    ),
                },
            };
        }
        Claim::Won => {}
    }
    // Card testing: too many attempts for this email or from this address -> 429, nothing held; the
    // key is let go so the same request may be retried after the wait.
    if let Some(refused) = attempts::over_limit(&deps, &order_id, &headers, &body).await {
        let _ = deps.idempotency.abandon(&key).await;
        return refused;
    }
    // Every log line of this order's checkout carries its id.
    let span = tracing::info_span!("place_order", order_id = %order_id);
    let mut started = false;
    let result = tracing::Instrument::instrument(checkout(&deps, &order_id, &access_token, &body, &mut started), span).await;
    finish(&deps, &key, &order_id, result, started).await
}

/// How long a claim's first request may take before a retry may take it over: the Express
/// checkout's maximum (its TimeoutSeconds, 300 s) plus the API's own budget, so a takeover never
/// races a checkout that is still alive (IDEM-4).
pub const CLAIM_LEASE_SECONDS: i64 = 300 + 30;

fn lease_expired(claimed_at: i64) -> bool {
    chrono::Utc::now().timestamp() - claimed_at > CLAIM_LEASE_SECONDS
}

/// A retry finds the key's first request never answered and its lease gone (the function was
/// killed): continue the same order, under the same id and access token. Exactly one retry wins
/// the takeover; the others are told the key is in use.
async fn take_over(deps: &Deps, key: &str, rec: &orderflow_shared::ports::IdempotencyRecord, body: &[u8]) -> Response {
    match deps.idempotency.take_over(key, rec.claimed_at).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; retry shortly",
                Some("Idempotency-Key"),
            )
        }
        Err(e) => return internal(e),
    }
    let order_id = rec.order_id.clone();
    let token = rec.access_token.clone().unwrap_or_default();
    tracing::warn!(order_id = %order_id, "taking over a claim whose first request never answered");
    let span = tracing::info_span!("place_order", order_id = %order_id);
    let result = match deps.orders.get(&order_id).await {
        // Killed before the order was written: run the whole checkout under the claim's id.
        Ok(None) => tracing::Instrument::instrument(checkout(deps, &order_id, &token, body, &mut false), span).await,
        // Killed while the checkout ran: run it again (every step is idempotent per order).
        Ok(Some(_)) => tracing::Instrument::instrument(run_and_answer(deps, &order_id, &token), span).await,
        Err(e) => Err(e),
    };
    finish(deps, key, &order_id, result, true).await
}

/// Record the answer on the claim (unless the checkout is still running) and send it; on an error,
/// forget the key only if no order was made under it.
async fn finish(deps: &Deps, key: &str, order_id: &str, result: Result<(StatusCode, Value), StepError>, started: bool) -> Response {
    match result {
        Ok((status, value)) => {
            let text = value.to_string();
            // A checkout still running past the budget is answered 202 PENDING; the claim stays
            // open so a retry answers the decided order.
            if value["status"] != "PENDING" {
                if let Err(e) = deps.idempotency.complete(key, status.as_u16(), &text).await {
                    tracing::error!(order_id = %order_id, error = %e, "could not record the idempotent response");
                }
            }
            (status, [("content-type", "application/json")], text).into_response()
        }
        Err(e) => {
            // Forget the key only if no order was made under it: once an order id exists for the
            // key, every retry answers about that order, never a second order with a second hold.
            match deps.orders.get(order_id).await {
                Ok(None) => {
                    let _ = deps.idempotency.abandon(key).await;
                }
                Ok(Some(_)) | Err(_) => {
                    tracing::warn!(order_id = %order_id, "checkout failed after the order was made; the key stays with it");
                    // Nothing was started for the order (its write failed after taking effect): the
                    // client's retry may continue it at once instead of waiting out the lease.
                    if !started {
                        if let Err(e) = deps.idempotency.release_lease(key).await {
                            tracing::warn!(%order_id, error = %e, "could not release the claim's lease; a retry waits for it");
                        }
                    }
                }
            }
            internal(e)
        }
    }
}

fn replayed((status, body): (StatusCode, String)) -> Response {
    let mut r = (status, [("content-type", "application/json")], body).into_response();
    r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

/// The answer about an order made under a key whose first request never answered: only once the
/// checkout decided it (PENDING means a checkout is still running, or was killed mid-way and is
/// the sweeper's to finish).
async fn decided(deps: &Deps, order_id: &str, access_token: Option<&str>) -> Option<(StatusCode, Value)> {
    let order = deps.orders.get(order_id).await.ok()??;
    if order.status == OrderStatus::Pending {
        return None;
    }
    Some(checkout_answer(&order, access_token))
}

/// The answer to POST /orders about an order: its customer view, the access token and its link,
/// with the status code of its decision.
fn checkout_answer(order: &Order, access_token: Option<&str>) -> (StatusCode, Value) {
    let mut view = customer_view(order);
    if let Some(t) = access_token {
        view["access_token"] = json!(t);
    }
    view["links"] = json!({"self": format!("/orders/{}", order.order_id)});
    (decision_status(order.status), view)
}

pub(crate) fn internal(e: StepError) -> Response {
    orderflow_shared::http::internal(e, " with the same Idempotency-Key")
}

/// `started` turns true once the checkout workflow may be running for the order.
async fn checkout(deps: &Deps, order_id: &str, access_token: &str, body: &[u8], started: &mut bool) -> Result<(StatusCode, Value), StepError> {
    let valid = match parse_body(body).and_then(validate) {
        Ok(v) => v,
        Err(i) => return Ok(invalid(i)),
    };
    // One set of limits at the door: with three or more warehouses routing's transaction is the
    // tighter one (#10 item 10).
    let limit = orderflow_shared::domain::checkout::max_distinct_skus(deps.warehouse_queue_urls.len());
    let distinct: std::collections::BTreeSet<&str> = valid.lines.iter().map(|l| l.sku.as_str()).collect();
    if distinct.len() > limit {
        return Ok(invalid(Invalid {
            code: "too_many_skus",
            field: Some("lines".into()),
            message: format!("an order has at most {limit} different SKUs in this store, got {}", distinct.len()),
        }));
    }
    let skus: Vec<String> = valid.lines.iter().map(|l| l.sku.clone()).collect();
    let catalog = deps.catalog.items(&skus).await?;
    let rates = deps.catalog.rates().await?;
    let q = match quote(&valid.lines, &catalog, &rates, &valid.shipping_address.country, &valid.shipping_method, chrono::Utc::now().date_naive()) {
        Ok(q) => q,
        Err(e) => {
            let (code, field) = match &e {
                PricingError::UnknownSku { index, .. } => ("unknown_sku", Some(format!("lines[{index}].sku"))),
                PricingError::UnsupportedDestination(_) => ("unsupported_destination", Some("shipping_address.country".into())),
                PricingError::UnsupportedShippingMethod { .. } => ("unsupported_shipping_method", Some("shipping_method".into())),
                PricingError::Overflow => ("order_too_large", None),
                PricingError::BadCurrency(_) => return Err(StepError::Internal(e.to_string())),
            };
            return Ok(invalid(Invalid { code, field, message: e.to_string() }));
        }
    };
    let now = now_rfc3339();
    let order = Order {
        order_id: order_id.to_string(),
        status: OrderStatus::Pending,
        status_reason: None,
        customer_email: valid.email,
        shipping_address: valid.shipping_address,
        billing_address: valid.billing_address,
        shipping_method: valid.shipping_method,
        lines: q.lines,
        totals: q.totals,
        estimated_delivery: q.estimated_delivery,
        payment_method: valid.payment_method,
        notes: valid.notes,
        access_token_sha256: sha256_hex(access_token.as_bytes()),
        payment: None,
        fraud: None,
        stock_shortage: vec![],
        review_task_token: None,
        dispatches: vec![],
        shipments: Default::default(),
        answered_tokens: Default::default(),
        issued_tokens: Default::default(),
        cancel: None,
        review_decision: None,
        dispatch_ends: Default::default(),
        refunds: Default::default(),
        refunded_minor: 0,
        refunded_units: Default::default(),
        returns: Default::default(),
        return_seq: 0,
        collection: None,
        timeline: vec![TimelineEntry::now("order_received", None)],
        created_at: now.clone(),
        updated_at: now,
    };
    deps.orders.create(&order).await?;
    tracing::info!(order_id, total_minor = order.totals.total.minor, "order received; running checkout");
    *started = true;
    run_and_answer(deps, order_id, access_token).await
}

/// Run the order's checkout workflow (within the API's budget) and answer with the order as it
/// stands.
async fn run_and_answer(deps: &Deps, order_id: &str, access_token: &str) -> Result<(StatusCode, Value), StepError> {
    let run = tokio::time::timeout(deps.checkout_budget, deps.workflows.run_checkout(order_id, &json!({"orderId": order_id}))).await;
    let run = match run {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(order_id, "checkout still running at the API's budget; answering 202 PENDING");
            Ok(orderflow_shared::ports::SyncExecution { status: "RUNNING".into(), error: None, cause: None, output: None })
        }
    };
    match run {
        Ok(exec) if exec.status != "SUCCEEDED" && exec.status != "RUNNING" => {
            // The workflow compensates and records its own failures; a failed execution here means
            // a compensation itself failed (alarmed). Report the order as it stands.
            tracing::error!(order_id, status = %exec.status, error = ?exec.error, cause = ?exec.cause, "checkout execution did not succeed");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(order_id, error = %e, "could not run checkout");
            let _ = deps
                .orders
                .transition(
                    order_id,
                    OrderStatus::Failed,
                    Some("checkout_unavailable".into()),
                    TimelineEntry::now("failed", Some("checkout workflow could not be started".into())),
                )
                .await;
            return Err(e);
        }
    }
    let stored = deps.orders.get(order_id).await?.ok_or_else(|| StepError::Internal("order vanished".into()))?;
    Ok(checkout_answer(&stored, Some(access_token)))
}

async fn get_order(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "order_not_found", "no order with this id for this access token", None);
    let Some(token) = bearer(&headers) else { return not_found() };
    if !is_order_id(&id) {
        return not_found();
    }
    match deps.orders.get_for_view(&id).await {
        Ok(Some(order)) if const_eq(&order.access_token_sha256, &sha256_hex(token.as_bytes())) => {
            (StatusCode::OK, axum::Json(customer_view(&order))).into_response()
        }
        Ok(_) => not_found(),
        Err(e) => internal(e),
    }
}

pub(crate) async fn ops_authorized(deps: &Deps, headers: &HeaderMap) -> Result<(), Response> {
    orderflow_shared::http::ops_authorized(&deps.ops_api_token, headers).await
}

async fn ops_get_order(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    match deps.orders.get_for_view(&id).await {
        Ok(Some(order)) => {
            let mut v = customer_view(&order);
            v["reason"] = json!(order.status_reason);
            v["fraud"] = json!(order.fraud);
            v["payment"] = json!(order.payment.as_ref().map(|p| json!({
                "intent_id": p.intent_id, "status": p.status, "amount_authorized": p.amount_authorized.minor, "risk_level": p.risk_level,
                "captured": p.captured_minor, "capture_before": p.capture_before, "settled": p.settled,
                "gateway_status": p.gateway_status, "gateway_received": p.gateway_received_minor,
            })));
            // Operators see where each parcel is and what it was charged.
            v["dispatches"] = json!(order.dispatches);
            v["shipments"] = json!(order.shipments.values().collect::<Vec<_>>());
            v["timeline"] = json!(order.timeline);
            v["customer_email"] = json!(order.customer_email);
            v["cancel"] = json!(order.cancel);
            v["refunds"] = json!(order.refunds);
            v["returns"] = json!(order.returns);
            v["collection"] = json!(order.collection);
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewDecision {
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

async fn ops_review(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let d: ReviewDecision = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("expected {{\"decision\": \"approve\"|\"reject\", \"note\"?: string}}: {e}"),
                None,
            )
        }
    };
    if d.decision != "approve" && d.decision != "reject" {
        return error(StatusCode::BAD_REQUEST, "invalid_decision", "decision must be approve or reject", Some("decision"));
    }
    let order = match deps.orders.get(&id).await {
        Ok(Some(o)) => o,
        Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order", None),
        Err(e) => return internal(e),
    };
    if order.review_decision.is_some() {
        return error(StatusCode::CONFLICT, "review_already_decided", "this review was already decided", None);
    }
    if order.status != OrderStatus::UnderReview {
        return error(StatusCode::CONFLICT, "review_not_pending", &format!("order is {}, not under review", order.status.as_str()), None);
    }
    let Some(token) = order.review_task_token.as_deref() else {
        return error(StatusCode::CONFLICT, "review_not_ready", "the review task is still being queued; retry in a few seconds", None);
    };
    let note = d.note.unwrap_or_default();
    // One decision takes effect (OPS-1): the first conditional write wins; a cancel excludes it.
    let event = TimelineEntry::now("review_decided", Some(format!("{} {}", d.decision, note).trim().to_string()));
    match deps.orders.record_review_decision(&id, &d.decision, event).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::CONFLICT, "review_already_decided", "this review was already decided (or the order cancelled)", None),
        Err(e) => return internal(e),
    }
    match deps.workflows.send_task_success(token, &json!({"decision": d.decision, "note": note, "orderId": id})).await {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({"order_id": id, "decision": d.decision}))).into_response(),
        Err(e) => {
            tracing::warn!(order_id = %id, error = %e, "review decision not accepted by the workflow");
            error(StatusCode::CONFLICT, "review_already_decided", "the workflow is no longer waiting for this review", None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_map_to_statuses() {
        assert_eq!(decision_status(OrderStatus::Confirmed), StatusCode::CREATED);
        assert_eq!(decision_status(OrderStatus::OutOfStock), StatusCode::CONFLICT);
        assert_eq!(decision_status(OrderStatus::Declined), StatusCode::PAYMENT_REQUIRED);
    }

    #[test]
    fn decline_messages_never_carry_the_gateway_code() {
        for reason in [
            "insufficient_funds (card_declined): Your card has insufficient funds.",
            "card_declined: Your card was declined.",
            "expired_card: x",
            "weird_code: y",
        ] {
            let m = decline_message(reason);
            assert!(!m.contains('_'), "{m}");
        }
        assert!(decline_message("insufficient_funds (card_declined): no").contains("insufficient funds"));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(const_eq("abc", "abc"));
        assert!(!const_eq("abc", "abd"));
        assert!(!const_eq("abc", "ab"));
    }
}
