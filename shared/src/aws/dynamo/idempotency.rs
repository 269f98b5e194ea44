//! The idempotency table: request claims (POST /orders), once-markers and lookups.

use super::*;
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

pub struct DynamoIdempotency {
    pub client: Client,
    pub table: String,
    /// How long a key is remembered (Stripe keeps theirs 24 h; we do the same).
    pub ttl_seconds: i64,
}

impl DynamoIdempotency {
    /// Keys and once-markers are remembered 24 h (as Stripe keeps its idempotency keys).
    /// `client` is the function's one DynamoDB client (`Wiring::dynamodb`), shared by its adapters.
    pub fn new(client: Client, table: String) -> DynamoIdempotency {
        DynamoIdempotency { client, table, ttl_seconds: 86_400 }
    }
}

fn idem_key(key: &str) -> String {
    format!("orders-post#{key}")
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(&self, key: &str, request_hash: &str, order_id: &str, access_token: &str) -> Result<Claim> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(idem_key(key)))
            .item("request_hash", s(request_hash))
            .item("order_id", s(order_id))
            .item("access_token", s(access_token))
            .item("claimed_at", n(epoch_now()))
            .item("state", s("IN_PROGRESS"))
            .item("expires_at", n(epoch_now() + self.ttl_seconds))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Claim::Won),
            Err(e) if is_ccf(&e) => {}
            Err(e) => return Err(StepError::from_sdk("idempotency.claim", e)),
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("idempotency.get", e))?;
        let item = out.item.ok_or_else(|| StepError::Retryable("idempotency record vanished; retry".into()))?;
        let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let response = match (item.get("response_status").and_then(|v| v.as_n().ok()), get("response_body")) {
            (Some(st), Some(body)) => Some((st.parse().unwrap_or(500), body)),
            _ => None,
        };
        // The SDK retried a claim that had taken effect (its answer was lost): the order id there
        // is the one drawn for this very request, so the claim is ours.
        if get("order_id").as_deref() == Some(order_id) {
            return Ok(Claim::Won);
        }
        Ok(Claim::Existing(IdempotencyRecord {
            request_hash: get("request_hash").unwrap_or_default(),
            order_id: get("order_id").unwrap_or_default(),
            access_token: get("access_token"),
            claimed_at: item.get("claimed_at").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0),
            response,
        }))
    }

    async fn complete(&self, key: &str, status: u16, body: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .update_expression("SET #state = :done, response_status = :st, response_body = :body")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("COMPLETE"))
            .expression_attribute_values(":st", n(status as i64))
            .expression_attribute_values(":body", s(body))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("idempotency.complete", e))?;
        Ok(())
    }

    async fn take_over(&self, key: &str, claimed_at_seen: i64) -> Result<bool> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .update_expression("SET claimed_at = :now")
            .condition_expression("#state = :ip AND claimed_at = :seen")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ip", s("IN_PROGRESS"))
            .expression_attribute_values(":seen", n(claimed_at_seen))
            .expression_attribute_values(":now", n(epoch_now()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("idempotency.take_over", e)),
        }
    }

    async fn release_lease(&self, key: &str) -> Result<()> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .update_expression("SET claimed_at = :expired")
            .condition_expression("#state = :ip")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ip", s("IN_PROGRESS"))
            .expression_attribute_values(":expired", n(0))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_ccf(&e) => Ok(()),
            Err(e) => Err(StepError::from_sdk("idempotency.release_lease", e)),
        }
    }

    async fn abandon(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("idempotency.abandon", e))?;
        Ok(())
    }
}

/// A claim older than this is taken to be from a crashed attempt and may be taken over.
const ONCE_STALE_SECONDS: i64 = 120;

#[async_trait]
impl OnceLedger for DynamoIdempotency {
    async fn begin(&self, marker: &str) -> Result<OnceClaim> {
        let now = epoch_now();
        // Who claimed: a retry of this very put (the SDK's, after a lost answer) finds its own claim.
        let claimant = uuid::Uuid::new_v4().simple().to_string();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("once#{marker}")))
            .item("claimant", s(&claimant))
            .item("state", s("IN_PROGRESS"))
            .item("claimed_at", n(now))
            .item("expires_at", n(now + 30 * 86_400))
            .condition_expression("attribute_not_exists(pk) OR (#state = :ip AND claimed_at < :stale)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ip", s("IN_PROGRESS"))
            .expression_attribute_values(":stale", n(now - ONCE_STALE_SECONDS))
            .send()
            .await;
        match put {
            Ok(_) => Ok(OnceClaim::Go),
            Err(e) if is_ccf(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("once#{marker}")))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("once.get", e))?;
                let item = out.item.unwrap_or_default();
                let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                Ok(match (get("state").as_deref(), get("claimant")) {
                    (Some("DONE"), _) => OnceClaim::AlreadyDone,
                    (_, Some(c)) if c == claimant => OnceClaim::Go,
                    _ => OnceClaim::InProgress,
                })
            }
            Err(e) => Err(StepError::from_sdk("once.begin", e)),
        }
    }

    async fn finish(&self, marker: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("once#{marker}")))
            .update_expression("SET #state = :done, done_at = :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("DONE"))
            .expression_attribute_values(":now", n(epoch_now()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("once.finish", e))?;
        Ok(())
    }

    async fn forget(&self, marker: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("once#{marker}")))
            .condition_expression("#state = :ip")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ip", s("IN_PROGRESS"))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("once.forget", e))?;
        Ok(())
    }
}

#[async_trait]
impl Lookups for DynamoIdempotency {
    async fn put_lookup(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("lookup#{key}")))
            .item("value", s(value.to_string()))
            // Tracking events keep coming for a few weeks after a parcel ships; returns later still.
            .item("expires_at", n(epoch_now() + 180 * 86_400))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("lookup.put", e))?;
        Ok(())
    }

    async fn get_lookup(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("lookup#{key}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("lookup.get", e))?;
        Ok(out.item.and_then(|i| i.get("value").and_then(|v| v.as_s().ok()).and_then(|v| serde_json::from_str(v).ok())))
    }
}
