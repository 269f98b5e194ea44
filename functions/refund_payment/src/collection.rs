//! An operator's decision about goods that shipped uncharged (orders_api `POST
//! /ops/orders/{id}/uncharged`, queued here because this function holds the gateway key):
//! - retry_charge: capture what the uncharged parcels cost on the hold, in one final capture
//!   (key `<order>:capture-retry`, so a redelivered message charges once), record each parcel's
//!   capture; a refusal (the hold expired or was canceled meanwhile) marks the decision `failed`
//!   so the operator can decide again;
//! - record_external / write_off: release what is left of the hold (if any), and record it.
//!
//! The decision's status moves once (compare-and-set on `requested`); a redelivered message after
//! that changes nothing.

use super::Deps;
use orderflow_shared::domain::collection::uncharged;
use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::gateway::release_key;
use orderflow_shared::money::Money;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::StepError;
use serde_json::json;

pub fn capture_retry_key(order_id: &str) -> String {
    format!("{order_id}:capture-retry")
}

pub async fn apply(deps: &Deps, order_id: &str) -> Result<String, StepError> {
    let order = deps.orders.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
    let Some(c) = order.collection.clone() else { return Err(StepError::InvalidInput(format!("order {order_id} has no uncharged decision"))) };
    if c.status != "requested" {
        tracing::info!(status = %c.status, "uncharged decision already applied");
        return Ok(c.status);
    }
    let payment = order.payment.clone().ok_or_else(|| StepError::InvalidState(format!("order {order_id} has no payment")))?;
    let currency = payment.amount_authorized.currency;
    let owed = uncharged(&order);
    let retryable = |e: GatewayError| match e {
        GatewayError::Retryable(m) => Err(StepError::Retryable(m)),
        other => Ok(other),
    };
    let (status, detail) = match c.action.as_str() {
        "retry_charge" => {
            let total: i64 = owed.iter().map(|(_, m)| m.minor).sum();
            match deps.gateway.capture(&payment.intent_id, Money::new(total, currency), true, &capture_retry_key(order_id)).await {
                Ok(cap) => {
                    for (sid, amount) in &owed {
                        let ev = TimelineEntry::now("payment_captured", Some(format!("{} for {sid} (operator retry)", amount.display())));
                        deps.orders.record_capture(order_id, sid, *amount, ev).await?;
                    }
                    let settled = format!("{} captured by an operator's retry; the rest of the hold released", Money::new(total, currency).display());
                    deps.orders.update_payment(order_id, vec![("status", json!(cap.status)), ("settled", json!(settled))], None).await?;
                    ("collected", format!("{} captured", Money::new(total, currency).display()))
                }
                Err(e) => {
                    let refused = retryable(e)?;
                    tracing::warn!(error = %refused, "operator's retry of the charge refused");
                    ("failed", format!("the gateway refused the capture: {refused}"))
                }
            }
        }
        action => {
            // Nothing more will be captured: let go of what is still held.
            if payment.status == "requires_capture" && payment.settled.is_none() {
                match deps.gateway.void(&payment.intent_id, &release_key(order_id)).await {
                    Ok(st) => {
                        let settled = format!("hold released after the operator's {action}");
                        deps.orders.update_payment(order_id, vec![("status", json!(st)), ("settled", json!(settled))], None).await?;
                    }
                    Err(e) => {
                        let other = retryable(e)?;
                        tracing::warn!(error = %other, "hold could not be released (already gone)");
                    }
                }
            }
            let total = Money::new(c.amount_minor, currency).display();
            match action {
                "record_external" => ("recorded", format!("{total} paid elsewhere ({})", c.reference.clone().unwrap_or_default())),
                _ => ("written_off", format!("{total} written off")),
            }
        }
    };
    let ev = TimelineEntry::now(&format!("uncharged_{status}"), Some(detail.clone()));
    deps.orders.settle_collection(order_id, "requested", vec![("status", json!(status)), ("detail", json!(detail))], ev).await?;
    tracing::info!(action = %c.action, %status, %detail, "uncharged decision applied");
    Ok(status.to_string())
}
