//! The end of fulfillment for the payment: release whatever of the hold was not captured, once.
//! On the happy path the captures add up to the total and there is nothing left. On the stall path
//! (a warehouse never answered, or the hold guard fired because the hold is `margin` from expiring:
//! PAY-5) what shipped stays captured and the rest is released, and this step says which end state
//! the order gets: PARTIALLY_FULFILLED when something shipped, FAILED otherwise.

use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::gateway::{capture_shipped_key, release_key};
use orderflow_shared::lambda::CaughtError;
use orderflow_shared::money::Money;
use orderflow_shared::ports::GatewayError;
use orderflow_shared::ports::{OrderRepository, PaymentGateway};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub hold_expiry_margin_seconds: i64,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, gateway: w.gateway()?, hold_expiry_margin_seconds: w.env.parse("HOLD_EXPIRY_MARGIN_SECONDS")? })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    /// The Catch output of a stalled fulfillment; absent on the happy path.
    #[serde(default)]
    pub error: Option<CaughtError>,
    /// The warehouses' branches as they ended (`{"failed": bool, "error"?}`): a parcel step that
    /// failed after its retries ended only its own branch (#10 item 5), and the order is settled as
    /// a stalled one once the others have finished.
    #[serde(default)]
    pub branches: Vec<Branch>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Branch {
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub error: Option<CaughtError>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub captured_minor: i64,
    pub released_minor: i64,
    /// The order's end state when fulfillment stalled.
    pub outcome: OrderStatus,
    pub reason: String,
    /// Settled as a stall (the workflow then releases what did not ship, records the end state
    /// and fails, so the alarm sees it).
    pub stalled: bool,
}

pub async fn handle(deps: &Deps, mut input: Input) -> Result<Settled, StepError> {
    if input.error.is_none() {
        if let Some(b) = input.branches.iter_mut().find(|b| b.failed) {
            let e = b.error.take().unwrap_or_default();
            tracing::error!(error = %e.error, cause = %e.message(), "parcel failed");
            input.error = Some(CaughtError { error: "ParcelFailed".into(), cause: format!("{}: {}", e.error, e.message()) });
        }
    }
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let payment = order.payment.clone().ok_or_else(|| StepError::InvalidState(format!("order {} has no payment", order.order_id)))?;
    let now = chrono::Utc::now().timestamp();
    let guard_due = payment.capture_before.is_some_and(|cb| now >= cb - deps.hold_expiry_margin_seconds);
    let reason = match &input.error {
        None if order.cancel.is_some() && !matches!(order.status, OrderStatus::Shipped | OrderStatus::Delivered) => "cancelled".to_string(),
        None => "fulfilled".to_string(),
        Some(_) if guard_due => "payment_hold_expiring".to_string(),
        Some(e) if e.error == "DispatchTimedOut" || e.error == "States.Timeout" || e.cause.contains("DispatchTimedOut") => "warehouse_no_answer".to_string(),
        Some(e) if e.error == "ParcelFailed" => format!("parcel_failed: {}", e.cause.chars().take(300).collect::<String>()),
        Some(e) => format!("fulfillment_error: {}: {}", e.error, e.cause.chars().take(300).collect::<String>()),
    };
    let stalled = input.error.is_some();
    let settled_before = payment.settled.is_some();
    let payment = capture_deferred(deps, &order, payment, &reason).await?;
    // The final capture released the rest of the hold.
    let released_by_final_capture = if !settled_before && payment.settled.is_some() { payment.amount_authorized.minor - payment.captured_minor } else { 0 };
    // PARTIALLY_FULFILLED promises "what shipped was charged": only when something was captured.
    // Goods that left without a capture (the hold was gone) end FAILED, with the reason, alarmed.
    let shipped_everything = matches!(order.status, OrderStatus::Shipped | OrderStatus::Delivered);
    let outcome = match &input.error {
        // Cancelled (CAN-1, CAN-2): what shipped before the warehouses answered stays charged.
        None if order.cancel.is_some() && !shipped_everything && payment.captured_minor > 0 => OrderStatus::PartiallyFulfilled,
        None if order.cancel.is_some() && !shipped_everything && order.shipments.is_empty() => OrderStatus::Cancelled,
        None => order.status,
        Some(_) if payment.captured_minor > 0 => OrderStatus::PartiallyFulfilled,
        Some(_) => OrderStatus::Failed,
    };
    let remaining = payment.amount_authorized.minor - payment.captured_minor;
    let mut released = released_by_final_capture;
    // Goods left and nothing was charged for them: the hold is kept (it expires by itself) so an
    // operator can still retry the charge on it (POST /ops/orders/{id}/uncharged, #9 item 4); the
    // operator's decision releases it otherwise.
    let keep_for_operator =
        outcome == OrderStatus::Failed && !orderflow_shared::domain::collection::uncharged(&order).is_empty() && payment.status == "requires_capture";
    if keep_for_operator && payment.settled.is_none() {
        tracing::warn!(remaining, "goods shipped uncharged: hold kept for an operator's decision");
        deps.orders
            .append_timeline(
                &order.order_id,
                TimelineEntry::now("payment_uncharged", Some(format!("{reason}: parcels shipped and not charged; hold kept for an operator"))),
            )
            .await?;
        return Ok(Settled { captured_minor: payment.captured_minor, released_minor: 0, outcome, reason, stalled });
    }
    if payment.settled.is_none() && remaining > 0 && payment.status != "canceled" {
        // Cancel releases what is still held; the captures stand.
        let status = deps.gateway.void(&payment.intent_id, &release_key(&order.order_id)).await.map_err(|e| match e {
            GatewayError::Retryable(m) => StepError::Retryable(m),
            other => StepError::Internal(other.to_string()),
        })?;
        released = remaining;
        let detail = format!(
            "{} released, {} captured ({reason})",
            Money::new(remaining, payment.amount_authorized.currency).display(),
            Money::new(payment.captured_minor, payment.amount_authorized.currency).display()
        );
        deps.orders
            .update_payment(
                &order.order_id,
                vec![("status", json!(status)), ("settled", json!(detail))],
                Some(TimelineEntry::now("payment_hold_released", Some(detail.clone()))),
            )
            .await?;
    } else if payment.settled.is_none() {
        deps.orders.update_payment(&order.order_id, vec![("settled", json!(format!("fully captured ({reason})")))], None).await?;
    }
    tracing::info!(captured_minor = payment.captured_minor, released_minor = released, %reason, "payment settled");
    Ok(Settled { captured_minor: payment.captured_minor, released_minor: released, outcome, reason, stalled })
}

/// Parcels shipped on a hold without multicapture were recorded as owed (capture_payment); capture
/// all of it now in one final capture, which also releases the rest of the hold. Replays use the
/// same idempotency key, and the per-parcel records are conditional, so this charges once.
async fn capture_deferred(
    deps: &Deps,
    order: &orderflow_shared::domain::order::Order,
    mut payment: orderflow_shared::domain::order::PaymentRecord,
    reason: &str,
) -> Result<orderflow_shared::domain::order::PaymentRecord, StepError> {
    // Every deferred parcel counts, recorded or not, so a replay after a crash asks the gateway for
    // the same amount under the same key (Stripe refuses a key reused with other parameters).
    let deferred: Vec<(&String, Money)> = order.shipments.iter().filter_map(|(id, s)| s.capture_deferred.map(|m| (id, m))).collect();
    let total: i64 = deferred.iter().map(|(_, m)| m.minor).sum();
    let owed: Vec<&(&String, Money)> = deferred.iter().filter(|(id, _)| order.shipments[*id].captured.is_none()).collect();
    if total <= 0 || payment.settled.is_some() || payment.status == "canceled" {
        return Ok(payment);
    }
    let currency = payment.amount_authorized.currency;
    let cap =
        deps.gateway.capture(&payment.intent_id, Money::new(total, currency), true, &capture_shipped_key(&order.order_id)).await.map_err(|e| match e {
            GatewayError::Retryable(m) => StepError::Retryable(m),
            other => StepError::PaymentDeclined(format!("capture of what shipped refused: {other}")),
        })?;
    tracing::info!(status = %cap.status, received = cap.amount_received, "captured what shipped in one final capture");
    for (sid, amount) in &owed {
        deps.orders
            .record_capture(&order.order_id, sid, *amount, TimelineEntry::now("payment_captured", Some(format!("{} for {sid} ({reason})", amount.display()))))
            .await?;
    }
    payment.captured_minor += owed.iter().map(|(_, m)| m.minor).sum::<i64>();
    let detail = format!("{} captured for what shipped, the rest of the hold released ({reason})", Money::new(total, currency).display());
    deps.orders.update_payment(&order.order_id, vec![("status", json!(cap.status)), ("settled", json!(detail))], None).await?;
    payment.settled = Some(detail);
    Ok(payment)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("settle_payment", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingGateway};

    #[tokio::test]
    async fn owed_parcels_are_captured_in_one_final_capture_once_however_often_settle_runs() {
        let mut order = shipped_order("ord_1", 10_000, Some(false), &[("P1", 6_000), ("P2", 4_000)]);
        for s in order.shipments.values_mut() {
            s.capture_deferred = s.amount;
        }
        let orders = Arc::new(InMemoryOrders::with(order));
        let gw = Arc::new(RecordingGateway::default());
        let d = Deps { orders: orders.clone(), gateway: gw.clone(), hold_expiry_margin_seconds: 86_400 };
        for _ in 0..3 {
            let out = handle(&d, Input { order_id: "ord_1".into(), error: None, branches: vec![] }).await.unwrap();
            assert_eq!(out.captured_minor, 10_000);
        }
        let captures: Vec<_> = gw.requests().into_iter().filter(|r| r.operation == "capture").collect();
        assert_eq!(captures.len(), 1, "{captures:?}");
        assert_eq!((captures[0].amount_minor, captures[0].final_capture, captures[0].idempotency_key.as_str()), (10_000, Some(true), "ord_1:capture-shipped"));
        assert!(gw.requests().iter().all(|r| r.operation != "void"), "the final capture released the rest; no cancel");
        let o = orders.order("ord_1");
        assert!(o.shipments.values().all(|s| s.captured == s.capture_deferred));
        assert_eq!(o.payment.unwrap().captured_minor, 10_000);
    }

    #[tokio::test]
    async fn on_the_stall_path_what_shipped_is_captured_and_the_order_is_partially_fulfilled() {
        let mut order = shipped_order("ord_1", 10_000, Some(false), &[("P1", 6_000)]);
        order.shipments.get_mut("P1").unwrap().capture_deferred = Some(Money::new(6_000, order.totals.currency()));
        let orders = Arc::new(InMemoryOrders::with(order));
        let gw = Arc::new(RecordingGateway::default());
        let d = Deps { orders: orders.clone(), gateway: gw.clone(), hold_expiry_margin_seconds: 86_400 };
        let stalled = CaughtError { error: "DispatchTimedOut".into(), cause: String::new() };
        let out = handle(&d, Input { order_id: "ord_1".into(), error: Some(stalled), branches: vec![] }).await.unwrap();
        assert_eq!((out.captured_minor, out.released_minor, out.outcome), (6_000, 4_000, OrderStatus::PartiallyFulfilled));
        assert_eq!(gw.requests().len(), 1);
    }
}
