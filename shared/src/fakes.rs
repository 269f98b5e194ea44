//! In-memory fakes of the ports, for fast unit tests of the step handlers (no AWS, no network).
//! They keep the adapters' contracts that handlers rely on: conditional status transitions,
//! captures recorded once per shipment, and a gateway that records every request with its
//! Idempotency-Key and replays the first answer for a reused key, as Stripe does.

use crate::domain::fraud::FraudAssessment;
use crate::domain::order::{CancelRequest, Dispatch, Order, OrderStatus, PaymentRecord, Shipment, StockShortage, TimelineEntry};
use crate::money::Money;
use crate::ports::*;
use crate::StepError;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// An order's tracking log: parcel -> (status, carrier time), and the scans' timeline entries.
pub type TrackingLog = (BTreeMap<String, (String, String)>, Vec<TimelineEntry>);

#[derive(Default)]
pub struct InMemoryOrders {
    pub orders: Mutex<HashMap<String, Order>>,
    /// Order id -> its email log's timeline (`EmailLog::email_done`).
    pub email_logs: Mutex<HashMap<String, Vec<TimelineEntry>>>,
    /// (order id, email key) -> done (false: claimed, being sent).
    pub email_claims: Mutex<HashMap<(String, String), bool>>,
    /// Order id -> its tracking log (`apply_tracking_aside`): parcel -> (status, carrier time), and
    /// the scans' timeline entries.
    pub tracking_logs: Mutex<HashMap<String, TrackingLog>>,
    /// (order id, lease name) -> held until (`take_lease`).
    pub leases: Mutex<HashMap<(String, String), String>>,
}

impl InMemoryOrders {
    pub fn with(order: Order) -> InMemoryOrders {
        let o = InMemoryOrders::default();
        o.orders.lock().unwrap().insert(order.order_id.clone(), order);
        o
    }

    pub fn order(&self, id: &str) -> Order {
        self.orders.lock().unwrap()[id].clone()
    }

    fn with_order<T>(&self, id: &str, f: impl FnOnce(&mut Order) -> Result<T>) -> Result<T> {
        let mut all = self.orders.lock().unwrap();
        let o = all.get_mut(id).ok_or_else(|| crate::StepError::InvalidInput(format!("order {id} not found")))?;
        f(o)
    }

    /// Set JSON fields of a part of the order, as the adapter's field-path updates do.
    fn set_fields(&self, id: &str, path: &[&str], fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()> {
        self.with_order(id, |o| {
            let mut v = serde_json::to_value(&*o).map_err(|e| crate::StepError::Internal(e.to_string()))?;
            let mut target = &mut v;
            for p in path {
                target = target.get_mut(*p).ok_or_else(|| crate::StepError::InvalidInput(format!("order {id} has no {}", path.join("."))))?;
            }
            for (k, val) in fields {
                target[k] = val;
            }
            *o = serde_json::from_value(v).map_err(|e| crate::StepError::Internal(e.to_string()))?;
            o.timeline.extend(event);
            Ok(())
        })
    }
}

#[async_trait]
impl OrderRepository for InMemoryOrders {
    async fn create(&self, order: &Order) -> Result<()> {
        self.orders.lock().unwrap().insert(order.order_id.clone(), order.clone());
        Ok(())
    }
    async fn get(&self, order_id: &str) -> Result<Option<Order>> {
        Ok(self.orders.lock().unwrap().get(order_id).cloned())
    }
    async fn transition(&self, order_id: &str, next: OrderStatus, reason: Option<String>, event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            if !next.allowed_from().contains(&o.status) {
                return Ok(false);
            }
            o.status = next;
            o.status_reason = reason;
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn append_timeline(&self, order_id: &str, event: TimelineEntry) -> Result<()> {
        self.with_order(order_id, |o| {
            o.timeline.push(event);
            Ok(())
        })
    }
    async fn take_lease(&self, order_id: &str, name: &str, until: &str, now: &str) -> Result<bool> {
        if !self.orders.lock().unwrap().contains_key(order_id) {
            return Ok(false);
        }
        let mut leases = self.leases.lock().unwrap();
        let key = (order_id.to_string(), name.to_string());
        if leases.get(&key).is_some_and(|held| held.as_str() >= now) {
            return Ok(false);
        }
        leases.insert(key, until.to_string());
        Ok(true)
    }
    async fn get_for_view(&self, order_id: &str) -> Result<Option<Order>> {
        let Some(mut order) = self.get(order_id).await? else { return Ok(None) };
        let log = self.email_logs.lock().unwrap().get(order_id).cloned().unwrap_or_default();
        crate::domain::order::merge_timeline(&mut order.timeline, log);
        let (scans, scanned) = self.tracking_logs.lock().unwrap().get(order_id).cloned().unwrap_or_default();
        crate::domain::order::merge_scans(&mut order, scans);
        crate::domain::order::merge_timeline(&mut order.timeline, scanned);
        Ok(Some(order))
    }
    async fn apply_tracking_aside(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool> {
        let mut logs = self.tracking_logs.lock().unwrap();
        let (scans, timeline) = logs.entry(order_id.to_string()).or_default();
        let current = scans.get(shipment_id).map(|(st, at)| (st.as_str(), at.as_str()));
        if !crate::domain::fulfillment::tracking_advances(current, status, updated_at) {
            return Ok(false);
        }
        scans.insert(shipment_id.to_string(), (status.to_string(), updated_at.to_string()));
        timeline.push(event);
        Ok(true)
    }
    async fn record_payment(&self, order_id: &str, payment: &PaymentRecord, event: Option<TimelineEntry>) -> Result<()> {
        self.with_order(order_id, |o| {
            o.payment = Some(payment.clone());
            o.timeline.extend(event);
            Ok(())
        })
    }
    async fn record_fraud(&self, order_id: &str, fraud: &FraudAssessment, event: TimelineEntry) -> Result<()> {
        self.with_order(order_id, |o| {
            o.fraud = Some(fraud.clone());
            o.timeline.push(event);
            Ok(())
        })
    }
    async fn record_shortage(&self, order_id: &str, shortage: &[StockShortage]) -> Result<()> {
        self.with_order(order_id, |o| {
            o.stock_shortage = shortage.to_vec();
            Ok(())
        })
    }
    async fn record_review_token(&self, order_id: &str, token: &str) -> Result<()> {
        self.with_order(order_id, |o| {
            o.review_task_token = Some(token.to_string());
            Ok(())
        })
    }
    async fn record_dispatches(&self, order_id: &str, dispatches: &[Dispatch], event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            if o.cancel.is_some() {
                return Ok(false);
            }
            o.dispatches = dispatches.to_vec();
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn request_cancel(&self, order_id: &str, cancel: &CancelRequest, event: TimelineEntry) -> Result<Option<Order>> {
        self.with_order(order_id, |o| {
            let open = (o.status == OrderStatus::UnderReview && o.review_task_token.is_some())
                || matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped);
            if o.cancel.is_some() || o.review_decision.is_some() || !open {
                return Ok(None);
            }
            o.cancel = Some(cancel.clone());
            o.timeline.push(event);
            Ok(Some(o.clone()))
        })
    }
    async fn record_review_decision(&self, order_id: &str, decision: &str, event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            if o.status != OrderStatus::UnderReview || o.review_task_token.is_none() || o.review_decision.is_some() || o.cancel.is_some() {
                return Ok(false);
            }
            o.review_decision = Some(decision.to_string());
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn record_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        refunded_before: i64,
        units_before: &BTreeMap<String, i64>,
        return_seq_before: i64,
    ) -> Result<RecordRefund> {
        self.with_order(order_id, |o| {
            if let Some(r) = o.refunds.get(&refund.refund_id) {
                return Ok(RecordRefund::Exists(Box::new(r.clone())));
            }
            let units_same = refund.lines.keys().all(|k| o.refunded_units.get(k).copied().unwrap_or(0) == units_before.get(k).copied().unwrap_or(0));
            if o.refunded_minor != refunded_before || !units_same || o.return_seq != return_seq_before {
                return Ok(RecordRefund::Conflict);
            }
            o.refunded_minor += refund.amount_minor;
            for (k, q) in &refund.lines {
                *o.refunded_units.entry(k.clone()).or_default() += q;
            }
            o.refunds.insert(refund.refund_id.clone(), refund.clone());
            Ok(RecordRefund::Recorded)
        })
    }
    async fn record_collection(&self, order_id: &str, c: &crate::domain::collection::Collection, event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            if o.status != OrderStatus::Failed || o.collection.as_ref().is_some_and(|x| x.status != "failed") {
                return Ok(false);
            }
            o.collection = Some(c.clone());
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn settle_collection(&self, order_id: &str, from: &str, fields: Vec<(&str, serde_json::Value)>, event: TimelineEntry) -> Result<bool> {
        if !self.with_order(order_id, |o| Ok(o.collection.as_ref().is_some_and(|c| c.status == from)))? {
            return Ok(false);
        }
        self.set_fields(order_id, &["collection"], fields, Some(event))?;
        Ok(true)
    }
    async fn record_return(
        &self,
        order_id: &str,
        ret: &crate::domain::returns::ReturnRecord,
        return_seq_before: i64,
        refunded_before: i64,
        event: TimelineEntry,
    ) -> Result<RecordReturn> {
        self.with_order(order_id, |o| {
            if let Some(r) = o.returns.get(&ret.return_id) {
                return Ok(RecordReturn::Exists(Box::new(r.clone())));
            }
            if o.return_seq != return_seq_before || o.refunded_minor != refunded_before {
                return Ok(RecordReturn::Conflict);
            }
            o.return_seq += 1;
            o.returns.insert(ret.return_id.clone(), ret.clone());
            o.timeline.push(event);
            Ok(RecordReturn::Recorded)
        })
    }
    async fn update_return_parcel(
        &self,
        order_id: &str,
        return_id: &str,
        warehouse: &str,
        from: &[&str],
        fields: Vec<(&str, serde_json::Value)>,
        event: Option<TimelineEntry>,
    ) -> Result<bool> {
        let current = self.with_order(order_id, |o| Ok(o.returns.get(return_id).and_then(|r| r.parcels.get(warehouse)).map(|p| p.status.clone())))?;
        if !current.is_some_and(|st| from.contains(&st.as_str())) {
            return Ok(false);
        }
        self.set_fields(order_id, &["returns", return_id, "parcels", warehouse], fields, event)?;
        Ok(true)
    }
    async fn settle_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        to: &str,
        gateway_refund_id: Option<&str>,
        event: TimelineEntry,
    ) -> Result<bool> {
        self.with_order(order_id, |o| {
            let r = o.refunds.get_mut(&refund.refund_id).ok_or_else(|| StepError::InvalidInput(format!("no refund {}", refund.refund_id)))?;
            if r.status != refund.status {
                return Ok(false);
            }
            r.status = to.to_string();
            if let Some(id) = gateway_refund_id {
                r.gateway_refund_id = Some(id.to_string());
            }
            if crate::domain::refund::gives_back(to) {
                o.refunded_minor -= refund.amount_minor;
                for (k, q) in &refund.lines {
                    *o.refunded_units.entry(k.clone()).or_default() -= q;
                }
            }
            o.timeline.push(event);
            Ok(true)
        })
    }
    /// As the indexes would answer, with `updated_at` standing in for when the status was entered.
    async fn list(&self, query: &crate::domain::order_index::ListQuery) -> Result<(Vec<Order>, Option<String>)> {
        use crate::domain::order_index::{merge, order_of, sort_key, Filter};
        let all = self.orders.lock().unwrap();
        let keys: Vec<String> = all
            .values()
            .filter_map(|o| match &query.filter {
                Filter::Status(s) if o.status == *s => Some(sort_key(&o.updated_at, &o.order_id)),
                Filter::Email(e) if o.customer_email == *e => Some(sort_key(&o.created_at, &o.order_id)),
                _ => None,
            })
            .filter(|k| k.as_str() >= query.lo.as_str() && k.as_str() <= query.hi.as_str())
            .collect();
        let (page, cursor) = merge(vec![keys], query.limit);
        Ok((page.iter().map(|k| all[order_of(k)].clone()).collect(), cursor))
    }
    async fn record_issued_token(&self, order_id: &str, token_hash: &str, dispatch_id: &str) -> Result<()> {
        self.with_order(order_id, |o| {
            o.issued_tokens.insert(token_hash.to_string(), dispatch_id.to_string());
            Ok(())
        })
    }
    async fn end_dispatch(
        &self,
        order_id: &str,
        dispatch_id: &str,
        end: &crate::domain::order::DispatchEnd,
        settled: Option<&str>,
        event: TimelineEntry,
    ) -> Result<Order> {
        self.with_order(order_id, |o| {
            if !o.dispatch_ends.contains_key(dispatch_id) {
                o.dispatch_ends.insert(dispatch_id.to_string(), end.clone());
                o.timeline.push(event);
                if let (Some(text), Some(p)) = (settled, o.payment.as_mut()) {
                    p.settled = Some(text.to_string());
                }
            }
            Ok(o.clone())
        })
    }
    async fn record_dispatch_cancelled(&self, order_id: &str, token_hash: &str, event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            if o.cancel.is_none() || o.answered_tokens.contains_key(token_hash) || !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped) {
                return Ok(false);
            }
            o.answered_tokens.insert(token_hash.to_string(), "cancelled".into());
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn add_shipment(&self, order_id: &str, shipment: &Shipment, _token_hash: &str) -> Result<AddShipment> {
        self.with_order(order_id, |o| {
            if let Some(prev) = o.shipments.get(&shipment.shipment_id) {
                return Ok(AddShipment::Exists(Box::new(prev.clone())));
            }
            o.shipments.insert(shipment.shipment_id.clone(), shipment.clone());
            Ok(AddShipment::Added)
        })
    }
    async fn remove_shipment(&self, order_id: &str, shipment_id: &str, _token_hash: &str) -> Result<()> {
        self.with_order(order_id, |o| {
            o.shipments.remove(shipment_id);
            Ok(())
        })
    }
    async fn update_shipment(&self, order_id: &str, shipment_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()> {
        self.set_fields(order_id, &["shipments", shipment_id], fields, event)
    }
    async fn record_capture(&self, order_id: &str, shipment_id: &str, amount: Money, event: TimelineEntry) -> Result<bool> {
        self.with_order(order_id, |o| {
            let s = o.shipments.get_mut(shipment_id).ok_or_else(|| crate::StepError::InvalidInput(format!("no shipment {shipment_id}")))?;
            if s.captured.is_some() {
                return Ok(false);
            }
            s.captured = Some(amount);
            if let Some(p) = o.payment.as_mut() {
                p.captured_minor += amount.minor;
            }
            o.timeline.push(event);
            Ok(true)
        })
    }
    async fn update_payment(&self, order_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()> {
        self.set_fields(order_id, &["payment"], fields, event)
    }
    async fn apply_tracking(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool> {
        // Forward only, as the adapter's condition: the domain rule decides.
        let order = self.order(order_id);
        let s = order.shipments.get(shipment_id).ok_or_else(|| crate::StepError::InvalidInput(format!("no shipment {shipment_id}")))?;
        let current = s.tracking_status.as_deref().zip(s.tracking_updated_at.as_deref());
        if !crate::domain::fulfillment::tracking_advances(current, status, updated_at) {
            return Ok(false);
        }
        self.set_fields(
            order_id,
            &["shipments", shipment_id],
            vec![("tracking_status", status.into()), ("tracking_updated_at", updated_at.into())],
            Some(event),
        )?;
        Ok(true)
    }
}

/// One request the fake gateway received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRequest {
    pub operation: &'static str,
    pub intent_id: String,
    pub amount_minor: i64,
    pub final_capture: Option<bool>,
    pub idempotency_key: String,
}

/// Records every request; a reused Idempotency-Key gets the first answer (Stripe's semantics).
#[derive(Default)]
pub struct RecordingGateway {
    pub requests: Mutex<Vec<GatewayRequest>>,
    answered: Mutex<HashMap<String, Capture>>,
    /// Captured per intent (only first-time keys move money).
    pub captured: Mutex<HashMap<String, i64>>,
    /// Holds the gateway made that no order recorded (order id -> intent ids), as its List API
    /// would find them.
    pub unrecorded_holds: Mutex<HashMap<String, Vec<String>>>,
}

impl RecordingGateway {
    pub fn requests(&self) -> Vec<GatewayRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl PaymentGateway for RecordingGateway {
    async fn card_fingerprint(&self, payment_method: &str) -> std::result::Result<Option<String>, GatewayError> {
        Ok(Some(format!("fp_{payment_method}")))
    }
    async fn holds_for_order(&self, order_id: &str, _from: i64, _to: i64) -> std::result::Result<Vec<String>, GatewayError> {
        self.requests.lock().unwrap().push(GatewayRequest {
            operation: "list",
            intent_id: String::new(),
            amount_minor: 0,
            final_capture: None,
            idempotency_key: String::new(),
        });
        Ok(self.unrecorded_holds.lock().unwrap().get(order_id).cloned().unwrap_or_default())
    }
    async fn authorize(&self, _order_id: &str, amount: Money, _pm: &str, key: &str) -> std::result::Result<Authorization, GatewayError> {
        self.requests.lock().unwrap().push(GatewayRequest {
            operation: "authorize",
            intent_id: String::new(),
            amount_minor: amount.minor,
            final_capture: None,
            idempotency_key: key.into(),
        });
        Ok(Authorization {
            intent_id: "pi_fake".into(),
            status: "requires_capture".into(),
            amount,
            capture_before: None,
            risk_level: None,
            card_fingerprint: None,
            multicapture: true,
        })
    }
    async fn void(&self, intent_id: &str, key: &str) -> std::result::Result<String, GatewayError> {
        self.requests.lock().unwrap().push(GatewayRequest {
            operation: "void",
            intent_id: intent_id.into(),
            amount_minor: 0,
            final_capture: None,
            idempotency_key: key.into(),
        });
        Ok("canceled".into())
    }
    async fn capture(&self, intent_id: &str, amount: Money, final_capture: bool, key: &str) -> std::result::Result<Capture, GatewayError> {
        self.requests.lock().unwrap().push(GatewayRequest {
            operation: "capture",
            intent_id: intent_id.into(),
            amount_minor: amount.minor,
            final_capture: Some(final_capture),
            idempotency_key: key.into(),
        });
        let mut answered = self.answered.lock().unwrap();
        if let Some(first) = answered.get(key) {
            return Ok(first.clone());
        }
        let mut captured = self.captured.lock().unwrap();
        let total = captured.entry(intent_id.to_string()).or_default();
        *total += amount.minor;
        let answer =
            Capture { status: if final_capture { "succeeded".into() } else { "requires_capture".into() }, amount_received: *total, amount_capturable: 0 };
        answered.insert(key.to_string(), answer.clone());
        Ok(answer)
    }
    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        _reason: &str,
        _metadata: &[(&str, &str)],
        key: &str,
    ) -> std::result::Result<GatewayRefund, GatewayError> {
        self.requests.lock().unwrap().push(GatewayRequest {
            operation: "refund",
            intent_id: intent_id.into(),
            amount_minor: amount.minor,
            final_capture: None,
            idempotency_key: key.into(),
        });
        Ok(GatewayRefund { id: format!("re_{}", &key.len()), status: "succeeded".into() })
    }
}

/// A confirmed order of `total_minor` USD with a hold on it (`multicapture` as the charge said), and
/// shipped parcels `(shipment id, amount)` whose stock already left the books.
pub fn shipped_order(order_id: &str, total_minor: i64, multicapture: Option<bool>, parcels: &[(&str, i64)]) -> Order {
    let currency = crate::money::Currency::parse("USD").expect("USD");
    let usd = |m: i64| serde_json::to_value(Money::new(m, currency)).expect("money serializes");
    let addr = serde_json::json!({"name": "A Customer", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"});
    let shipments: serde_json::Map<String, serde_json::Value> = parcels
        .iter()
        .map(|(id, amount)| {
            (
                id.to_string(),
                serde_json::json!({
                    "shipment_id": id, "dispatch_id": format!("{order_id}-wh-east"), "warehouse": "wh-east", "lines": [],
                    "weight_grams": 500, "parcel": {"length_cm": 10, "width_cm": 10, "height_cm": 10},
                    "reported_at": "2026-11-26T00:00:00Z", "amount": usd(*amount),
                }),
            )
        })
        .collect();
    let mut payment = serde_json::json!({"intent_id": "pi_fake", "status": "requires_capture", "amount_authorized": usd(total_minor), "captured_minor": 0});
    if let Some(m) = multicapture {
        payment["multicapture"] = m.into();
    }
    serde_json::from_value(serde_json::json!({
        "order_id": order_id, "status": "SHIPPED", "customer_email": "a@example.com",
        "shipping_address": addr, "billing_address": addr, "shipping_method": "standard", "lines": [],
        "totals": {"subtotal": usd(total_minor), "shipping": usd(0), "tax": usd(0), "total": usd(total_minor)},
        "estimated_delivery": "2026-12-01", "payment_method": "pm_card_visa", "access_token_sha256": "",
        "payment": payment, "shipments": shipments, "timeline": [], "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
    }))
    .expect("a valid order")
}

/// Messages sent, per queue URL (with their delay).
#[derive(Default)]
pub struct RecordingQueue {
    pub sent: Mutex<Vec<(String, serde_json::Value, i32)>>,
}

impl RecordingQueue {
    pub fn bodies(&self, queue_url: &str) -> Vec<serde_json::Value> {
        self.sent.lock().unwrap().iter().filter(|(u, _, _)| u == queue_url).map(|(_, b, _)| b.clone()).collect()
    }
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()> {
        self.sent.lock().unwrap().push((queue_url.to_string(), body.clone(), 0));
        Ok(())
    }
    async fn send_delayed(&self, queue_url: &str, body: &serde_json::Value, delay_seconds: i32) -> Result<()> {
        self.sent.lock().unwrap().push((queue_url.to_string(), body.clone(), delay_seconds));
        Ok(())
    }
    async fn start_redrive(&self, dead_letter_arn: &str, destination_arn: &str) -> Result<String> {
        self.sent.lock().unwrap().push((dead_letter_arn.to_string(), serde_json::json!({"redriveTo": destination_arn}), 0));
        Ok(format!("task:{dead_letter_arn}"))
    }
}

/// Emails sent: (to, subject, text); addresses in `suppressed` are skipped as SES's list would.
#[derive(Default)]
pub struct RecordingMailer {
    pub sent: Mutex<Vec<(String, String, String)>>,
    pub suppressed: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, to: &str, subject: &str, text: &str) -> Result<Delivery> {
        if let Some(reason) = self.suppressed.lock().unwrap().get(to) {
            return Ok(Delivery::Suppressed(reason.clone()));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push((to.to_string(), subject.to_string(), text.to_string()));
        Ok(Delivery::Sent(format!("msg-{}", sent.len())))
    }
}

#[async_trait]
impl EmailLog for InMemoryOrders {
    async fn claim_email(&self, order_id: &str, key: &str) -> Result<OnceClaim> {
        let mut claims = self.email_claims.lock().unwrap();
        Ok(match claims.get(&(order_id.to_string(), key.to_string())) {
            Some(true) => OnceClaim::AlreadyDone,
            Some(false) => OnceClaim::InProgress,
            None => {
                claims.insert((order_id.to_string(), key.to_string()), false);
                OnceClaim::Go
            }
        })
    }
    async fn email_done(&self, order_id: &str, key: &str, event: Option<TimelineEntry>) -> Result<()> {
        self.email_claims.lock().unwrap().insert((order_id.to_string(), key.to_string()), true);
        self.email_logs.lock().unwrap().entry(order_id.to_string()).or_default().extend(event);
        Ok(())
    }
    async fn release_email(&self, order_id: &str, key: &str) -> Result<()> {
        let mut claims = self.email_claims.lock().unwrap();
        if claims.get(&(order_id.to_string(), key.to_string())) == Some(&false) {
            claims.remove(&(order_id.to_string(), key.to_string()));
        }
        Ok(())
    }
}

/// Once-markers: claimed (in progress) or done.
#[derive(Default)]
pub struct InMemoryOnce {
    pub markers: Mutex<HashMap<String, bool>>,
}

#[async_trait]
impl OnceLedger for InMemoryOnce {
    async fn begin(&self, marker: &str) -> Result<OnceClaim> {
        let mut m = self.markers.lock().unwrap();
        Ok(match m.get(marker) {
            Some(true) => OnceClaim::AlreadyDone,
            Some(false) => OnceClaim::InProgress,
            None => {
                m.insert(marker.to_string(), false);
                OnceClaim::Go
            }
        })
    }
    async fn finish(&self, marker: &str) -> Result<()> {
        self.markers.lock().unwrap().insert(marker.to_string(), true);
        Ok(())
    }
    async fn forget(&self, marker: &str) -> Result<()> {
        self.markers.lock().unwrap().remove(marker);
        Ok(())
    }
}

/// Workflow starts by name: a second start with the same name is not a second execution (WF-1).
#[derive(Default)]
pub struct RecordingWorkflows {
    pub lifecycles: Mutex<Vec<String>>,
    /// Fulfilment runs started (order ids; Express runs are not de-duplicated).
    pub fulfillments: Mutex<Vec<String>>,
    /// Returns executions started: (name, input).
    pub returns: Mutex<Vec<(String, serde_json::Value)>>,
    /// Parcel runs started (their input).
    pub parcels: Mutex<Vec<serde_json::Value>>,
    /// Task tokens whose wait is over (a heartbeat or success on them is refused).
    pub closed_tokens: Mutex<Vec<String>>,
    /// Task tokens answered, with the output.
    pub answered: Mutex<Vec<(String, serde_json::Value)>>,
}

#[async_trait]
impl Workflows for RecordingWorkflows {
    async fn run_checkout(&self, _order_id: &str, _input: &serde_json::Value) -> Result<SyncExecution> {
        Err(crate::StepError::Internal("the fake runs no checkout".into()))
    }
    async fn start_lifecycle(&self, order_id: &str, _input: &serde_json::Value) -> Result<bool> {
        let mut started = self.lifecycles.lock().unwrap();
        if started.iter().any(|s| s == order_id) {
            return Ok(false);
        }
        started.push(order_id.to_string());
        Ok(true)
    }
    async fn start_fulfillment(&self, order_id: &str, _input: &serde_json::Value) -> Result<()> {
        self.fulfillments.lock().unwrap().push(order_id.to_string());
        Ok(())
    }
    async fn start_return(&self, return_id: &str, input: &serde_json::Value) -> Result<bool> {
        let mut started = self.returns.lock().unwrap();
        if started.iter().any(|(s, _)| s == return_id) {
            return Ok(false);
        }
        started.push((return_id.to_string(), input.clone()));
        Ok(true)
    }
    async fn send_task_success(&self, token: &str, output: &serde_json::Value) -> Result<()> {
        if self.closed_tokens.lock().unwrap().iter().any(|t| t == token) {
            return Err(crate::StepError::InvalidState("task token no longer waiting".into()));
        }
        self.answered.lock().unwrap().push((token.to_string(), output.clone()));
        self.closed_tokens.lock().unwrap().push(token.to_string());
        Ok(())
    }
    async fn task_heartbeat(&self, token: &str) -> Result<()> {
        if self.closed_tokens.lock().unwrap().iter().any(|t| t == token) {
            return Err(crate::StepError::InvalidState("task token no longer waiting".into()));
        }
        Ok(())
    }
    async fn start_parcel(&self, _order_id: &str, input: &serde_json::Value) -> Result<()> {
        self.parcels.lock().unwrap().push(input.clone());
        Ok(())
    }
}

/// A stock ledger for handlers that must never touch stock: any call fails the test with its name
/// (the webhook intake, for one, verifies, records and queues, and leaves the work to the consumer).
pub struct UntouchedStock;

fn untouched(what: &str) -> ! {
    panic!("StockLedger::{what} called by a handler that must not touch stock")
}

#[async_trait]
impl StockLedger for UntouchedStock {
    async fn reserve(&self, _: &str, _: &[(String, i64)]) -> Result<Reservation> {
        untouched("reserve")
    }
    async fn release(&self, _: &str) -> Result<bool> {
        untouched("release")
    }
    async fn level(&self, _: &str) -> Result<Option<StockLevel>> {
        untouched("level")
    }
    async fn receive(&self, _: &str, _: &str, _: i64, _: &str) -> Result<bool> {
        untouched("receive")
    }
    async fn restock_return(&self, _: &str, _: &str, _: &BTreeMap<String, crate::domain::returns::Inspection>) -> Result<bool> {
        untouched("restock_return")
    }
    async fn set_reorder(&self, _: &str, _: &str, _: i64, _: i64) -> Result<()> {
        untouched("set_reorder")
    }
    async fn adjust(&self, _: &crate::domain::store_data::Adjustment) -> Result<AdjustOutcome> {
        untouched("adjust")
    }
    async fn adjustments(&self, _: &str) -> Result<Vec<crate::domain::store_data::Adjustment>> {
        untouched("adjustments")
    }
    async fn warehouse_stock(&self, _: &[String], _: &[String]) -> Result<HashMap<String, HashMap<String, WarehouseStock>>> {
        untouched("warehouse_stock")
    }
    async fn allocate(&self, _: &str, _: &[crate::domain::fulfillment::Allocation]) -> Result<AllocateOutcome> {
        untouched("allocate")
    }
    async fn reservation(&self, _: &str) -> Result<Option<ReservationState>> {
        untouched("reservation")
    }
    async fn ship(&self, _: &str, _: &str, _: &str, _: &BTreeMap<String, i64>, _: Charge<'_>) -> Result<ShipOutcome> {
        untouched("ship")
    }
    async fn open_purchase_order(&self, _: &str, _: &str, _: i64) -> Result<Option<(String, i64)>> {
        untouched("open_purchase_order")
    }
    async fn mark_purchase_order_sent(&self, _: &str, _: &str, _: &str) -> Result<()> {
        untouched("mark_purchase_order_sent")
    }
    async fn receive_purchase_order(&self, _: &str, _: &str, _: &str, _: i64) -> Result<ReceiveOutcome> {
        untouched("receive_purchase_order")
    }
}

/// Lookup entries (tracking number -> parcel, ...), as the idempotency table keeps them.
#[derive(Default)]
pub struct InMemoryLookups {
    pub entries: Mutex<HashMap<String, serde_json::Value>>,
}

#[async_trait]
impl Lookups for InMemoryLookups {
    async fn put_lookup(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.entries.lock().unwrap().insert(key.to_string(), value.clone());
        Ok(())
    }
    async fn get_lookup(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }
}
