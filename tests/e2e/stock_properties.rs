//! INV-1, INV-3, INV-4, INV-5: stock under concurrency, repetition and replays.

use orderflow_e2e::*;
use serde_json::json;

#[test]
fn inv_1_hundred_concurrent_orders_for_ten_units_confirm_exactly_ten() {
    let h = harness();
    h.run_alone(async {
        let sku = h.new_sku(1000, 10).await;
        let http = reqwest::Client::new();
        let bodies: Vec<(String, String)> = (0..100).map(|i| (h.key(), order_body(&h.email(&format!("inv1-{i}")), &[(&sku, 1)], "pm_card_visa").to_string())).collect();
        let results = futures::future::join_all(bodies.iter().map(|(k, b)| post_order(&http, h.api(), Some(k), b.as_bytes()))).await;
        let confirmed = results.iter().filter(|r| r.body["status"] == "CONFIRMED").count();
        let out = results.iter().filter(|r| r.body["status"] == "OUT_OF_STOCK").count();
        let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
        if let Some(bad) = results.iter().find(|r| r.status == 500) { eprintln!("first failure: {}", bad.body); }
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
