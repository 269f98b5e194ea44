//! SESv2 adapter. Every email goes through the stack's configuration set, whose suppression options
//! put an address that bounced or complained on the account's suppression list; an address on it
//! is skipped (and the caller logs it) instead of being sent to again.

use crate::error::StepError;
use crate::ports::{Delivery, Mailer, Result};
use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

pub struct SesMailer {
    pub client: aws_sdk_sesv2::Client,
    pub from: String,
    pub configuration_set: String,
}

impl SesMailer {
    pub fn new(sdk: &aws_config::SdkConfig, from: String, configuration_set: String) -> SesMailer {
        SesMailer { client: aws_sdk_sesv2::Client::new(sdk), from, configuration_set }
    }

    /// The reason an address is on the account's suppression list, if it is.
    async fn suppressed(&self, to: &str) -> Result<Option<String>> {
        match self.client.get_suppressed_destination().email_address(to).send().await {
            Ok(out) => Ok(Some(out.suppressed_destination.map(|d| d.reason.as_str().to_string()).unwrap_or_else(|| "SUPPRESSED".into()))),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found_exception()) => Ok(None),
            Err(e) => Err(StepError::from_sdk("ses.get_suppressed_destination", e)),
        }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, to: &str, subject: &str, text: &str) -> Result<Delivery> {
        if let Some(reason) = self.suppressed(to).await? {
            return Ok(Delivery::Suppressed(reason));
        }
        let content = |d: &str| Content::builder().data(d).charset("UTF-8").build().map_err(|e| StepError::Internal(e.to_string()));
        let out = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .configuration_set_name(&self.configuration_set)
            .destination(Destination::builder().to_addresses(to).build())
            .content(
                EmailContent::builder()
                    .simple(Message::builder().subject(content(subject)?).body(Body::builder().text(content(text)?).build()).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StepError::from_sdk("ses.send_email", e))?;
        Ok(Delivery::Sent(out.message_id.unwrap_or_default()))
    }
}
