//! Compensation: cancel the order's hold. The order-derived Idempotency-Key makes a replay one
//! void at the gateway (PAY-6); an order with no hold (declined, out of stock) is a no-op.

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::gateway::void_key;
use orderflow_shared::lambda::Done;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::ports::{OrderRepository, PaymentGateway};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub gateway: Arc<dyn PaymentGateway>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, gateway: w.gateway()? })
    }
}

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
