//! Faults aimed at single calls (#10 item 12, the edge's fault injection): a call that took effect
//! and whose answer was lost is retried by the SDK, and the retry must find its own work done rather
//! than a conflict; a write that keeps failing after the SDK's retries is retried by the workflow.
//! Each is what a lost answer on AWS does; the soak (`orderflow-local soak`) meets them at random.

use orderflow_e2e::*;
use orderflow_local::faults::Kind;

/// The first POST answers the order: no 409 for the customer's own claim, no second order or hold.
async fn placed_once(h: &Harness, email: &str, key: &str, sku: &str) {
    let body = order_body(email, &[(sku, 1)], "pm_card_visa");
    let placed = post_order(&reqwest::Client::new(), h.api(), Some(key), body.to_string().as_bytes()).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    assert_eq!(placed.body["status"], "CONFIRMED", "{}", placed.body);
    let id = placed.order_id();
    assert_eq!(h.intents(&id).len(), 1, "one hold");
    let creates = h.gateway_requests(&id).iter().filter(|r| r.path == "/v1/payment_intents").count();
    assert_eq!(creates, 1, "one create crossed the wire");
}

#[test]
fn a_lost_answer_on_the_idempotency_claim_still_answers_the_order() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let key = h.key();
        h.stack.faults.aim("dynamodb", "PutItem", &format!("orders-post#{key}"), Kind::LostResponse);
        placed_once(h, &h.email("lost-claim"), &key, &sku).await;
        assert!(h.stack.faults.injected.lock().unwrap().iter().any(|i| i.operation == "PutItem"), "the fault struck");
    });
}

#[test]
fn a_lost_answer_on_the_order_write_still_answers_the_order() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let email = h.email("lost-create");
        h.stack.faults.aim("dynamodb", "PutItem", &format!("\"customer_email\":{{\"S\":\"{email}\"}}"), Kind::Timeout);
        placed_once(h, &email, &h.key(), &sku).await;
    });
}

#[test]
fn a_write_that_fails_past_the_sdk_retries_is_retried_by_the_checkout() {
    let h = harness();
    // Alone: the aimed faults must strike this order's confirmation and no other.
    h.run_alone(async {
        let sku = h.new_sku(1500, 5).await;
        for _ in 0..3 {
            h.stack.faults.aim("dynamodb", "UpdateItem", "\":next\":{\"S\":\"CONFIRMED\"}", Kind::Timeout);
        }
        placed_once(h, &h.email("confirm-5xx"), &h.key(), &sku).await;
    });
}

#[test]
fn a_lost_answer_on_a_webhook_events_claim_still_takes_the_event_in() {
    let h = harness();
    h.run(async {
        let event = h.stack.carrier.event(&format!("EZLOST{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), "in_transit", "2026-11-27T03:00:00Z");
        let id = event["id"].as_str().unwrap().to_string();
        h.stack.faults.aim("dynamodb", "PutItem", &format!("once#webhook:carrier:{id}"), Kind::LostResponse);
        let status = h.stack.carrier.deliver(&event).await;
        assert!((200..300).contains(&status), "the first delivery is taken in, not told another is in progress: {status}");
        assert!(h.stack.faults.injected.lock().unwrap().iter().any(|i| i.kind == Kind::LostResponse && i.operation == "PutItem"));
    });
}

/// The order's write took effect but every answer the SDK waited for was lost: the API answers 5xx
/// and keeps the key with the order (never a second order). The storefront's retry with the same key
/// continues that order at once (nothing had been started for it), instead of 409 for the lease.
#[test]
fn an_order_write_that_failed_after_taking_effect_is_continued_by_the_retry_at_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 5).await;
        let email = h.email("create-5xx");
        let marker = format!("\"customer_email\":{{\"S\":\"{email}\"}}");
        h.stack.faults.aim("dynamodb", "PutItem", &marker, Kind::LostResponse);
        for _ in 0..3 {
            h.stack.faults.aim("dynamodb", "PutItem", &marker, Kind::ServerError);
        }
        let key = h.key();
        let body = order_body(&email, &[(&sku, 1)], "pm_card_visa").to_string();
        let first = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        assert!(first.status >= 500, "the write's failure reached the storefront: {} {}", first.status, first.body);
        let retry = post_order(&reqwest::Client::new(), h.api(), Some(&key), body.as_bytes()).await;
        assert_eq!(retry.status, 201, "{}", retry.body);
        assert_eq!(retry.body["status"], "CONFIRMED", "{}", retry.body);
        let id = retry.order_id();
        assert_eq!(h.intents(&id).len(), 1, "one hold");
    });
}

/// The claim on an email took effect and its answer was lost: the SDK's retry finds its own claim
/// and the email goes out at once, once (not "another delivery is sending it" until the claim is stale).
#[test]
fn a_lost_answer_on_an_emails_claim_still_sends_it_once() {
    let h = harness();
    // Alone: the aimed fault must strike this order's confirmation email and no other.
    h.run_alone(async {
        let sku = h.new_sku(1500, 5).await;
        h.stack.faults.aim("dynamodb", "UpdateItem", "claim#order_confirmation", Kind::LostResponse);
        let body = order_body(&h.email("lost-email-claim"), &[(&sku, 1)], "pm_card_visa");
        let placed = post_order(&reqwest::Client::new(), h.api(), Some(&h.key()), body.to_string().as_bytes()).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.order_id();
        let mails = wait_for_emails(&h.stack, &id, 1, std::time::Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "the confirmation went out without waiting for a stale claim");
        assert!(
            h.stack.faults.injected.lock().unwrap().iter().any(|i| i.operation == "UpdateItem" && i.order_id.as_deref() == Some(id.as_str())),
            "the fault struck"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(h.stack.edge.emails_for(&id).len(), 1, "once");
    });
}
