//! SQS consumer of verified webhook events (queued by partner_api):
//! - carrier `tracker.updated`: find the parcel by tracking number, move its status forward only
//!   (WH-3: a late in_transit after delivered changes nothing), put it on the order timeline, tell
//!   the customer about the meaningful ones, and when every parcel is delivered mark the order
//!   DELIVERED and schedule the feedback request;
//! - gateway `payment_intent.*`: reconcile the order's payment (a hold the gateway canceled, a
//!   capture it confirmed).
//!
//! Applying an event twice changes nothing (WH-2); failures are reported per message (WF-4).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use orderflow_shared::dispatch::tracker_lookup_key;
use orderflow_shared::domain::fulfillment::tracking_notifies;
use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{Lookups, OrderRepository, Queue};
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
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            lookups: w.idempotency()?,
            queue: w.queue(),
            notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")?,
            feedback_delay_seconds: w.env.parse("FEEDBACK_DELAY_SECONDS")?,
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
    let sid = target["shipmentId"].as_str().unwrap_or_default().to_string();
    let span = tracing::info_span!("tracking", order_id = %order_id, shipment_id = %sid, %status);
    let _g = span.enter();
    let detail = result["tracking_details"].as_array().and_then(|d| d.last()).and_then(|d| d["message"].as_str()).map(String::from);
    let ev = TimelineEntry::now(&format!("tracking_{status}"), Some(format!("{sid} ({code}){}", detail.map(|d| format!(": {d}")).unwrap_or_default())));
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
            deps.queue
                .send_delayed(
                    &deps.notifications_queue_url,
                    &Notification::new(&order_id, NotificationKind::FeedbackRequest).to_json(),
                    deps.feedback_delay_seconds,
                )
                .await?;
            tracing::info!("order delivered; feedback request scheduled");
        }
    }
    Ok(())
}

async fn gateway(deps: &Deps, q: &Queued) -> Result<(), StepError> {
    let ty = q.event["type"].as_str().unwrap_or_default();
    let pi = &q.event["data"]["object"];
    let Some(order_id) = pi["metadata"]["order_id"].as_str().map(String::from) else {
        tracing::info!(%ty, "gateway event without an order; ignored");
        return Ok(());
    };
    let span = tracing::info_span!("gateway_event", order_id = %order_id, %ty);
    let _g = span.enter();
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
            Some(TimelineEntry::now("payment_capture_confirmed", Some(format!("gateway received {received}"))))
        }
        _ => None,
    };
    if payment.gateway_status.as_deref() == Some(gw_status.as_str()) && payment.gateway_received_minor == Some(received) && event.is_none() {
        return Ok(());
    }
    deps.orders.update_payment(&order_id, fields, event).await?;
    Ok(())
}

async fn one(deps: &Deps, body: &str) -> Result<(), StepError> {
    let q: Queued = serde_json::from_str(body).map_err(|e| StepError::InvalidInput(format!("webhook message: {e}")))?;
    match q.source.as_str() {
        "carrier" => carrier(deps, &q).await,
        "gateway" => gateway(deps, &q).await,
        other => Err(StepError::InvalidInput(format!("unknown webhook source '{other}' (event {})", q.event_id))),
    }
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, StepError> {
    Ok(orderflow_shared::lambda::for_each_sqs_record(event, |body| async move { one(deps, &body).await }).await)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("apply_webhook_events", payload, |i| handle(deps, i)).await
}
