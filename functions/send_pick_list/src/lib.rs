//! The lifecycle's wait for a warehouse (`AwaitShipment`, `lambda:invoke.waitForTaskToken`) starts
//! here: the pick list's task token is recorded on the order (as its hash, against this dispatch)
//! before the pick list goes to the warehouse's queue with the token. partner_api then accepts a
//! shipment report or a cancellation only with a token issued for that order and that dispatch, so a
//! token from one pick list can never wake another order's wait (#10 item 9). The function returns
//! nothing of use: the wait ends when the warehouse's report sends the token back.

use orderflow_shared::dispatch::{pick_list_message, token_hash, DispatchTask};
use orderflow_shared::ports::{OrderRepository, Queue};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub queue: Arc<dyn Queue>,
    /// Warehouse id -> its pick-list queue: where a pick list goes is decided here by the
    /// warehouse id, never by a URL in the input.
    pub warehouse_queue_urls: BTreeMap<String, String>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let urls = env.warehouse_queue_urls()?;
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, queue: w.queue(), warehouse_queue_urls: urls })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    pub dispatch: DispatchTask,
    pub task_token: String,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<serde_json::Value, StepError> {
    let pick = &input.dispatch.pick_list;
    if input.task_token.is_empty() {
        return Err(StepError::InvalidInput("no task token".into()));
    }
    if pick.order_id != input.order_id || pick.dispatch_id != input.dispatch.dispatch_id || pick.warehouse != input.dispatch.warehouse {
        return Err(StepError::InvalidInput(format!("pick list {} does not belong to order {}", pick.dispatch_id, input.order_id)));
    }
    let queue_url = deps
        .warehouse_queue_urls
        .get(&pick.warehouse)
        .ok_or_else(|| StepError::Internal(format!("no pick-list queue configured for warehouse {}", pick.warehouse)))?;
    // Recorded first: by the time the warehouse holds the token, the order knows it.
    deps.orders.record_issued_token(&input.order_id, &token_hash(&input.task_token), &pick.dispatch_id).await?;
    deps.queue.send(queue_url, &pick_list_message(pick, &input.task_token)).await?;
    tracing::info!(dispatch_id = %pick.dispatch_id, warehouse = %pick.warehouse, lines = pick.lines.len(), "pick list sent");
    Ok(serde_json::json!({}))
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("send_pick_list", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::dispatch::{task, DispatchSettings};
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingQueue};

    fn setup() -> (Arc<InMemoryOrders>, Arc<RecordingQueue>, Deps, DispatchTask) {
        let order = shipped_order("ord_1", 1_000, Some(true), &[]);
        let settings = DispatchSettings {
            warehouse_queue_urls: [("wh-a".to_string(), "q://anything".to_string())].into(),
            hold_expiry_margin_seconds: 3_600,
            warehouse_timeout_seconds: 600,
        };
        let t = task(&settings, &order, "wh-a", &[("SKU-1".to_string(), 2)].into()).unwrap();
        let orders = Arc::new(InMemoryOrders::with(order));
        let queue = Arc::new(RecordingQueue::default());
        let deps =
            Deps { orders: orders.clone(), queue: queue.clone(), warehouse_queue_urls: [("wh-a".to_string(), "q://pick-lists-wh-a".to_string())].into() };
        (orders, queue, deps, t)
    }

    #[tokio::test]
    async fn the_token_is_recorded_against_its_dispatch_and_the_pick_list_carries_it_to_the_warehouses_own_queue() {
        let (orders, queue, deps, t) = setup();
        handle(&deps, Input { order_id: "ord_1".into(), dispatch: t.clone(), task_token: "tok-123".into() }).await.unwrap();
        let o = orders.order("ord_1");
        assert_eq!(o.issued_tokens.get(&token_hash("tok-123")), Some(&t.dispatch_id));
        assert!(!o.issued_tokens.contains_key("tok-123"), "the token itself is never stored");
        let sent = queue.bodies("q://pick-lists-wh-a");
        assert_eq!(sent.len(), 1, "sent to the queue configured for the warehouse, not the URL in the input");
        assert_eq!(sent[0]["dispatchToken"], "tok-123");
        assert_eq!(sent[0]["pickList"]["dispatchId"], t.dispatch_id.as_str());
    }

    #[tokio::test]
    async fn a_pick_list_of_another_order_or_an_unknown_warehouse_is_refused_and_nothing_is_sent() {
        let (orders, queue, deps, t) = setup();
        let err = handle(&deps, Input { order_id: "ord_2".into(), dispatch: t.clone(), task_token: "tok".into() }).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let mut other = t.clone();
        other.warehouse = "wh-z".into();
        other.pick_list.warehouse = "wh-z".into();
        let err = handle(&deps, Input { order_id: "ord_1".into(), dispatch: other, task_token: "tok".into() }).await.unwrap_err();
        assert_eq!(err.error_type(), "Internal");
        assert!(queue.sent.lock().unwrap().is_empty());
        assert!(orders.order("ord_1").issued_tokens.is_empty());
    }
}
