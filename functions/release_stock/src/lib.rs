//! Compensation: return what an order reserved. Releasing twice, or releasing an order that never
//! reserved (out of stock), changes nothing (INV-5).

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::lambda::Done;
use orderflow_shared::ports::{OrderRepository, StockLedger};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, stock: w.stock()? })
    }
}

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
