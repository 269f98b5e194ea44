//! #10.3 / INV-6: an order a dead checkout left PENDING is closed by the scheduled sweeper through
//! the cancel's steps: stock released once, hold voided once, one email, FAILED, and a late step of
//! the checkout cannot reserve again. The dead checkout is made as a killed one leaves it: the
//! order written and the checkout's own first two steps (reserve_stock, authorize_payment) run,
//! then nothing, for longer than a checkout can live.

use orderflow_e2e::*;
use orderflow_shared::domain::order::{new_order_id, Order, OrderStatus};
use serde_json::{json, Value};

/// A copy of a placed order's lines and addresses as a new PENDING order created `age` ago.
async fn killed_checkout(h: &Harness, sku: &str, age: chrono::Duration) -> String {
    let placed = h.place(&order_body(&h.email("sweep"), &[(sku, 2)], "pm_card_visa")).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let template = h.stack.deps.orders.get(&placed.order_id()).await.unwrap().unwrap();
    let id = new_order_id();
    let at = (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut v = serde_json::to_value(&template).unwrap();
    for (k, val) in [("order_id", json!(id)), ("status", json!("PENDING")), ("created_at", json!(at)), ("updated_at", json!(at)), ("timeline", json!([]))] {
        v[k] = val;
    }
    for k in ["payment", "status_reason", "fraud"] {
        v.as_object_mut().unwrap().remove(k);
    }
    let order: Order = serde_json::from_value(v).unwrap();
    h.stack.deps.orders.create(&order).await.unwrap();
    for step in ["reserve_stock", "authorize_payment"] {
        h.stack.edge.invoke(step, json!({"orderId": id})).await.unwrap_or_else(|e| panic!("{step}: {e:?}"));
    }
    id
}

async fn sweep(h: &Harness) -> Value {
    h.stack.edge.invoke("sweep_stuck_orders", json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})).await.unwrap()
}

#[test]
fn inv_6_an_order_a_dead_checkout_left_pending_is_closed_once_by_the_sweeper() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1800, 20).await;
        let dead = killed_checkout(h, &sku, chrono::Duration::hours(1)).await;
        let live = killed_checkout(h, &sku, chrono::Duration::seconds(5)).await;
        // #10.4: a checkout whose authorize answer was lost: the gateway holds, the order does not know.
        let orphan = killed_checkout(h, &sku, chrono::Duration::hours(1)).await;
        h.forget_payment(&orphan).await;
        // A run that died right after its tombstone: FAILED, not closed. Both runs below list it.
        let died = killed_checkout(h, &sku, chrono::Duration::hours(1)).await;
        let tombstone = orderflow_shared::domain::order::TimelineEntry::now("abandoned", None);
        assert!(h.stack.deps.orders.transition(&died, OrderStatus::Failed, Some("checkout_abandoned".into()), tombstone).await.unwrap());
        let orphan_hold = h.intents(&orphan)[0]["id"].as_str().unwrap().to_string();
        assert_eq!(h.stock(&sku).await, (4, 16), "four placed orders and four checkouts hold 16 units");
        let hold = h.intents(&dead)[0]["id"].as_str().unwrap().to_string();
        assert_eq!(h.intents(&dead)[0]["status"], "requires_capture");

        // Two runs at once (the schedule's event delivered twice, or an operator's run beside the
        // schedule's): one closes each order, the other leaves it to it.
        let (out, other) = tokio::join!(sweep(h), sweep(h));
        // closed by these runs, or by the stack's own scheduled run a moment before (all are the sweeper)
        for run in [&out, &other] {
            assert!(!run["closed"].as_array().unwrap().iter().any(|c| c == live.as_str()), "a checkout that may still be running is left alone: {run}");
        }
        let closed_by_both = out["closed"].as_array().unwrap().iter().filter(|c| other["closed"].as_array().unwrap().contains(c)).count();
        assert_eq!(closed_by_both, 0, "no order closed by both runs: {out} {other}");
        let o = h.stack.deps.orders.get(&dead).await.unwrap().unwrap();
        assert_eq!((o.status, o.status_reason.as_deref()), (OrderStatus::Failed, Some("checkout_abandoned")));
        assert_eq!(h.stock(&sku).await, (10, 10), "the dead checkouts' 6 units are back");
        assert_eq!(h.intents(&dead)[0]["status"], "canceled");
        assert_eq!(h.intents(&orphan)[0]["status"], "canceled", "the hold the order never recorded was found and voided");
        let o = h.stack.deps.orders.get(&orphan).await.unwrap().unwrap();
        assert!(o.timeline.iter().any(|t| t.event == "orphan_hold_voided"), "{:?}", o.timeline);

        // Again, and a late step of the dead checkout: nothing more happens.
        let again = sweep(h).await;
        assert!(!again["closed"].as_array().unwrap().iter().any(|c| c == dead.as_str()), "{again}");
        // (refused: the released reservation stays released, and the order is decided)
        match h.stack.edge.invoke("reserve_stock", json!({"orderId": dead})).await {
            Ok(late) => assert_eq!(late["alreadyDecided"], true, "{late}"),
            Err((kind, _)) => assert_eq!(kind, "InvalidState"),
        }
        assert_eq!(h.stock(&sku).await, (10, 10), "nothing reserved again");
        h.settle().await;
        assert_eq!(h.stack.gateway.cancel_count(&hold), 1, "voided once");
        assert_eq!(h.stack.gateway.cancel_count(&orphan_hold), 1, "the orphan voided once");
        let listed: Vec<_> = h.gateway_requests(&orphan).into_iter().filter(|r| r.path.ends_with("/cancel")).collect();
        assert!(listed.iter().all(|r| r.idempotency_key.as_deref() == Some(format!("{orphan}:void-orphan:{orphan_hold}").as_str())), "{listed:?}");
        let voids: Vec<_> = h.gateway_requests(&dead).into_iter().filter(|r| r.path.ends_with("/cancel") && !r.replayed).collect();
        assert_eq!(voids.len(), 1, "{voids:?}");
        let mails = h.stack.edge.emails_for(&dead);
        assert_eq!(mails.len(), 1, "one email: {mails:?}");
        assert!(mails[0].text.contains("could not complete") && mails[0].text.contains("Nothing has been charged"), "{}", mails[0].text);
        for id in [&dead, &died] {
            let o = h.stack.deps.orders.get(id).await.unwrap().unwrap();
            for once in ["abandoned", "stock_released", "payment_voided", "abandoned_closed"] {
                assert_eq!(o.timeline.iter().filter(|t| t.event == once).count(), 1, "{id} {once}: {:?}", o.timeline);
            }
            assert_eq!(h.stack.edge.emails_for(id).len(), 1, "{id}: one email");
            assert_eq!(h.gateway_requests(id).into_iter().filter(|r| r.path.ends_with("/cancel") && !r.replayed).count(), 1, "{id}: voided once");
        }
        // The live one is still PENDING with its stock.
        assert_eq!(h.stack.deps.orders.get(&live).await.unwrap().unwrap().status, OrderStatus::Pending);
    });
}
