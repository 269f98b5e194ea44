//! Capture exactly a shipped parcel's amount against the order's hold (PAY-1: nothing is captured
//! before a warehouse ships; PAY-3: a partial shipment captures only its share). The amount was fixed
//! by ship_stock; the Idempotency-Key is derived from order + shipment, so a replay captures once
//! (PAY-2). Every capture keeps the rest of the hold (multicapture); settle_payment releases what is
//! left when fulfillment ends.

use orderflow_shared::dispatch::ParcelStep as Input;
use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::gateway::capture_key;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::StepError;
use serde::Serialize;

/// What this function uses (the orders table and the gateway), built from its environment at cold start.
pub use orderflow_shared::wiring::OrderAndGateway as Deps;

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    pub amount_minor: i64,
    pub captured_total_minor: i64,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Captured, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let sid = &input.shipment.shipment_id;
    let shipment = order.shipments.get(sid).ok_or_else(|| StepError::InvalidInput(format!("order {} has no shipment {sid}", order.order_id)))?;
    let payment = order.payment.as_ref().ok_or_else(|| StepError::InvalidState(format!("order {} has no payment hold", order.order_id)))?;
    if let Some(done) = &shipment.captured {
        return Ok(Captured { amount_minor: done.minor, captured_total_minor: payment.captured_minor });
    }
    if payment.multicapture != Some(true) {
        // Without multicapture a partial capture would release the rest of the hold, and the next
        // parcel could not be charged. The parcel's amount is recorded as owed; settle_payment
        // captures everything that shipped in one final capture when fulfillment ends (or when the
        // hold guard fires), so nothing is charged before it ships and nothing ships uncharged.
        let amount = shipment.amount.ok_or_else(|| StepError::InvalidState(format!("shipment {sid} has not left the books yet; nothing to capture")))?;
        if shipment.capture_deferred.is_none() {
            let ev = TimelineEntry::now("payment_capture_deferred", Some(format!("{} for {sid}, captured when fulfillment ends", amount.display())));
            deps.orders.update_shipment(&order.order_id, sid, vec![("capture_deferred", serde_json::json!(amount))], Some(ev)).await?;
        }
        tracing::info!(shipment_id = %sid, amount_minor = amount.minor, "capture deferred: the hold has no multicapture");
        return Ok(Captured { amount_minor: 0, captured_total_minor: payment.captured_minor });
    }
    let amount = shipment.amount.ok_or_else(|| StepError::InvalidState(format!("shipment {sid} has not left the books yet; nothing to capture")))?;
    if payment.captured_minor + amount.minor > payment.amount_authorized.minor {
        return Err(StepError::Internal(format!("capturing {} would exceed the {} authorized", amount.display(), payment.amount_authorized.display())));
    }
    if amount.minor > 0 {
        let cap = deps.gateway.capture(&payment.intent_id, amount, false, &capture_key(&order.order_id, sid)).await.map_err(|e| match e {
            GatewayError::Retryable(m) => StepError::Retryable(m),
            // The hold is gone (expired, canceled by the gateway): terminal; the workflow's
            // compensation path settles the order.
            other => StepError::PaymentDeclined(format!("capture refused: {other}")),
        })?;
        tracing::info!(status = %cap.status, received = cap.amount_received, capturable = cap.amount_capturable, "gateway capture");
    }
    let ev = TimelineEntry::now("payment_captured", Some(format!("{} for {sid}", amount.display())));
    deps.orders.record_capture(&order.order_id, sid, amount, ev).await?;
    tracing::info!(shipment_id = %sid, amount_minor = amount.minor, "captured");
    Ok(Captured { amount_minor: amount.minor, captured_total_minor: payment.captured_minor + amount.minor })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("capture_payment", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::dispatch::ShipmentRef;
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingGateway};
    use std::sync::Arc;

    fn deps(order: orderflow_shared::domain::order::Order) -> (Deps, Arc<InMemoryOrders>, Arc<RecordingGateway>) {
        let orders = Arc::new(InMemoryOrders::with(order));
        let gateway = Arc::new(RecordingGateway::default());
        (Deps { orders: orders.clone(), gateway: gateway.clone() }, orders, gateway)
    }

    fn input(shipment: &str) -> Input {
        Input { order_id: "ord_1".into(), shipment: ShipmentRef { shipment_id: shipment.into() } }
    }

    #[tokio::test]
    async fn with_multicapture_each_parcel_is_captured_keeping_the_rest_held_once_however_often_replayed() {
        let (d, orders, gw) = deps(shipped_order("ord_1", 10_000, Some(true), &[("P1", 6_000)]));
        for _ in 0..5 {
            handle(&d, input("P1")).await.unwrap();
        }
        let reqs = gw.requests();
        assert_eq!(reqs.len(), 1, "the stored capture answers the replays: {reqs:?}");
        assert_eq!((reqs[0].amount_minor, reqs[0].final_capture, reqs[0].idempotency_key.as_str()), (6_000, Some(false), "ord_1:capture:P1"));
        assert_eq!(orders.order("ord_1").payment.unwrap().captured_minor, 6_000);
    }

    #[tokio::test]
    async fn without_multicapture_a_parcel_is_owed_and_nothing_is_sent_to_the_gateway() {
        for multicapture in [Some(false), None] {
            let (d, orders, gw) = deps(shipped_order("ord_1", 10_000, multicapture, &[("P1", 6_000)]));
            let out = handle(&d, input("P1")).await.unwrap();
            assert_eq!(out.amount_minor, 0);
            assert!(gw.requests().is_empty(), "a partial capture would release the rest of the hold");
            let o = orders.order("ord_1");
            assert_eq!(o.shipments["P1"].capture_deferred.map(|m| m.minor), Some(6_000));
            assert_eq!(o.payment.unwrap().captured_minor, 0);
        }
    }
}
