//! Place a hold for the order total (capture_method=manual): nothing is collected before the
//! warehouse ships (PAY-1). The Idempotency-Key is derived from the order id, so however often the
//! step runs the gateway holds once (PAY-2).

use orderflow_shared::domain::order::{PaymentRecord, TimelineEntry};
use orderflow_shared::gateway::authorize_key;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::{OrderRef, StepError};
use serde::Serialize;

/// What this function uses (the orders table and the gateway), built from its environment at cold start.
pub use orderflow_shared::wiring::OrderAndGateway as Deps;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorized {
    pub intent_id: String,
    pub risk_level: Option<String>,
}

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Authorized, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    if let Some(p) = order.payment.as_ref().filter(|p| p.status == "requires_capture") {
        return Ok(Authorized { intent_id: p.intent_id.clone(), risk_level: p.risk_level.clone() });
    }
    let total = order.totals.total;
    match deps.gateway.authorize(&order.order_id, total, &order.payment_method, &authorize_key(&order.order_id)).await {
        Ok(auth) => {
            let record = PaymentRecord {
                intent_id: auth.intent_id.clone(),
                status: auth.status,
                amount_authorized: auth.amount,
                capture_before: auth.capture_before,
                risk_level: auth.risk_level.clone(),
                card_fingerprint: auth.card_fingerprint,
                captured_minor: 0,
                settled: None,
                gateway_status: None,
                gateway_received_minor: None,
                gateway_refunded_minor: None,
                gateway_event_created: None,
                multicapture: Some(auth.multicapture),
            };
            let ev = TimelineEntry::now("payment_authorized", Some(format!("hold of {} ({})", total.display(), auth.intent_id)));
            deps.orders.record_payment(&order.order_id, &record, Some(ev)).await?;
            tracing::info!(intent_id = %auth.intent_id, amount_minor = total.minor, "payment held");
            Ok(Authorized { intent_id: auth.intent_id, risk_level: auth.risk_level })
        }
        Err(GatewayError::Declined { code, decline_code, message, .. }) => {
            tracing::info!(%code, %decline_code, "payment declined");
            Err(StepError::PaymentDeclined(if code == decline_code { format!("{code}: {message}") } else { format!("{code} ({decline_code}): {message}") }))
        }
        Err(GatewayError::Retryable(m)) => Err(StepError::Retryable(m)),
        Err(e @ GatewayError::Rejected { .. }) => Err(StepError::Internal(e.to_string())),
    }
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("authorize_payment", payload, |i| handle(deps, i)).await
}
