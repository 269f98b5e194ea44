//! The sandbox payment gateway: a Stripe-compatible PaymentIntents subset, enough to exercise the
//! production client for real: manual capture holds, capture (partial), cancel, Idempotency-Key
//! replay / mismatch / in-use semantics, the documented test payment methods, bearer-key auth.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SANDBOX_SECRET_KEY: &str = "sk_test_orderflow_local";
/// The webhook signing secret the partner API is configured with locally.
pub const SANDBOX_WEBHOOK_SECRET: &str = "whsec_gateway_local";
/// Sandbox-only test payment method: a good card whose hold expires one day and HOLD_TAIL_SECONDS
/// from now, so the hold guard (default margin one day) fires within seconds.
pub const PM_HOLD_EXPIRES_SOON: &str = "pm_card_visa_holdExpiresSoon";
pub const HOLD_TAIL_SECONDS: i64 = 15;
/// Stripe's test method whose refunds fail after they were created (card 4000 0000 0000 5126).
pub const PM_REFUND_FAILS: &str = "pm_card_refundFail";

/// Per Idempotency-Key: the request's fingerprint and, once answered, (status, body).
type IdempotencyRecord = (String, Option<(u16, String)>);

#[derive(Default)]
pub struct Gateway {
    pub intents: Mutex<HashMap<String, Value>>,
    idempotency: Mutex<HashMap<String, IdempotencyRecord>>,
    /// Cancel transitions actually performed, per intent (tests check "voided exactly once").
    pub cancels: Mutex<HashMap<String, u32>>,
    pub captures: Mutex<HashMap<String, u32>>,
    /// Every POST that reached the gateway, in arrival order (tests assert on what crossed the wire:
    /// how many requests, with which Idempotency-Key, and which were answered as replays).
    pub requests: Mutex<Vec<GatewayRequest>>,
    /// The account is on standard (blended) pricing: Stripe then never makes multicapture
    /// available, whatever the card. Off by default (an IC+ account).
    pub standard_pricing: std::sync::atomic::AtomicBool,
    /// Where the gateway sends its signed events (the partner API's /webhooks/gateway); empty = none.
    pub webhook_url: Mutex<String>,
    /// Intents whose captures answer 500 `api_error` (an outage a test switches on and off).
    pub failing_captures: Mutex<std::collections::HashSet<String>>,
    http: reqwest::Client,
}

impl Gateway {
    /// Send `payment_intent.<kind>` for the intent's current state.
    fn emit(&self, kind: &str, intent_id: &str) {
        let Some(pi) = self.intents.lock().unwrap().get(intent_id).cloned() else { return };
        self.emit_event(&format!("payment_intent.{kind}"), pi);
    }

    /// Send one event about `object`, signed like Stripe, in the background (as Stripe does: after
    /// the API call answered, at least once, each event on its own, in no guaranteed order).
    fn emit_event(&self, ty: &str, object: Value) {
        let url = self.webhook_url.lock().unwrap().clone();
        if url.is_empty() {
            return;
        }
        let event = json!({
            "id": format!("evt_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]), "object": "event",
            "type": ty, "created": chrono::Utc::now().timestamp(),
            "data": {"object": object}, "livemode": false,
        })
        .to_string();
        let http = self.http.clone();
        tokio::spawn(async move {
            let sig = orderflow_shared::webhooks::sign_stripe(event.as_bytes(), SANDBOX_WEBHOOK_SECRET, chrono::Utc::now().timestamp());
            for _ in 0..3 {
                match http.post(&url).header("Stripe-Signature", &sig).header("content-type", "application/json").body(event.clone()).send().await {
                    Ok(r) if r.status().is_success() => return,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                }
            }
        });
    }

    pub fn intents_for_order(&self, order_id: &str) -> Vec<Value> {
        self.intents.lock().unwrap().values().filter(|pi| pi["metadata"]["order_id"] == order_id).cloned().collect()
    }
    pub fn capture_count(&self, intent_id: &str) -> u32 {
        self.captures.lock().unwrap().get(intent_id).copied().unwrap_or(0)
    }
    pub fn cancel_count(&self, intent_id: &str) -> u32 {
        self.cancels.lock().unwrap().get(intent_id).copied().unwrap_or(0)
    }
}

/// One request as it crossed the wire.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    pub path: String,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the form body.
    pub body_sha256: String,
    /// `metadata[order_id]` of a create, else the intent the path names.
    pub subject: String,
    /// Answered from the idempotency store (the first answer again).
    pub replayed: bool,
    pub status: u16,
}

impl Gateway {
    /// The POSTs about an order: its creates (by metadata) and every call on its intents.
    pub fn requests_for_order(&self, order_id: &str) -> Vec<GatewayRequest> {
        let intents: Vec<String> = self.intents_for_order(order_id).iter().filter_map(|pi| pi["id"].as_str().map(String::from)).collect();
        self.requests.lock().unwrap().iter().filter(|r| r.subject == order_id || intents.contains(&r.subject)).cloned().collect()
    }
}

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create).get(list))
        .route("/v1/payment_intents/search", get(search))
        .route("/v1/payment_intents/{id}", get(retrieve))
        .route("/v1/payment_intents/{id}/capture", post(capture))
        .route("/v1/payment_intents/{id}/cancel", post(cancel))
        .route("/v1/refunds", post(refund))
        .route("/v1/payment_methods/{id}", get(payment_method))
        .with_state(gw)
}

fn stripe_error(status: StatusCode, kind: &str, code: &str, message: &str, extra: Value) -> (u16, Value) {
    let mut e = json!({"type": kind, "code": code, "message": message});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            e[k] = v;
        }
    }
    (status.as_u16(), json!({ "error": e }))
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {SANDBOX_SECRET_KEY}"))
}

fn reply((status, body): (u16, Value), replayed: bool) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), [("content-type", "application/json")], body.to_string()).into_response();
    if replayed {
        r.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
    }
    r
}

/// Run a POST under Stripe's idempotency rules: same key + same params -> the first response;
/// same key + other params -> 400 idempotency_error; same key while the first runs -> 409.
fn idempotent(gw: &Gateway, headers: &HeaderMap, path: &str, body: &[u8], op: impl FnOnce() -> (u16, Value)) -> Response {
    let response = idempotent_inner(gw, headers, path, body, op);
    let subject = match path.strip_prefix("/v1/payment_intents/") {
        Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
        None => serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "metadata[order_id]")
            .map(|(_, v)| v)
            .unwrap_or_default(),
    };
    gw.requests.lock().unwrap().push(GatewayRequest {
        path: path.to_string(),
        idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(String::from),
        body_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body)),
        subject,
        replayed: response.headers().contains_key("idempotent-replayed"),
        status: response.status().as_u16(),
    });
    response
}

fn idempotent_inner(gw: &Gateway, headers: &HeaderMap, path: &str, body: &[u8], op: impl FnOnce() -> (u16, Value)) -> Response {
    if !authorized(headers) {
        return reply(stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "api_key_invalid", "Invalid API Key provided", json!({})), false);
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(String::from);
    let Some(key) = key else { return reply(op(), false) };
    if key.len() > 255 {
        return reply(
            stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "idempotency_key_too_long",
                "Idempotency-Key is longer than 255 characters",
                json!({}),
            ),
            false,
        );
    }
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest([path.as_bytes(), b"\n", body].concat()));
    {
        let mut map = gw.idempotency.lock().unwrap();
        match map.get(&key) {
            Some((fp, _)) if *fp != fingerprint => {
                return reply(
                    stripe_error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        json!({}),
                    ),
                    false,
                )
            }
            Some((_, Some(done))) => return reply((done.0, serde_json::from_str(&done.1).unwrap_or(Value::Null)), true),
            Some((_, None)) => {
                return reply(
                    stripe_error(
                        StatusCode::CONFLICT,
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "There is currently another in-progress request using this Idempotent Key.",
                        json!({}),
                    ),
                    false,
                )
            }
            None => {
                map.insert(key.clone(), (fingerprint.clone(), None));
            }
        }
    }
    let (status, value) = op();
    gw.idempotency.lock().unwrap().insert(key, (fingerprint, Some((status, value.to_string()))));
    reply((status, value), false)
}

struct Behaviour {
    outcome: Result<&'static str, (&'static str, &'static str)>,
    risk: &'static str,
    last4: &'static str,
    brand: &'static str,
}

/// Stripe offers multicapture for online card payments on Visa, Mastercard, Amex and Discover.
const MULTICAPTURE_BRANDS: &[&str] = &["visa", "mastercard", "amex", "discover"];
/// Stripe allows at most 50 captures of one PaymentIntent.
const MAX_CAPTURES: u32 = 50;

fn behaviour(pm: &str) -> Option<Behaviour> {
    let card = |risk, last4, brand| Some(Behaviour { outcome: Ok("requires_capture"), risk, last4, brand });
    let ok = |risk, last4| card(risk, last4, "visa");
    let decline = |code, last4, risk| Some(Behaviour { outcome: Err(("card_declined", code)), risk, last4, brand: "visa" });
    match pm {
        "pm_card_visa" | PM_HOLD_EXPIRES_SOON => ok("normal", "4242"),
        PM_REFUND_FAILS => ok("normal", "5126"),
        "pm_card_mastercard" => card("normal", "4444", "mastercard"),
        "pm_card_amex" => card("normal", "8431", "amex"),
        "pm_card_discover" => card("normal", "1117", "discover"),
        // No multicapture for these brands.
        "pm_card_jcb" => card("normal", "0505", "jcb"),
        "pm_card_unionpay" => card("normal", "0005", "unionpay"),
        "pm_card_visa_debit" => ok("normal", "5556"),
        "pm_card_riskLevelElevated" => ok("elevated", "9235"),
        "pm_card_riskLevelHighest" => ok("highest", "4954"),
        "pm_card_chargeDeclined" => decline("generic_decline", "0002", "normal"),
        "pm_card_chargeDeclinedInsufficientFunds" => decline("insufficient_funds", "9995", "normal"),
        "pm_card_chargeDeclinedFraudulent" => decline("fraudulent", "0019", "highest"),
        "pm_card_chargeDeclinedExpiredCard" => decline("expired_card", "0069", "normal"),
        "pm_card_threeDSecure2Required" | "pm_card_authenticationRequired" => {
            Some(Behaviour { outcome: Ok("requires_action"), risk: "normal", last4: "3220", brand: "visa" })
        }
        _ => None,
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default().into_iter().collect()
}

/// The API version a request runs on: its `Stripe-Version` header, else the account's default.
/// The sandbox account was made after 2023-08-16, so its default has automatic payment methods on.
pub const ACCOUNT_DEFAULT_VERSION: &str = "2024-06-20";

/// Stripe refuses a version string it does not know; the sandbox knows the dated form.
fn api_version(headers: &HeaderMap) -> Result<String, (u16, Value)> {
    let v = headers.get("stripe-version").and_then(|v| v.to_str().ok()).unwrap_or(ACCOUNT_DEFAULT_VERSION).to_string();
    let date = v.split('.').next().unwrap_or("");
    let ok = date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() && date >= "2011-01-01";
    if ok {
        Ok(v)
    } else {
        Err(stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "api_version_invalid", &format!("Invalid Stripe API version: {v}"), json!({})))
    }
}

/// From 2023-08-16 on, a PaymentIntent without payment method types has automatic payment methods
/// enabled, and confirming it needs a `return_url`, unless redirects are off or it is off-session.
fn needs_return_url(version: &str, p: &HashMap<String, String>) -> bool {
    let automatic_by_default = version.split('.').next().unwrap_or("") >= "2023-08-16";
    let types_given = p.keys().any(|k| k.starts_with("payment_method_types"));
    let confirming = p.get("confirm").map(String::as_str) == Some("true");
    let redirects_off = p.get("automatic_payment_methods[allow_redirects]").map(String::as_str) == Some("never");
    let automatic = p.get("automatic_payment_methods[enabled]").map(String::as_str) == Some("true") || (automatic_by_default && !types_given);
    confirming && automatic && !redirects_off && !p.contains_key("return_url") && p.get("off_session").map(String::as_str) != Some("true")
}

async fn create(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let version = match api_version(&headers) {
        Ok(v) => v,
        Err(e) => return reply(e, false),
    };
    let g = gw.clone();
    idempotent(&gw, &headers, "/v1/payment_intents", &body.clone(), move || {
        let p = form(&body);
        let amount: i64 = match p.get("amount").and_then(|a| a.parse().ok()) {
            Some(a) if a >= 50 => a,
            _ => {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "amount_too_small",
                    "amount must be an integer of at least 50 minor units",
                    json!({"param": "amount"}),
                )
            }
        };
        let Some(currency) = p.get("currency").filter(|c| c.len() == 3) else {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "Missing required param: currency.",
                json!({"param": "currency"}),
            );
        };
        if needs_return_url(&version, &p) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "This PaymentIntent is configured to accept payment methods enabled in your Dashboard, some of which may require a full page redirect to succeed. If you do not want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents. If you do want to accept redirect-based payment methods, set the `return_url` parameter when confirming a PaymentIntent.",
                json!({"param": "return_url"}),
            );
        }
        let pm = p.get("payment_method").cloned().unwrap_or_default();
        let Some(b) = behaviour(&pm) else {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "resource_missing",
                &format!("No such PaymentMethod: '{pm}'"),
                json!({"param": "payment_method"}),
            );
        };
        let manual = p.get("capture_method").map(String::as_str) == Some("manual");
        let id = format!("pi_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let charge_id = format!("ch_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let now = chrono::Utc::now().timestamp();
        let fingerprint = card_fingerprint(&b);
        let metadata: serde_json::Map<String, Value> =
            p.iter().filter_map(|(k, v)| k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')).map(|k| (k.to_string(), json!(v)))).collect();
        // Multicapture only when asked for at creation, on an IC+ account, for a brand that has it.
        let asked = p.get("payment_method_options[card][request_multicapture]").map(String::as_str) == Some("if_available");
        let ic_plus = !g.standard_pricing.load(std::sync::atomic::Ordering::Relaxed);
        let multicapture = if asked && ic_plus && MULTICAPTURE_BRANDS.contains(&b.brand) { "available" } else { "unavailable" };
        let charge = json!({
            "id": charge_id, "object": "charge", "amount": amount, "currency": currency,
            "outcome": {"risk_level": b.risk, "type": if b.outcome.is_ok() { "authorized" } else { "issuer_declined" }},
            "payment_method_details": {"type": "card", "card": {"brand": b.brand, "last4": b.last4, "fingerprint": fingerprint, "multicapture": {"status": multicapture}, "capture_before": if pm == PM_HOLD_EXPIRES_SOON { now + 86_400 + HOLD_TAIL_SECONDS } else { now + 7 * 86_400 }}}
        });
        let (status, capturable, received) = match b.outcome {
            Ok("requires_capture") if manual => ("requires_capture", amount, 0),
            Ok("requires_capture") => ("succeeded", 0, amount),
            Ok(other) => (other, 0, 0),
            Err(_) => ("requires_payment_method", 0, 0),
        };
        let mut pi = json!({
            "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": capturable, "amount_received": received,
            "currency": currency, "status": status, "capture_method": if manual { "manual" } else { "automatic" },
            "payment_method": pm, "metadata": metadata, "created": now, "latest_charge": charge,
        });
        g.intents.lock().unwrap().insert(id.clone(), pi.clone());
        let expand = p.get("expand[]").map(String::as_str) == Some("latest_charge") || p.get("expand[0]").map(String::as_str) == Some("latest_charge");
        if !expand {
            pi["latest_charge"] = json!(charge_id);
        }
        match b.outcome {
            Err((code, decline_code)) => stripe_error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                code,
                "Your card was declined.",
                json!({"decline_code": decline_code, "payment_intent": pi}),
            ),
            Ok(_) => (200, pi),
        }
    })
}

async fn retrieve(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&headers) {
        return reply(stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "api_key_invalid", "Invalid API Key provided", json!({})), false);
    }
    match gw.intents.lock().unwrap().get(&id) {
        Some(pi) => reply((200, pi.clone()), false),
        None => reply(
            stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", &format!("No such payment_intent: '{id}'"), json!({})),
            false,
        ),
    }
}

/// Stripe's card fingerprint identifies the card number: every PaymentMethod made from one card
/// has the same. The sandbox's cards differ by brand and last four digits.
fn card_fingerprint(b: &Behaviour) -> String {
    format!("fp_{}", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{}:{}", b.brand, b.last4).as_bytes()))[..16])
}

/// `GET /v1/payment_methods/{id}`: the PaymentMethod as Stripe returns it (type card, with the
/// card's brand, last4 and fingerprint); an unknown id is 404 resource_missing.
async fn payment_method(headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&headers) {
        return reply(stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "api_key_invalid", "Invalid API Key provided", json!({})), false);
    }
    if let Err(e) = api_version(&headers) {
        return reply(e, false);
    }
    let Some(b) = behaviour(&id) else {
        return reply(
            stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", &format!("No such PaymentMethod: '{id}'"), json!({"param": "id"})),
            false,
        );
    };
    let pm = json!({
        "id": id, "object": "payment_method", "type": "card", "created": chrono::Utc::now().timestamp(), "customer": null, "livemode": false, "metadata": {},
        "billing_details": {"address": null, "email": null, "name": null, "phone": null},
        "card": {"brand": b.brand, "last4": b.last4, "exp_month": 12, "exp_year": 2034, "funding": "credit", "country": "US", "fingerprint": card_fingerprint(&b)}
    });
    reply((200, pm), false)
}

/// `query=metadata['order_id']:'ord_...'` (the one search form we support).
/// `GET /v1/payment_intents` as Stripe's List API answers it: `created[gte|gt|lte|lt]`, `limit`
/// (1-100, default 10), `starting_after`; newest first; `has_more`.
async fn list(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !authorized(&headers) {
        return reply(stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "api_key_invalid", "Invalid API Key provided", json!({})), false);
    }
    if let Err(e) = api_version(&headers) {
        return reply(e, false);
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => {
            return reply(
                stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_integer",
                    "Invalid integer: limit",
                    json!({"param": "limit"}),
                ),
                false,
            )
        }
    };
    let mut all: Vec<Value> = gw
        .intents
        .lock()
        .unwrap()
        .values()
        .filter(|pi| {
            let c = pi["created"].as_i64().unwrap_or(0);
            num("created[gte]").is_none_or(|v| c >= v)
                && num("created[gt]").is_none_or(|v| c > v)
                && num("created[lte]").is_none_or(|v| c <= v)
                && num("created[lt]").is_none_or(|v| c < v)
        })
        .cloned()
        .collect();
    all.sort_by(|a, b| b["created"].as_i64().cmp(&a["created"].as_i64()).then_with(|| b["id"].as_str().cmp(&a["id"].as_str())));
    if let Some(after) = q.get("starting_after") {
        match all.iter().position(|pi| pi["id"] == after.as_str()) {
            Some(i) => all = all.split_off(i + 1),
            None => {
                return reply(
                    stripe_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "resource_missing",
                        &format!("No such payment_intent: '{after}'"),
                        json!({"param": "starting_after"}),
                    ),
                    false,
                )
            }
        }
    }
    let has_more = all.len() > limit;
    all.truncate(limit);
    for pi in all.iter_mut() {
        if let Some(id) = pi["latest_charge"]["id"].as_str().map(String::from) {
            pi["latest_charge"] = json!(id);
        }
    }
    reply((200, json!({"object": "list", "url": "/v1/payment_intents", "data": all, "has_more": has_more})), false)
}

async fn search(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !authorized(&headers) {
        return reply(stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "api_key_invalid", "Invalid API Key provided", json!({})), false);
    }
    let query = q.get("query").cloned().unwrap_or_default();
    let wanted = query.strip_prefix("metadata['order_id']:'").and_then(|r| r.strip_suffix('\'')).unwrap_or("").to_string();
    let data = gw.intents_for_order(&wanted);
    reply((200, json!({"object": "search_result", "data": data, "has_more": false})), false)
}

fn unexpected(pi: &Value, action: &str) -> (u16, Value) {
    let st = pi["status"].as_str().unwrap_or("");
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "payment_intent_unexpected_state",
        &format!("You cannot {action} this PaymentIntent because it has a status of {st}."),
        json!({"payment_intent": pi}),
    )
}

async fn capture(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = capture_inner(gw.clone(), headers, id.clone(), body).await;
    if r.status().is_success() && r.headers().get("idempotent-replayed").is_none() {
        let done = gw.intents.lock().unwrap().get(&id).is_some_and(|pi| pi["status"] == "succeeded");
        gw.emit(if done { "succeeded" } else { "amount_capturable_updated" }, &id);
    }
    r
}

async fn capture_inner(gw: Arc<Gateway>, headers: HeaderMap, id: String, body: Bytes) -> Response {
    if gw.failing_captures.lock().unwrap().contains(&id) {
        return reply(
            stripe_error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "api_error", "An error occurred with our connection to Stripe.", json!({})),
            false,
        );
    }
    let g = gw.clone();
    let path = format!("/v1/payment_intents/{id}/capture");
    idempotent(&gw, &headers, &path, &body.clone(), move || {
        let p = form(&body);
        let mut intents = g.intents.lock().unwrap();
        let Some(pi) = intents.get_mut(&id) else {
            return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", &format!("No such payment_intent: '{id}'"), json!({}));
        };
        if pi["status"] == "succeeded" {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "charge_already_captured",
                "This PaymentIntent has already been captured.",
                json!({"payment_intent": pi.clone()}),
            );
        }
        if pi["status"] != "requires_capture" {
            return unexpected(pi, "capture");
        }
        let capturable = pi["amount_capturable"].as_i64().unwrap_or(0);
        let amount = p.get("amount_to_capture").and_then(|a| a.parse::<i64>().ok()).unwrap_or(capturable);
        if amount <= 0 || amount > capturable {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "amount_too_large",
                "amount_to_capture must be positive and at most amount_capturable",
                json!({"param": "amount_to_capture"}),
            );
        }
        if pi["latest_charge"]["payment_method_details"]["card"]["capture_before"].as_i64().is_some_and(|cb| cb < chrono::Utc::now().timestamp()) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "charge_expired_for_capture",
                "The hold on this PaymentIntent has expired.",
                json!({"payment_intent": pi.clone()}),
            );
        }
        // Multicapture: `final_capture=false` keeps the rest held; otherwise (or when nothing is
        // left) the intent succeeds and the rest of the hold is released. Stripe refuses
        // final_capture=false on a charge without multicapture, and a 51st capture.
        let keep_rest = p.get("final_capture").map(String::as_str) == Some("false");
        if keep_rest && pi["latest_charge"]["payment_method_details"]["card"]["multicapture"]["status"] != "available" {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_invalid",
                "final_capture=false is only allowed when multicapture is available on the PaymentIntent's charge.",
                json!({"param": "final_capture"}),
            );
        }
        if g.captures.lock().unwrap().get(&id).copied().unwrap_or(0) >= MAX_CAPTURES {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_invalid",
                "A PaymentIntent can be captured at most 50 times.",
                json!({}),
            );
        }
        let received = pi["amount_received"].as_i64().unwrap_or(0) + amount;
        let left = capturable - amount;
        pi["amount_received"] = json!(received);
        if keep_rest && left > 0 {
            pi["amount_capturable"] = json!(left);
        } else {
            pi["status"] = json!("succeeded");
            pi["amount_capturable"] = json!(0);
        }
        *g.captures.lock().unwrap().entry(id.clone()).or_default() += 1;
        (200, pi.clone())
    })
}

async fn cancel(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = cancel_inner(gw.clone(), headers, id.clone(), body).await;
    if r.status().is_success() && r.headers().get("idempotent-replayed").is_none() {
        gw.emit("canceled", &id);
    }
    r
}

async fn cancel_inner(gw: Arc<Gateway>, headers: HeaderMap, id: String, body: Bytes) -> Response {
    let g = gw.clone();
    let path = format!("/v1/payment_intents/{id}/cancel");
    idempotent(&gw, &headers, &path, &body.clone(), move || {
        let mut intents = g.intents.lock().unwrap();
        let Some(pi) = intents.get_mut(&id) else {
            return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", &format!("No such payment_intent: '{id}'"), json!({}));
        };
        match pi["status"].as_str() {
            Some("requires_capture") | Some("requires_payment_method") | Some("requires_action") | Some("requires_confirmation") => {
                pi["status"] = json!("canceled");
                pi["amount_capturable"] = json!(0);
                pi["cancellation_reason"] = json!("requested_by_customer");
                *g.cancels.lock().unwrap().entry(id.clone()).or_default() += 1;
                (200, pi.clone())
            }
            _ => unexpected(pi, "cancel"),
        }
    })
}

/// `POST /v1/refunds` as Stripe answers it: `payment_intent`, `amount` (default: all that is left),
/// `reason` only one of Stripe's three, never more in total than was captured.
async fn refund(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = api_version(&headers) {
        return reply(e, false);
    }
    let g = gw.clone();
    idempotent(&gw, &headers, "/v1/refunds", &body.clone(), move || {
        let p = form(&body);
        if let Some(reason) = p.get("reason") {
            if !["duplicate", "fraudulent", "requested_by_customer"].contains(&reason.as_str()) {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_string",
                    "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                    json!({"param": "reason"}),
                );
            }
        }
        let Some(pi_id) = p.get("payment_intent") else {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "Missing required param: payment_intent.",
                json!({"param": "payment_intent"}),
            );
        };
        let mut intents = g.intents.lock().unwrap();
        let Some(pi) = intents.get_mut(pi_id) else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                &format!("No such payment_intent: '{pi_id}'"),
                json!({"param": "payment_intent"}),
            );
        };
        let received = pi["amount_received"].as_i64().unwrap_or(0);
        let refunded = pi["amount_refunded"].as_i64().unwrap_or(0);
        if received <= 0 {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "charge_not_captured",
                "This PaymentIntent has no captured funds to refund.",
                json!({}),
            );
        }
        if refunded >= received {
            return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "charge_already_refunded", "Charge has already been refunded.", json!({}));
        }
        let amount = p.get("amount").and_then(|a| a.parse::<i64>().ok()).unwrap_or(received - refunded);
        if amount <= 0 || refunded + amount > received {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "amount_too_large",
                &format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({})", received - refunded),
                json!({"param": "amount"}),
            );
        }
        pi["amount_refunded"] = json!(refunded + amount);
        let metadata: serde_json::Map<String, Value> =
            p.iter().filter_map(|(k, v)| k.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_string(), json!(v)))).collect();
        let charge = &pi["latest_charge"];
        let re = json!({
            "id": format!("re_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]), "object": "refund", "amount": amount,
            "charge": charge["id"], "currency": pi["currency"], "payment_intent": pi_id, "reason": p.get("reason"), "metadata": metadata,
            "status": "succeeded", "created": chrono::Utc::now().timestamp(),
        });
        // The charge carries the PaymentIntent's metadata (Stripe copies it when the charge is made).
        let refunded_charge = json!({
            "id": charge["id"], "object": "charge", "payment_intent": pi_id, "amount_captured": received,
            "amount_refunded": refunded + amount, "refunded": refunded + amount == received, "metadata": pi["metadata"],
        });
        let fails_later = pi["payment_method"] == PM_REFUND_FAILS;
        drop(intents);
        g.emit_event("refund.created", re.clone());
        g.emit_event("charge.refunded", refunded_charge);
        if fails_later {
            g.fail_refund_later(pi_id.clone(), re.clone());
        }
        (200, re)
    })
}

impl Gateway {
    /// Stripe's `pm_card_refundFail` (4000 0000 0000 5126): the refund is created `succeeded`, then
    /// fails asynchronously; Stripe gives the amount back to the charge and sends `refund.updated`
    /// and `refund.failed`.
    fn fail_refund_later(self: &Arc<Self>, pi_id: String, mut re: Value) {
        let g = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if let Some(pi) = g.intents.lock().unwrap().get_mut(&pi_id) {
                let refunded = pi["amount_refunded"].as_i64().unwrap_or(0);
                pi["amount_refunded"] = json!(refunded - re["amount"].as_i64().unwrap_or(0));
            }
            re["status"] = json!("failed");
            re["failure_reason"] = json!("expired_or_canceled_card");
            g.emit_event("refund.updated", re.clone());
            g.emit_event("refund.failed", re);
        });
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_confirm_needs_a_return_url_from_2023_08_16_unless_redirects_cannot_happen() {
        let bare = params(&[("confirm", "true"), ("payment_method", "pm_card_visa")]);
        assert!(!needs_return_url("2023-08-15", &bare), "before the change, card-only by default");
        assert!(needs_return_url("2023-08-16", &bare));
        assert!(needs_return_url("2025-03-31.basil", &bare));
        let mut cards = bare.clone();
        cards.insert("payment_method_types[]".into(), "card".into());
        assert!(!needs_return_url("2024-06-20", &cards));
        let mut no_redirects = bare.clone();
        no_redirects.insert("automatic_payment_methods[enabled]".into(), "true".into());
        no_redirects.insert("automatic_payment_methods[allow_redirects]".into(), "never".into());
        assert!(!needs_return_url("2024-06-20", &no_redirects));
        let mut off = bare.clone();
        off.insert("off_session".into(), "true".into());
        assert!(!needs_return_url("2024-06-20", &off));
        let mut not_confirming = bare;
        not_confirming.remove("confirm");
        assert!(!needs_return_url("2024-06-20", &not_confirming));
    }

    #[test]
    fn the_version_is_the_header_or_the_account_default_and_nonsense_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(api_version(&h).unwrap(), ACCOUNT_DEFAULT_VERSION);
        h.insert("stripe-version", "2025-03-31.basil".parse().unwrap());
        assert_eq!(api_version(&h).unwrap(), "2025-03-31.basil");
        h.insert("stripe-version", "latest".parse().unwrap());
        assert_eq!(api_version(&h).unwrap_err().0, 400);
    }
}
