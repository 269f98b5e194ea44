//! SQS adapter.

use crate::error::StepError;
use crate::ports::{Queue, Result};
use async_trait::async_trait;

pub struct SqsQueue(Made);

enum Made {
    Now(aws_sdk_sqs::Client),
    /// Made on the first message: for a function whose usual requests send none.
    OnFirstUse(Box<aws_config::SdkConfig>, std::sync::OnceLock<aws_sdk_sqs::Client>),
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> SqsQueue {
        SqsQueue(Made::Now(client))
    }

    /// A queue whose SQS client is made when the first message is sent, not at cold start (each
    /// SDK client's first construction parses its crate's endpoint partitions: ~0.15 ms of Init).
    pub fn on_first_use(sdk: aws_config::SdkConfig) -> SqsQueue {
        SqsQueue(Made::OnFirstUse(Box::new(sdk), std::sync::OnceLock::new()))
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        match &self.0 {
            Made::Now(c) => c,
            Made::OnFirstUse(sdk, c) => c.get_or_init(|| aws_sdk_sqs::Client::new(sdk)),
        }
    }

    /// Whether the SQS client exists yet.
    #[cfg(test)]
    fn is_made(&self) -> bool {
        match &self.0 {
            Made::Now(_) => true,
            Made::OnFirstUse(_, c) => c.get().is_some(),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()> {
        self.client().send_message().queue_url(queue_url).message_body(body.to_string()).send().await.map_err(|e| StepError::from_sdk("sqs.send", e))?;
        Ok(())
    }

    async fn send_delayed(&self, queue_url: &str, body: &serde_json::Value, delay_seconds: i32) -> Result<()> {
        self.client()
            .send_message()
            .queue_url(queue_url)
            .message_body(body.to_string())
            .delay_seconds(delay_seconds.clamp(0, 900))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("sqs.send_delayed", e))?;
        Ok(())
    }

    async fn start_redrive(&self, dead_letter_arn: &str, destination_arn: &str) -> Result<String> {
        let out = self
            .client()
            .start_message_move_task()
            .source_arn(dead_letter_arn)
            .destination_arn(destination_arn)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("sqs.start_message_move_task", e))?;
        Ok(out.task_handle.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_made_on_first_use_makes_its_client_at_the_first_message() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let q = SqsQueue::on_first_use(sdk);
        assert!(!q.is_made());
        // Nothing listens there: the send fails, after the client was made for it.
        let _ = q.send("http://127.0.0.1:9/123456789012/Q", &serde_json::json!({})).await;
        assert!(q.is_made());
    }
}
