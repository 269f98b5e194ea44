//! `orderflow-local soak [--orders N] [--concurrency C] [--fault-rate R]` (#10 item 12): the bench's
//! load driver (`bench::drive`, the same mix of paths through the real state machines) on a stack
//! where a share R (default 5%) of the functions' DynamoDB, SQS, gateway and carrier calls fail
//! transiently, half of them after the call took effect (`faults.rs`). Once the stack has settled it
//! checks what must hold whatever failed, prints the figures and fails when any check fails:
//!
//! - every order is at rest: a final status, or under review (waiting for a person);
//! - stock is conserved per SKU and per warehouse (INV-2 with returns), and nothing is reserved or
//!   allocated but for the orders under review;
//! - what the gateway captured for each order is the value of its parcels that left (PAY-2);
//! - no hold is open on a final order (one left for an operator's decision on uncharged goods is
//!   counted apart);
//! - an email went out twice only for an order some of whose calls a fault struck (counted).

use crate::bench::{drive, Path};
use crate::Stack;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Findings {
    pub orders: usize,
    pub by_status: BTreeMap<String, usize>,
    pub violations: Vec<String>,
    pub duplicate_emails: usize,
    pub uncharged_for_operator: usize,
}

const FINAL: [&str; 7] = ["DELIVERED", "DECLINED", "OUT_OF_STOCK", "REJECTED", "FAILED", "CANCELLED", "PARTIALLY_FULFILLED"];

/// Enough stock for the run (the fixture's is sized for the demo), added as an operator would.
async fn top_up(stack: &Stack, orders: usize, run: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    for (sku, wh) in [("MUG-BLUE", "wh-east"), ("MUG-BLUE", "wh-west"), ("BAG-TOTE", "wh-west")] {
        let body = json!({"warehouse": wh, "delta": orders, "reason": "soak stock"});
        let url = format!("{}/ops/stock/{sku}/adjustments", stack.api_url);
        let key = format!("soak-{run}-{sku}-{wh}");
        let (st, b) = crate::bench::send_retrying(|| {
            http.post(&url).bearer_auth(&stack.ops_token).header("Idempotency-Key", &key).header("X-Operator", "soak").json(&body)
        })
        .await;
        if !(200..300).contains(&st) {
            return Err(format!("stock top-up {sku}@{wh}: {st} {b}"));
        }
    }
    Ok(())
}

/// Wait until every order is at rest (or `wait` passed); each order's final read.
async fn settle(stack: &Stack, ids: &[String], wait: Duration) -> BTreeMap<String, orderflow_shared::domain::order::Order> {
    let started = Instant::now();
    loop {
        let mut out = BTreeMap::new();
        for id in ids {
            if let Ok(Some(o)) = stack.observer.orders.get(id).await {
                out.insert(id.clone(), o);
            }
        }
        let moving = out.values().filter(|o| !at_rest(o)).count() + (ids.len() - out.len());
        if moving == 0 || started.elapsed() > wait {
            // The queues' last messages (emails, webhooks) drain.
            tokio::time::sleep(Duration::from_secs(3)).await;
            return out;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn at_rest(o: &orderflow_shared::domain::order::Order) -> bool {
    let st = o.status.as_str();
    use orderflow_shared::domain::returns::status;
    let returns_done =
        o.returns.values().flat_map(|r| r.parcels.values()).all(|p| [status::RECEIVED, status::REFUNDED, status::EXPIRED].contains(&p.status.as_str()))
            && o.refunds.values().all(|r| matches!(r.status.as_str(), "succeeded" | "failed" | "canceled"));
    (FINAL.contains(&st) && returns_done) || st == "UNDER_REVIEW"
}

/// Check what must hold after the run.
pub async fn check(stack: &Stack, placed: &[(Path, String)], wait: Duration) -> Findings {
    let ids: Vec<String> = placed.iter().map(|(_, id)| id.clone()).collect();
    let orders = settle(stack, &ids, wait).await;
    let mut f = Findings { orders: ids.len(), ..Default::default() };
    let mut bad = |s: String| f.violations.push(s);
    for id in &ids {
        match orders.get(id) {
            None => bad(format!("{id}: no order record")),
            Some(o) if !at_rest(o) => bad(format!(
                "{id}: not at rest: {} (returns {:?}, refunds {:?})",
                o.status.as_str(),
                o.returns.values().flat_map(|r| r.parcels.values().map(|p| p.status.clone())).collect::<Vec<_>>(),
                o.refunds.values().map(|r| r.status.clone()).collect::<Vec<_>>()
            )),
            _ => {}
        }
    }
    // Stock, per SKU and per warehouse; what orders under review hold.
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for o in orders.values().filter(|o| o.status.as_str() == "UNDER_REVIEW") {
        for l in &o.lines {
            *held.entry(l.sku.clone()).or_default() += l.quantity;
        }
    }
    let skus: BTreeSet<String> = orders.values().flat_map(|o| o.lines.iter().map(|l| l.sku.clone())).collect();
    let warehouses = vec!["wh-east".to_string(), "wh-west".to_string()];
    for sku in &skus {
        match stack.observer.stock.level(sku).await {
            Ok(Some(l)) => {
                if l.available + l.reserved + (l.shipped - l.returned) + l.written_off != l.received + l.adjusted || l.available < 0 {
                    bad(format!("{sku}: books do not balance: {l:?}"));
                }
                if l.reserved != held.get(sku).copied().unwrap_or(0) {
                    bad(format!("{sku}: {} reserved, orders under review hold {}", l.reserved, held.get(sku).copied().unwrap_or(0)));
                }
            }
            other => bad(format!("{sku}: no stock level ({other:?})")),
        }
    }
    if let Ok(by_wh) = stack.observer.stock.warehouse_stock(&skus.iter().cloned().collect::<Vec<_>>(), &warehouses).await {
        for (wh, m) in &by_wh {
            for (sku, s) in m {
                if s.available + s.allocated + (s.shipped - s.returned) + s.written_off != s.received + s.adjusted {
                    bad(format!("{sku} at {wh}: books do not balance: {s:?}"));
                }
                if s.allocated != 0 && held.get(sku).copied().unwrap_or(0) == 0 {
                    bad(format!("{sku} at {wh}: {} allocated with no order waiting", s.allocated));
                }
            }
        }
    }
    // Money: captured = value of what left; no hold open on a final order.
    let hit = stack.faults.injected.lock().unwrap().iter().filter_map(|i| i.order_id.clone()).collect::<BTreeSet<_>>();
    for (id, o) in &orders {
        let intents = stack.gateway.intents_for_order(id);
        let received: i64 = intents.iter().map(|pi| pi["amount_received"].as_i64().unwrap_or(0)).sum();
        let left: i64 = o.shipments.values().filter(|s| s.tracking_code.is_some()).filter_map(|s| s.amount.as_ref().map(|m| m.minor)).sum();
        let uncharged = o.status.as_str() == "FAILED" && left > received;
        if uncharged {
            f.uncharged_for_operator += 1;
        } else if received != left {
            bad(format!("{id} ({}): captured {received}, parcels that left are worth {left}", o.status.as_str()));
        }
        let open: Vec<&Value> = intents.iter().filter(|pi| pi["status"] == "requires_capture").collect();
        if FINAL.contains(&o.status.as_str()) && !open.is_empty() && !uncharged {
            bad(format!("{id} ({}): hold still open at the gateway ({})", o.status.as_str(), open[0]["id"]));
        }
        // Emails: one of each, unless a fault struck the order's calls.
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in stack.edge.emails_for(id) {
            *seen.entry((e.subject, e.text)).or_default() += 1;
        }
        let twice: usize = seen.values().map(|n| n - 1).sum();
        f.duplicate_emails += twice;
        if twice > 0 && !hit.contains(id) {
            bad(format!("{id}: {twice} email(s) sent twice with no fault on its calls"));
        }
        *f.by_status.entry(o.status.as_str().to_string()).or_default() += 1;
    }
    f
}

pub async fn run(stack: &Stack, orders: usize, concurrency: usize) -> Result<Findings, String> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    stack.faults.arm(false);
    top_up(stack, orders, &run).await?;
    stack.faults.arm(true);
    println!("[soak] {orders} orders, {concurrency} at a time, the bench's mix; faults on the functions' DynamoDB, SQS, gateway and carrier calls");
    let started = Instant::now();
    let placed = drive(stack, orders, concurrency, &run).await;
    let driven = started.elapsed().as_secs_f64();
    let findings = check(stack, &placed, Duration::from_secs(240)).await;
    stack.faults.arm(false);
    let injected = stack.faults.injected.lock().unwrap().len();
    let after = stack.faults.injected.lock().unwrap().iter().filter(|i| i.kind.after_effect()).count();
    println!("[soak] {} of {orders} orders placed; driven in {driven:.0} s, settled in {:.0} s", placed.len(), started.elapsed().as_secs_f64());
    println!("[soak] faults injected: {injected} ({after} after the call took effect)");
    for (k, n) in stack.faults.counts() {
        println!("  {k:<28} {n}");
    }
    println!("[soak] orders by status: {:?}", findings.by_status);
    println!("[soak] emails sent twice (a fault between sending and recording): {}", findings.duplicate_emails);
    println!("[soak] failed orders with goods that left uncharged (for an operator): {}", findings.uncharged_for_operator);
    for v in findings.violations.iter().take(30) {
        println!("  VIOLATION {v}");
    }
    println!("[soak] {} violation(s)", findings.violations.len());
    if placed.len() < orders {
        return Err(format!("{} orders were never placed (the storefront's retries ran out)", orders - placed.len()));
    }
    if !findings.violations.is_empty() {
        return Err(format!("{} violation(s)", findings.violations.len()));
    }
    Ok(findings)
}
