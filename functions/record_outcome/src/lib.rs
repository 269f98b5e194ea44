//! The last state of every failure path: put the order in a clear end state (DECLINED,
//! OUT_OF_STOCK, REJECTED, FAILED) with a reason a person can read, after the compensations ran.
//! Orders decided after checkout (a reviewer's rejection, a timeout) also get an email.

use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{OrderRepository, Queue};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, queue: w.queue(), notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")? })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    pub outcome: OrderStatus,
    /// A fixed reason from the state machine (for example "fraud_rejected").
    #[serde(default)]
    pub reason: Option<String>,
    /// The Catch output `{Error, Cause}` of the step that failed, if any.
    #[serde(default)]
    pub error: Option<CaughtError>,
    /// Tell the customer by email (the storefront is no longer waiting for an answer).
    #[serde(default)]
    pub notify_customer: bool,
}

pub use orderflow_shared::lambda::CaughtError;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: OrderStatus,
    pub reason: String,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Outcome, StepError> {
    if !input.outcome.is_recordable_outcome() {
        return Err(StepError::InvalidInput(format!("{} is not a failure outcome", input.outcome.as_str())));
    }
    let reason = match (&input.reason, &input.error) {
        (Some(r), _) => r.clone(),
        (None, Some(e)) if input.outcome == OrderStatus::Failed => format!("{}: {}", e.error, e.message()),
        (None, Some(e)) => e.message(),
        (None, None) => input.outcome.as_str().to_lowercase(),
    };
    let event = TimelineEntry::now(&input.outcome.as_str().to_lowercase(), Some(reason.clone()));
    let moved = deps.orders.transition(&input.order_id, input.outcome, Some(reason.clone()), event).await?;
    if !moved {
        let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
        if order.status != input.outcome {
            return Err(StepError::InvalidState(format!("order {} is {}, not moving it to {}", input.order_id, order.status.as_str(), input.outcome.as_str())));
        }
    }
    if input.notify_customer {
        let kind = if input.outcome == OrderStatus::PartiallyFulfilled { NotificationKind::OrderPartiallyFulfilled } else { NotificationKind::OrderCancelled };
        deps.queue.send(&deps.notifications_queue_url, &Notification::new(&input.order_id, kind).to_json()).await?;
    }
    tracing::info!(status = input.outcome.as_str(), %reason, "order ended");
    Ok(Outcome { status: input.outcome, reason })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("record_outcome", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_json_yields_the_error_message() {
        let e = CaughtError { error: "PaymentDeclined".into(), cause: r#"{"errorType":"PaymentDeclined","errorMessage":"card_declined: no"}"#.into() };
        assert_eq!(e.message(), "card_declined: no");
        let raw = CaughtError { error: "States.Timeout".into(), cause: "timed out".into() };
        assert_eq!(raw.message(), "timed out");
    }
}
