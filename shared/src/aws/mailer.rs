//! SESv2 adapter.

use crate::error::StepError;
use crate::ports::{Mailer, Result};
use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

pub struct SesMailer {
    pub client: aws_sdk_sesv2::Client,
    pub from: String,
}

impl SesMailer {
    pub fn new(sdk: &aws_config::SdkConfig, from: String) -> SesMailer {
        SesMailer { client: aws_sdk_sesv2::Client::new(sdk), from }
    }
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
            .content(
                EmailContent::builder()
                    .simple(Message::builder().subject(content(subject)?).body(Body::builder().text(content(text)?).build()).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StepError::from_sdk("ses.send_email", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
