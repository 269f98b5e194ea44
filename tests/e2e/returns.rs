//! Returns (RET-1..3, INV-2 with returns): a customer's return through the real returns workflow,
//! the production carrier client buying `is_return` labels from the sandbox carrier, the sandbox
//! warehouses reporting arrivals, refunds through refund_payment and the sandbox gateway.

use orderflow_e2e::*;
use orderflow_local::sandbox_warehouse::{PickMessage, ReturnExpected};
use orderflow_shared::domain::order::Order;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn order(h: &Harness, id: &str) -> Order {
    h.stack.deps.orders.get(id).await.unwrap().unwrap()
}

async fn until(h: &Harness, id: &str, what: &str, f: impl Fn(&Order) -> bool) -> Order {
    h.until(id, what, f).await
}

async fn pick(h: &Harness, id: &str, wh: &str) -> PickMessage {
    h.stack.warehouses.next_pick_list(id, Some(wh), WAIT).await.unwrap_or_else(|| panic!("no pick list for {id} from {wh}"))
}

async fn expected(h: &Harness, id: &str) -> ReturnExpected {
    h.stack.warehouses.next_return_expected(id, WAIT).await.unwrap_or_else(|| panic!("no return expected for {id}"))
}

/// INV-2 with returns: available + reserved + (shipped - returned) + written off == received + adjusted.
async fn conserved(h: &Harness, sku: &str) -> orderflow_shared::ports::StockLevel {
    let l = h.stack.deps.stock.level(sku).await.unwrap().unwrap();
    assert_eq!(l.available + l.reserved + (l.shipped - l.returned) + l.written_off, l.received + l.adjusted, "{sku}: {l:?}");
    assert!(l.available >= 0 && l.reserved >= 0 && l.returned <= l.shipped, "{sku}: {l:?}");
    l
}

/// INV-2 per warehouse: available + allocated + (shipped - returned) + written off == received + adjusted.
async fn conserved_at(h: &Harness, sku: &str, wh: &str) {
    let all = h.stack.deps.stock.warehouse_stock(&[sku.to_string()], &[wh.to_string()]).await.unwrap();
    let s = all[wh][sku];
    assert_eq!(s.available + s.allocated + (s.shipped - s.returned) + s.written_off, s.received + s.adjusted, "{sku} at {wh}: {s:?}");
}

async fn warehouse_available(h: &Harness, sku: &str, wh: &str) -> i64 {
    let all = h.stack.deps.stock.warehouse_stock(&[sku.to_string()], &[wh.to_string()]).await.unwrap();
    all.get(wh).and_then(|m| m.get(sku)).map(|s| s.available).unwrap_or(0)
}

/// Ship every pick list of the order whole (one parcel per warehouse), walk each parcel to
/// delivered, and wait for DELIVERED. (order id, access token, total)
async fn delivered(h: &Harness, tag: &str, lines: &[(&str, i64)], warehouses: &[&str]) -> (String, String, i64) {
    let placed = h.place(&order_body(&h.email(tag), lines, "pm_card_visa")).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let id = placed.order_id();
    for wh in warehouses {
        let list = pick(h, &id, wh).await;
        let (st, body) = h.stack.warehouses.send_report(&list, &list.report(&format!("P-{wh}"), &list.lines())).await;
        assert_eq!(st, 202, "{body}");
    }
    let o = until(h, &id, "labels", |o| o.shipments.len() == warehouses.len() && o.shipments.values().all(|s| s.tracking_code.is_some())).await;
    for s in o.shipments.values() {
        assert_eq!(h.stack.carrier.advance(s.tracking_code.as_deref().unwrap(), "delivered").await, 200);
    }
    until(h, &id, "DELIVERED", |o| o.status.as_str() == "DELIVERED").await;
    (id, placed.token(), placed.body["totals"]["total"].as_i64().unwrap())
}

async fn ask_return(h: &Harness, id: &str, token: &str, key: &str, body: Value) -> (u16, Value, bool) {
    let r = reqwest::Client::new()
        .post(format!("{}/orders/{id}/returns", h.api()))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().contains_key("idempotent-replayed");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null), replayed)
}

/// The refunds of a return, once each has succeeded at the gateway.
async fn return_refunds_succeeded(h: &Harness, id: &str, n: usize) -> Order {
    until(h, id, "return refunds succeeded", |o| o.refunds.values().filter(|r| r.return_id.is_some() && r.status == "succeeded").count() == n).await
}

#[test]
fn ret_1_3_a_whole_order_returned_is_restocked_and_refunded_to_the_cent() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2500, 5).await;
        let (id, token, total) = delivered(h, "ret-full", &[(&sku, 2)], &["wh-east"]).await;
        let before_east = warehouse_available(h, &sku, "wh-east").await;
        let body = json!({"lines": [{"sku": sku, "quantity": 2}], "reason": "no_longer_needed"});
        let key = format!("return-{id}");
        // a double click is one return
        let (a, b) = tokio::join!(ask_return(h, &id, &token, &key, body.clone()), ask_return(h, &id, &token, &key, body.clone()));
        assert_eq!((a.0, b.0), (202, 202), "{a:?} {b:?}");
        assert_eq!(a.1["return_id"], b.1["return_id"]);
        let rid = a.1["return_id"].as_str().unwrap().to_string();
        let other = ask_return(h, &id, &token, &key, json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "other"})).await;
        assert_eq!((other.0, other.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
        // without the order's token the order does not exist
        let stranger = ask_return(h, &id, "not-the-token", "k2", body.clone()).await;
        assert_eq!(stranger.0, 404);

        // on the wire: one return label, EasyPost-style (is_return, the carrier swapped the
        // addresses: the label goes from the customer to the warehouse that shipped)
        let msg = expected(h, &id).await;
        assert_eq!((msg.return_id(), msg.warehouse(), msg.lines()), (rid.as_str(), "wh-east", vec![(sku.clone(), 2)]));
        let labels: Vec<Value> =
            h.stack.carrier.shipments.lock().unwrap().values().filter(|s| s["reference"] == format!("{id}/{rid}/wh-east")).cloned().collect();
        assert_eq!(labels.len(), 1, "{labels:?}");
        assert_eq!(labels[0]["is_return"], true);
        assert_eq!(labels[0]["from_address"]["zip"], order_body("x@example.com", &[], "pm_card_visa")["shipping_address"]["postal_code"]);
        assert!(labels[0]["tracking_code"].is_string());

        // the warehouse reports everything resellable; a replay of the same report is fine
        let units = vec![(sku.clone(), 2, 0)];
        let (st, resp) = h.stack.warehouses.report_return(&msg, &units).await;
        assert_eq!(st, 202, "{resp}");
        let o = return_refunds_succeeded(h, &id, 1).await;
        let (st, _) = h.stack.warehouses.report_return(&msg, &units).await;
        assert_eq!(st, 200, "a repeated arrival is a replay");
        let (st, resp) = h.stack.warehouses.report_return(&msg, &[(sku.clone(), 1, 1)]).await;
        assert_eq!((st, resp["error"]["code"].as_str()), (409, Some("return_already_received")));

        // RET-3: the whole order came back, so the refund is everything charged, shipping included
        let r = o.refunds.values().find(|r| r.return_id.as_deref() == Some(rid.as_str())).unwrap();
        assert_eq!(r.amount_minor, total);
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(total));
        let wire: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path == "/v1/refunds").collect();
        assert_eq!(wire.iter().filter(|q| !q.replayed).count(), 1, "{wire:?}");
        assert_eq!(wire[0].idempotency_key.as_deref(), Some(format!("{id}:refund:{}", r.refund_id).as_str()));
        // RET-2 + INV-2: both units are back in wh-east's available stock
        let o = until(h, &id, "parcel refunded", |o| o.returns[&rid].parcels["wh-east"].status == "refunded").await;
        assert_eq!(warehouse_available(h, &sku, "wh-east").await, before_east + 2);
        let l = conserved(h, &sku).await;
        assert_eq!((l.returned, l.written_off), (2, 0));
        conserved_at(h, &sku, "wh-east").await;
        // the customer sees the return and the refund, and was emailed the label and the refund
        let view = get_order(&reqwest::Client::new(), h.api(), &id, &token).await.1;
        assert_eq!(view["returns"][0]["parcels"][0]["status"], "refunded", "{view}");
        assert!(view["returns"][0]["parcels"][0]["label_url"].is_string());
        assert_eq!(view["refunds"][0]["amount"].as_i64(), Some(total));
        wait_for_emails(&h.stack, &id, 5, WAIT).await;
        h.settle().await;
        let emails: Vec<_> = h.stack.edge.emails_for(&id).into_iter().filter(|e| e.subject.contains("return") || e.subject.starts_with("Refund")).collect();
        assert_eq!(emails.len(), 2, "one label email, one refund email: {emails:?}");
        // nothing left to return
        let again = ask_return(h, &id, &token, "again", body).await;
        assert_eq!((again.0, again.1["error"]["code"].as_str(), again.1["error"]["field"].as_str()), (422, Some("units_not_returnable"), Some("lines[0]")));
        assert_eq!(o.return_seq, 1);
    });
}

#[test]
fn ret_2_3_a_partial_return_from_a_split_order_with_a_damaged_unit() {
    let h = harness();
    h.run(async {
        let east = h.new_sku(1000, 5).await;
        let west = h.new_sku(3000, 0).await;
        h.stack.deps.stock.receive(&west, "wh-west", 5, &format!("seed:{west}:west")).await.unwrap();
        let (id, token, _total) = delivered(h, "ret-split", &[(&east, 1), (&west, 2)], &["wh-east", "wh-west"]).await;
        let west_before = warehouse_available(h, &west, "wh-west").await;
        // two units of the west line come back; one of them is damaged
        let (st, resp, _) = ask_return(h, &id, &token, "k1", json!({"lines": [{"sku": west, "quantity": 2}], "reason": "defective"})).await;
        assert_eq!(st, 202, "{resp}");
        let msg = expected(h, &id).await;
        assert_eq!(msg.warehouse(), "wh-west", "units go back to the warehouse that shipped them");
        // more than expected, or a SKU not in the return, is refused
        let (st, r) = h.stack.warehouses.report_return(&msg, &[(west.clone(), 3, 0)]).await;
        assert_eq!((st, r["error"]["code"].as_str()), (422, Some("inspection_invalid")));
        // another warehouse cannot report it
        let (st, _) = h.stack.warehouses.send_as("wh-east", "/warehouse/returns", &msg.arrival(&[(west.clone(), 1, 1)])).await;
        assert_eq!(st, 404);
        let (st, r) = h.stack.warehouses.report_return(&msg, &[(west.clone(), 1, 1)]).await;
        assert_eq!(st, 202, "{r}");
        let o = return_refunds_succeeded(h, &id, 1).await;
        // RET-3: the returned line's goods and tax, not shipping (the east unit is still with the customer)
        let r = o.refunds.values().find(|r| r.return_id.is_some()).unwrap();
        let subtotal = o.totals.subtotal.minor;
        let goods_and_tax = o.totals.total.minor - o.totals.shipping.minor;
        let line = 2 * 3000;
        let expected_amount = line * goods_and_tax / subtotal; // 2 of 2 units: the remainder lands here
        assert!((r.amount_minor - expected_amount).abs() <= 1, "{} vs {expected_amount}", r.amount_minor);
        assert!(r.amount_minor < o.payment.as_ref().unwrap().captured_minor - 1000);
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(r.amount_minor));
        // RET-2: one back in wh-west's stock, one written off
        until(h, &id, "refunded", |o| o.returns.values().all(|r| r.parcels.values().all(|p| p.status == "refunded"))).await;
        assert_eq!(warehouse_available(h, &west, "wh-west").await, west_before + 1);
        let l = conserved(h, &west).await;
        assert_eq!((l.returned, l.written_off), (2, 1));
        conserved(h, &east).await;
        conserved_at(h, &west, "wh-west").await;
        conserved_at(h, &east, "wh-east").await;
    });
}

#[test]
fn ret_1_units_not_delivered_out_of_the_window_or_refunded_are_refused_naming_the_line() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let placed = h.place(&order_body(&h.email("ret-window"), &[(&sku, 2)], "pm_card_visa")).await;
        let (id, token) = (placed.order_id(), placed.token());
        let list = pick(h, &id, "wh-east").await;
        assert_eq!(h.stack.warehouses.send_report(&list, &list.report("P1", &list.lines())).await.0, 202);
        let o = until(h, &id, "label", |o| o.shipments.values().all(|s| s.tracking_code.is_some()) && !o.shipments.is_empty()).await;
        let code = o.shipments.values().next().unwrap().tracking_code.clone().unwrap();
        let body = json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "other"});
        // shipped, not delivered yet
        let (st, r, _) = ask_return(h, &id, &token, "k1", body.clone()).await;
        assert_eq!((st, r["error"]["code"].as_str(), r["error"]["field"].as_str()), (422, Some("units_not_delivered"), Some("lines[0]")), "{r}");
        // delivered 31 days ago: outside the 30-day window
        let long_ago = (chrono::Utc::now() - chrono::Duration::days(31)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        assert_eq!(h.stack.carrier.deliver(&h.stack.carrier.event(&code, "delivered", &long_ago)).await, 200);
        until(h, &id, "DELIVERED", |o| o.status.as_str() == "DELIVERED").await;
        let (st, r, _) = ask_return(h, &id, &token, "k2", body.clone()).await;
        assert_eq!((st, r["error"]["code"].as_str(), r["error"]["field"].as_str()), (422, Some("return_window_closed"), Some("lines[0]")), "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(&sku), "{r}");
        // bad input is a 400 naming the field; nothing was recorded
        let (st, r, _) = ask_return(h, &id, &token, "k3", json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "changed my mind"})).await;
        assert_eq!((st, r["error"]["code"].as_str()), (400, Some("invalid_reason")));
        let (st, r, _) = ask_return(h, &id, &token, "k4", json!({"lines": [{"sku": "NOPE", "quantity": 1}], "reason": "other"})).await;
        assert_eq!((st, r["error"]["code"].as_str()), (422, Some("sku_not_in_order")));
        assert!(order(h, &id).await.returns.is_empty());
    });
}

#[test]
fn ret_3_a_goodwill_refund_by_lines_then_a_return_of_the_same_units_is_refused() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 5).await;
        let (id, token, _) = delivered(h, "ret-goodwill", &[(&sku, 2)], &["wh-east"]).await;
        let r = reqwest::Client::new()
            .post(format!("{}/ops/orders/{id}/refunds", h.api()))
            .bearer_auth(&h.stack.ops_token)
            .header("Idempotency-Key", "goodwill-1")
            .json(&json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "requested_by_customer", "note": "scratched, keep it"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let (st, r, _) = ask_return(h, &id, &token, "k1", json!({"lines": [{"sku": sku, "quantity": 2}], "reason": "damaged"})).await;
        assert_eq!((st, r["error"]["code"].as_str()), (422, Some("units_not_returnable")), "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("1 refunded"), "{r}");
        // the other unit may still go back, and then an operator cannot refund it by lines again
        let (st, _, _) = ask_return(h, &id, &token, "k2", json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "damaged"})).await;
        assert_eq!(st, 202);
        let r = reqwest::Client::new()
            .post(format!("{}/ops/orders/{id}/refunds", h.api()))
            .bearer_auth(&h.stack.ops_token)
            .header("Idempotency-Key", "goodwill-2")
            .json(&json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "requested_by_customer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 409, "a unit on its way back is the return's to refund");
        let msg = expected(h, &id).await;
        assert_eq!(h.stack.warehouses.report_return(&msg, &[(sku.clone(), 1, 0)]).await.0, 202);
        let o = return_refunds_succeeded(h, &id, 1).await;
        // every unit was refunded once; together never more than captured
        assert_eq!(o.refunded_units[&sku], 2);
        assert!(o.refunded_minor <= o.payment.as_ref().unwrap().captured_minor);
        conserved(h, &sku).await;
    });
}

#[test]
fn ret_a_return_label_never_used_expires_and_is_refunded_with_the_carrier() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1200, 5).await;
        let (id, token, _) = delivered(h, "ret-expire", &[(&sku, 1)], &["wh-east"]).await;
        let (st, r, _) = ask_return(h, &id, &token, "k1", json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "wrong_item"})).await;
        assert_eq!(st, 202, "{r}");
        let rid = r["return_id"].as_str().unwrap().to_string();
        let msg = expected(h, &id).await; // the warehouse is told, and nothing ever arrives
        let o = until(h, &id, "expired", |o| o.returns[&rid].parcels["wh-east"].label_refund_status.is_some()).await;
        let p = &o.returns[&rid].parcels["wh-east"];
        assert_eq!((p.status.as_str(), p.label_refund_status.as_deref()), ("expired", Some("submitted")));
        // on the wire: one label refund, keyed by the return and warehouse
        let label = p.label.as_ref().unwrap();
        let refunds: Vec<_> = h.stack.carrier.label_refunds.lock().unwrap().iter().filter(|(sid, _)| *sid == label.carrier_shipment_id).cloned().collect();
        assert_eq!(refunds.len(), 1, "{refunds:?}");
        assert_eq!(refunds[0].1, format!("{id}:return-label-refund:{rid}:wh-east"));
        // no money moved; a late arrival is refused; the unit may be returned again
        assert!(o.refunds.is_empty());
        let (st, r) = h.stack.warehouses.report_return(&msg, &[(sku.clone(), 1, 0)]).await;
        assert_eq!((st, r["error"]["code"].as_str()), (409, Some("return_expired")));
        let (st, _, _) = ask_return(h, &id, &token, "k2", json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "wrong_item"})).await;
        assert_eq!(st, 202, "an expired return gives its units back");
        let emails = wait_for_emails(&h.stack, &id, 1, WAIT).await;
        assert!(emails.iter().any(|e| e.subject.contains("has expired")), "{emails:?}");
        conserved(h, &sku).await;
    });
}

#[test]
fn ret_a_parcel_returned_to_sender_is_restocked_and_refunded_without_a_request() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1800, 5).await;
        let placed = h.place(&order_body(&h.email("ret-rts"), &[(&sku, 2)], "pm_card_visa")).await;
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let list = pick(h, &id, "wh-east").await;
        assert_eq!(h.stack.warehouses.send_report(&list, &list.report("P1", &list.lines())).await.0, 202);
        let o = until(h, &id, "captured", |o| {
            o.payment.as_ref().is_some_and(|p| p.captured_minor == total) && o.shipments.values().all(|s| s.tracking_code.is_some())
        })
        .await;
        let code = o.shipments.values().next().unwrap().tracking_code.clone().unwrap();
        // the carrier cannot deliver and brings it back, and says so twice
        assert_eq!(h.stack.carrier.advance(&code, "return_to_sender").await, 200);
        assert_eq!(h.stack.carrier.advance(&code, "return_to_sender").await, 200);
        let msg = expected(h, &id).await;
        assert_eq!(msg.lines(), vec![(sku.clone(), 2)]);
        assert_eq!(h.stack.warehouses.report_return(&msg, &[(sku.clone(), 2, 0)]).await.0, 202);
        let o = return_refunds_succeeded(h, &id, 1).await;
        assert_eq!(o.returns.len(), 1, "one return however often the carrier said so");
        assert!(o.returns.values().next().unwrap().parcels["wh-east"].label.is_none(), "the carrier brings it back: no label bought");
        assert_eq!(o.refunded_minor, total, "nothing was delivered: everything charged goes back");
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(total));
        let l = conserved(h, &sku).await;
        assert_eq!(l.returned, 2);
    });
}
