//! First fulfillment step of a confirmed order: pick the warehouse(s) (nearest one that can ship the
//! whole order; a split only when none can), move the checkout reservation into them, record the
//! dispatches on the order and hand the workflow one pick list per warehouse.

use orderflow_shared::dispatch::DispatchSettings;
use orderflow_shared::dispatch::{dispatch_id, task, DispatchTask};
use orderflow_shared::domain::fulfillment::{route, Allocation};
use orderflow_shared::domain::order::{Dispatch, Order, ShipLine, TimelineEntry};
use orderflow_shared::ports::AllocateOutcome;
use orderflow_shared::ports::{Catalog, OrderRepository, StockLedger};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub catalog: Arc<dyn Catalog>,
    pub dispatch: DispatchSettings,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, stock: w.stock()?, catalog: w.catalog()?, dispatch: DispatchSettings::from_env(&w.env)? })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub dispatches: Vec<DispatchTask>,
}

/// Route with fresh stock figures; a plan that went stale under concurrent orders is re-planned.
async fn allocate(deps: &Deps, order: &Order) -> Result<Vec<Allocation>, StepError> {
    let network = deps.catalog.network().await?;
    let warehouses: Vec<String> = network.warehouses.iter().map(|w| w.id.clone()).collect();
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    for l in &order.lines {
        *wanted.entry(l.sku.clone()).or_default() += l.quantity;
    }
    let skus: Vec<String> = wanted.keys().cloned().collect();
    for _ in 0..8 {
        let stock = deps.stock.warehouse_stock(&skus, &warehouses).await?;
        let free = stock.iter().map(|(wh, m)| (wh.clone(), m.iter().map(|(sku, st)| (sku.clone(), st.available)).collect())).collect();
        let plan = route(&network, &order.shipping_address, &wanted, &free).map_err(|e| StepError::Retryable(format!("cannot route yet: {e}")))?;
        match deps.stock.allocate(&order.order_id, &plan).await? {
            AllocateOutcome::Routed(p) => return Ok(p),
            AllocateOutcome::Stale => continue,
        }
    }
    Err(StepError::Retryable("warehouse stock kept changing while routing; retry".into()))
}

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Plan, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    // Cancelled before a pick list went out: dispatch nothing; the workflow settles the payment,
    // releases the reservation and records the cancel (CAN-1).
    if order.cancel.is_some() && order.dispatches.is_empty() {
        tracing::info!("cancelled before dispatch; nothing routed");
        return Ok(Plan { dispatches: vec![] });
    }
    let plan = allocate(deps, &order).await?;
    let dispatches: Vec<Dispatch> = plan
        .iter()
        .map(|a| Dispatch {
            dispatch_id: dispatch_id(&order.order_id, &a.warehouse),
            warehouse: a.warehouse.clone(),
            lines: a.lines.iter().map(|(s, q)| ShipLine { sku: s.clone(), quantity: *q }).collect(),
        })
        .collect();
    if order.dispatches != dispatches {
        let detail = plan
            .iter()
            .map(|a| format!("{}: {}", a.warehouse, a.lines.iter().map(|(s, q)| format!("{q} x {s}")).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        if !deps.orders.record_dispatches(&order.order_id, &dispatches, TimelineEntry::now("routed", Some(detail))).await? {
            // A cancel landed between the read and this write: the cancel saw no dispatch to ask a
            // warehouse about, so none is sent; the allocation is released after the (empty) Map.
            tracing::info!("cancelled while routing; nothing dispatched");
            return Ok(Plan { dispatches: vec![] });
        }
    }
    let tasks = plan.iter().map(|a| task(&deps.dispatch, &order, &a.warehouse, &a.lines)).collect::<Result<Vec<_>, _>>()?;
    tracing::info!(warehouses = ?plan.iter().map(|a| a.warehouse.as_str()).collect::<Vec<_>>(), "routed");
    Ok(Plan { dispatches: tasks })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("route_shipments", payload, |i| handle(deps, i)).await
}
