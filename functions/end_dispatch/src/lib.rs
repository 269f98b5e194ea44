//! The end of one warehouse's dispatch (the last step of a parcel run, or of a wait that timed out
//! or failed): recorded on the order once, and the answer to "has every dispatch of the order ended,
//! and how?". The parcel run that gets `allEnded` starts the settle run with `settle` as its input:
//! the dispatches' branches as they ended (a failed one makes the order settle as stalled, #10 item
//! 5) or, when a warehouse never answered (or the hold guard fired), the timeout as the error.
//!
//! Idempotent: a second end of the same dispatch (a parcel run started twice) changes nothing and
//! answers from the order as it is, so two runs may both see every dispatch ended and both start a
//! settle run; settling is idempotent too.

use orderflow_shared::domain::order::{DispatchEnd, Order, TimelineEntry};
use orderflow_shared::lambda::CaughtError;
use orderflow_shared::ports::OrderRepository;
use orderflow_shared::{ConfigError, Env, StepError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()? })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    pub dispatch_id: String,
    pub end: End,
}

/// How the parcel run saw the dispatch end; `error` is a Catch's `{Error, Cause}`.
#[derive(Debug, Deserialize)]
pub struct End {
    pub outcome: String,
    #[serde(default)]
    pub error: Option<CaughtError>,
}

pub const OUTCOMES: [&str; 4] = ["shipped", "cancelled", "timed_out", "failed"];

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ended {
    pub all_ended: bool,
    /// The settle run's input once every dispatch has ended (null before).
    pub settle: Value,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Ended, StepError> {
    if !OUTCOMES.contains(&input.end.outcome.as_str()) {
        return Err(StepError::InvalidInput(format!("unknown dispatch outcome {:?}", input.end.outcome)));
    }
    let end = DispatchEnd {
        outcome: input.end.outcome.clone(),
        error: input.end.error.as_ref().map(|e| e.error.clone()),
        cause: input.end.error.as_ref().map(|e| e.message().chars().take(500).collect()),
    };
    let detail = match &end.error {
        Some(e) => format!("{}: {} ({e})", input.dispatch_id, end.outcome),
        None => format!("{}: {}", input.dispatch_id, end.outcome),
    };
    // Read first (one read unit): an id the order does not have is refused before anything is
    // written, and a second end of the same dispatch (a parcel run started twice) writes nothing.
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    if !order.dispatches.iter().any(|d| d.dispatch_id == input.dispatch_id) {
        return Err(StepError::InvalidInput(format!("order {} has no dispatch {}", input.order_id, input.dispatch_id)));
    }
    let order = if order.dispatch_ends.contains_key(&input.dispatch_id) {
        order
    } else {
        deps.orders.end_dispatch(&input.order_id, &input.dispatch_id, &end, TimelineEntry::now("dispatch_ended", Some(detail))).await?
    };
    let all_ended = order.dispatches.iter().all(|d| order.dispatch_ends.contains_key(&d.dispatch_id));
    if end.outcome != "shipped" {
        tracing::warn!(dispatch_id = %input.dispatch_id, outcome = %end.outcome, error = end.error.as_deref().unwrap_or(""), all_ended, "dispatch ended");
    } else {
        tracing::info!(dispatch_id = %input.dispatch_id, all_ended, "dispatch ended");
    }
    Ok(Ended { all_ended, settle: if all_ended { settle_input(&order) } else { Value::Null } })
}

/// The settle run's input, in the terms settle_payment reads: a dispatch the warehouse never
/// answered makes the whole order's error (as a silent warehouse ended the wait for all of them);
/// otherwise each dispatch is a branch, failed or not.
pub fn settle_input(order: &Order) -> Value {
    let ends: Vec<&DispatchEnd> = order.dispatches.iter().filter_map(|d| order.dispatch_ends.get(&d.dispatch_id)).collect();
    if let Some(t) = ends.iter().find(|e| e.outcome == "timed_out") {
        return json!({
            "orderId": order.order_id,
            "error": {"Error": "DispatchTimedOut", "Cause": format!("No shipment report before the wait ended (warehouse timeout or payment hold guard): {}", t.cause.clone().unwrap_or_default())},
        });
    }
    let branches: Vec<Value> = ends
        .iter()
        .map(|e| match e.outcome.as_str() {
            "failed" => json!({"failed": true, "error": {"Error": e.error.clone().unwrap_or_default(), "Cause": e.cause.clone().unwrap_or_default()}}),
            "cancelled" => json!({"failed": false, "cancelled": true}),
            _ => json!({"failed": false}),
        })
        .collect();
    json!({"orderId": order.order_id, "branches": branches})
}

pub async fn invoke(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    orderflow_shared::lambda::invoke_json("end_dispatch", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::domain::order::{Dispatch, ShipLine};
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders};

    fn order_with(warehouses: &[&str]) -> (Arc<InMemoryOrders>, Deps) {
        let mut o = shipped_order("ord_1", 1_000, Some(true), &[]);
        o.dispatches = warehouses
            .iter()
            .map(|w| Dispatch { dispatch_id: format!("ord_1-{w}"), warehouse: w.to_string(), lines: vec![ShipLine { sku: "SKU-1".into(), quantity: 1 }] })
            .collect();
        let orders = Arc::new(InMemoryOrders::with(o));
        (orders.clone(), Deps { orders })
    }

    fn end(dispatch: &str, outcome: &str, error: Option<(&str, &str)>) -> Input {
        Input {
            order_id: "ord_1".into(),
            dispatch_id: dispatch.into(),
            end: End { outcome: outcome.into(), error: error.map(|(e, c)| CaughtError { error: e.into(), cause: c.into() }) },
        }
    }

    #[tokio::test]
    async fn the_order_settles_only_when_its_last_dispatch_ends_and_a_second_end_changes_nothing() {
        let (orders, deps) = order_with(&["wh-a", "wh-b"]);
        let first = handle(&deps, end("ord_1-wh-a", "shipped", None)).await.unwrap();
        assert_eq!(first, Ended { all_ended: false, settle: Value::Null });
        // wh-a's parcel run ran twice: its second end neither overwrites nor settles
        let again = handle(&deps, end("ord_1-wh-a", "failed", Some(("Internal", "boom")))).await.unwrap();
        assert!(!again.all_ended);
        assert_eq!(orders.order("ord_1").dispatch_ends["ord_1-wh-a"].outcome, "shipped");
        let last = handle(&deps, end("ord_1-wh-b", "cancelled", None)).await.unwrap();
        assert!(last.all_ended);
        assert_eq!(last.settle, json!({"orderId": "ord_1", "branches": [{"failed": false}, {"failed": false, "cancelled": true}]}));
        let timeline: Vec<String> = orders.order("ord_1").timeline.iter().filter(|e| e.event == "dispatch_ended").filter_map(|e| e.detail.clone()).collect();
        assert_eq!(timeline, ["ord_1-wh-a: shipped", "ord_1-wh-b: cancelled"]);
    }

    #[tokio::test]
    async fn a_failed_parcel_is_a_failed_branch_and_a_silent_warehouse_is_the_orders_error() {
        let (_, deps) = order_with(&["wh-a", "wh-b"]);
        handle(&deps, end("ord_1-wh-a", "failed", Some(("Internal", r#"{"errorType":"Internal","errorMessage":"label refused"}"#)))).await.unwrap();
        let last = handle(&deps, end("ord_1-wh-b", "shipped", None)).await.unwrap();
        assert_eq!(last.settle["branches"][0], json!({"failed": true, "error": {"Error": "Internal", "Cause": "label refused"}}));
        assert!(last.settle.get("error").is_none());

        let (_, deps) = order_with(&["wh-a", "wh-b"]);
        handle(&deps, end("ord_1-wh-a", "shipped", None)).await.unwrap();
        let last = handle(&deps, end("ord_1-wh-b", "timed_out", Some(("States.Timeout", "")))).await.unwrap();
        assert_eq!(last.settle["error"]["Error"], "DispatchTimedOut");
        assert!(last.settle.get("branches").is_none());
    }

    #[tokio::test]
    async fn an_unknown_outcome_or_dispatch_is_refused() {
        let (orders, deps) = order_with(&["wh-a"]);
        assert_eq!(handle(&deps, end("ord_1-wh-a", "lost", None)).await.unwrap_err().error_type(), "InvalidInput");
        assert!(orders.order("ord_1").dispatch_ends.is_empty());
        assert_eq!(handle(&deps, end("ord_1-wh-z", "shipped", None)).await.unwrap_err().error_type(), "InvalidInput");
        // refused before anything is written: no stray end, no timeline entry
        let o = orders.order("ord_1");
        assert!(o.dispatch_ends.is_empty() && !o.timeline.iter().any(|e| e.event == "dispatch_ended"), "{o:?}");
        let mut missing = end("ord_1-wh-a", "shipped", None);
        missing.order_id = "ord_nope".into();
        assert_eq!(handle(&deps, missing).await.unwrap_err().error_type(), "InvalidInput");
    }
}
