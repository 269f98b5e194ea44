//! DynamoDB adapters. Tables and keys (declared in infra/template.yaml):
//! - orders      pk `order_id` (S): one item per order, the `Order` record via serde_dynamo.
//! - inventory   pk `pk` (S):
//!   `SKU#<sku>` {available, reserved, shipped, received}: network-wide counts, what checkout reserves against;
//!   `STOCK#<sku>#<warehouse>` {available, allocated, shipped, reorder_point, reorder_quantity}: one warehouse;
//!   `RESERVATION#<order>` {status RESERVED|ROUTED|RELEASED, lines, allocations, shipped, shipments, version};
//!   `PO#<sku>#<warehouse>` {status OPEN|RECEIVED, po_id, quantity}: at most one open purchase order;
//!   `RECEIPT#<key>`: a delivery already booked (receiving is idempotent).
//! - idempotency pk `pk` (S): `orders-post#<Idempotency-Key>`, `once#<marker>`, `lookup#<key>`; TTL `expires_at`.
//! - catalog     pk `pk` (S): `PRODUCT#<sku>` items, the `RATES` item (rate table JSON), the
//!   `WAREHOUSES` item (warehouse network and zone table JSON).
//! - velocity    pk `pk` (S) = `email#..`/`card#..`, sk `sk` (S) = `<placed_at>#<order>`; TTL `expires_at`.

use crate::domain::fraud::FraudAssessment;
use crate::domain::fulfillment::{tracking_is_final, tracking_rank, Allocation, Network};
use crate::domain::order::{now_rfc3339, Dispatch, Order, OrderStatus, PaymentRecord, Shipment, StockShortage, TimelineEntry};
use crate::domain::pricing::{CatalogItem, RateTable};
use crate::error::StepError;
use crate::money::Money;
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
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoOrders {
        DynamoOrders { client: Client::new(sdk), table }
    }
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
        req.update_expression(format!("SET {}", expr.join(", "))).send().await.map_err(|e| {
            if is_ccf(&e) {
                StepError::InvalidInput(format!("order {order_id} not found"))
            } else {
                StepError::from_sdk("orders.update", e)
            }
        })?;
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

    async fn record_dispatches(&self, order_id: &str, dispatches: &[Dispatch], event: TimelineEntry) -> Result<()> {
        self.update(order_id, vec![("dispatches", av(&dispatches)?)], Some(event)).await
    }

    async fn add_shipment(&self, order_id: &str, shipment: &Shipment, token_hash: &str) -> Result<AddShipment> {
        let ev = TimelineEntry::now("shipment_reported", Some(format!("{} from {}", shipment.shipment_id, shipment.warehouse)));
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET shipments.#sid = :shp, answered_tokens.#th = :sidv, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression("attribute_not_exists(shipments.#sid) AND attribute_not_exists(answered_tokens.#th) AND #status IN (:c, :p)")
            .expression_attribute_names("#sid", &shipment.shipment_id)
            .expression_attribute_names("#th", token_hash)
            .expression_attribute_values(":sidv", s(&shipment.shipment_id))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":shp", av(shipment)?)
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&ev)?]))
            .expression_attribute_values(":c", s(OrderStatus::Confirmed.as_str()))
            .expression_attribute_values(":p", s(OrderStatus::PartiallyShipped.as_str()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(AddShipment::Added),
            Err(e) if is_ccf(&e) => {
                let order = self.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
                Ok(match order.shipments.get(&shipment.shipment_id) {
                    Some(existing) => AddShipment::Exists(Box::new(existing.clone())),
                    None if order.answered_tokens.contains_key(token_hash) => AddShipment::TokenAnswered,
                    None => AddShipment::NotShippable(order.status),
                })
            }
            Err(e) => Err(StepError::from_sdk("orders.add_shipment", e)),
        }
    }

    async fn remove_shipment(&self, order_id: &str, shipment_id: &str, token_hash: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("REMOVE shipments.#sid, answered_tokens.#th")
            .expression_attribute_names("#sid", shipment_id)
            .expression_attribute_names("#th", token_hash)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("orders.remove_shipment", e))?;
        Ok(())
    }

    async fn update_shipment(&self, order_id: &str, shipment_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()> {
        self.nested_update(order_id, "shipments", Some(shipment_id), fields, event).await
    }

    async fn record_capture(&self, order_id: &str, shipment_id: &str, amount: Money, event: TimelineEntry) -> Result<bool> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET shipments.#sid.captured = :m, payment.captured_minor = if_not_exists(payment.captured_minor, :zero) + :a, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression("attribute_exists(shipments.#sid) AND attribute_not_exists(shipments.#sid.captured)")
            .expression_attribute_names("#sid", shipment_id)
            .expression_attribute_values(":m", av(&amount)?)
            .expression_attribute_values(":a", n(amount.minor))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.record_capture", e)),
        }
    }

    async fn update_payment(&self, order_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()> {
        self.nested_update(order_id, "payment", None, fields, event).await
    }

    async fn apply_tracking(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool> {
        let Some(rank) = tracking_rank(status) else { return Ok(false) };
        let stored_rank = if tracking_is_final(status) { 100 } else { rank as i64 };
        // Forward only: a higher rank, or the same rank with a newer carrier timestamp. Final
        // statuses are stored with rank 100, so nothing passes them.
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET shipments.#sid.tracking_status = :st, shipments.#sid.tracking_updated_at = :at, shipments.#sid.tracking_rank = :stored, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(
                "attribute_exists(shipments.#sid) AND (attribute_not_exists(shipments.#sid.tracking_rank) OR shipments.#sid.tracking_rank < :r \
                 OR (shipments.#sid.tracking_rank = :r AND shipments.#sid.tracking_status <> :st AND shipments.#sid.tracking_updated_at < :at))",
            )
            .expression_attribute_names("#sid", shipment_id)
            .expression_attribute_values(":st", s(status))
            .expression_attribute_values(":at", s(updated_at))
            .expression_attribute_values(":r", n(rank as i64))
            .expression_attribute_values(":stored", n(stored_rank))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.apply_tracking", e)),
        }
    }
}

impl DynamoOrders {
    /// SET `<root>[.<key>].<field> = value` for each field (the parent map must exist).
    async fn nested_update(
        &self,
        order_id: &str,
        root: &str,
        key: Option<&str>,
        fields: Vec<(&str, serde_json::Value)>,
        event: Option<TimelineEntry>,
    ) -> Result<()> {
        let mut expr = vec!["updated_at = :now".to_string()];
        let prefix = if key.is_some() { "#root.#key" } else { "#root" };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .condition_expression(if key.is_some() { "attribute_exists(#root.#key)" } else { "attribute_exists(#root)" })
            .expression_attribute_names("#root", root)
            .expression_attribute_values(":now", s(now_rfc3339()));
        if let Some(k) = key {
            req = req.expression_attribute_names("#key", k);
        }
        for (i, (field, value)) in fields.into_iter().enumerate() {
            expr.push(format!("{prefix}.#f{i} = :v{i}"));
            req = req.expression_attribute_names(format!("#f{i}"), field).expression_attribute_values(format!(":v{i}"), av(&value)?);
        }
        if let Some(ev) = event {
            expr.push("timeline = list_append(timeline, :ev)".into());
            req = req.expression_attribute_values(":ev", AttributeValue::L(vec![av(&ev)?]));
        }
        req.update_expression(format!("SET {}", expr.join(", "))).send().await.map_err(|e| {
            if is_ccf(&e) {
                StepError::InvalidInput(format!("order {order_id} has no {root} {}", key.unwrap_or("")))
            } else {
                StepError::from_sdk("orders.nested_update", e)
            }
        })?;
        Ok(())
    }
}

// ---------------------------------------------------------------- inventory

pub struct DynamoInventory {
    pub client: Client,
    pub table: String,
}

impl DynamoInventory {
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoInventory {
        DynamoInventory { client: Client::new(sdk), table }
    }
}

const CONFLICT_ATTEMPTS: u32 = 12;

/// The per-item cancellation codes of a cancelled transaction ("None", "ConditionalCheckFailed",
/// "TransactionConflict", ...), in request order; any other error is returned as a StepError.
fn cancellation_reasons(
    e: aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_smithy_runtime_api::http::Response,
    >,
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
    async fn reservation_item(&self, order_id: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
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
                let existing = self.reservation_item(order_id).await?;
                let status = existing.and_then(|i| i.get("status").and_then(|v| v.as_s().ok()).cloned()).unwrap_or_default();
                return if status == "RESERVED" || status == "ROUTED" {
                    Ok(Reservation::Reserved { fresh: false })
                } else {
                    Err(StepError::InvalidState(format!("reservation for {order_id} is {status}; not reserving again")))
                };
            }
            // Reasons 1.. are the SKUs, in `wanted` order: a failed condition means too little stock.
            let short_skus: Vec<(&String, &i64)> =
                wanted.iter().zip(reasons.iter().skip(1)).filter(|(_, r)| r.as_str() == "ConditionalCheckFailed").map(|(w, _)| w).collect();
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
        for attempt in 0..CONFLICT_ATTEMPTS {
            let Some(existing) = self.reservation_item(order_id).await? else { return Ok(false) };
            let status = existing.get("status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let version = num(&existing, "version");
            // What goes back: before routing, the SKU-level reservation; after routing, each
            // warehouse's allocation minus what already shipped.
            let mut items = vec![tx_update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(reservation_key(order_id)))
                    .update_expression("SET #st = :released, released_at = :now")
                    .condition_expression("#st = :was AND (attribute_not_exists(version) OR version = :v)")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":released", s("RELEASED"))
                    .expression_attribute_values(":was", s(status.clone()))
                    .expression_attribute_values(":v", n(version))
                    .expression_attribute_values(":now", s(now_rfc3339())),
            )?];
            match status.as_str() {
                "RESERVED" => {
                    for (sku, q) in num_map(&existing, "lines") {
                        items.push(sku_move(&self.table, &sku, "SET available = available + :q, reserved = reserved - :q", q)?);
                    }
                }
                "ROUTED" => {
                    let shipped = num_map(&existing, "shipped");
                    for (key, allocated) in num_map(&existing, "allocations") {
                        let rem = allocated - shipped.get(&key).copied().unwrap_or(0);
                        if rem <= 0 {
                            continue;
                        }
                        let (sku, wh) = split_alloc_key(&key)?;
                        items.push(stock_move(&self.table, &sku, &wh, "SET available = available + :q, allocated = allocated - :q", None, rem)?);
                        items.push(sku_move(&self.table, &sku, "SET available = available + :q, reserved = reserved - :q", rem)?);
                    }
                }
                _ => return Ok(false),
            }
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(true),
                Err(e) => cancellation_reasons(e, "inventory.release")?,
            };
            // The marker changed under us: released by a concurrent run (then nothing to do), or a
            // shipment moved the version (then recompute what remains).
            if reasons.first().map(String::as_str) != Some("ConditionalCheckFailed") {
                backoff(attempt).await;
            }
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
        Ok(out.item.map(|i| StockLevel {
            available: num(&i, "available"),
            reserved: num(&i, "reserved"),
            shipped: num(&i, "shipped"),
            received: num(&i, "received"),
        }))
    }

    async fn receive(&self, sku: &str, warehouse: &str, quantity: i64, receipt_key: &str) -> Result<bool> {
        if quantity <= 0 {
            return Err(StepError::InvalidInput("a receipt needs a positive quantity".into()));
        }
        let items = vec![
            receipt_marker(&self.table, receipt_key, sku, warehouse, quantity)?,
            stock_receive(&self.table, sku, warehouse, quantity)?,
            sku_receive(&self.table, sku, quantity)?,
        ];
        self.run_once(items, "inventory.receive").await
    }

    async fn set_reorder(&self, sku: &str, warehouse: &str, point: i64, quantity: i64) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(stock_key(sku, warehouse)))
            .update_expression("SET reorder_point = :p, reorder_quantity = :q, sku = :sku, warehouse = :wh")
            .expression_attribute_values(":p", n(point))
            .expression_attribute_values(":q", n(quantity))
            .expression_attribute_values(":sku", s(sku))
            .expression_attribute_values(":wh", s(warehouse))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("inventory.set_reorder", e))?;
        Ok(())
    }

    async fn warehouse_stock(&self, skus: &[String], warehouses: &[String]) -> Result<HashMap<String, HashMap<String, WarehouseStock>>> {
        let mut keys: Vec<String> = Vec::new();
        for sku in skus {
            for wh in warehouses {
                keys.push(stock_key(sku, wh));
            }
        }
        keys.sort();
        keys.dedup();
        let mut out: HashMap<String, HashMap<String, WarehouseStock>> = HashMap::new();
        for chunk in keys.chunks(100) {
            let mut ka = KeysAndAttributes::builder().consistent_read(true);
            for k in chunk {
                ka = ka.keys(HashMap::from([("pk".to_string(), s(k.clone()))]));
            }
            let mut pending = Some(HashMap::from([(self.table.clone(), ka.build().map_err(|e| StepError::Internal(e.to_string()))?)]));
            let mut attempts = 0;
            while let Some(req) = pending.take().filter(|r| !r.is_empty()) {
                attempts += 1;
                let res =
                    self.client.batch_get_item().set_request_items(Some(req)).send().await.map_err(|e| StepError::from_sdk("inventory.warehouse_stock", e))?;
                for item in res.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let sku = item.get("sku").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    let wh = item.get("warehouse").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    let st = WarehouseStock {
                        available: num(&item, "available"),
                        allocated: num(&item, "allocated"),
                        shipped: num(&item, "shipped"),
                        reorder_point: num(&item, "reorder_point"),
                        reorder_quantity: num(&item, "reorder_quantity"),
                    };
                    out.entry(wh).or_default().insert(sku, st);
                }
                pending = res.unprocessed_keys;
                if attempts > 5 && pending.as_ref().is_some_and(|p| !p.is_empty()) {
                    return Err(StepError::Retryable("inventory read throttled".into()));
                }
            }
        }
        Ok(out)
    }

    async fn allocate(&self, order_id: &str, plan: &[Allocation]) -> Result<AllocateOutcome> {
        let Some(existing) = self.reservation_item(order_id).await? else {
            return Err(StepError::InvalidState(format!("order {order_id} has no reservation to route")));
        };
        let status = existing.get("status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if status == "ROUTED" {
            return Ok(AllocateOutcome::Routed(allocations_of(&existing)?));
        }
        if status != "RESERVED" {
            return Err(StepError::InvalidState(format!("reservation for {order_id} is {status}; not routing it")));
        }
        // The plan must place exactly what was reserved.
        let mut planned: BTreeMap<String, i64> = BTreeMap::new();
        for a in plan {
            for (sku, q) in &a.lines {
                *planned.entry(sku.clone()).or_default() += q;
            }
        }
        if planned != num_map(&existing, "lines") {
            return Err(StepError::Internal(format!("routing plan for {order_id} does not match its reservation")));
        }
        let mut allocations = HashMap::new();
        let mut zeros = HashMap::new();
        for a in plan {
            for (sku, q) in &a.lines {
                allocations.insert(alloc_key(sku, &a.warehouse), n(*q));
                zeros.insert(alloc_key(sku, &a.warehouse), n(0));
            }
        }
        let mut items = vec![tx_update(
            Update::builder()
                .table_name(&self.table)
                .key("pk", s(reservation_key(order_id)))
                .update_expression("SET #st = :routed, allocations = :a, shipped = :z, shipments = :empty, version = :zero, routed_at = :now")
                .condition_expression("#st = :reserved")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":routed", s("ROUTED"))
                .expression_attribute_values(":reserved", s("RESERVED"))
                .expression_attribute_values(":a", AttributeValue::M(allocations))
                .expression_attribute_values(":z", AttributeValue::M(zeros))
                .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":now", s(now_rfc3339())),
        )?];
        for a in plan {
            for (sku, q) in &a.lines {
                items.push(stock_move(
                    &self.table,
                    sku,
                    &a.warehouse,
                    "SET available = available - :q, allocated = allocated + :q",
                    Some("available >= :q"),
                    *q,
                )?);
            }
        }
        if items.len() > 100 {
            return Err(StepError::InvalidInput("an order may route at most 99 SKU/warehouse pairs".into()));
        }
        for attempt in 0..CONFLICT_ATTEMPTS {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(AllocateOutcome::Routed(plan.to_vec())),
                Err(e) => cancellation_reasons(e, "inventory.allocate")?,
            };
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                let again = self.reservation_item(order_id).await?.unwrap_or_default();
                return match again.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) {
                    Some("ROUTED") => Ok(AllocateOutcome::Routed(allocations_of(&again)?)),
                    other => Err(StepError::InvalidState(format!("reservation for {order_id} is {other:?}; not routing it"))),
                };
            }
            if reasons.iter().skip(1).any(|r| r == "ConditionalCheckFailed") {
                return Ok(AllocateOutcome::Stale);
            }
            backoff(attempt).await;
        }
        Err(StepError::Retryable("allocation kept conflicting; retry".into()))
    }

    async fn reservation(&self, order_id: &str) -> Result<Option<ReservationState>> {
        let Some(item) = self.reservation_item(order_id).await? else { return Ok(None) };
        Ok(Some(ReservationState {
            status: item.get("status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
            lines: num_map(&item, "lines"),
            allocations: allocations_of(&item)?,
            shipped: num_map(&item, "shipped"),
        }))
    }

    async fn ship(&self, order_id: &str, shipment_id: &str, warehouse: &str, lines: &BTreeMap<String, i64>, charge: Charge<'_>) -> Result<ShipOutcome> {
        if lines.is_empty() || lines.values().any(|q| *q <= 0) {
            return Err(StepError::InvalidInput("a shipment needs at least one line with a positive quantity".into()));
        }
        if lines.len() > 49 {
            return Err(StepError::InvalidInput("a shipment may carry at most 49 SKUs".into()));
        }
        for attempt in 0..CONFLICT_ATTEMPTS {
            let item = self.reservation_item(order_id).await?.ok_or_else(|| StepError::InvalidState(format!("order {order_id} has no reservation")))?;
            let status = item.get("status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let ordered = num_map(&item, "lines");
            let allocations = num_map(&item, "allocations");
            let shipped = num_map(&item, "shipped");
            let open_here = |shipped: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
                allocations
                    .iter()
                    .filter_map(|(k, a)| k.strip_suffix(&format!("@{warehouse}")).map(|sku| (sku.to_string(), a - shipped.get(k).copied().unwrap_or(0))))
                    .collect()
            };
            let complete = |shipped: &BTreeMap<String, i64>| -> bool {
                ordered.iter().all(|(sku, q)| shipped.iter().filter(|(k, _)| k.starts_with(&format!("{sku}@"))).map(|(_, v)| *v).sum::<i64>() == *q)
            };
            // A replay: the shipment already left the books; answer as the first run did.
            if let Some(done) = item.get("shipments").and_then(|v| v.as_m().ok()).and_then(|m| m.get(shipment_id)).and_then(|v| v.as_m().ok()) {
                let amount = done.get("amount").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
                return Ok(ShipOutcome { amount_minor: amount, order_complete: complete(&shipped), open_here: open_here(&shipped), fresh: false });
            }
            if status != "ROUTED" {
                return Err(StepError::InvalidState(format!("reservation for {order_id} is {status}; cannot ship from it")));
            }
            let mut before: BTreeMap<String, i64> = BTreeMap::new();
            for (k, v) in &shipped {
                let (sku, _) = split_alloc_key(k)?;
                *before.entry(sku).or_default() += v;
            }
            let mut after = shipped.clone();
            for (sku, q) in lines {
                let key = alloc_key(sku, warehouse);
                let allocated = allocations.get(&key).copied().unwrap_or(0);
                let done = shipped.get(&key).copied().unwrap_or(0);
                if done + q > allocated {
                    return Err(StepError::InvalidInput(format!("{sku}: {warehouse} was allocated {allocated}, has shipped {done}, cannot ship {q} more")));
                }
                after.insert(key, done + q);
            }
            let amount = charge(&before);
            let version = num(&item, "version");
            let mut upd = Update::builder()
                .table_name(&self.table)
                .key("pk", s(reservation_key(order_id)))
                .condition_expression("#st = :routed AND version = :v AND attribute_not_exists(shipments.#sid)")
                .expression_attribute_names("#st", "status")
                .expression_attribute_names("#sid", shipment_id)
                .expression_attribute_values(":routed", s("ROUTED"))
                .expression_attribute_values(":v", n(version))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(
                    ":info",
                    AttributeValue::M(HashMap::from([
                        ("amount".to_string(), n(amount)),
                        ("warehouse".to_string(), s(warehouse)),
                        ("at".to_string(), s(now_rfc3339())),
                    ])),
                );
            let mut sets = vec!["shipments.#sid = :info".to_string(), "version = version + :one".to_string()];
            for (i, (sku, q)) in lines.iter().enumerate() {
                sets.push(format!("shipped.#k{i} = shipped.#k{i} + :q{i}"));
                upd = upd.expression_attribute_names(format!("#k{i}"), alloc_key(sku, warehouse)).expression_attribute_values(format!(":q{i}"), n(*q));
            }
            let mut items = vec![tx_update(upd.update_expression(format!("SET {}", sets.join(", "))))?];
            for (sku, q) in lines {
                items.push(stock_move(
                    &self.table,
                    sku,
                    warehouse,
                    "SET allocated = allocated - :q, shipped = if_not_exists(shipped, :zero) + :q",
                    Some("allocated >= :q"),
                    *q,
                )?);
                items.push(sku_move(&self.table, sku, "SET reserved = reserved - :q, shipped = if_not_exists(shipped, :zero) + :q", *q)?);
            }
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(ShipOutcome { amount_minor: amount, order_complete: complete(&after), open_here: open_here(&after), fresh: true }),
                Err(e) => cancellation_reasons(e, "inventory.ship")?,
            };
            if reasons.iter().skip(1).any(|r| r == "ConditionalCheckFailed") {
                return Err(StepError::Internal(format!("stock books for {order_id} disagree with its reservation")));
            }
            // Marker moved (another shipment of this order, or this one by a concurrent run): re-read.
            if reasons.first().map(String::as_str) != Some("ConditionalCheckFailed") {
                backoff(attempt).await;
            }
        }
        Err(StepError::Retryable("shipping stock kept conflicting; retry".into()))
    }

    async fn open_purchase_order(&self, sku: &str, warehouse: &str, quantity: i64) -> Result<Option<(String, i64)>> {
        let po_id = format!("po_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("PO#{sku}#{warehouse}")))
            .item("status", s("OPEN"))
            .item("po_id", s(&po_id))
            .item("sku", s(sku))
            .item("warehouse", s(warehouse))
            .item("quantity", n(quantity))
            .item("sent", AttributeValue::Bool(false))
            .item("opened_at", s(now_rfc3339()))
            // One open purchase order per SKU and warehouse, however many orders dip below the point.
            .condition_expression("attribute_not_exists(pk) OR #st = :received")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":received", s("RECEIVED"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Some((po_id, quantity))),
            Err(e) if is_ccf(&e) => {
                // Open already: the caller sends it only if nobody ever marked it sent.
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("PO#{sku}#{warehouse}")))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("inventory.get_purchase_order", e))?;
                let item = out.item.unwrap_or_default();
                let open = item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("OPEN");
                let sent = item.get("sent").and_then(|v| v.as_bool().ok()).copied().unwrap_or(true);
                let id = item.get("po_id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                Ok((open && !sent).then(|| (id, num(&item, "quantity"))))
            }
            Err(e) => Err(StepError::from_sdk("inventory.open_purchase_order", e)),
        }
    }

    async fn mark_purchase_order_sent(&self, sku: &str, warehouse: &str, po_id: &str) -> Result<()> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("PO#{sku}#{warehouse}")))
            .update_expression("SET sent = :t, sent_at = :now")
            .condition_expression("po_id = :id")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":id", s(po_id))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_ccf(&e) => Ok(()),
            Err(e) => Err(StepError::from_sdk("inventory.mark_purchase_order_sent", e)),
        }
    }

    async fn receive_purchase_order(&self, po_id: &str, sku: &str, warehouse: &str, quantity: i64) -> Result<ReceiveOutcome> {
        if quantity <= 0 {
            return Err(StepError::InvalidInput("a receipt needs a positive quantity".into()));
        }
        let items = vec![
            receipt_marker(&self.table, po_id, sku, warehouse, quantity)?,
            tx_update(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(format!("PO#{sku}#{warehouse}")))
                    .update_expression("SET #st = :received, received_at = :now, received_quantity = :q")
                    .condition_expression("po_id = :id AND #st = :open")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":received", s("RECEIVED"))
                    .expression_attribute_values(":open", s("OPEN"))
                    .expression_attribute_values(":id", s(po_id))
                    .expression_attribute_values(":q", n(quantity))
                    .expression_attribute_values(":now", s(now_rfc3339())),
            )?,
            stock_receive(&self.table, sku, warehouse, quantity)?,
            sku_receive(&self.table, sku, quantity)?,
        ];
        for attempt in 0..CONFLICT_ATTEMPTS {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(ReceiveOutcome::Received),
                Err(e) => cancellation_reasons(e, "inventory.receive_purchase_order")?,
            };
            match (reasons.first().map(String::as_str), reasons.get(1).map(String::as_str)) {
                (Some("ConditionalCheckFailed"), _) => return Ok(ReceiveOutcome::AlreadyReceived),
                (_, Some("ConditionalCheckFailed")) => return Ok(ReceiveOutcome::UnknownPurchaseOrder),
                _ => backoff(attempt).await,
            }
        }
        Err(StepError::Retryable("receiving kept conflicting; retry".into()))
    }
}

impl DynamoInventory {
    /// Run a transaction whose first item is a once-marker: true = done now, false = done before.
    async fn run_once(&self, items: Vec<TransactWriteItem>, context: &str) -> Result<bool> {
        for attempt in 0..CONFLICT_ATTEMPTS {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(true),
                Err(e) => cancellation_reasons(e, context)?,
            };
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                return Ok(false);
            }
            backoff(attempt).await;
        }
        Err(StepError::Retryable(format!("{context} kept conflicting; retry")))
    }
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> i64 {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}
fn num_map(item: &HashMap<String, AttributeValue>, k: &str) -> BTreeMap<String, i64> {
    item.get(k)
        .and_then(|v| v.as_m().ok())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_n().ok().and_then(|x| x.parse().ok()).unwrap_or(0))).collect())
        .unwrap_or_default()
}
fn stock_key(sku: &str, warehouse: &str) -> String {
    format!("STOCK#{sku}#{warehouse}")
}
fn alloc_key(sku: &str, warehouse: &str) -> String {
    format!("{sku}@{warehouse}")
}
fn split_alloc_key(k: &str) -> Result<(String, String)> {
    k.rsplit_once('@').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| StepError::Internal(format!("bad allocation key {k}")))
}
fn allocations_of(item: &HashMap<String, AttributeValue>) -> Result<Vec<Allocation>> {
    let mut by_wh: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (k, q) in num_map(item, "allocations") {
        let (sku, wh) = split_alloc_key(&k)?;
        by_wh.entry(wh).or_default().insert(sku, q);
    }
    Ok(by_wh.into_iter().map(|(warehouse, lines)| Allocation { warehouse, lines }).collect())
}
fn tx_update(u: aws_sdk_dynamodb::types::builders::UpdateBuilder) -> Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder().update(u.build().map_err(|e| StepError::Internal(e.to_string()))?).build())
}
fn tx_put(p: aws_sdk_dynamodb::types::builders::PutBuilder) -> Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder().put(p.build().map_err(|e| StepError::Internal(e.to_string()))?).build())
}
fn sku_move(table: &str, sku: &str, expr: &str, q: i64) -> Result<TransactWriteItem> {
    let mut values = HashMap::from([(":q".to_string(), n(q))]);
    if expr.contains(":zero") {
        values.insert(":zero".to_string(), n(0));
    }
    tx_update(Update::builder().table_name(table).key("pk", s(sku_key(sku))).update_expression(expr).set_expression_attribute_values(Some(values)))
}
fn stock_move(table: &str, sku: &str, warehouse: &str, expr: &str, condition: Option<&str>, q: i64) -> Result<TransactWriteItem> {
    let mut values = HashMap::from([(":q".to_string(), n(q))]);
    if expr.contains(":zero") {
        values.insert(":zero".to_string(), n(0));
    }
    tx_update(
        Update::builder()
            .table_name(table)
            .key("pk", s(stock_key(sku, warehouse)))
            .update_expression(expr)
            .set_condition_expression(condition.map(String::from))
            .set_expression_attribute_values(Some(values)),
    )
}
/// The once-marker of a delivery: the first item of every receiving transaction.
fn receipt_marker(table: &str, key: &str, sku: &str, warehouse: &str, q: i64) -> Result<TransactWriteItem> {
    tx_put(
        Put::builder()
            .table_name(table)
            .item("pk", s(format!("RECEIPT#{key}")))
            .item("sku", s(sku))
            .item("warehouse", s(warehouse))
            .item("quantity", n(q))
            .item("received_at", s(now_rfc3339()))
            .condition_expression("attribute_not_exists(pk)"),
    )
}

fn stock_receive(table: &str, sku: &str, warehouse: &str, q: i64) -> Result<TransactWriteItem> {
    tx_update(
        Update::builder()
            .table_name(table)
            .key("pk", s(stock_key(sku, warehouse)))
            .update_expression(
                "SET available = if_not_exists(available, :zero) + :q, allocated = if_not_exists(allocated, :zero), shipped = if_not_exists(shipped, :zero), sku = :sku, warehouse = :wh",
            )
            .expression_attribute_values(":q", n(q))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":sku", s(sku))
            .expression_attribute_values(":wh", s(warehouse)),
    )
}
fn sku_receive(table: &str, sku: &str, q: i64) -> Result<TransactWriteItem> {
    tx_update(
        Update::builder()
            .table_name(table)
            .key("pk", s(sku_key(sku)))
            .update_expression(
                "SET available = if_not_exists(available, :zero) + :q, received = if_not_exists(received, :zero) + :q, reserved = if_not_exists(reserved, :zero), shipped = if_not_exists(shipped, :zero)",
            )
            .expression_attribute_values(":q", n(q))
            .expression_attribute_values(":zero", n(0)),
    )
}

// ---------------------------------------------------------------- catalog

pub struct DynamoCatalog {
    pub client: Client,
    pub table: String,
}

impl DynamoCatalog {
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoCatalog {
        DynamoCatalog { client: Client::new(sdk), table }
    }
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
        self.get_document("RATES", "table").await
    }

    async fn put_item(&self, item: &CatalogItem) -> Result<()> {
        let mut record = to_item(item)?;
        record.insert("pk".into(), s(format!("PRODUCT#{}", item.sku)));
        self.client.put_item().table_name(&self.table).set_item(Some(record)).send().await.map_err(|e| StepError::from_sdk("catalog.put_item", e))?;
        Ok(())
    }

    async fn network(&self) -> Result<Network> {
        self.get_document("WAREHOUSES", "network").await
    }

    async fn put_network(&self, network: &Network) -> Result<()> {
        self.put_document("WAREHOUSES", "network", network).await
    }

    async fn put_rates(&self, rates: &RateTable) -> Result<()> {
        self.put_document("RATES", "table", rates).await
    }
}

impl DynamoCatalog {
    /// Store-wide settings live as one JSON document in one item (`RATES`, `WAREHOUSES`).
    async fn get_document<T: serde::de::DeserializeOwned>(&self, pk: &str, attr: &str) -> Result<T> {
        let out = self.client.get_item().table_name(&self.table).key("pk", s(pk)).send().await.map_err(|e| StepError::from_sdk("catalog.get_document", e))?;
        let json = out
            .item
            .and_then(|i| i.get(attr).and_then(|v| v.as_s().ok()).cloned())
            .ok_or_else(|| StepError::Internal(format!("{pk} missing from the catalog table")))?;
        serde_json::from_str(&json).map_err(|e| StepError::Internal(format!("{pk}: {e}")))
    }

    async fn put_document<T: serde::Serialize>(&self, pk: &str, attr: &str, value: &T) -> Result<()> {
        let json = serde_json::to_string(value).map_err(|e| StepError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item(attr, s(json))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("catalog.put_document", e))?;
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

impl DynamoIdempotency {
    /// Keys and once-markers are remembered 24 h (as Stripe keeps its idempotency keys).
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoIdempotency {
        DynamoIdempotency { client: Client::new(sdk), table, ttl_seconds: 86_400 }
    }
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
        Ok(Claim::Existing(IdempotencyRecord {
            request_hash: get("request_hash").unwrap_or_default(),
            order_id: get("order_id").unwrap_or_default(),
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

// ---------------------------------------------------------------- velocity

pub struct DynamoVelocity {
    pub client: Client,
    pub table: String,
}

impl DynamoVelocity {
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoVelocity {
        DynamoVelocity { client: Client::new(sdk), table }
    }
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
