//! The operator API a store loads and keeps its data with (all with the operator token):
//!
//! - `PUT /ops/catalog/{sku}` `{name, unit_price_minor, weight_grams, active?}`: add or change a
//!   product. Orders already placed keep the prices they were placed with (DATA-2).
//! - `POST /ops/stock/{sku}/adjustments` `{warehouse, delta, reason}` with an `Idempotency-Key`
//!   (and `X-Operator`, who made it): units found (+) or written off (-), once per key, never
//!   below what is reserved or allocated, on the SKU's audit trail (DATA-1).
//! - `GET /ops/stock/{sku}`: network counts, each warehouse's stock and the audit trail.
//! - `PUT /ops/stock/{sku}/warehouses/{id}/reorder` `{point, quantity}`: the supplier reorder rule.
//! - `PUT /ops/rates/{country}` `{currency, shipping, tax_rate, tax_shipping?}`.
//! - `PUT /ops/warehouses/{id}` `{name, address, zones}`: only warehouses the stack has a pick-list
//!   queue for (the template's `WarehouseIds`), so an order is never routed where no one reads.
//!
//! PUTs are idempotent by nature (the same body leaves the same state). Errors are
//! `{"error": {"code", "message", "field"?}}`; bad input is always a 4xx.

// A handler's refusal is the Response it answers with; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use orderflow_shared::domain::checkout::Invalid;
use orderflow_shared::domain::order::now_rfc3339;
use orderflow_shared::domain::store_data::{self as data, Adjustment};
use orderflow_shared::http::{error, ops_authorized};
use orderflow_shared::ports::{AdjustOutcome, Catalog, StockLedger};
use orderflow_shared::secrets::SecretSource;
use orderflow_shared::{ConfigError, Env, StepError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub catalog: Arc<dyn Catalog>,
    pub stock: Arc<dyn StockLedger>,
    pub ops_api_token: Arc<SecretSource>,
    /// Warehouse id -> its pick-list queue URL: the warehouses this stack can dispatch to.
    pub warehouse_queue_urls: BTreeMap<String, String>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            catalog: w.catalog()?,
            stock: w.stock()?,
            ops_api_token: Arc::new(w.env.secret("OPS_API_TOKEN")?),
            warehouse_queue_urls: w.env.warehouse_queue_urls()?,
        })
    }
}

pub type AppState = Arc<Deps>;

pub fn router(deps: AppState) -> Router {
    Router::new()
        .route("/ops/catalog/{sku}", put(put_catalog))
        .route("/ops/stock/{sku}", get(get_stock))
        .route("/ops/stock/{sku}/adjustments", post(post_adjustment))
        .route("/ops/stock/{sku}/warehouses/{warehouse}/reorder", put(put_reorder))
        .route("/ops/rates/{country}", put(put_rates))
        .route("/ops/warehouses/{id}", put(put_warehouse))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route", None) })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route", None) })
        .layer(axum::middleware::from_fn(orderflow_shared::http::body_cap))
        .with_state(deps)
}

/// Feed an API Gateway (HTTP API v2) event through the router (the local stack's API port).
pub async fn invoke_apigw(deps: AppState, payload: Value) -> Result<Value, StepError> {
    orderflow_shared::http::invoke_apigw(router(deps), payload).await
}

fn invalid(i: Invalid) -> Response {
    error(StatusCode::BAD_REQUEST, i.code, &i.message, i.field.as_deref())
}

fn internal(e: StepError) -> Response {
    orderflow_shared::http::internal(e, "")
}

/// Parse a JSON body into `T`, or the 400 that says what was expected.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_request", &format!("expected {expected}: {e}"), None))
}

/// Authorize, parse and validate: the common front of every write here.
async fn accept<T: serde::de::DeserializeOwned, V>(
    deps: &Deps,
    headers: &HeaderMap,
    bytes: &[u8],
    expected: &str,
    check: impl FnOnce(T) -> Result<V, Invalid>,
) -> Result<V, Response> {
    ops_authorized(&deps.ops_api_token, headers).await?;
    check(body(bytes, expected)?).map_err(invalid)
}

async fn put_catalog(State(deps): State<AppState>, Path(sku): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let expected = "{\"name\", \"unit_price_minor\", \"weight_grams\", \"active\"?}";
    let item = match accept(&deps, &headers, &bytes, expected, |p| data::catalog_item(&sku, p)).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match deps.catalog.put_item(&item).await {
        Ok(()) => {
            tracing::info!(sku = %item.sku, unit_price_minor = item.unit_price_minor, active = item.active, "catalog item saved");
            (StatusCode::OK, Json(json!(item))).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn get_stock(State(deps): State<AppState>, Path(sku): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = ops_authorized(&deps.ops_api_token, &headers).await {
        return r;
    }
    if !data::is_identifier(&sku) {
        return error(StatusCode::NOT_FOUND, "sku_not_found", "no stock for this SKU", None);
    }
    let warehouses: Vec<String> = deps.warehouse_queue_urls.keys().cloned().collect();
    let (level, per_wh, trail) =
        match tokio::try_join!(deps.stock.level(&sku), deps.stock.warehouse_stock(std::slice::from_ref(&sku), &warehouses), deps.stock.adjustments(&sku)) {
            Ok(v) => v,
            Err(e) => return internal(e),
        };
    let Some(l) = level else { return error(StatusCode::NOT_FOUND, "sku_not_found", "no stock for this SKU", None) };
    let by_wh: BTreeMap<&String, Value> = per_wh
        .iter()
        .filter_map(|(wh, m)| m.get(&sku).map(|w| (wh, json!({"available": w.available, "allocated": w.allocated, "shipped": w.shipped}))))
        .collect();
    let adjustments: Vec<Value> = trail
        .iter()
        .map(|a| json!({"warehouse": a.warehouse, "delta": a.delta, "reason": a.reason, "by": a.by, "at": a.at, "idempotency_key": a.idempotency_key}))
        .collect();
    Json(json!({
        "sku": sku,
        "available": l.available, "reserved": l.reserved, "shipped": l.shipped, "received": l.received, "adjusted": l.adjusted,
        "warehouses": by_wh,
        "adjustments": adjustments,
    }))
    .into_response()
}

async fn post_adjustment(State(deps): State<AppState>, Path(sku): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let expected = "{\"warehouse\", \"delta\", \"reason\"}";
    let (warehouse, delta, reason) = match accept(&deps, &headers, &bytes, expected, |r| data::adjustment(&sku, r)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str().map(str::trim)) {
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 && data::is_identifier(&k.replace([':', '.'], "-")) => k.to_string(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "idempotency_key_missing",
                "send an Idempotency-Key header (1-255 letters, digits, '-', '_', ':' or '.'; one per adjustment)",
                Some("Idempotency-Key"),
            )
        }
    };
    if !deps.warehouse_queue_urls.contains_key(&warehouse) {
        return error(StatusCode::BAD_REQUEST, "unknown_warehouse", &format!("no warehouse '{warehouse}' in this stack"), Some("warehouse"));
    }
    match deps.catalog.items(std::slice::from_ref(&sku)).await {
        Ok(found) if found.contains_key(&sku) => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, "unknown_sku", &format!("no catalog item '{sku}'; PUT /ops/catalog/{sku} first"), Some("sku")),
        Err(e) => return internal(e),
    }
    let by = headers.get("x-operator").and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty() && v.len() <= 100).unwrap_or("ops-api");
    let request_hash = hex::encode(Sha256::digest(format!("{sku}\n{warehouse}\n{delta}\n{reason}").as_bytes()));
    let adj = Adjustment { sku: sku.clone(), warehouse, delta, reason, by: by.to_string(), at: now_rfc3339(), idempotency_key: key, request_hash };
    let view = |a: &Adjustment| json!({"sku": a.sku, "warehouse": a.warehouse, "delta": a.delta, "reason": a.reason, "by": a.by, "at": a.at, "idempotency_key": a.idempotency_key});
    match deps.stock.adjust(&adj).await {
        Ok(AdjustOutcome::Applied) => {
            tracing::info!(sku = %adj.sku, warehouse = %adj.warehouse, delta = adj.delta, by = %adj.by, "stock adjusted");
            (StatusCode::CREATED, Json(view(&adj))).into_response()
        }
        Ok(AdjustOutcome::Replayed(before)) if before.request_hash == adj.request_hash => {
            let mut r = (StatusCode::CREATED, Json(view(&before))).into_response();
            r.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
            r
        }
        Ok(AdjustOutcome::Replayed(_)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different adjustment",
            Some("Idempotency-Key"),
        ),
        Ok(AdjustOutcome::Short { free_in_warehouse, free_in_network }) => error(
            StatusCode::CONFLICT,
            "below_reserved",
            &format!(
                "writing off {} would take stock below what orders hold: {free_in_warehouse} free in {}, {free_in_network} free in the network",
                -adj.delta, adj.warehouse
            ),
            Some("delta"),
        ),
        Err(e) => internal(e),
    }
}

async fn put_reorder(State(deps): State<AppState>, Path((sku, warehouse)): Path<(String, String)>, headers: HeaderMap, bytes: Bytes) -> Response {
    let (point, quantity) = match accept(&deps, &headers, &bytes, "{\"point\", \"quantity\"}", data::reorder).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !data::is_identifier(&sku) {
        return error(StatusCode::BAD_REQUEST, "invalid_sku", "a SKU is 1-64 letters, digits, '-' or '_'", Some("sku"));
    }
    if !deps.warehouse_queue_urls.contains_key(&warehouse) {
        return error(StatusCode::NOT_FOUND, "unknown_warehouse", &format!("no warehouse '{warehouse}' in this stack"), Some("warehouse"));
    }
    match deps.stock.set_reorder(&sku, &warehouse, point, quantity).await {
        Ok(()) => Json(json!({"sku": sku, "warehouse": warehouse, "point": point, "quantity": quantity})).into_response(),
        Err(e) => internal(e),
    }
}

async fn put_rates(State(deps): State<AppState>, Path(country): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let expected = "{\"currency\", \"shipping\": {method: {base_minor, per_item_minor, free_over_minor?, transit_days}}, \"tax_rate\", \"tax_shipping\"?}";
    let (currency, rates) = match accept(&deps, &headers, &bytes, expected, |p| data::country_rates(&country, p)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match deps.catalog.put_country_rates(&country, &currency, &rates).await {
        Ok(Ok(())) => {
            Json(json!({"country": country, "currency": currency, "shipping": rates.shipping, "tax_rate": rates.tax_rate, "tax_shipping": rates.tax_shipping}))
                .into_response()
        }
        Ok(Err(store_currency)) => error(
            StatusCode::CONFLICT,
            "currency_mismatch",
            &format!("the store's rates are in {store_currency}; one store has one currency"),
            Some("currency"),
        ),
        Err(e) => internal(e),
    }
}

async fn put_warehouse(State(deps): State<AppState>, Path(id): Path<String>, headers: HeaderMap, bytes: Bytes) -> Response {
    let w = match accept(&deps, &headers, &bytes, "{\"name\", \"address\", \"zones\"}", |p| data::warehouse(&id, p)).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !deps.warehouse_queue_urls.contains_key(&w.id) {
        let known: Vec<&String> = deps.warehouse_queue_urls.keys().collect();
        return error(
            StatusCode::CONFLICT,
            "warehouse_not_deployed",
            &format!("this stack has no pick-list queue for '{}' (it has {known:?}); add its queue to the stack first (README: \"Adding a warehouse\")", w.id),
            None,
        );
    }
    match deps.catalog.put_warehouse(&w).await {
        Ok(()) => Json(json!(w)).into_response(),
        Err(e) => internal(e),
    }
}
