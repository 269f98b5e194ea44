//! A return parcel arrived and its warehouse inspected it (partner_api `POST /warehouse/returns`
//! recorded the counts and woke the returns workflow). This step, each part once however often it
//! runs:
//! 1. takes the units back at that warehouse: resellable ones into its available stock, damaged
//!    ones written off, both counted as returned (one transaction with a marker per return parcel);
//! 2. records the refund of what was charged for the units that came back (their lines and share
//!    of tax; on the return that completes the order, with shipping when the store refunds it) on
//!    the order's ledger, under an id derived from the return and warehouse, and queues it for
//!    refund_payment (which sends it to the gateway once and emails the customer);
//! 3. marks the parcel `refunded`.

use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::domain::refund::Refund;
use orderflow_shared::domain::returns::{arrived_units, return_refund_amount, return_refund_id, status};
use orderflow_shared::ports::{OrderRepository, Queue, RecordRefund, StockLedger};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub queue: Arc<dyn Queue>,
    pub refunds_queue_url: String,
    /// `REFUND_SHIPPING_ON_FULL_RETURN` (a store setting): whether the return that brings the
    /// whole order back also refunds shipping.
    pub refund_shipping_on_full_return: bool,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            stock: w.stock()?,
            queue: w.queue(),
            refunds_queue_url: w.queue_url("REFUNDS_QUEUE_URL")?,
            refund_shipping_on_full_return: w.env.parse("REFUND_SHIPPING_ON_FULL_RETURN")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub order_id: String,
    pub return_id: String,
    pub warehouse: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    pub refund_id: Option<String>,
    pub amount_minor: i64,
    pub restocked: i64,
    pub written_off: i64,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Received, StepError> {
    let (oid, rid, wh) = (&input.order_id, &input.return_id, &input.warehouse);
    let order = deps.orders.get(oid).await?.ok_or_else(|| StepError::InvalidInput(format!("order {oid} not found")))?;
    let parcel = order
        .returns
        .get(rid)
        .and_then(|r| r.parcels.get(wh))
        .cloned()
        .ok_or_else(|| StepError::InvalidInput(format!("order {oid} has no return {rid} at {wh}")))?;
    let restocked: i64 = parcel.inspection.values().map(|i| i.resellable).sum();
    let written_off: i64 = parcel.inspection.values().map(|i| i.damaged).sum();
    let refund_id = return_refund_id(rid, wh);
    if parcel.status == status::REFUNDED {
        let amount = order.refunds.get(&refund_id).map(|r| r.amount_minor).unwrap_or(0);
        return Ok(Received { refund_id: parcel.refund_id, amount_minor: amount, restocked, written_off });
    }
    if parcel.status != status::RECEIVED {
        // Woken without an arrival on record (a token answered for another parcel): never refund
        // what did not come back. The execution fails and its alarm asks someone to look.
        return Err(StepError::InvalidState(format!("return {rid} at {wh} is {}, not received", parcel.status)));
    }
    let fresh = deps.stock.restock_return(&format!("{rid}#{wh}"), wh, &parcel.inspection).await?;
    tracing::info!(return_id = %rid, warehouse = %wh, restocked, written_off, fresh, "return units taken back");

    let arrived = arrived_units(&parcel);
    let mut amount = 0;
    let mut recorded_id = None;
    for attempt in 0..5 {
        let order =
            if attempt == 0 { order.clone() } else { deps.orders.get(oid).await?.ok_or_else(|| StepError::InvalidInput(format!("order {oid} not found")))? };
        if let Some(existing) = order.refunds.get(&refund_id) {
            amount = existing.amount_minor;
            recorded_id = Some(refund_id.clone());
            if existing.status == "requested" {
                // Recorded by an earlier run that may have died before queueing it.
                deps.queue.send(&deps.refunds_queue_url, &json!({"orderId": oid, "refundId": refund_id})).await?;
            }
            break;
        }
        amount = return_refund_amount(&order, &arrived, deps.refund_shipping_on_full_return);
        if amount <= 0 {
            tracing::warn!(return_id = %rid, "nothing left to refund for this return (already refunded by amount)");
            break;
        }
        let refund = Refund {
            refund_id: refund_id.clone(),
            amount_minor: amount,
            lines: arrived.clone(),
            reason: "requested_by_customer".into(),
            note: Some(format!("return {rid} ({wh})")),
            status: "requested".into(),
            gateway_refund_id: None,
            requested_at: orderflow_shared::domain::order::now_rfc3339(),
            request_hash: rid.clone(),
            return_id: Some(rid.clone()),
        };
        let units_before = arrived.keys().map(|k| (k.clone(), order.refunded_units.get(k).copied().unwrap_or(0))).collect();
        match deps.orders.record_refund(oid, &refund, order.refunded_minor, &units_before, order.return_seq).await? {
            RecordRefund::Recorded | RecordRefund::Exists(_) => {
                deps.queue.send(&deps.refunds_queue_url, &json!({"orderId": oid, "refundId": refund_id})).await?;
                recorded_id = Some(refund_id.clone());
                break;
            }
            RecordRefund::Conflict if attempt == 4 => return Err(StepError::Retryable(format!("the refund ledger of {oid} kept changing"))),
            RecordRefund::Conflict => continue,
        }
    }
    let event = TimelineEntry::now("return_restocked", Some(format!("{rid} {wh}: {restocked} back in stock, {written_off} written off")));
    let mut fields = vec![("status", json!(status::REFUNDED))];
    if let Some(id) = &recorded_id {
        fields.push(("refund_id", json!(id)));
    }
    deps.orders.update_return_parcel(oid, rid, wh, &[status::RECEIVED], fields, Some(event)).await?;
    tracing::info!(return_id = %rid, warehouse = %wh, amount_minor = amount, "return refund recorded and queued");
    Ok(Received { refund_id: recorded_id, amount_minor: amount, restocked, written_off })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("receive_return", payload, |i| handle(deps, i)).await
}
