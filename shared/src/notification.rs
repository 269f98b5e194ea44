//! The message every producer puts on the notifications queue and send_notifications consumes: one
//! type for confirm_order, record_outcome, apply_webhook_events and (as JSON in its MessageBody) the
//! parcel machine's NotifyShipped state, which tests/asl_contract.rs parses with this type.

use serde::{Deserialize, Serialize};

/// The customer emails there are. An unknown kind does not parse: the message is a poison message
/// that fails, and after the receive limit lands in the dead-letter queue where the alarm sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    OrderConfirmation,
    OrderCancelled,
    OrderPartiallyFulfilled,
    OrderShipped,
    TrackingUpdate,
    FeedbackRequest,
    /// One per refund (the refund id rides in `refund_id`).
    RefundIssued,
    /// A return was authorized: its prepaid label(s) (the return id rides in `return_id`).
    ReturnLabel,
    /// A return's authorization expired unused (one per return parcel: `return_id` + `status` = warehouse).
    ReturnExpired,
}

impl NotificationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::OrderConfirmation => "order_confirmation",
            NotificationKind::OrderCancelled => "order_cancelled",
            NotificationKind::OrderPartiallyFulfilled => "order_partially_fulfilled",
            NotificationKind::OrderShipped => "order_shipped",
            NotificationKind::TrackingUpdate => "tracking_update",
            NotificationKind::FeedbackRequest => "feedback_request",
            NotificationKind::RefundIssued => "refund_issued",
            NotificationKind::ReturnLabel => "return_label",
            NotificationKind::ReturnExpired => "return_expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub order_id: String,
    pub kind: NotificationKind,
    /// For parcel emails (order_shipped, tracking_update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    /// For tracking_update: the carrier status being told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// For refund_issued: which refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// For return emails: which return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
}

impl Notification {
    pub fn new(order_id: &str, kind: NotificationKind) -> Notification {
        Notification { order_id: order_id.to_string(), kind, shipment_id: None, status: None, refund_id: None, return_id: None }
    }

    /// A parcel's tracking status changed.
    pub fn tracking(order_id: &str, shipment_id: &str, status: &str) -> Notification {
        Notification {
            shipment_id: Some(shipment_id.to_string()),
            status: Some(status.to_string()),
            ..Notification::new(order_id, NotificationKind::TrackingUpdate)
        }
    }

    /// A refund went through: one email per refund.
    pub fn refund(order_id: &str, refund_id: &str) -> Notification {
        Notification { refund_id: Some(refund_id.to_string()), ..Notification::new(order_id, NotificationKind::RefundIssued) }
    }

    /// A return's email (`warehouse` for a parcel's own news, e.g. its expiry).
    pub fn for_return(order_id: &str, kind: NotificationKind, return_id: &str, warehouse: Option<&str>) -> Notification {
        Notification { return_id: Some(return_id.to_string()), status: warehouse.map(String::from), ..Notification::new(order_id, kind) }
    }

    /// One email per order, kind, parcel, status and refund, however often the message comes (WF-5).
    /// The email's key on its order's email log: its kind and what it is about (one email per key).
    pub fn email_key(&self) -> String {
        let mut m = self.kind.as_str().to_string();
        for part in [&self.shipment_id, &self.status, &self.refund_id, &self.return_id].into_iter().flatten() {
            m.push(':');
            m.push_str(part);
        }
        m
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_strings_on_the_wire() {
        for k in [
            NotificationKind::OrderConfirmation,
            NotificationKind::OrderCancelled,
            NotificationKind::OrderPartiallyFulfilled,
            NotificationKind::OrderShipped,
            NotificationKind::TrackingUpdate,
            NotificationKind::FeedbackRequest,
            NotificationKind::RefundIssued,
            NotificationKind::ReturnLabel,
            NotificationKind::ReturnExpired,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        let n = Notification::tracking("ord_1", "P1", "in_transit");
        assert_eq!(n.to_json(), serde_json::json!({"orderId": "ord_1", "kind": "tracking_update", "shipmentId": "P1", "status": "in_transit"}));
        assert_eq!(n.email_key(), "tracking_update:P1:in_transit");
        assert!(serde_json::from_str::<Notification>(r#"{"orderId":"o","kind":"birthday_card"}"#).is_err(), "unknown kinds do not parse");
    }
}
