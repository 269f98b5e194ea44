//! After the sale: cancellations (CAN-1, CAN-2, OPS-1) through the real lifecycle workflow, the
//! production gateway client against the sandbox and the sandbox warehouses answering.

use orderflow_e2e::*;
use orderflow_local::sandbox_warehouse::PickMessage;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn cancel_as_customer(h: &Harness, id: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}/orders/{id}/cancel", h.api())).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn cancel_as_operator(h: &Harness, id: &str, reason: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/ops/orders/{id}/cancel", h.api()))
        .bearer_auth(&h.stack.ops_token)
        .json(&json!({"reason": reason}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn pick(h: &Harness, id: &str) -> PickMessage {
    h.stack.warehouses.next_pick_list(id, None, WAIT).await.unwrap_or_else(|| panic!("no pick list for {id}"))
}

/// Gateway POSTs of the order to `suffix` (e.g. "/cancel"), as they crossed the wire.
fn posts(h: &Harness, id: &str, suffix: &str) -> Vec<orderflow_local::sandbox_gateway::GatewayRequest> {
    h.gateway_requests(id).into_iter().filter(|q| q.path.ends_with(suffix)).collect()
}

/// Emails of an order once the system has settled: wait for `n`, then hold the settle window so
/// a late duplicate would show.
async fn emails_settled(h: &Harness, id: &str, n: usize) -> Vec<orderflow_local::edge::SentEmail> {
    wait_for_emails(&h.stack, id, n, WAIT).await;
    h.settle().await;
    h.stack.edge.emails_for(id)
}

#[test]
fn can_1_a_cancel_under_review_voids_once_releases_once_and_emails_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let placed = h.place(&order_body(&h.email("can1"), &[(&sku, 2)], "pm_card_riskLevelElevated")).await;
        assert_eq!(placed.body["status"], "UNDER_REVIEW", "{}", placed.body);
        let id = placed.order_id();
        // the review task must be waiting before a cancel can be handed to it
        let _ = wait_for_review_token(h, &id).await;
        // someone else's token: 404, as GET
        assert_eq!(cancel_as_customer(h, &id, "not-the-token").await.0, 404);
        // the customer and an operator cancel at once: one takes effect, the other is 409 (OPS-1)
        let token = placed.token();
        let (a, b) = tokio::join!(cancel_as_customer(h, &id, &token), cancel_as_operator(h, &id, "customer called"));
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
        let refused = if a.0 == 409 { &a.1 } else { &b.1 };
        assert_eq!(refused["error"]["code"], "cancel_already_requested");
        // a review decision after the cancel is refused too, and the timeline shows one decision
        let (st, body) = review(&reqwest::Client::new(), &h.stack, &id, "approve").await;
        assert_eq!((st, body["error"]["code"].as_str()), (409, Some("review_already_decided")), "{body}");
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "CANCELLED", WAIT).await;
        assert_eq!(view["status"], "CANCELLED", "{view}");
        assert!(!view.to_string().contains("customer called"), "operators' words never reach the customer: {view}");
        assert_eq!(h.stock(&sku).await, (10, 0), "stock released once");
        let cancels = posts(h, &id, "/cancel");
        assert_eq!(cancels.len(), 1, "one void on the wire: {cancels:?}");
        assert_eq!(cancels[0].idempotency_key.as_deref(), Some(format!("{id}:void").as_str()));
        assert!(posts(h, &id, "/capture").is_empty(), "nothing captured");
        let emails = emails_settled(h, &id, 1).await;
        assert_eq!(emails.len(), 1, "{emails:?}");
        assert!(emails[0].subject.contains("cancelled"), "{}", emails[0].subject);
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert!(order.review_decision.is_none());
        assert_eq!(order.timeline.iter().filter(|t| t.event == "cancel_requested").count(), 1);
        let end = h.stack.execution_end(orderflow_local::provision::LIFECYCLE_MACHINE, &id, std::time::Duration::from_secs(60)).await;
        assert_eq!(end.as_deref(), Some("SUCCEEDED"));
    });
}

async fn wait_for_review_token(h: &Harness, id: &str) -> String {
    for _ in 0..200 {
        if let Some(t) = h.stack.deps.orders.get(id).await.unwrap().and_then(|o| o.review_task_token) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id}: the review task never waited");
}

#[test]
fn can_2_a_cancel_after_dispatch_is_asked_of_the_warehouse_which_cancels() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 10).await;
        let placed = h.place(&order_body(&h.email("can2"), &[(&sku, 3)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let list = pick(h, &id).await;
        let (st, body) = cancel_as_operator(h, &id, "fraud team: stolen card suspected").await;
        assert_eq!((st, body["cancel"].as_str()), (202, Some("requested")), "{body}");
        assert_eq!(body["waiting_for"], json!(["wh-east"]));
        let request = h.stack.warehouses.next_cancel_request(&id, WAIT).await.expect("the warehouse is asked");
        assert_eq!(request["dispatchId"], list.dispatch_id());
        // until it answers nothing changes: the order is still confirmed, the hold still held
        assert_eq!(h.stack.deps.orders.get(&id).await.unwrap().unwrap().status.as_str(), "CONFIRMED");
        let (st, body) = h.stack.warehouses.answer_cancel(&list, "cancelled").await;
        assert_eq!(st, 202, "{body}");
        // answering twice is a replay, not a second cancel
        let (st, _) = h.stack.warehouses.answer_cancel(&list, "cancelled").await;
        assert_eq!(st, 202);
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "CANCELLED", WAIT).await;
        assert_eq!(view["status"], "CANCELLED", "{view}");
        assert!(!view.to_string().contains("stolen card"), "{view}");
        assert_eq!(h.stock(&sku).await, (10, 0));
        assert!(posts(h, &id, "/capture").is_empty(), "nothing shipped, nothing captured");
        assert_eq!(posts(h, &id, "/cancel").iter().filter(|q| !q.replayed).count(), 1, "the hold let go once");
        assert_eq!(h.intents(&id)[0]["status"], "canceled");
        // the confirmation, then exactly one cancel email
        let emails = emails_settled(h, &id, 2).await;
        assert_eq!(emails.len(), 2, "{emails:?}");
        assert!(emails[1].text.contains("cancelled by the store"), "{}", emails[1].text);
        // a shipment report against the cancelled pick list is refused: nothing ships uncharged
        let (st, _) = h.stack.warehouses.send_report(&list, &list.report("LATE", &list.lines())).await;
        assert!(st == 409, "{st}");
        assert_eq!(cancel_as_customer(h, &id, &placed.token()).await.1["error"]["code"], "cancel_already_requested");
    });
}

#[test]
fn can_2_after_a_partial_shipment_the_rest_is_cancelled_and_only_what_shipped_is_charged() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1000, 10).await;
        let placed = h.place(&order_body(&h.email("can2p"), &[(&sku, 3)], "pm_card_visa")).await;
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let first = pick(h, &id).await;
        let (st, body) = h.stack.warehouses.send_report(&first, &first.report("P1", &[(sku.clone(), 1)])).await;
        assert_eq!(st, 202, "{body}");
        // the rest comes back as a new pick list; the customer cancels, the warehouse cancels it
        let rest = pick(h, &id).await;
        assert_eq!(rest.lines(), vec![(sku.clone(), 2)]);
        let (st, body) = cancel_as_customer(h, &id, &placed.token()).await;
        assert_eq!(st, 202, "{body}");
        h.stack.warehouses.next_cancel_request(&id, WAIT).await.expect("asked");
        assert_eq!(h.stack.warehouses.answer_cancel(&rest, "cancelled").await.0, 202);
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "PARTIALLY_FULFILLED", WAIT).await;
        assert_eq!(view["status"], "PARTIALLY_FULFILLED", "{view}");
        // one unit's share of the order charged, never more; the other two back on the shelf
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        let captured = order.payment.as_ref().unwrap().captured_minor;
        assert!(captured > 0 && captured < total && (captured - total / 3).abs() <= 1, "captured {captured} of {total}");
        assert_eq!(h.stock(&sku).await, (9, 0), "the shipped unit is gone, the two cancelled are back");
        let emails = emails_settled(h, &id, 3).await;
        let last = emails.iter().find(|e| e.subject.contains("cancelled")).expect("a cancel email");
        assert!(last.text.contains("1 x") && last.text.contains("2 x"), "says what shipped and what was cancelled: {}", last.text);
        assert_eq!(emails.iter().filter(|e| e.subject.contains("cancelled")).count(), 1, "{emails:?}");
    });
}

#[test]
fn can_2_a_warehouse_that_is_too_late_ships_and_the_parcel_is_charged() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1200, 5).await;
        let placed = h.place(&order_body(&h.email("can2late"), &[(&sku, 2)], "pm_card_visa")).await;
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let list = pick(h, &id).await;
        assert_eq!(cancel_as_customer(h, &id, &placed.token()).await.0, 202);
        h.stack.warehouses.next_cancel_request(&id, WAIT).await.expect("asked");
        assert_eq!(h.stack.warehouses.answer_cancel(&list, "too_late").await.0, 200);
        let (st, body) = h.stack.warehouses.send_report(&list, &list.report("GONE", &list.lines())).await;
        assert_eq!(st, 202, "{body}");
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "SHIPPED", WAIT).await;
        assert_eq!(view["status"], "SHIPPED", "{view}");
        let mut order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        for _ in 0..100 {
            if order.payment.as_ref().is_some_and(|p| p.captured_minor == total) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        }
        assert_eq!(order.payment.as_ref().unwrap().captured_minor, total, "goods that shipped are charged");
        assert!(order.timeline.iter().any(|t| t.event == "cancel_too_late"));
        assert_eq!(h.stock(&sku).await, (3, 0));
    });
}

async fn refund_as_operator(h: &Harness, id: &str, key: &str, body: Value) -> (u16, Value, bool) {
    let r = reqwest::Client::new()
        .post(format!("{}/ops/orders/{id}/refunds", h.api()))
        .bearer_auth(&h.stack.ops_token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().contains_key("idempotent-replayed");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null), replayed)
}

/// An order of 2 units, shipped in one parcel and captured in full; (order id, access token, total).
async fn shipped(h: &Harness, tag: &str) -> (String, String, i64) {
    shipped_with(h, tag, "pm_card_visa").await
}

async fn shipped_with(h: &Harness, tag: &str, payment_method: &str) -> (String, String, i64) {
    let sku = h.new_sku(2500, 5).await;
    let placed = h.place(&order_body(&h.email(tag), &[(&sku, 2)], payment_method)).await;
    let id = placed.order_id();
    let total = placed.body["totals"]["total"].as_i64().unwrap();
    let list = pick(h, &id).await;
    let (st, body) = h.stack.warehouses.send_report(&list, &list.report("R1", &list.lines())).await;
    assert_eq!(st, 202, "{body}");
    for _ in 0..300 {
        let o = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        if o.payment.as_ref().is_some_and(|p| p.captured_minor == total) {
            return (id, placed.token(), total);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id}: never captured");
}

#[test]
fn ret_4_a_double_clicked_refund_is_one_refund_at_the_gateway_and_one_email() {
    let h = harness();
    h.run(async {
        let (id, token, total) = shipped(h, "refund1").await;
        let sku = h.stack.deps.orders.get(&id).await.unwrap().unwrap().lines[0].sku.clone();
        let body = json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "requested_by_customer", "note": "mug arrived chipped, goodwill"});
        let key = format!("refund-{id}");
        let (a, b) = tokio::join!(refund_as_operator(h, &id, &key, body.clone()), refund_as_operator(h, &id, &key, body.clone()));
        assert_eq!((a.0, b.0), (202, 202), "{a:?} {b:?}");
        assert_eq!(a.1["refund_id"], b.1["refund_id"]);
        let amount = a.1["amount_minor"].as_i64().unwrap();
        assert_eq!(amount, total / 2, "one of two identical units: half of what was charged");
        // the same key with another refund is refused
        let other = refund_as_operator(h, &id, &key, json!({"amount_minor": 100, "reason": "duplicate"})).await;
        assert_eq!((other.0, other.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
        // the customer sees the refund's amount and state, never the note
        let mut view = Value::Null;
        for _ in 0..200 {
            view = get_order(&reqwest::Client::new(), h.api(), &id, &token).await.1;
            if view["refunds"][0]["status"] == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!((view["refunds"][0]["amount"].as_i64(), view["refunds"][0]["status"].as_str()), (Some(amount), Some("succeeded")), "{view}");
        assert!(!view.to_string().contains("chipped"), "{view}");
        // on the wire: one refund, with the order and refund in its key, the note only in metadata
        let refunds: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path == "/v1/refunds").collect();
        assert_eq!(refunds.iter().filter(|q| !q.replayed).count(), 1, "{refunds:?}");
        let rid = a.1["refund_id"].as_str().unwrap();
        assert!(refunds.iter().all(|q| q.idempotency_key.as_deref() == Some(format!("{id}:refund:{rid}").as_str())), "{refunds:?}");
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(amount));
        let emails = emails_settled(h, &id, 3).await;
        assert_eq!(emails.iter().filter(|e| e.subject.starts_with("Refund")).count(), 1, "{emails:?}");
        // the same unit again: refused, it was refunded already
        let again = refund_as_operator(h, &id, "another-key", json!({"lines": [{"sku": sku, "quantity": 2}], "reason": "requested_by_customer"})).await;
        assert_eq!((again.0, again.1["error"]["code"].as_str()), (409, Some("refund_exceeds_units")), "{:?}", again.1);
    });
}

/// Stripe's `pm_card_refundFail`: the refund is created `succeeded`, then fails; the gateway sends
/// refund.created, charge.refunded, refund.updated and refund.failed, each on its own, in any order.
#[test]
fn a_refund_that_fails_at_the_gateway_is_given_back_once_and_alarmed() {
    let h = harness();
    h.run(async {
        let (id, token, total) = shipped_with(h, "refundfail", orderflow_local::sandbox_gateway::PM_REFUND_FAILS).await;
        let sku = h.stack.deps.orders.get(&id).await.unwrap().unwrap().lines[0].sku.clone();
        let one_unit = json!({"lines": [{"sku": sku, "quantity": 1}], "reason": "requested_by_customer", "note": "card closed? call them"});
        let (st, first, _) = refund_as_operator(h, &id, "fails", one_unit.clone()).await;
        assert_eq!(st, 202, "{first}");
        let rid = first["refund_id"].as_str().unwrap().to_string();
        for _ in 0..200 {
            if h.stack.deps.orders.get(&id).await.unwrap().unwrap().refunds[&rid].status == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let every event of the refund arrive (they come in any order), then look.
        h.settle().await;
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.refunds[&rid].status, "failed", "a late refund.created (succeeded) does not undo the failure: {:?}", order.refunds);
        assert!(order.refunds[&rid].gateway_refund_id.as_deref().is_some_and(|g| g.starts_with("re_")));
        assert_eq!((order.refunded_minor, order.refunded_units.get(&sku).copied()), (0, Some(0)), "given back once, not twice (two failed events)");
        let failed: Vec<_> = order.timeline.iter().filter(|e| e.event == "refund_failed").collect();
        assert_eq!(failed.len(), 1, "{:?}", order.timeline);
        assert!(failed[0].detail.as_deref().unwrap_or("").contains("expired_or_canceled_card"), "{failed:?}");
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(0), "the gateway gave the amount back to the charge");
        // the customer sees the refund as failed, never the operator's note
        let view = get_order(&reqwest::Client::new(), h.api(), &id, &token).await.1;
        assert_eq!(view["refunds"][0]["status"], "failed", "{view}");
        assert!(!view.to_string().contains("call them"), "{view}");
        // operators are told: the line the RefundsFailedAlarm's filter counts, with the order's id
        let log = std::fs::read_to_string(orderflow_local::Options::default().repo.join("target/local/e2e/functions.log")).unwrap();
        let alarmed = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "refund failed" && v.to_string().contains(&id))
            .count();
        assert_eq!(alarmed, 1, "one `refund failed` line for the order");
        // the unit can be refunded again (a new request, a new key)
        let (st, again, _) = refund_as_operator(h, &id, "retry", one_unit).await;
        assert_eq!(st, 202, "{again}");
        assert_eq!(again["amount_minor"].as_i64(), Some(total / 2));
    });
}

#[test]
fn pay_4_two_refunds_at_once_never_sum_past_what_was_captured() {
    let h = harness();
    h.run(async {
        let (id, _, total) = shipped(h, "refund2").await;
        let body = |n: i64| json!({"amount_minor": total - 100 * n, "reason": "requested_by_customer"});
        let (a, b) = tokio::join!(refund_as_operator(h, &id, "first", body(1)), refund_as_operator(h, &id, "second", body(2)));
        let mut st = [a.0, b.0];
        st.sort();
        assert_eq!(st, [202, 409], "{a:?} {b:?}");
        let refused = if a.0 == 409 { &a.1 } else { &b.1 };
        assert_eq!(refused["error"]["code"], "refund_exceeds_captured");
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.refunds.len(), 1);
        assert!(order.refunded_minor <= total);
        // what is left can still be refunded, and nothing more
        let left = total - order.refunded_minor;
        assert_eq!(refund_as_operator(h, &id, "rest", json!({"amount_minor": left + 1, "reason": "requested_by_customer"})).await.0, 409);
        assert_eq!(refund_as_operator(h, &id, "rest", json!({"amount_minor": left, "reason": "requested_by_customer"})).await.0, 202);
        for _ in 0..200 {
            if h.intents(&id)[0]["amount_refunded"].as_i64() == Some(total) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(total), "refunded exactly what was captured");
    });
}

#[test]
fn ops_1_six_reviewers_deciding_at_once_make_one_decision() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let placed = h.place(&order_body(&h.email("ops1"), &[(&sku, 1)], "pm_card_riskLevelElevated")).await;
        assert_eq!(placed.body["status"], "UNDER_REVIEW", "{}", placed.body);
        let id = placed.order_id();
        let _ = wait_for_review_token(h, &id).await;
        let http = reqwest::Client::new();
        let decide = |decision: &'static str| {
            let http = http.clone();
            let id = id.clone();
            async move {
                let r = http
                    .post(format!("{}/ops/orders/{id}/review", h.api()))
                    .bearer_auth(&h.stack.ops_token)
                    .json(&json!({"decision": decision}))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let answers = futures::future::join_all(["approve", "reject", "approve", "reject", "approve", "reject"].map(decide)).await;
        let won: Vec<_> = answers.iter().filter(|(st, _)| *st == 202).collect();
        assert_eq!(won.len(), 1, "{answers:?}");
        assert!(answers.iter().filter(|(st, _)| *st != 202).all(|(st, b)| *st == 409 && b["error"]["code"] == "review_already_decided"), "{answers:?}");
        let want = if won[0].1["decision"] == "approve" { "CONFIRMED" } else { "REJECTED" };
        let view = wait_for_status(&http, h.api(), &id, &placed.token(), want, WAIT).await;
        assert_eq!(view["status"], want);
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.timeline.iter().filter(|t| t.event == "review_decided").count(), 1, "the timeline shows one decision");
    });
}
