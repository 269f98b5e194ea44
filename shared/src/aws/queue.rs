//! SQS adapter.

use crate::error::StepError;
use crate::ports::{Queue, Result};
use async_trait::async_trait;

pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> SqsQueue {
        SqsQueue { client }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()> {
        self.client.send_message().queue_url(queue_url).message_body(body.to_string()).send().await.map_err(|e| StepError::from_sdk("sqs.send", e))?;
        Ok(())
    }

    async fn send_delayed(&self, queue_url: &str, body: &serde_json::Value, delay_seconds: i32) -> Result<()> {
        self.client
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
            .client
            .start_message_move_task()
            .source_arn(dead_letter_arn)
            .destination_arn(destination_arn)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("sqs.start_message_move_task", e))?;
        Ok(out.task_handle.unwrap_or_default())
    }
}
