//! Score the order with the explainable rules in shared::domain::fraud and store the score and
//! reasons on the order. A replay returns the stored assessment: the decision never flips.

use orderflow_shared::domain::fraud::{assess, Decision, FraudAssessment, Signals};
use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::ports::{OrderRepository, VelocityCounter};
use orderflow_shared::{ConfigError, Env, OrderRef, StepError};
use serde::Serialize;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub velocity: Arc<dyn VelocityCounter>,
    pub fraud_policy: orderflow_shared::domain::fraud::Policy,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, velocity: w.velocity()?, fraud_policy: Default::default() })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scored {
    pub decision: Decision,
    pub score: u32,
}

pub async fn handle(deps: &Deps, input: OrderRef) -> Result<Scored, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    if let Some(f) = &order.fraud {
        return Ok(Scored { decision: f.decision, score: f.score });
    }
    let payment = order.payment.as_ref().ok_or_else(|| StepError::InvalidState("fraud scoring needs an authorized payment".into()))?;
    let by_email = deps.velocity.record_and_count(&format!("email#{}", order.customer_email.to_lowercase()), &order.order_id, &order.created_at).await?;
    let by_card = match &payment.card_fingerprint {
        Some(fp) => deps.velocity.record_and_count(&format!("card#{fp}"), &order.order_id, &order.created_at).await?,
        None => 1,
    };
    let signals = Signals {
        billing_country: order.billing_address.country.clone(),
        shipping_country: order.shipping_address.country.clone(),
        total_minor: order.totals.total.minor,
        orders_by_email_24h: by_email,
        orders_by_card_24h: by_card,
        email_domain: order.customer_email.rsplit('@').next().unwrap_or("").to_string(),
        gateway_risk: payment.risk_level.clone().unwrap_or_else(|| "unknown".into()),
    };
    let a: FraudAssessment = assess(&signals, &deps.fraud_policy);
    let rules: Vec<&str> = a.reasons.iter().map(|r| r.rule.as_str()).collect();
    let ev = TimelineEntry::now("fraud_scored", Some(format!("{:?} with score {} [{}]", a.decision, a.score, rules.join(", ")).to_lowercase()));
    deps.orders.record_fraud(&order.order_id, &a, ev).await?;
    tracing::info!(score = a.score, decision = ?a.decision, "fraud scored");
    Ok(Scored { decision: a.decision, score: a.score })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("score_fraud", payload, |i| handle(deps, i)).await
}
