//! Dead letters are recoverable (#10 item 13): the operator API's redrive moves a dead-letter queue's
//! messages back to their queue (SQS StartMessageMoveTask, emulated at the edge since moto lacks
//! it, authorized as AWS authorizes it), and replaying them is safe.

use orderflow_e2e::*;
use orderflow_shared::domain::refund::Refund;
use serde_json::json;
use std::time::Duration;

async fn redrive(h: &Harness, queue: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(format!("{}/ops/dead-letters/{queue}/redrive", h.api())).bearer_auth(&h.stack.ops_token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn depth(h: &Harness, logical: &str) -> i64 {
    let attrs = h
        .stack
        .moto_sqs
        .get_queue_attributes()
        .queue_url(&h.stack.queue_urls[logical])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attrs.values().filter_map(|v| v.parse::<i64>().ok()).sum()
}

#[test]
fn a_refund_left_in_the_dead_letter_queue_is_redriven_and_sent_once() {
    let h = harness();
    h.run(async {
        let sku = h.new_sku(1900, 3).await;
        let placed = h.place(&order_body(&h.email("dlq"), &[(&sku, 1)], "pm_card_visa")).await;
        let (id, total) = (placed.order_id(), placed.body["totals"]["total"].as_i64().unwrap());
        let list = h.stack.warehouses.next_pick_list(&id, None, Duration::from_secs(60)).await.expect("pick list");
        assert_eq!(h.stack.warehouses.send_report(&list, &list.report("D1", &list.lines())).await.0, 202);
        for _ in 0..600 {
            let o = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
            if o.payment.as_ref().is_some_and(|p| p.captured_minor == total) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A refund recorded on the ledger whose message died (refund_payment failed it five times,
        // say during a gateway outage), and a duplicate of that message beside it.
        let o = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
        let refund = Refund {
            refund_id: "rf_dlq_test_0000000001".into(),
            amount_minor: 500,
            lines: Default::default(),
            reason: "requested_by_customer".into(),
            note: None,
            status: "requested".into(),
            gateway_refund_id: None,
            requested_at: orderflow_shared::domain::order::now_rfc3339(),
            request_hash: "h".into(),
            return_id: None,
        };
        let recorded = h.stack.deps.orders.record_refund(&id, &refund, o.refunded_minor, &Default::default(), o.return_seq).await.unwrap();
        assert_eq!(recorded, orderflow_shared::ports::RecordRefund::Recorded);
        let dlq = &h.stack.queue_urls["RefundsDeadLetterQueue"];
        for _ in 0..2 {
            let body = json!({"orderId": id, "refundId": refund.refund_id}).to_string();
            h.stack.moto_sqs.send_message().queue_url(dlq).message_body(body).send().await.unwrap();
        }
        // unknown queues are named; the others redrive (empty, or whatever earlier scenarios left)
        let (st, body) = redrive(h, "pick-lists").await;
        assert_eq!((st, body["error"]["code"].as_str()), (404, Some("queue_not_found")));
        let (st, body) = redrive(h, "refunds").await;
        assert_eq!(st, 202, "{body}");
        for q in ["notifications", "review", "supplier", "webhook-events"] {
            assert_eq!(redrive(h, q).await.0, 202, "{q}");
        }
        // the refund went to the gateway once, under its key; the dead-letter queue is empty
        let mut done = false;
        for _ in 0..600 {
            let o = h.stack.deps.orders.get(&id).await.unwrap().unwrap();
            if o.refunds[&refund.refund_id].status == "succeeded" {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(done, "the redriven refund was sent");
        h.settle().await;
        let wire: Vec<_> = h.gateway_requests(&id).into_iter().filter(|q| q.path == "/v1/refunds").collect();
        assert_eq!(wire.iter().filter(|q| !q.replayed).count(), 1, "{wire:?}");
        assert_eq!(wire[0].idempotency_key.as_deref(), Some(format!("{id}:refund:{}", refund.refund_id).as_str()));
        assert_eq!(h.intents(&id)[0]["amount_refunded"].as_i64(), Some(500));
        assert_eq!(depth(h, "RefundsDeadLetterQueue").await, 0);
    });
}
