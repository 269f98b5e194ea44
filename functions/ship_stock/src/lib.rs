//! A warehouse reported a parcel: its units leave the books (allocated -> shipped at the warehouse,
//! reserved -> shipped network-wide, in one transaction with the order's reservation), the parcel is
//! priced for capture (its share of the order total, fixed now so replays charge the same), the
//! order moves to PARTIALLY_SHIPPED or SHIPPED, and any SKU that fell below its reorder point at that
//! warehouse gets one purchase order. Returns the dispatch's next pick list (what is still open).

use orderflow_shared::dispatch::DispatchSettings;
use orderflow_shared::dispatch::{task, DispatchTask, ShipmentRef};
use orderflow_shared::domain::fulfillment::{shipment_amount, sku_values};
use orderflow_shared::domain::order::{Order, OrderStatus, TimelineEntry};
use orderflow_shared::money::Money;
use orderflow_shared::ports::{OrderRepository, Queue, StockLedger};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub queue: Arc<dyn Queue>,
    pub supplier_queue_url: String,
    pub dispatch: DispatchSettings,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            stock: w.stock()?,
            queue: w.queue(),
            supplier_queue_url: w.queue_url("SUPPLIER_QUEUE_URL")?,
            dispatch: DispatchSettings::from_env(&w.env)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    /// The parcel the warehouse reported (the next pick list is made from the order, not from the
    /// parcel run's input).
    pub shipment: ShipmentRef,
}

/// The price of a parcel given what shipped before it (see fulfillment::shipment_amount).
pub fn pricer(order: &Order, shipping: BTreeMap<String, i64>) -> impl Fn(&BTreeMap<String, i64>) -> i64 + Send + Sync {
    let mut lines: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in &order.lines {
        let e = lines.entry(l.sku.clone()).or_default();
        e.0 += l.quantity;
        e.1 += l.line_total.minor;
    }
    let values = sku_values(&lines, &order.totals);
    let units: BTreeMap<String, i64> = lines.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    move |before: &BTreeMap<String, i64>| shipment_amount(&values, &units, before, &shipping)
}

pub async fn handle(deps: &Deps, input: Input) -> Result<DispatchTask, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let sid = &input.shipment.shipment_id;
    let shipment = order.shipments.get(sid).cloned().ok_or_else(|| StepError::InvalidInput(format!("order {} has no shipment {sid}", order.order_id)))?;
    let mut lines: BTreeMap<String, i64> = BTreeMap::new();
    for l in &shipment.lines {
        *lines.entry(l.sku.clone()).or_default() += l.quantity;
    }
    let charge = pricer(&order, lines.clone());
    let out = deps.stock.ship(&order.order_id, sid, &shipment.warehouse, &lines, &charge).await?;
    let amount = Money::new(out.amount_minor, order.totals.currency());
    let next = if out.order_complete { OrderStatus::Shipped } else { OrderStatus::PartiallyShipped };
    let detail = format!("{sid}: {}", shipment.lines.iter().map(|l| format!("{} x {}", l.quantity, l.sku)).collect::<Vec<_>>().join(", "));
    let event = TimelineEntry::now(&next.as_str().to_lowercase(), Some(detail.clone()));
    // The parcel's price and the order's new status in one write of the order item (#11); when the
    // status does not move (a further parcel, a replay), the price alone.
    let priced = shipment.amount.as_ref() == Some(&amount);
    let moved = if priced {
        deps.orders.transition(&order.order_id, next, None, event).await?
    } else {
        let moved = deps.orders.transition_pricing_shipment(&order.order_id, next, sid, amount, event).await?;
        if !moved {
            deps.orders.update_shipment(&order.order_id, sid, vec![("amount", json!(amount))], None).await?;
        }
        moved
    };
    if !moved && out.fresh {
        // A further parcel while already partially shipped: the status stays, the timeline says so.
        deps.orders.append_timeline(&order.order_id, TimelineEntry::now("parcel_shipped", Some(detail))).await?;
    }
    // Also on a replay: a purchase order opened by a run that died before sending it goes out now.
    reorder_if_low(deps, &order.order_id, &shipment.warehouse, &lines).await?;
    tracing::info!(shipment_id = %sid, amount_minor = out.amount_minor, order_complete = out.order_complete, open_here = out.open_here.values().sum::<i64>(), "units shipped");
    // The dispatch's next pick list: what this warehouse still has to ship for the order.
    task(&deps.dispatch, &order, &shipment.warehouse, &out.open_here)
}

/// Replenishment: a SKU whose free stock at the warehouse fell below its reorder point gets one
/// purchase order (the conditional PO item makes it one, however many orders cross the line).
async fn reorder_if_low(deps: &Deps, order_id: &str, warehouse: &str, lines: &BTreeMap<String, i64>) -> Result<(), StepError> {
    let skus: Vec<String> = lines.keys().cloned().collect();
    let stock = deps.stock.warehouse_stock(&skus, &[warehouse.to_string()]).await?;
    for sku in &skus {
        let Some(st) = stock.get(warehouse).and_then(|m| m.get(sku)) else { continue };
        if st.reorder_point <= 0 || st.available >= st.reorder_point {
            continue;
        }
        // Enough to get back above the point with the configured batch.
        let quantity = st.reorder_quantity.max(st.reorder_point - st.available).max(1);
        // The supplier de-duplicates on purchaseOrderId: two runs racing to re-send one unsent PO
        // send the same id.
        if let Some((po_id, quantity)) = deps.stock.open_purchase_order(sku, warehouse, quantity).await? {
            deps.queue
                .send(
                    &deps.supplier_queue_url,
                    &json!({"purchaseOrderId": po_id, "sku": sku, "warehouse": warehouse, "quantity": quantity,
                            "available": st.available, "reorderPoint": st.reorder_point, "triggeredBy": order_id}),
                )
                .await?;
            deps.stock.mark_purchase_order_sent(sku, warehouse, &po_id).await?;
            tracing::info!(%po_id, %sku, %warehouse, quantity, available = st.available, "purchase order sent");
        }
    }
    Ok(())
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("ship_stock", payload, |i| handle(deps, i)).await
}
