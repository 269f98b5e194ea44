//! The velocity table: one item per (subject, order), counted over a window: fraud velocity (email,
//! card) over 24 hours, checkout attempts (email, shopper IP) over the last hour.

use super::*;
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::Select;
use aws_sdk_dynamodb::Client;

pub struct DynamoVelocity {
    pub client: Client,
    pub table: String,
}

impl DynamoVelocity {
    /// `client` is the function's one DynamoDB client (`Wiring::dynamodb`), shared by its adapters.
    pub fn new(client: Client, table: String) -> DynamoVelocity {
        DynamoVelocity { client, table }
    }
}

#[async_trait]
impl VelocityCounter for DynamoVelocity {
    async fn record_and_count_within(&self, subject: &str, order_id: &str, placed_at: &str, window_seconds: i64) -> Result<u32> {
        let placed = chrono::DateTime::parse_from_rfc3339(placed_at).map_err(|e| StepError::InvalidInput(format!("placed_at: {e}")))?;
        // The sort key is derived from the order, so a replayed step writes the same item (idempotent).
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(subject))
            .item("sk", s(format!("{placed_at}#{order_id}")))
            .item("expires_at", n(placed.timestamp() + 2 * 86_400))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("velocity.record", e))?;
        self.count_within(subject, window_seconds).await
    }

    async fn count_within(&self, subject: &str, window_seconds: i64) -> Result<u32> {
        let since = (chrono::Utc::now() - chrono::Duration::seconds(window_seconds)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk >= :since")
            .expression_attribute_values(":pk", s(subject))
            .expression_attribute_values(":since", s(since))
            .select(Select::Count)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("velocity.count", e))?;
        Ok(out.count.max(0) as u32)
    }
}
