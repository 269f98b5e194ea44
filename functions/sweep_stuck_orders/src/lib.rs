//! The sweeper (#10.3, INV-6), run by an EventBridge schedule: orders a checkout left PENDING for
//! longer than the Express workflow's maximum plus the idempotency claim's lease
//! (`STUCK_AFTER_SECONDS`, 330 s + margin) have no live checkout left and never will: the Express
//! execution timed out or was killed, or its compensation kept failing. Each is closed through the
//! same steps as a cancel, each idempotent: first the tombstone (PENDING -> FAILED
//! `checkout_abandoned`, conditional, so a checkout that finished meanwhile is left alone, and a late
//! retry of the checkout finds a decided order: reserve_stock answers `alreadyDecided` for any order
//! not PENDING, so nothing is reserved or authorized again), then the reservation released once, the
//! hold voided once (the order-derived key), the customer told once (send_notifications' marker),
//! and `abandoned_closed` on the timeline. A run that dies between the tombstone and the end is
//! finished by the next run, which also looks at FAILED orders it tombstoned and did not close.
//! Runs can overlap (the schedule's event is delivered at least once, an operator may run one by
//! hand): each order is closed under a lease on the order (`take_lease`, as long as a run can
//! live), so one run at a time does the closing steps and the timeline tells each once.
//! Found through the orders table's attention index (`GET /ops/orders?status=PENDING` serves the
//! same question to operators), never a scan.

use orderflow_shared::domain::order::{Order, OrderStatus, TimelineEntry};
use orderflow_shared::domain::order_index::{parse, ListQuery};
use orderflow_shared::gateway::{orphan_void_key, void_key};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{GatewayError, OrderRepository, PaymentGateway, Queue, StockLedger};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Serialize;
use std::sync::Arc;

pub const ABANDONED: &str = "checkout_abandoned";
/// At most this many pages of 100 a run; the next run (5 minutes later) takes the rest.
const MAX_PAGES: usize = 10;
/// How long a run holds an order it closes: longer than the function's timeout (120 s in
/// infra/template.yaml), so a lease only runs out when its run has ended.
pub const LEASE_SECONDS: i64 = 150;

pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
    pub stuck_after_seconds: i64,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            stock: w.stock()?,
            gateway: w.gateway()?,
            queue: w.queue(),
            notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")?,
            stuck_after_seconds: w.env.parse("STUCK_AFTER_SECONDS")?,
        })
    }
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    /// Orders closed by this run.
    pub closed: Vec<String>,
    /// Orders that moved on before the tombstone (their checkout finished after all).
    pub moved_on: usize,
    /// Orders another run was closing (its lease on them still running).
    pub left_to_other_run: usize,
}

/// What a run did with one order.
enum Closing {
    Closed,
    MovedOn,
    OtherRun,
}

fn query(params: &[(&str, String)]) -> Result<ListQuery, StepError> {
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    parse(&owned).map_err(|e| StepError::Internal(format!("sweeper query: {}", e.message)))
}

/// Every order of a listing, page by page (at most MAX_PAGES).
async fn all(deps: &Deps, status: &str, to: &str) -> Result<Vec<Order>, StepError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = vec![("status", status.to_string()), ("to", to.to_string()), ("limit", "100".to_string())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let (orders, next) = deps.orders.list(&query(&params)?).await?;
        out.extend(orders);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

pub async fn sweep(deps: &Deps, now: chrono::DateTime<chrono::Utc>) -> Result<Swept, StepError> {
    let cutoff = (now - chrono::Duration::seconds(deps.stuck_after_seconds)).to_rfc3339();
    let mut todo = all(deps, "PENDING", &cutoff).await?;
    // Tombstoned by an earlier run that did not get to the end.
    todo.extend(
        all(deps, "FAILED", &now.to_rfc3339())
            .await?
            .into_iter()
            .filter(|o| o.status_reason.as_deref() == Some(ABANDONED) && !o.timeline.iter().any(|t| t.event == "abandoned_closed")),
    );
    let mut swept = Swept::default();
    let mut failures = 0;
    for order in todo {
        let id = order.order_id.clone();
        let span = tracing::info_span!("sweep", order_id = %id);
        match tracing::Instrument::instrument(close(deps, order), span).await {
            Ok(Closing::Closed) => swept.closed.push(id),
            Ok(Closing::MovedOn) => swept.moved_on += 1,
            Ok(Closing::OtherRun) => swept.left_to_other_run += 1,
            Err(e) => {
                // One order's trouble does not stop the others; the next run retries it.
                failures += 1;
                tracing::error!(order_id = %id, error = %e, "could not close an abandoned order; the next run retries");
            }
        }
    }
    tracing::info!(closed = swept.closed.len(), moved_on = swept.moved_on, failures, "sweep done");
    if failures > 0 {
        return Err(StepError::Retryable(format!("{failures} abandoned order(s) not closed yet")));
    }
    Ok(swept)
}

/// Close one abandoned order: the tombstone, then (under the run's lease) the closing steps.
async fn close(deps: &Deps, order: Order) -> Result<Closing, StepError> {
    let id = order.order_id.as_str();
    if order.status == OrderStatus::Pending {
        let ev = TimelineEntry::now("abandoned", Some("the checkout did not finish; closed by the sweeper".into()));
        if !deps.orders.transition(id, OrderStatus::Failed, Some(ABANDONED.into()), ev).await? {
            tracing::info!("the order moved on before the sweeper; left alone");
            return Ok(Closing::MovedOn);
        }
    }
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if !deps.orders.take_lease(id, "sweep", &stamp(now + chrono::Duration::seconds(LEASE_SECONDS)), &stamp(now)).await? {
        tracing::info!("another sweep is closing this order; left to it");
        return Ok(Closing::OtherRun);
    }
    // Read again under the lease: a run that held it before may have closed the order meanwhile.
    let under_lease = deps.orders.get(id).await?.ok_or_else(|| StepError::Internal(format!("order {id} vanished")))?;
    if under_lease.timeline.iter().any(|t| t.event == "abandoned_closed") {
        return Ok(Closing::OtherRun);
    }
    if deps.stock.release(id).await? {
        deps.orders.append_timeline(id, TimelineEntry::now("stock_released", None)).await?;
    }
    // Read again: the hold may have been recorded after the listing was read.
    let current = deps.orders.get(id).await?.ok_or_else(|| StepError::Internal(format!("order {id} vanished")))?;
    let gateway_error = |e: GatewayError| match e {
        GatewayError::Retryable(m) => StepError::Retryable(m),
        other => StepError::Internal(other.to_string()),
    };
    match current.payment {
        Some(mut payment) if payment.status != "canceled" => {
            payment.status = deps.gateway.void(&payment.intent_id, &void_key(id)).await.map_err(gateway_error)?;
            let ev = TimelineEntry::now("payment_voided", Some(format!("hold {} released", payment.intent_id)));
            deps.orders.record_payment(id, &payment, Some(ev)).await?;
        }
        Some(_) => {}
        None => {
            // No hold recorded: every authorize answer may have been lost after the gateway made
            // the hold. Ask the gateway for holds made for this order since it was created.
            let from = chrono::DateTime::parse_from_rfc3339(&current.created_at).map(|t| t.timestamp()).unwrap_or(0) - 60;
            for intent in deps.gateway.holds_for_order(id, from, chrono::Utc::now().timestamp()).await.map_err(gateway_error)? {
                deps.gateway.void(&intent, &orphan_void_key(id, &intent)).await.map_err(gateway_error)?;
                deps.orders.append_timeline(id, TimelineEntry::now("orphan_hold_voided", Some(format!("hold {intent} released")))).await?;
                tracing::warn!(intent_id = %intent, "a hold the order never recorded was found at the gateway and voided");
            }
        }
    }
    deps.queue.send(&deps.notifications_queue_url, &Notification::new(id, NotificationKind::OrderCancelled).to_json()).await?;
    deps.orders.append_timeline(id, TimelineEntry::now("abandoned_closed", None)).await?;
    tracing::warn!("abandoned order closed: stock released, hold voided, customer told");
    Ok(Closing::Closed)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    // The schedule's event (an EventBridge "Scheduled Event") carries nothing the sweep needs.
    orderflow_shared::lambda::invoke_json("sweep_stuck_orders", payload, |_: serde_json::Value| sweep(deps, chrono::Utc::now())).await
}
