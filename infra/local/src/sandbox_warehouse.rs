//! The sandbox warehouses: each consumes its pick-list queue the way a warehouse system would and
//! answers through the partner API with its own bearer token. In auto mode (the demo) it packs every
//! open line into one parcel and reports it; in manual mode (tests) it keeps the pick lists for the
//! test to answer (partial parcels, never answering, replays).

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WAREHOUSE_TOKENS: &[(&str, &str)] = &[("wh-east", "wh_east_local_token"), ("wh-west", "wh_west_local_token")];

pub fn token_for(warehouse: &str) -> &'static str {
    WAREHOUSE_TOKENS.iter().find(|(w, _)| *w == warehouse).map(|(_, t)| *t).unwrap_or("")
}

/// A pick list as received: `{type, pickList, dispatchToken}`.
#[derive(Debug, Clone)]
pub struct PickMessage {
    pub body: Value,
}

impl PickMessage {
    pub fn order_id(&self) -> &str {
        self.body["pickList"]["orderId"].as_str().unwrap_or_default()
    }
    pub fn warehouse(&self) -> &str {
        self.body["pickList"]["warehouse"].as_str().unwrap_or_default()
    }
    pub fn dispatch_id(&self) -> &str {
        self.body["pickList"]["dispatchId"].as_str().unwrap_or_default()
    }
    pub fn token(&self) -> &str {
        self.body["dispatchToken"].as_str().unwrap_or_default()
    }
    /// (sku, quantity) still open on this pick list.
    pub fn lines(&self) -> Vec<(String, i64)> {
        self.body["pickList"]["lines"]
            .as_array()
            .map(|a| a.iter().map(|l| (l["sku"].as_str().unwrap_or_default().to_string(), l["quantity"].as_i64().unwrap_or(0))).collect())
            .unwrap_or_default()
    }
    /// The partner API request reporting `lines` as one parcel.
    pub fn report(&self, shipment_id: &str, lines: &[(String, i64)]) -> Value {
        let units: i64 = lines.iter().map(|(_, q)| q).sum();
        json!({
            "orderId": self.order_id(), "dispatchId": self.dispatch_id(), "shipmentId": shipment_id, "dispatchToken": self.token(),
            "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
            "weightGrams": 300 * units.max(1), "parcel": {"lengthCm": 30, "widthCm": 20, "heightCm": 10 + 2 * units.min(50)},
        })
    }
}

pub struct Warehouses {
    pub auto: bool,
    pub api_url: Mutex<String>,
    /// order id -> pick lists received and not yet taken by a test.
    inbox: Mutex<HashMap<String, Vec<PickMessage>>>,
    /// order id -> cancel requests received and not yet taken by a test.
    cancels: Mutex<HashMap<String, Vec<Value>>>,
    /// dispatch id -> the latest pick list received for it (its token answers the dispatch).
    latest: Mutex<HashMap<String, PickMessage>>,
    /// order id -> `return_expected` messages received and not yet taken by a test.
    returns: Mutex<HashMap<String, Vec<ReturnExpected>>>,
    /// Auto mode, while `hold` is on: pick lists wait here, as at a warehouse that picks over the
    /// day rather than at once (the bench's checkouts-only phase), and ship when released.
    holding: std::sync::atomic::AtomicBool,
    held: Mutex<Vec<PickMessage>>,
    http: reqwest::Client,
}

impl Warehouses {
    pub fn new(auto: bool) -> Warehouses {
        Warehouses {
            auto,
            api_url: Default::default(),
            inbox: Default::default(),
            cancels: Default::default(),
            latest: Default::default(),
            returns: Default::default(),
            holding: Default::default(),
            held: Default::default(),
            http: reqwest::Client::new(),
        }
    }

    /// Auto mode: keep the pick lists that arrive from now on (nothing ships) until `release`.
    pub fn hold(&self) {
        self.holding.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ship every pick list held since `hold`, and the ones that come after at once again; the
    /// number released.
    pub fn release(self: &Arc<Self>) -> usize {
        self.holding.store(false, std::sync::atomic::Ordering::SeqCst);
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        let n = held.len();
        for msg in held {
            let w = self.clone();
            tokio::spawn(async move { w.take(msg).await });
        }
        n
    }

    /// Wait for the next pick list of an order (optionally from one warehouse).
    pub async fn next_pick_list(&self, order_id: &str, warehouse: Option<&str>, timeout: Duration) -> Option<PickMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut inbox = self.inbox.lock().unwrap();
                if let Some(list) = inbox.get_mut(order_id) {
                    if let Some(i) = list.iter().position(|m| warehouse.is_none_or(|w| m.warehouse() == w)) {
                        return Some(list.remove(i));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for a cancel request for an order (manual mode).
    pub async fn next_cancel_request(&self, order_id: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.cancels.lock().unwrap().get_mut(order_id).and_then(|l| (!l.is_empty()).then(|| l.remove(0))) {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answer a cancel request for the dispatch of `pick` (its latest pick list): "cancelled" or
    /// "too_late"; (status, body).
    pub async fn answer_cancel(&self, pick: &PickMessage, outcome: &str) -> (u16, Value) {
        let body = json!({"orderId": pick.order_id(), "dispatchId": pick.dispatch_id(), "dispatchToken": pick.token(), "outcome": outcome});
        self.send_as(pick.warehouse(), "/warehouse/cancellations", &body).await
    }

    /// POST a shipment report as the message's warehouse; (status, body).
    pub async fn send_report(&self, msg: &PickMessage, report: &Value) -> (u16, Value) {
        self.send_as(msg.warehouse(), "/warehouse/shipments", report).await
    }

    pub async fn send_as(&self, warehouse: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}", self.api_url.lock().unwrap());
        match self.http.post(url).bearer_auth(token_for(warehouse)).json(body).send().await {
            Ok(r) => {
                let st = r.status().as_u16();
                (st, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"error": e.to_string()})),
        }
    }

    /// POST as a warehouse system would in production: a 5xx, a 429 or no answer is retried with
    /// backoff until the API answers (a refusal is final).
    async fn send_until_answered(&self, warehouse: &str, path: &str, body: &Value) -> (u16, Value) {
        let mut last = (0, Value::Null);
        for attempt in 0..8u32 {
            last = self.send_as(warehouse, path, body).await;
            if last.0 != 0 && last.0 != 429 && last.0 < 500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500 << attempt.min(4))).await;
        }
        last
    }

    async fn take(self: &Arc<Self>, msg: PickMessage) {
        if msg.body["type"] == "cancel_request" {
            return self.take_cancel(msg.body).await;
        }
        if msg.body["type"] == "return_expected" {
            return self.take_return(ReturnExpected { body: msg.body }).await;
        }
        self.latest.lock().unwrap().insert(msg.dispatch_id().to_string(), msg.clone());
        if !self.auto {
            self.inbox.lock().unwrap().entry(msg.order_id().to_string()).or_default().push(msg);
            return;
        }
        if self.holding.load(std::sync::atomic::Ordering::SeqCst) {
            let mut held = self.held.lock().unwrap();
            // Checked again under the lock: a release between the two would leave this one behind.
            if self.holding.load(std::sync::atomic::Ordering::SeqCst) {
                held.push(msg);
                return;
            }
        }
        // A moment to "pick and pack", then one parcel with everything open.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report = msg.report(&format!("pkg-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]), &msg.lines());
        let (st, body) = self.send_until_answered(msg.warehouse(), "/warehouse/shipments", &report).await;
        if st >= 300 {
            tracing::warn!(order_id = msg.order_id(), status = st, body = %body, "sandbox warehouse: report refused");
        }
    }
}

impl Warehouses {
    /// A cancel request: kept for the test (manual mode), or answered as a warehouse that ships at
    /// once would (auto mode: its parcel is already out, so "too late").
    async fn take_cancel(self: &Arc<Self>, body: Value) {
        let order_id = body["orderId"].as_str().unwrap_or_default().to_string();
        if !self.auto {
            self.cancels.lock().unwrap().entry(order_id).or_default().push(body);
            return;
        }
        let dispatch = body["dispatchId"].as_str().unwrap_or_default();
        // A cancel can overtake its pick list on a standard queue: wait for the pick list.
        for _ in 0..50 {
            let pick = self.latest.lock().unwrap().get(dispatch).cloned();
            if let Some(pick) = pick {
                let (st, resp) = self.answer_cancel(&pick, "too_late").await;
                if st >= 300 {
                    tracing::warn!(%order_id, status = st, body = %resp, "sandbox warehouse: cancel answer refused");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A `return_expected` message: `{type, return: {orderId, returnId, warehouse, lines, ...}, returnToken}`.
#[derive(Debug, Clone)]
pub struct ReturnExpected {
    pub body: Value,
}

impl ReturnExpected {
    pub fn order_id(&self) -> &str {
        self.body["return"]["orderId"].as_str().unwrap_or_default()
    }
    pub fn return_id(&self) -> &str {
        self.body["return"]["returnId"].as_str().unwrap_or_default()
    }
    pub fn warehouse(&self) -> &str {
        self.body["return"]["warehouse"].as_str().unwrap_or_default()
    }
    /// (sku, quantity) expected back.
    pub fn lines(&self) -> Vec<(String, i64)> {
        self.body["return"]["lines"]
            .as_array()
            .map(|a| a.iter().map(|l| (l["sku"].as_str().unwrap_or_default().to_string(), l["quantity"].as_i64().unwrap_or(0))).collect())
            .unwrap_or_default()
    }
    /// The partner API request reporting the arrival: (sku, resellable, damaged) per SKU.
    pub fn arrival(&self, units: &[(String, i64, i64)]) -> Value {
        json!({
            "orderId": self.order_id(), "returnId": self.return_id(), "returnToken": self.body["returnToken"],
            "units": units.iter().map(|(s, ok, bad)| json!({"sku": s, "resellable": ok, "damaged": bad})).collect::<Vec<_>>(),
        })
    }
}

impl Warehouses {
    /// Wait for the next `return_expected` message of an order (manual mode).
    pub async fn next_return_expected(&self, order_id: &str, timeout: Duration) -> Option<ReturnExpected> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.returns.lock().unwrap().get_mut(order_id).and_then(|l| (!l.is_empty()).then(|| l.remove(0))) {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POST the arrival of a return parcel as its warehouse; (status, body).
    pub async fn report_return(&self, msg: &ReturnExpected, units: &[(String, i64, i64)]) -> (u16, Value) {
        self.send_as(msg.warehouse(), "/warehouse/returns", &msg.arrival(units)).await
    }

    /// Kept for the test (manual mode), or, in auto mode, the parcel "arrives" a moment later and
    /// everything in it is resellable.
    async fn take_return(self: &Arc<Self>, msg: ReturnExpected) {
        if !self.auto {
            self.returns.lock().unwrap().entry(msg.order_id().to_string()).or_default().push(msg);
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let units: Vec<(String, i64, i64)> = msg.lines().into_iter().map(|(s, q)| (s, q, 0)).collect();
        let (st, body) = self.send_until_answered(msg.warehouse(), "/warehouse/returns", &msg.arrival(&units)).await;
        if st >= 300 {
            tracing::warn!(order_id = msg.order_id(), status = st, body = %body, "sandbox warehouse: return arrival refused");
        }
    }
}

/// Consume one warehouse's pick-list queue.
pub fn spawn(w: Arc<Warehouses>, sqs: aws_sdk_sqs::Client, queue_url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let got = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await;
            let msgs = match got {
                Ok(o) => o.messages.unwrap_or_default(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            for m in msgs {
                if let Some(body) = m.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) {
                    let w2 = w.clone();
                    tokio::spawn(async move { w2.take(PickMessage { body }).await });
                }
                if let Some(h) = m.receipt_handle {
                    let _ = sqs.delete_message().queue_url(&queue_url).receipt_handle(h).send().await;
                }
            }
        }
    })
}
