//! Returns (RMA, RET-1..3): which delivered units a customer may send back, how a return is kept on
//! the order, and what its refund is. Pure rules; the steps that buy labels, restock and refund are
//! in functions/return_labels and functions/receive_return (the workflow: statemachines/returns.asl.json).

use super::checkout::Invalid;
use super::fulfillment::{shipment_amount, sku_values};
use super::order::Order;
use super::refund::{gives_back, shipped_units};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a customer sends units back (a fixed list, so reports can count them).
pub const REASONS: [&str; 6] = ["damaged", "defective", "wrong_item", "not_as_described", "no_longer_needed", "other"];
/// The reason of a return the carrier started (the parcel could not be delivered).
pub const RETURN_TO_SENDER: &str = "return_to_sender";

/// A return parcel's statuses: `label_pending` (recorded; a label is being bought) -> `awaiting`
/// (label sent, or the carrier is bringing it back) -> `received` (the warehouse inspected it) ->
/// `refunded` (restocked or written off, refund recorded); or `awaiting` -> `expired` (never sent;
/// the label refunded with the carrier).
pub mod status {
    pub const LABEL_PENDING: &str = "label_pending";
    pub const AWAITING: &str = "awaiting";
    pub const RECEIVED: &str = "received";
    pub const REFUNDED: &str = "refunded";
    pub const EXPIRED: &str = "expired";
}

/// One return as the order keeps it (`returns.<return id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub return_id: String,
    pub reason: String,
    /// "customer" (POST /orders/{id}/returns) or "carrier" (a return-to-sender tracking event).
    pub by: String,
    pub requested_at: String,
    /// Digest of the customer's request (same Idempotency-Key, other request -> 422).
    pub request_hash: String,
    /// The outbound parcel a return-to-sender brings back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    /// By the warehouse the units go back to (the one that shipped them): one label and one
    /// arrival each.
    pub parcels: BTreeMap<String, ReturnParcel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnParcel {
    pub warehouse: String,
    /// SKU -> units expected back.
    pub lines: BTreeMap<String, i64>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<ReturnLabel>,
    /// SKU -> what the warehouse found (set on arrival).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inspection: BTreeMap<String, Inspection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// The carrier's answer to refunding an unused label (`submitted`, `refunded`, `rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_refund_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLabel {
    pub carrier_shipment_id: String,
    pub carrier: String,
    pub tracking_code: String,
    pub label_url: String,
    pub bought_at: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub resellable: i64,
    pub damaged: i64,
}

impl Inspection {
    pub fn units(&self) -> i64 {
        self.resellable + self.damaged
    }
}

/// `POST /orders/{id}/returns`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub lines: Vec<ReturnLine>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    pub sku: String,
    pub quantity: i64,
}

/// The return id for a customer's Idempotency-Key (or the carrier's parcel) on an order.
pub fn return_id(order_id: &str, key: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(format!("{order_id}\nreturn\n{key}").as_bytes()));
    format!("rt_{}", &h[..20])
}

/// The refund id of one return parcel: a retried step records the same refund.
pub fn return_refund_id(return_id: &str, warehouse: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(format!("{return_id}\n{warehouse}").as_bytes()));
    format!("rf_{}", &h[..20])
}

/// Units of a SKU in customers' returns from a warehouse that have not expired (carrier returns
/// bring back units that were never delivered, so they do not count against delivered units).
fn in_customer_returns(order: &Order, warehouse: &str, sku: &str) -> i64 {
    order
        .returns
        .values()
        .filter(|r| r.by == "customer")
        .filter_map(|r| r.parcels.get(warehouse))
        .filter(|p| p.status != status::EXPIRED)
        .map(|p| p.lines.get(sku).copied().unwrap_or(0))
        .sum()
}

/// Units of each SKU on their way back or being inspected: not yet in the refund ledger, not
/// expired. An operator's refund by lines leaves them to the return (no unit refunded twice).
pub fn units_in_open_returns(order: &Order) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for p in order.returns.values().flat_map(|r| r.parcels.values()) {
        if [status::LABEL_PENDING, status::AWAITING, status::RECEIVED].contains(&p.status.as_str()) {
            for (sku, q) in &p.lines {
                *out.entry(sku.clone()).or_default() += q;
            }
        }
    }
    out
}

/// Units of each SKU refunded other than through a return (goodwill refunds by lines).
fn refunded_outside_returns(order: &Order) -> BTreeMap<String, i64> {
    let mut out = order.refunded_units.clone();
    for r in order.refunds.values().filter(|r| r.return_id.is_some() && !gives_back(&r.status)) {
        for (sku, q) in &r.lines {
            *out.entry(sku.clone()).or_default() -= q;
        }
    }
    out.retain(|_, q| *q > 0);
    out
}

/// What one SKU's units are doing, for the answer that names a refused line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SkuUnits {
    /// warehouse -> units delivered within the window and not in a return
    returnable_by_warehouse: BTreeMap<String, i64>,
    in_window: i64,
    too_old: i64,
    not_delivered: i64,
    in_returns: i64,
    refunded: i64,
}

fn sku_units(order: &Order, sku: &str, now: i64, window_seconds: i64) -> SkuUnits {
    let mut u = SkuUnits::default();
    let mut delivered_by_wh: BTreeMap<String, i64> = BTreeMap::new();
    for s in order.shipments.values() {
        let q: i64 = s.lines.iter().filter(|l| l.sku == sku).map(|l| l.quantity).sum();
        if q == 0 {
            continue;
        }
        let delivered_at = (s.tracking_status.as_deref() == Some("delivered"))
            .then(|| s.tracking_updated_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()))
            .flatten();
        match delivered_at {
            Some(at) if now - at.timestamp() <= window_seconds => {
                u.in_window += q;
                *delivered_by_wh.entry(s.warehouse.clone()).or_default() += q;
            }
            Some(_) => u.too_old += q,
            None => u.not_delivered += q,
        }
    }
    let ordered: i64 = order.lines.iter().filter(|l| l.sku == sku).map(|l| l.quantity).sum();
    let shipped: i64 = order.shipments.values().flat_map(|s| s.lines.iter()).filter(|l| l.sku == sku).map(|l| l.quantity).sum();
    u.not_delivered += (ordered - shipped).max(0);
    for (wh, q) in delivered_by_wh {
        let returned = in_customer_returns(order, &wh, sku);
        u.in_returns += returned;
        u.returnable_by_warehouse.insert(wh, (q - returned).max(0));
    }
    u.refunded = refunded_outside_returns(order).get(sku).copied().unwrap_or(0);
    u
}

/// Validate a customer's return against the order: the units of each line by the warehouse they go
/// back to. A unit may go back when its parcel was delivered within `window_seconds` (a store
/// setting, 30 days by default), and it is not in another return or already refunded.
pub fn plan_return(order: &Order, req: &ReturnRequest, now: i64, window_seconds: i64) -> Result<BTreeMap<String, BTreeMap<String, i64>>, Invalid> {
    if !REASONS.contains(&req.reason.as_str()) {
        return Err(Invalid::new("invalid_reason", "reason", format!("reason is one of {REASONS:?}")));
    }
    if req.lines.is_empty() || req.lines.len() > 100 {
        return Err(Invalid::new("invalid_lines", "lines", "a return lists 1-100 lines"));
    }
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    for (i, l) in req.lines.iter().enumerate() {
        if !(1..=9999).contains(&l.quantity) {
            return Err(Invalid::new("invalid_quantity", format!("lines[{i}].quantity"), "quantity is 1..=9999"));
        }
        if !order.lines.iter().any(|o| o.sku == l.sku) {
            return Err(Invalid::new("sku_not_in_order", format!("lines[{i}].sku"), format!("{} is not in this order", l.sku)));
        }
        *wanted.entry(l.sku.clone()).or_default() += l.quantity;
    }
    let days = window_seconds / 86_400;
    let mut plan: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (i, l) in req.lines.iter().enumerate() {
        let Some(want) = wanted.remove(&l.sku) else { continue }; // a SKU on two lines was checked at its first
        let u = sku_units(order, &l.sku, now, window_seconds);
        let open: i64 = u.returnable_by_warehouse.values().sum::<i64>() - u.refunded;
        if want > open {
            let code = if u.in_window == 0 && u.too_old > 0 {
                "return_window_closed"
            } else if u.in_window == 0 {
                "units_not_delivered"
            } else {
                "units_not_returnable"
            };
            return Err(Invalid::new(
                code,
                format!("lines[{i}]"),
                format!(
                    "{}: {} unit(s) can be returned, {want} asked ({} delivered in the last {days} days, {} delivered earlier, {} not delivered, {} in returns, {} refunded)",
                    l.sku,
                    open.max(0),
                    u.in_window,
                    u.too_old,
                    u.not_delivered,
                    u.in_returns,
                    u.refunded
                ),
            ));
        }
        let mut left = want;
        for (wh, cap) in &u.returnable_by_warehouse {
            let take = left.min(*cap);
            if take > 0 {
                plan.entry(wh.clone()).or_default().insert(l.sku.clone(), take);
                left -= take;
            }
        }
    }
    Ok(plan)
}

/// A new return record from a plan.
pub fn new_return(
    return_id: &str,
    reason: &str,
    by: &str,
    request_hash: &str,
    shipment_id: Option<String>,
    plan: BTreeMap<String, BTreeMap<String, i64>>,
) -> ReturnRecord {
    let first = if by == "carrier" { status::AWAITING } else { status::LABEL_PENDING };
    ReturnRecord {
        return_id: return_id.to_string(),
        reason: reason.to_string(),
        by: by.to_string(),
        requested_at: super::order::now_rfc3339(),
        request_hash: request_hash.to_string(),
        shipment_id,
        parcels: plan
            .into_iter()
            .map(|(wh, lines)| {
                (
                    wh.clone(),
                    ReturnParcel {
                        warehouse: wh,
                        lines,
                        status: first.to_string(),
                        label: None,
                        inspection: BTreeMap::new(),
                        received_at: None,
                        refund_id: None,
                        label_refund_status: None,
                    },
                )
            })
            .collect(),
    }
}

/// The refund for units that came back: what was charged for them. Their lines with their share of
/// tax (shipping excluded); when these units complete the order's return (every unit that shipped
/// is back or refunded) and the store refunds shipping on a full return, everything still captured
/// and not refunded (so the whole order's refunds add up to exactly what was charged).
pub fn return_refund_amount(order: &Order, arrived: &BTreeMap<String, i64>, refund_shipping_on_full_return: bool) -> i64 {
    let captured = order.payment.as_ref().map(|p| p.captured_minor).unwrap_or(0);
    let room = (captured - order.refunded_minor).max(0);
    let shipped = shipped_units(order);
    let whole = shipped.iter().all(|(sku, q)| order.refunded_units.get(sku).copied().unwrap_or(0) + arrived.get(sku).copied().unwrap_or(0) >= *q);
    if whole && refund_shipping_on_full_return {
        return room;
    }
    let mut lines: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in &order.lines {
        let e = lines.entry(l.sku.clone()).or_default();
        e.0 += l.quantity;
        e.1 += l.line_total.minor;
    }
    let units: BTreeMap<String, i64> = lines.iter().map(|(k, (u, _))| (k.clone(), *u)).collect();
    let mut goods = order.totals.clone();
    goods.total.minor -= goods.shipping.minor;
    let values = sku_values(&lines, &goods);
    shipment_amount(&values, &units, &order.refunded_units, arrived).min(room)
}

/// The SKU -> units of an inspection (what arrived).
pub fn arrived_units(parcel: &ReturnParcel) -> BTreeMap<String, i64> {
    parcel.inspection.iter().map(|(k, i)| (k.clone(), i.units())).filter(|(_, q)| *q > 0).collect()
}

/// Validate a warehouse's inspection of a return parcel: every SKU expected, at most the expected
/// units, at least one unit.
pub fn check_inspection(parcel: &ReturnParcel, inspection: &BTreeMap<String, Inspection>) -> Result<(), String> {
    if inspection.values().map(Inspection::units).sum::<i64>() < 1 {
        return Err("an arrival reports at least one unit".into());
    }
    for (sku, i) in inspection {
        if i.resellable < 0 || i.damaged < 0 {
            return Err(format!("{sku}: counts are never negative"));
        }
        let expected = parcel.lines.get(sku).copied().unwrap_or(0);
        if i.units() > expected {
            return Err(format!("{sku}: {expected} unit(s) expected in this return, {} reported", i.units()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::shipped_order;
    use serde_json::json;

    const DAY: i64 = 86_400;
    const WINDOW: i64 = 30 * DAY;

    /// 3 x A at 10.00 and 1 x B at 20.00; shipping 3.00, tax 2.00, total 55.00. A ships from east
    /// (P1), B from west (P2); both delivered at `delivered`.
    fn order(delivered: &str) -> Order {
        let mut o = shipped_order("ord_r", 5500, Some(true), &[("P1", 3300), ("P2", 2200)]);
        let c = crate::money::Currency::parse("USD").unwrap();
        let usd = |m: i64| serde_json::to_value(crate::money::Money::new(m, c)).unwrap();
        o.lines = serde_json::from_value(json!([
            {"sku": "A", "name": "A", "quantity": 3, "unit_price": usd(1000), "line_total": usd(3000)},
            {"sku": "B", "name": "B", "quantity": 1, "unit_price": usd(2000), "line_total": usd(2000)}
        ]))
        .unwrap();
        o.totals = serde_json::from_value(json!({"subtotal": usd(5000), "shipping": usd(300), "tax": usd(200), "total": usd(5500)})).unwrap();
        for (sid, wh, sku, q) in [("P1", "wh-east", "A", 3), ("P2", "wh-west", "B", 1)] {
            let s = o.shipments.get_mut(sid).unwrap();
            s.warehouse = wh.into();
            s.lines = serde_json::from_value(json!([{"sku": sku, "quantity": q}])).unwrap();
            s.captured = s.amount;
            s.tracking_status = Some("delivered".into());
            s.tracking_updated_at = Some(delivered.into());
        }
        o.payment.as_mut().unwrap().captured_minor = 5500;
        o
    }

    fn now(at: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp()
    }

    fn req(v: serde_json::Value) -> ReturnRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn units_go_back_to_the_warehouse_that_shipped_them_within_the_window() {
        let o = order("2026-11-01T10:00:00Z");
        let plan = plan_return(
            &o,
            &req(json!({"lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}], "reason": "damaged"})),
            now("2026-11-20T00:00:00Z"),
            WINDOW,
        )
        .unwrap();
        assert_eq!(plan["wh-east"], BTreeMap::from([("A".to_string(), 2)]));
        assert_eq!(plan["wh-west"], BTreeMap::from([("B".to_string(), 1)]));
        // the last second of the window is inside it, the next one is not
        let edge = now("2026-12-01T10:00:00Z");
        assert!(plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}], "reason": "other"})), edge, WINDOW).is_ok());
        let late = plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}], "reason": "other"})), edge + 1, WINDOW).unwrap_err();
        assert_eq!((late.code, late.field.as_deref()), ("return_window_closed", Some("lines[0]")));
        assert!(late.message.starts_with("A: 0 unit(s)"), "{}", late.message);
    }

    #[test]
    fn undelivered_returned_and_refunded_units_are_refused_naming_the_line() {
        let mut o = order("2026-11-01T10:00:00Z");
        let at = now("2026-11-02T00:00:00Z");
        o.shipments.get_mut("P2").unwrap().tracking_status = Some("in_transit".into());
        let e = plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}], "reason": "other"})), at, WINDOW).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("units_not_delivered", Some("lines[1]")));
        // A: 2 already in a return -> 1 left
        let plan = plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 2}], "reason": "other"})), at, WINDOW).unwrap();
        o.returns.insert("rt_1".into(), new_return("rt_1", "other", "customer", "h", None, plan));
        let e = plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 2}], "reason": "other"})), at, WINDOW).unwrap_err();
        assert_eq!(e.code, "units_not_returnable");
        assert!(e.message.contains("1 unit(s) can be returned, 2 asked") && e.message.contains("2 in returns"), "{}", e.message);
        // a goodwill refund of the last A leaves nothing
        o.refunded_units.insert("A".into(), 1);
        assert_eq!(
            plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}], "reason": "other"})), at, WINDOW).unwrap_err().code,
            "units_not_returnable"
        );
        // an expired return gives its units back
        o.refunded_units.clear();
        o.returns.get_mut("rt_1").unwrap().parcels.get_mut("wh-east").unwrap().status = status::EXPIRED.into();
        assert!(plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 3}], "reason": "other"})), at, WINDOW).is_ok());
        // two lines of one SKU are counted together; unknown SKUs and bad reasons are named
        assert_eq!(
            plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 2}], "reason": "other"})), at, WINDOW)
                .unwrap_err()
                .code,
            "units_not_returnable"
        );
        assert_eq!(plan_return(&o, &req(json!({"lines": [{"sku": "Z", "quantity": 1}], "reason": "other"})), at, WINDOW).unwrap_err().code, "sku_not_in_order");
        assert_eq!(plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 1}], "reason": "meh"})), at, WINDOW).unwrap_err().code, "invalid_reason");
        assert_eq!(plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 0}], "reason": "other"})), at, WINDOW).unwrap_err().code, "invalid_quantity");
    }

    #[test]
    fn a_partial_return_refunds_lines_and_tax_and_the_last_one_refunds_the_rest() {
        let mut o = order("2026-11-01T10:00:00Z");
        // 1 x A: 10.00 + its share of tax (2.00 x 30/50 / 3 = 0.40)
        let one_a = BTreeMap::from([("A".to_string(), 1)]);
        assert_eq!(return_refund_amount(&o, &one_a, true), 1040);
        o.refunded_minor = 1040;
        o.refunded_units.insert("A".into(), 1);
        // the rest of the order back: everything still captured (lines, tax and shipping)
        let rest = BTreeMap::from([("A".to_string(), 2), ("B".to_string(), 1)]);
        assert_eq!(return_refund_amount(&o, &rest, true), 5500 - 1040);
        // a store that keeps shipping: the goods and their tax only
        // (A's value without shipping: 30.00 + 1.20 tax = 31.20, 10.40 a unit; B's: 20.00 + 0.80)
        assert_eq!(return_refund_amount(&o, &rest, false), 2080 + 2080);
        // never more than what is left of the capture
        o.refunded_minor = 5400;
        assert_eq!(return_refund_amount(&o, &rest, false), 100);
    }

    #[test]
    fn inspections_report_only_expected_units() {
        let o = order("2026-11-01T10:00:00Z");
        let plan = plan_return(&o, &req(json!({"lines": [{"sku": "A", "quantity": 2}], "reason": "other"})), now("2026-11-02T00:00:00Z"), WINDOW).unwrap();
        let r = new_return("rt_1", "other", "customer", "h", None, plan);
        let p = &r.parcels["wh-east"];
        let ok = BTreeMap::from([("A".to_string(), Inspection { resellable: 1, damaged: 1 })]);
        assert!(check_inspection(p, &ok).is_ok());
        assert!(check_inspection(p, &BTreeMap::from([("A".to_string(), Inspection { resellable: 3, damaged: 0 })])).is_err());
        assert!(check_inspection(p, &BTreeMap::from([("B".to_string(), Inspection { resellable: 1, damaged: 0 })])).is_err());
        assert!(check_inspection(p, &BTreeMap::from([("A".to_string(), Inspection { resellable: 0, damaged: 0 })])).is_err());
        assert!(check_inspection(p, &BTreeMap::from([("A".to_string(), Inspection { resellable: -1, damaged: 2 })])).is_err());
        assert_eq!(return_id("ord_1", "k"), return_id("ord_1", "k"));
        assert_ne!(return_id("ord_1", "k"), return_id("ord_2", "k"));
        assert_ne!(return_refund_id("rt_1", "wh-east"), return_refund_id("rt_1", "wh-west"));
    }
}
