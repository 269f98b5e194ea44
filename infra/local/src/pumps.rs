//! Lambda's SQS event source mapping, locally: long-poll a queue, hand batches of up to 10 to the
//! consumer function as an SQS event, delete only the messages it did not report as failed
//! (ReportBatchItemFailures). Failed ones reappear after the visibility timeout and, past the
//! queue's maxReceiveCount, moto's redrive moves them to the dead-letter queue.

use crate::edge::Edge;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn spawn(edge: Arc<Edge>, sqs: aws_sdk_sqs::Client, queue_url: String, queue_arn: String, function: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await;
            let msgs = match got {
                Ok(o) => o.messages.unwrap_or_default(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if msgs.is_empty() {
                continue;
            }
            let records: Vec<Value> = msgs
                .iter()
                .map(|m| {
                    let attrs: serde_json::Map<String, Value> =
                        m.attributes.clone().unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
                    json!({
                        "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                        "attributes": attrs, "messageAttributes": {}, "md5OfBody": m.md5_of_body,
                        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": crate::provision::REGION
                    })
                })
                .collect();
            let failed: Vec<String> = match edge.invoke(function, json!({"Records": records})).await {
                Ok(v) => v["batchItemFailures"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                // The whole invocation failed: nothing is deleted, everything is retried.
                Err(_) => msgs.iter().filter_map(|m| m.message_id.clone()).collect(),
            };
            let done: Vec<DeleteMessageBatchRequestEntry> = msgs
                .iter()
                .filter(|m| !failed.contains(m.message_id.as_ref().unwrap_or(&String::new())))
                .enumerate()
                .filter_map(|(i, m)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(m.receipt_handle.clone()?).build().ok())
                .collect();
            if !done.is_empty() {
                let _ = sqs.delete_message_batch().queue_url(&queue_url).set_entries(Some(done)).send().await;
            }
        }
    })
}
