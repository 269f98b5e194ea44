//! The sample events in events/ are the ones `cargo lambda invoke --data-file` sends; these checks
//! keep them valid inputs for their functions (and run the API's refusal path with no AWS at all).

use orderflow_shared::{Env, OrderRef};
use std::path::PathBuf;
use std::sync::Arc;

fn event(path: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events").join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn step_events_are_valid_step_inputs() {
    for f in ["reserve_stock", "release_stock", "authorize_payment", "void_payment", "score_fraud", "hold_for_review"] {
        let r: OrderRef = serde_json::from_value(event(&format!("{f}/order.json"))).unwrap();
        assert!(orderflow_shared::domain::order::is_order_id(&r.order_id));
    }
    for f in ["confirm_order/from_checkout.json", "confirm_order/after_review.json"] {
        let _: confirm_order::Input = serde_json::from_value(event(f)).unwrap();
    }
    for f in ["end_dispatch/shipped.json", "end_dispatch/timed_out.json"] {
        let i: end_dispatch::Input = serde_json::from_value(event(f)).unwrap();
        assert!(end_dispatch::OUTCOMES.contains(&i.end.outcome.as_str()));
    }
    for f in ["record_outcome/declined.json", "record_outcome/review_rejected.json"] {
        let _: record_outcome::Input = serde_json::from_value(event(f)).unwrap();
    }
}

#[test]
fn sqs_events_parse_as_sqs_events() {
    for f in ["send_notifications/order_confirmation.json", "record_review_task/review_task.json"] {
        let ev: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event(f)).unwrap();
        assert_eq!(ev.records.len(), 1);
    }
}

#[test]
fn api_event_with_a_card_number_is_refused_before_any_aws_call() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Ports pointing at nothing: the refusal must not need any of them.
        let env: std::collections::BTreeMap<String, String> = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("ORDERS_TABLE", "o"),
            ("CATALOG_TABLE", "c"),
            ("IDEMPOTENCY_TABLE", "i"),
            ("CHECKOUT_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:orderflow-checkout"),
            ("OPS_API_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:orderflow/ops-api-token-AbCdEf"),
            ("WAREHOUSES", "wh-east"),
            ("PICK_LIST_QUEUE_URL_PREFIX", "https://sqs.us-east-1.amazonaws.com/123456789012/orderflow-pick-lists-"),
            ("REFUNDS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/refunds"),
            ("CHECKOUT_BUDGET_SECONDS", "25"),
            ("RETURNS_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:orderflow-returns"),
            ("RETURN_WINDOW_DAYS", "30"),
            ("DEAD_LETTER_QUEUES", "{}"),
            ("VELOCITY_TABLE", "v"),
            ("CHECKOUT_ATTEMPTS_PER_HOUR", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let deps = Arc::new(orders_api::Deps::from_env(Env::from_map(env)).await.unwrap());
        let resp = orders_api::invoke_apigw(deps, event("orders_api/post_order_card_number.json")).await.unwrap();
        assert_eq!(resp["statusCode"], 400);
        let body: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "card_number_rejected");
        for f in [
            "orders_api/post_order.json",
            "orders_api/get_order.json",
            "orders_api/review_approve.json",
            "store_data_api/put_catalog.json",
            "store_data_api/adjust_stock.json",
            "store_data_api/get_stock.json",
        ] {
            let _: lambda_http::request::LambdaRequest = serde_json::from_value(event(f)).unwrap();
        }
    });
}
