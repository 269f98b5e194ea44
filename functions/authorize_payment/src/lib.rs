//! Place a hold for the order total (capture_method=manual): nothing is collected before the
//! warehouse ships (PAY-1). The Idempotency-Key is derived from the order id, so however often the
//! step runs the gateway holds once (PAY-2).

use orderflow_shared::domain::order::{now_rfc3339, PaymentRecord, TimelineEntry};
use orderflow_shared::gateway::authorize_key;
use orderflow_shared::ports::{GatewayError, OrderRepository, PaymentGateway, VelocityCounter};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use serde::Serialize;
use std::sync::Arc;

/// Declines per card are counted over this window (#10 item 7, card testing).
const DECLINE_WINDOW_SECONDS: i64 = 3_600;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub velocity: Arc<dyn VelocityCounter>,
    /// Declines one card (by fingerprint) may collect in an hour; past it, attempts with that card
    /// are declined here without reaching the gateway (`CARD_DECLINES_PER_HOUR`).
    pub card_declines_per_hour: u32,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let limit = env.parse("CARD_DECLINES_PER_HOUR")?;
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, gateway: w.gateway()?, velocity: w.velocity()?, card_declines_per_hour: limit })
    }
}

fn declines_subject(fingerprint: &str) -> String {
    format!("declines#card#{fingerprint}")
}

/// The card's fingerprint, or None when it cannot be had (the limit protects; it must not stop sales).
async fn fingerprint(deps: &Deps, payment_method: &str) -> Option<String> {
    match deps.gateway.card_fingerprint(payment_method).await {
        Ok(fp) => fp,
        Err(e) => {
            tracing::warn!(error = %e, "card fingerprint unavailable; attempt not limited per card");
            None
        }
    }
}

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
    // Card testing guesses a card's expiry or CVC one attempt at a time: every guess is a new
    // PaymentMethod of the same card (one fingerprint). Once a card has collected the limit of
    // declines in the last hour, further attempts are declined here, before any authorization.
    let card = fingerprint(deps, &order.payment_method).await;
    if let Some(fp) = &card {
        match deps.velocity.count_within(&declines_subject(fp), DECLINE_WINDOW_SECONDS).await {
            Ok(n) if n >= deps.card_declines_per_hour => {
                tracing::warn!(declines = n, limit = deps.card_declines_per_hour, "card over its decline limit; not sent to the gateway");
                return Err(StepError::PaymentDeclined(format!("card_velocity: this card was declined {n} times in the last hour; not sent to the gateway")));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "decline counter unavailable; attempt let through"),
        }
    }
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
            if let Some(fp) = &card {
                // Keyed by the order: a replayed step counts its decline once.
                if let Err(e) = deps.velocity.record_and_count_within(&declines_subject(fp), &order.order_id, &now_rfc3339(), DECLINE_WINDOW_SECONDS).await {
                    tracing::warn!(error = %e, "decline not counted");
                }
            }
            Err(StepError::PaymentDeclined(if code == decline_code { format!("{code}: {message}") } else { format!("{code} ({decline_code}): {message}") }))
        }
        Err(GatewayError::Retryable(m)) => Err(StepError::Retryable(m)),
        Err(e @ GatewayError::Rejected { .. }) => Err(StepError::Internal(e.to_string())),
    }
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("authorize_payment", payload, |i| handle(deps, i)).await
}
