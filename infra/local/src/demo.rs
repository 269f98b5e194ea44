//! The demo: sample orders down every checkout path, each printed with its decision, timeline,
//! emails, AWS calls and state transitions. Also the storefront-side helpers the tests reuse.

use crate::Stack;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The demo's shipping address as the domain type (routing tests use it).
pub fn demo_address() -> orderflow_shared::domain::order::Address {
    serde_json::from_value(address("US")).expect("demo address parses")
}

pub fn address(country: &str) -> Value {
    json!({"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "Springfield", "postal_code": "12345", "country": country})
}

/// A valid POST /orders body.
pub fn order_body(email: &str, lines: &[(&str, i64)], payment_method: &str) -> Value {
    json!({
        "email": email,
        "shipping_address": address("US"),
        "billing_address": address("US"),
        "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
        "payment_method": payment_method,
        "notes": "leave at the door"
    })
}

pub struct Placed {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

impl Placed {
    pub fn order_id(&self) -> String {
        self.body["order_id"].as_str().unwrap_or_default().to_string()
    }
    pub fn token(&self) -> String {
        self.body["access_token"].as_str().unwrap_or_default().to_string()
    }
}

pub async fn post_order(http: &reqwest::Client, api: &str, key: Option<&str>, body: &[u8]) -> Placed {
    let mut req = http.post(format!("{api}/orders")).header("content-type", "application/json").body(body.to_vec());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("API reachable");
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    let text = resp.text().await.unwrap_or_default();
    Placed { status, body: serde_json::from_str(&text).unwrap_or(json!({"raw": text})), replayed }
}

pub async fn get_order(http: &reqwest::Client, api: &str, id: &str, token: &str) -> (u16, Value) {
    let resp = http.get(format!("{api}/orders/{id}")).bearer_auth(token).send().await.expect("API reachable");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

pub async fn review(http: &reqwest::Client, stack: &Stack, id: &str, decision: &str) -> (u16, Value) {
    // The review task token arrives through the review queue; retry while it is on its way.
    let started = Instant::now();
    loop {
        let resp = http
            .post(format!("{}/ops/orders/{id}/review", stack.api_url))
            .bearer_auth(&stack.ops_token)
            .json(&json!({"decision": decision, "note": "checked by the demo operator"}))
            .send()
            .await
            .expect("API reachable");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 409 || body["error"]["code"] != "review_not_ready" || started.elapsed() > Duration::from_secs(15) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the order reaches `status` (as the customer sees it), up to `timeout`.
pub async fn wait_for_status(http: &reqwest::Client, api: &str, id: &str, token: &str, status: &str, timeout: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = get_order(http, api, id, token).await;
        if v["status"] == status || started.elapsed() > timeout {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait for a status by reading the table directly (not through the API), so the wait adds nothing
/// to the order's AWS call report.
pub async fn wait_quietly(stack: &Stack, id: &str, status: &str, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if stack.observer.orders.get(id).await.ok().flatten().is_some_and(|o| o.status.as_str() == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `n` emails for the order went through SES, up to `timeout`.
pub async fn wait_for_emails(stack: &Stack, id: &str, n: usize, timeout: Duration) -> Vec<crate::edge::SentEmail> {
    let started = Instant::now();
    loop {
        let e = stack.edge.emails_for(id);
        if e.len() >= n || started.elapsed() > timeout {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn show(stack: &Stack, http: &reqwest::Client, title: &str, placed: &Placed, expect_emails: usize) -> (String, usize) {
    let id = placed.order_id();
    let token = placed.token();
    println!("\n=== {title} ===");
    println!("POST /orders -> HTTP {}  status={}  reason={}", placed.status, placed.body["status"], placed.body["reason"]);
    if let Some(lines) = placed.body.get("out_of_stock") {
        println!("  out of stock lines: {lines}");
    }
    let t = &placed.body["totals"];
    println!(
        "  order {id}: subtotal {} + shipping {} + tax {} = total {} {} (minor units)",
        t["subtotal"],
        t["shipping"],
        t["tax"],
        t["total"],
        t["currency"].as_str().unwrap_or("")
    );
    let emails = wait_for_emails(stack, &id, expect_emails, Duration::from_secs(10)).await;
    let (_, view) = get_order(http, &stack.api_url, &id, &token).await;
    println!("  now: {}", view["status"]);
    println!("  timeline:");
    for e in view["timeline"].as_array().cloned().unwrap_or_default() {
        println!("    {}  {:<22} {}", e["at"].as_str().unwrap_or(""), e["event"].as_str().unwrap_or(""), e["detail"].as_str().unwrap_or(""));
    }
    if emails.is_empty() {
        println!("  emails: none");
    }
    for e in &emails {
        println!("  email to {:?}: \"{}\"", e.to, e.subject);
        for l in e.text.lines().take(12) {
            println!("      | {l}");
        }
    }
    let r = stack.report(&id).await;
    println!("  AWS calls ({} total):", r.calls.len());
    for (op, n) in &r.calls_by_operation {
        println!("    {n:>3} x {op}");
    }
    for (machine, states) in &r.states {
        println!("  {machine}: {} states entered: {}", states.len(), states.join(" -> "));
    }
    // Standard: the lifecycle (review orders) and the dispatch waits; the checkout is Express.
    let standard = r.transitions - r.states.get(crate::provision::CHECKOUT_MACHINE).map(|s| s.len()).unwrap_or(0);
    // $0.025 per 1,000 Standard transitions = 25 micro-dollars each (Express is billed per request).
    let micro = standard as u64 * 25;
    println!(
        "  state transitions: {} ({} Standard = ${}.{:06} at $0.025 per 1,000); Express runs: {:?}",
        r.transitions,
        standard,
        micro / 1_000_000,
        micro % 1_000_000,
        r.child_runs
    );
    (view["status"].as_str().unwrap_or("").to_string(), stack.edge.emails_for(&id).len())
}

pub async fn run(stack: &Stack) -> Result<(), String> {
    let http = reqwest::Client::new();
    let api = &stack.api_url;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let key = |n: &str| format!("demo-{run_id}-{n}");
    let email = |n: &str| format!("{n}.{run_id}@example.com");

    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut check = |what: &str, ok: bool| checks.push((what.to_string(), ok));

    let happy =
        post_order(&http, api, Some(&key("happy")), order_body(&email("happy"), &[("MUG-BLUE", 2), ("TEE-M", 1)], "pm_card_visa").to_string().as_bytes()).await;
    println!("\n=== 1. Happy path: POST /orders -> confirmed -> warehouse ships -> label -> capture -> carrier tracking -> DELIVERED ===");
    println!("POST /orders -> HTTP {}  status={}", happy.status, happy.body["status"]);
    wait_quietly(stack, &happy.order_id(), "DELIVERED", Duration::from_secs(90)).await;
    // confirmation, shipped, out for delivery, delivered, feedback request
    let (st, mails) = show(stack, &http, "1. (continued) the order's whole journey", &happy, 5).await;
    let (_, delivered) = get_order(&http, api, &happy.order_id(), &happy.token()).await;
    let total = happy.body["totals"]["total"].as_i64().unwrap_or(-1);
    let intents = stack.gateway.intents_for_order(&happy.order_id());
    let received: i64 = intents.iter().map(|pi| pi["amount_received"].as_i64().unwrap_or(0)).sum();
    println!("  captured at the gateway: {received} of the {total} held (minor units); the customer sees charged = {}", delivered["charged"]);
    for sh in delivered["shipments"].as_array().cloned().unwrap_or_default() {
        println!("  parcel {}: {} {} -> {}", sh["shipment_id"], sh["carrier"], sh["tracking_code"], sh["tracking_status"]);
    }
    check(
        "happy path reaches DELIVERED, captured = order total, 5 emails",
        happy.status == 201 && st == "DELIVERED" && received == total && delivered["charged"] == total && mails == 5,
    );

    let declined = post_order(
        &http,
        api,
        Some(&key("declined")),
        order_body(&email("declined"), &[("LAMP-01", 1)], "pm_card_chargeDeclinedInsufficientFunds").to_string().as_bytes(),
    )
    .await;
    let (st, mails) = show(stack, &http, "2. Card declined: stock released, no email", &declined, 0).await;
    check("declined card is DECLINED without email", declined.status == 402 && st == "DECLINED" && mails == 0);

    let oos =
        post_order(&http, api, Some(&key("oos")), order_body(&email("oos"), &[("POSTER-LTD", 2), ("MUG-BLUE", 1)], "pm_card_visa").to_string().as_bytes())
            .await;
    let (st, _) = show(stack, &http, "3. Out of stock: nothing reserved, nothing held", &oos, 0).await;
    check("short stock is OUT_OF_STOCK with no hold", oos.status == 409 && st == "OUT_OF_STOCK" && stack.gateway.intents_for_order(&oos.order_id()).is_empty());

    let fraud =
        post_order(&http, api, Some(&key("fraud")), order_body(&email("fraud"), &[("WATCH-GOLD", 1)], "pm_card_riskLevelHighest").to_string().as_bytes()).await;
    let (st, _) = show(stack, &http, "4. Fraud reject: hold voided, stock back", &fraud, 0).await;
    check(
        "highest risk is REJECTED and the hold voided",
        st == "REJECTED" && stack.gateway.intents_for_order(&fraud.order_id()).iter().all(|pi| pi["status"] == "canceled"),
    );

    let reviewed =
        post_order(&http, api, Some(&key("review")), order_body(&email("review"), &[("BAG-TOTE", 1)], "pm_card_riskLevelElevated").to_string().as_bytes())
            .await;
    println!("\n=== 5. Review: UNDER_REVIEW, then an operator approves ===");
    println!("POST /orders -> HTTP {}  status={}", reviewed.status, reviewed.body["status"]);
    let (st, _) = review(&http, stack, &reviewed.order_id(), "approve").await;
    println!("POST /ops/orders/{}/review approve -> HTTP {st}", reviewed.order_id());
    wait_quietly(stack, &reviewed.order_id(), "DELIVERED", Duration::from_secs(60)).await;
    let (st, mails) = show(stack, &http, "5. (continued) after approval it is fulfilled like any other", &reviewed, 5).await;
    check("reviewed order waits UNDER_REVIEW, then is confirmed and delivered", reviewed.status == 202 && st == "DELIVERED" && mails == 5);

    let replay =
        post_order(&http, api, Some(&key("happy")), order_body(&email("happy"), &[("MUG-BLUE", 2), ("TEE-M", 1)], "pm_card_visa").to_string().as_bytes()).await;
    println!("\n=== 6. The storefront retries order 1 with the same Idempotency-Key ===");
    println!("POST /orders -> HTTP {} replayed={} same order={}", replay.status, replay.replayed, replay.order_id() == happy.order_id());
    check("a retried POST replays the first answer", replay.replayed && replay.order_id() == happy.order_id());

    // 7. After the sale: delivered, returned (the sandbox carrier sells a return label, the sandbox
    // warehouse reports the parcel resellable), restocked and refunded.
    let ret = post_order(&http, api, Some(&key("return")), order_body(&email("return"), &[("MUG-BLUE", 2)], "pm_card_visa").to_string().as_bytes()).await;
    println!("\n=== 7. Return: delivered -> POST /orders/{{id}}/returns (1 of 2 mugs) -> label -> warehouse inspects -> restock -> refund ===");
    wait_quietly(stack, &ret.order_id(), "DELIVERED", Duration::from_secs(90)).await;
    let asked = http
        .post(format!("{api}/orders/{}/returns", ret.order_id()))
        .bearer_auth(ret.token())
        .header("Idempotency-Key", key("return-1"))
        .json(&json!({"lines": [{"sku": "MUG-BLUE", "quantity": 1}], "reason": "no_longer_needed"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    println!("POST /orders/{}/returns -> HTTP {}", ret.order_id(), asked.status().as_u16());
    let started = Instant::now();
    let mut refunded = 0;
    while started.elapsed() < Duration::from_secs(90) {
        if let Some(o) = stack.observer.orders.get(&ret.order_id()).await.ok().flatten() {
            if let Some(r) = o.refunds.values().find(|r| r.return_id.is_some() && r.status == "succeeded") {
                refunded = r.amount_minor;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // confirmation, shipped, out for delivery, delivered, feedback, return label, refund
    let (_, mails) = show(stack, &http, "7. (continued) the return's journey", &ret, 7).await;
    let (_, view) = get_order(&http, api, &ret.order_id(), &ret.token()).await;
    let parcel = &view["returns"][0]["parcels"][0];
    println!(
        "  return {}: parcel {} (label {}), refunded {refunded} of {} charged",
        view["returns"][0]["return_id"], parcel["status"], parcel["label_url"], view["charged"]
    );
    check(
        "a returned unit is restocked and refunded (what was charged for it), label and refund emailed",
        refunded > 0 && parcel["status"] == "refunded" && mails == 7,
    );

    // 8. A cancel before anything ships: the order waits for a reviewer, the customer cancels.
    let cancelled =
        post_order(&http, api, Some(&key("cancel")), order_body(&email("cancel"), &[("BAG-TOTE", 1)], "pm_card_riskLevelElevated").to_string().as_bytes())
            .await;
    println!("\n=== 8. Cancel before it ships: UNDER_REVIEW, the customer cancels -> hold voided, stock released, one email ===");
    let started = Instant::now();
    let mut cancel_status = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let r = http.post(format!("{api}/orders/{}/cancel", cancelled.order_id())).bearer_auth(cancelled.token()).send().await.map_err(|e| e.to_string())?;
        cancel_status = r.status().as_u16();
        // 409 review_not_ready while the review task is still being queued
        if cancel_status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("POST /orders/{}/cancel -> HTTP {cancel_status}", cancelled.order_id());
    wait_quietly(stack, &cancelled.order_id(), "CANCELLED", Duration::from_secs(60)).await;
    let (st, mails) = show(stack, &http, "8. (continued) cancelled", &cancelled, 1).await;
    check(
        "a cancel before shipping voids the hold and emails once",
        st == "CANCELLED" && mails == 1 && stack.gateway.intents_for_order(&cancelled.order_id()).iter().all(|pi| pi["status"] == "canceled"),
    );

    // WH-4: the webhook endpoint only verifies, records the event id and queues; these are its
    // answer times as the carrier saw them (through the local API's event conversion).
    let mut t: Vec<u128> = stack.carrier.answer_micros.lock().unwrap().clone();
    t.sort_unstable();
    if !t.is_empty() {
        let pct = |p: usize| t[(t.len() * p / 100).min(t.len() - 1)] as f64 / 1000.0;
        println!("\n=== Carrier webhooks (WH-4: verify, record, queue; applied off the queue) ===");
        println!("  {} delivered; answered in p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms", t.len(), pct(50), pct(90), pct(100));
    }

    println!("\n=== Summary ===");
    let mut failed = 0;
    for (what, ok) in &checks {
        println!("  [{}] {what}", if *ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    if failed > 0 {
        return Err(format!("{failed} demo check(s) failed"));
    }
    Ok(())
}
