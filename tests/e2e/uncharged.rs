//! Goods shipped but never charged (#9 item 4, OPS-1): the order ends FAILED with its hold kept
//! when it can still be captured, and operators decide once: retry the charge, record a payment
//! taken elsewhere, or write it off.

use orderflow_e2e::*;
use orderflow_shared::domain::order::Order;
use serde_json::{json, Value};
use std::time::Duration;

async fn until(h: &Harness, id: &str, what: &str, f: impl Fn(&Order) -> bool) -> Order {
    h.until(id, what, f).await
}

async fn decide(h: &Harness, id: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}/ops/orders/{id}/uncharged", h.api())).bearer_auth(&h.stack.ops_token).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An order whose parcel shipped while the gateway refused every capture: FAILED, hold kept.
async fn shipped_uncharged(h: &Harness, tag: &str) -> (String, String, String, i64) {
    let sku = h.new_sku(2200, 4).await;
    let placed = h.place(&order_body(&h.email(tag), &[(&sku, 2)], "pm_card_visa")).await;
    let (id, token) = (placed.order_id(), placed.token());
    let list = h.stack.warehouses.next_pick_list(&id, None, Duration::from_secs(60)).await.expect("pick list");
    let pi = h.intents(&id)[0]["id"].as_str().unwrap().to_string();
    h.stack.gateway.failing_captures.lock().unwrap().insert(pi.clone());
    assert_eq!(h.stack.warehouses.send_report(&list, &list.report("U1", &list.lines())).await.0, 202);
    let o = until(h, &id, "FAILED", |o| o.status.as_str() == "FAILED").await;
    h.stack.gateway.failing_captures.lock().unwrap().remove(&pi);
    (id, token, pi, o.shipments.values().filter_map(|s| s.amount).map(|m| m.minor).sum())
}

#[test]
fn ops_1_shipped_uncharged_one_decision_wins_and_a_retry_charges_once() {
    let h = harness();
    h.run(async {
        let (id, token, pi, owed) = shipped_uncharged(h, "uncharged-retry").await;
        assert_eq!(h.intents(&id)[0]["status"], "requires_capture", "the hold is kept for the operator");
        assert!(owed > 0);
        // bad input names its field; nothing is recorded
        let (st, r) = decide(h, &id, json!({"action": "record_external", "note": "paid"})).await;
        assert_eq!((st, r["error"]["field"].as_str()), (400, Some("reference")));
        // retry and write-off at once: exactly one takes effect
        let (a, b) = tokio::join!(
            decide(h, &id, json!({"action": "retry_charge", "note": "gateway outage is over"})),
            decide(h, &id, json!({"action": "write_off", "note": "not worth chasing"}))
        );
        let mut codes = vec![a.0, b.0];
        codes.sort();
        assert_eq!(codes, vec![202, 409], "{a:?} {b:?}");
        let loser = if a.0 == 409 { &a.1 } else { &b.1 };
        assert_eq!(loser["error"]["code"], "collection_already_decided");
        let winner = if a.0 == 202 { a.1["action"].as_str().unwrap().to_string() } else { b.1["action"].as_str().unwrap().to_string() };
        let o = until(h, &id, "applied", |o| o.collection.as_ref().is_some_and(|c| c.status != "requested")).await;
        let c = o.collection.clone().unwrap();
        let captures: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path.ends_with("/capture") && !q.replayed).collect();
        if winner == "retry_charge" {
            assert_eq!(c.status, "collected");
            assert_eq!(h.intents(&id)[0]["amount_received"].as_i64(), Some(owed), "what shipped, charged once");
            assert_eq!(o.payment.as_ref().unwrap().captured_minor, owed);
            assert!(captures.iter().any(|q| q.idempotency_key.as_deref() == Some(format!("{id}:capture-retry").as_str())), "{captures:?}");
        } else {
            assert_eq!(c.status, "written_off");
            assert_eq!(h.intents(&id)[0]["status"], "canceled", "the hold is released");
            assert_eq!(h.stack.gateway.capture_count(&pi), 0);
        }
        // one decision on the timeline, with the note, for operators only
        assert_eq!(o.timeline.iter().filter(|t| t.event == "uncharged_decision").count(), 1);
        let view = get_order(&reqwest::Client::new(), h.api(), &id, &token).await.1;
        assert!(!view.to_string().contains("outage") && !view.to_string().contains("chasing"), "{view}");
        // decided: a later decision is refused
        let (st, r) = decide(h, &id, json!({"action": "write_off", "note": "again"})).await;
        assert_eq!((st, r["error"]["code"].as_str()), (409, Some("collection_already_decided")));
    });
}

#[test]
fn a_hold_that_is_gone_cannot_be_charged_again_and_a_payment_elsewhere_is_recorded() {
    let h = harness();
    h.run(async {
        let (id, _, pi, owed) = shipped_uncharged(h, "uncharged-gone").await;
        // the hold is canceled at the gateway (its dashboard) after the order failed
        h.cancel_hold_at_gateway(&pi).await;
        let o = until(h, &id, "gateway said canceled", |o| o.payment.as_ref().and_then(|p| p.gateway_status.as_deref()) == Some("canceled")).await;
        assert_eq!(o.status.as_str(), "FAILED");
        let (st, r) = decide(h, &id, json!({"action": "retry_charge", "note": "try again"})).await;
        assert_eq!((st, r["error"]["code"].as_str()), (409, Some("payment_not_capturable")), "{r}");
        let (st, r) = decide(h, &id, json!({"action": "record_external", "note": "paid by transfer", "reference": "INV-77"})).await;
        assert_eq!(st, 202, "{r}");
        assert_eq!(r["amount_minor"].as_i64(), Some(owed));
        let o = until(h, &id, "recorded", |o| o.collection.as_ref().is_some_and(|c| c.status == "recorded")).await;
        assert!(o.collection.unwrap().detail.unwrap().contains("INV-77"));
        assert_eq!(h.stack.gateway.capture_count(&pi), 0, "nothing captured on a hold that was gone");
        let ops = reqwest::Client::new().get(format!("{}/ops/orders/{id}", h.api())).bearer_auth(&h.stack.ops_token).send().await.unwrap();
        let ops: Value = ops.json().await.unwrap();
        assert_eq!(ops["collection"]["status"], "recorded");
    });
}
