//! OPS-2 / #10.7: what the storefront shows a customer never carries operators' notes, fraud
//! signals, gateway codes or internal error text, whatever the order went through.

use orderflow_shared::domain::order::{OrderStatus, TimelineEntry};
use orderflow_shared::fakes::shipped_order;
use orders_api::customer_view;

const SECRETS: [&str; 6] = ["States.TaskFailed", "arn:aws", "stolen_card", "customer sounded off", "rule velocity_email", "evt_"];

fn entry(event: &str, detail: &str) -> TimelineEntry {
    TimelineEntry { at: "2026-11-26T10:00:00.000Z".into(), event: event.into(), detail: Some(detail.into()) }
}

#[test]
fn a_failed_order_shows_a_fixed_reason_and_no_internal_detail() {
    let mut o = shipped_order("ord_leak", 5000, Some(true), &[("P1", 5000)]);
    o.status = OrderStatus::Failed;
    o.status_reason = Some("States.TaskFailed: capture refused at arn:aws:lambda:us-east-1:1:function:capture".into());
    o.timeline.extend([
        entry("fraud_scored", "rule velocity_email fired"),
        entry("review_decided", "approve: customer sounded off"),
        entry("payment_capture_failed", "stolen_card (States.TaskFailed)"),
        entry("refund_failed", "USD 10.00 rf_1 (gateway event evt_1)"),
        entry("failed", "States.TaskFailed: capture refused at arn:aws:lambda:us-east-1:1:function:capture"),
        entry("tracking_in_transit", "P1 (EZ1): Departed facility"),
    ]);
    let view = customer_view(&o).to_string();
    for secret in SECRETS {
        assert!(!view.contains(secret), "{secret} leaked: {view}");
    }
    let v = customer_view(&o);
    assert_eq!(v["status"], "FAILED");
    assert!(v["reason"].as_str().unwrap().starts_with("we could not complete this order"));
    // The carrier's words about the parcel are the customer's to read; the events stay, without detail.
    let tl = v["timeline"].as_array().unwrap();
    assert!(tl.iter().any(|t| t["event"] == "tracking_in_transit" && t["detail"] == "P1 (EZ1): Departed facility"), "{v}");
    assert!(tl.iter().any(|t| t["event"] == "failed" && t["detail"].is_null()), "{v}");
    assert!(!tl.iter().any(|t| t["event"].as_str().unwrap().starts_with("fraud") || t["event"].as_str().unwrap().starts_with("refund_")));
}

#[test]
fn only_plain_reason_codes_reach_the_customer() {
    let mut o = shipped_order("ord_reason", 5000, Some(true), &[("P1", 5000)]);
    o.status = OrderStatus::PartiallyFulfilled;
    o.status_reason = Some("payment_hold_expiring".into());
    assert_eq!(customer_view(&o)["reason"], "payment_hold_expiring");
    o.status = OrderStatus::Cancelled;
    o.status_reason = Some("cancelled by operator: customer sounded off".into());
    assert!(customer_view(&o)["reason"].is_null());
}
