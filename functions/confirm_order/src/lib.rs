//! Mark the order CONFIRMED, queue its confirmation email and start its fulfilment (the Express
//! fulfillment run: route to warehouses, then one dispatch wait per warehouse). Runs in the checkout
//! (approved at once) and in the review execution (approved by a reviewer). Safe to replay: the email
//! is deduplicated by the notifications consumer (WF-5); the fulfilment is started by the first
//! confirmation and by any replay that finds the order not yet routed (a crash between the two
//! writes), and what it starts is de-duplicated by name (WF-1).

use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{OrderRepository, Queue, Workflows};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
    pub workflows: Arc<dyn Workflows>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            queue: w.queue(),
            notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")?,
            workflows: w.fulfillment_starter()?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmed {
    pub status: &'static str,
    pub fulfillment_started: bool,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Confirmed, StepError> {
    let moved = deps.orders.transition(&input.order_id, OrderStatus::Confirmed, None, TimelineEntry::now("confirmed", None)).await?;
    let mut routed = false;
    if !moved {
        let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
        if order.status != OrderStatus::Confirmed {
            return Err(StepError::InvalidState(format!("order {} is {} and cannot be confirmed", input.order_id, order.status.as_str())));
        }
        routed = !order.dispatches.is_empty();
    }
    // Queued on every run, not only the first: a crash between the status write and the send must
    // not lose the email. The consumer sends once per (order, kind).
    deps.queue.send(&deps.notifications_queue_url, &Notification::new(&input.order_id, NotificationKind::OrderConfirmation).to_json()).await?;
    if !routed {
        deps.workflows.start_fulfillment(&input.order_id, &serde_json::json!({"orderId": input.order_id})).await?;
    }
    tracing::info!(first_confirmation = moved, fulfillment_started = !routed, "order confirmed");
    Ok(Confirmed { status: "CONFIRMED", fulfillment_started: !routed })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("confirm_order", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingQueue, RecordingWorkflows};

    #[tokio::test]
    async fn confirming_five_times_confirms_once_queues_the_email_each_time_and_starts_fulfilment_until_routed() {
        let mut order = shipped_order("ord_1", 1_000, Some(true), &[]);
        order.status = OrderStatus::Pending;
        let orders = Arc::new(InMemoryOrders::with(order));
        let queue = Arc::new(RecordingQueue::default());
        let workflows = Arc::new(RecordingWorkflows::default());
        let d = Deps { orders: orders.clone(), queue: queue.clone(), notifications_queue_url: "q://notifications".into(), workflows: workflows.clone() };
        for _ in 0..3 {
            handle(&d, Input { order_id: "ord_1".into() }).await.unwrap();
        }
        // A replay before the fulfilment run routed the order starts it again (the first start may
        // have been lost with a crash); once routed, a replay starts nothing.
        let routed = vec![orderflow_shared::domain::order::Dispatch { dispatch_id: "ord_1-wh-a".into(), warehouse: "wh-a".into(), lines: vec![] }];
        orders.orders.lock().unwrap().get_mut("ord_1").unwrap().dispatches = routed;
        for _ in 0..2 {
            handle(&d, Input { order_id: "ord_1".into() }).await.unwrap();
        }
        let o = orders.order("ord_1");
        assert_eq!(o.status, OrderStatus::Confirmed);
        assert_eq!(o.timeline.iter().filter(|e| e.event == "confirmed").count(), 1);
        // The consumer sends once per (order, kind); the producer re-queues so a crash loses nothing.
        let bodies = queue.bodies("q://notifications");
        assert_eq!(bodies.len(), 5);
        assert!(bodies.iter().all(|b| b == &Notification::new("ord_1", NotificationKind::OrderConfirmation).to_json()));
        assert_eq!(*workflows.fulfillments.lock().unwrap(), vec!["ord_1".to_string(); 3]);
        assert!(workflows.lifecycles.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_order_that_was_declined_is_not_confirmed() {
        let mut order = shipped_order("ord_1", 1_000, Some(true), &[]);
        order.status = OrderStatus::Declined;
        let d = Deps {
            orders: Arc::new(InMemoryOrders::with(order)),
            queue: Arc::new(RecordingQueue::default()),
            notifications_queue_url: "q://n".into(),
            workflows: Arc::new(RecordingWorkflows::default()),
        };
        let err = handle(&d, Input { order_id: "ord_1".into() }).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidState");
    }
}
