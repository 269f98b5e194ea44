//! `orderflow-local bench [--orders N] [--concurrency C]`: N orders (default 200) down a mix of
//! paths through the real state machines on the local stack (sandbox warehouses and carrier in auto
//! mode), then, per path, what each order cost in AWS terms (from what crossed the edge: state
//! transitions, Lambda invocations and their time, DynamoDB calls with their tables and items, SQS
//! sends, API requests, emails, bytes logged) priced with `infra/local/prices-us-east-1.json`, and
//! checkout latency at 1, 10 and 50 concurrent clients. Writes `target/bench/report.json`.
//!
//! What is measured and what is estimated is said in the report (`notes`): local Lambda time is
//! wall time on this emulator (an upper bound: moto answers ~10x slower than AWS), DynamoDB write
//! units use the order item's final size for writes to the orders table and 1 KB for others, SQS
//! requests count each message as send + receive + delete.

use crate::demo::{order_body, post_order};
use crate::edge::Call;
use crate::Stack;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    Delivered,
    Review,
    Declined,
    OutOfStock,
    Cancelled,
    Returned,
}

impl Path {
    fn of(i: usize) -> Path {
        match i % 20 {
            14 => Path::Review,
            15 => Path::Declined,
            16 => Path::OutOfStock,
            17 => Path::Cancelled,
            18 | 19 => Path::Returned,
            _ => Path::Delivered,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Path::Delivered => "delivered (1 parcel)",
            Path::Review => "review -> approved -> delivered",
            Path::Declined => "declined",
            Path::OutOfStock => "out of stock",
            Path::Cancelled => "cancelled under review",
            Path::Returned => "delivered -> returned -> refunded",
        }
    }
}

fn prices(repo: &std::path::Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(repo.join("infra/local/prices-us-east-1.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Statuses an order ends in (or waits in for a person): where the driver stops waiting.
fn at_rest(status: &str) -> bool {
    matches!(status, "DELIVERED" | "DECLINED" | "OUT_OF_STOCK" | "REJECTED" | "FAILED" | "CANCELLED" | "PARTIALLY_FULFILLED")
}

/// Wait until the order is `want` or at rest elsewhere (a fault may end it another way).
async fn reach(stack: &Stack, id: &str, want: &str, wait: Duration) -> String {
    let started = Instant::now();
    loop {
        let st = stack.observer.orders.get(id).await.ok().flatten().map(|o| o.status.as_str().to_string()).unwrap_or_default();
        if st == want || at_rest(&st) || started.elapsed() > wait {
            return st;
        }
        // Each watcher's read lands on moto too: at 25 orders in flight a 150 ms poll was a third of
        // its requests.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

/// A storefront's or operator's request, retried as a client should when the answer is a 5xx or 429
/// (or none): the same request, the same Idempotency-Key. 0 when it never got an answer.
pub async fn send_retrying(make: impl Fn() -> reqwest::RequestBuilder) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for attempt in 0..8u32 {
        if let Ok(r) = make().send().await {
            let st = r.status().as_u16();
            last = (st, r.json().await.unwrap_or(Value::Null));
            if st < 500 && st != 429 {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(250 * (attempt as u64 + 1))).await;
    }
    last
}

/// One order down its path; its id when it got there.
async fn one(stack: &Stack, http: &reqwest::Client, i: usize, run: &str) -> Option<(Path, String)> {
    let path = Path::of(i);
    let api = &stack.api_url;
    let email = format!("bench{i}.{run}@example.com");
    let (lines, pm): (Vec<(&str, i64)>, &str) = match path {
        Path::Review | Path::Cancelled => (vec![("BAG-TOTE", 1)], "pm_card_riskLevelElevated"),
        Path::Declined => (vec![("MUG-BLUE", 1)], "pm_card_chargeDeclinedInsufficientFunds"),
        Path::OutOfStock => (vec![("POSTER-LTD", 99)], "pm_card_visa"),
        _ => (vec![("MUG-BLUE", 1)], "pm_card_visa"),
    };
    let body = order_body(&email, &lines, pm);
    let key = format!("bench-{run}-{i}");
    let (st, placed) = send_retrying(|| http.post(format!("{api}/orders")).header("Idempotency-Key", &key).json(&body)).await;
    let id = placed["order_id"].as_str().unwrap_or_default().to_string();
    let token = placed["access_token"].as_str().unwrap_or_default().to_string();
    if id.is_empty() {
        eprintln!("[drive] order {i} ({}) not placed: {st} {placed}", path.name());
        return None;
    }
    let wait = Duration::from_secs(120);
    match path {
        Path::Declined | Path::OutOfStock => {}
        Path::Delivered => {
            reach(stack, &id, "DELIVERED", wait).await;
        }
        Path::Review | Path::Cancelled => {
            reach(stack, &id, "UNDER_REVIEW", wait).await;
            let started = Instant::now();
            while started.elapsed() < wait {
                let (st, body) = if path == Path::Review {
                    let review = json!({"decision": "approve", "note": "checked by the bench"});
                    send_retrying(|| http.post(format!("{api}/ops/orders/{id}/review")).bearer_auth(&stack.ops_token).json(&review)).await
                } else {
                    send_retrying(|| http.post(format!("{api}/orders/{id}/cancel")).bearer_auth(&token)).await
                };
                // The review task's token may still be on its way (review_not_ready); anything else is an answer.
                if st != 409 || body["error"]["code"] != "review_not_ready" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            reach(stack, &id, if path == Path::Review { "DELIVERED" } else { "CANCELLED" }, wait).await;
        }
        Path::Returned => {
            if reach(stack, &id, "DELIVERED", wait).await != "DELIVERED" {
                return Some((path, id));
            }
            let body = json!({"lines": [{"sku": "MUG-BLUE", "quantity": 1}], "reason": "no_longer_needed"});
            let key = format!("bench-ret-{run}-{i}");
            send_retrying(|| http.post(format!("{api}/orders/{id}/returns")).bearer_auth(&token).header("Idempotency-Key", &key).json(&body)).await;
            let started = Instant::now();
            while started.elapsed() < wait {
                let done = stack
                    .observer
                    .orders
                    .get(&id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|o| o.refunds.values().any(|r| r.return_id.is_some() && r.status == "succeeded"));
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
        }
    }
    Some((path, id))
}

/// The load driver the bench and the soak share: `orders` orders down the mix, `concurrency` in
/// flight at a time; each order's path and id once it got to the end of its path.
pub async fn drive(stack: &Stack, orders: usize, concurrency: usize, run: &str) -> Vec<(Path, String)> {
    use futures::StreamExt;
    futures::stream::iter(0..orders)
        .map(|i| async move {
            let http = reqwest::Client::new();
            let t = Instant::now();
            let r = one(stack, &http, i, run).await;
            if t.elapsed() > Duration::from_secs(30) {
                eprintln!("[drive] order {i} ({}) took {:.0} s", Path::of(i).name(), t.elapsed().as_secs_f64());
            }
            r
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// The AWS bill of one order, by service (dollars), from what crossed the edge.
async fn cost(stack: &Stack, id: &str, p: &Value, log: &str) -> BTreeMap<&'static str, f64> {
    let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
    let report = stack.report(id).await;
    let order = stack.observer.orders.get(id).await.ok().flatten();
    let order_kb = order.as_ref().map(|o| serde_json::to_vec(o).map(|v| v.len()).unwrap_or(1024)).unwrap_or(1024).div_ceil(1024) as f64;
    let mut c: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut add = |k: &'static str, v: f64| *c.entry(k).or_default() += v;
    // Step Functions: the checkout is Express (a request and its duration), the lifecycle and any
    // return are Standard (a transition per state entered).
    let standard = report.states.iter().filter(|(m, _)| !m.contains("checkout")).map(|(_, s)| s.len()).sum::<usize>();
    let mut returns_transitions = 0;
    if let Some(o) = &order {
        for rid in o.returns.keys() {
            let arn = crate::provision::execution_arn("orderflow-returns", rid);
            if let Ok(h) = stack.moto_sfn.get_execution_history().execution_arn(&arn).max_results(1000).send().await {
                returns_transitions += h.events.iter().filter(|e| e.r#type.as_str().ends_with("StateEntered")).count();
            }
        }
    }
    add("step_functions", (standard + returns_transitions) as f64 * f("step_functions_standard_per_transition"));
    let checkout_ran = report.states.keys().any(|m| m.contains("checkout"));
    if checkout_ran {
        // Express duration: billed per 100 ms at 64 MB; the checkout's steps' own time stands for it.
        add("step_functions", f("step_functions_express_per_request") + 0.3 * f("express_memory_gb") * f("step_functions_express_per_gb_second"));
    }
    let calls: &Vec<Call> = &report.calls;
    for call in calls {
        match (call.service.as_str(), call.operation.as_str()) {
            ("lambda", _) => {
                add("lambda", f("lambda_per_request") + call.micros as f64 / 1e6 * f("lambda_memory_gb") * f("lambda_arm64_per_gb_second"));
                if matches!(call.target.as_deref(), Some("orders_api") | Some("partner_api") | Some("store_data_api")) {
                    add("api_gateway", f("api_gateway_http_per_request"));
                }
            }
            ("dynamodb", op) => {
                let orders = call.target.as_deref().is_some_and(|t| t.contains("OrdersTable"));
                let size = if orders { order_kb } else { 1.0 };
                let (w, r) = match op {
                    "PutItem" | "UpdateItem" | "DeleteItem" => (size, 0.0),
                    "TransactWriteItems" => (2.0 * call.items.max(1) as f64, 0.0),
                    "BatchWriteItem" => (call.items.max(1) as f64, 0.0),
                    "GetItem" => (0.0, (size / 4.0).ceil()),
                    "BatchGetItem" => (0.0, call.items.max(1) as f64),
                    "Query" => (0.0, 1.0),
                    _ => (0.0, 0.0),
                };
                add("dynamodb", w * f("dynamodb_per_write_unit") + r * f("dynamodb_per_read_unit"));
            }
            ("sqs", "SendMessage") => add("sqs", 3.0 * f("sqs_per_request")),
            _ => {}
        }
    }
    // Messages the state machines send themselves (pick lists, review tasks, shipped emails).
    let sent_by_machines =
        report.states.values().flatten().filter(|s| matches!(s.as_str(), "AwaitShipment" | "AwaitReview" | "NotifyShipped" | "AwaitReturn")).count();
    add("sqs", sent_by_machines as f64 * 3.0 * f("sqs_per_request"));
    // The sparse index writes (email at create; attention on entering and leaving an attention status).
    add("dynamodb", 3.0 * f("dynamodb_per_write_unit"));
    let logged: usize = log.lines().filter(|l| l.contains(id)).map(|l| l.len() + 1).sum();
    add("cloudwatch_logs", logged as f64 / 1e9 * f("cloudwatch_logs_per_gb_ingested"));
    add("ses (separate)", stack.edge.emails_for(id).len() as f64 * f("ses_per_email"));
    c
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Checkout latency at `concurrency` clients placing `per_client` orders each: (p50, p95, p99 ms, orders/s).
async fn latency(stack: &Stack, concurrency: usize, per_client: usize, run: &str) -> (f64, f64, f64, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let api = stack.api_url.clone();
            let run = run.to_string();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut out = vec![];
                for k in 0..per_client {
                    let body = order_body(&format!("lat{c}-{k}.{run}@example.com"), &[("MUG-BLUE", 1)], "pm_card_visa").to_string();
                    let t = Instant::now();
                    let _ = post_order(&http, &api, Some(&format!("lat-{run}-{concurrency}-{c}-{k}")), body.as_bytes()).await;
                    out.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                out
            })
        })
        .collect();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    (percentile(&all, 0.5), percentile(&all, 0.95), percentile(&all, 0.99), all.len() as f64 / secs)
}

pub async fn run(stack: &Stack, orders: usize, concurrency: usize) -> Result<(), String> {
    let repo = crate::Options::default().repo;
    let p = prices(&repo)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    println!("[bench] {orders} orders, {concurrency} at a time, mix: 70% delivered, 10% returned, 5% each review, cancel, decline, out of stock");
    let started = Instant::now();
    let done = drive(stack, orders, concurrency, &run).await;
    let journey_secs = started.elapsed().as_secs_f64();
    // Let the queues drain (emails, webhooks) before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(repo.join("target/local/functions.log")).unwrap_or_default();
    let mut per_path: BTreeMap<Path, Vec<BTreeMap<&'static str, f64>>> = BTreeMap::new();
    for (path, id) in &done {
        per_path.entry(*path).or_default().push(cost(stack, id, &p, &log).await);
    }
    let mut table = vec![];
    let mut paths_json = serde_json::Map::new();
    let mut mix_total = 0.0;
    let mut mix_n = 0usize;
    let mut delivered_per_million = 0.0;
    for (path, costs) in &per_path {
        let n = costs.len() as f64;
        let mut by: BTreeMap<&str, f64> = BTreeMap::new();
        for c in costs {
            for (k, v) in c {
                *by.entry(k).or_default() += v / n;
            }
        }
        let excl_email: f64 = by.iter().filter(|(k, _)| !k.starts_with("ses")).map(|(_, v)| v).sum();
        if *path == Path::Delivered {
            delivered_per_million = excl_email * 1e6;
        }
        mix_total += excl_email * n;
        mix_n += costs.len();
        table.push(format!(
            "  {:<34} {:>4} orders  ${:>8.2} per 1M excl. email  ({})",
            path.name(),
            costs.len(),
            excl_email * 1e6,
            by.iter().map(|(k, v)| format!("{k} ${:.2}", v * 1e6)).collect::<Vec<_>>().join(", ")
        ));
        paths_json.insert(path.name().into(), json!({"orders": costs.len(), "per_million_orders_excl_email": excl_email * 1e6, "by_service_per_million": by.iter().map(|(k, v)| (k.to_string(), v * 1e6)).collect::<BTreeMap<_, _>>()}));
    }
    println!("\n[bench] cost per path (us-east-1 list prices of {}, no free tier):", p["date"].as_str().unwrap_or("?"));
    for l in &table {
        println!("{l}");
    }
    let mix = if mix_n > 0 { mix_total / mix_n as f64 * 1e6 } else { 0.0 };
    println!("  {:<34} {:>4} orders  ${mix:>8.2} per 1M excl. email", "the mix", mix_n);
    println!("[bench] journeys: {} of {orders} reached their end in {journey_secs:.0} s", done.len());

    println!("\n[bench] checkout latency (POST /orders to its answer), quiet stack:");
    let mut lat = serde_json::Map::new();
    let mut p50_1 = 0.0;
    let mut tput_10 = 0.0;
    for (c, per) in [(1usize, 10usize), (10, 5), (50, 2)] {
        let (p50, p95, p99, tput) = latency(stack, c, per, &run).await;
        println!("  {c:>2} concurrent: p50 {p50:.0} ms, p95 {p95:.0} ms, p99 {p99:.0} ms, {tput:.2} orders/s");
        lat.insert(format!("{c}"), json!({"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "orders_per_second": tput}));
        if c == 1 {
            p50_1 = p50;
        }
        if c == 10 {
            tput_10 = tput;
        }
    }
    let report = json!({
        "orders": orders, "completed": done.len(), "prices": p, "paths": paths_json, "mix_per_million_excl_email": mix,
        "delivered_one_parcel_per_million_excl_email": delivered_per_million, "checkout_latency": lat,
        "notes": [
            "Lambda duration is the handler's wall time on this machine's emulator (an upper bound: moto answers ~10x slower than AWS); 256 MB, arm64 prices.",
            "DynamoDB: writes to the orders table use the order item's final size (ceil KB); other writes 1 KB; transactions 2x per item; 3 sparse-index writes per order; reads 1 unit.",
            "SQS: each message is send + receive + delete; messages the state machines send are counted from their states.",
            "API Gateway: each request the orders, partner and store data APIs served for the order. Logs: bytes of the order's JSON log lines.",
            "Not included: the fixed monthly floor (secrets, alarms, empty receives of the event source mappings), Express execution logs (off: level ERROR)."
        ],
    });
    let out = repo.join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| e.to_string())?;
    println!("\n[bench] wrote {}", out.join("report.json").display());
    println!("cost: ${delivered_per_million:.2} per 1M delivered orders excl. email; checkout p50 {p50_1:.0} ms; {tput_10:.2} orders/s at 10 concurrent");
    Ok(())
}
