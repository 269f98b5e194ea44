//! Goods that shipped but were never charged (#9 item 4): the order ended FAILED with parcels whose
//! capture never succeeded (the hold was canceled, expired, or the gateway kept failing). An operator
//! decides once what happens to the amount owed: retry the charge (only while the hold can still be
//! captured), record a payment taken elsewhere, or write it off. One decision takes effect (OPS-1);
//! a retry the gateway refuses leaves room for another decision.

use super::order::{Order, OrderStatus};
use serde::{Deserialize, Serialize};

pub const ACTIONS: [&str; 3] = ["retry_charge", "record_external", "write_off"];

/// The operator's decision and what came of it (`collection` on the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub action: String,
    /// The operator's words (operators only, never the customer).
    pub note: String,
    /// For record_external: where the money was taken (an invoice, a transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub amount_minor: i64,
    pub requested_at: String,
    /// requested -> collected | recorded | written_off | failed (a refused retry: decide again).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /ops/orders/{id}/uncharged`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionRequest {
    pub action: String,
    pub note: String,
    #[serde(default)]
    pub reference: Option<String>,
}

/// The parcels that left with the carrier (a label was bought) and were never charged, with their
/// amounts. A parcel whose label the carrier refused never left the warehouse's dock: it is not owed.
pub fn uncharged(order: &Order) -> Vec<(String, crate::money::Money)> {
    order
        .shipments
        .iter()
        .filter(|(_, s)| s.captured.is_none() && s.tracking_code.is_some())
        .filter_map(|(id, s)| s.amount.or(s.capture_deferred).map(|m| (id.clone(), m)))
        .collect()
}

/// Why an operator's request cannot be taken now; None when it can.
pub fn refusal(order: &Order, req: &CollectionRequest) -> Option<(&'static str, String)> {
    if !ACTIONS.contains(&req.action.as_str()) {
        return Some(("invalid_action", format!("action is one of {ACTIONS:?}")));
    }
    if req.note.trim().is_empty() || req.note.chars().count() > 500 {
        return Some(("invalid_field", "note is 1-500 characters".into()));
    }
    if req.action == "record_external" && req.reference.as_deref().is_none_or(|r| r.trim().is_empty() || r.len() > 200) {
        return Some(("invalid_field", "record_external needs a reference (1-200 characters): where the payment was taken".into()));
    }
    if order.collection.as_ref().is_some_and(|c| c.status != "failed") {
        return Some(("collection_already_decided", "an operator already decided about this amount".into()));
    }
    if order.status != OrderStatus::Failed || uncharged(order).is_empty() {
        return Some(("nothing_uncharged", format!("the order is {} with nothing shipped and uncharged", order.status.as_str())));
    }
    if req.action == "retry_charge"
        && order.payment.as_ref().is_none_or(|p| p.status != "requires_capture" || p.settled.is_some() || p.gateway_status.as_deref() == Some("canceled"))
    {
        let st = order.payment.as_ref().map(|p| p.status.clone()).unwrap_or_default();
        return Some((
            "payment_not_capturable",
            format!("the payment hold is {st}: it cannot be charged again; record a payment taken elsewhere or write the amount off"),
        ));
    }
    None
}
