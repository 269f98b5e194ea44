//! `GET /ops/orders` on DynamoDB: the sparse, keys-only indexes of `domain::order_index` queried
//! shard by shard, merged, then the orders read in one BatchGetItem (never a scan).

use super::*;
use crate::domain::order::Order;
use crate::domain::order_index::{merge, order_of, Filter, ListQuery, SHARDS};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;
use std::collections::HashMap;

impl super::orders::DynamoOrders {
    pub(super) async fn list_orders(&self, q: &ListQuery) -> Result<(Vec<Order>, Option<String>)> {
        let (index, pk_attr, sk_attr, pks): (&str, &str, &str, Vec<String>) = match &q.filter {
            Filter::Status(st) => ("OrdersByAttention", "attention_pk", "attention_key", (0..SHARDS).map(|i| format!("{}#{i}", st.as_str())).collect()),
            Filter::Email(e) => ("OrdersByEmail", "customer_email", "created_key", vec![e.clone()]),
        };
        let mut pages = Vec::with_capacity(pks.len());
        for pk in pks {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_names("#sk", sk_attr)
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":lo", s(&q.lo))
                .expression_attribute_values(":hi", s(&q.hi))
                // One more than a page: whether there is a next page is known without another call.
                .limit(q.limit as i32 + 1)
                .send()
                .await
                .map_err(|e| StepError::from_sdk("orders.list", e))?;
            pages.push(out.items().iter().filter_map(|i| i.get(sk_attr).and_then(|v| v.as_s().ok()).cloned()).collect());
        }
        let (keys, cursor) = merge(pages, q.limit);
        let ids: Vec<&str> = keys.iter().map(|k| order_of(k)).collect();
        Ok((self.read_many(&ids).await?, cursor))
    }

    /// The orders with these ids (at most 100), in that order; BatchGetItem's unprocessed keys are
    /// asked again.
    async fn read_many(&self, ids: &[&str]) -> Result<Vec<Order>> {
        let mut found: HashMap<String, Order> = HashMap::new();
        let mut keys: Vec<HashMap<String, AttributeValue>> = ids.iter().map(|id| HashMap::from([("order_id".to_string(), s(*id))])).collect();
        for attempt in 0..CONFLICT_ATTEMPTS {
            if keys.is_empty() {
                break;
            }
            let ka = aws_sdk_dynamodb::types::KeysAndAttributes::builder().set_keys(Some(keys)).build().map_err(|e| StepError::Internal(e.to_string()))?;
            let out = self.client.batch_get_item().request_items(&self.table, ka).send().await.map_err(|e| StepError::from_sdk("orders.read_many", e))?;
            for item in out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                let o: Order = from_item(item)?;
                found.insert(o.order_id.clone(), o);
            }
            keys = out.unprocessed_keys.unwrap_or_default().remove(&self.table).map(|k| k.keys).unwrap_or_default();
            if !keys.is_empty() {
                backoff(attempt).await;
            }
        }
        if !keys.is_empty() {
            return Err(StepError::Retryable("orders.read_many: keys left unprocessed; retry".into()));
        }
        Ok(ids.iter().filter_map(|id| found.remove(*id)).collect())
    }
}
