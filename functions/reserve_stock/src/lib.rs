//! Reserve stock for every line of an order in one DynamoDB transaction.
//! Repeated SKUs are summed (INV-3), a short SKU leaves every count untouched (INV-4), a replay
//! reserves once (INV-5), and the count never goes below zero under concurrency (INV-1).

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::ports::Reservation;
use orderflow_shared::{OrderRef, StepError};
use serde::Serialize;

/// What this function uses (the orders and inventory tables), built from its environment at cold start.
pub use orderflow_shared::wiring::OrderAndStock as Deps;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reserved {
    pub reserved: bool,
    pub units: i64,
    /// The order was decided by an earlier checkout (a second start for the same order: Step
    /// Functions does not de-duplicate synchronous Express executions by name). The workflow ends
    /// here without touching the order (WF-1).
    pub already_decided: bool,
}

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Reserved, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    if order.status != orderflow_shared::domain::order::OrderStatus::Pending {
        // Never reserve afresh for a decided order; a released reservation stays released (the
        // ledger's own answer, INV-5); otherwise the workflow ends untouched.
        if let Some(r) = deps.stock.reservation(&order.order_id).await? {
            if r.status == "RELEASED" {
                return Err(StepError::InvalidState(format!("reservation for {} is RELEASED; not reserving again", order.order_id)));
            }
        }
        tracing::warn!(status = order.status.as_str(), "a second checkout for a decided order; nothing to do");
        return Ok(Reserved { reserved: false, units: 0, already_decided: true });
    }
    let lines: Vec<(String, i64)> = order.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
    let units = lines.iter().map(|(_, q)| q).sum();
    match deps.stock.reserve(&order.order_id, &lines).await? {
        Reservation::Reserved { fresh } => {
            if fresh {
                deps.orders.append_timeline(&order.order_id, TimelineEntry::now("stock_reserved", Some(format!("{units} units")))).await?;
            }
            tracing::info!(units, fresh, "stock reserved");
            Ok(Reserved { reserved: true, units, already_decided: false })
        }
        Reservation::Short(short) => {
            deps.orders.record_shortage(&order.order_id, &short).await?;
            let detail: Vec<String> = short.iter().map(|s| format!("{} (requested {}, available {})", s.sku, s.requested, s.available)).collect();
            Err(StepError::OutOfStock(format!("insufficient stock: {}", detail.join("; "))))
        }
    }
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("reserve_stock", payload, |i| handle(deps, i)).await
}
