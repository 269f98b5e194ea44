//! What a parcel does to an order's books, decided here rather than in the DynamoDB adapter: the
//! reservation keeps, per `<sku>@<warehouse>`, the units allocated there and the units shipped from
//! there; a parcel may ship at most what is still open at its warehouse; the order is complete when
//! every ordered unit has shipped from somewhere. The adapter reads and writes the books; these
//! functions say what the numbers mean (property-tested below).

use std::collections::BTreeMap;

/// The key of one SKU's allocation at one warehouse in the reservation's books.
pub fn alloc_key(sku: &str, warehouse: &str) -> String {
    format!("{sku}@{warehouse}")
}

/// `<sku>@<warehouse>` back into its parts (SKUs never contain `@`; warehouses may not either).
pub fn split_alloc_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('@')
}

/// Units still to ship from `warehouse`, per SKU.
pub fn open_at(allocations: &BTreeMap<String, i64>, shipped: &BTreeMap<String, i64>, warehouse: &str) -> BTreeMap<String, i64> {
    allocations
        .iter()
        .filter_map(|(k, a)| {
            let (sku, wh) = split_alloc_key(k)?;
            (wh == warehouse).then(|| (sku.to_string(), a - shipped.get(k).copied().unwrap_or(0)))
        })
        .collect()
}

/// Units shipped so far per SKU, from every warehouse.
pub fn shipped_per_sku(shipped: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (k, v) in shipped {
        if let Some((sku, _)) = split_alloc_key(k) {
            *out.entry(sku.to_string()).or_default() += v;
        }
    }
    out
}

/// Every ordered unit has shipped.
pub fn order_complete(ordered: &BTreeMap<String, i64>, shipped: &BTreeMap<String, i64>) -> bool {
    let per_sku = shipped_per_sku(shipped);
    ordered.iter().all(|(sku, q)| per_sku.get(sku).copied().unwrap_or(0) == *q)
}

/// The shipped books after a parcel of `lines` leaves `warehouse`, or why it may not: more than is
/// open there for some SKU (named), or an empty or non-positive line.
pub fn after_parcel(
    allocations: &BTreeMap<String, i64>,
    shipped: &BTreeMap<String, i64>,
    warehouse: &str,
    lines: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, String> {
    if lines.is_empty() || lines.values().any(|q| *q <= 0) {
        return Err("a shipment needs at least one line with a positive quantity".into());
    }
    let mut after = shipped.clone();
    for (sku, q) in lines {
        let key = alloc_key(sku, warehouse);
        let allocated = allocations.get(&key).copied().unwrap_or(0);
        let done = shipped.get(&key).copied().unwrap_or(0);
        if done + q > allocated {
            return Err(format!("{sku}: {warehouse} was allocated {allocated}, has shipped {done}, cannot ship {q} more"));
        }
        after.insert(key, done + q);
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_split_order_completes_only_when_both_warehouses_shipped() {
        let ordered = m(&[("A", 2), ("B", 1)]);
        let alloc = m(&[("A@wh-east", 2), ("B@wh-west", 1)]);
        let after_east = after_parcel(&alloc, &BTreeMap::new(), "wh-east", &m(&[("A", 2)])).unwrap();
        assert!(!order_complete(&ordered, &after_east));
        assert_eq!(open_at(&alloc, &after_east, "wh-east"), m(&[("A", 0)]));
        assert_eq!(open_at(&alloc, &after_east, "wh-west"), m(&[("B", 1)]));
        let after_west = after_parcel(&alloc, &after_east, "wh-west", &m(&[("B", 1)])).unwrap();
        assert!(order_complete(&ordered, &after_west));
        assert_eq!(shipped_per_sku(&after_west), m(&[("A", 2), ("B", 1)]));
    }

    #[test]
    fn a_parcel_may_not_ship_more_than_is_open_at_its_warehouse() {
        let alloc = m(&[("A@wh-east", 2)]);
        let err = after_parcel(&alloc, &m(&[("A@wh-east", 1)]), "wh-east", &m(&[("A", 2)])).unwrap_err();
        assert!(err.starts_with("A: wh-east was allocated 2, has shipped 1"), "{err}");
        assert!(after_parcel(&alloc, &BTreeMap::new(), "wh-west", &m(&[("A", 1)])).is_err(), "nothing allocated there");
        assert!(after_parcel(&alloc, &BTreeMap::new(), "wh-east", &m(&[("A", 0)])).is_err());
        assert!(after_parcel(&alloc, &BTreeMap::new(), "wh-east", &BTreeMap::new()).is_err());
    }

    proptest! {
        /// Shipping parcels in any sizes never ships more than allocated, and the order is complete
        /// exactly when everything allocated (= everything ordered) has shipped.
        #[test]
        fn books_never_overship_and_complete_exactly_at_the_end(
            alloc_a in 1i64..6, alloc_b in 1i64..6, parcels in proptest::collection::vec((0usize..2, 1i64..4), 0..12)
        ) {
            let ordered = m(&[("A", alloc_a), ("B", alloc_b)]);
            let alloc = m(&[("A@e", alloc_a), ("B@w", alloc_b)]);
            let mut shipped = BTreeMap::new();
            for (which, q) in parcels {
                let (sku, wh) = if which == 0 { ("A", "e") } else { ("B", "w") };
                if let Ok(after) = after_parcel(&alloc, &shipped, wh, &m(&[(sku, q)])) {
                    shipped = after;
                }
                for (k, v) in &shipped {
                    prop_assert!(*v <= alloc[k]);
                }
                let all = shipped.get("A@e").copied().unwrap_or(0) == alloc_a && shipped.get("B@w").copied().unwrap_or(0) == alloc_b;
                prop_assert_eq!(order_complete(&ordered, &shipped), all);
            }
        }
    }
}
