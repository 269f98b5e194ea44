//! SQS and SESv2 adapters.

use crate::error::StepError;
use crate::ports::{Mailer, Queue, Result};
use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .map_err(|e| StepError::from_sdk("sqs.send", e))?;
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
}

pub struct SesMailer {
    pub client: aws_sdk_sesv2::Client,
    pub from: String,
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, to: &str, subject: &str, text: &str) -> Result<String> {
        let content = |d: &str| Content::builder().data(d).charset("UTF-8").build().map_err(|e| StepError::Internal(e.to_string()));
        let out = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(Message::builder().subject(content(subject)?).body(Body::builder().text(content(text)?).build()).build()).build())
            .send()
            .await
            .map_err(|e| StepError::from_sdk("ses.send_email", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
