//! SQS consumer of verified webhook events (queued by partner_api):
//! - carrier `tracker.updated`: find the parcel by tracking number, move its status forward only
//!   (WH-3: a late in_transit after delivered changes nothing), put it on the order timeline, tell
//!   the customer about the meaningful ones, and when every parcel is delivered mark the order
//!   DELIVERED and schedule the feedback request;
//! - gateway `payment_intent.*`: reconcile the order's payment (a hold the gateway canceled, a
//!   capture it confirmed);
//! - gateway `refund.created` / `refund.updated` / `refund.failed` / `charge.refund.updated`: move the
//!   refund's status forward on the order's ledger (a late `pending` after `succeeded` changes
//!   nothing); a refund that failed gives its amount and units back so operators can refund again,
//!   and is logged as `refund failed` (the RefundsFailedAlarm's metric filter counts those lines);
//! - carrier `return_to_sender`: the parcel's units start a return (return_to_sender.rs);
//! - gateway `charge.refunded`: record what the gateway says was refunded in total, beside the ledger.
//!
//! Applying an event twice changes nothing (WH-2); failures are reported per message (WF-4).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use orderflow_shared::dispatch::tracker_lookup_key;
use orderflow_shared::domain::fulfillment::{tracking_advances, tracking_kept_aside, tracking_notifies};
use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{Lookups, OrderRepository, Queue, Workflows};
use orderflow_shared::refunds::{settle_refund, RefundSettled};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub lookups: Arc<dyn Lookups>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
    pub feedback_delay_seconds: i32,
    /// Starts the returns workflow for a parcel returned to sender.
    pub workflows: Arc<dyn Workflows>,
}

mod return_to_sender;

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            lookups: w.idempotency()?,
            queue: w.queue(),
            notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")?,
            feedback_delay_seconds: w.env.parse("FEEDBACK_DELAY_SECONDS")?,
            workflows: Arc::new(w.returns_starter()?),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub source: String,
    pub event_id: String,
    pub event: Value,
}

async fn carrier(deps: &Deps, q: &Queued) -> Result<(), StepError> {
    let result = &q.event["result"];
    let code = result["tracking_code"].as_str().unwrap_or_default();
    let status = result["status"].as_str().unwrap_or_default();
    let updated_at = result["updated_at"].as_str().unwrap_or_default();
    let Some(target) = deps.lookups.get_lookup(&tracker_lookup_key(code)).await? else {
        // The label step indexes the number before storing the label; an event can still beat it.
        return Err(StepError::Retryable(format!("tracking number {code} is not known yet")));
    };
    let order_id = target["orderId"].as_str().unwrap_or_default().to_string();
    if let Some(rid) = target["returnId"].as_str() {
        // A return label's tracking: the warehouse's arrival report is what counts; nothing to apply.
        tracing::info!(%order_id, return_id = %rid, %status, "return parcel tracking");
        return Ok(());
    }
    let sid = target["shipmentId"].as_str().unwrap_or_default().to_string();
    let span = tracing::info_span!("tracking", order_id = %order_id, shipment_id = %sid, %status);
    tracing::Instrument::instrument(
        async move {
            let detail = result["tracking_details"].as_array().and_then(|d| d.last()).and_then(|d| d["message"].as_str()).map(String::from);
            let ev = TimelineEntry::now(&format!("tracking_{status}"), Some(format!("{sid} ({code}){}", detail.map(|d| format!(": {d}")).unwrap_or_default())));
            if status == "delivered" && deliver_in_one_write(deps, &order_id, &sid, updated_at, &ev).await? {
                // The last parcel delivered and the order DELIVERED in one write (#11: the ~4 KB
                // order item written once, not twice): tell the customer, ask for feedback later.
                deps.queue.send(&deps.notifications_queue_url, &Notification::tracking(&order_id, &sid, status).to_json()).await?;
                feedback_later(deps, &order_id).await?;
                tracing::info!("order delivered; feedback request scheduled");
                return Ok(());
            }
            if tracking_kept_aside(status) {
                return scan_aside(deps, &order_id, &sid, status, updated_at, ev).await;
            }
            let applied = deps.orders.apply_tracking(&order_id, &sid, status, updated_at, ev).await?;
            let order = deps.orders.get(&order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
            let current = order.shipments.get(&sid).and_then(|s| s.tracking_status.clone());
            tracing::info!(applied, current = ?current, "tracking event");
            // Only the status the parcel is in now is told (an out-of-order event that lost is not); the
            // once-marker in send_notifications makes a redelivered event mail once.
            if current.as_deref() != Some(status) {
                return Ok(());
            }
            if tracking_notifies(status) {
                deps.queue.send(&deps.notifications_queue_url, &Notification::tracking(&order_id, &sid, status).to_json()).await?;
            }
            if status == "return_to_sender" {
                return_to_sender::start(deps, &order_id, &sid).await?;
            }
            let all_delivered = !order.shipments.is_empty() && order.shipments.values().all(|s| s.tracking_status.as_deref() == Some("delivered"));
            if all_delivered && matches!(order.status, OrderStatus::Shipped | OrderStatus::PartiallyFulfilled) {
                let moved = deps
                    .orders
                    .transition(
                        &order_id,
                        OrderStatus::Delivered,
                        None,
                        TimelineEntry::now("delivered", Some(format!("{} parcel(s) delivered", order.shipments.len()))),
                    )
                    .await?;
                if moved {
                    feedback_later(deps, &order_id).await?;
                    tracing::info!("order delivered; feedback request scheduled");
                }
            }
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

/// A scan up to in transit: on the order's tracking log (one write unit, not the order item's
/// four), when it is ahead of what the order item holds for the parcel (WH-3: a late in_transit
/// after out for delivery is not written). Nobody is told and nothing follows from it.
async fn scan_aside(deps: &Deps, order_id: &str, sid: &str, status: &str, updated_at: &str, ev: TimelineEntry) -> Result<(), StepError> {
    let order = deps.orders.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
    let ahead =
        order.shipments.get(sid).is_some_and(|s| tracking_advances(s.tracking_status.as_deref().zip(s.tracking_updated_at.as_deref()), status, updated_at));
    let applied = ahead && deps.orders.apply_tracking_aside(order_id, sid, status, updated_at, ev).await?;
    tracing::info!(applied, "tracking event (kept on the tracking log)");
    Ok(())
}

/// "delivered" for the order's last parcel still on its way: the parcel's status and the order's
/// DELIVERED in one conditional write. false: not the last parcel, not a forward move, or the order
/// changed meanwhile; the two-step path then decides, as before.
async fn deliver_in_one_write(deps: &Deps, order_id: &str, sid: &str, updated_at: &str, ev: &TimelineEntry) -> Result<bool, StepError> {
    let Some(order) = deps.orders.get(order_id).await? else { return Ok(false) };
    if !order.shipments.contains_key(sid) || !matches!(order.status, OrderStatus::Shipped | OrderStatus::PartiallyFulfilled) {
        return Ok(false);
    }
    let others: Vec<String> = order.shipments.keys().filter(|k| k.as_str() != sid).cloned().collect();
    if others.iter().any(|k| order.shipments[k].tracking_status.as_deref() != Some("delivered")) {
        return Ok(false);
    }
    let delivered = TimelineEntry::now("delivered", Some(format!("{} parcel(s) delivered", order.shipments.len())));
    deps.orders.deliver_last_parcel(order_id, sid, updated_at, &others, [ev.clone(), delivered]).await
}

/// The feedback request, a while after delivery (SQS delay).
async fn feedback_later(deps: &Deps, order_id: &str) -> Result<(), StepError> {
    deps.queue
        .send_delayed(&deps.notifications_queue_url, &Notification::new(order_id, NotificationKind::FeedbackRequest).to_json(), deps.feedback_delay_seconds)
        .await
}

async fn gateway(deps: &Deps, q: &Queued) -> Result<(), StepError> {
    let ty = q.event["type"].as_str().unwrap_or_default();
    let pi = &q.event["data"]["object"];
    let Some(order_id) = pi["metadata"]["order_id"].as_str().map(String::from) else {
        tracing::info!(%ty, "gateway event without an order; ignored");
        return Ok(());
    };
    let span = tracing::info_span!("gateway_event", order_id = %order_id, %ty);
    tracing::Instrument::instrument(
        async move {
            let Some(order) = deps.orders.get(&order_id).await? else {
                tracing::warn!("gateway event for an unknown order; ignored");
                return Ok(());
            };
            let Some(payment) = order.payment.as_ref().filter(|p| Some(p.intent_id.as_str()) == pi["id"].as_str()) else {
                tracing::info!("event for another payment intent of the order; ignored");
                return Ok(());
            };
            let created = q.event["created"].as_i64().unwrap_or(0);
            if payment.gateway_event_created.is_some_and(|seen| created < seen) {
                tracing::info!(created, "older than the newest gateway event applied; skipped");
                return Ok(());
            }
            let gw_status = pi["status"].as_str().unwrap_or_default().to_string();
            let received = pi["amount_received"].as_i64().unwrap_or(0);
            let mut fields = vec![("gateway_status", json!(gw_status)), ("gateway_received_minor", json!(received)), ("gateway_event_created", json!(created))];
            let event = match ty {
                "payment_intent.canceled" if payment.status != "canceled" => {
                    // The hold is gone on the gateway's side (expired, or canceled from its dashboard):
                    // nothing more can be captured. The workflow's next capture fails and compensates.
                    fields.push(("status", json!("canceled")));
                    Some(TimelineEntry::now(
                        "payment_hold_canceled_by_gateway",
                        Some(format!("{} ({})", payment.intent_id, pi["cancellation_reason"].as_str().unwrap_or("unknown"))),
                    ))
                }
                "payment_intent.succeeded" | "charge.captured" => {
                    if received != payment.captured_minor {
                        tracing::warn!(received, captured = payment.captured_minor, "gateway reports a different captured amount");
                    }
                    // The gateway sends both for one capture: the second confirms nothing new and
                    // would only rewrite the order item (a write unit per KB of it).
                    let new = payment.gateway_received_minor != Some(received) || payment.gateway_status.as_deref() != Some(gw_status.as_str());
                    new.then(|| TimelineEntry::now("payment_capture_confirmed", Some(format!("gateway received {received}"))))
                }
                _ => None,
            };
            if payment.gateway_status.as_deref() == Some(gw_status.as_str()) && payment.gateway_received_minor == Some(received) && event.is_none() {
                return Ok(());
            }
            deps.orders.update_payment(&order_id, fields, event).await?;
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

/// `refund.*` (and the older `charge.refund.updated`): the object is a Refund whose metadata names
/// the order and our refund id (refund_payment sets both).
async fn refund_event(deps: &Deps, q: &Queued) -> Result<(), StepError> {
    let re = &q.event["data"]["object"];
    let (Some(order_id), Some(refund_id), Some(status)) = (re["metadata"]["order_id"].as_str(), re["metadata"]["refund_id"].as_str(), re["status"].as_str())
    else {
        tracing::info!(event_id = %q.event_id, "refund event without our order and refund ids; ignored (a refund made outside orderflow)");
        return Ok(());
    };
    let span = tracing::info_span!("refund_event", order_id = %order_id, refund_id = %refund_id, %status);
    tracing::Instrument::instrument(
        async move {
            let detail = re["failure_reason"].as_str().map(|r| format!("gateway: {r}")).unwrap_or_else(|| format!("gateway event {}", q.event_id));
            match settle_refund(deps.orders.as_ref(), order_id, refund_id, status, re["id"].as_str(), &detail).await? {
                RefundSettled::Applied { gave_back: true } => {
                    tracing::error!(
                        gateway_refund_id = re["id"].as_str().unwrap_or(""),
                        failure_reason = re["failure_reason"].as_str().unwrap_or("unknown"),
                        "refund failed"
                    );
                }
                RefundSettled::Applied { gave_back: false } => tracing::info!("refund status applied"),
                RefundSettled::Unchanged { .. } => tracing::info!("refund already at or past this status; unchanged"),
                RefundSettled::UnknownRefund => tracing::warn!("refund event for an order or refund this stack does not know; ignored"),
            }
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

/// `charge.refunded`: the charge's total refunded amount, kept beside the ledger for reconciliation.
async fn charge_refunded(deps: &Deps, q: &Queued) -> Result<(), StepError> {
    let ch = &q.event["data"]["object"];
    let Some(order_id) = ch["metadata"]["order_id"].as_str() else {
        tracing::info!("charge event without an order; ignored");
        return Ok(());
    };
    let span = tracing::info_span!("charge_refunded", order_id = %order_id);
    tracing::Instrument::instrument(
        async move {
            let Some(order) = deps.orders.get(order_id).await? else {
                tracing::warn!("charge event for an unknown order; ignored");
                return Ok(());
            };
            let Some(payment) = order.payment.as_ref().filter(|p| Some(p.intent_id.as_str()) == ch["payment_intent"].as_str()) else {
                tracing::info!("charge of another payment intent of the order; ignored");
                return Ok(());
            };
            let refunded = ch["amount_refunded"].as_i64().unwrap_or(0);
            if payment.gateway_refunded_minor.is_some_and(|seen| seen >= refunded) {
                // Events arrive in any order: the total only grows (a failed refund's give-back is applied
                // from refund.failed, on the ledger).
                return Ok(());
            }
            if refunded > order.refunded_minor {
                tracing::warn!(refunded, ledger = order.refunded_minor, "the gateway reports more refunded than the ledger holds");
            }
            deps.orders.update_payment(order_id, vec![("gateway_refunded_minor", json!(refunded))], None).await?;
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

async fn one(deps: &Deps, body: &str) -> Result<(), StepError> {
    let q: Queued = serde_json::from_str(body).map_err(|e| StepError::InvalidInput(format!("webhook message: {e}")))?;
    match (q.source.as_str(), q.event["type"].as_str().unwrap_or_default()) {
        ("carrier", _) => carrier(deps, &q).await,
        ("gateway", "refund.created" | "refund.updated" | "refund.failed" | "charge.refund.updated") => refund_event(deps, &q).await,
        ("gateway", "charge.refunded") => charge_refunded(deps, &q).await,
        ("gateway", _) => gateway(deps, &q).await,
        (other, _) => Err(StepError::InvalidInput(format!("unknown webhook source '{other}' (event {})", q.event_id))),
    }
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, StepError> {
    Ok(orderflow_shared::lambda::for_each_sqs_record(event, |body| async move { one(deps, &body).await }).await)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("apply_webhook_events", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod refund_event_tests {
    use super::*;
    use orderflow_shared::domain::refund::Refund;
    use orderflow_shared::fakes::{shipped_order, InMemoryLookups, InMemoryOrders, RecordingQueue};

    fn refund_event(ty: &str, status: &str) -> String {
        let re = json!({"id": "re_1", "object": "refund", "amount": 1200, "status": status, "payment_intent": "pi_ord_rf",
            "failure_reason": if status == "failed" { json!("expired_or_canceled_card") } else { Value::Null },
            "metadata": {"order_id": "ord_rf", "refund_id": "rf_1", "note": "operator text"}});
        json!({"source": "gateway", "eventId": format!("evt_{ty}_{status}"), "event": {"id": format!("evt_{ty}"), "type": ty, "data": {"object": re}}})
            .to_string()
    }

    async fn order_with_refund() -> (Deps, Arc<InMemoryOrders>) {
        let orders = Arc::new(InMemoryOrders::default());
        let mut order = shipped_order("ord_rf", 5000, Some(true), &[("P1", 5000)]);
        order.payment.as_mut().unwrap().captured_minor = 5000;
        order.refunded_minor = 1200;
        order.refunded_units.insert("SKU-1".into(), 1);
        order.refunds.insert(
            "rf_1".into(),
            Refund {
                refund_id: "rf_1".into(),
                amount_minor: 1200,
                lines: [("SKU-1".to_string(), 1)].into(),
                reason: "requested_by_customer".into(),
                note: None,
                status: "requested".into(),
                gateway_refund_id: None,
                requested_at: "2026-11-26T00:00:00Z".into(),
                request_hash: "h".into(),
                return_id: None,
            },
        );
        orders.create(&order).await.unwrap();
        let deps = Deps {
            orders: orders.clone(),
            lookups: Arc::new(InMemoryLookups::default()),
            queue: Arc::new(RecordingQueue::default()),
            notifications_queue_url: "notifications".into(),
            workflows: Arc::new(orderflow_shared::fakes::RecordingWorkflows::default()),
            feedback_delay_seconds: 0,
        };
        (deps, orders)
    }

    /// A refund that fails after it succeeded: whatever order its events arrive in, and each twice,
    /// it ends failed with its amount and units given back exactly once.
    #[tokio::test]
    async fn a_failed_refund_is_given_back_once_whatever_the_order_of_its_events() {
        let events = [("refund.created", "succeeded"), ("refund.updated", "failed"), ("refund.failed", "failed"), ("charge.refund.updated", "pending")];
        let orders_of_arrival: [[usize; 4]; 6] = [[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3], [3, 0, 2, 1], [1, 2, 3, 0], [2, 3, 1, 0]];
        for arrival in orders_of_arrival {
            let (deps, orders) = order_with_refund().await;
            for i in arrival.iter().chain(arrival.iter()) {
                one(&deps, &refund_event(events[*i].0, events[*i].1)).await.unwrap();
            }
            let o = orders.order("ord_rf");
            assert_eq!(o.refunds["rf_1"].status, "failed", "{arrival:?}");
            assert_eq!(o.refunds["rf_1"].gateway_refund_id.as_deref(), Some("re_1"));
            assert_eq!((o.refunded_minor, o.refunded_units["SKU-1"]), (0, 0), "{arrival:?}: given back once");
            assert_eq!(o.timeline.iter().filter(|e| e.event == "refund_failed").count(), 1, "{arrival:?}");
        }
    }

    #[tokio::test]
    async fn a_succeeded_refund_keeps_its_amount_and_a_late_pending_changes_nothing() {
        let (deps, orders) = order_with_refund().await;
        for (ty, st) in [("refund.created", "succeeded"), ("refund.created", "succeeded"), ("charge.refund.updated", "pending")] {
            one(&deps, &refund_event(ty, st)).await.unwrap();
        }
        let o = orders.order("ord_rf");
        assert_eq!((o.refunds["rf_1"].status.as_str(), o.refunded_minor), ("succeeded", 1200));
        assert_eq!(o.timeline.iter().filter(|e| e.event.starts_with("refund_")).count(), 1, "{:?}", o.timeline);
    }

    #[tokio::test]
    async fn the_charges_refunded_total_only_grows() {
        let (deps, orders) = order_with_refund().await;
        let charge = |refunded: i64| {
            json!({"source": "gateway", "eventId": format!("evt_ch_{refunded}"), "event": {"id": "evt", "type": "charge.refunded",
                "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": "pi_fake", "amount_refunded": refunded, "metadata": {"order_id": "ord_rf"}}}}})
            .to_string()
        };
        one(&deps, &charge(1200)).await.unwrap();
        one(&deps, &charge(500)).await.unwrap();
        assert_eq!(orders.order("ord_rf").payment.unwrap().gateway_refunded_minor, Some(1200));
    }

    /// The gateway confirms one capture twice (payment_intent.succeeded, then charge.captured with
    /// the same intent): the order item is written once, and a later event that changes the intent
    /// is written again.
    #[tokio::test]
    async fn a_capture_confirmed_twice_writes_the_order_once() {
        let (deps, orders) = order_with_refund().await;
        let intent = |id: &str, ty: &str, created: i64, status: &str, received: i64| {
            json!({"source": "gateway", "eventId": id, "event": {"id": id, "type": ty, "created": created,
                "data": {"object": {"id": "pi_fake", "object": "payment_intent", "status": status, "amount_received": received, "metadata": {"order_id": "ord_rf"}}}}})
            .to_string()
        };
        one(&deps, &intent("evt_1", "payment_intent.succeeded", 10, "succeeded", 5000)).await.unwrap();
        let after_first = orders.order("ord_rf");
        one(&deps, &intent("evt_2", "charge.captured", 11, "succeeded", 5000)).await.unwrap();
        assert_eq!(orders.order("ord_rf"), after_first, "nothing new: not written");
        let confirmed = |o: &orderflow_shared::domain::order::Order| o.timeline.iter().filter(|e| e.event == "payment_capture_confirmed").count();
        assert_eq!(confirmed(&after_first), 1);
        one(&deps, &intent("evt_3", "payment_intent.canceled", 12, "canceled", 5000)).await.unwrap();
        assert_eq!(orders.order("ord_rf").payment.unwrap().gateway_status.as_deref(), Some("canceled"));
    }

    /// Scans up to in transit go on the order's tracking log: the order item is not written, the
    /// view shows the parcel in transit, a repeat or a late scan changes nothing, and out for
    /// delivery (told to the customer) is on the order item.
    #[tokio::test]
    async fn in_transit_scans_are_kept_on_the_tracking_log_forward_only() {
        let (deps, orders) = order_with_refund().await;
        let queue = Arc::new(RecordingQueue::default());
        let deps = Deps { queue: queue.clone(), ..deps };
        deps.lookups.put_lookup(&tracker_lookup_key("EZ1"), &json!({"orderId": "ord_rf", "shipmentId": "P1"})).await.unwrap();
        let scan = |n: u32, status: &str, at: &str| {
            json!({"source": "carrier", "eventId": format!("evt_{n}"), "event": {"id": format!("evt_{n}"), "description": "tracker.updated",
                "result": {"tracking_code": "EZ1", "status": status, "updated_at": at, "tracking_details": [{"message": "scanned"}]}}})
            .to_string()
        };
        let before = orders.order("ord_rf");
        one(&deps, &scan(1, "pre_transit", "2026-11-27T01:00:00Z")).await.unwrap();
        one(&deps, &scan(1, "pre_transit", "2026-11-27T01:00:00Z")).await.unwrap();
        one(&deps, &scan(2, "unknown", "2026-11-27T01:30:00Z")).await.unwrap();
        assert_eq!(orders.order("ord_rf"), before, "the order item is not written");
        let seen = orders.get_for_view("ord_rf").await.unwrap().unwrap();
        assert_eq!(seen.shipments["P1"].tracking_status.as_deref(), Some("pre_transit"));
        assert_eq!(seen.timeline.iter().filter(|e| e.event.starts_with("tracking_")).count(), 1, "one scan, once");
        one(&deps, &scan(3, "out_for_delivery", "2026-11-27T04:00:00Z")).await.unwrap();
        assert_eq!(orders.order("ord_rf").shipments["P1"].tracking_status.as_deref(), Some("out_for_delivery"));
        // a late in-transit scan, ahead of the log but behind the order item, is written nowhere
        one(&deps, &scan(4, "in_transit", "2026-11-27T02:00:00Z")).await.unwrap();
        let seen = orders.get_for_view("ord_rf").await.unwrap().unwrap();
        assert_eq!(seen.shipments["P1"].tracking_status.as_deref(), Some("out_for_delivery"));
        let mut scans: Vec<&str> = seen.timeline.iter().filter(|e| e.event.starts_with("tracking_")).map(|e| e.event.as_str()).collect();
        scans.sort();
        assert_eq!(scans, ["tracking_out_for_delivery", "tracking_pre_transit"]);
        let told = queue.bodies("notifications");
        assert_eq!(told.len(), 1, "only out for delivery is told: {told:?}");
    }
}
