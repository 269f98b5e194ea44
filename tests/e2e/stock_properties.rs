//! INV-1, INV-2, INV-3, INV-4, INV-5: stock under concurrency, repetition, replays and long sequences.

use orderflow_e2e::*;
use serde_json::json;

#[test]
fn inv_1_hundred_concurrent_orders_for_ten_units_confirm_exactly_ten() {
    let h = harness();
    h.run_alone(async {
        let sku = h.new_sku(1000, 10).await;
        let http = reqwest::Client::new();
        let bodies: Vec<(String, String)> =
            (0..100).map(|i| (h.key(), order_body(&h.email(&format!("inv1-{i}")), &[(&sku, 1)], "pm_card_visa").to_string())).collect();
        let results = futures::future::join_all(bodies.iter().map(|(k, b)| post_order(&http, h.api(), Some(k), b.as_bytes()))).await;
        let confirmed = results.iter().filter(|r| r.body["status"] == "CONFIRMED").count();
        let out = results.iter().filter(|r| r.body["status"] == "OUT_OF_STOCK").count();
        let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
        if let Some(bad) = results.iter().find(|r| r.status == 500) {
            eprintln!("first failure: {}", bad.body);
        }
        assert_eq!(confirmed, 10, "{statuses:?}");
        assert_eq!(out, 90, "{statuses:?}");
        assert_eq!(h.stock(&sku).await, (0, 10), "available never below zero, all ten reserved");
        // and the ninety out-of-stock orders hold no money
        for r in results.iter().filter(|r| r.body["status"] == "OUT_OF_STOCK") {
            assert!(h.intents(&r.order_id()).is_empty());
        }
    });
}

#[test]
fn inv_3_two_lines_of_one_sku_reserve_their_sum_atomically() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1000, 5).await;
        let exact = h.place(&order_body(&h.email("inv3"), &[(&sku, 2), (&sku, 3)], "pm_card_visa")).await;
        assert_eq!(exact.body["status"], "CONFIRMED", "{}", exact.body);
        assert_eq!(h.stock(&sku).await, (0, 5));
        let sku2 = h.new_sku(1000, 4).await;
        let over = h.place(&order_body(&h.email("inv3"), &[(&sku2, 2), (&sku2, 3)], "pm_card_visa")).await;
        assert_eq!(over.body["status"], "OUT_OF_STOCK", "{}", over.body);
        assert_eq!(over.body["out_of_stock"][0]["requested"], 5, "the sum is what was asked for");
        assert_eq!(h.stock(&sku2).await, (4, 0));
    });
}

#[test]
fn inv_4_one_short_line_decrements_no_sku() {
    let h = harness();
    h.run(async {
        let a = h.new_sku(1000, 10).await;
        let b = h.new_sku(1000, 10).await;
        let c = h.new_sku(1000, 1).await;
        let r = h.place(&order_body(&h.email("inv4"), &[(&a, 3), (&b, 3), (&c, 2)], "pm_card_visa")).await;
        assert_eq!(r.body["status"], "OUT_OF_STOCK");
        assert_eq!(h.stock(&a).await, (10, 0));
        assert_eq!(h.stock(&b).await, (10, 0));
        assert_eq!(h.stock(&c).await, (1, 0));
    });
}

#[test]
fn inv_5_replayed_reserve_and_release_act_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1000, 10).await;
        let r = h.place(&order_body(&h.email("inv5"), &[(&sku, 3)], "pm_card_visa")).await;
        assert_eq!(r.body["status"], "CONFIRMED");
        let id = r.order_id();
        assert_eq!(h.stock(&sku).await, (7, 3));
        for _ in 0..5 {
            let out = h.stack.edge.invoke("reserve_stock", json!({"orderId": id})).await;
            assert!(out.is_ok(), "{out:?}");
        }
        assert_eq!(h.stock(&sku).await, (7, 3), "reserve replayed 5 times decrements once");
        let releases = futures::future::join_all((0..5).map(|_| h.stack.edge.invoke("release_stock", json!({"orderId": id})))).await;
        assert!(releases.iter().all(|r| r.is_ok()), "{releases:?}");
        assert_eq!(h.stock(&sku).await, (10, 0), "release replayed 5 times (concurrently) increments once");
        // and once released, a late reserve replay does not take the stock again
        let late = h.stack.edge.invoke("reserve_stock", json!({"orderId": id})).await;
        assert_eq!(late.unwrap_err().0, "InvalidState");
        assert_eq!(h.stock(&sku).await, (10, 0));
    });
}

/// INV-2 over a long mixed sequence against the real DynamoDB ledger: receive, reserve, route into
/// warehouses, ship parcels, release, operators' adjustments (and replays of each). After every step, per SKU:
/// available + reserved + shipped == received + adjusted (and equal to the test's own tally of what
/// went in), nothing negative, and the warehouses' free + allocated
/// units equal the network's available + reserved.
#[test]
fn inv_2_stock_is_conserved_through_reserve_route_ship_release_and_restock() {
    use orderflow_shared::domain::fulfillment::route;
    use orderflow_shared::domain::store_data::Adjustment;
    use orderflow_shared::ports::{AdjustOutcome, AllocateOutcome, Reservation};
    use std::collections::{BTreeMap, HashMap};
    let h = harness();
    h.run(async {
        let stock = &h.stack.deps.stock;
        let network = h.stack.deps.catalog.network().await.unwrap();
        let whs: Vec<String> = network.warehouses.iter().map(|w| w.id.clone()).collect();
        let sku = h.new_sku(100, 4).await;
        // A fresh seed each run (printed on failure); INV2_SEED replays one.
        let seed: u64 = std::env::var("INV2_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
        println!("INV-2 seed {seed} (replay with INV2_SEED={seed})");
        let mut rng: u64 = seed;
        let mut next = |n: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut tally: i64 = 4; // what new_sku received
        let mut ran = [0u32; 7];
        let mut receipts: Vec<(String, i64, String)> = vec![];
        let mut reserved: Vec<(String, i64)> = vec![];
        let mut replays = 0u32;
        let mut orders: Vec<String> = vec![];
        let mut shipments: Vec<(String, String, String, BTreeMap<String, i64>)> = vec![];
        let zero = |_: &BTreeMap<String, i64>| 0i64;
        // 150 steps, longer when a seed has not yet reached every kind of operation (a random walk
        // can go 150 steps without a shipment: the coverage asserted below is then still reached).
        for step in 0..1000 {
            if step >= 150 && ran.iter().all(|n| *n > 0) && !shipments.is_empty() && replays > 0 {
                break;
            }
            let op = next(7);
            match op {
                0 => {
                    // a delivery, or a replay of an earlier one (a warehouse system retrying)
                    let (wh, q, key) = if !receipts.is_empty() && next(3) == 0 {
                        receipts[next(receipts.len() as u64) as usize].clone()
                    } else {
                        let r = (whs[next(whs.len() as u64) as usize].clone(), 1 + next(4) as i64, format!("inv2-{sku}-{step}"));
                        receipts.push(r.clone());
                        r
                    };
                    if stock.receive(&sku, &wh, q, &key).await.unwrap() {
                        tally += q;
                    } else {
                        replays += 1;
                    }
                }
                6 => {
                    // an operator's adjustment (DATA-1), sometimes sent twice
                    let wh = &whs[next(whs.len() as u64) as usize];
                    let delta = next(5) as i64 - 3;
                    let adj = Adjustment {
                        sku: sku.clone(),
                        warehouse: wh.clone(),
                        delta: if delta == 0 { 1 } else { delta },
                        reason: "cycle count".into(),
                        by: "inv2".into(),
                        at: orderflow_shared::domain::order::now_rfc3339(),
                        idempotency_key: format!("inv2-{step}"),
                        request_hash: "h".into(),
                    };
                    for _ in 0..=next(2) {
                        if stock.adjust(&adj).await.unwrap() == AdjustOutcome::Applied {
                            tally += adj.delta;
                        }
                    }
                }
                1 if !orders.is_empty() && next(3) == 0 => {
                    // a replayed reserve of an earlier order: never takes stock again (INV-5)
                    let (id, q) = reserved[next(reserved.len() as u64) as usize].clone();
                    match stock.reserve(&id, &[(sku.clone(), q)]).await {
                        Ok(Reservation::Reserved { fresh }) => assert!(!fresh, "seed {seed}: a replayed reserve is not fresh"),
                        Ok(other) => panic!("seed {seed}: replayed reserve answered {other:?}"),
                        Err(e) => assert_eq!(e.error_type(), "InvalidState", "seed {seed}: {e}"),
                    }
                    replays += 1;
                }
                1 => {
                    let id = format!("ord_{}", uuid::Uuid::new_v4().simple());
                    let q = 1 + next(3) as i64;
                    if let Reservation::Reserved { .. } = stock.reserve(&id, &[(sku.clone(), q)]).await.unwrap() {
                        orders.push(id.clone());
                        reserved.push((id, q));
                    }
                }
                2 if !orders.is_empty() => {
                    let id = orders[next(orders.len() as u64) as usize].clone();
                    let r = stock.reservation(&id).await.unwrap().unwrap();
                    if r.status == "RESERVED" {
                        let levels = stock.warehouse_stock(std::slice::from_ref(&sku), &whs).await.unwrap();
                        let free: HashMap<String, HashMap<String, i64>> =
                            levels.iter().map(|(w, m)| (w.clone(), m.iter().map(|(s, x)| (s.clone(), x.available)).collect())).collect();
                        let plan = route(&network, &orderflow_local::demo_address(), &r.lines, &free).expect("reserved units are always routable");
                        assert!(matches!(stock.allocate(&id, &plan).await.unwrap(), AllocateOutcome::Routed(_)));
                    }
                }
                3 if !orders.is_empty() => {
                    let id = orders[next(orders.len() as u64) as usize].clone();
                    let r = stock.reservation(&id).await.unwrap().unwrap();
                    if r.status == "ROUTED" {
                        let a = &r.allocations[next(r.allocations.len() as u64) as usize];
                        let open = a.lines[&sku] - r.shipped.get(&format!("{sku}@{}", a.warehouse)).copied().unwrap_or(0);
                        if open > 0 {
                            let lines = BTreeMap::from([(sku.clone(), 1 + next(open as u64) as i64)]);
                            let sid = format!("S{step}");
                            stock.ship(&id, &sid, &a.warehouse, &lines, &zero).await.unwrap();
                            shipments.push((id, sid, a.warehouse.clone(), lines));
                        }
                    }
                }
                4 if !orders.is_empty() => {
                    let id = orders[next(orders.len() as u64) as usize].clone();
                    stock.release(&id).await.unwrap();
                }
                5 if !shipments.is_empty() => {
                    let (id, sid, wh, lines) = shipments[next(shipments.len() as u64) as usize].clone();
                    assert!(!stock.ship(&id, &sid, &wh, &lines, &zero).await.unwrap().fresh, "a replayed shipment ships nothing");
                }
                _ => continue,
            }
            ran[op as usize] += 1;
            let l = stock.level(&sku).await.unwrap().unwrap();
            assert_eq!(l.available + l.reserved + l.shipped, l.received + l.adjusted, "seed {seed} step {step} op {op}: {l:?}");
            assert_eq!(l.received + l.adjusted, tally, "seed {seed} step {step} op {op}: the ledger's books match the test's own tally");
            assert!(l.available >= 0 && l.reserved >= 0 && l.shipped >= 0, "step {step}: {l:?}");
            let levels = stock.warehouse_stock(std::slice::from_ref(&sku), &whs).await.unwrap();
            let on_hand: i64 = levels
                .values()
                .filter_map(|m| m.get(&sku))
                .map(|w| {
                    assert!(w.available >= 0 && w.allocated >= 0, "step {step}: {w:?}");
                    w.available + w.allocated
                })
                .sum();
            assert_eq!(on_hand, l.available + l.reserved, "step {step} op {op}: warehouses hold what the network counts");
        }
        assert!(!shipments.is_empty(), "the sequence shipped something");
        assert!(replays > 0, "seed {seed}: receipts and reserves were replayed");
        assert!(
            ran.iter().all(|n| *n > 0),
            "seed {seed}: every kind of operation ran (receive, reserve, route, ship, release, replayed ship, adjust): {ran:?}"
        );
    });
}
