//! The refund step (RET-4, PAY-4), used by every path that gives money back: operators' refunds
//! today, returns next. A refund is first recorded on the order's ledger (orders_api, one
//! conditional write that keeps the sum within what was captured and each unit refunded once), then
//! queued `{"orderId", "refundId"}`; this consumer sends it to the gateway under the key
//! `<order>:refund:<refund id>` (a replay, however often, is one refund at Stripe), records the
//! gateway's refund id and status (forward only, as the webhooks apply it: `orderflow_shared::refunds`),
//! and queues one email per refund. A refund the gateway refuses is recorded `failed` with the reason,
//! its amount and units go back to the ledger, and the `refund failed` log line raises
//! RefundsFailedAlarm; it is not retried (a refusal stays a refusal).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use orderflow_shared::domain::refund::gives_back;
use orderflow_shared::gateway::refund_key;
use orderflow_shared::money::Money;
use orderflow_shared::notification::Notification;
use orderflow_shared::ports::{GatewayError, OrderRepository, PaymentGateway, Queue};
use orderflow_shared::refunds::{settle_refund, RefundSettled};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, gateway: w.gateway()?, queue: w.queue(), notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")? })
    }
}

mod collection;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundMessage {
    pub order_id: String,
    #[serde(default)]
    pub refund_id: String,
    /// An operator's decision about goods shipped uncharged (collection.rs), not a refund.
    #[serde(default)]
    pub collection: bool,
}

pub async fn refund(deps: &Deps, m: &RefundMessage) -> Result<String, StepError> {
    let order = deps.orders.get(&m.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", m.order_id)))?;
    let r = order.refunds.get(&m.refund_id).ok_or_else(|| StepError::InvalidInput(format!("order {} has no refund {}", m.order_id, m.refund_id)))?;
    if matches!(r.status.as_str(), "succeeded" | "failed" | "canceled") {
        tracing::info!(refund_id = %r.refund_id, status = %r.status, "refund already settled; nothing to send");
        return Ok(r.status.clone());
    }
    let payment = order.payment.as_ref().ok_or_else(|| StepError::InvalidState(format!("order {} has no payment", order.order_id)))?;
    let amount = Money::new(r.amount_minor, payment.amount_authorized.currency);
    let note = r.note.clone().unwrap_or_default();
    let metadata = [("order_id", order.order_id.as_str()), ("refund_id", r.refund_id.as_str()), ("note", note.as_str())];
    match deps.gateway.refund(&payment.intent_id, amount, &r.reason, &metadata, &refund_key(&order.order_id, &r.refund_id)).await {
        Ok(done) => {
            // Forward-only, as the webhooks apply it: a refund.failed that got here first stands.
            let now = match settle_refund(deps.orders.as_ref(), &order.order_id, &r.refund_id, &done.status, Some(&done.id), "sent").await? {
                RefundSettled::Applied { .. } => done.status.clone(),
                RefundSettled::Unchanged { status } => status,
                RefundSettled::UnknownRefund => return Err(StepError::Internal(format!("refund {} vanished from order {}", r.refund_id, order.order_id))),
            };
            if !gives_back(&now) {
                deps.queue.send(&deps.notifications_queue_url, &Notification::refund(&order.order_id, &r.refund_id).to_json()).await?;
            }
            tracing::info!(refund_id = %r.refund_id, gateway_refund_id = %done.id, status = %now, amount_minor = r.amount_minor, "refund sent");
            Ok(now)
        }
        Err(GatewayError::Retryable(msg)) => Err(StepError::Retryable(msg)),
        Err(other) => {
            // Refused for good (e.g. the charge was disputed): the ledger gets the amount back,
            // operators see it on the order and the RefundsFailedAlarm fires.
            settle_refund(deps.orders.as_ref(), &order.order_id, &r.refund_id, "failed", None, &other.to_string()).await?;
            tracing::error!(refund_id = %r.refund_id, failure_reason = %other, "refund failed");
            Ok("failed".into())
        }
    }
}

async fn one(deps: &Deps, body: &str) -> Result<(), StepError> {
    let m: RefundMessage = serde_json::from_str(body).map_err(|e| StepError::InvalidInput(format!("refund message: {e}")))?;
    if m.collection {
        let span = tracing::info_span!("uncharged", order_id = %m.order_id);
        return tracing::Instrument::instrument(collection::apply(deps, &m.order_id), span).await.map(|_| ());
    }
    let span = tracing::info_span!("refund", order_id = %m.order_id, refund_id = %m.refund_id);
    tracing::Instrument::instrument(refund(deps, &m), span).await.map(|_| ())
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, StepError> {
    Ok(orderflow_shared::lambda::for_each_sqs_record(event, |body| async move { one(deps, &body).await }).await)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("refund_payment", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::domain::refund::Refund;
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingGateway, RecordingQueue};

    fn deps(orders: Arc<InMemoryOrders>, gateway: Arc<RecordingGateway>, queue: Arc<RecordingQueue>) -> Deps {
        Deps { orders, gateway, queue, notifications_queue_url: "notifications".into() }
    }

    #[tokio::test]
    async fn ret_4_a_refund_replayed_five_times_is_one_refund_key_and_one_email() {
        let orders = Arc::new(InMemoryOrders::default());
        let mut order = shipped_order("ord_r", 5000, Some(true), &[("P1", 5000)]);
        order.payment.as_mut().unwrap().captured_minor = 5000;
        order.refunds.insert(
            "rf_1".into(),
            Refund {
                refund_id: "rf_1".into(),
                amount_minor: 1200,
                lines: Default::default(),
                reason: "requested_by_customer".into(),
                note: Some("goodwill".into()),
                status: "requested".into(),
                gateway_refund_id: None,
                requested_at: "2026-11-26T00:00:00Z".into(),
                request_hash: "h".into(),
                return_id: None,
            },
        );
        orders.create(&order).await.unwrap();
        let (gateway, queue) = (Arc::new(RecordingGateway::default()), Arc::new(RecordingQueue::default()));
        let d = deps(orders.clone(), gateway.clone(), queue.clone());
        let m = RefundMessage { order_id: "ord_r".into(), refund_id: "rf_1".into(), collection: false };
        for _ in 0..5 {
            refund(&d, &m).await.unwrap();
        }
        let sent: Vec<_> = gateway.requests().into_iter().filter(|r| r.operation == "refund").collect();
        assert_eq!(sent.len(), 1, "a settled refund is not sent again: {sent:?}");
        assert_eq!((sent[0].amount_minor, sent[0].idempotency_key.as_str()), (1200, "ord_r:refund:rf_1"));
        assert_eq!(queue.bodies("notifications").len(), 1, "one email per refund");
        let stored = orders.get("ord_r").await.unwrap().unwrap();
        assert_eq!(stored.refunds["rf_1"].status, "succeeded");
    }
}
