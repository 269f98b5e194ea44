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
    /// A timed-out wait's open units (its dispatch task's `openUnits`): tells whether an answer to
    /// that wait was recorded (see `recorded_answer`).
    #[serde(default, rename = "openUnits")]
    pub open_units: Option<i64>,
}

pub const OUTCOMES: [&str; 4] = ["shipped", "cancelled", "timed_out", "failed"];

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ended {
    pub all_ended: bool,
    /// The settle run's input once every dispatch has ended (null before).
    pub settle: Value,
    /// The order was settled with this end (the last dispatch of a fully captured order: the
    /// settlement had nothing to capture or release): no settle run is needed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
    /// A timeout that is not one: the warehouse's answer to the wait was recorded (partner_api)
    /// but its parcel run never ended the wait. Nothing is recorded; the parcel run processes this
    /// answer (`{shipmentId}` or `{cancelled, warehouse}`) instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<Value>,
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
    if input.end.outcome == "timed_out" && !order.dispatch_ends.contains_key(&input.dispatch_id) {
        if let Some(answer) = recorded_answer(&order, &input.dispatch_id, input.end.open_units) {
            tracing::warn!(dispatch_id = %input.dispatch_id, %answer, "the wait timed out after the warehouse's answer was recorded: processing the answer");
            return Ok(Ended { all_ended: false, settle: Value::Null, settled: false, answered: Some(answer) });
        }
    }
    let order = if order.dispatch_ends.contains_key(&input.dispatch_id) {
        order
    } else {
        let settles = settled_with_the_end(&order, &input.dispatch_id, &end);
        deps.orders.end_dispatch(&input.order_id, &input.dispatch_id, &end, settles.as_deref(), TimelineEntry::now("dispatch_ended", Some(detail))).await?
    };
    let all_ended = order.dispatches.iter().all(|d| order.dispatch_ends.contains_key(&d.dispatch_id));
    if all_ended && settled_by_an_end(&order) {
        tracing::info!(dispatch_id = %input.dispatch_id, "dispatch ended; the order was settled with it (fully captured)");
        return Ok(Ended { all_ended, settle: Value::Null, settled: true, answered: None });
    }
    if end.outcome != "shipped" {
        tracing::warn!(dispatch_id = %input.dispatch_id, outcome = %end.outcome, error = end.error.as_deref().unwrap_or(""), all_ended, "dispatch ended");
    } else {
        tracing::info!(dispatch_id = %input.dispatch_id, all_ended, "dispatch ended");
    }
    Ok(Ended { all_ended, settle: if all_ended { settle_input(&order) } else { Value::Null }, settled: false, answered: None })
}

/// What settle_payment records for an order whose every dispatch shipped and whose hold is fully
/// captured: nothing to capture (no deferred parcel can be owed), nothing to release, no outcome to
/// record (the order stays SHIPPED or DELIVERED). The last dispatch's end writes it in the same
/// update instead of a settle run (#11: an Express run, a Lambda invocation and a ~4 KB write less
/// per order). Anything else (a cancel, a failed or timed-out dispatch, a hold not fully captured,
/// two last ends at once) goes to the settle run as before.
pub const SETTLED_FULLY_CAPTURED: &str = "fully captured (fulfilled)";

fn settled_with_the_end(order: &Order, dispatch_id: &str, end: &DispatchEnd) -> Option<String> {
    let last = order.dispatches.iter().all(|d| d.dispatch_id == dispatch_id || order.dispatch_ends.contains_key(&d.dispatch_id));
    let all_shipped = end.outcome == "shipped" && order.dispatch_ends.values().all(|e| e.outcome == "shipped");
    let p = order.payment.as_ref()?;
    let fully_captured = p.settled.is_none() && p.captured_minor > 0 && p.captured_minor == p.amount_authorized.minor;
    (last && all_shipped && fully_captured && order.cancel.is_none()).then(|| SETTLED_FULLY_CAPTURED.to_string())
}

/// The order as an end left it was settled by that end (this run's or a twin's).
fn settled_by_an_end(order: &Order) -> bool {
    order.cancel.is_none()
        && order.dispatch_ends.values().all(|e| e.outcome == "shipped")
        && order.payment.as_ref().is_some_and(|p| p.settled.as_deref() == Some(SETTLED_FULLY_CAPTURED) && p.captured_minor == p.amount_authorized.minor)
}

/// The warehouse's answer to a wait that then timed out, if one was recorded. partner_api records
/// an answer and then starts its parcel run, whose first state ends the wait; a partner_api that
/// died between the two (and a warehouse that never retried), or a timeout that fired between them,
/// leaves the wait to time out with the answer on the order. A wait is known by its open units
/// (`<dispatch id>-<open units>`): when more units of the dispatch were reported than were not open
/// at the wait's start, a parcel answered it (or a later wait); the latest parcel is processed again
/// (every parcel step is idempotent). A cancellation answer for any of the dispatch's tokens counts
/// too (a cancelled dispatch takes no further waits).
pub fn recorded_answer(order: &Order, dispatch_id: &str, open_units: Option<i64>) -> Option<Value> {
    let dispatch = order.dispatches.iter().find(|d| d.dispatch_id == dispatch_id)?;
    let answered_for_dispatch: Vec<&String> =
        order.answered_tokens.iter().filter(|(hash, _)| order.issued_tokens.get(*hash).is_some_and(|d| d == dispatch_id)).map(|(_, a)| a).collect();
    if answered_for_dispatch.iter().any(|a| *a == "cancelled") {
        return Some(json!({"cancelled": true, "warehouse": dispatch.warehouse}));
    }
    let open = open_units?;
    let total: i64 = dispatch.lines.iter().map(|l| l.quantity).sum();
    let parcels: Vec<&orderflow_shared::domain::order::Shipment> = order.shipments.values().filter(|s| s.dispatch_id == dispatch_id).collect();
    let reported: i64 = parcels.iter().flat_map(|s| s.lines.iter().map(|l| l.quantity)).sum();
    if reported <= total - open {
        return None;
    }
    let latest = parcels.iter().max_by(|a, b| a.reported_at.cmp(&b.reported_at))?;
    Some(json!({"shipmentId": latest.shipment_id}))
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
            end: End { outcome: outcome.into(), error: error.map(|(e, c)| CaughtError { error: e.into(), cause: c.into() }), open_units: None },
        }
    }

    #[tokio::test]
    async fn the_order_settles_only_when_its_last_dispatch_ends_and_a_second_end_changes_nothing() {
        let (orders, deps) = order_with(&["wh-a", "wh-b"]);
        let first = handle(&deps, end("ord_1-wh-a", "shipped", None)).await.unwrap();
        assert_eq!(first, Ended { all_ended: false, settle: Value::Null, settled: false, answered: None });
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

    /// A wait that times out after its answer was recorded (partner_api died before the parcel run
    /// started, and the warehouse never retried) is not a timeout: the answer is processed.
    #[tokio::test]
    async fn a_wait_that_timed_out_after_its_answer_was_recorded_processes_the_answer() {
        use orderflow_shared::domain::order::{Parcel, Shipment};
        let (orders, deps) = order_with(&["wh-a", "wh-b"]);
        {
            let mut o = orders.orders.lock().unwrap();
            let o = o.get_mut("ord_1").unwrap();
            o.dispatches[0].lines = vec![ShipLine { sku: "SKU-1".into(), quantity: 3 }];
            o.shipments.clear();
            o.issued_tokens = [("h1".to_string(), "ord_1-wh-a".to_string()), ("h2".to_string(), "ord_1-wh-b".to_string())].into();
        }
        let timed_out = |dispatch: &str, open: i64| {
            let mut i = end(dispatch, "timed_out", Some(("States.Timeout", "")));
            i.end.open_units = Some(open);
            i
        };
        // nothing answered: a real timeout, recorded
        let (_, deps_b) = order_with(&["wh-a"]);
        let real = handle(&deps_b, timed_out("ord_1-wh-a", 1)).await.unwrap();
        assert_eq!((real.all_ended, real.answered), (true, None));
        // wh-a's wait (3 open) was answered with a parcel of 2: processed, nothing recorded
        let parcel = Shipment::reported(
            "P1",
            "ord_1-wh-a",
            "wh-a",
            vec![ShipLine { sku: "SKU-1".into(), quantity: 2 }],
            500,
            Parcel { length_cm: 10, width_cm: 10, height_cm: 10 },
            "2026-11-27T10:00:00Z".into(),
        );
        {
            let mut o = orders.orders.lock().unwrap();
            let o = o.get_mut("ord_1").unwrap();
            o.shipments.insert("P1".into(), parcel);
            o.answered_tokens.insert("h1".into(), "P1".into());
        }
        let stale = handle(&deps, timed_out("ord_1-wh-a", 3)).await.unwrap();
        assert_eq!(stale.answered, Some(json!({"shipmentId": "P1"})));
        assert!(orders.order("ord_1").dispatch_ends.is_empty(), "a stale timeout records no end");
        // the next wait (1 open) timing out with nothing more reported is a real timeout
        let real = handle(&deps, timed_out("ord_1-wh-a", 1)).await.unwrap();
        assert_eq!(real.answered, None);
        assert_eq!(orders.order("ord_1").dispatch_ends["ord_1-wh-a"].outcome, "timed_out");
        // a cancellation answered for wh-b's token: processed as the cancellation
        orders.orders.lock().unwrap().get_mut("ord_1").unwrap().answered_tokens.insert("h2".into(), "cancelled".into());
        let cancelled = handle(&deps, timed_out("ord_1-wh-b", 1)).await.unwrap();
        assert_eq!(cancelled.answered, Some(json!({"cancelled": true, "warehouse": "wh-b"})));
    }

    /// The last dispatch of a fully captured order settles it in the same write (no settle run);
    /// an order not fully captured, or with a dispatch that did not ship, goes to the settle run.
    #[tokio::test]
    async fn the_last_end_of_a_fully_captured_order_settles_it_and_nothing_else_does() {
        let (orders, deps) = order_with(&["wh-a", "wh-b"]);
        orders.orders.lock().unwrap().get_mut("ord_1").unwrap().payment.as_mut().unwrap().captured_minor = 1_000;
        let first = handle(&deps, end("ord_1-wh-a", "shipped", None)).await.unwrap();
        assert!(!first.settled && !first.all_ended);
        assert_eq!(orders.order("ord_1").payment.unwrap().settled, None, "not the last dispatch");
        let last = handle(&deps, end("ord_1-wh-b", "shipped", None)).await.unwrap();
        assert_eq!((last.all_ended, last.settled, last.settle.clone()), (true, true, Value::Null));
        assert_eq!(orders.order("ord_1").payment.unwrap().settled.as_deref(), Some(SETTLED_FULLY_CAPTURED));
        assert_eq!(serde_json::to_value(&last).unwrap()["settled"], true);
        // the same end again (a parcel run started twice): still settled, no settle run
        assert!(handle(&deps, end("ord_1-wh-b", "shipped", None)).await.unwrap().settled);

        // part of the hold not captured: the settle run releases it
        let (orders, deps) = order_with(&["wh-a"]);
        orders.orders.lock().unwrap().get_mut("ord_1").unwrap().payment.as_mut().unwrap().captured_minor = 600;
        let last = handle(&deps, end("ord_1-wh-a", "shipped", None)).await.unwrap();
        assert!(!last.settled && last.all_ended && last.settle["branches"].is_array());
        assert_eq!(orders.order("ord_1").payment.unwrap().settled, None);
        assert!(serde_json::to_value(&last).unwrap().get("settled").is_none(), "absent for the state machine's choice");

        // fully captured, but another dispatch was cancelled: the settle run decides
        let (orders, deps) = order_with(&["wh-a", "wh-b"]);
        orders.orders.lock().unwrap().get_mut("ord_1").unwrap().payment.as_mut().unwrap().captured_minor = 1_000;
        handle(&deps, end("ord_1-wh-a", "cancelled", None)).await.unwrap();
        let last = handle(&deps, end("ord_1-wh-b", "shipped", None)).await.unwrap();
        assert!(!last.settled && last.all_ended);
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
