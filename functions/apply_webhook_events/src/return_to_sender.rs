//! A parcel the carrier brings back (`return_to_sender`) starts the same receive -> restock ->
//! refund path as a customer's return, without a request and without a label: a return recorded
//! by "carrier" for the parcel's units (those not already refunded or in a return), id derived from
//! the parcel so a redelivered event finds it, and its returns execution (named by that id, so
//! started once).

use super::Deps;
use orderflow_shared::domain::order::{Order, TimelineEntry};
use orderflow_shared::domain::refund::shipped_units;
use orderflow_shared::domain::returns::{new_return, return_id, units_in_open_returns, RETURN_TO_SENDER};
use orderflow_shared::ports::RecordReturn;
use orderflow_shared::StepError;
use serde_json::json;
use std::collections::BTreeMap;

/// The units of the parcel still the customer's: not refunded, not in another return.
fn units_coming_back(order: &Order, shipment_id: &str) -> BTreeMap<String, i64> {
    let Some(s) = order.shipments.get(shipment_id) else { return BTreeMap::new() };
    let shipped = shipped_units(order);
    let returning = units_in_open_returns(order);
    let mut out = BTreeMap::new();
    for l in &s.lines {
        let free =
            shipped.get(&l.sku).copied().unwrap_or(0) - order.refunded_units.get(&l.sku).copied().unwrap_or(0) - returning.get(&l.sku).copied().unwrap_or(0);
        let q = l.quantity.min(free);
        if q > 0 {
            out.insert(l.sku.clone(), q);
        }
    }
    out
}

pub async fn start(deps: &Deps, order_id: &str, shipment_id: &str) -> Result<(), StepError> {
    let rid = return_id(order_id, &format!("return-to-sender:{shipment_id}"));
    for _ in 0..5 {
        let order = deps.orders.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
        if !order.returns.contains_key(&rid) {
            let lines = units_coming_back(&order, shipment_id);
            let Some(warehouse) = order.shipments.get(shipment_id).map(|s| s.warehouse.clone()) else { return Ok(()) };
            if lines.is_empty() {
                tracing::warn!(%shipment_id, "parcel returned to sender, but its units are refunded already; nothing to take back");
                return Ok(());
            }
            let ret = new_return(&rid, RETURN_TO_SENDER, "carrier", "", Some(shipment_id.to_string()), BTreeMap::from([(warehouse, lines)]));
            let event = TimelineEntry::now("return_requested", Some(format!("{rid}: parcel {shipment_id} returned to sender")));
            match deps.orders.record_return(order_id, &ret, order.return_seq, order.refunded_minor, event).await? {
                RecordReturn::Recorded | RecordReturn::Exists(_) => {}
                RecordReturn::Conflict => continue,
            }
        }
        deps.workflows.start_return(&rid, &json!({"orderId": order_id, "returnId": rid})).await?;
        tracing::info!(return_id = %rid, %shipment_id, "return to sender: return started");
        return Ok(());
    }
    Err(StepError::Retryable(format!("the returns of {order_id} kept changing")))
}
