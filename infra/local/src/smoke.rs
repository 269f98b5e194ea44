//! `orderflow-local smoke --api URL --sku SKU [--ops-token T] [--payment-method pm_...]`: the
//! post-deploy check. Places one order through the deployed API (Stripe test-mode keys make it a
//! test-mode hold), follows it to a final or waiting state, and prints each step and what failed.
//! Nothing here knows it is local: CI runs it against the local stack so it is known to work, and a
//! store runs it against its stack's `OrdersApiUrl`.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct SmokeOptions {
    pub api: String,
    pub sku: String,
    pub quantity: i64,
    pub payment_method: String,
    pub ops_token: Option<String>,
    pub email: String,
    pub country: String,
    pub wait: Duration,
}

/// States where an order has stopped moving without a person or a partner acting.
const RESTING: &[&str] = &["CONFIRMED", "UNDER_REVIEW", "DECLINED", "OUT_OF_STOCK", "REJECTED", "FAILED", "SHIPPED", "DELIVERED", "PARTIALLY_FULFILLED"];

/// Run the check; Err says what failed.
pub async fn run(o: &SmokeOptions) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let api = o.api.trim_end_matches('/');
    let address = json!({"name": "Smoke Test", "line1": "1 Test Street", "city": "Springfield", "postal_code": "12345", "country": o.country});
    let body = json!({
        "email": o.email, "shipping_address": address, "billing_address": address,
        "lines": [{"sku": o.sku, "quantity": o.quantity}], "payment_method": o.payment_method,
        "notes": "orderflow smoke check",
    });
    let key = format!("smoke-{}", uuid::Uuid::new_v4());
    println!("[smoke] POST {api}/orders ({} x {}, {})", o.quantity, o.sku, o.payment_method);
    let started = Instant::now();
    let resp =
        http.post(format!("{api}/orders")).header("Idempotency-Key", &key).json(&body).send().await.map_err(|e| format!("the API is not reachable: {e}"))?;
    let status = resp.status().as_u16();
    let placed: Value = resp.json().await.map_err(|e| format!("POST /orders answered {status} with a non-JSON body: {e}"))?;
    println!("[smoke] -> {status} in {} ms: {}", started.elapsed().as_millis(), placed["status"].as_str().or(placed["error"]["code"].as_str()).unwrap_or("?"));
    if status >= 500 {
        return Err(format!("checkout answered {status}: {placed}"));
    }
    if placed["error"].is_object() {
        return Err(format!("checkout refused the order: {} ({})", placed["error"]["code"], placed["error"]["message"]));
    }
    let (Some(id), Some(token)) = (placed["order_id"].as_str(), placed["access_token"].as_str()) else {
        return Err(format!("no order id or access token in the answer: {placed}"));
    };
    println!("[smoke] order {id}");
    // The same request again must be the same order (idempotency through the deployed stack).
    let again = http.post(format!("{api}/orders")).header("Idempotency-Key", &key).json(&body).send().await.map_err(|e| e.to_string())?;
    let replayed = again.headers().get("idempotent-replayed").is_some();
    let again: Value = again.json().await.unwrap_or(Value::Null);
    if again["order_id"] != placed["order_id"] || !replayed {
        return Err(format!("a retry with the same Idempotency-Key was not a replay of {id}: {again}"));
    }
    println!("[smoke] retry with the same Idempotency-Key: replayed, same order");

    let mut last = String::new();
    let view = loop {
        let r = http.get(format!("{api}/orders/{id}")).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if code != 200 {
            return Err(format!("GET /orders/{id} with its access token answered {code}: {v}"));
        }
        let st = v["status"].as_str().unwrap_or("").to_string();
        if st != last {
            println!("[smoke] status {st} ({} ms)", started.elapsed().as_millis());
            last = st.clone();
        }
        if RESTING.contains(&st.as_str()) || started.elapsed() > o.wait {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for e in view["timeline"].as_array().into_iter().flatten() {
        println!("[smoke]   {} {} {}", e["at"].as_str().unwrap_or(""), e["event"].as_str().unwrap_or(""), e["detail"].as_str().unwrap_or(""));
    }
    let unauth = http.get(format!("{api}/orders/{id}")).send().await.map_err(|e| e.to_string())?.status().as_u16();
    if unauth != 404 {
        return Err(format!("GET /orders/{id} without its token answered {unauth}, not 404"));
    }
    if let Some(t) = &o.ops_token {
        let r = http.get(format!("{api}/ops/orders/{id}")).bearer_auth(t).send().await.map_err(|e| e.to_string())?;
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if code != 200 {
            return Err(format!("GET /ops/orders/{id} with the operator token answered {code}: {v}"));
        }
        println!("[smoke] operator view: payment {} (hold {}), fraud score {}", v["payment"]["status"], v["payment"]["amount_authorized"], v["fraud"]["score"]);
    }
    match last.as_str() {
        "CONFIRMED" | "UNDER_REVIEW" | "SHIPPED" | "DELIVERED" => {
            println!("[smoke] ok: order {id} is {last} (waiting for a warehouse or a reviewer is expected)");
            Ok(())
        }
        "" => Err(format!("order {id} has no status")),
        other if RESTING.contains(&other) => Err(format!("order {id} ended {other}: {}", view["reason"].as_str().unwrap_or("see the timeline above"))),
        other => Err(format!("order {id} still {other} after {} s", o.wait.as_secs())),
    }
}
