//! The unit of work between the lifecycle workflow and a warehouse: one warehouse's pick list for an
//! order and how long to wait for the next shipment report. route_shipments
//! makes the first; ship_stock makes the next one (the lines still open) after each parcel.

use crate::domain::fulfillment::wait_seconds;
use crate::domain::order::{Address, Order, ShipLine};
use crate::env::{ConfigError, Env};
use crate::StepError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the workflow's Map iterates over: one warehouse's pick list (send_pick_list sends it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DispatchTask {
    pub dispatch_id: String,
    pub warehouse: String,
    /// The wait's hard limit (TimeoutSeconds): `heartbeat_seconds` and one more second.
    pub wait_seconds: i64,
    /// How long the workflow waits for this warehouse's next shipment report: the warehouse
    /// timeout, capped by the payment hold guard (fulfillment::wait_seconds). It is the wait's
    /// heartbeat clock (HeartbeatSeconds): with no heartbeat the wait ends by it, and partner_api's
    /// heartbeat (SendTaskHeartbeat, "is this wait still open?") is answered for a task that has a
    /// heartbeat clock, as AWS documents the call; a heartbeat never extends the wait more than a
    /// second (`wait_seconds` caps it: WF-2, PAY-5).
    pub heartbeat_seconds: i64,
    /// Units of this dispatch not shipped yet; 0 ends the dispatch.
    pub open_units: i64,
    pub pick_list: PickList,
}

/// The message a warehouse receives (with the `dispatchToken`, `pick_list_message`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PickList {
    pub order_id: String,
    pub dispatch_id: String,
    pub warehouse: String,
    pub lines: Vec<ShipLine>,
    pub ship_to: Address,
    pub service_level: String,
}

/// A pick list's token as the order keeps it: a SHA-256 prefix (the token itself is a bearer
/// credential for the workflow's wait and is never stored). send_pick_list records it against its
/// dispatch before the warehouse can see the token; partner_api accepts a report or cancellation
/// only with a token issued for that order and that dispatch (#10 item 9).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))[..32].to_string()
}

/// The message a warehouse's queue receives: the pick list and the token its answer must carry.
pub fn pick_list_message(pick_list: &PickList, token: &str) -> serde_json::Value {
    serde_json::json!({"type": "pick_list", "pickList": pick_list, "dispatchToken": token})
}

pub fn dispatch_id(order_id: &str, warehouse: &str) -> String {
    format!("{order_id}-{warehouse}")
}

/// What the steps that dispatch to warehouses (route_shipments, ship_stock) read from their
/// environment.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Warehouse id -> its pick-list queue URL (`Env::warehouse_queue_urls`).
    pub warehouse_queue_urls: BTreeMap<String, String>,
    /// The hold guard acts this long before a payment hold expires (PAY-5).
    pub hold_expiry_margin_seconds: i64,
    /// How long the workflow waits for a warehouse's next shipment report.
    pub warehouse_timeout_seconds: i64,
}

impl DispatchSettings {
    pub fn from_env(env: &Env) -> Result<DispatchSettings, ConfigError> {
        Ok(DispatchSettings {
            warehouse_queue_urls: env.warehouse_queue_urls()?,
            hold_expiry_margin_seconds: env.parse("HOLD_EXPIRY_MARGIN_SECONDS")?,
            warehouse_timeout_seconds: env.parse("WAREHOUSE_TIMEOUT_SECONDS")?,
        })
    }
}

/// The task for one warehouse's still-open lines (also used after each shipment by ship_stock).
pub fn task(settings: &DispatchSettings, order: &Order, warehouse: &str, open: &BTreeMap<String, i64>) -> Result<DispatchTask, StepError> {
    // The queue itself is send_pick_list's to choose; a warehouse without one is a setup error here.
    if !settings.warehouse_queue_urls.contains_key(warehouse) {
        return Err(StepError::Internal(format!("no pick-list queue configured for warehouse {warehouse}")));
    }
    let capture_before = order.payment.as_ref().and_then(|p| p.capture_before);
    let lines: Vec<ShipLine> = open.iter().filter(|(_, q)| **q > 0).map(|(sku, q)| ShipLine { sku: sku.clone(), quantity: *q }).collect();
    // The wait ends by its heartbeat clock; ASL wants HeartbeatSeconds < TimeoutSeconds, and the
    // timeout a second later caps a wait that was heartbeaten.
    let wait = wait_seconds(chrono::Utc::now().timestamp(), capture_before, settings.hold_expiry_margin_seconds, settings.warehouse_timeout_seconds);
    Ok(DispatchTask {
        dispatch_id: dispatch_id(&order.order_id, warehouse),
        warehouse: warehouse.to_string(),
        wait_seconds: wait + 1,
        heartbeat_seconds: wait,
        open_units: lines.iter().map(|l| l.quantity).sum(),
        pick_list: PickList {
            order_id: order.order_id.clone(),
            dispatch_id: dispatch_id(&order.order_id, warehouse),
            warehouse: warehouse.to_string(),
            lines,
            ship_to: order.shipping_address.clone(),
            service_level: order.shipping_method.clone(),
        },
    })
}

/// The lookup that takes a carrier tracking number to its order and shipment (written by buy_label,
/// read by apply_webhook_events).
pub fn tracker_lookup_key(tracking_code: &str) -> String {
    format!("tracker:{tracking_code}")
}

/// The input of the per-parcel steps (buy_label, capture_payment): the order and the parcel the
/// warehouse reported (`$.shipment` is the output of the wait, `{"shipmentId"}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParcelStep {
    pub order_id: String,
    pub shipment: ShipmentRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentRef {
    pub shipment_id: String,
}
