//! The sandbox carrier: an EasyPost-shaped subset (create a shipment with rates, buy a rate -> tracking
//! code, label and tracker; API key as basic-auth user; Idempotency-Key replays), and a tracker that
//! walks a parcel through pre_transit -> in_transit -> out_for_delivery -> delivered, sending signed
//! `tracker.updated` webhooks (`X-Hmac-Signature`) to the partner API. Walking is automatic on a
//! timer (the demo) or driven by a test's commands, which can also send duplicates, stale events
//! and exceptions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SANDBOX_CARRIER_KEY: &str = "EZTK_orderflow_local";
pub const SANDBOX_CARRIER_WEBHOOK_SECRET: &str = "whsec_carrier_local";

pub struct Carrier {
    pub shipments: Mutex<HashMap<String, Value>>,
    idempotency: Mutex<HashMap<String, (u16, Value)>>,
    /// Labels bought, per our shipment reference (tests check "one label per parcel").
    pub labels: Mutex<HashMap<String, u32>>,
    /// Where tracking webhooks go (the partner API's /webhooks/carrier).
    pub webhook_url: Mutex<String>,
    /// Walk trackers automatically (the demo); tests drive them.
    pub auto_walk: Option<Duration>,
    seq: AtomicU64,
    http: reqwest::Client,
    /// How long each webhook delivery took to be answered, in microseconds (WH-4 figures).
    pub answer_micros: Mutex<Vec<u128>>,
    /// Label refunds asked for: (shipment id, Idempotency-Key), as they crossed the wire.
    pub label_refunds: Mutex<Vec<(String, String)>>,
}

impl Carrier {
    pub fn new(auto_walk: Option<Duration>) -> Carrier {
        Carrier {
            shipments: Default::default(),
            idempotency: Default::default(),
            labels: Default::default(),
            webhook_url: Default::default(),
            auto_walk,
            seq: AtomicU64::new(1),
            http: reqwest::Client::new(),
            answer_micros: Default::default(),
            label_refunds: Default::default(),
        }
    }

    /// A `tracker.updated` event for a tracking code, as the carrier would send it.
    pub fn event(&self, tracking_code: &str, status: &str, updated_at: &str) -> Value {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let msg = match status {
            "pre_transit" => "Shipping label created",
            "in_transit" => "Departed facility",
            "out_for_delivery" => "Out for delivery",
            "delivered" => "Delivered, front door",
            "failure" => "Delivery attempted: address not accessible",
            "return_to_sender" => "Returned to sender",
            _ => "Status update",
        };
        json!({
            "id": format!("evt_{:06}{}", n, &uuid::Uuid::new_v4().simple().to_string()[..10]),
            "object": "Event", "description": "tracker.updated", "mode": "test",
            "result": {
                "id": format!("trk_{tracking_code}"), "object": "Tracker", "tracking_code": tracking_code, "status": status,
                "updated_at": updated_at, "carrier": "USPS", "public_url": public_url(tracking_code),
                "tracking_details": [{"status": status, "message": msg, "datetime": updated_at}]
            }
        })
    }

    /// Sign and POST an event to the webhook URL; returns the HTTP status.
    pub async fn deliver(&self, event: &Value) -> u16 {
        let body = event.to_string();
        let url = self.webhook_url.lock().unwrap().clone();
        let sig = orderflow_shared::webhooks::sign_carrier(body.as_bytes(), SANDBOX_CARRIER_WEBHOOK_SECRET);
        let started = std::time::Instant::now();
        let status = match self.http.post(url).header("content-type", "application/json").header("X-Hmac-Signature", sig).body(body).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        self.answer_micros.lock().unwrap().push(started.elapsed().as_micros());
        status
    }

    /// Deliver an event until the partner API accepts it, as EasyPost does: any answer but a 2xx (or
    /// none) is retried with backoff.
    pub async fn deliver_until_accepted(&self, event: &Value) -> u16 {
        let mut status = 0;
        for attempt in 0..20u32 {
            status = self.deliver(event).await;
            if (200..300).contains(&status) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500 << attempt.min(4))).await;
        }
        status
    }

    /// Move a tracker to `status` now (a test's command) and send the webhook.
    pub async fn advance(&self, tracking_code: &str, status: &str) -> u16 {
        for s in self.shipments.lock().unwrap().values_mut().filter(|s| s["tracking_code"] == tracking_code) {
            s["tracker"]["status"] = json!(status);
        }
        let ev = self.event(tracking_code, status, &now());
        self.deliver(&ev).await
    }

    /// Deliver the same event `n` times, all at once (a carrier retrying, WH-2); the HTTP statuses.
    pub async fn deliver_duplicates(&self, event: &Value, n: usize) -> Vec<u16> {
        futures::future::join_all((0..n).map(|_| self.deliver(event))).await
    }

    /// Walk a tracker through `statuses` (timestamps in walk order, a second apart) but deliver the
    /// events in `delivery_order` (indexes into `statuses`): out-of-order delivery (WH-3).
    pub async fn deliver_out_of_order(&self, tracking_code: &str, statuses: &[&str], delivery_order: &[usize]) -> Vec<u16> {
        let start = chrono::Utc::now() - chrono::Duration::seconds(statuses.len() as i64);
        let events: Vec<Value> = statuses
            .iter()
            .enumerate()
            .map(|(i, st)| self.event(tracking_code, st, &(start + chrono::Duration::seconds(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
            .collect();
        let mut out = vec![];
        for i in delivery_order {
            out.push(self.deliver(&events[*i]).await);
        }
        out
    }

    pub fn tracking_codes_for(&self, reference: &str) -> Vec<String> {
        self.shipments.lock().unwrap().values().filter(|s| s["reference"] == reference).filter_map(|s| s["tracking_code"].as_str().map(String::from)).collect()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn public_url(code: &str) -> String {
    format!("https://track.sandbox-carrier.local/{code}")
}

impl Carrier {
    /// Labels bought for a reference (`<order>/<shipment>`); the lock is not held past the read.
    pub fn labels_for(&self, reference: &str) -> Option<u32> {
        self.labels.lock().unwrap_or_else(|e| e.into_inner()).get(reference).copied()
    }
}

pub fn router(c: Arc<Carrier>) -> Router {
    Router::new().route("/v2/shipments", post(create)).route("/v2/shipments/{id}/buy", post(buy)).route("/v2/shipments/{id}/refund", post(refund)).with_state(c)
}

fn err(status: StatusCode, code: &str, message: &str) -> (u16, Value) {
    (status.as_u16(), json!({"error": {"code": code, "message": message}}))
}

fn authorized(headers: &HeaderMap) -> bool {
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SANDBOX_CARRIER_KEY}:")));
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn reply((status, body): (u16, Value)) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response()
}

/// Same key -> the first answer (our client derives keys from its shipment id).
fn idempotent(c: &Carrier, headers: &HeaderMap, op: impl FnOnce() -> (u16, Value)) -> Response {
    if !authorized(headers) {
        return reply(err(StatusCode::UNAUTHORIZED, "APIKEY.INVALID", "invalid API key"));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(String::from);
    if let Some(k) = &key {
        if let Some(done) = c.idempotency.lock().unwrap().get(k) {
            let mut r = reply(done.clone());
            r.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
            return r;
        }
    }
    let out = op();
    if let Some(k) = key {
        if out.0 < 500 {
            c.idempotency.lock().unwrap().insert(k, out.clone());
        }
    }
    reply(out)
}

async fn create(State(c): State<Arc<Carrier>>, headers: HeaderMap, body: Bytes) -> Response {
    let cc = c.clone();
    idempotent(&c, &headers, move || {
        let Ok(v) = serde_json::from_slice::<Value>(&body) else { return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.INVALID_PARAMS", "body is not JSON") };
        let s = &v["shipment"];
        for field in ["to_address", "from_address", "parcel"] {
            if !s[field].is_object() {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.INVALID_PARAMS", &format!("{field} is required"));
            }
        }
        let ounces = s["parcel"]["weight"].as_f64().unwrap_or(0.0);
        if ounces <= 0.0 {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.INVALID_PARAMS", "parcel.weight must be positive");
        }
        // Like USPS: nothing over 70 lb (1120 oz) gets a label.
        if ounces > 1120.0 {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.PARCEL.WEIGHT", "parcel weight exceeds the carrier's 70 lb limit");
        }
        // EasyPost: `is_return` takes the outbound parcel's addresses and swaps them.
        let is_return = match &s["is_return"] {
            Value::Null => false,
            Value::Bool(b) => *b,
            _ => return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.INVALID_PARAMS", "is_return must be a boolean"),
        };
        let (to, from) = if is_return { (&s["from_address"], &s["to_address"]) } else { (&s["to_address"], &s["from_address"]) };
        let id = format!("shp_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        let rate = |service: &str, cents: u32| json!({"id": format!("rate_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]), "shipment_id": id, "carrier": "USPS", "service": service, "rate": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"});
        let shipment = json!({
            "id": id, "object": "Shipment", "mode": "test", "reference": s["reference"], "to_address": to,
            "from_address": from, "is_return": is_return, "refund_status": null, "parcel": s["parcel"], "rates": [rate("Ground", 750), rate("Express", 2450)],
            "tracking_code": null, "postage_label": null, "selected_rate": null, "tracker": null,
        });
        cc.shipments.lock().unwrap().insert(id.clone(), shipment.clone());
        (201, shipment)
    })
}

async fn buy(State(c): State<Arc<Carrier>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let cc = c.clone();
    let bought = {
        let idc = id.clone();
        idempotent(&c, &headers, move || {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut shipments = cc.shipments.lock().unwrap();
            let Some(s) = shipments.get_mut(&idc) else { return err(StatusCode::NOT_FOUND, "SHIPMENT.NOT_FOUND", "no such shipment") };
            if !s["tracking_code"].is_null() {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.POSTAGE.EXISTS", "postage already purchased for this shipment");
            }
            let Some(rate) = s["rates"].as_array().and_then(|r| r.iter().find(|r| r["id"] == v["rate"]["id"])).cloned() else {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.RATE.INVALID", "rate.id is not one of this shipment's rates");
            };
            let n = cc.seq.fetch_add(1, Ordering::SeqCst);
            let code = format!("EZ{:010}", 4_000_000_000u64 + n * 7919 % 1_000_000_000);
            s["tracking_code"] = json!(code);
            s["selected_rate"] = rate;
            s["postage_label"] =
                json!({"object": "PostageLabel", "label_url": format!("https://labels.sandbox-carrier.local/{idc}.png"), "label_file_type": "image/png"});
            s["tracker"] =
                json!({"id": format!("trk_{code}"), "object": "Tracker", "tracking_code": code, "status": "pre_transit", "public_url": public_url(&code)});
            if let Some(r) = s["reference"].as_str() {
                *cc.labels.lock().unwrap().entry(r.to_string()).or_default() += 1;
            }
            (200, s.clone())
        })
    };
    // Only a label bought now starts a walk: a replayed buy must not walk the parcel a second time.
    let fresh = bought.status().is_success() && bought.headers().get("idempotent-replayed").is_none();
    if let (Some(step), true) = (c.auto_walk, fresh) {
        if let Some(code) = c.shipments.lock().unwrap().get(&id).and_then(|s| s["tracking_code"].as_str().map(String::from)) {
            let c2 = c.clone();
            tokio::spawn(async move {
                for status in ["pre_transit", "in_transit", "out_for_delivery", "delivered"] {
                    tokio::time::sleep(step).await;
                    for s in c2.shipments.lock().unwrap().values_mut().filter(|s| s["tracking_code"] == code.as_str()) {
                        s["tracker"]["status"] = json!(status);
                    }
                    let ev = c2.event(&code, status, &now());
                    c2.deliver_until_accepted(&ev).await;
                }
            });
        }
    }
    bought
}

/// EasyPost `POST /shipments/{id}/refund`: an unused label is refunded (`refund_status`
/// `submitted`); one the carrier has scanned (its tracker past `pre_transit`) is `rejected`.
async fn refund(State(c): State<Arc<Carrier>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    c.label_refunds.lock().unwrap().push((id.clone(), key));
    let cc = c.clone();
    idempotent(&c, &headers, move || {
        let mut shipments = cc.shipments.lock().unwrap();
        let Some(s) = shipments.get_mut(&id) else { return err(StatusCode::NOT_FOUND, "SHIPMENT.NOT_FOUND", "no such shipment") };
        if s["tracking_code"].is_null() {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.REFUND.INVALID", "no postage was purchased for this shipment");
        }
        if s["refund_status"].is_null() {
            let scanned = s["tracker"]["status"].as_str().is_some_and(|st| st != "pre_transit" && st != "unknown");
            s["refund_status"] = json!(if scanned { "rejected" } else { "submitted" });
        }
        (200, s.clone())
    })
}
