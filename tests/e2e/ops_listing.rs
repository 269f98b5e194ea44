//! `GET /ops/orders`: operators find the orders that need them through the orders table's sparse
//! indexes (by status, by email, by date range), a page at a time, never by a scan.

use orderflow_e2e::*;
use serde_json::Value;

type Params = Vec<(&'static str, String)>;

fn q(pairs: &[(&'static str, &str)]) -> Params {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

async fn list(h: &Harness, params: &Params) -> (u16, Value) {
    let r = reqwest::Client::new().get(format!("{}/ops/orders", h.api())).query(params).bearer_auth(&h.stack.ops_token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Every page of a listing, following next_cursor; the order ids in the order shown.
async fn walk(h: &Harness, params: Params, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut page_params = params.clone();
        page_params.push(("limit", limit.to_string()));
        if let Some(c) = &cursor {
            page_params.push(("cursor", c.clone()));
        }
        let (st, page) = list(h, &page_params).await;
        assert_eq!(st, 200, "{page}");
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= limit, "{page}");
        ids.extend(orders.iter().map(|o| o["order_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
    panic!("more than 50 pages");
}

#[test]
fn operators_list_orders_under_review_by_email_and_date_a_page_at_a_time() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1500, 20).await;
        let email = h.email("listing");
        let before = chrono::Utc::now().to_rfc3339();
        let mut review = Vec::new();
        for _ in 0..3 {
            let placed = h.place(&order_body(&email, &[(&sku, 1)], "pm_card_riskLevelElevated")).await;
            assert_eq!(placed.body["status"], "UNDER_REVIEW", "{}", placed.body);
            review.push(placed.order_id());
        }
        // A fourth order by the same email (its status depends on the velocity rule: a fourth order
        // in a day may go to review too); it left PENDING either way.
        let confirmed = h.place(&order_body(&email, &[(&sku, 1)], "pm_card_visa")).await;
        assert!([201, 202].contains(&confirmed.status), "{}", confirmed.body);
        assert_ne!(confirmed.body["status"], "PENDING", "{}", confirmed.body);
        let after = chrono::Utc::now().to_rfc3339();

        // By status within the window: the three under review, oldest first, across pages of 2
        // (other scenarios' orders may be under review too; the window and the ids tell ours).
        let window = |status: &str| q(&[("status", status), ("from", &before), ("to", &after)]);
        let shown: Vec<String> = walk(h, window("UNDER_REVIEW"), 2).await.into_iter().filter(|id| review.contains(id)).collect();
        assert_eq!(shown, review, "each once, in the order they entered review");
        // None of them is left in the PENDING listing once its checkout decided it.
        let pending = walk(h, window("PENDING"), 100).await;
        assert!(!pending.contains(&confirmed.order_id()) && review.iter().all(|id| !pending.contains(id)), "{pending:?}");

        // By email: all four orders, oldest first, whatever their status.
        let mut all = review.clone();
        all.push(confirmed.order_id());
        assert_eq!(walk(h, q(&[("email", &email)]), 3).await, all);
        // A window that ends before them shows none.
        assert!(walk(h, q(&[("email", &email), ("to", &before)]), 10).await.is_empty());

        // Once decided, an order leaves the review listing.
        // (the review task must be waiting first: until then the decision is 409)
        let mut st = 0;
        for _ in 0..100 {
            st = ops_review(h, &review[0], "approve").await.0;
            if st != 409 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(st, 202);
        let mut still = Vec::new();
        for _ in 0..100 {
            still = walk(h, window("UNDER_REVIEW"), 100).await;
            if !still.contains(&review[0]) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(!still.contains(&review[0]) && still.contains(&review[1]), "{still:?}");

        // Bad parameters are a 400 with a stable code naming the parameter; no token is a 401.
        let bad: [(&[(&'static str, &str)], &str); 5] = [
            (&[], "status"),
            (&[("status", "DELIVERED")], "status"),
            (&[("status", "FAILED"), ("limit", "500")], "limit"),
            (&[("status", "FAILED"), ("from", "yesterday")], "from"),
            (&[("status", "FAILED"), ("sort", "asc")], "sort"),
        ];
        for (params, field) in bad {
            let (st, body) = list(h, &q(params)).await;
            assert_eq!((st, body["error"]["code"].as_str(), body["error"]["field"].as_str()), (400, Some("invalid_query"), Some(field)), "{params:?}: {body}");
        }
        let r = reqwest::Client::new().get(format!("{}/ops/orders?status=FAILED", h.api())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    });
}

async fn ops_review(h: &Harness, id: &str, decision: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/ops/orders/{id}/review", h.api()))
        .bearer_auth(&h.stack.ops_token)
        .json(&serde_json::json!({"decision": decision}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}
