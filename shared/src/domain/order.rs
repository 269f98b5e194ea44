//! The order record, its status machine and its timeline.

use crate::money::{Currency, Money};
use serde::{Deserialize, Serialize};

/// Order ids are `ord_` + 26 lowercase base32-ish chars: short enough for a Step Functions execution
/// name (80 chars), distinctive enough that logs and the local edge can spot them in any payload.
pub fn new_order_id() -> String {
    format!("ord_{}", uuid::Uuid::new_v4().simple())
}

/// A cancel request as the order keeps it. `reason` is the operator's text (operators only) or
/// "customer_request".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub requested_at: String,
    /// "customer" or "operator".
    pub by: String,
    pub reason: String,
}

pub fn is_order_id(s: &str) -> bool {
    s.len() == 36 && s.starts_with("ord_") && s[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Received and priced; the checkout workflow is deciding.
    Pending,
    /// Fraud rules asked for a human; stock and the payment hold are kept meanwhile.
    UnderReview,
    /// Stock reserved, payment held, fraud approved, confirmation email queued.
    Confirmed,
    /// The gateway declined the payment; stock released.
    Declined,
    /// Not enough stock; nothing reserved, nothing held.
    OutOfStock,
    /// Fraud rules (or a reviewer) rejected the order; hold voided, stock released.
    Rejected,
    /// Something failed after the order was accepted; everything done was compensated.
    Failed,
    /// Some parcels have left a warehouse (and been charged); more are to come.
    PartiallyShipped,
    /// Every unit has left a warehouse and has been charged.
    Shipped,
    /// Every parcel was delivered.
    Delivered,
    /// Fulfillment stopped part way (a warehouse never answered, the hold was about to expire, the
    /// order was cancelled after some parcels shipped): what shipped was charged, the rest of the
    /// hold released and the rest of the stock returned.
    PartiallyFulfilled,
    /// Cancelled (by the customer or the store) before anything shipped: stock released, hold voided.
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::UnderReview => "UNDER_REVIEW",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Declined => "DECLINED",
            OrderStatus::OutOfStock => "OUT_OF_STOCK",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Failed => "FAILED",
            OrderStatus::PartiallyShipped => "PARTIALLY_SHIPPED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::PartiallyFulfilled => "PARTIALLY_FULFILLED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }
    pub fn parse(s: &str) -> Option<OrderStatus> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
    pub fn is_terminal_failure(&self) -> bool {
        matches!(self, OrderStatus::Declined | OrderStatus::OutOfStock | OrderStatus::Rejected | OrderStatus::Failed)
    }
    /// The end states a workflow failure path may record (record_outcome).
    pub fn is_recordable_outcome(&self) -> bool {
        self.is_terminal_failure() || matches!(self, OrderStatus::PartiallyFulfilled | OrderStatus::Cancelled)
    }
    /// The statuses an order may move to `self` from. Used as the condition of every status write,
    /// so a replayed or late step can never move an order backwards.
    pub fn allowed_from(&self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[],
            UnderReview => &[Pending],
            Confirmed => &[Pending, UnderReview],
            Declined | OutOfStock => &[Pending],
            Rejected => &[Pending, UnderReview],
            // After goods left but before anything could be charged (the hold was gone): FAILED too.
            Failed => &[Pending, UnderReview, Confirmed, PartiallyShipped, Shipped],
            PartiallyShipped => &[Confirmed],
            Shipped => &[Confirmed, PartiallyShipped],
            // From SHIPPED too: a parcel off the books whose label or capture then failed (#10 item 5).
            PartiallyFulfilled => &[Confirmed, PartiallyShipped, Shipped],
            Cancelled => &[UnderReview, Confirmed],
            Delivered => &[Shipped, PartiallyFulfilled],
        }
    }
    pub fn can_move_to(&self, next: OrderStatus) -> bool {
        next.allowed_from().contains(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
}

impl Totals {
    pub fn currency(&self) -> Currency {
        self.total.currency
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl TimelineEntry {
    pub fn now(event: &str, detail: Option<String>) -> TimelineEntry {
        TimelineEntry { at: now_rfc3339(), event: event.to_string(), detail }
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub intent_id: String,
    pub status: String,
    pub amount_authorized: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_fingerprint: Option<String>,
    /// Sum of the captures so far (minor units of the authorized currency).
    #[serde(default)]
    pub captured_minor: i64,
    /// Set once the rest of the hold was released (after the last shipment, or by the hold guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<String>,
    /// What the gateway last told us by webhook (reconciliation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_received_minor: Option<i64>,
    /// The charge's total refunded, as the gateway's last `charge.refunded` said (reconciliation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_refunded_minor: Option<i64>,
    /// `created` of the newest gateway event applied: older ones (delivery is unordered) are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_event_created: Option<i64>,
    /// Whether the hold may be captured parcel by parcel (`final_capture=false`). Without it (or
    /// unknown, as on holds made before we asked) each parcel's amount is recorded as owed and
    /// settle_payment captures what shipped in one final capture (docs/design.md "Capturing").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicapture: Option<bool>,
}

/// SKU and units, as on pick lists and shipment reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipLine {
    pub sku: String,
    pub quantity: i64,
}

/// How a warehouse's dispatch ended: `shipped` (every unit), `cancelled` (the warehouse accepted a
/// cancel), `timed_out` (no report before the warehouse timeout or the hold guard) or `failed` (a
/// parcel step or the pick list failed after its retries; `error` says which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchEnd {
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// One warehouse's pick list for the order (route_shipments makes one per warehouse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub dispatch_id: String,
    pub warehouse: String,
    pub lines: Vec<ShipLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub length_cm: u32,
    pub width_cm: u32,
    pub height_cm: u32,
}

/// A parcel a warehouse reported as shipped, and what happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub shipment_id: String,
    pub dispatch_id: String,
    pub warehouse: String,
    pub lines: Vec<ShipLine>,
    pub weight_grams: u32,
    pub parcel: Parcel,
    pub reported_at: String,
    /// What this parcel is charged (set when its stock leaves the books).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Money>,
    /// Shipped but to be captured at settlement (the hold has no multicapture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_deferred: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_updated_at: Option<String>,
    /// fulfillment::tracking_rank of the status, 100 once final; the condition of every tracking write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_rank: Option<u8>,
}

impl Shipment {
    /// A parcel as the warehouse reported it: nothing shipped, labelled or charged yet.
    pub fn reported(
        shipment_id: &str,
        dispatch_id: &str,
        warehouse: &str,
        lines: Vec<ShipLine>,
        weight_grams: u32,
        parcel: Parcel,
        reported_at: String,
    ) -> Shipment {
        Shipment {
            shipment_id: shipment_id.to_string(),
            dispatch_id: dispatch_id.to_string(),
            warehouse: warehouse.to_string(),
            lines,
            weight_grams,
            parcel,
            reported_at,
            amount: None,
            captured: None,
            capture_deferred: None,
            carrier: None,
            service: None,
            tracking_code: None,
            tracking_url: None,
            label_url: None,
            tracking_status: None,
            tracking_updated_at: None,
            tracking_rank: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockShortage {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

/// The key of an order's email log item in the orders table (`log_email`).
pub fn email_log_key(order_id: &str) -> String {
    format!("{order_id}#emails")
}

/// The key of an order's tracking log item in the orders table: the carrier's scans of its parcels
/// before they are out for delivery (`apply_tracking_aside`), which tell nobody anything and decide
/// nothing, so they do not rewrite the whole order item.
pub fn tracking_log_key(order_id: &str) -> String {
    format!("{order_id}#tracking")
}

/// The carrier's latest scans kept on the tracking log (parcel id -> (status, carrier timestamp))
/// shown on the order's parcels: a parcel shows the scan when it is ahead of what the order item
/// holds (out for delivery, delivered and the exceptions are on the order item).
pub fn merge_scans(order: &mut Order, scans: std::collections::BTreeMap<String, (String, String)>) {
    for (sid, (status, at)) in scans {
        if let Some(s) = order.shipments.get_mut(&sid) {
            if crate::domain::fulfillment::tracking_advances(s.tracking_status.as_deref().zip(s.tracking_updated_at.as_deref()), &status, &at) {
                s.tracking_status = Some(status);
                s.tracking_updated_at = Some(at);
            }
        }
    }
}

/// `timeline` with `more` merged in time order (RFC 3339 UTC with milliseconds sorts as text); on
/// equal times the timeline's own entry comes first.
pub fn merge_timeline(timeline: &mut Vec<TimelineEntry>, more: Vec<TimelineEntry>) {
    timeline.extend(more);
    timeline.sort_by(|a, b| a.at.cmp(&b.at));
}

/// The order as stored in the orders table (one item per order, key `order_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub customer_email: String,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub shipping_method: String,
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    pub estimated_delivery: String,
    /// The gateway payment-method token (pm_...). Never a card number: the API refuses those.
    pub payment_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// SHA-256 (hex) of the order's access token; the token itself is only ever in the creation response.
    pub access_token_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud: Option<super::fraud::FraudAssessment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stock_shortage: Vec<StockShortage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_task_token: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispatches: Vec<Dispatch>,
    /// Keyed by shipment id. Always stored (an empty map) so a shipment can be added with a
    /// conditional nested update.
    #[serde(default)]
    pub shipments: std::collections::BTreeMap<String, Shipment>,
    /// Pick-list tokens (SHA-256 prefix) already answered by a shipment report -> that shipment:
    /// one report per token, whatever the workflow engine does with a reused token.
    #[serde(default)]
    pub answered_tokens: std::collections::BTreeMap<String, String>,
    /// Pick-list tokens (SHA-256 prefix) issued for this order -> their dispatch id, recorded before
    /// the pick list leaves (send_pick_list). Always stored (an empty map) for the nested update.
    #[serde(default)]
    pub issued_tokens: std::collections::BTreeMap<String, String>,
    /// A cancel asked for (once): by the customer or an operator. It takes effect through the
    /// workflow (the review wait, routing, or the warehouses' answers), never around it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelRequest>,
    /// The one review decision that took effect ("approve" | "reject"); a cancel under review
    /// excludes it and it excludes a cancel (OPS-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_decision: Option<String>,
    /// How each dispatch ended (end_dispatch, once per dispatch): the order settles when every
    /// dispatch in `dispatches` has an entry. Written empty with the dispatches (route_shipments).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dispatch_ends: std::collections::BTreeMap<String, DispatchEnd>,
    /// Refunds by id, the money refunded and the units refunded per SKU: the ledger that keeps the
    /// sum within what was captured (PAY-4) and each unit refunded once. Always written (even
    /// empty) so a refund's conditional write can address its entries.
    #[serde(default)]
    pub refunds: std::collections::BTreeMap<String, super::refund::Refund>,
    #[serde(default)]
    pub refunded_minor: i64,
    #[serde(default)]
    pub refunded_units: std::collections::BTreeMap<String, i64>,
    /// Returns by id (customers' and return-to-sender), always written so a return's parcels can be
    /// addressed by a nested update; `return_seq` counts their records, the compare-and-set that
    /// keeps two returns (or a return and a refund by lines) from claiming one unit twice.
    #[serde(default)]
    pub returns: std::collections::BTreeMap<String, super::returns::ReturnRecord>,
    #[serde(default)]
    pub return_seq: i64,
    /// What an operator decided about goods that shipped uncharged (FAILED orders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<super::collection::Collection>,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: String,
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_recognisable() {
        let id = new_order_id();
        assert!(is_order_id(&id), "{id}");
        assert!(!is_order_id("ord_XYZ"));
    }

    #[test]
    fn status_never_moves_backwards() {
        use OrderStatus::*;
        assert!(Pending.can_move_to(Confirmed));
        assert!(UnderReview.can_move_to(Confirmed));
        assert!(!Confirmed.can_move_to(Pending));
        assert!(!Declined.can_move_to(Confirmed));
        assert!(!Confirmed.can_move_to(Declined));
        assert!(Confirmed.can_move_to(Shipped));
        assert!(PartiallyShipped.can_move_to(Shipped));
        assert!(!Shipped.can_move_to(PartiallyShipped));
        assert!(!Delivered.can_move_to(Shipped));
        assert!(!Delivered.can_move_to(Failed));
        for s in [Declined, OutOfStock, Rejected, Failed, Delivered] {
            for t in [Pending, UnderReview, Confirmed, Declined, OutOfStock, Rejected, Failed, PartiallyShipped, Shipped, Delivered, PartiallyFulfilled] {
                assert!(!s.can_move_to(t), "{s:?} -> {t:?}");
            }
        }
    }
}
