//! Fulfillment, as warehouses, the carrier, the gateway and the customer meet it: routing, pick lists
//! with task tokens, shipment reports, labels, per-parcel captures, tracking webhooks, the hold
//! guard, a warehouse that never answers, replenishment.

use orderflow_e2e::*;
use orderflow_local::sandbox_warehouse::PickMessage;
use orderflow_shared::domain::order::Order;
use orderflow_shared::webhooks::{sign_carrier, sign_stripe};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

async fn order(h: &Harness, id: &str) -> Order {
    h.stack.deps.orders.get(id).await.unwrap().unwrap()
}

async fn pick(h: &Harness, id: &str, wh: Option<&str>) -> PickMessage {
    h.stack.warehouses.next_pick_list(id, wh, WAIT).await.unwrap_or_else(|| panic!("no pick list for {id} from {wh:?}"))
}

/// Report `lines` of a pick list as one parcel; expects 202.
async fn ship(h: &Harness, msg: &PickMessage, parcel: &str, lines: &[(String, i64)]) {
    let (st, body) = h.stack.warehouses.send_report(msg, &msg.report(parcel, lines)).await;
    assert_eq!(st, 202, "{body}");
}

/// Wait until the order satisfies `f` (order record as stored).
async fn until(h: &Harness, id: &str, what: &str, f: impl Fn(&Order) -> bool) -> Order {
    h.until(id, what, f).await
}

/// Wait until the order as its views show it (its tracking and email logs merged) satisfies `f`.
async fn until_viewed(h: &Harness, id: &str, what: &str, f: impl Fn(&Order) -> bool) -> Order {
    let started = std::time::Instant::now();
    loop {
        let o = h.stack.deps.orders.get_for_view(id).await.unwrap().unwrap();
        if f(&o) {
            return o;
        }
        assert!(started.elapsed() < WAIT, "{id}: timed out waiting for {what}; status {:?}", o.status);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn tracking_codes(o: &Order) -> Vec<String> {
    o.shipments.values().filter_map(|s| s.tracking_code.clone()).collect()
}

/// How the order's end went: its settle run (Express) succeeded, or failed so its alarm fires (the
/// order's end is recorded inside the run, a moment before it stops).
async fn settle_end(h: &Harness, id: &str) -> String {
    h.stack.order_runs_end(orderflow_local::provision::SETTLE_MACHINE, id, Duration::from_secs(60)).await
}

/// INV-2: available + reserved + shipped == received, per SKU.
async fn conserved(h: &Harness, sku: &str) {
    let l = h.stack.deps.stock.level(sku).await.unwrap().unwrap();
    assert_eq!(l.available + l.reserved + l.shipped, l.received, "{sku}: {l:?}");
    assert!(l.available >= 0 && l.reserved >= 0);
}

#[test]
fn an_order_goes_from_post_to_delivered_and_captures_exactly_what_shipped() {
    let h = harness();
    h.run(async {
        // given a product in stock at the east warehouse
        let sku = h.new_sku(1999, 10).await;
        let placed = h.place(&order_body(&h.email("deliver"), &[(&sku, 2)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();

        // the nearest warehouse with everything gets one pick list; nothing is captured yet (PAY-1)
        let msg = pick(h, &id, None).await;
        assert_eq!(msg.warehouse(), "wh-east");
        assert_eq!(msg.lines(), vec![(sku.clone(), 2)]);
        let intent = h.intents(&id)[0].clone();
        let pi = intent["id"].as_str().unwrap().to_string();
        assert_eq!(h.stack.gateway.capture_count(&pi), 0, "PAY-1: nothing captured before the warehouse ships");

        // when it ships everything in one parcel
        ship(h, &msg, "P1", &msg.lines()).await;
        let o = until(h, &id, "capture", |o| o.payment.as_ref().is_some_and(|p| p.captured_minor > 0)).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, total, "captured = shipped = whole order");
        let pi_now = h.intents(&id)[0].clone();
        assert_eq!(pi_now["amount_received"].as_i64().unwrap(), total);
        assert_eq!(pi_now["status"], "succeeded");
        assert_eq!(h.stack.gateway.capture_count(&pi), 1);
        assert_eq!(h.stack.carrier.labels_for(&format!("{id}/P1")), Some(1), "one label for the parcel");

        // PAY-2: replaying capture and label 5 times changes nothing
        for _ in 0..5 {
            h.stack.edge.invoke("capture_payment", json!({"orderId": id, "shipment": {"shipmentId": "P1"}})).await.unwrap();
            h.stack.edge.invoke("buy_label", json!({"orderId": id, "shipment": {"shipmentId": "P1"}})).await.unwrap();
        }
        assert_eq!(h.stack.gateway.capture_count(&pi), 1, "PAY-2: one capture");
        assert_eq!(h.stack.carrier.labels_for(&format!("{id}/P1")), Some(1), "one label");
        assert_eq!(order(h, &id).await.payment.unwrap().captured_minor, total);

        // the carrier walks the parcel to delivered
        let o = until(h, &id, "label", |o| !tracking_codes(o).is_empty()).await;
        let code = tracking_codes(&o)[0].clone();
        for st in ["pre_transit", "in_transit", "out_for_delivery", "delivered"] {
            assert_eq!(h.stack.carrier.advance(&code, st).await, 200);
        }
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "DELIVERED", WAIT).await;
        assert_eq!(view["status"], "DELIVERED");
        assert_eq!(view["charged"], total);
        assert_eq!(view["shipments"][0]["tracking_status"], "delivered");
        // confirmation, shipped (with the tracking link), out for delivery, delivered, feedback
        let mails = wait_for_emails(&h.stack, &id, 5, WAIT).await;
        let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(mails.len(), 5, "{subjects:?}");
        assert!(mails.iter().any(|m| m.subject.contains("has shipped") && m.text.contains(&code) && m.text.contains("track.")), "{subjects:?}");
        assert!(
            subjects.iter().any(|s| s.contains("out for delivery"))
                && subjects.iter().any(|s| s.contains("was delivered"))
                && subjects.iter().any(|s| s.starts_with("How was"))
        );
        // the work between waits ran once each, in Express runs (#11: not billed per state): the
        // fulfilment (routing) and the parcel; the parcel's end settled the fully captured order
        // (no settle run)
        let r = h.stack.report(&id).await;
        let runs = |m: &str| r.child_runs.get(m).copied().unwrap_or(0);
        use orderflow_local::provision::{DISPATCH_MACHINE, FULFILLMENT_MACHINE, LIFECYCLE_MACHINE, PARCEL_MACHINE, SETTLE_MACHINE};
        assert_eq!((runs(FULFILLMENT_MACHINE), runs(PARCEL_MACHINE), runs(SETTLE_MACHINE)), (1, 1, 0), "{:?}", r.child_runs);
        assert_eq!(order(h, &id).await.payment.unwrap().settled.as_deref(), Some("fully captured (fulfilled)"));
        let fulfil = &r.states[FULFILLMENT_MACHINE];
        assert_eq!(fulfil, &["RouteShipments", "AnythingToDispatch", "StartDispatches", "StartDispatch"], "{fulfil:?}");
        let parcel = &r.states[PARCEL_MACHINE];
        // started by partner_api for the warehouse's report: it ends the wait first
        let steps = [
            "AnswerFromPartnerApi",
            "EndWait",
            "ReportOrCancel",
            "ShipStock",
            "BuyLabel",
            "CapturePayment",
            "NotifyShipped",
            "MoreToShip",
            "Shipped",
            "EndDispatch",
            "AllEnded",
            "SettledWithTheEnd",
        ];
        assert_eq!(parcel, &steps, "{parcel:?}");
        assert!(!r.states.contains_key(SETTLE_MACHINE), "{:?}", r.states);
        // what Standard bills for a delivered one-parcel order: the one wait for the warehouse
        // (named by the dispatch and its open units), answered; its parcel run was started by
        // partner_api (stop 24: it was a second state, RunParcel); no lifecycle
        assert_eq!(r.states[DISPATCH_MACHINE], ["AwaitShipment"], "{:?}", r.states);
        assert!(!r.states.contains_key(LIFECYCLE_MACHINE), "{:?}", r.states);
        assert_eq!(h.stack.order_runs(DISPATCH_MACHINE, &id).await, ["SUCCEEDED"]);
        assert_eq!(r.transitions - r.states[orderflow_local::provision::CHECKOUT_MACHINE].len(), 1);
        // the gateway's own event about the capture reconciled the order's payment
        let o = until(h, &id, "gateway reconciliation", |o| o.payment.as_ref().is_some_and(|p| p.gateway_received_minor == Some(total))).await;
        assert_eq!(o.payment.unwrap().gateway_status.as_deref(), Some("succeeded"));
        // INV-2 after reserve and ship
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!((l.available, l.reserved, l.shipped), (8, 0, 2));
        conserved(h, &sku).await;
    });
}

#[test]
fn an_order_no_single_warehouse_can_ship_is_split_in_two() {
    let h = harness();
    h.run(async {
        let east_only = h.new_sku(1000, 5).await;
        let west_only = h.new_sku(3000, 0).await;
        h.stack.deps.stock.receive(&west_only, "wh-west", 5, &format!("seed:{west_only}:west")).await.unwrap();
        let placed = h.place(&order_body(&h.email("split"), &[(&east_only, 1), (&west_only, 2)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let east = pick(h, &id, Some("wh-east")).await;
        let west = pick(h, &id, Some("wh-west")).await;
        assert_eq!(east.lines(), vec![(east_only.clone(), 1)]);
        assert_eq!(west.lines(), vec![(west_only.clone(), 2)]);
        let o = order(h, &id).await;
        assert_eq!(o.dispatches.len(), 2);
        // a warehouse cannot answer another's pick list
        let mut foreign = west.report("X1", &west.lines());
        foreign["dispatchId"] = json!(east.dispatch_id());
        let (st, body) = h.stack.warehouses.send_as("wh-west", "/warehouse/shipments", &foreign).await;
        assert_eq!((st, body["error"]["code"].as_str()), (404, Some("dispatch_not_found")));

        ship(h, &west, "W1", &west.lines()).await;
        ship(h, &east, "E1", &east.lines()).await;
        let o = until(h, &id, "both captures", |o| o.shipments.values().all(|s| s.captured.is_some()) && o.shipments.len() == 2).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, total, "two captures add up to the total");
        assert_eq!(o.status.as_str(), "SHIPPED");
        let pi = &h.intents(&id)[0];
        assert_eq!(pi["amount_received"].as_i64().unwrap(), total);
        let done = until(h, &id, "settled", |o| o.payment.as_ref().is_some_and(|p| p.settled.is_some())).await;
        assert!(done.payment.unwrap().settled.unwrap().contains("fully captured"));
        for sku in [&east_only, &west_only] {
            conserved(h, sku).await;
        }
    });
}

#[test]
fn a_partial_shipment_captures_only_the_shipped_lines() {
    let h = harness();
    h.run(async {
        // PAY-3: two SKUs; the first parcel carries one of them
        let a = h.new_sku(5000, 5).await;
        let b = h.new_sku(1000, 5).await;
        let placed = h.place(&order_body(&h.email("partial"), &[(&a, 1), (&b, 3)], "pm_card_visa")).await;
        let id = placed.order_id();
        let t = &placed.body["totals"];
        let (sub, total) = (t["subtotal"].as_i64().unwrap(), t["total"].as_i64().unwrap());
        let msg = pick(h, &id, None).await;
        ship(h, &msg, "PA", &[(a.clone(), 1)]).await;
        let o = until(h, &id, "first capture", |o| o.payment.as_ref().is_some_and(|p| p.captured_minor > 0)).await;
        let first = o.payment.as_ref().unwrap().captured_minor;
        // 5000 of the 8000 subtotal: its share of shipping and tax, never the whole hold
        let expected = total * 5000 / sub;
        assert!((first - expected).abs() <= 1, "captured {first}, expected about {expected} of {total}");
        assert_eq!(o.status.as_str(), "PARTIALLY_SHIPPED");
        assert_eq!(h.intents(&id)[0]["status"], "requires_capture", "the rest stays held");
        // the rest comes as a new pick list with only what is open; over-reporting is refused
        let rest = pick(h, &id, None).await;
        assert_eq!(rest.lines(), vec![(b.clone(), 3)]);
        let (st, body) = h.stack.warehouses.send_report(&rest, &rest.report("PB", &[(b.clone(), 4)])).await;
        assert_eq!((st, body["error"]["code"].as_str()), (422, Some("quantity_exceeds_open")));
        // the old token is spent
        let (st, _) = h.stack.warehouses.send_report(&msg, &msg.report("PX", &[(b.clone(), 1)])).await;
        assert_eq!(st, 409);
        ship(h, &rest, "PB", &rest.lines()).await;
        let o = until(h, &id, "second capture", |o| o.shipments.get("PB").is_some_and(|s| s.captured.is_some())).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, total, "never more than authorized, all of it in the end");
        assert_eq!(o.status.as_str(), "SHIPPED");
        assert_eq!(h.stack.gateway.capture_count(h.intents(&id)[0]["id"].as_str().unwrap()), 2);
        // a replayed report of the same parcel is a replay
        let (st, _) = h.stack.warehouses.send_report(&rest, &rest.report("PB", &rest.lines())).await;
        assert_eq!(st, 200);
    });
}

#[test]
fn carrier_events_only_move_forward_and_duplicates_change_nothing() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2500, 5).await;
        let placed = h.place(&order_body(&h.email("tracking"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = placed.order_id();
        let msg = pick(h, &id, None).await;
        ship(h, &msg, "T1", &msg.lines()).await;
        let o = until(h, &id, "label", |o| !tracking_codes(o).is_empty()).await;
        let code = tracking_codes(&o)[0].clone();
        let carrier = &h.stack.carrier;

        // WH-2: one in_transit event delivered 10 times concurrently, then 10 times in sequence -> one
        // state change
        let ev = carrier.event(&code, "in_transit", &chrono::Utc::now().to_rfc3339());
        let codes = carrier.deliver_duplicates(&ev, 10).await;
        // One is taken in; one arriving while it is in flight is told to retry (409), later ones
        // are acknowledged as duplicates (#10.8).
        assert!(codes.iter().all(|c| *c == 200 || *c == 409) && codes.contains(&200), "{codes:?}");
        // ... and 10 more times one after the other
        for _ in 0..10 {
            assert_eq!(carrier.deliver(&ev).await, 200);
        }
        let o = until_viewed(h, &id, "in_transit", |o| o.shipments["T1"].tracking_status.as_deref() == Some("in_transit")).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let o2 = h.stack.deps.orders.get_for_view(&id).await.unwrap().unwrap();
        assert_eq!(o2.timeline.iter().filter(|e| e.event == "tracking_in_transit").count(), 1, "one state change");
        // #11: the scan is on the order's tracking log; the ~4 KB order item was not rewritten for it
        let item = order(h, &id).await;
        assert!(
            item.shipments["T1"].tracking_status.is_none() && !item.timeline.iter().any(|e| e.event == "tracking_in_transit"),
            "{:?}",
            item.shipments["T1"]
        );
        let tracking = |o: &Order| o.timeline.iter().filter(|e| e.event.starts_with("tracking_")).count();
        assert_eq!(tracking(&o), tracking(&o2), "no tracking event added by the duplicates");

        // a carrier exception is on the timeline and told to the customer
        assert_eq!(carrier.advance(&code, "failure").await, 200);
        until(h, &id, "exception", |o| o.shipments["T1"].tracking_status.as_deref() == Some("failure")).await;
        let mails = wait_for_emails(&h.stack, &id, 3, WAIT).await;
        assert!(mails.iter().any(|m| m.subject.contains("delivery problem")), "{:?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());

        // WH-3: delivered arrives, then a late in_transit (older timestamp) -> still delivered
        // (walk order: in_transit, out_for_delivery, delivered; delivered first, then the others)
        let codes = carrier.deliver_out_of_order(&code, &["in_transit", "out_for_delivery", "delivered"], &[2, 0, 1]).await;
        assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
        let view = wait_for_status(&reqwest::Client::new(), h.api(), &id, &placed.token(), "DELIVERED", WAIT).await;
        assert_eq!(view["status"], "DELIVERED");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let o = order(h, &id).await;
        assert_eq!(o.shipments["T1"].tracking_status.as_deref(), Some("delivered"), "never backwards");
        assert_eq!(o.status.as_str(), "DELIVERED");
    });
}

#[test]
fn webhook_signatures_are_checked_before_anything_is_written() {
    let h = harness();
    h.run(async {
        // WH-1 on the carrier endpoint
        let http = reqwest::Client::new();
        let url = format!("{}/webhooks/carrier", h.api());
        let ev = h.stack.carrier.event("EZ0000000000", "in_transit", "2026-01-01T00:00:00Z").to_string();
        let send = |sig: Option<String>, body: String| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let mut r = http.post(url).header("content-type", "application/json").body(body);
                if let Some(s) = sig {
                    r = r.header("X-Hmac-Signature", s);
                }
                let resp = r.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let secret = orderflow_local::sandbox_carrier::SANDBOX_CARRIER_WEBHOOK_SECRET;
        assert_eq!(send(Some(sign_carrier(ev.as_bytes(), "forged")), ev.clone()).await.0, 401);
        assert_eq!(send(Some("sha1=abc".into()), ev.clone()).await.0, 400);
        assert_eq!(send(None, ev.clone()).await.0, 400);
        let mut changed = ev.clone().into_bytes();
        changed[10] ^= 1;
        assert_eq!(send(Some(sign_carrier(ev.as_bytes(), secret)), String::from_utf8_lossy(&changed).to_string()).await.0, 401);
        let (st, body) = send(Some(sign_carrier(ev.as_bytes(), secret)), ev.clone()).await;
        assert_eq!(st, 200, "{body}");
        // nothing was recorded for the rejected ones: the valid delivery is the first the event
        // ledger saw (not a duplicate), and the next one is
        assert!(body.get("duplicate").is_none(), "forged deliveries must not record the event: {body}");
        assert_eq!(send(Some(sign_carrier(ev.as_bytes(), secret)), ev.clone()).await.1["duplicate"], true);
        // Every EasyPost event type comes to this one URL: a verified event we do not use is
        // acknowledged (a refusal would be retried for days), and nothing is queued for it.
        let batch = json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "Event", "description": "batch.updated", "result": {"object": "Batch"}}).to_string();
        let (st, body) = send(Some(sign_carrier(batch.as_bytes(), secret)), batch.clone()).await;
        assert_eq!((st, body["ignored"].as_str()), (200, Some("batch.updated")), "{body}");
        assert!(body.get("duplicate").is_none());

        // WH-1 on the gateway endpoint (Stripe-Signature with tolerance and two v1 signatures)
        let gw = format!("{}/webhooks/gateway", h.api());
        let gsecret = orderflow_local::sandbox_gateway::SANDBOX_WEBHOOK_SECRET;
        let body = json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "type": "payment_intent.amount_capturable_updated", "data": {"object": {"id": "pi_x", "metadata": {}}}}).to_string();
        let now = chrono::Utc::now().timestamp();
        let post = |sig: String, body: String| {
            let http = http.clone();
            let gw = gw.clone();
            async move { http.post(gw).header("Stripe-Signature", sig).body(body).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(post(sign_stripe(body.as_bytes(), gsecret, now - 301), body.clone()).await, 401, "too old");
        assert_eq!(post(sign_stripe(body.as_bytes(), gsecret, now + 301), body.clone()).await, 401, "from the future");
        assert_eq!(post(sign_stripe(body.as_bytes(), "whsec_wrong", now), body.clone()).await, 401);
        assert_eq!(post("v1=deadbeef".into(), body.clone()).await, 400);
        let good = sign_stripe(body.as_bytes(), gsecret, now);
        let v1 = good.split(",v1=").nth(1).unwrap();
        assert_eq!(post(format!("t={now},v1={},v1={v1}", "00".repeat(32)), body.clone()).await, 200, "two v1, one valid");
    });
}

#[test]
fn a_gateway_webhook_reconciles_a_hold_the_gateway_canceled() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let placed = h.place(&order_body(&h.email("gwcancel"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = placed.order_id();
        let mut pi = h.intents(&id)[0].clone();
        pi["status"] = json!("canceled");
        pi["cancellation_reason"] = json!("automatic");
        let body = json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "type": "payment_intent.canceled", "created": chrono::Utc::now().timestamp(), "data": {"object": pi}}).to_string();
        let sig = sign_stripe(body.as_bytes(), orderflow_local::sandbox_gateway::SANDBOX_WEBHOOK_SECRET, chrono::Utc::now().timestamp());
        for _ in 0..3 {
            let st = reqwest::Client::new().post(format!("{}/webhooks/gateway", h.api())).header("Stripe-Signature", &sig).body(body.clone()).send().await.unwrap().status().as_u16();
            assert_eq!(st, 200);
        }
        let o = until(h, &id, "reconciled", |o| o.payment.as_ref().is_some_and(|p| p.status == "canceled")).await;
        assert_eq!(o.payment.as_ref().unwrap().gateway_status.as_deref(), Some("canceled"));
        assert_eq!(o.timeline.iter().filter(|e| e.event == "payment_hold_canceled_by_gateway").count(), 1);
    });
}

#[test]
fn a_hold_near_expiry_is_settled_for_what_shipped_never_left_to_lapse() {
    let h = harness();
    h.run(async {
        // PAY-5: a card whose hold expires a day and 15 s from now; the guard's margin is a day
        let sku = h.new_sku(4000, 5).await;
        let placed = h.place(&order_body(&h.email("expiring"), &[(&sku, 2)], orderflow_local::sandbox_gateway::PM_HOLD_EXPIRES_SOON)).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let msg = pick(h, &id, None).await;
        ship(h, &msg, "H1", &[(sku.clone(), 1)]).await;
        // the warehouse never sends the second unit: the guard fires before the hold lapses
        let o = until(h, &id, "settled", |o| o.status.as_str() == "PARTIALLY_FULFILLED").await;
        let p = o.payment.as_ref().unwrap();
        assert!(p.captured_minor > 0 && p.captured_minor < total, "captured {} of {total}", p.captured_minor);
        assert!(p.settled.as_deref().unwrap_or("").contains("payment_hold_expiring"), "{:?}", p.settled);
        let pi = &h.intents(&id)[0];
        assert_eq!(pi["amount_capturable"], 0, "nothing left held");
        assert_eq!(pi["amount_received"].as_i64().unwrap(), p.captured_minor);
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!((l.available, l.reserved, l.shipped), (4, 0, 1), "the unshipped unit is back");
        conserved(h, &sku).await;
        assert_eq!(o.status_reason.as_deref(), Some("payment_hold_expiring"));
        // The guard, not the warehouse timeout, ended the wait: the hold was let go within the
        // hold's tail after the parcel (15 s here), long before the stack's warehouse timeout (60 s).
        let at = |event: &str| {
            let e = o.timeline.iter().find(|e| e.event == event).unwrap_or_else(|| panic!("no {event} in {:?}", o.timeline));
            chrono::DateTime::parse_from_rfc3339(&e.at).unwrap()
        };
        let waited = (at("payment_hold_released") - at("shipment_reported")).num_seconds();
        let warehouse_timeout = orderflow_local::Options::default().warehouse_timeout_seconds as i64;
        assert!(
            waited < orderflow_local::sandbox_gateway::HOLD_TAIL_SECONDS + 20 && waited < warehouse_timeout / 2,
            "the hold was released {waited} s after the parcel: the wait was not capped by the hold guard"
        );
        let mails = wait_for_emails(&h.stack, &id, 3, WAIT).await;
        assert!(mails.iter().any(|m| m.subject.contains("could not be shipped")));
        assert_eq!(settle_end(h, &id).await, "FAILED", "alarmed: the execution fails");
    });
}

#[test]
fn an_order_a_warehouse_never_answers_ends_failed_with_everything_returned() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1200, 3).await;
        let placed = h.place(&order_body(&h.email("silent"), &[(&sku, 2)], "pm_card_visa")).await;
        let id = placed.order_id();
        let _ = pick(h, &id, None).await; // received, never answered
        let o = until(h, &id, "warehouse timeout", |o| o.status.as_str() == "FAILED").await;
        assert_eq!(o.status_reason.as_deref(), Some("warehouse_no_answer"));
        let pi = h.intents(&id)[0].clone();
        assert_eq!(pi["status"], "canceled");
        assert_eq!(h.stack.gateway.cancel_count(pi["id"].as_str().unwrap()), 1, "voided once");
        assert_eq!(h.stock(&sku).await, (3, 0), "0 reserved units");
        conserved(h, &sku).await;
        let mails = wait_for_emails(&h.stack, &id, 2, WAIT).await;
        assert!(mails.iter().any(|m| m.subject.contains("cancelled")));
        assert_eq!(settle_end(h, &id).await, "FAILED", "the failed-executions alarm sees it");
    });
}

#[test]
fn replenishment_sends_one_purchase_order_and_receiving_restocks() {
    let h = harness();
    h.run(async {
        // reorder point 5 at the east warehouse, 6 on hand
        let sku = h.new_sku(800, 6).await;
        h.stack.deps.stock.set_reorder(&sku, "wh-east", 5, 20).await.unwrap();
        let mut ids = vec![];
        for i in 0..2 {
            let placed = h.place(&order_body(&h.email(&format!("reorder{i}")), &[(&sku, 1)], "pm_card_visa")).await;
            assert_eq!(placed.status, 201);
            ids.push(placed.order_id());
        }
        for id in &ids {
            let msg = pick(h, id, None).await;
            ship(h, &msg, &format!("R-{}", &id[4..12]), &msg.lines()).await;
        }
        for id in &ids {
            until(h, id, "shipped", |o| o.status.as_str() == "SHIPPED").await;
        }
        // two orders crossed the point; one purchase order went out
        let url = &h.stack.queue_urls["SupplierQueue"];
        let mut pos: Vec<Value> = vec![];
        for _ in 0..5 {
            let got = h.stack.moto_sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
            for m in got.messages.unwrap_or_default() {
                let v: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
                if v["sku"] == sku.as_str() {
                    pos.push(v);
                } else {
                    // another scenario's: leave it
                    let _ = h
                        .stack
                        .moto_sqs
                        .change_message_visibility()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle.unwrap())
                        .visibility_timeout(0)
                        .send()
                        .await;
                }
            }
        }
        assert_eq!(pos.len(), 1, "{pos:?}");
        assert_eq!(pos[0]["warehouse"], "wh-east");
        assert_eq!(pos[0]["quantity"], 20);
        // receiving it restocks, once
        let receipt = json!({"purchaseOrderId": pos[0]["purchaseOrderId"], "warehouse": "wh-east", "sku": sku, "quantity": 20});
        let (st, _) = h.stack.warehouses.send_as("wh-west", "/warehouse/receipts", &receipt).await;
        assert_eq!(st, 404, "another warehouse cannot receive it");
        let (st, b) = h.stack.warehouses.send_as("wh-east", "/warehouse/receipts", &receipt).await;
        assert_eq!(st, 200, "{b}");
        let (st, _) = h.stack.warehouses.send_as("wh-east", "/warehouse/receipts", &receipt).await;
        assert_eq!(st, 200);
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!((l.available, l.shipped, l.received), (24, 2, 26));
        conserved(h, &sku).await;
        let (st, _) =
            reqwest::Client::new().post(format!("{}/warehouse/receipts", h.api())).json(&receipt).send().await.map(|r| (r.status().as_u16(), ())).unwrap();
        assert_eq!(st, 401);
    });
}

/// partner_api records a warehouse's parcel, checks that the pick list's wait is open (a heartbeat),
/// and starts the parcel run itself; the run's first state ends the wait, so an answered wait bills
/// one Standard state. Should the start fail after the record, the warehouse gets a 5xx: its retry
/// of the same report starts the run; and if no retry ever comes, the wait's own timeout finds the
/// recorded parcel and ships it (never a dispatch timed out with its goods gone).
#[test]
fn a_parcel_whose_run_did_not_start_ships_on_the_retry_or_at_the_waits_timeout() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2500, 4).await;
        let mut orders = vec![];
        for who in ["norun-retry", "norun-silent"] {
            let placed = h.place(&order_body(&h.email(who), &[(&sku, 1)], "pm_card_visa")).await;
            let id = placed.order_id();
            let msg = pick(h, &id, None).await;
            // every attempt of partner_api's start (the SDK's three) fails before taking effect
            for _ in 0..3 {
                h.stack.faults.aim("states", "StartExecution", &id, orderflow_local::faults::Kind::ServerError);
            }
            let report = msg.report("NR1", &msg.lines());
            let (st, body) = h.stack.warehouses.send_report(&msg, &report).await;
            assert!(st >= 500, "the warehouse is told to retry: {st} {body}");
            let o = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
            assert!(o.shipments.contains_key("NR1") && o.status.as_str() == "CONFIRMED", "the parcel is recorded, not yet shipped: {:?}", o.status);
            orders.push((id, msg, report));
        }
        // the first warehouse retries: the replay starts the run at once
        let (id, msg, report) = &orders[0];
        let (st, body) = h.stack.warehouses.send_report(msg, report).await;
        assert_eq!(st, 200, "{body}");
        let o = until(h, id, "shipped", |o| o.status.as_str() == "SHIPPED" && o.dispatch_ends.values().any(|e| e.outcome == "shipped")).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, o.totals.total.minor);
        // what crossed the wire: three starts refused (each attempt of the first report), one made
        // by partner_api on the replay
        let refused = h.stack.faults.injected.lock().unwrap().iter().filter(|i| i.service == "states" && i.order_id.as_deref() == Some(id.as_str())).count();
        let started = h.stack.edge.calls_for(id).iter().filter(|c| c.operation == "StartExecution" && c.caller.as_deref() == Some("partner_api")).count();
        assert_eq!((refused, started), (3, 1));
        // the second never retries: its wait times out, finds the recorded parcel and ships it
        let (id, _, _) = &orders[1];
        let o = until(h, id, "shipped after the wait's timeout", |o| o.status.as_str() == "SHIPPED" && !o.dispatch_ends.is_empty()).await;
        assert_eq!(o.dispatch_ends.values().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["shipped"], "not a timeout: the goods left");
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, o.totals.total.minor);
        for (id, _, _) in &orders {
            let pi = h.intents(id)[0]["id"].as_str().unwrap().to_string();
            assert_eq!(h.stack.gateway.capture_count(&pi), 1, "{id}: one capture");
        }
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!((l.available, l.reserved, l.shipped), (2, 0, 2));
        conserved(h, &sku).await;
    });
}

#[test]
fn a_report_that_comes_before_send_pick_list_has_returned_is_taken() {
    let h = harness();
    h.run(async {
        // send_pick_list has sent the pick list and its return is late (a slow Lambda): the wait is
        // open from its start on AWS, so a warehouse that answers at once is taken, not refused
        let sku = h.new_sku(1900, 3).await;
        h.stack.edge.hold_answer("send_pick_list", &sku, Duration::from_secs(6));
        let placed = h.place(&order_body(&h.email("fastwh"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = placed.order_id();
        let msg = pick(h, &id, None).await;
        ship(h, &msg, "F1", &msg.lines()).await;
        let returned = h.stack.edge.calls_for(&id).iter().any(|c| c.operation == "Invoke" && c.target.as_deref() == Some("send_pick_list"));
        assert!(!returned, "the report was answered while send_pick_list's invocation was still running");
        let o = until(h, &id, "shipped", |o| o.status.as_str() == "SHIPPED" && !o.dispatch_ends.is_empty()).await;
        assert_eq!(o.dispatch_ends.values().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["shipped"]);
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, o.totals.total.minor);
        let pi = h.intents(&id)[0]["id"].as_str().unwrap().to_string();
        assert_eq!(h.stack.gateway.capture_count(&pi), 1);
        conserved(h, &sku).await;
    });
}

#[test]
fn wf_3_a_capture_that_fails_after_shipping_compensates_and_alarms() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(3300, 4).await;
        let placed = h.place(&order_body(&h.email("capfail"), &[(&sku, 2)], "pm_card_visa")).await;
        let id = placed.order_id();
        let msg = pick(h, &id, None).await;
        // the hold disappears at the gateway (canceled from its dashboard) before the warehouse ships
        let pi = h.intents(&id)[0]["id"].as_str().unwrap().to_string();
        h.cancel_hold_at_gateway(&pi).await;
        ship(h, &msg, "C1", &[(sku.clone(), 1)]).await;
        // the capture is refused: the order ends FAILED with the reason; what was not shipped is back;
        // no hold is open; the compensation ran once; the execution fails (alarm)
        let o = until(h, &id, "failed", |o| o.status.as_str() == "FAILED").await;
        assert!(o.status_reason.as_deref().unwrap_or("").contains("capture refused"), "{:?}", o.status_reason);
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, 0);
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!((l.available, l.reserved, l.shipped), (3, 0, 1), "0 reserved; the shipped unit is gone");
        conserved(h, &sku).await;
        assert_eq!(h.intents(&id)[0]["status"], "canceled");
        assert_eq!(h.stack.gateway.cancel_count(&pi), 1);
        assert_eq!(h.stack.gateway.capture_count(&pi), 0);
        assert_eq!(settle_end(h, &id).await, "FAILED");
    });
}

#[test]
fn wf_3_a_label_the_carrier_refuses_compensates_and_alarms() {
    let h = harness();
    h.run(async {
        // a 40 kg parcel: the warehouse may report it, the carrier sells no label over 70 lb
        let sku = h.new_sku(2100, 3).await;
        let placed = h.place(&order_body(&h.email("labelfail"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = placed.order_id();
        let msg = pick(h, &id, None).await;
        let mut report = msg.report("L1", &msg.lines());
        report["weightGrams"] = json!(40_000);
        let (st, body) = h.stack.warehouses.send_report(&msg, &report).await;
        assert_eq!(st, 202, "{body}");
        // the label step fails after its retries: nothing is captured, the hold is voided once, no
        // unit stays reserved, the order is FAILED with the carrier's reason, the execution fails
        let o = until(h, &id, "failed", |o| o.status.as_str() == "FAILED").await;
        assert!(o.status_reason.as_deref().unwrap_or("").contains("label"), "{:?}", o.status_reason);
        let pi = h.intents(&id)[0].clone();
        assert_eq!(pi["status"], "canceled");
        assert_eq!(pi["amount_received"], 0);
        assert_eq!(h.stack.gateway.cancel_count(pi["id"].as_str().unwrap()), 1);
        let l = h.stack.deps.stock.level(&sku).await.unwrap().unwrap();
        assert_eq!(l.reserved, 0);
        conserved(h, &sku).await;
        assert_eq!(settle_end(h, &id).await, "FAILED");
    });
}

#[test]
fn without_multicapture_what_ships_is_captured_once_when_fulfillment_ends() {
    let h = harness();
    h.run(async {
        // A JCB card: Stripe offers multicapture only on Visa, Mastercard, Amex and Discover, so
        // a per-parcel `final_capture=false` would be refused (the sandbox refuses it too, below).
        let a = h.new_sku(4000, 5).await;
        let b = h.new_sku(1500, 5).await;
        let placed = h.place(&order_body(&h.email("nomulti"), &[(&a, 1), (&b, 2)], "pm_card_jcb")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let intent = h.intents(&id)[0].clone();
        let intent_id = intent["id"].as_str().unwrap().to_string();
        assert_eq!(intent["latest_charge"]["payment_method_details"]["card"]["multicapture"]["status"], "unavailable");
        let o = order(h, &id).await;
        assert_eq!(o.payment.as_ref().unwrap().multicapture, Some(false));

        // First parcel: shipped, its amount owed, nothing captured (a partial capture would
        // release the rest of the hold and the second parcel could not be charged).
        let msg = pick(h, &id, None).await;
        ship(h, &msg, "NA", &[(a.clone(), 1)]).await;
        let o = until(h, &id, "first parcel owed", |o| o.shipments.get("NA").is_some_and(|s| s.capture_deferred.is_some())).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, 0);
        assert_eq!(h.stack.gateway.capture_count(&intent_id), 0, "no capture request before fulfillment ends");
        assert_eq!(h.intents(&id)[0]["amount_capturable"], total, "the whole hold stays");

        // Second parcel completes the order: one final capture of everything that shipped.
        let rest = pick(h, &id, None).await;
        ship(h, &rest, "NB", &rest.lines()).await;
        let o = until(h, &id, "settled", |o| o.payment.as_ref().is_some_and(|p| p.settled.is_some())).await;
        let p = o.payment.as_ref().unwrap();
        assert_eq!(p.captured_minor, total, "captured = value of what shipped = the total");
        assert!(o.shipments.values().all(|s| s.captured == s.capture_deferred && s.captured.is_some()), "each parcel recorded as captured once");
        let pi = &h.intents(&id)[0];
        assert_eq!((pi["status"].as_str(), pi["amount_received"].as_i64()), (Some("succeeded"), Some(total)));
        assert_eq!(h.stack.gateway.capture_count(&intent_id), 1, "exactly one capture request");

        // The sandbox refuses what Stripe refuses: keeping the rest held on a charge without it.
        let other = h.place(&order_body(&h.email("nomulti2"), &[(&b, 1)], "pm_card_jcb")).await;
        let pi2 = h.intents(&other.order_id())[0]["id"].as_str().unwrap().to_string();
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/payment_intents/{pi2}/capture", h.stack.gateway_url))
            .bearer_auth(orderflow_local::sandbox_gateway::SANDBOX_SECRET_KEY)
            .form(&[("amount_to_capture", "100"), ("final_capture", "false")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["param"], "final_capture", "{body}");
    });
}

/// #10 item 5: one warehouse's parcel fails (the carrier sells no label for it) and only its branch
/// ends; the other warehouse's pick list is still waited for, ships and is charged, and the order
/// is settled as a stall afterwards (what shipped charged, the rest released, alarmed).
#[test]
fn a_parcel_that_fails_ends_only_its_branch_and_the_other_warehouse_ships_and_is_charged() {
    let h = harness();
    h.run(async {
        let east_only = h.new_sku(1000, 5).await;
        let west_only = h.new_sku(3000, 0).await;
        h.stack.deps.stock.receive(&west_only, "wh-west", 5, &format!("seed:{west_only}:west")).await.unwrap();
        let placed = h.place(&order_body(&h.email("branchfail"), &[(&east_only, 1), (&west_only, 1)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let east = pick(h, &id, Some("wh-east")).await;
        let west = pick(h, &id, Some("wh-west")).await;
        // east's parcel weighs 40 kg: its label is refused, its branch fails after its retries
        let mut heavy = east.report("E1", &east.lines());
        heavy["weightGrams"] = json!(40_000);
        let (st, body) = h.stack.warehouses.send_report(&east, &heavy).await;
        assert_eq!(st, 202, "{body}");
        let started = std::time::Instant::now();
        loop {
            let o = order(h, &id).await;
            if o.dispatch_ends.get(east.dispatch_id()).is_some_and(|e| e.outcome == "failed") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "east's dispatch never ended: {:?}", o.dispatch_ends);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // the west warehouse's pick list is still awaited: its parcel is accepted, labelled, charged
        ship(h, &west, "W1", &west.lines()).await;
        let o = until(h, &id, "settled", |o| o.status.as_str() == "PARTIALLY_FULFILLED").await;
        let w = &o.shipments["W1"];
        assert!(w.tracking_code.is_some() && w.captured.is_some(), "{w:?}");
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, w.captured.unwrap().minor, "only what left with the carrier is charged");
        let pi = &h.intents(&id)[0];
        assert_eq!(pi["amount_received"].as_i64(), Some(w.captured.unwrap().minor));
        assert_ne!(pi["status"], "requires_capture", "the rest of the hold is released");
        assert!(o.status_reason.as_deref().unwrap_or("").contains("parcel_failed"), "{:?}", o.status_reason);
        // The execution's Fail state follows the step that recorded the order's end by a moment.
        assert_eq!(settle_end(h, &id).await, "FAILED", "the failed-executions alarm sees it");
        for sku in [&east_only, &west_only] {
            conserved(h, sku).await;
        }
    });
}

/// #10 item 9: parcel ids are the warehouses' own; two warehouses both calling their parcel "P1"
/// ship a split order, each parcel charged once.
#[test]
fn two_warehouses_may_use_the_same_parcel_id() {
    let h = harness();
    h.run(async {
        let east_only = h.new_sku(1000, 5).await;
        let west_only = h.new_sku(3000, 0).await;
        h.stack.deps.stock.receive(&west_only, "wh-west", 5, &format!("seed:{west_only}:west")).await.unwrap();
        let placed = h.place(&order_body(&h.email("sameid"), &[(&east_only, 1), (&west_only, 1)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let total = placed.body["totals"]["total"].as_i64().unwrap();
        let east = pick(h, &id, Some("wh-east")).await;
        let west = pick(h, &id, Some("wh-west")).await;
        ship(h, &east, "P1", &east.lines()).await;
        ship(h, &west, "P1", &west.lines()).await;
        // each warehouse's replay is still a replay of its own parcel
        let (st, body) = h.stack.warehouses.send_report(&west, &west.report("P1", &west.lines())).await;
        assert_eq!((st, body["shipment_id"].as_str()), (200, Some("P1")), "{body}");
        let o = until(h, &id, "both captured", |o| o.shipments.len() == 2 && o.shipments.values().all(|s| s.captured.is_some())).await;
        assert_eq!(o.payment.as_ref().unwrap().captured_minor, total);
        assert_eq!(o.status.as_str(), "SHIPPED");
        assert!(o.shipments.contains_key("P1") && o.shipments.contains_key("wh-west:P1"), "{:?}", o.shipments.keys());
    });
}

/// #10 item 9: a pick list's token is bound to its order and dispatch. A report (or a cancellation
/// answer) that carries another order's token is refused before it can wake that order's wait; the
/// other order keeps waiting and takes its own parcel as usual.
#[test]
fn a_dispatch_token_only_answers_the_pick_list_it_came_with() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 10).await;
        let a = h.place(&order_body(&h.email("token-a"), &[(&sku, 1)], "pm_card_visa")).await;
        let b = h.place(&order_body(&h.email("token-b"), &[(&sku, 2)], "pm_card_visa")).await;
        assert_eq!((a.status, b.status), (201, 201), "{} {}", a.body, b.body);
        let (ida, idb) = (a.order_id(), b.order_id());
        let pa = pick(h, &ida, None).await;
        let pb = pick(h, &idb, None).await;
        // order A's report, carrying order B's token (same warehouse, so the caller is authentic)
        let mut forged = pa.clone();
        forged.body["dispatchToken"] = json!(pb.token());
        let (st, body) = h.stack.warehouses.send_report(&forged, &forged.report("P1", &pa.lines())).await;
        assert_eq!((st, body["error"]["code"].as_str()), (409, Some("dispatch_token_mismatch")), "{body}");
        let (st, body) = h.stack.warehouses.answer_cancel(&forged, "cancelled").await;
        assert_eq!((st, body["error"]["code"].as_str()), (409, Some("dispatch_token_mismatch")), "{body}");
        // nothing recorded on either order, and B's wait was not woken
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(order(h, &ida).await.shipments.is_empty());
        let ob = order(h, &idb).await;
        assert!(ob.shipments.is_empty() && ob.answered_tokens.is_empty(), "{:?}", ob.shipments);
        let waits = h.stack.order_runs(orderflow_local::provision::DISPATCH_MACHINE, &idb).await;
        assert_eq!(waits, ["RUNNING"], "B's wait is still waiting");
        // each order's own token still works
        ship(h, &pa, "P1", &pa.lines()).await;
        ship(h, &pb, "P1", &pb.lines()).await;
        for id in [&ida, &idb] {
            let o = until(h, id, "captured", |o| o.shipments.values().any(|s| s.captured.is_some())).await;
            assert_eq!(o.shipments.len(), 1);
        }
        conserved(h, &sku).await;
    });
}

/// An order routed by the version before dispatch ends were recorded (in flight across an upgrade)
/// has no `dispatch_ends` map: its parcel's end is still recorded and the order settles.
#[test]
fn an_order_routed_before_dispatch_ends_existed_still_settles() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let placed = h.place(&order_body(&h.email("upgrade"), &[(&sku, 1)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let p = pick(h, &id, None).await;
        h.remove_order_attribute(&id, "dispatch_ends").await;
        ship(h, &p, "P1", &p.lines()).await;
        let o = until(h, &id, "settled", |o| o.payment.as_ref().is_some_and(|p| p.settled.is_some())).await;
        assert_eq!(o.dispatch_ends.get(p.dispatch_id()).map(|e| e.outcome.as_str()), Some("shipped"), "{:?}", o.dispatch_ends);
        assert_eq!(o.payment.unwrap().captured_minor, o.totals.total.minor);
    });
}
