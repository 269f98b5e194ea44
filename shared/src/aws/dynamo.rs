//! DynamoDB adapters. Tables and keys (declared in infra/template.yaml):
//! - orders      pk `order_id` (S): one item per order, the `Order` record via serde_dynamo.
//! - inventory   pk `pk` (S): `SKU#<sku>` {available, reserved}; `RESERVATION#<order>` {status, lines}.
//! - idempotency pk `pk` (S): `orders-post#<Idempotency-Key>` and `once#<marker>`; TTL `expires_at`.
//! - catalog     pk `pk` (S): `PRODUCT#<sku>` items and the `RATES` item (the rate table as JSON).
//! - velocity    pk `pk` (S) = `email#..`/`card#..`, sk `sk` (S) = `<placed_at>#<order>`; TTL `expires_at`.

use crate::domain::fraud::FraudAssessment;
use crate::domain::order::{now_rfc3339, Order, OrderStatus, PaymentRecord, StockShortage, TimelineEntry};
use crate::domain::pricing::{CatalogItem, RateTable};
use crate::error::StepError;
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, Select, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};
use std::collections::{BTreeMap, HashMap};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn av<T: serde::Serialize>(v: &T) -> Result<AttributeValue> {
    Ok(to_attribute_value(v)?)
}
fn epoch_now() -> i64 {
    chrono::Utc::now().timestamp()
}
fn is_ccf<E: std::fmt::Debug>(e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>) -> bool {
    // Every operation's error enum has its own ConditionalCheckFailedException variant; the debug
    // name is the common ground.
    e.as_service_error().is_some_and(|se| format!("{se:?}").contains("ConditionalCheckFailed"))
}

// ---------------------------------------------------------------- orders

pub struct DynamoOrders {
    pub client: Client,
    pub table: String,
}

impl DynamoOrders {
    async fn update(&self, order_id: &str, sets: Vec<(&str, AttributeValue)>, event: Option<TimelineEntry>) -> Result<()> {
        let mut expr = vec!["updated_at = :now".to_string()];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .condition_expression("attribute_exists(order_id)")
            .expression_attribute_values(":now", s(now_rfc3339()));
        for (i, (field, value)) in sets.into_iter().enumerate() {
            expr.push(format!("#f{i} = :v{i}"));
            req = req.expression_attribute_names(format!("#f{i}"), field).expression_attribute_values(format!(":v{i}"), value);
        }
        if let Some(ev) = event {
            expr.push("timeline = list_append(timeline, :ev)".into());
            req = req.expression_attribute_values(":ev", AttributeValue::L(vec![av(&ev)?]));
        }
        req.update_expression(format!("SET {}", expr.join(", ")))
            .send()
            .await
            .map_err(|e| if is_ccf(&e) { StepError::InvalidInput(format!("order {order_id} not found")) } else { StepError::from_sdk("orders.update", e) })?;
        Ok(())
    }
}

#[async_trait]
impl OrderRepository for DynamoOrders {
    async fn create(&self, order: &Order) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(order)?))
            .condition_expression("attribute_not_exists(order_id)")
            .send()
            .await
            .map_err(|e| StepError::from_sdk("orders.create", e))?;
        Ok(())
    }

    async fn get(&self, order_id: &str) -> Result<Option<Order>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("orders.get", e))?;
        Ok(match out.item {
            Some(item) => Some(from_item(item)?),
            None => None,
        })
    }

    async fn transition(&self, order_id: &str, next: OrderStatus, reason: Option<String>, event: TimelineEntry) -> Result<bool> {
        let from = next.allowed_from();
        if from.is_empty() {
            return Err(StepError::InvalidState(format!("no transition leads to {}", next.as_str())));
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #status = :next, status_reason = :reason, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(format!("#status IN ({})", placeholders.join(", ")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(":reason", reason.map(s).unwrap_or(AttributeValue::Null(true)))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]));
        for (p, st) in placeholders.iter().zip(from) {
            req = req.expression_attribute_values(p, s(st.as_str()));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.transition", e)),
        }
    }

    async fn append_timeline(&self, order_id: &str, event: TimelineEntry) -> Result<()> {
        self.update(order_id, vec![], Some(event)).await
    }

    async fn record_payment(&self, order_id: &str, payment: &PaymentRecord, event: Option<TimelineEntry>) -> Result<()> {
        self.update(order_id, vec![("payment", av(payment)?)], event).await
    }

    async fn record_fraud(&self, order_id: &str, fraud: &FraudAssessment, event: TimelineEntry) -> Result<()> {
        self.update(order_id, vec![("fraud", av(fraud)?)], Some(event)).await
    }

    async fn record_shortage(&self, order_id: &str, shortage: &[StockShortage]) -> Result<()> {
        self.update(order_id, vec![("stock_shortage", av(&shortage)?)], None).await
    }

    async fn record_review_token(&self, order_id: &str, token: &str) -> Result<()> {
        self.update(order_id, vec![("review_task_token", s(token))], None).await
    }
}

// ---------------------------------------------------------------- inventory

pub struct DynamoInventory {
    pub client: Client,
    pub table: String,
}

const CONFLICT_ATTEMPTS: u32 = 12;

/// The per-item cancellation codes of a cancelled transaction ("None", "ConditionalCheckFailed",
/// "TransactionConflict", ...), in request order; any other error is returned as a StepError.
fn cancellation_reasons(
    e: aws_smithy_runtime_api::client::result::SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, aws_smithy_runtime_api::http::Response>,
    context: &str,
) -> Result<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => match se.into_err() {
            TransactWriteItemsError::TransactionCanceledException(tc) => {
                Ok(tc.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect())
            }
            TransactWriteItemsError::TransactionInProgressException(_) => Ok(vec![]),
            other => Err(StepError::Internal(format!("{context}: {other}"))),
        },
        other => Err(StepError::from_sdk(context, other)),
    }
}

/// Full-jitter exponential backoff, capped at ~200 ms: contention on one hot SKU clears quickly.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(5)).min(200);
    let jitter = (uuid::Uuid::new_v4().as_u128() % (cap as u128 + 1)) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(5 + jitter)).await;
}

fn sku_key(sku: &str) -> String {
    format!("SKU#{sku}")
}
fn reservation_key(order_id: &str) -> String {
    format!("RESERVATION#{order_id}")
}

/// Sum repeated SKUs: a transaction may not touch one item twice, and two lines of one SKU must
/// reserve their sum (INV-3). BTreeMap keeps the transaction's item order stable.
pub fn aggregate(lines: &[(String, i64)]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (sku, q) in lines {
        *m.entry(sku.clone()).or_insert(0) += q;
    }
    m
}

impl DynamoInventory {
    async fn reservation(&self, order_id: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(reservation_key(order_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("inventory.get_reservation", e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl StockLedger for DynamoInventory {
    async fn reserve(&self, order_id: &str, lines: &[(String, i64)]) -> Result<Reservation> {
        let wanted = aggregate(lines);
        if wanted.len() > 99 {
            return Err(StepError::InvalidInput("an order may reserve at most 99 distinct SKUs".into()));
        }
        let lines_av: HashMap<String, AttributeValue> = wanted.iter().map(|(k, v)| (k.clone(), n(*v))).collect();
        // Item 0 is the reservation marker: it makes the step idempotent (INV-5); the rest are
        // the decrements, each guarded so available never goes below zero (INV-1, INV-4).
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .item("pk", s(reservation_key(order_id)))
                    .item("status", s("RESERVED"))
                    .item("lines", AttributeValue::M(lines_av))
                    .item("created_at", s(now_rfc3339()))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| StepError::Internal(e.to_string()))?,
            )
            .build()];
        for (sku, q) in &wanted {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .key("pk", s(sku_key(sku)))
                            .update_expression("SET available = available - :q, reserved = if_not_exists(reserved, :zero) + :q")
                            .condition_expression("attribute_exists(pk) AND available >= :q")
                            .expression_attribute_values(":q", n(*q))
                            .expression_attribute_values(":zero", n(0))
                            .build()
                            .map_err(|e| StepError::Internal(e.to_string()))?,
                    )
                    .build(),
            );
        }
        // A cancelled transaction is one of three things: this order's reservation already exists
        // (a replay), a SKU is short, or a conflict with a concurrent transaction on the same
        // items. Only the last is retried, here, with jittered backoff.
        for attempt in 0..CONFLICT_ATTEMPTS {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Reservation::Reserved { fresh: true }),
                Err(e) => cancellation_reasons(e, "inventory.reserve")?,
            };
            // Reason 0 is the marker: this order already reserved (a replay).
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                let existing = self.reservation(order_id).await?;
                let status = existing.and_then(|i| i.get("status").and_then(|v| v.as_s().ok()).cloned()).unwrap_or_default();
                return if status == "RESERVED" {
                    Ok(Reservation::Reserved { fresh: false })
                } else {
                    Err(StepError::InvalidState(format!("reservation for {order_id} is {status}; not reserving again")))
                };
            }
            // Reasons 1.. are the SKUs, in `wanted` order: a failed condition means too little stock.
            let short_skus: Vec<(&String, &i64)> = wanted.iter().zip(reasons.iter().skip(1)).filter(|(_, r)| r.as_str() == "ConditionalCheckFailed").map(|(w, _)| w).collect();
            if !short_skus.is_empty() {
                let mut short = Vec::new();
                for (sku, q) in short_skus {
                    let available = self.level(sku).await?.map(|l| l.available).unwrap_or(0).clamp(0, (*q - 1).max(0));
                    short.push(StockShortage { sku: sku.clone(), requested: *q, available });
                }
                return Ok(Reservation::Short(short));
            }
            // TransactionConflict (or no reasons given): another transaction touched these items.
            backoff(attempt).await;
        }
        Err(StepError::Retryable("stock transaction kept conflicting; retry".into()))
    }

    async fn release(&self, order_id: &str) -> Result<bool> {
        let Some(existing) = self.reservation(order_id).await? else { return Ok(false) };
        if existing.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) != Some("RESERVED") {
            return Ok(false);
        }
        let lines = existing.get("lines").and_then(|v| v.as_m().ok()).cloned().unwrap_or_default();
        let mut items = vec![TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(reservation_key(order_id)))
                    .update_expression("SET #st = :released, released_at = :now")
                    .condition_expression("#st = :reserved")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":released", s("RELEASED"))
                    .expression_attribute_values(":reserved", s("RESERVED"))
                    .expression_attribute_values(":now", s(now_rfc3339()))
                    .build()
                    .map_err(|e| StepError::Internal(e.to_string()))?,
            )
            .build()];
        for (sku, q) in lines {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .key("pk", s(sku_key(&sku)))
                            .update_expression("SET available = available + :q, reserved = reserved - :q")
                            .expression_attribute_values(":q", q)
                            .build()
                            .map_err(|e| StepError::Internal(e.to_string()))?,
                    )
                    .build(),
            );
        }
        for attempt in 0..CONFLICT_ATTEMPTS {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(true),
                Err(e) => cancellation_reasons(e, "inventory.release")?,
            };
            // The marker's condition failed: a concurrent run released it. Released exactly once.
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                return Ok(false);
            }
            // A conflict: the stock must still go back, so try again.
            backoff(attempt).await;
        }
        Err(StepError::Retryable("stock release kept conflicting; retry".into()))
    }

    async fn level(&self, sku: &str) -> Result<Option<StockLevel>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(sku_key(sku)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("inventory.level", e))?;
        let num = |item: &HashMap<String, AttributeValue>, k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(out.item.map(|i| StockLevel { available: num(&i, "available"), reserved: num(&i, "reserved") }))
    }

    async fn put_level(&self, sku: &str, available: i64) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(sku_key(sku)))
            .update_expression("SET available = :a, reserved = if_not_exists(reserved, :zero)")
            .expression_attribute_values(":a", n(available))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("inventory.put_level", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- catalog

pub struct DynamoCatalog {
    pub client: Client,
    pub table: String,
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn items(&self, skus: &[String]) -> Result<HashMap<String, CatalogItem>> {
        let mut unique: Vec<&String> = skus.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::new();
        for chunk in unique.chunks(100) {
            let mut keys = KeysAndAttributes::builder();
            for sku in chunk {
                keys = keys.keys(HashMap::from([("pk".to_string(), s(format!("PRODUCT#{sku}")))]));
            }
            let mut pending = Some(HashMap::from([(self.table.clone(), keys.build().map_err(|e| StepError::Internal(e.to_string()))?)]));
            let mut attempts = 0;
            while let Some(req) = pending.take().filter(|r| !r.is_empty()) {
                attempts += 1;
                let out = self.client.batch_get_item().set_request_items(Some(req)).send().await.map_err(|e| StepError::from_sdk("catalog.items", e))?;
                for item in out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let ci: CatalogItem = from_item(item)?;
                    found.insert(ci.sku.clone(), ci);
                }
                pending = out.unprocessed_keys;
                if attempts > 5 && pending.as_ref().is_some_and(|p| !p.is_empty()) {
                    return Err(StepError::Retryable("catalog read throttled".into()));
                }
            }
        }
        Ok(found)
    }

    async fn rates(&self) -> Result<RateTable> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("RATES"))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("catalog.rates", e))?;
        let json = out
            .item
            .and_then(|i| i.get("table").and_then(|v| v.as_s().ok()).cloned())
            .ok_or_else(|| StepError::Internal("rate table missing from catalog".into()))?;
        serde_json::from_str(&json).map_err(|e| StepError::Internal(format!("rate table: {e}")))
    }

    async fn put_item(&self, item: &CatalogItem) -> Result<()> {
        let mut record = to_item(item)?;
        record.insert("pk".into(), s(format!("PRODUCT#{}", item.sku)));
        self.client.put_item().table_name(&self.table).set_item(Some(record)).send().await.map_err(|e| StepError::from_sdk("catalog.put_item", e))?;
        Ok(())
    }

    async fn put_rates(&self, rates: &RateTable) -> Result<()> {
        let json = serde_json::to_string(rates).map_err(|e| StepError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("RATES"))
            .item("table", s(json))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("catalog.put_rates", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- idempotency + once-markers

pub struct DynamoIdempotency {
    pub client: Client,
    pub table: String,
    /// How long a key is remembered (Stripe keeps theirs 24 h; we do the same).
    pub ttl_seconds: i64,
}

fn idem_key(key: &str) -> String {
    format!("orders-post#{key}")
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(&self, key: &str, request_hash: &str, order_id: &str) -> Result<Claim> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(idem_key(key)))
            .item("request_hash", s(request_hash))
            .item("order_id", s(order_id))
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
        Ok(Claim::Existing(IdempotencyRecord { request_hash: get("request_hash").unwrap_or_default(), order_id: get("order_id").unwrap_or_default(), response }))
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

    async fn abandon(&self, key: &str) -> Result<()> {
        self.client.delete_item().table_name(&self.table).key("pk", s(idem_key(key))).send().await.map_err(|e| StepError::from_sdk("idempotency.abandon", e))?;
        Ok(())
    }
}

/// A claim older than this is taken to be from a crashed attempt and may be taken over.
const ONCE_STALE_SECONDS: i64 = 120;

#[async_trait]
impl OnceLedger for DynamoIdempotency {
    async fn begin(&self, marker: &str) -> Result<OnceClaim> {
        let now = epoch_now();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("once#{marker}")))
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
                let done = out.item.and_then(|i| i.get("state").and_then(|v| v.as_s().ok()).cloned()).as_deref() == Some("DONE");
                Ok(if done { OnceClaim::AlreadyDone } else { OnceClaim::InProgress })
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

// ---------------------------------------------------------------- velocity

pub struct DynamoVelocity {
    pub client: Client,
    pub table: String,
}

#[async_trait]
impl VelocityCounter for DynamoVelocity {
    async fn record_and_count(&self, subject: &str, order_id: &str, placed_at: &str) -> Result<u32> {
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
        let since = (chrono::Utc::now() - chrono::Duration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
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

