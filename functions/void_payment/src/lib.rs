//! Compensation: cancel the order's hold. The order-derived Idempotency-Key makes a replay one
//! void at the gateway (PAY-6); an order with no hold (declined, out of stock) is a no-op.

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::gateway::void_key;
use orderflow_shared::lambda::Done;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::{OrderRef, StepError};

/// What this function uses (the orders table and the gateway), built from its environment at cold start.
pub use orderflow_shared::wiring::OrderAndGateway as Deps;

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Done, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let Some(mut payment) = order.payment else {
        tracing::info!("no hold to void");
        return Ok(Done { done: true });
    };
    if payment.status == "canceled" {
        return Ok(Done { done: true });
    }
    let status = deps.gateway.void(&payment.intent_id, &void_key(&order.order_id)).await.map_err(|e| match e {
        GatewayError::Retryable(m) => StepError::Retryable(m),
        other => StepError::Internal(other.to_string()),
    })?;
    payment.status = status;
    let ev = TimelineEntry::now("payment_voided", Some(format!("hold {} released", payment.intent_id)));
    deps.orders.record_payment(&order.order_id, &payment, Some(ev)).await?;
    tracing::info!(intent_id = %payment.intent_id, "hold voided");
    Ok(Done { done: true })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("void_payment", payload, |i| handle(deps, i)).await
}
