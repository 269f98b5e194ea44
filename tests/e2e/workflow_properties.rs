//! PAY-6, WF-1, WF-5: compensation exactly once, one execution per order, one email per order.

use orderflow_e2e::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn pay_6_every_failure_after_authorization_voids_the_hold_exactly_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let rejected = h.place(&order_body(&h.email("pay6"), &[(&sku, 1)], "pm_card_riskLevelHighest")).await;
        assert_eq!(rejected.body["status"], "REJECTED");
        let id = rejected.order_id();
        let intent_id = h.intents(&id)[0]["id"].as_str().unwrap().to_string();
        // the void step replayed five times (concurrently, as retries might): still one cancel
        let voids = futures::future::join_all((0..5).map(|_| h.stack.edge.invoke("void_payment", json!({"orderId": id})))).await;
        assert!(voids.iter().all(|v| v.is_ok()), "{voids:?}");
        assert_eq!(h.stack.gateway.cancel_count(&intent_id), 1);
        assert_eq!(h.intents(&id)[0]["status"], "canceled");
        // a decline leaves no hold to void, and voiding it is a no-op
        let declined = h.place(&order_body(&h.email("pay6"), &[(&sku, 1)], "pm_card_chargeDeclined")).await;
        assert_eq!(declined.body["status"], "DECLINED");
        assert!(h.stack.edge.invoke("void_payment", json!({"orderId": declined.order_id()})).await.is_ok());
        assert_eq!(h.stock(&sku).await, (10, 0));
    });
}

#[test]
fn pay_2_authorize_replayed_holds_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let r = h.place(&order_body(&h.email("pay2"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = r.order_id();
        for _ in 0..5 {
            assert!(h.stack.edge.invoke("authorize_payment", json!({"orderId": id})).await.is_ok());
        }
        assert_eq!(h.intents(&id).len(), 1);
    });
}

#[test]
fn wf_1_one_execution_per_order_named_by_the_order() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let r = h.place(&order_body(&h.email("wf1"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = r.order_id();
        assert_eq!(h.stack.execution_status("orderflow-checkout", &id).await.as_deref(), Some("SUCCEEDED"));
        assert!(h.stack.execution_status("orderflow-lifecycle", &id).await.is_some());
        // a second start of the lifecycle for the same order never makes a second execution (for a
        // running execution with the same input Step Functions answers idempotently; otherwise
        // ExecutionAlreadyExists)
        let _ = h.stack.deps.workflows.start_lifecycle(&id, &json!({"orderId": id, "review": false})).await.unwrap();
        let _ = h.stack.deps.workflows.start_lifecycle(&id, &json!({"orderId": id, "review": true})).await.unwrap();
        for _ in 0..3 {
            assert!(h.stack.edge.invoke("confirm_order", json!({"orderId": id})).await.is_ok());
        }
        let list = h.stack.moto_sfn.list_executions().state_machine_arn(orderflow_local::provision::machine_arn("orderflow-lifecycle")).max_results(1000).send().await.unwrap();
        assert_eq!(list.executions().iter().filter(|e| e.name() == id).count(), 1);
        // and the checkout itself cannot run twice for one order
        let second = h.stack.deps.workflows.run_checkout(&id, &json!({"orderId": id})).await;
        assert!(second.is_err(), "{second:?}");
    });
}

#[test]
fn wf_5_confirmation_email_once_even_when_confirm_runs_five_times() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let r = h.place(&order_body(&h.email("wf5"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = r.order_id();
        for _ in 0..5 {
            assert!(h.stack.edge.invoke("confirm_order", json!({"orderId": id, "startLifecycle": false})).await.is_ok());
        }
        wait_for_emails(&h.stack, &id, 1, Duration::from_secs(10)).await;
        h.settle().await;
        h.settle().await;
        assert_eq!(h.stack.edge.emails_for(&id).len(), 1);
        let sends = h.stack.report(&id).await.calls.iter().filter(|c| c.operation == "SendMessage").count();
        // six notification messages (checkout + five replays) and the warehouse's pick list
        assert_eq!(sends, 7, "the message was queued six times; the email still went once");
    });
}
