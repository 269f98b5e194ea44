//! Refunds (PAY-4, RET-4): what an operator may refund, and the per-order ledger that keeps the sum
//! of refunds within what was captured and every unit refunded at most once.

use super::checkout::Invalid;
use super::fulfillment::{shipment_amount, sku_values};
use super::order::Order;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stripe's refund reasons; anything else is refused by Stripe, so it is refused here first.
pub const REASONS: [&str; 3] = ["duplicate", "fraudulent", "requested_by_customer"];

/// One refund as the order keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub amount_minor: i64,
    /// SKU -> units refunded (empty for a refund of an amount).
    #[serde(default)]
    pub lines: BTreeMap<String, i64>,
    pub reason: String,
    /// The operator's note: sent to the gateway as metadata, shown to operators, never to customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// requested -> pending | succeeded | failed | canceled (the gateway's refund statuses).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_refund_id: Option<String>,
    pub requested_at: String,
    /// Digest of the operator's request (same Idempotency-Key, other request -> 422).
    pub request_hash: String,
    /// The return whose arrival this refund pays back (none for an operator's refund).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
}

/// `POST /ops/orders/{id}/refunds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub lines: Option<Vec<RefundLine>>,
    pub reason: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundLine {
    pub sku: String,
    pub quantity: i64,
}

/// The refund id for an operator's Idempotency-Key on an order: the same key is the same refund.
pub fn refund_id(order_id: &str, idempotency_key: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(format!("{order_id}\n{idempotency_key}").as_bytes()));
    format!("rf_{}", &h[..20])
}

/// Refund statuses in the order they move: ours before the gateway answered (`requested`), then
/// Stripe's (`pending`, `requires_action`, `succeeded`, `failed`, `canceled`). Failed and canceled
/// are final; a succeeded refund can still fail later (a closed card), never the other way round.
pub fn refund_rank(status: &str) -> Option<u8> {
    Some(match status {
        "requested" => 0,
        "pending" | "requires_action" => 1,
        "succeeded" => 2,
        "failed" | "canceled" => 3,
        _ => return None,
    })
}

/// Whether the gateway's `to` replaces a refund's `from` (forward only: webhooks come in any order
/// and more than once).
pub fn refund_advances(from: &str, to: &str) -> bool {
    matches!((refund_rank(from), refund_rank(to)), (Some(a), Some(b)) if b > a)
}

/// A refund in this status gave the customer nothing: its amount and units go back to the ledger.
pub fn gives_back(status: &str) -> bool {
    matches!(status, "failed" | "canceled")
}

/// What was charged for each SKU's units, as the captures charged them: the SKU's share of the
/// order total (lines plus their share of shipping and tax), unit by unit.
fn values(order: &Order) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut lines: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in &order.lines {
        let e = lines.entry(l.sku.clone()).or_default();
        e.0 += l.quantity;
        e.1 += l.line_total.minor;
    }
    let units = lines.iter().map(|(k, (u, _))| (k.clone(), *u)).collect();
    (sku_values(&lines, &order.totals), units)
}

/// Units of each SKU that shipped (and so were charged).
pub fn shipped_units(order: &Order) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for l in order.shipments.values().filter(|s| s.captured.is_some() || s.capture_deferred.is_some()).flat_map(|s| s.lines.iter()) {
        *out.entry(l.sku.clone()).or_default() += l.quantity;
    }
    out
}

/// Validate a request against the order: (amount, lines). Refunds never exceed what was captured
/// less what was refunded, and a unit is refunded at most once (only units that shipped).
pub fn plan(order: &Order, req: &RefundRequest) -> Result<(i64, BTreeMap<String, i64>), Invalid> {
    if !REASONS.contains(&req.reason.as_str()) {
        return Err(Invalid::new("invalid_reason", "reason", format!("reason is one of {REASONS:?}; put your own words in note")));
    }
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(Invalid::new("invalid_field", "note", "note is at most 500 characters"));
    }
    let captured = order.payment.as_ref().map(|p| p.captured_minor).unwrap_or(0);
    let room = captured - order.refunded_minor;
    let (amount, lines) = match (&req.amount_minor, &req.lines) {
        (Some(a), None) => (*a, BTreeMap::new()),
        (None, Some(ls)) if !ls.is_empty() => {
            let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
            for (i, l) in ls.iter().enumerate() {
                if l.quantity < 1 {
                    return Err(Invalid::new("invalid_quantity", format!("lines[{i}].quantity"), "quantity is at least 1"));
                }
                *wanted.entry(l.sku.clone()).or_default() += l.quantity;
            }
            let shipped = shipped_units(order);
            // Units on their way back in a return are the return's to refund.
            let returning = super::returns::units_in_open_returns(order);
            for (i, l) in ls.iter().enumerate() {
                let in_returns = returning.get(&l.sku).copied().unwrap_or(0);
                let open = shipped.get(&l.sku).copied().unwrap_or(0) - order.refunded_units.get(&l.sku).copied().unwrap_or(0) - in_returns;
                if wanted[&l.sku] > open {
                    return Err(Invalid::new(
                        "refund_exceeds_units",
                        format!("lines[{i}]"),
                        format!("{}: {} unit(s) shipped and not yet refunded or in a return, {} asked", l.sku, open.max(0), wanted[&l.sku]),
                    ));
                }
            }
            let (values, units) = values(order);
            let amount = shipment_amount(&values, &units, &order.refunded_units, &wanted);
            (amount, wanted)
        }
        _ => return Err(Invalid::new("invalid_request", "amount_minor", "send amount_minor or lines (not both)")),
    };
    if amount <= 0 {
        return Err(Invalid::new("invalid_amount", "amount_minor", "a refund is a positive amount"));
    }
    if amount > room {
        return Err(Invalid::new(
            "refund_exceeds_captured",
            "amount_minor",
            format!("{amount} asked; {} captured, {} refunded already", captured, order.refunded_minor),
        ));
    }
    Ok((amount, lines))
}

#[cfg(test)]
mod tests {
    #[test]
    fn refund_statuses_only_move_forward_and_failures_give_back() {
        let order = ["requested", "pending", "succeeded", "failed"];
        for (i, from) in order.iter().enumerate() {
            for (j, to) in order.iter().enumerate() {
                assert_eq!(super::refund_advances(from, to), j > i, "{from} -> {to}");
            }
        }
        assert!(!super::refund_advances("pending", "requires_action"), "same rank");
        assert!(!super::refund_advances("failed", "canceled") && !super::refund_advances("canceled", "succeeded"), "final");
        assert!(!super::refund_advances("requested", "made_up") && !super::refund_advances("made_up", "succeeded"));
        assert!(super::gives_back("failed") && super::gives_back("canceled") && !super::gives_back("succeeded") && !super::gives_back("pending"));
    }

    use super::*;
    use crate::fakes::shipped_order;
    use serde_json::json;

    fn order() -> Order {
        // two SKUs, 3 x A at 10.00 and 1 x B at 20.00; total 55.00 (5.00 shipping + tax), all shipped and captured
        let mut o = shipped_order("ord_p", 5500, Some(true), &[("P1", 5500)]);
        let currency = crate::money::Currency::parse("USD").unwrap();
        let usd = |m: i64| serde_json::to_value(crate::money::Money::new(m, currency)).unwrap();
        o.lines = serde_json::from_value(json!([
            {"sku": "A", "name": "A", "quantity": 3, "unit_price": usd(1000), "line_total": usd(3000)},
            {"sku": "B", "name": "B", "quantity": 1, "unit_price": usd(2000), "line_total": usd(2000)}
        ]))
        .unwrap();
        o.totals = serde_json::from_value(json!({"subtotal": usd(5000), "shipping": usd(300), "tax": usd(200), "total": usd(5500)})).unwrap();
        let s = o.shipments.get_mut("P1").unwrap();
        s.lines = serde_json::from_value(json!([{"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 1}])).unwrap();
        s.captured = s.amount;
        o.payment.as_mut().unwrap().captured_minor = 5500;
        o
    }

    fn req(v: serde_json::Value) -> RefundRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn refunding_every_unit_line_by_line_refunds_exactly_what_was_captured() {
        let mut o = order();
        let mut total = 0;
        for line in [json!([{"sku": "A", "quantity": 1}]), json!([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}])] {
            let (amount, lines) = plan(&o, &req(json!({"lines": line, "reason": "requested_by_customer"}))).unwrap();
            total += amount;
            o.refunded_minor += amount;
            for (k, q) in lines {
                *o.refunded_units.entry(k).or_default() += q;
            }
        }
        assert_eq!(total, 5500);
        let again = plan(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}], "reason": "requested_by_customer"}))).unwrap_err();
        assert_eq!(again.code, "refund_exceeds_units", "no unit twice");
    }

    #[test]
    fn one_key_is_one_refund_id_and_notes_and_lines_are_bounded() {
        let a = refund_id("ord_1", "key-1");
        assert_eq!(a, refund_id("ord_1", "key-1"));
        assert_ne!(a, refund_id("ord_1", "key-2"));
        assert_ne!(a, refund_id("ord_2", "key-1"));
        assert!(a.starts_with("rf_") && a.len() == 23, "{a}");
        let o = order();
        let ok = req(json!({"amount_minor": 100, "reason": "duplicate", "note": "n".repeat(500)}));
        assert!(plan(&o, &ok).is_ok());
        let long = req(json!({"amount_minor": 100, "reason": "duplicate", "note": "n".repeat(501)}));
        assert_eq!(plan(&o, &long).unwrap_err().field.as_deref(), Some("note"));
        assert_eq!(plan(&o, &req(json!({"lines": [], "reason": "duplicate"}))).unwrap_err().code, "invalid_request");
    }

    #[test]
    fn two_lines_of_one_sku_are_valued_together() {
        // 3 x A split over two lines is worth what one line of 3 x A is.
        let mut o = order();
        let one = plan(&o, &req(json!({"lines": [{"sku": "A", "quantity": 3}], "reason": "duplicate"}))).unwrap().0;
        // A's lines (30.00) plus their share of shipping and tax (5.00 x 30/50): what was charged for them
        assert_eq!(one, 3300);
        let currency = crate::money::Currency::parse("USD").unwrap();
        let usd = |m: i64| serde_json::to_value(crate::money::Money::new(m, currency)).unwrap();
        o.lines = serde_json::from_value(json!([
            {"sku": "A", "name": "A", "quantity": 1, "unit_price": usd(1000), "line_total": usd(1000)},
            {"sku": "A", "name": "A", "quantity": 2, "unit_price": usd(1000), "line_total": usd(2000)},
            {"sku": "B", "name": "B", "quantity": 1, "unit_price": usd(2000), "line_total": usd(2000)}
        ]))
        .unwrap();
        assert_eq!(plan(&o, &req(json!({"lines": [{"sku": "A", "quantity": 3}], "reason": "duplicate"}))).unwrap().0, one);
    }

    #[test]
    fn amounts_never_exceed_what_is_left_and_reasons_are_stripes() {
        let mut o = order();
        o.refunded_minor = 5000;
        assert_eq!(plan(&o, &req(json!({"amount_minor": 501, "reason": "duplicate"}))).unwrap_err().code, "refund_exceeds_captured");
        assert_eq!(plan(&o, &req(json!({"amount_minor": 500, "reason": "duplicate"}))).unwrap().0, 500);
        assert_eq!(plan(&o, &req(json!({"amount_minor": 5, "reason": "changed mind"}))).unwrap_err().code, "invalid_reason");
        assert_eq!(plan(&o, &req(json!({"amount_minor": 0, "reason": "duplicate"}))).unwrap_err().code, "invalid_amount");
        assert_eq!(plan(&o, &req(json!({"reason": "duplicate"}))).unwrap_err().code, "invalid_request");
        assert_eq!(
            plan(&o, &req(json!({"amount_minor": 5, "lines": [{"sku": "A", "quantity": 1}], "reason": "duplicate"}))).unwrap_err().code,
            "invalid_request"
        );
    }
}
