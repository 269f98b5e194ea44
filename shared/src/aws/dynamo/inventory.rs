//! The inventory table: network counts per SKU, stock per warehouse, reservations, purchase orders
//! and receipts, moved in transactions that never take a count below zero.

use super::*;
use crate::domain::fulfillment::Allocation;
use crate::domain::order::{now_rfc3339, StockShortage};
use crate::domain::shipping::{self, alloc_key};
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::{BTreeMap, HashMap};

mod adjust;

pub struct DynamoInventory {
    pub client: Client,
    pub table: String,
}

impl DynamoInventory {
    /// `client` is the function's one DynamoDB client (`Wiring::dynamodb`), shared by its adapters.
    pub fn new(client: Client, table: String) -> DynamoInventory {
        DynamoInventory { client, table }
    }
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
        let (items, wanted) = (&items, &wanted);
        with_conflict_retries("inventory.reserve", move || async move {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Attempt::Done(Reservation::Reserved { fresh: true })),
                Err(e) => cancellation_reasons(e, "inventory.reserve")?,
            };
            // Reason 0 is the marker: this order already reserved (a replay).
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                let existing = self.reservation_item(order_id).await?;
                let status = existing.and_then(|i| i.get("status").and_then(|v| v.as_s().ok()).cloned()).unwrap_or_default();
                return if status == "RESERVED" || status == "ROUTED" {
                    Ok(Attempt::Done(Reservation::Reserved { fresh: false }))
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
                return Ok(Attempt::Done(Reservation::Short(short)));
            }
            // TransactionConflict (or no reasons given): another transaction touched these items.
            Ok(Attempt::Conflict)
        })
        .await
    }

    async fn release(&self, order_id: &str) -> Result<bool> {
        with_conflict_retries("inventory.release", move || async move {
            let Some(existing) = self.reservation_item(order_id).await? else { return Ok(Attempt::Done(false)) };
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
                _ => return Ok(Attempt::Done(false)),
            }
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(Attempt::Done(true)),
                Err(e) => cancellation_reasons(e, "inventory.release")?,
            };
            // The marker changed under us: released by a concurrent run (then nothing to do), or a
            // shipment moved the version (then recompute what remains).
            if reasons.first().map(String::as_str) != Some("ConditionalCheckFailed") {
                return Ok(Attempt::Conflict);
            }
            Ok(Attempt::Reread)
        })
        .await
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
            adjusted: num(&i, "adjusted"),
            returned: num(&i, "returned"),
            written_off: num(&i, "written_off"),
        }))
    }

    async fn restock_return(&self, return_key: &str, warehouse: &str, inspection: &BTreeMap<String, crate::domain::returns::Inspection>) -> Result<bool> {
        let units: i64 = inspection.values().map(|i| i.units()).sum();
        if units <= 0 || inspection.len() > 49 {
            return Err(StepError::InvalidInput(format!("a return restocks 1-49 SKUs and at least one unit ({} SKUs, {units} units)", inspection.len())));
        }
        // One transaction: the marker (once per return parcel) and, per SKU, the warehouse's and
        // the network's counts (at most 1 + 2 x 49 items, inside the 100-item limit).
        let mut items = vec![tx_put(
            Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("RETURN#{return_key}")))
                .item("warehouse", s(warehouse))
                .item("units", n(units))
                .item("received_at", s(now_rfc3339()))
                .condition_expression("attribute_not_exists(pk)"),
        )?];
        for (sku, i) in inspection.iter().filter(|(_, i)| i.units() > 0) {
            for key in [stock_key(sku, warehouse), sku_key(sku)] {
                items.push(tx_update(
                    Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(key))
                        .update_expression(
                            "SET available = if_not_exists(available, :zero) + :ok, returned = if_not_exists(returned, :zero) + :all, written_off = if_not_exists(written_off, :zero) + :bad",
                        )
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_values(":ok", n(i.resellable))
                        .expression_attribute_values(":all", n(i.units()))
                        .expression_attribute_values(":bad", n(i.damaged))
                        .expression_attribute_values(":zero", n(0)),
                )?);
            }
        }
        self.run_once(items, "inventory.restock_return").await
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

    async fn adjust(&self, adjustment: &crate::domain::store_data::Adjustment) -> Result<AdjustOutcome> {
        self.adjust_stock(adjustment).await
    }

    async fn adjustments(&self, sku: &str) -> Result<Vec<crate::domain::store_data::Adjustment>> {
        self.audit_trail(sku).await
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
                        received: num(&item, "received"),
                        adjusted: num(&item, "adjusted"),
                        returned: num(&item, "returned"),
                        written_off: num(&item, "written_off"),
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
        let items = &items;
        with_conflict_retries("inventory.allocate", move || async move {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Attempt::Done(AllocateOutcome::Routed(plan.to_vec()))),
                Err(e) => cancellation_reasons(e, "inventory.allocate")?,
            };
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                let again = self.reservation_item(order_id).await?.unwrap_or_default();
                return match again.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) {
                    Some("ROUTED") => Ok(Attempt::Done(AllocateOutcome::Routed(allocations_of(&again)?))),
                    other => Err(StepError::InvalidState(format!("reservation for {order_id} is {other:?}; not routing it"))),
                };
            }
            if reasons.iter().skip(1).any(|r| r == "ConditionalCheckFailed") {
                return Ok(Attempt::Done(AllocateOutcome::Stale));
            }
            Ok(Attempt::Conflict)
        })
        .await
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
        if lines.len() > crate::domain::checkout::MAX_DISTINCT_SKUS {
            return Err(StepError::InvalidInput(format!("a shipment may carry at most {} SKUs", crate::domain::checkout::MAX_DISTINCT_SKUS)));
        }
        with_conflict_retries("inventory.ship", move || async move {
            let item = self.reservation_item(order_id).await?.ok_or_else(|| StepError::InvalidState(format!("order {order_id} has no reservation")))?;
            let status = item.get("status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let ordered = num_map(&item, "lines");
            let allocations = num_map(&item, "allocations");
            let shipped = num_map(&item, "shipped");
            let open_here = |shipped: &BTreeMap<String, i64>| shipping::open_at(&allocations, shipped, warehouse);
            let complete = |shipped: &BTreeMap<String, i64>| shipping::order_complete(&ordered, shipped);
            // A replay: the shipment already left the books; answer as the first run did.
            if let Some(done) = item.get("shipments").and_then(|v| v.as_m().ok()).and_then(|m| m.get(shipment_id)).and_then(|v| v.as_m().ok()) {
                let amount = done.get("amount").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
                return Ok(Attempt::Done(ShipOutcome {
                    amount_minor: amount,
                    order_complete: complete(&shipped),
                    open_here: open_here(&shipped),
                    fresh: false,
                }));
            }
            if status != "ROUTED" {
                return Err(StepError::InvalidState(format!("reservation for {order_id} is {status}; cannot ship from it")));
            }
            let before = shipping::shipped_per_sku(&shipped);
            let after = shipping::after_parcel(&allocations, &shipped, warehouse, lines).map_err(StepError::InvalidInput)?;
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
                Ok(_) => {
                    return Ok(Attempt::Done(ShipOutcome { amount_minor: amount, order_complete: complete(&after), open_here: open_here(&after), fresh: true }))
                }
                Err(e) => cancellation_reasons(e, "inventory.ship")?,
            };
            if reasons.iter().skip(1).any(|r| r == "ConditionalCheckFailed") {
                return Err(StepError::Internal(format!("stock books for {order_id} disagree with its reservation")));
            }
            // Marker moved (another shipment of this order, or this one by a concurrent run): re-read.
            if reasons.first().map(String::as_str) != Some("ConditionalCheckFailed") {
                return Ok(Attempt::Conflict);
            }
            Ok(Attempt::Reread)
        })
        .await
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
        let items = &items;
        with_conflict_retries("inventory.receive_purchase_order", move || async move {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Attempt::Done(ReceiveOutcome::Received)),
                Err(e) => cancellation_reasons(e, "inventory.receive_purchase_order")?,
            };
            match (reasons.first().map(String::as_str), reasons.get(1).map(String::as_str)) {
                (Some("ConditionalCheckFailed"), _) => Ok(Attempt::Done(ReceiveOutcome::AlreadyReceived)),
                (_, Some("ConditionalCheckFailed")) => Ok(Attempt::Done(ReceiveOutcome::UnknownPurchaseOrder)),
                _ => Ok(Attempt::Conflict),
            }
        })
        .await
    }
}

impl DynamoInventory {
    /// Run a transaction whose first item is a once-marker: true = done now, false = done before.
    async fn run_once(&self, items: Vec<TransactWriteItem>, context: &str) -> Result<bool> {
        let items = &items;
        with_conflict_retries(context, move || async move {
            let reasons = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Attempt::Done(true)),
                Err(e) => cancellation_reasons(e, context)?,
            };
            if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                return Ok(Attempt::Done(false));
            }
            Ok(Attempt::Conflict)
        })
        .await
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
fn split_alloc_key(k: &str) -> Result<(String, String)> {
    shipping::split_alloc_key(k).map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| StepError::Internal(format!("bad allocation key {k}")))
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
                "SET available = if_not_exists(available, :zero) + :q, received = if_not_exists(received, :zero) + :q, allocated = if_not_exists(allocated, :zero), shipped = if_not_exists(shipped, :zero), sku = :sku, warehouse = :wh",
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
