//! PAY-6, WF-1, WF-4, WF-5: compensation exactly once, one execution per order, partial batch
//! failures and dead-lettering, one email per order.

use orderflow_e2e::*;
use orderflow_shared::ports::Workflows;
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
        // and replayed three more times with its stored record stale (the cancel succeeded, the
        // write after it did not): those reach the gateway, which answers from its idempotency store
        for _ in 0..3 {
            let stale = serde_json::json!("requires_capture");
            h.stack.deps.orders.update_payment(&id, vec![("status", stale)], None).await.unwrap();
            assert!(h.stack.edge.invoke("void_payment", json!({"orderId": id})).await.is_ok());
        }
        let cancels: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path.ends_with("/cancel")).collect();
        let expected_key = format!("{id}:void");
        assert!(cancels.len() >= 4, "the stale replays reached the gateway: {cancels:?}");
        assert!(cancels.iter().all(|q| q.idempotency_key.as_deref() == Some(expected_key.as_str())), "{cancels:?}");
        assert_eq!(cancels.iter().filter(|q| !q.replayed).count(), 1, "one cancel executed, the rest replayed: {cancels:?}");
        assert_eq!(h.stack.gateway.cancel_count(&intent_id), 1);
        assert_eq!(h.intents(&id)[0]["status"], "canceled");
        // a decline leaves no hold to void, and voiding it is a no-op
        let declined = h.place(&order_body(&h.email("pay6"), &[(&sku, 1)], "pm_card_chargeDeclined")).await;
        assert_eq!(declined.body["status"], "DECLINED");
        assert!(h.stack.edge.invoke("void_payment", json!({"orderId": declined.order_id()})).await.is_ok());
        assert_eq!(h.stock(&sku).await, (10, 0));
    });
}

/// PAY-2 on the wire: the authorize step replayed five times, each time after its stored payment
/// record was lost (the gateway call succeeded, the write after it did not), so every replay really
/// reaches the gateway: six creates, all with the order-derived key, five answered as replays, one
/// intent. (With the record intact the step never calls the gateway, and a random key would pass.)
#[test]
fn pay_2_authorize_replayed_after_a_lost_write_holds_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(2000, 10).await;
        let r = h.place(&order_body(&h.email("pay2"), &[(&sku, 1)], "pm_card_visa")).await;
        let id = r.order_id();
        for _ in 0..5 {
            h.forget_payment(&id).await;
            assert!(h.stack.edge.invoke("authorize_payment", json!({"orderId": id})).await.is_ok());
        }
        let creates: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path == "/v1/payment_intents").collect();
        assert_eq!(creates.len(), 6, "{creates:?}");
        let expected_key = format!("{id}:authorize");
        assert!(creates.iter().all(|q| q.idempotency_key.as_deref() == Some(expected_key.as_str())), "{creates:?}");
        assert!(creates.iter().all(|q| q.body_sha256 == creates[0].body_sha256), "every replay sends the same parameters");
        assert_eq!(creates.iter().filter(|q| q.replayed).count(), 5, "{creates:?}");
        assert_eq!(h.intents(&id).len(), 1);
        let order = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert_eq!(order.payment.map(|p| p.status).as_deref(), Some("requires_capture"), "the replay restored the record");
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
        // The order's fulfilment started once more than it needs to (confirm_order replayed, the
        // fulfillment run started twice by hand: asynchronous Express starts are at-least-once and
        // not de-duplicated) still makes one wait for the warehouse: it is named by its dispatch
        // and open units, and Step Functions refuses a second Standard execution of that name.
        let env = orderflow_local::ports::operator_env(&h.stack.edge_url, Default::default());
        let sdk = orderflow_shared::aws::sdk_config(&env).await;
        let fulfil = orderflow_shared::aws::workflows::SfnWorkflows::new(&sdk, &env)
            .starting_fulfillment(orderflow_local::provision::machine_arn(orderflow_local::provision::FULFILLMENT_MACHINE));
        for _ in 0..2 {
            orderflow_shared::ports::Workflows::start_fulfillment(&fulfil, &id, &json!({"orderId": id})).await.unwrap();
        }
        for _ in 0..3 {
            assert!(h.stack.edge.invoke("confirm_order", json!({"orderId": id})).await.is_ok());
        }
        let fulfil_runs = orderflow_local::provision::FULFILLMENT_MACHINE;
        let started = std::time::Instant::now();
        while h.stack.order_runs(fulfil_runs, &id).await.iter().filter(|s| *s != "RUNNING").count() < 3 {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", h.stack.order_runs(fulfil_runs, &id).await);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let list = h
            .stack
            .moto_sfn
            .list_executions()
            .state_machine_arn(orderflow_local::provision::machine_arn(orderflow_local::provision::DISPATCH_MACHINE))
            .max_results(1000)
            .send()
            .await
            .unwrap();
        let waits: Vec<&str> = list.executions().iter().map(|e| e.name()).filter(|n| n.starts_with(&id)).collect();
        assert_eq!(waits, [format!("{id}-wh-east-1")], "one wait for the one warehouse");
        assert!(h.stack.warehouses.next_pick_list(&id, None, std::time::Duration::from_secs(5)).await.is_some());
        assert!(h.stack.warehouses.next_pick_list(&id, None, std::time::Duration::from_secs(2)).await.is_none(), "one pick list");
        // A second checkout for the order: AWS runs it (synchronous Express executions are not
        // de-duplicated by name, and the local engine does not either); the project's own guard
        // ends it at once: no second reservation, hold or email, the order untouched.
        let before = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        let env = orderflow_local::ports::operator_env(&h.stack.edge_url, Default::default());
        let sdk = orderflow_shared::aws::sdk_config(&env).await;
        let starter =
            orderflow_shared::aws::workflows::SfnWorkflows::new(&sdk, &env).starting_checkout(orderflow_local::provision::machine_arn("orderflow-checkout"));
        let second = starter.run_checkout(&id, &json!({"orderId": id})).await.expect("the engine runs a second start with the same name, as AWS does");
        assert_eq!(second.status, "SUCCEEDED", "{second:?}");
        assert_eq!(h.gateway_requests(&id).iter().filter(|q| q.path == "/v1/payment_intents").count(), 1, "one authorization on the wire");
        assert_eq!(h.stock(&sku).await, (9, 1));
        let after = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        assert_eq!((after.status, after.timeline.len(), after.payment), (before.status, before.timeline.len(), before.payment));
        h.settle().await;
        assert_eq!(h.stack.edge.emails_for(&id).iter().filter(|e| e.subject.contains("confirmed")).count(), 1);
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
        let emails = h.stack.edge.emails_for(&id);
        assert_eq!(emails.len(), 1, "{emails:?}");
        let sends = h.stack.report(&id).await.calls.iter().filter(|c| c.operation == "SendMessage").count();
        // six notification messages (checkout + five replays) and the warehouse's pick list
        assert_eq!(sends, 7, "the message was queued six times; the email still went once");
    });
}

#[test]
fn wf_4_poison_messages_fail_alone_and_end_in_the_dead_letter_queue() {
    let h = harness();
    h.run(async {
        // A queue pair shaped like the template's NotificationsQueue (same maxReceiveCount), with a
        // 1 s visibility so the receive limit is reached in seconds, consumed by send_notifications
        // through the same event-source pump as the real queues.
        let t = orderflow_local::template::Template::load(&orderflow_local::Options::default().repo.join("infra/template.yaml")).unwrap();
        let max_receive = t.queues().unwrap().into_iter().find(|q| q.name == "NotificationsQueue").and_then(|q| q.redrive).map(|r| r.1).unwrap();
        let sqs = &h.stack.moto_sqs;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dlq = sqs.create_queue().queue_name(format!("wf4-dlq-{tag}")).send().await.unwrap().queue_url.unwrap();
        let dlq_arn = format!("arn:aws:sqs:us-east-1:123456789012:wf4-dlq-{tag}");
        let src = sqs
            .create_queue()
            .queue_name(format!("wf4-src-{tag}"))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1")
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}).to_string(),
            )
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        // given 7 good messages (a feedback request for 7 orders) and 3 poison ones in one batch
        let sku = h.new_sku(900, 20).await;
        let mut ids = vec![];
        for i in 0..7 {
            ids.push(h.place(&order_body(&h.email(&format!("wf4-{i}")), &[(&sku, 1)], "pm_card_visa")).await.order_id());
        }
        let mut bodies: Vec<String> = ids.iter().map(|id| json!({"orderId": id, "kind": "feedback_request"}).to_string()).collect();
        bodies.push("not json".into());
        bodies.push(json!({"orderId": ids[0], "kind": "no_such_email"}).to_string());
        bodies.push(json!({"orderId": "ord_00000000000000000000000000000000", "kind": "feedback_request"}).to_string());
        let entries: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(b).build().unwrap())
            .collect();
        sqs.send_message_batch().queue_url(&src).set_entries(Some(entries)).send().await.unwrap();
        // when the consumer runs
        let pump = orderflow_local::pumps::spawn(
            h.stack.edge.clone(),
            sqs.clone(),
            src.clone(),
            format!("arn:aws:sqs:us-east-1:123456789012:wf4-src-{tag}"),
            "send_notifications",
        );
        // then the 7 are processed once and the 3 land in the dead-letter queue after the limit
        let count = |url: String| async move {
            let a = sqs.get_queue_attributes().queue_url(url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::All).send().await.unwrap();
            let get = |k: aws_sdk_sqs::types::QueueAttributeName| a.attributes().and_then(|m| m.get(&k)).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                + get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        };
        let started = std::time::Instant::now();
        while count(dlq.clone()).await < 3 && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        pump.abort();
        let dead = count(dlq.clone()).await;
        let left = count(src.clone()).await;
        let processed = ids.iter().filter(|id| h.stack.edge.emails_for(id).iter().filter(|e| e.subject.starts_with("How was")).count() == 1).count() as i64;
        for id in &ids {
            assert_eq!(h.stack.edge.emails_for(id).iter().filter(|e| e.subject.starts_with("How was")).count(), 1, "{id}: exactly one feedback email");
        }
        assert_eq!((processed, dead, left), (7, 3, 0), "sent 10 = processed 7 + dead-lettered 3");
    });
}
