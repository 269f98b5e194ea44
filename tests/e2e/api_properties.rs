//! IDEM-1..3 and SEC-1..4: the orders API under retries, races and hostile input.

use orderflow_e2e::*;
use serde_json::json;

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[test]
fn idem_1_fifty_concurrent_identical_posts_make_one_order() {
    let h = harness();
    h.run_alone(async {
        let sku = h.new_sku(1500, 100).await;
        let body = order_body(&h.email("idem1"), &[(&sku, 1)], "pm_card_visa").to_string();
        let key = h.key();
        let http = reqwest::Client::new();
        let results = futures::future::join_all((0..50).map(|_| post_order(&http, h.api(), Some(&key), body.as_bytes()))).await;
        let winners: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
        let conflicts = results.iter().filter(|r| r.status == 409).count();
        assert_eq!(winners.len() + conflicts, 50, "only the winner's answer or 409: {:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
        assert!(!winners.is_empty());
        let ids: std::collections::BTreeSet<String> = winners.iter().map(|r| r.order_id()).collect();
        assert_eq!(ids.len(), 1, "one order id across all answers");
        assert_eq!(winners.iter().filter(|r| !r.replayed).count(), 1, "every other success is marked as a replay");
        for c in results.iter().filter(|r| r.status == 409) {
            assert_eq!(c.body["error"]["code"], "idempotency_key_in_use");
        }
        let id = ids.into_iter().next().unwrap();
        assert_eq!(h.intents(&id).len(), 1, "one payment authorization");
        assert_eq!(h.stock(&sku).await, (99, 1), "one reservation");
        let r = h.stack.report(&id).await;
        assert_eq!(r.calls.iter().filter(|c| c.operation == "StartSyncExecution").count(), 1, "one workflow execution");
    });
}

#[test]
fn idem_2_same_key_other_body_is_422_and_key_rules() {
    let h = harness();
    h.run(async {
        let http = reqwest::Client::new();
        let sku = h.new_sku(1500, 10).await;
        let key = h.key();
        let first = post_order(&http, h.api(), Some(&key), order_body(&h.email("idem2"), &[(&sku, 1)], "pm_card_visa").to_string().as_bytes()).await;
        assert_eq!(first.status, 201);
        let other = post_order(&http, h.api(), Some(&key), order_body(&h.email("idem2"), &[(&sku, 3)], "pm_card_visa").to_string().as_bytes()).await;
        assert_error(other.status, &other.body, 422, "idempotency_key_reused");
        assert_eq!(h.stock(&sku).await, (9, 1), "no side effects");
        let body = order_body(&h.email("idem2"), &[(&sku, 1)], "pm_card_visa").to_string();
        let missing = post_order(&http, h.api(), None, body.as_bytes()).await;
        assert_error(missing.status, &missing.body, 400, "idempotency_key_missing");
        let long = post_order(&http, h.api(), Some(&"k".repeat(256)), body.as_bytes()).await;
        assert_error(long.status, &long.body, 400, "idempotency_key_invalid");
        let max = post_order(&http, h.api(), Some(&format!("{}{}", "k".repeat(219), uuid::Uuid::new_v4())), body.as_bytes()).await;
        assert_eq!(max.status, 201, "255 characters is allowed: {}", max.body);
        assert_eq!(h.stock(&sku).await, (8, 2));
    });
}

#[test]
fn idem_3_retry_of_a_completed_request_replays_and_writes_nothing() {
    let h = harness();
    h.run(async {
        let http = reqwest::Client::new();
        let sku = h.new_sku(1500, 10).await;
        let key = h.key();
        let body = order_body(&h.email("idem3"), &[(&sku, 2)], "pm_card_visa").to_string();
        let first = post_order(&http, h.api(), Some(&key), body.as_bytes()).await;
        assert_eq!(first.status, 201);
        h.settle().await;
        let id = first.order_id();
        let before = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        let writes = |calls: &[orderflow_local::edge::Call]| {
            calls.iter().filter(|c| ["PutItem", "UpdateItem", "TransactWriteItems", "DeleteItem"].contains(&c.operation.as_str())).count()
        };
        let writes_before = writes(&h.stack.report(&id).await.calls);
        for _ in 0..3 {
            let again = post_order(&http, h.api(), Some(&key), body.as_bytes()).await;
            assert_eq!(again.status, first.status);
            assert_eq!(again.body, first.body, "same body, byte for byte");
            assert!(again.replayed);
        }
        assert_eq!(writes(&h.stack.report(&id).await.calls), writes_before, "no new writes for the order");
        assert_eq!(h.stack.deps.orders.get(&id).await.unwrap().unwrap(), before);
        assert_eq!(h.stock(&sku).await, (8, 2));
        assert_eq!(h.intents(&id).len(), 1);
        // an invalid request is answered the same way on retry, too
        let bad = json!({"email": "nope"}).to_string();
        let k2 = h.key();
        let b1 = post_order(&http, h.api(), Some(&k2), bad.as_bytes()).await;
        let b2 = post_order(&http, h.api(), Some(&k2), bad.as_bytes()).await;
        assert_eq!((b1.status, &b1.body), (b2.status, &b2.body));
    });
}

#[test]
fn sec_1_orders_are_invisible_without_their_token() {
    let h = harness();
    h.run(async {
        let http = reqwest::Client::new();
        let sku = h.new_sku(1500, 10).await;
        let a = h.place(&order_body(&h.email("sec1a"), &[(&sku, 1)], "pm_card_visa")).await;
        let b = h.place(&order_body(&h.email("sec1b"), &[(&sku, 1)], "pm_card_visa")).await;
        let (st, _) = get_order(&http, h.api(), &a.order_id(), &a.token()).await;
        assert_eq!(st, 200);
        let (st, body) = get_order(&http, h.api(), &a.order_id(), &b.token()).await;
        assert_error(st, &body, 404, "order_not_found");
        let resp = http.get(format!("{}/orders/{}", h.api(), a.order_id())).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        let (st, _) = get_order(&http, h.api(), "ord_does_not_exist", &a.token()).await;
        assert_eq!(st, 404);
        let (st, _) = get_order(&http, h.api(), &a.order_id(), "").await;
        assert_eq!(st, 404);
        // operators need their token
        let resp = http.get(format!("{}/ops/orders/{}", h.api(), a.order_id())).bearer_auth(a.token()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    });
}

#[test]
fn sec_2_client_prices_status_and_paid_flags_are_rejected() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 10).await;
        for (path, value) in [("status", json!("CONFIRMED")), ("total", json!(1)), ("paid", json!(true)), ("totals", json!({"total": 1}))] {
            let mut body = order_body(&h.email("sec2"), &[(&sku, 1)], "pm_card_visa");
            body[path] = value;
            let r = h.place(&body).await;
            assert_error(r.status, &r.body, 400, "unknown_field");
            assert_eq!(r.body["error"]["field"], path);
        }
        let mut body = order_body(&h.email("sec2"), &[(&sku, 1)], "pm_card_visa");
        body["lines"][0]["unit_price"] = json!(1);
        let r = h.place(&body).await;
        assert_error(r.status, &r.body, 400, "unknown_field");
        assert_eq!(h.stock(&sku).await, (10, 0));
        // the stored total is the catalog's
        let ok = h.place(&order_body(&h.email("sec2"), &[(&sku, 2)], "pm_card_visa")).await;
        let order = h.stack.deps.orders.get(&ok.order_id()).await.unwrap().unwrap();
        assert_eq!(order.totals.subtotal.minor, 3000);
    });
}

#[test]
fn sec_3_card_numbers_are_never_accepted() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 10).await;
        let http = reqwest::Client::new();
        let key = h.key();
        for pan in ["4242424242424242", "4000 0000 0000 0002", "5555-5555-5555-4444", "378282246310005"] {
            let mut body = order_body(&h.email("sec3"), &[(&sku, 1)], "pm_card_visa");
            body["notes"] = json!(format!("my card is {pan}"));
            let r = post_order(&http, h.api(), Some(&key), body.to_string().as_bytes()).await;
            assert_error(r.status, &r.body, 400, "card_number_rejected");
            let mut body = order_body(&h.email("sec3"), &[(&sku, 1)], pan);
            body["notes"] = json!(null);
            let r = post_order(&http, h.api(), Some(&key), body.to_string().as_bytes()).await;
            assert_error(r.status, &r.body, 400, "card_number_rejected");
        }
        // refused before anything was stored: not even the idempotency key was recorded
        let ok = post_order(&http, h.api(), Some(&key), order_body(&h.email("sec3"), &[(&sku, 1)], "pm_card_visa").to_string().as_bytes()).await;
        assert_eq!(ok.status, 201, "{}", ok.body);
        assert!(!ok.replayed);
        assert_eq!(h.stock(&sku).await, (9, 1));
    });
}

#[test]
fn sec_3_no_card_number_in_any_stored_order() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 10).await;
        let kept = h.place(&order_body(&h.email("sec3b-ok"), &[(&sku, 1)], "pm_card_visa")).await;
        assert_eq!(kept.status, 201, "{}", kept.body);
        let email = h.email("sec3b");
        // A card number in every field a client fills, plain, spaced, dashed, and JSON-escaped
        // (\u0034 is "4": the bytes hold no digit run, the parsed string does).
        let card = "4242424242424242";
        let escaped: String = card.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let mut bodies: Vec<String> = Vec::new();
        for (field, value) in [
            ("/notes", json!(format!("my card is {card}"))),
            ("/notes", json!("4242 4242 4242 4242")),
            ("/shipping_address/line2", json!("4242-4242-4242-4242")),
            ("/billing_address/name", json!(card)),
            ("/payment_method", json!(card)),
        ] {
            let mut b = order_body(&email, &[(&sku, 1)], "pm_card_visa");
            let (parent, key) = field.rsplit_once('/').unwrap();
            b.pointer_mut(parent).unwrap()[key] = value;
            bodies.push(b.to_string());
        }
        let mut b = order_body(&email, &[(&sku, 1)], "pm_card_visa");
        b["notes"] = json!("ESCAPED");
        bodies.push(b.to_string().replace("ESCAPED", &format!("card {escaped}")));
        for body in &bodies {
            let r = post_order(&reqwest::Client::new(), h.api(), Some(&h.key()), body.as_bytes()).await;
            assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("card_number_rejected")), "{body}");
        }
        // Nothing of those requests was stored: no order for that customer, and no stored order
        // anywhere holds a card number in what its client supplied.
        let sdk = h.operator_sdk().await;
        let items = aws_sdk_dynamodb::Client::new(&sdk).scan().table_name("OrdersTable").send().await.unwrap().items.unwrap_or_default();
        assert!(!items.is_empty());
        for item in items.into_iter().filter(|i| !i.get("order_id").and_then(|v| v.as_s().ok()).is_some_and(|k| k.contains('#'))) {
            let order: orderflow_shared::domain::order::Order = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).unwrap();
            assert_ne!(order.customer_email, email, "a refused request left an order");
            let supplied =
                serde_json::to_string(&(&order.customer_email, &order.shipping_address, &order.billing_address, &order.notes, &order.payment_method)).unwrap();
            assert!(!orderflow_shared::domain::checkout::contains_card_number(supplied.as_bytes()), "{supplied}");
        }
        assert_eq!(h.stock(&sku).await, (9, 1), "only the order without a card number holds stock");
    });
}

#[test]
fn sec_4_limits_and_bad_input_get_clear_4xx_errors() {
    let h = harness();
    h.run(async {
        let http = reqwest::Client::new();
        let sku = h.new_sku(1500, 10).await;
        let post = |body: String| {
            let http = http.clone();
            let key = h.key();
            async move { post_order(&http, h.api(), Some(&key), body.as_bytes()).await }
        };
        // > 64 KB
        let mut big = order_body(&h.email("sec4"), &[(&sku, 1)], "pm_card_visa");
        big["notes"] = json!("x".repeat(70 * 1024));
        let r = post(big.to_string()).await;
        assert_error(r.status, &r.body, 413, "payload_too_large");
        // > 100 lines
        let many: Vec<(&str, i64)> = (0..101).map(|_| (sku.as_str(), 1)).collect();
        let r = post(order_body(&h.email("sec4"), &many, "pm_card_visa").to_string()).await;
        assert_error(r.status, &r.body, 400, "too_many_lines");
        // more different SKUs than one parcel can carry: refused at the door, not FAILED after payment
        // (letters only: runs of digits across 50 SKUs could look like a card number to the scanner)
        let letter = |n: usize| char::from(b'A' + n as u8);
        let skus: Vec<String> = (0..50).map(|i| format!("WIDE-{}{}", letter(i / 26), letter(i % 26))).collect();
        let wide: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 1)).collect();
        let r = post(order_body(&h.email("sec4"), &wide, "pm_card_visa").to_string()).await;
        assert_error(r.status, &r.body, 400, "too_many_skus");
        // quantity outside 1..=99
        for q in [0, 100, -5] {
            let r = post(order_body(&h.email("sec4"), &[(&sku, q)], "pm_card_visa").to_string()).await;
            assert_error(r.status, &r.body, 400, "invalid_quantity");
            assert_eq!(r.body["error"]["field"], "lines[0].quantity");
        }
        // unknown SKU, named by its line
        let r = post(order_body(&h.email("sec4"), &[(&sku, 1), ("NO-SUCH-SKU", 1)], "pm_card_visa").to_string()).await;
        assert_error(r.status, &r.body, 400, "unknown_sku");
        assert_eq!(r.body["error"]["field"], "lines[1].sku");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("NO-SUCH-SKU"));
        // malformed JSON, wrong types, empty body, bad email, unsupported country
        let r = post("{\"email\": ".into()).await;
        assert_error(r.status, &r.body, 400, "invalid_json");
        let r = post("".into()).await;
        assert_error(r.status, &r.body, 400, "invalid_json");
        let mut wrong = order_body(&h.email("sec4"), &[(&sku, 1)], "pm_card_visa");
        wrong["lines"][0]["quantity"] = json!("two");
        let r = post(wrong.to_string()).await;
        assert_error(r.status, &r.body, 400, "invalid_request");
        let r = post(order_body("not-an-email", &[(&sku, 1)], "pm_card_visa").to_string()).await;
        assert_error(r.status, &r.body, 400, "invalid_email");
        let mut far = order_body(&h.email("sec4"), &[(&sku, 1)], "pm_card_visa");
        far["shipping_address"]["country"] = json!("AQ");
        let r = post(far.to_string()).await;
        assert_error(r.status, &r.body, 400, "unsupported_destination");
        // unknown routes and methods are JSON errors too
        let resp = http.get(format!("{}/nope", h.api())).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        let resp = http.delete(format!("{}/orders", h.api())).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");
        assert_eq!(h.stock(&sku).await, (10, 0), "nothing reserved by any of it");
    });
}

/// IDEM-4: once an order exists for a key, a retry after a later failure answers about that order.
/// Here the checkout cannot start (orders_api's StartSyncExecution denied, as a throttle or an
/// outage would): the first answer is a 5xx; the retry with the same key, once the outage is over,
/// answers about the same order (FAILED: checkout never ran) instead of making a second order.
#[test]
fn idem_4_a_retry_after_checkout_failed_to_start_answers_about_the_same_order() {
    let h = harness();
    h.run_alone(async {
        let sku = h.new_sku(1500, 5).await;
        let email = h.email("idem4");
        let body = order_body(&email, &[(&sku, 1)], "pm_card_visa").to_string();
        let key = h.key();
        let machine = orderflow_local::provision::machine_arn("orderflow-checkout");
        let removed = h.stack.edge.iam.revoke("orders_api", "states:StartSyncExecution", &machine);
        assert!(!removed.is_empty(), "the template grants orders_api StartSyncExecution on the checkout machine");
        let first = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        h.stack.edge.iam.restore("orders_api", removed);
        assert!(first.status >= 500, "{}: {}", first.status, first.body);
        let retry = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        assert!(retry.replayed, "{}", retry.body);
        assert_eq!(retry.body["status"], "FAILED", "{}", retry.body);
        let id = retry.order_id();
        // the access token handed out again is the order's own
        let (st, view) = get_order(&reqwest::Client::new(), h.api(), &id, &retry.token()).await;
        assert_eq!((st, view["order_id"].as_str()), (200, Some(id.as_str())));
        // one order for this customer, no hold, nothing reserved
        let sdk = h.operator_sdk().await;
        let items = aws_sdk_dynamodb::Client::new(&sdk).scan().table_name("OrdersTable").send().await.unwrap().items.unwrap_or_default();
        let mine = items.iter().filter(|i| i.get("customer_email").and_then(|v| v.as_s().ok()) == Some(&email)).count();
        assert_eq!(mine, 1, "one order for one key");
        assert!(h.intents(&id).is_empty());
        assert_eq!(h.stock(&sku).await, (5, 0));
        // and a third try is the same answer
        let third = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        assert_eq!((third.status, third.body["order_id"].as_str()), (retry.status, Some(id.as_str())));
    });
}

/// IDEM-4, the other half: a claim left unanswered by a function that was killed is taken over by
/// a retry once its lease has run out, and the retry continues the same order (the claim's order id
/// and access token); while the lease runs, a retry is told the key is in use.
#[test]
fn idem_4_a_claim_left_by_a_killed_function_is_taken_over_after_its_lease() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let body = order_body(&h.email("idem4b"), &[(&sku, 1)], "pm_card_visa").to_string();
        let sdk = h.operator_sdk().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let claim = |key: String, order_id: String, claimed_at: i64| {
            let ddb = ddb.clone();
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
            async move {
                ddb.put_item()
                    .table_name("IdempotencyTable")
                    .item("pk", S(format!("orders-post#{key}")))
                    .item("request_hash", S(hash))
                    .item("order_id", S(order_id))
                    .item("access_token", S("tok-of-the-killed-request".into()))
                    .item("claimed_at", N(claimed_at.to_string()))
                    .item("state", S("IN_PROGRESS".into()))
                    .item("expires_at", N((chrono::Utc::now().timestamp() + 86400).to_string()))
                    .send()
                    .await
                    .unwrap();
            }
        };
        let now = chrono::Utc::now().timestamp();
        // A fresh claim: its request may still be running.
        let (fresh_key, fresh_id) = (h.key(), orderflow_shared::domain::order::new_order_id());
        claim(fresh_key.clone(), fresh_id, now).await;
        let r = post_order(&reqwest::Client::new(), h.api(), Some(&fresh_key), body.as_bytes()).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("idempotency_key_in_use")));
        // A claim whose lease ran out, its function killed before the order was written.
        let (key, id) = (h.key(), orderflow_shared::domain::order::new_order_id());
        claim(key.clone(), id.clone(), now - 400).await;
        let http = reqwest::Client::new();
        let (a, b) = tokio::join!(post_order(&http, h.api(), Some(&key), body.as_bytes()), post_order(&http, h.api(), Some(&key), body.as_bytes()));
        let (won, lost) = if a.status == 201 { (a, b) } else { (b, a) };
        assert_eq!(won.status, 201, "{}", won.body);
        assert_eq!(won.body["order_id"].as_str(), Some(id.as_str()), "the same order continues");
        assert_eq!(won.body["access_token"], "tok-of-the-killed-request");
        assert!(lost.status == 409 || lost.body["order_id"].as_str() == Some(id.as_str()), "{}: {}", lost.status, lost.body);
        assert_eq!(h.intents(&id).len(), 1, "one hold");
        assert_eq!(h.stock(&sku).await, (4, 1));
        // and the answer is now the key's
        let again = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        assert!(again.replayed && again.body["order_id"].as_str() == Some(id.as_str()));
    });
}

/// #10 item 7 (card testing): checkout attempts are limited per email and per shopper IP per hour
/// (CheckoutAttemptsPerHour, 10), before anything is authorized.
#[test]
fn card_testing_attempts_per_email_and_per_address_are_limited_before_anything_is_held() {
    let h = harness();
    h.run(async {
        let http = reqwest::Client::new();
        let sku = h.new_sku(1000, 5).await;
        let attempt = |email: String, sku: String, ip: Option<&'static str>| {
            let http = http.clone();
            async move {
                let mut req =
                    http.post(format!("{}/orders", h.api())).header("Idempotency-Key", h.key()).json(&order_body(&email, &[(&sku, 1)], "pm_card_visa"));
                if let Some(ip) = ip {
                    req = req.header("X-Shopper-Ip", ip);
                }
                let r = req.send().await.unwrap();
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap(), retry_after)
            }
        };
        // ten attempts with cards or items that go nowhere (here: an unknown item, answered at once)
        let email = h.email("cardtest");
        for _ in 0..10 {
            let (st, body, _) = attempt(email.clone(), "NO-SUCH-ITEM".into(), None).await;
            assert_eq!((st, body["error"]["code"].as_str()), (400, Some("unknown_sku")));
        }
        // the eleventh from that email is refused before any hold, whatever it buys
        let (st, body, retry) = attempt(email.clone(), sku.clone(), None).await;
        assert_eq!((st, body["error"]["code"].as_str(), retry.as_deref()), (429, Some("too_many_attempts"), Some("3600")), "{body}");
        // the same from one address with ever new emails
        for i in 0..10 {
            let (st, _, _) = attempt(h.email(&format!("ip{i}")), "NO-SUCH-ITEM".into(), Some("198.51.100.23")).await;
            assert_eq!(st, 400);
        }
        let (st, body, _) = attempt(h.email("ip-last"), sku.clone(), Some("198.51.100.23")).await;
        assert_eq!((st, body["error"]["code"].as_str()), (429, Some("too_many_attempts")), "{body}");
        // another shopper is served, and nothing was held for the refused ones
        let (st, body, _) = attempt(h.email("someone-else"), sku.clone(), Some("198.51.100.24")).await;
        assert_eq!(st, 201, "{body}");
        assert_eq!(
            h.stack
                .gateway
                .intents
                .lock()
                .unwrap()
                .values()
                .filter(|pi| pi["metadata"]["order_id"].as_str().is_some_and(|o| o == body["order_id"].as_str().unwrap()))
                .count(),
            1
        );
        let (available, reserved) = h.stock(&sku).await;
        assert_eq!((available, reserved), (4, 1), "only the served order reserved");
    });
}

/// #10 item 7 (card testing, per card): every guess at a card's expiry or CVC is a new PaymentMethod
/// of the same card. Once one card (by the gateway's fingerprint) has collected CardDeclinesPerHour
/// declines, the next attempt with it, from any email, is declined without reaching the gateway;
/// the customer reads the generic decline, operators the reason; nothing is held, stock is back.
#[test]
fn a_card_past_its_decline_limit_is_declined_before_the_gateway_sees_it() {
    let h = harness();
    h.run(async {
        let t = orderflow_local::template::Template::load(&orderflow_local::Options::default().repo.join("infra/template.yaml")).unwrap();
        let limit: usize = t.param("CardDeclinesPerHour").unwrap().parse().unwrap();
        let sku = h.new_sku(1000, 5).await;
        // a card no other scenario uses, declined (expired) by its bank each time
        let card = "pm_card_chargeDeclinedExpiredCard";
        for i in 0..limit {
            let placed = h.place(&order_body(&h.email(&format!("guess{i}")), &[(&sku, 1)], card)).await;
            assert_eq!((placed.status, placed.body["status"].as_str()), (402, Some("DECLINED")), "{}", placed.body);
            assert_eq!(placed.body["reason"], "The card has expired. Use another card.");
            let creates = h.gateway_requests(&placed.order_id()).into_iter().filter(|q| q.path == "/v1/payment_intents").count();
            assert_eq!(creates, 1, "attempt {i} reached the gateway");
        }
        // the next guess, from yet another email, never reaches the gateway
        let placed = h.place(&order_body(&h.email("guess-last"), &[(&sku, 1)], card)).await;
        assert_eq!((placed.status, placed.body["status"].as_str()), (402, Some("DECLINED")), "{}", placed.body);
        assert_eq!(placed.body["reason"], "The card was declined. Use another card or contact the card's bank.", "nothing tells the tester why");
        let id = placed.order_id();
        assert!(h.gateway_requests(&id).is_empty(), "no request about the order crossed to the gateway: {:?}", h.gateway_requests(&id));
        assert!(h.intents(&id).is_empty());
        let ops = h.ops_view(&id).await;
        assert!(ops["reason"].as_str().unwrap().contains("card_velocity"), "{ops}");
        // another card is served as usual, and all the stock is back
        let ok = h.place(&order_body(&h.email("guess-other-card"), &[(&sku, 1)], "pm_card_visa")).await;
        assert_eq!(ok.status, 201, "{}", ok.body);
        assert_eq!(h.stock(&sku).await, (4, 1));
    });
}
