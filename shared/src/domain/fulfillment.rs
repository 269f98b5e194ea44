//! Fulfillment rules, pure: which warehouse ships what (routing), how much of the hold each shipment
//! captures (allocation), how long the workflow may wait for a warehouse (hold guard), and the order
//! of carrier tracking statuses (so a status never goes backwards).

use super::order::{Address, Totals};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A warehouse of the store's network, as configured in the catalog table (`WAREHOUSES` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warehouse {
    pub id: String,
    pub name: String,
    /// The ship-from address printed on labels.
    pub address: Address,
    /// Zone (1 = nearest) by destination: `zones[country][first postal character]`, with `"*"` as the
    /// fallback key at either level. Carriers price and promise by zone, so the lowest zone wins.
    pub zones: BTreeMap<String, BTreeMap<String, u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub warehouses: Vec<Warehouse>,
}

/// A zone no warehouse is configured for: still shippable, but last in line.
pub const FAR_ZONE: u32 = 99;

impl Warehouse {
    pub fn zone_for(&self, to: &Address) -> u32 {
        let first = to.postal_code.chars().next().map(|c| c.to_ascii_uppercase().to_string()).unwrap_or_default();
        let by_country = self.zones.get(&to.country).or_else(|| self.zones.get("*"));
        by_country.and_then(|m| m.get(&first).or_else(|| m.get("*"))).copied().unwrap_or(FAR_ZONE)
    }
}

impl Network {
    pub fn get(&self, id: &str) -> Option<&Warehouse> {
        self.warehouses.iter().find(|w| w.id == id)
    }
}

/// One warehouse's share of an order: SKU -> units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub warehouse: String,
    pub lines: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the network cannot ship {sku}: {missing} more units needed")]
pub struct Unroutable {
    pub sku: String,
    pub missing: i64,
}

/// Choose who ships `wanted` (SKU -> units) to `to`, given what each warehouse has free
/// (`stock[warehouse][sku]`).
/// 1. If one warehouse can ship everything, the nearest such warehouse ships everything (one parcel
///    train, one label per parcel, the customer gets one delivery).
/// 2. Otherwise split: repeatedly take the warehouse that covers the most remaining units (nearest
///    first on ties) and give it everything it can cover. Fewest shipments, then shortest distance.
pub fn route(
    network: &Network,
    to: &Address,
    wanted: &BTreeMap<String, i64>,
    stock: &HashMap<String, HashMap<String, i64>>,
) -> Result<Vec<Allocation>, Unroutable> {
    let free = |wh: &str, sku: &str| stock.get(wh).and_then(|m| m.get(sku)).copied().unwrap_or(0).max(0);
    let mut by_distance: Vec<&Warehouse> = network.warehouses.iter().collect();
    by_distance.sort_by(|a, b| a.zone_for(to).cmp(&b.zone_for(to)).then_with(|| a.id.cmp(&b.id)));

    if let Some(wh) = by_distance.iter().find(|w| wanted.iter().all(|(sku, q)| free(&w.id, sku) >= *q)) {
        return Ok(vec![Allocation { warehouse: wh.id.clone(), lines: wanted.clone() }]);
    }
    let mut remaining = wanted.clone();
    let mut plan: Vec<Allocation> = Vec::new();
    loop {
        remaining.retain(|_, q| *q > 0);
        if remaining.is_empty() {
            return Ok(plan);
        }
        let best = by_distance
            .iter()
            .filter(|w| !plan.iter().any(|a| a.warehouse == w.id))
            .map(|w| (w, remaining.iter().map(|(sku, q)| free(&w.id, sku).min(*q)).sum::<i64>()))
            .filter(|(_, covered)| *covered > 0)
            // max_by keeps the last maximum; iterate nearest-last so the nearest wins ties.
            .rev()
            .max_by_key(|(_, covered)| *covered);
        let Some((wh, _)) = best else {
            let (sku, missing) = remaining.iter().next().map(|(s, q)| (s.clone(), *q)).unwrap_or_default();
            return Err(Unroutable { sku, missing });
        };
        let mut lines = BTreeMap::new();
        for (sku, q) in remaining.iter_mut() {
            let take = free(&wh.id, sku).min(*q);
            if take > 0 {
                lines.insert(sku.clone(), take);
                *q -= take;
            }
        }
        plan.push(Allocation { warehouse: wh.id.clone(), lines });
    }
}

/// What each SKU of the order is worth in the capture: its lines' totals plus a share of shipping and
/// tax proportional to its subtotal, by largest remainder so the SKUs sum exactly to the order total.
pub fn sku_values(lines: &BTreeMap<String, (i64, i64)>, totals: &Totals) -> BTreeMap<String, i64> {
    // lines: sku -> (units, line total minor)
    let subtotal: i64 = lines.values().map(|(_, t)| *t).sum();
    let extra = totals.total.minor - subtotal;
    let mut out: BTreeMap<String, i64> = lines.iter().map(|(k, (_, t))| (k.clone(), *t)).collect();
    if subtotal <= 0 || lines.is_empty() {
        // Nothing to weigh by: give everything to the first SKU.
        if let Some(v) = out.values_mut().next() {
            *v += extra;
        }
        return out;
    }
    let mut shares: Vec<(String, i64, i64)> = lines
        .iter()
        .map(|(k, (_, t))| {
            let num = extra as i128 * *t as i128;
            let floor = num.div_euclid(subtotal as i128) as i64;
            let rem = num.rem_euclid(subtotal as i128) as i64;
            (k.clone(), floor, rem)
        })
        .collect();
    let mut left = extra - shares.iter().map(|s| s.1).sum::<i64>();
    shares.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    for s in shares.iter_mut() {
        if left <= 0 {
            break;
        }
        s.1 += 1;
        left -= 1;
    }
    for (k, share, _) in shares {
        *out.get_mut(&k).expect("same keys") += share;
    }
    out
}

/// The amount a shipment captures. Each unit of a SKU is worth `value / units` rounded down; the unit
/// that completes the SKU also carries the rounding remainder. So captures never exceed the hold, and
/// once everything has shipped they add up to the order total exactly, whatever the parcel split.
/// `before` = units of each SKU shipped before this shipment; `shipping` = units in this one.
pub fn shipment_amount(values: &BTreeMap<String, i64>, units: &BTreeMap<String, i64>, before: &BTreeMap<String, i64>, shipping: &BTreeMap<String, i64>) -> i64 {
    let mut amount = 0;
    for (sku, q) in shipping {
        let (Some(value), Some(total_units)) = (values.get(sku), units.get(sku)) else { continue };
        if *total_units <= 0 {
            continue;
        }
        let per_unit = value / total_units;
        amount += per_unit * q;
        if before.get(sku).copied().unwrap_or(0) + q == *total_units {
            amount += value - per_unit * total_units;
        }
    }
    amount
}

/// How long the workflow may wait for the warehouse's next answer: the warehouse timeout, but never
/// past the point where the payment hold is `margin` seconds from expiring (then the hold guard
/// settles the payment instead of letting it lapse; PAY-5).
pub fn wait_seconds(now: i64, capture_before: Option<i64>, margin: i64, warehouse_timeout: i64) -> i64 {
    let until_guard = capture_before.map(|cb| cb - margin - now).unwrap_or(i64::MAX);
    until_guard.min(warehouse_timeout).max(1)
}

/// Carrier tracking statuses (EasyPost's vocabulary), ranked so an update only ever moves forward.
/// Delivered and returned-to-sender end the parcel's journey.
pub fn tracking_rank(status: &str) -> Option<u8> {
    Some(match status {
        "unknown" => 0,
        "pre_transit" => 1,
        "in_transit" => 2,
        "available_for_pickup" | "out_for_delivery" => 3,
        "failure" => 4,
        "return_to_sender" => 5,
        "delivered" => 6,
        "cancelled" | "error" => 4,
        _ => return None,
    })
}

pub fn tracking_is_final(status: &str) -> bool {
    matches!(status, "delivered" | "return_to_sender")
}

/// Whether `new` (with its carrier timestamp) replaces `current`: a higher rank always does, an equal
/// rank only when newer; nothing replaces a final status.
pub fn tracking_advances(current: Option<(&str, &str)>, new_status: &str, new_updated_at: &str) -> bool {
    let Some(new_rank) = tracking_rank(new_status) else { return false };
    match current {
        None => true,
        Some((st, _)) if tracking_is_final(st) => false,
        Some((st, at)) => {
            let rank = tracking_rank(st).unwrap_or(0);
            new_rank > rank || (new_rank == rank && st != new_status && new_updated_at > at)
        }
    }
}

/// Scans kept on the order's tracking log, not the order item (#11: the order item is ~4 KB, four
/// write units a write; the log one): the customer is told nothing about them and nothing is
/// decided on them (a return, a delivery, a refund). Everything from out for delivery on, and the
/// exceptions, are on the order item.
pub fn tracking_kept_aside(status: &str) -> bool {
    matches!(status, "unknown" | "pre_transit" | "in_transit")
}

/// The customer hears about these; the others only go on the timeline.
pub fn tracking_notifies(status: &str) -> bool {
    matches!(status, "out_for_delivery" | "delivered" | "failure" | "return_to_sender" | "available_for_pickup")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};
    use proptest::prelude::*;

    fn addr(country: &str, postal: &str) -> Address {
        Address { name: "A".into(), line1: "1 St".into(), line2: None, city: "C".into(), region: None, postal_code: postal.into(), country: country.into() }
    }
    fn wh(id: &str, zones: &[(&str, u32)]) -> Warehouse {
        let us: BTreeMap<String, u32> = zones.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Warehouse { id: id.into(), name: id.into(), address: addr("US", "00000"), zones: BTreeMap::from([("US".to_string(), us)]) }
    }
    fn network() -> Network {
        Network { warehouses: vec![wh("east", &[("0", 1), ("1", 2), ("9", 8), ("*", 5)]), wh("west", &[("0", 8), ("9", 1), ("*", 4)])] }
    }
    fn stock(v: &[(&str, &str, i64)]) -> HashMap<String, HashMap<String, i64>> {
        let mut m: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for (w, s, q) in v {
            m.entry(w.to_string()).or_default().insert(s.to_string(), *q);
        }
        m
    }
    fn want(v: &[(&str, i64)]) -> BTreeMap<String, i64> {
        v.iter().map(|(k, q)| (k.to_string(), *q)).collect()
    }

    #[test]
    fn nearest_warehouse_that_has_everything_ships_everything() {
        let s = stock(&[("east", "A", 5), ("west", "A", 5)]);
        assert_eq!(route(&network(), &addr("US", "10001"), &want(&[("A", 2)]), &s).unwrap()[0].warehouse, "east");
        assert_eq!(route(&network(), &addr("US", "94105"), &want(&[("A", 2)]), &s).unwrap()[0].warehouse, "west");
        // nearest lacks one SKU: the farther one ships it all rather than splitting
        let s = stock(&[("east", "A", 5), ("west", "A", 5), ("west", "B", 1)]);
        let plan = route(&network(), &addr("US", "10001"), &want(&[("A", 2), ("B", 1)]), &s).unwrap();
        assert_eq!(plan, vec![Allocation { warehouse: "west".into(), lines: want(&[("A", 2), ("B", 1)]) }]);
    }

    #[test]
    fn splits_only_when_no_single_warehouse_can() {
        let s = stock(&[("east", "A", 3), ("west", "B", 2)]);
        let plan = route(&network(), &addr("US", "10001"), &want(&[("A", 3), ("B", 2)]), &s).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0], Allocation { warehouse: "east".into(), lines: want(&[("A", 3)]) });
        assert_eq!(plan[1], Allocation { warehouse: "west".into(), lines: want(&[("B", 2)]) });
        // one SKU's units split across warehouses
        let s = stock(&[("east", "A", 2), ("west", "A", 2)]);
        let plan = route(&network(), &addr("US", "94105"), &want(&[("A", 3)]), &s).unwrap();
        assert_eq!(plan[0], Allocation { warehouse: "west".into(), lines: want(&[("A", 2)]) });
        assert_eq!(plan[1], Allocation { warehouse: "east".into(), lines: want(&[("A", 1)]) });
        let e = route(&network(), &addr("US", "94105"), &want(&[("A", 5)]), &s).unwrap_err();
        assert_eq!(e.sku, "A");
    }

    #[test]
    fn zones_fall_back_to_wildcards() {
        let n = network();
        assert_eq!(n.warehouses[0].zone_for(&addr("US", "55555")), 5);
        assert_eq!(n.warehouses[0].zone_for(&addr("CA", "K1A")), FAR_ZONE);
    }

    fn totals(sub: i64, ship: i64, tax: i64) -> Totals {
        let m = |v| Money::new(v, Currency::parse("USD").unwrap());
        Totals { subtotal: m(sub), shipping: m(ship), tax: m(tax), total: m(sub + ship + tax) }
    }

    #[test]
    fn a_full_shipment_captures_the_order_total_and_a_partial_its_share() {
        let lines: BTreeMap<String, (i64, i64)> = [("A".to_string(), (2, 2000)), ("B".to_string(), (1, 1000))].into();
        let t = totals(3000, 599, 297);
        let values = sku_values(&lines, &t);
        assert_eq!(values.values().sum::<i64>(), t.total.minor);
        let units: BTreeMap<String, i64> = [("A".to_string(), 2), ("B".to_string(), 1)].into();
        let none = BTreeMap::new();
        assert_eq!(shipment_amount(&values, &units, &none, &units), t.total.minor);
        let only_b: BTreeMap<String, i64> = [("B".to_string(), 1)].into();
        assert_eq!(shipment_amount(&values, &units, &none, &only_b), values["B"]);
    }

    proptest! {
        /// PAY-3's arithmetic: whatever the split into parcels and their order, the captures never
        /// exceed the total and add up to it exactly when everything has shipped.
        #[test]
        fn captures_sum_to_the_total_whatever_the_split(
            qs in proptest::collection::vec((1i64..20, 1i64..50_000), 1..5),
            ship in 0i64..5_000, tax in 0i64..5_000,
            cuts in proptest::collection::vec(0u8..4, 1..80),
        ) {
            let lines: BTreeMap<String, (i64, i64)> = qs.iter().enumerate().map(|(i, (q, p))| (format!("S{i}"), (*q, q * p))).collect();
            let sub: i64 = lines.values().map(|v| v.1).sum();
            let t = totals(sub, ship, tax);
            let values = sku_values(&lines, &t);
            prop_assert_eq!(values.values().sum::<i64>(), t.total.minor);
            let units: BTreeMap<String, i64> = lines.iter().map(|(k, v)| (k.clone(), v.0)).collect();
            // ship units one parcel at a time, parcel boundaries chosen by `cuts`
            let mut before: BTreeMap<String, i64> = BTreeMap::new();
            let mut captured = 0;
            let mut cut = cuts.iter().cycle();
            let mut parcel: BTreeMap<String, i64> = BTreeMap::new();
            let all: Vec<String> = units.iter().flat_map(|(k, q)| std::iter::repeat_n(k.clone(), *q as usize)).collect();
            for (i, sku) in all.iter().enumerate() {
                *parcel.entry(sku.clone()).or_default() += 1;
                if *cut.next().unwrap() == 0 || i + 1 == all.len() {
                    captured += shipment_amount(&values, &units, &before, &parcel);
                    prop_assert!(captured <= t.total.minor);
                    for (k, q) in &parcel { *before.entry(k.clone()).or_default() += q; }
                    parcel.clear();
                }
            }
            prop_assert_eq!(captured, t.total.minor);
        }

        #[test]
        fn routing_never_takes_more_than_a_warehouse_has(
            a_east in 0i64..6, a_west in 0i64..6, b_east in 0i64..6, b_west in 0i64..6, qa in 1i64..6, qb in 0i64..6, west in any::<bool>(),
        ) {
            let s = stock(&[("east", "A", a_east), ("west", "A", a_west), ("east", "B", b_east), ("west", "B", b_west)]);
            let mut w = want(&[("A", qa)]);
            if qb > 0 { w.insert("B".into(), qb); }
            let to = addr("US", if west { "94105" } else { "10001" });
            match route(&network(), &to, &w, &s) {
                Ok(plan) => {
                    for (sku, q) in &w {
                        prop_assert_eq!(plan.iter().map(|a| a.lines.get(sku).copied().unwrap_or(0)).sum::<i64>(), *q);
                    }
                    for a in &plan {
                        for (sku, q) in &a.lines { prop_assert!(*q <= s[&a.warehouse][sku]); }
                    }
                    let single = ["east", "west"].iter().any(|wh| w.iter().all(|(sku, q)| s[*wh][sku] >= *q));
                    prop_assert_eq!(plan.len() == 1, single);
                }
                Err(_) => prop_assert!(a_east + a_west < qa || b_east + b_west < qb),
            }
        }
    }

    #[test]
    fn hold_guard_caps_the_wait() {
        assert_eq!(wait_seconds(1000, Some(1000 + 86_400 + 30), 86_400, 259_200), 30);
        assert_eq!(wait_seconds(1000, Some(1000 + 7 * 86_400), 86_400, 259_200), 259_200);
        assert_eq!(wait_seconds(1000, Some(500), 86_400, 259_200), 1);
        assert_eq!(wait_seconds(1000, None, 86_400, 60), 60);
    }

    #[test]
    fn a_warehouse_is_found_by_its_id() {
        let n = network();
        assert_eq!(n.get("west").map(|w| w.id.as_str()), Some("west"));
        assert_eq!(n.get("east").map(|w| w.id.as_str()), Some("east"));
        assert!(n.get("north").is_none());
    }

    #[test]
    fn free_lines_take_shipping_and_tax_whole() {
        // Nothing to weigh by (a free item): the first SKU carries all of shipping and tax.
        let lines: BTreeMap<String, (i64, i64)> = [("A".to_string(), (1, 0)), ("B".to_string(), (1, 0))].into();
        let v = sku_values(&lines, &totals(0, 500, 40));
        assert_eq!(v, [("A".to_string(), 540), ("B".to_string(), 0)].into());
    }

    #[test]
    fn tracking_statuses_rank_as_easypost_walks_them() {
        let ranks: Vec<(&str, Option<u8>)> = [
            "unknown",
            "pre_transit",
            "in_transit",
            "available_for_pickup",
            "out_for_delivery",
            "failure",
            "cancelled",
            "error",
            "return_to_sender",
            "delivered",
            "made_up",
        ]
        .into_iter()
        .map(|s| (s, tracking_rank(s)))
        .collect();
        assert_eq!(
            ranks,
            [
                ("unknown", Some(0)),
                ("pre_transit", Some(1)),
                ("in_transit", Some(2)),
                ("available_for_pickup", Some(3)),
                ("out_for_delivery", Some(3)),
                ("failure", Some(4)),
                ("cancelled", Some(4)),
                ("error", Some(4)),
                ("return_to_sender", Some(5)),
                ("delivered", Some(6)),
                ("made_up", None)
            ]
        );
        assert!(tracking_is_final("delivered") && tracking_is_final("return_to_sender") && !tracking_is_final("failure"));
        // Nothing replaces a final status, not even a higher rank.
        assert!(!tracking_advances(Some(("return_to_sender", "2026-01-01T00:00:00Z")), "delivered", "2026-01-02T00:00:00Z"));
        // Equal rank: another status replaces it only when newer.
        let pickup = Some(("available_for_pickup", "2026-01-01T10:00:00Z"));
        assert!(tracking_advances(pickup, "out_for_delivery", "2026-01-01T11:00:00Z"));
        assert!(!tracking_advances(pickup, "out_for_delivery", "2026-01-01T09:00:00Z"));
        assert!(!tracking_advances(pickup, "out_for_delivery", "2026-01-01T10:00:00Z"), "same instant: the first stands");
        assert!(!tracking_advances(pickup, "available_for_pickup", "2026-01-01T11:00:00Z"), "the same status again is no change");
        assert!(tracking_advances(None, "unknown", "2026-01-01T00:00:00Z"));
    }

    #[test]
    fn the_customer_hears_about_the_statuses_that_need_them() {
        for s in ["out_for_delivery", "delivered", "failure", "return_to_sender", "available_for_pickup"] {
            assert!(tracking_notifies(s), "{s}");
        }
        for s in ["unknown", "pre_transit", "in_transit", "cancelled"] {
            assert!(!tracking_notifies(s), "{s}");
        }
    }

    #[test]
    fn tracking_never_goes_backwards() {
        assert!(tracking_advances(None, "in_transit", "t1"));
        assert!(tracking_advances(Some(("in_transit", "t1")), "out_for_delivery", "t0"));
        assert!(!tracking_advances(Some(("out_for_delivery", "t2")), "in_transit", "t3"));
        assert!(!tracking_advances(Some(("delivered", "t2")), "failure", "t9"));
        assert!(!tracking_advances(Some(("in_transit", "t2")), "in_transit", "t3"));
        assert!(tracking_advances(Some(("failure", "t2")), "delivered", "t3"));
        assert!(!tracking_advances(None, "bogus", "t3"));
    }
}
