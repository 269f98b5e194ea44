//! The carrier's side of a return (statemachines/returns.asl.json):
//! - `prepare`: for each return parcel still `label_pending`, buy a prepaid return label from the
//!   carrier (EasyPost `is_return`: the outbound parcel's addresses, swapped by the carrier, so it
//!   goes back to the warehouse that shipped the units), index its tracking number, record it on the
//!   parcel (`awaiting`) and email the customer the label(s), once. Answers the parcels to wait for:
//!   the warehouse's queue, the message it gets and how long the authorization lasts.
//!   A return the carrier started (return to sender) needs no label and no email.
//! - `expire`: the authorization ran out. The parcel moves `awaiting` -> `expired` (conditional: an
//!   arrival recorded at the same moment wins, and the answer says so, so the workflow goes on to
//!   restock and refund it); an unused label is refunded with the carrier, and the customer told.
//!
//! Carrier calls carry keys derived from the return and warehouse: a replay never buys or refunds a
//! second time.

use orderflow_shared::dispatch::tracker_lookup_key;
use orderflow_shared::domain::order::{now_rfc3339, Order, Parcel, TimelineEntry};
use orderflow_shared::domain::returns::{status, ReturnLabel, ReturnParcel, ReturnRecord};
use orderflow_shared::notification::{Notification, NotificationKind};
use orderflow_shared::ports::{Carrier, Catalog, GatewayError, LabelRequest, Lookups, OrderRepository, Queue};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start.
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub catalog: Arc<dyn Catalog>,
    pub lookups: Arc<dyn Lookups>,
    pub carrier: Arc<dyn Carrier>,
    pub queue: Arc<dyn Queue>,
    pub notifications_queue_url: String,
    pub warehouse_queue_urls: BTreeMap<String, String>,
    /// How long a return authorization waits for its parcel (`RETURN_AUTHORIZATION_SECONDS`, at
    /// most 30 days; the template's default, 28 days, keeps an unused USPS label refundable, which
    /// the carrier allows within 30 days of its purchase).
    pub authorization_seconds: i64,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps {
            orders: w.orders()?,
            catalog: w.catalog()?,
            lookups: w.idempotency()?,
            carrier: w.carrier()?,
            queue: w.queue(),
            notifications_queue_url: w.queue_url("NOTIFICATIONS_QUEUE_URL")?,
            warehouse_queue_urls: w.env.warehouse_queue_urls()?,
            authorization_seconds: w.env.parse("RETURN_AUTHORIZATION_SECONDS")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub action: String,
    pub order_id: String,
    pub return_id: String,
    #[serde(default)]
    pub warehouse: Option<String>,
}

fn carrier_error(e: GatewayError) -> StepError {
    match e {
        GatewayError::Retryable(m) => StepError::Retryable(m),
        other => StepError::Internal(format!("carrier refused: {other}")),
    }
}

async fn load(deps: &Deps, input: &Input) -> Result<(Order, ReturnRecord), StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let ret = order
        .returns
        .get(&input.return_id)
        .cloned()
        .ok_or_else(|| StepError::InvalidInput(format!("order {} has no return {}", order.order_id, input.return_id)))?;
    Ok((order, ret))
}

/// The return parcel's size: the outbound parcel from that warehouse that carried the most of its
/// units, its weight scaled to the units coming back.
fn parcel_of(order: &Order, p: &ReturnParcel) -> (Parcel, u32) {
    let carried = |s: &&orderflow_shared::domain::order::Shipment| s.lines.iter().filter(|l| p.lines.contains_key(&l.sku)).map(|l| l.quantity).sum::<i64>();
    let best = order.shipments.values().filter(|s| s.warehouse == p.warehouse).max_by_key(carried);
    let back: i64 = p.lines.values().sum();
    match best {
        Some(s) => {
            let out: i64 = s.lines.iter().map(|l| l.quantity).sum::<i64>().max(1);
            let grams = (s.weight_grams as i64 * back.min(out) + out - 1) / out;
            (s.parcel.clone(), grams.clamp(1, 70_000) as u32)
        }
        None => (Parcel { length_cm: 30, width_cm: 20, height_cm: 10 }, 500),
    }
}

async fn prepare(deps: &Deps, input: &Input) -> Result<Value, StepError> {
    let (order, mut ret) = load(deps, input).await?;
    let pending: Vec<ReturnParcel> = ret.parcels.values().filter(|p| p.status == status::LABEL_PENDING).cloned().collect();
    if !pending.is_empty() {
        let network = deps.catalog.network().await?;
        for p in pending {
            let warehouse = network.get(&p.warehouse).ok_or_else(|| StepError::Internal(format!("warehouse {} is not in the network", p.warehouse)))?;
            let (parcel, weight_grams) = parcel_of(&order, &p);
            let req = LabelRequest {
                reference: format!("{}/{}/{}", order.order_id, ret.return_id, p.warehouse),
                // As the outbound parcel went; the carrier swaps them for a return.
                from: warehouse.address.clone(),
                to: order.shipping_address.clone(),
                parcel,
                weight_grams,
                service_level: "standard".into(),
                is_return: true,
            };
            let label =
                deps.carrier.buy_label(&req, &format!("{}:return-label:{}:{}", order.order_id, ret.return_id, p.warehouse)).await.map_err(carrier_error)?;
            // Index first: the carrier's first tracking event can beat the next write.
            let target = json!({"orderId": order.order_id, "returnId": ret.return_id, "warehouse": p.warehouse});
            deps.lookups.put_lookup(&tracker_lookup_key(&label.tracking_code), &target).await?;
            let recorded = ReturnLabel {
                carrier_shipment_id: label.carrier_shipment_id,
                carrier: label.carrier,
                tracking_code: label.tracking_code,
                label_url: label.label_url,
                bought_at: now_rfc3339(),
            };
            let event =
                TimelineEntry::now("return_label_bought", Some(format!("{} {}: {} {}", ret.return_id, p.warehouse, recorded.carrier, recorded.tracking_code)));
            deps.orders
                .update_return_parcel(
                    &order.order_id,
                    &ret.return_id,
                    &p.warehouse,
                    &[status::LABEL_PENDING],
                    vec![("status", json!(status::AWAITING)), ("label", json!(recorded))],
                    Some(event),
                )
                .await?;
            tracing::info!(return_id = %ret.return_id, warehouse = %p.warehouse, tracking_code = %recorded.tracking_code, "return label bought");
        }
        ret = load(deps, input).await?.1;
        // The labels, in one email (the notification's marker makes it one however often this runs).
        let n = Notification::for_return(&order.order_id, NotificationKind::ReturnLabel, &ret.return_id, None);
        deps.queue.send(&deps.notifications_queue_url, &n.to_json()).await?;
    }
    let mut parcels = vec![];
    for p in ret.parcels.values().filter(|p| p.status == status::AWAITING) {
        let queue_url =
            deps.warehouse_queue_urls.get(&p.warehouse).ok_or_else(|| StepError::Internal(format!("warehouse {} has no queue in this stack", p.warehouse)))?;
        parcels.push(json!({
            "warehouse": p.warehouse,
            "queueUrl": queue_url,
            "waitSeconds": deps.authorization_seconds,
            "message": {
                "orderId": order.order_id, "returnId": ret.return_id, "warehouse": p.warehouse, "reason": ret.reason,
                "lines": p.lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
                "trackingCode": p.label.as_ref().map(|l| l.tracking_code.clone()).or_else(|| ret.shipment_id.as_ref().and_then(|sid| order.shipments.get(sid)).and_then(|s| s.tracking_code.clone())),
            },
        }));
    }
    Ok(json!({"parcels": parcels}))
}

async fn expire(deps: &Deps, input: &Input) -> Result<Value, StepError> {
    let warehouse = input.warehouse.as_deref().ok_or_else(|| StepError::InvalidInput("expire needs the warehouse".into()))?;
    let mut attempts = 0;
    let (order, ret, p) = loop {
        attempts += 1;
        let (order, ret) = load(deps, input).await?;
        let p =
            ret.parcels.get(warehouse).cloned().ok_or_else(|| StepError::InvalidInput(format!("return {} has no parcel for {warehouse}", ret.return_id)))?;
        match p.status.as_str() {
            status::AWAITING if attempts <= 3 => {
                let event = TimelineEntry::now("return_expired", Some(format!("{} {warehouse}: nothing arrived", ret.return_id)));
                let fields = vec![("status", json!(status::EXPIRED))];
                // false: the arrival was recorded between our read and write; read again.
                if deps.orders.update_return_parcel(&order.order_id, &ret.return_id, warehouse, &[status::AWAITING], fields, Some(event)).await? {
                    break (order, ret, p);
                }
            }
            status::AWAITING => return Err(StepError::Retryable(format!("return {} kept changing", ret.return_id))),
            status::EXPIRED => break (order, ret, p),
            _ => {
                // It arrived just as the wait ended: restock and refund it as usual.
                tracing::info!(return_id = %ret.return_id, %warehouse, status = %p.status, "return arrived as its authorization ended");
                return Ok(json!({"arrived": true}));
            }
        }
    };
    if let (Some(label), None) = (&p.label, &p.label_refund_status) {
        let refund_status = deps
            .carrier
            .refund_label(&label.carrier_shipment_id, &format!("{}:return-label-refund:{}:{warehouse}", order.order_id, ret.return_id))
            .await
            .map_err(carrier_error)?;
        let event = TimelineEntry::now("return_label_refund", Some(format!("{} {warehouse}: {refund_status}", label.tracking_code)));
        deps.orders
            .update_return_parcel(
                &order.order_id,
                &ret.return_id,
                warehouse,
                &[status::EXPIRED],
                vec![("label_refund_status", json!(refund_status))],
                Some(event),
            )
            .await?;
        tracing::info!(return_id = %ret.return_id, %warehouse, %refund_status, "unused return label refunded with the carrier");
    }
    if ret.by == "customer" {
        let n = Notification::for_return(&order.order_id, NotificationKind::ReturnExpired, &ret.return_id, Some(warehouse));
        deps.queue.send(&deps.notifications_queue_url, &n.to_json()).await?;
    }
    Ok(json!({"arrived": false}))
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Value, StepError> {
    match input.action.as_str() {
        "prepare" => prepare(deps, &input).await,
        "expire" => expire(deps, &input).await,
        other => Err(StepError::InvalidInput(format!("unknown action {other}"))),
    }
}

pub async fn invoke(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    orderflow_shared::lambda::invoke_json("return_labels", payload, |i| handle(deps, i)).await
}
