//! Buy the carrier label for a reported parcel (production HTTP client, EasyPost-shaped API), store
//! the carrier, tracking number and links on the shipment, and index the tracking number so the
//! carrier's webhooks find their order. A replay never buys a second label: the stored tracking
//! number short-circuits, and the carrier calls carry keys derived from our shipment id.

use orderflow_shared::dispatch::tracker_lookup_key;
use orderflow_shared::dispatch::ParcelStep as Input;
use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::ports::{Carrier, Catalog, Lookups, OrderRepository};
use orderflow_shared::ports::{GatewayError, LabelRequest};
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub catalog: Arc<dyn Catalog>,
    pub lookups: Arc<dyn Lookups>,
    pub carrier: Arc<dyn Carrier>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, catalog: w.catalog()?, lookups: w.idempotency()?, carrier: w.carrier()? })
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Labelled {
    pub carrier: String,
    pub tracking_code: String,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Labelled, StepError> {
    let order = deps.orders.get(&input.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", input.order_id)))?;
    let sid = &input.shipment.shipment_id;
    let shipment = order.shipments.get(sid).ok_or_else(|| StepError::InvalidInput(format!("order {} has no shipment {sid}", order.order_id)))?;
    if let (Some(carrier), Some(code)) = (&shipment.carrier, &shipment.tracking_code) {
        return Ok(Labelled { carrier: carrier.clone(), tracking_code: code.clone() });
    }
    let network = deps.catalog.network().await?;
    let from = network
        .get(&shipment.warehouse)
        .map(|w| w.address.clone())
        .ok_or_else(|| StepError::Internal(format!("warehouse {} is not in the network", shipment.warehouse)))?;
    let req = LabelRequest {
        // The carrier's reference names the order too: a warehouse's parcel id is only unique
        // within its order, and the store searches the carrier's dashboard by this.
        reference: format!("{}/{sid}", order.order_id),
        from,
        to: order.shipping_address.clone(),
        parcel: shipment.parcel.clone(),
        weight_grams: shipment.weight_grams,
        service_level: order.shipping_method.clone(),
        is_return: false,
    };
    let label = deps.carrier.buy_label(&req, &format!("{}:label:{sid}", order.order_id)).await.map_err(|e| match e {
        GatewayError::Retryable(m) => StepError::Retryable(m),
        other => StepError::Internal(format!("carrier refused the label: {other}")),
    })?;
    // Index first: the carrier may send its first tracking event the moment the label exists.
    deps.lookups.put_lookup(&tracker_lookup_key(&label.tracking_code), &json!({"orderId": order.order_id, "shipmentId": sid})).await?;
    deps.orders
        .update_shipment(
            &order.order_id,
            sid,
            vec![
                ("carrier", json!(label.carrier)),
                ("service", json!(label.service)),
                ("tracking_code", json!(label.tracking_code)),
                ("tracking_url", json!(label.tracking_url)),
                ("label_url", json!(label.label_url)),
            ],
            Some(TimelineEntry::now("label_purchased", Some(format!("{sid}: {} {} {}", label.carrier, label.service, label.tracking_code)))),
        )
        .await?;
    tracing::info!(shipment_id = %sid, tracking_code = %label.tracking_code, carrier = %label.carrier, "label bought");
    Ok(Labelled { carrier: label.carrier, tracking_code: label.tracking_code })
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("buy_label", payload, |i| handle(deps, i)).await
}
