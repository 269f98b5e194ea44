//! Park the order UNDER_REVIEW (stock and hold kept) and start the Standard lifecycle workflow,
//! which waits for an operator's decision with a timeout well inside the hold's life.

use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::ports::{OrderRepository, Workflows};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use serde::Serialize;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub workflows: Arc<dyn Workflows>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, workflows: w.lifecycle_starter()? })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub status: &'static str,
}

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Held, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let reason = order
        .fraud
        .as_ref()
        .map(|f| format!("fraud score {}: {}", f.score, f.reasons.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>().join(", ")))
        .unwrap_or_else(|| "manual review".into());
    let moved =
        deps.orders.transition(&order.order_id, OrderStatus::UnderReview, Some(reason.clone()), TimelineEntry::now("under_review", Some(reason))).await?;
    if !moved && order.status != OrderStatus::UnderReview {
        return Err(StepError::InvalidState(format!("order {} is {}", order.order_id, order.status.as_str())));
    }
    deps.workflows.start_lifecycle(&order.order_id, &serde_json::json!({"orderId": order.order_id, "review": true})).await?;
    Ok(Held { status: "UNDER_REVIEW" })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("hold_for_review", payload, |i| handle(deps, i)).await
}
