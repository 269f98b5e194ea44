//! Operators' stock adjustments (DATA-1): units found or written off in one warehouse. One
//! transaction moves the warehouse's free units, the SKU's network counts (`adjusted` keeps INV-2's
//! books) and writes the audit entry, whose key is the client's Idempotency-Key: a replay changes
//! nothing and finds the entry. A write-off never takes free stock below zero, so units reserved
//! or allocated to orders stay covered.
//!
//! Audit entries: `ADJUSTMENT#<sku>#<key>` {sku, warehouse, delta, reason, by, at, idempotency_key,
//! request_hash, audit_sku, audit_at}; the sparse index `AdjustmentsBySku` (audit_sku, audit_at)
//! lists one SKU's trail.

use super::*;
use crate::domain::store_data::Adjustment;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

const AUDIT_INDEX: &str = "AdjustmentsBySku";

fn audit_key(sku: &str, idempotency_key: &str) -> String {
    format!("ADJUSTMENT#{sku}#{idempotency_key}")
}

impl DynamoInventory {
    pub(super) async fn adjust_stock(&self, a: &Adjustment) -> Result<AdjustOutcome> {
        let mut audit = to_item(a)?;
        audit.insert("pk".into(), s(audit_key(&a.sku, &a.idempotency_key)));
        audit.insert("audit_sku".into(), s(&a.sku));
        audit.insert("audit_at".into(), s(format!("{}#{}", a.at, a.idempotency_key)));
        let write_off = a.delta < 0;
        let guard = write_off.then_some("available >= :minus");
        let minus = HashMap::from([(":minus".to_string(), n(-a.delta))]);
        let values = |mut v: HashMap<String, AttributeValue>| {
            if write_off {
                v.extend(minus.clone());
            }
            Some(v)
        };
        let items = vec![
            tx_put(Put::builder().table_name(&self.table).set_item(Some(audit)).condition_expression("attribute_not_exists(pk)"))?,
            tx_update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(stock_key(&a.sku, &a.warehouse)))
                    .update_expression(
                        "SET available = if_not_exists(available, :zero) + :d, adjusted = if_not_exists(adjusted, :zero) + :d, allocated = if_not_exists(allocated, :zero), shipped = if_not_exists(shipped, :zero), sku = :sku, warehouse = :wh",
                    )
                    .set_condition_expression(guard.map(String::from))
                    .set_expression_attribute_values(values(HashMap::from([
                        (":d".to_string(), n(a.delta)),
                        (":zero".to_string(), n(0)),
                        (":sku".to_string(), s(&a.sku)),
                        (":wh".to_string(), s(&a.warehouse)),
                    ]))),
            )?,
            tx_update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(sku_key(&a.sku)))
                    .update_expression(
                        "SET available = if_not_exists(available, :zero) + :d, adjusted = if_not_exists(adjusted, :zero) + :d, received = if_not_exists(received, :zero), reserved = if_not_exists(reserved, :zero), shipped = if_not_exists(shipped, :zero)",
                    )
                    .set_condition_expression(guard.map(String::from))
                    .set_expression_attribute_values(values(HashMap::from([(":d".to_string(), n(a.delta)), (":zero".to_string(), n(0))]))),
            )?,
        ];
        let items = &items;
        with_conflict_retries("inventory.adjust", move || async move {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Attempt::Done(AdjustOutcome::Applied)),
                Err(e) => cancellation_reasons(e, "inventory.adjust")?,
            };
            let failed = |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
            if failed(0) {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(audit_key(&a.sku, &a.idempotency_key)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("inventory.adjust", e))?;
                let Some(item) = out.item else { return Ok(Attempt::Reread) };
                return Ok(Attempt::Done(AdjustOutcome::Replayed(from_item(item)?)));
            }
            if failed(1) || failed(2) {
                let here = self.warehouse_stock(std::slice::from_ref(&a.sku), std::slice::from_ref(&a.warehouse)).await?;
                let free_in_warehouse = here.get(&a.warehouse).and_then(|m| m.get(&a.sku)).map(|w| w.available).unwrap_or(0);
                let free_in_network = self.level(&a.sku).await?.map(|l| l.available).unwrap_or(0);
                return Ok(Attempt::Done(AdjustOutcome::Short { free_in_warehouse, free_in_network }));
            }
            Ok(Attempt::Conflict)
        })
        .await
    }

    pub(super) async fn audit_trail(&self, sku: &str) -> Result<Vec<Adjustment>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(AUDIT_INDEX)
                .key_condition_expression("audit_sku = :sku")
                .expression_attribute_values(":sku", s(sku))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StepError::from_sdk("inventory.adjustments", e))?;
            for item in out.items.unwrap_or_default() {
                found.push(from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }
}
