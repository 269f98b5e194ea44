//! Compensation: return what an order reserved. Releasing twice, or releasing an order that never
//! reserved (out of stock), changes nothing (INV-5).

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::lambda::Done;
use orderflow_shared::{OrderRef, StepError};

/// What this function uses (the orders and inventory tables), built from its environment at cold start.
pub use orderflow_shared::wiring::OrderAndStock as Deps;

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Done, StepError> {
    let released = deps.stock.release(&input.order_id).await?;
    if released {
        deps.orders.append_timeline(&input.order_id, TimelineEntry::now("stock_released", None)).await?;
    }
    tracing::info!(released, "release stock");
    Ok(Done { done: true })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("release_stock", payload, |i| handle(deps, i)).await
}
