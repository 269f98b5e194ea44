//! The operator API a store loads and keeps its data with (DATA-1, DATA-2), through the deployed
//! routes and the store_data_api function with its own role.

use orderflow_e2e::*;
use serde_json::{json, Value};

struct Ops<'a> {
    h: &'a Harness,
    http: reqwest::Client,
}

impl Ops<'_> {
    fn new(h: &Harness) -> Ops<'_> {
        Ops { h, http: reqwest::Client::new() }
    }
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value, bool) {
        let mut req = self.http.request(method, format!("{}{path}", self.h.api())).bearer_auth(&self.h.stack.ops_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("API reachable");
        let replayed = resp.headers().contains_key("idempotent-replayed");
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null), replayed)
    }
    async fn put_product(&self, sku: &str, price: i64) -> (u16, Value) {
        let (st, v, _) = self
            .call(
                reqwest::Method::PUT,
                &format!("/ops/catalog/{sku}"),
                Some(json!({"name": format!("Product {sku}"), "unit_price_minor": price, "weight_grams": 250})),
                &[],
            )
            .await;
        (st, v)
    }
    async fn adjust(&self, sku: &str, key: &str, warehouse: &str, delta: i64, reason: &str) -> (u16, Value, bool) {
        let body = json!({"warehouse": warehouse, "delta": delta, "reason": reason});
        self.call(reqwest::Method::POST, &format!("/ops/stock/{sku}/adjustments"), Some(body), &[("Idempotency-Key", key), ("X-Operator", "dana@store")]).await
    }
    async fn stock(&self, sku: &str) -> Value {
        let (st, v, _) = self.call(reqwest::Method::GET, &format!("/ops/stock/{sku}"), None, &[]).await;
        assert_eq!(st, 200, "{v}");
        v
    }
}

fn fresh_sku(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]).to_uppercase()
}

#[test]
fn data_1_stock_adjustments_apply_once_per_key_never_below_reserved_and_are_audited() {
    let h = harness();
    h.run(async {
        let ops = Ops::new(h);
        let sku = fresh_sku("ADJ");
        assert_eq!(ops.put_product(&sku, 900).await.0, 200);
        // One adjustment sent five times, three of them at once: one change.
        let key = format!("count-{sku}");
        let first = ops.adjust(&sku, &key, "wh-east", 5, "found in cycle count").await;
        assert_eq!((first.0, first.2), (201, false), "{}", first.1);
        let replays = futures::future::join_all((0..4).map(|_| ops.adjust(&sku, &key, "wh-east", 5, "found in cycle count"))).await;
        for r in &replays {
            assert_eq!((r.0, r.2), (201, true), "{}", r.1);
            assert_eq!(r.1["at"], first.1["at"], "a replay answers the adjustment made the first time");
        }
        // The same key with another adjustment is refused, not applied.
        let reused = ops.adjust(&sku, &key, "wh-east", 7, "found in cycle count").await;
        assert_eq!((reused.0, reused.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
        assert_eq!(h.stock(&sku).await, (5, 0));
        // An order holds 3; writing off 3 of the 5 would uncover it.
        let placed = h.place(&order_body(&h.email("adj"), &[(&sku, 3)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let short = ops.adjust(&sku, &format!("damage-{sku}"), "wh-east", -3, "water damage").await;
        assert_eq!((short.0, short.1["error"]["code"].as_str()), (409, Some("below_reserved")), "{}", short.1);
        assert!(short.1["error"]["message"].as_str().unwrap().contains("2 free in the network"), "{}", short.1);
        // nothing free in a warehouse that never had any
        let none = ops.adjust(&sku, &format!("west-{sku}"), "wh-west", -1, "lost").await;
        assert_eq!(none.0, 409, "{}", none.1);
        assert_eq!(h.stock(&sku).await, (2, 3), "a refused write-off changes nothing");
        // Writing off exactly what is free is allowed.
        assert_eq!(ops.adjust(&sku, &format!("damage2-{sku}"), "wh-east", -2, "water damage").await.0, 201);
        assert_eq!(h.stock(&sku).await, (0, 3));
        // The books (INV-2) count adjustments, and the audit trail has who, when, delta and why.
        let v = ops.stock(&sku).await;
        assert_eq!((v["received"].as_i64(), v["adjusted"].as_i64()), (Some(0), Some(3)), "{v}");
        assert_eq!(v["available"].as_i64().unwrap() + v["reserved"].as_i64().unwrap() + v["shipped"].as_i64().unwrap(), 3);
        let trail = v["adjustments"].as_array().unwrap();
        assert_eq!(trail.len(), 2, "one entry per applied adjustment, none for replays or refusals: {v}");
        assert_eq!(
            (trail[0]["delta"].as_i64(), trail[0]["by"].as_str(), trail[0]["reason"].as_str()),
            (Some(5), Some("dana@store"), Some("found in cycle count"))
        );
        assert_eq!((trail[1]["delta"].as_i64(), trail[1]["reason"].as_str()), (Some(-2), Some("water damage")));
        assert!(trail.iter().all(|a| a["at"].as_str().is_some_and(|t| t.len() >= 20)), "{v}");
    });
}

#[test]
fn data_2_a_price_change_never_alters_an_order_already_placed() {
    let h = harness();
    h.run(async {
        let ops = Ops::new(h);
        let sku = fresh_sku("PRICE");
        ops.put_product(&sku, 1000).await;
        assert_eq!(ops.adjust(&sku, &format!("init-{sku}"), "wh-east", 10, "initial").await.0, 201);
        let before = h.place(&order_body(&h.email("price"), &[(&sku, 2)], "pm_card_visa")).await;
        assert_eq!(before.status, 201, "{}", before.body);
        // the price and weight change, then the product is retired
        assert_eq!(ops.put_product(&sku, 2500).await.0, 200);
        let after = h.place(&order_body(&h.email("price"), &[(&sku, 1)], "pm_card_visa")).await;
        assert_eq!(after.body["lines"][0]["unit_price"], 2500, "new orders take the new price");
        let (st, _, _) = ops
            .call(
                reqwest::Method::PUT,
                &format!("/ops/catalog/{sku}"),
                Some(json!({"name": "Retired", "unit_price_minor": 2500, "weight_grams": 250, "active": false})),
                &[],
            )
            .await;
        assert_eq!(st, 200);
        let retired = h.place(&order_body(&h.email("price"), &[(&sku, 1)], "pm_card_visa")).await;
        assert_eq!((retired.status, retired.body["error"]["code"].as_str()), (400, Some("unknown_sku")));
        // the first order keeps its lines, totals and hold
        let (_, view) = get_order(&reqwest::Client::new(), h.api(), &before.order_id(), &before.token()).await;
        assert_eq!(view["lines"][0]["unit_price"], 1000);
        assert_eq!(view["totals"], before.body["totals"]);
        assert_eq!(h.intents(&before.order_id())[0]["amount"], before.body["totals"]["total"]);
    });
}

#[test]
fn store_data_input_is_validated_with_stable_codes_and_the_operator_token() {
    let h = harness();
    h.run(async {
        let ops = Ops::new(h);
        let put = reqwest::Method::PUT;
        let cases: Vec<(reqwest::Method, String, Value, u16, &str)> = vec![
            (put.clone(), "/ops/catalog/BAD%20SKU".into(), json!({"name": "x", "unit_price_minor": 1, "weight_grams": 1}), 400, "invalid_sku"),
            (put.clone(), "/ops/catalog/OK-1".into(), json!({"name": "x", "unit_price_minor": -1, "weight_grams": 1}), 400, "invalid_field"),
            (put.clone(), "/ops/catalog/OK-1".into(), json!({"name": "x", "unit_price_minor": "12.00", "weight_grams": 1}), 400, "invalid_request"),
            (put.clone(), "/ops/rates/US".into(), json!({"currency": "EUR", "shipping": {"standard": {"base_minor": 1, "per_item_minor": 0, "transit_days": 3}}, "tax_rate": "0.2"}), 409, "currency_mismatch"),
            (put.clone(), "/ops/rates/us".into(), json!({"currency": "USD", "shipping": {"standard": {"base_minor": 1, "per_item_minor": 0, "transit_days": 3}}, "tax_rate": "0.2"}), 400, "invalid_country"),
            (
                put.clone(),
                "/ops/warehouses/wh-north".into(),
                json!({"name": "North", "address": {"name": "N", "line1": "1 Rd", "city": "Troy", "postal_code": "12180", "country": "US"}, "zones": {"US": {"*": 2}}}),
                409,
                "warehouse_not_deployed",
            ),
            (put.clone(), "/ops/stock/OK-1/warehouses/wh-nowhere/reorder".into(), json!({"point": 1, "quantity": 5}), 404, "unknown_warehouse"),
            (reqwest::Method::POST, "/ops/stock/NO-SUCH-SKU-XYZ/adjustments".into(), json!({"warehouse": "wh-east", "delta": 1, "reason": "x"}), 404, "unknown_sku"),
            (reqwest::Method::POST, "/ops/stock/OK-1/adjustments".into(), json!({"warehouse": "wh-east", "delta": 0, "reason": "x"}), 400, "invalid_field"),
        ];
        for (method, path, body, status, code) in cases {
            let (st, v, _) = ops.call(method.clone(), &path, Some(body), &[("Idempotency-Key", "validation-case")]).await;
            assert_eq!((st, v["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {v}");
        }
        // an adjustment without an Idempotency-Key is refused before anything is read
        let (st, v, _) = ops.call(reqwest::Method::POST, "/ops/stock/OK-1/adjustments", Some(json!({"warehouse": "wh-east", "delta": 1, "reason": "x"})), &[]).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some("idempotency_key_missing")));
        // without the operator token: 401, and nothing changes
        let resp = reqwest::Client::new()
            .put(format!("{}/ops/catalog/MUG-BLUE", h.api()))
            .json(&json!({"name": "Hijacked", "unit_price_minor": 1, "weight_grams": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let items = h.stack.deps.catalog.items(&["MUG-BLUE".to_string()]).await.unwrap();
        assert_ne!(items["MUG-BLUE"].name, "Hijacked");
    });
}

#[test]
fn loading_the_same_store_file_again_adds_its_stock_once() {
    let h = harness();
    h.run(async {
        let dir = std::env::temp_dir().join(format!("orderflow-load-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (fresh_sku("CSV"), fresh_sku("CSV"));
        let products = dir.join("products.csv");
        std::fs::write(&products, format!("sku,name,unit_price_minor,weight_grams,active\n{a},Tea towel,850,120,true\n{b},Apron,2400,300,no\n")).unwrap();
        let stock = dir.join("stock.csv");
        std::fs::write(&stock, format!("sku,warehouse,delta,reason\n{a},wh-east,12,opening stock\n{a},wh-west,3,opening stock\n")).unwrap();
        let token = &h.stack.ops_token;
        orderflow_local::load::load(h.api(), token, &products).await.unwrap();
        let first = orderflow_local::load::load(h.api(), token, &stock).await.unwrap();
        let again = orderflow_local::load::load(h.api(), token, &stock).await.unwrap();
        assert_eq!((first.replayed, again.replayed), (0, 2), "the second load replays both lines");
        assert_eq!(h.stock(&a).await, (15, 0));
        let items = h.stack.deps.catalog.items(&[a.clone(), b.clone()]).await.unwrap();
        assert_eq!((items[&a].unit_price_minor, items[&a].active, items[&b].active), (850, true, false));
        // a row that does not parse stops the load and says where
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, format!("sku,warehouse,delta,reason\n{a},wh-east,lots,opening stock\n")).unwrap();
        let e = orderflow_local::load::load(h.api(), token, &bad).await.unwrap_err();
        assert!(e.contains("row 2") && e.contains("delta"), "{e}");
        assert_eq!(h.stock(&a).await, (15, 0));
    });
}
