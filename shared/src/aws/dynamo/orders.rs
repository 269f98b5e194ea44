//! The orders table: one item per order (the `Order` record), updated field by field and
//! conditionally (status transitions, shipments, captures, tracking).

use super::*;
use crate::domain::fraud::FraudAssessment;
use crate::domain::fulfillment::{tracking_is_final, tracking_rank};
use crate::domain::order::{now_rfc3339, CancelRequest, Dispatch, Order, OrderStatus, PaymentRecord, Shipment, StockShortage, TimelineEntry};
use crate::domain::order_index;
use crate::money::Money;
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use std::collections::BTreeMap;

/// A parcel's latest scan on the order's tracking log is the attribute `scan#<parcel id>`.
const SCAN_PREFIX: &str = "scan#";

/// The condition of every tracking write on the order item: parcel `#sid` exists and the scan
/// (`:st` at `:at`, rank `:r`) moves it forward: a higher rank, or the same rank with a newer carrier
/// timestamp. Final statuses are stored with rank 100, so nothing passes them.
const PARCEL_MOVES_FORWARD: &str = "attribute_exists(shipments.#sid) AND (attribute_not_exists(shipments.#sid.tracking_rank) \
     OR shipments.#sid.tracking_rank < :r OR (shipments.#sid.tracking_rank = :r AND shipments.#sid.tracking_status <> :st \
     AND shipments.#sid.tracking_updated_at < :at))";

pub struct DynamoOrders {
    pub client: Client,
    pub table: String,
}

impl DynamoOrders {
    /// `client` is the function's one DynamoDB client (`Wiring::dynamodb`), shared by its adapters.
    pub fn new(client: Client, table: String) -> DynamoOrders {
        DynamoOrders { client, table }
    }
}

impl DynamoOrders {
    /// Send a conditional update (its `:now` and `:ev` values added here): the order as written, or
    /// None when the condition refused it.
    async fn conditional(
        &self,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        event: TimelineEntry,
        context: &str,
    ) -> Result<Option<Order>> {
        let res = req
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(from_item(out.attributes.unwrap_or_default())?)),
            Err(e) if is_ccf(&e) => Ok(None),
            Err(e) => Err(StepError::from_sdk(context, e)),
        }
    }

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
        let mut item: std::collections::HashMap<String, AttributeValue> = to_item(order)?;
        // The listing indexes' keys (domain::order_index): by email always, by attention while the
        // status needs someone.
        item.insert("created_key".into(), s(order_index::sort_key(&order.created_at, &order.order_id)));
        if let Some((pk, sk)) = order_index::attention_keys(&order.order_id, order.status, &order.created_at) {
            item.insert("attention_pk".into(), s(pk));
            item.insert("attention_key".into(), s(sk));
        }
        let res = self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression("attribute_not_exists(order_id)").send().await;
        match res {
            Ok(_) => Ok(()),
            // The SDK retried a put that had taken effect (its answer was lost): the order there is
            // this one (same id and access token, both drawn for this request), so it is made.
            Err(e) if is_ccf(&e) => match self.get(&order.order_id).await? {
                Some(existing) if existing.access_token_sha256 == order.access_token_sha256 => Ok(()),
                _ => Err(StepError::Internal(format!("orders.create: order id {} is taken", order.order_id))),
            },
            Err(e) => Err(StepError::from_sdk("orders.create", e)),
        }
    }

    async fn get(&self, order_id: &str) -> Result<Option<Order>> {
        if order_id.contains('#') {
            // An order's side items (its email log) share the table; they are not orders.
            return Ok(None);
        }
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
        self.transition_setting(order_id, next, reason, event, None).await
    }

    async fn transition_pricing_shipment(&self, order_id: &str, next: OrderStatus, shipment_id: &str, amount: Money, event: TimelineEntry) -> Result<bool> {
        self.transition_setting(order_id, next, None, event, Some((shipment_id, av(&amount)?))).await
    }

    async fn append_timeline(&self, order_id: &str, event: TimelineEntry) -> Result<()> {
        self.update(order_id, vec![], Some(event)).await
    }

    async fn take_lease(&self, order_id: &str, name: &str, until: &str, now: &str) -> Result<bool> {
        // A top-level attribute (`lease_<name>`), not a member of the Order record: no map has to
        // exist first, and the order's views never show it.
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #l = :until")
            .condition_expression("attribute_exists(order_id) AND (attribute_not_exists(#l) OR #l < :now)")
            .expression_attribute_names("#l", format!("lease_{name}"))
            .expression_attribute_values(":until", s(until))
            .expression_attribute_values(":now", s(now))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.take_lease", e)),
        }
    }

    async fn get_for_view(&self, order_id: &str) -> Result<Option<Order>> {
        let read = |key: String| self.client.get_item().table_name(&self.table).key("order_id", s(key)).consistent_read(true).send();
        let (order, emails, tracking) =
            tokio::join!(self.get(order_id), read(crate::domain::order::email_log_key(order_id)), read(crate::domain::order::tracking_log_key(order_id)));
        let Some(mut order) = order? else { return Ok(None) };
        let emails = emails.map_err(|e| StepError::from_sdk("orders.get_email_log", e))?.item.unwrap_or_default();
        let tracking = tracking.map_err(|e| StepError::from_sdk("orders.get_tracking_log", e))?.item.unwrap_or_default();
        let mut scans = BTreeMap::new();
        for (name, v) in &tracking {
            if let (Some(sid), AttributeValue::M(scan)) = (name.strip_prefix(SCAN_PREFIX), v) {
                if let (Some(AttributeValue::S(st)), Some(AttributeValue::S(at))) = (scan.get("status"), scan.get("updated_at")) {
                    scans.insert(sid.to_string(), (st.clone(), at.clone()));
                }
            }
        }
        crate::domain::order::merge_scans(&mut order, scans);
        for log in [emails, tracking] {
            if let Some(AttributeValue::L(entries)) = log.get("timeline") {
                let entries: Vec<TimelineEntry> =
                    entries.iter().filter_map(|v| serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(v.clone()).ok()).collect();
                crate::domain::order::merge_timeline(&mut order.timeline, entries);
            }
        }
        Ok(Some(order))
    }

    async fn apply_tracking_aside(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool> {
        let Some(rank) = tracking_rank(status) else { return Ok(false) };
        // One attribute per parcel, `scan#<parcel id>` {status, updated_at, rank}: forward only,
        // as on the order item (a higher rank, or the same rank with a newer carrier timestamp).
        let scan = AttributeValue::M(
            [("status", s(status)), ("updated_at", s(updated_at)), ("rank", n(rank as i64))].into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(crate::domain::order::tracking_log_key(order_id)))
            .update_expression("SET #p = :scan, timeline = list_append(if_not_exists(timeline, :none), :ev)")
            .condition_expression("attribute_not_exists(#p) OR #p.#r < :r OR (#p.#r = :r AND #p.#st <> :st AND #p.#at < :at)")
            .expression_attribute_names("#p", format!("{SCAN_PREFIX}{shipment_id}"))
            .expression_attribute_names("#r", "rank")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#at", "updated_at")
            .expression_attribute_values(":scan", scan)
            .expression_attribute_values(":r", n(rank as i64))
            .expression_attribute_values(":st", s(status))
            .expression_attribute_values(":at", s(updated_at))
            .expression_attribute_values(":none", AttributeValue::L(vec![]))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.apply_tracking_aside", e)),
        }
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

    async fn record_dispatches(&self, order_id: &str, dispatches: &[Dispatch], event: TimelineEntry) -> Result<bool> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression(
                "SET dispatches = :d, dispatch_ends = if_not_exists(dispatch_ends, :none), updated_at = :now, timeline = list_append(timeline, :ev)",
            )
            .condition_expression("attribute_exists(order_id) AND attribute_not_exists(#cancel)")
            .expression_attribute_names("#cancel", "cancel")
            .expression_attribute_values(":d", av(&dispatches)?)
            .expression_attribute_values(":none", AttributeValue::M(Default::default()));
        self.conditional(req, event, "orders.record_dispatches").await.map(|o| o.is_some())
    }

    async fn request_cancel(&self, order_id: &str, cancel: &CancelRequest, event: TimelineEntry) -> Result<Option<Order>> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #cancel = :c, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(
                "attribute_not_exists(#cancel) AND attribute_not_exists(review_decision) AND \
                 ((#status = :ur AND attribute_exists(review_task_token)) OR #status IN (:conf, :ps))",
            )
            .expression_attribute_names("#cancel", "cancel")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":c", av(cancel)?)
            .expression_attribute_values(":ur", s(OrderStatus::UnderReview.as_str()))
            .expression_attribute_values(":conf", s(OrderStatus::Confirmed.as_str()))
            .expression_attribute_values(":ps", s(OrderStatus::PartiallyShipped.as_str()));
        self.conditional(req, event, "orders.request_cancel").await
    }

    async fn record_review_decision(&self, order_id: &str, decision: &str, event: TimelineEntry) -> Result<bool> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET review_decision = :d, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(
                "#status = :ur AND attribute_exists(review_task_token) AND attribute_not_exists(review_decision) AND attribute_not_exists(#cancel)",
            )
            .expression_attribute_names("#cancel", "cancel")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":d", s(decision))
            .expression_attribute_values(":ur", s(OrderStatus::UnderReview.as_str()));
        self.conditional(req, event, "orders.record_review_decision").await.map(|o| o.is_some())
    }

    async fn record_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        refunded_before: i64,
        units_before: &BTreeMap<String, i64>,
        return_seq_before: i64,
    ) -> Result<RecordRefund> {
        // Orders written before the ledger existed get its empty maps first (idempotent).
        self.client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET refunds = if_not_exists(refunds, :m), refunded_units = if_not_exists(refunded_units, :m), refunded_minor = if_not_exists(refunded_minor, :z)")
            .condition_expression("attribute_exists(order_id)")
            .expression_attribute_values(":m", AttributeValue::M(Default::default()))
            .expression_attribute_values(":z", n(0))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("orders.record_refund", e))?;
        let mut set = vec!["refunds.#rid = :r".to_string(), "refunded_minor = :total".to_string()];
        let mut cond = vec!["attribute_not_exists(refunds.#rid)".to_string(), "refunded_minor = :before".to_string(), return_seq_condition(return_seq_before)];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .expression_attribute_values(":rseq", n(return_seq_before))
            .expression_attribute_names("#rid", &refund.refund_id)
            .expression_attribute_values(":r", av(refund)?)
            .expression_attribute_values(":total", n(refunded_before + refund.amount_minor))
            .expression_attribute_values(":before", n(refunded_before));
        for (i, (sku, q)) in refund.lines.iter().enumerate() {
            let was = units_before.get(sku).copied().unwrap_or(0);
            set.push(format!("refunded_units.#s{i} = :u{i}"));
            // None refunded: never refunded, or given back by a failed refund (then it is 0).
            cond.push(if was == 0 {
                format!("(attribute_not_exists(refunded_units.#s{i}) OR refunded_units.#s{i} = :w{i})")
            } else {
                format!("refunded_units.#s{i} = :w{i}")
            });
            req = req
                .expression_attribute_names(format!("#s{i}"), sku)
                .expression_attribute_values(format!(":u{i}"), n(was + q))
                .expression_attribute_values(format!(":w{i}"), n(was));
        }
        set.extend(["updated_at = :now".to_string(), "timeline = list_append(timeline, :ev)".to_string()]);
        let ev = TimelineEntry::now("refund_requested", Some(format!("{} ({})", refund.amount_minor, refund.refund_id)));
        let req = req.update_expression(format!("SET {}", set.join(", "))).condition_expression(cond.join(" AND "));
        if self.conditional(req, ev, "orders.record_refund").await?.is_some() {
            return Ok(RecordRefund::Recorded);
        }
        let order = self.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
        Ok(match order.refunds.get(&refund.refund_id) {
            Some(r) => RecordRefund::Exists(Box::new(r.clone())),
            None => RecordRefund::Conflict,
        })
    }

    async fn record_collection(&self, order_id: &str, c: &crate::domain::collection::Collection, event: TimelineEntry) -> Result<bool> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #c = :c, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression("#status = :failed AND (attribute_not_exists(#c) OR #c.#cs = :refused)")
            .expression_attribute_names("#c", "collection")
            .expression_attribute_names("#cs", "status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":c", av(c)?)
            .expression_attribute_values(":failed", s(OrderStatus::Failed.as_str()))
            .expression_attribute_values(":refused", s("failed"));
        self.conditional(req, event, "orders.record_collection").await.map(|o| o.is_some())
    }

    async fn settle_collection(&self, order_id: &str, from: &str, fields: Vec<(&str, serde_json::Value)>, event: TimelineEntry) -> Result<bool> {
        let mut expr = vec!["updated_at = :now".to_string(), "timeline = list_append(timeline, :ev)".to_string()];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .condition_expression("#c.#cs = :from")
            .expression_attribute_names("#c", "collection")
            .expression_attribute_names("#cs", "status")
            .expression_attribute_values(":from", s(from));
        for (i, (field, value)) in fields.into_iter().enumerate() {
            expr.push(format!("#c.#f{i} = :v{i}"));
            req = req.expression_attribute_names(format!("#f{i}"), field).expression_attribute_values(format!(":v{i}"), av(&value)?);
        }
        let req = req.update_expression(format!("SET {}", expr.join(", ")));
        self.conditional(req, event, "orders.settle_collection").await.map(|o| o.is_some())
    }

    async fn record_return(
        &self,
        order_id: &str,
        ret: &crate::domain::returns::ReturnRecord,
        return_seq_before: i64,
        refunded_before: i64,
        event: TimelineEntry,
    ) -> Result<RecordReturn> {
        // Orders written before returns existed get the empty map first (idempotent).
        self.client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #returns = if_not_exists(#returns, :m)")
            .condition_expression("attribute_exists(order_id)")
            .expression_attribute_names("#returns", "returns")
            .expression_attribute_values(":m", AttributeValue::M(Default::default()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("orders.record_return", e))?;
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET #returns.#rid = :r, return_seq = :next, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(format!(
                "attribute_not_exists(#returns.#rid) AND {} AND (attribute_not_exists(refunded_minor) OR refunded_minor = :before)",
                return_seq_condition(return_seq_before)
            ))
            .expression_attribute_names("#returns", "returns")
            .expression_attribute_names("#rid", &ret.return_id)
            .expression_attribute_values(":r", av(ret)?)
            .expression_attribute_values(":rseq", n(return_seq_before))
            .expression_attribute_values(":next", n(return_seq_before + 1))
            .expression_attribute_values(":before", n(refunded_before));
        if self.conditional(req, event, "orders.record_return").await?.is_some() {
            return Ok(RecordReturn::Recorded);
        }
        let order = self.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found")))?;
        Ok(match order.returns.get(&ret.return_id) {
            Some(r) => RecordReturn::Exists(Box::new(r.clone())),
            None => RecordReturn::Conflict,
        })
    }

    async fn update_return_parcel(
        &self,
        order_id: &str,
        return_id: &str,
        warehouse: &str,
        from: &[&str],
        fields: Vec<(&str, serde_json::Value)>,
        event: Option<TimelineEntry>,
    ) -> Result<bool> {
        let path = "#returns.#rid.parcels.#wh";
        let mut expr = vec!["updated_at = :now".to_string()];
        let allowed: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .condition_expression(format!("{path}.#status IN ({})", allowed.join(", ")))
            .expression_attribute_names("#returns", "returns")
            .expression_attribute_names("#rid", return_id)
            .expression_attribute_names("#wh", warehouse)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", s(now_rfc3339()));
        for (i, st) in from.iter().enumerate() {
            req = req.expression_attribute_values(format!(":from{i}"), s(*st));
        }
        for (i, (field, value)) in fields.into_iter().enumerate() {
            expr.push(format!("{path}.#f{i} = :v{i}"));
            req = req.expression_attribute_names(format!("#f{i}"), field).expression_attribute_values(format!(":v{i}"), av(&value)?);
        }
        if let Some(ev) = event {
            expr.push("timeline = list_append(timeline, :ev)".into());
            req = req.expression_attribute_values(":ev", AttributeValue::L(vec![av(&ev)?]));
        }
        match req.update_expression(format!("SET {}", expr.join(", "))).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.update_return_parcel", e)),
        }
    }

    async fn settle_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        to: &str,
        gateway_refund_id: Option<&str>,
        event: TimelineEntry,
    ) -> Result<bool> {
        let mut set = vec!["refunds.#rid.#st = :to".to_string(), "updated_at = :now".to_string(), "timeline = list_append(timeline, :ev)".to_string()];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .condition_expression("refunds.#rid.#st = :from")
            .expression_attribute_names("#rid", &refund.refund_id)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":from", s(&refund.status))
            .expression_attribute_values(":to", s(to));
        if let Some(id) = gateway_refund_id {
            set.push("refunds.#rid.gateway_refund_id = :gid".into());
            req = req.expression_attribute_values(":gid", s(id));
        }
        if crate::domain::refund::gives_back(to) {
            // The ledger gives back what this refund held, in the same write as its status.
            set.push("refunded_minor = refunded_minor - :amt".into());
            req = req.expression_attribute_values(":amt", n(refund.amount_minor));
            for (i, (sku, q)) in refund.lines.iter().enumerate() {
                set.push(format!("refunded_units.#s{i} = refunded_units.#s{i} - :u{i}"));
                req = req.expression_attribute_names(format!("#s{i}"), sku).expression_attribute_values(format!(":u{i}"), n(*q));
            }
        }
        let req = req.update_expression(format!("SET {}", set.join(", ")));
        self.conditional(req, event, "orders.settle_refund").await.map(|o| o.is_some())
    }

    async fn list(&self, query: &order_index::ListQuery) -> Result<(Vec<Order>, Option<String>)> {
        self.list_orders(query).await
    }

    async fn record_issued_token(&self, order_id: &str, token_hash: &str, dispatch_id: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET issued_tokens.#th = :d")
            .condition_expression("attribute_exists(order_id)")
            .expression_attribute_names("#th", token_hash)
            .expression_attribute_values(":d", s(dispatch_id))
            .send()
            .await
            .map_err(|e| {
                if is_ccf(&e) {
                    StepError::InvalidInput(format!("order {order_id} not found"))
                } else {
                    StepError::from_sdk("orders.record_issued_token", e)
                }
            })?;
        Ok(())
    }

    async fn end_dispatch(
        &self,
        order_id: &str,
        dispatch_id: &str,
        end: &crate::domain::order::DispatchEnd,
        settled: Option<&str>,
        event: TimelineEntry,
    ) -> Result<Order> {
        let req = || -> Result<_> {
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("order_id", s(order_id))
                .condition_expression("attribute_exists(order_id) AND attribute_not_exists(dispatch_ends.#d)")
                .expression_attribute_names("#d", dispatch_id)
                .expression_attribute_values(":e", av(end)?);
            Ok(match settled {
                // The last dispatch of a fully captured order: its settlement in the same write.
                Some(text) => r
                    .update_expression("SET dispatch_ends.#d = :e, payment.settled = :st, updated_at = :now, timeline = list_append(timeline, :ev)")
                    .expression_attribute_values(":st", s(text)),
                None => r.update_expression("SET dispatch_ends.#d = :e, updated_at = :now, timeline = list_append(timeline, :ev)"),
            })
        };
        let first = req()?
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let written = match first {
            Ok(out) => Some(from_item(out.attributes.unwrap_or_default())?),
            Err(e) if is_ccf(&e) => None,
            // An order routed before `dispatch_ends` existed (in flight across an upgrade) has no map
            // to set a member of: DynamoDB refuses the path with a ValidationException ("The
            // document path provided in the update expression is invalid for update"). Make the
            // map, then write again.
            Err(e) if e.as_service_error().and_then(|se| se.code()) == Some("ValidationException") => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("order_id", s(order_id))
                    .update_expression("SET dispatch_ends = if_not_exists(dispatch_ends, :none)")
                    .condition_expression("attribute_exists(order_id)")
                    .expression_attribute_values(":none", AttributeValue::M(Default::default()))
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("orders.end_dispatch", e))?;
                self.conditional(req()?, event, "orders.end_dispatch").await?
            }
            Err(e) => return Err(StepError::from_sdk("orders.end_dispatch", e)),
        };
        match written {
            Some(order) => Ok(order),
            // Ended before (a parcel run started twice): the order as it is, read strongly.
            None => self.get(order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {order_id} not found"))),
        }
    }

    async fn record_dispatch_cancelled(&self, order_id: &str, token_hash: &str, event: TimelineEntry) -> Result<bool> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET answered_tokens.#th = :cancelled, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression("attribute_exists(#cancel) AND attribute_not_exists(answered_tokens.#th) AND #status IN (:c, :p)")
            .expression_attribute_names("#cancel", "cancel")
            .expression_attribute_names("#th", token_hash)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":cancelled", s("cancelled"))
            .expression_attribute_values(":c", s(OrderStatus::Confirmed.as_str()))
            .expression_attribute_values(":p", s(OrderStatus::PartiallyShipped.as_str()));
        self.conditional(req, event, "orders.record_dispatch_cancelled").await.map(|o| o.is_some())
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

    async fn deliver_last_parcel(&self, order_id: &str, shipment_id: &str, updated_at: &str, others: &[String], events: [TimelineEntry; 2]) -> Result<bool> {
        let rank = tracking_rank("delivered").unwrap_or(6) as i64;
        let mut cond = vec![PARCEL_MOVES_FORWARD.to_string(), "#status IN (:shipped, :pf)".to_string()];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            // DELIVERED is not a status operators list: the order leaves the attention index.
            .update_expression(
                "SET shipments.#sid.tracking_status = :st, shipments.#sid.tracking_updated_at = :at, shipments.#sid.tracking_rank = :final, \
                 #status = :delivered, status_reason = :none, updated_at = :now, timeline = list_append(timeline, :evs) REMOVE attention_pk, attention_key",
            )
            .expression_attribute_names("#sid", shipment_id)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":st", s("delivered"))
            .expression_attribute_values(":at", s(updated_at))
            .expression_attribute_values(":r", n(rank))
            .expression_attribute_values(":final", n(100))
            .expression_attribute_values(":shipped", s(OrderStatus::Shipped.as_str()))
            .expression_attribute_values(":pf", s(OrderStatus::PartiallyFulfilled.as_str()))
            .expression_attribute_values(":delivered", s(OrderStatus::Delivered.as_str()))
            .expression_attribute_values(":none", AttributeValue::Null(true))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":evs", AttributeValue::L(events.iter().map(av).collect::<Result<Vec<_>>>()?));
        // Every other parcel is delivered already.
        for (i, other) in others.iter().enumerate() {
            cond.push(format!("shipments.#o{i}.tracking_status = :st"));
            req = req.expression_attribute_names(format!("#o{i}"), other);
        }
        match req.condition_expression(cond.join(" AND ")).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.deliver_last_parcel", e)),
        }
    }

    async fn apply_tracking(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool> {
        let Some(rank) = tracking_rank(status) else { return Ok(false) };
        let stored_rank = if tracking_is_final(status) { 100 } else { rank as i64 };
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression("SET shipments.#sid.tracking_status = :st, shipments.#sid.tracking_updated_at = :at, shipments.#sid.tracking_rank = :stored, updated_at = :now, timeline = list_append(timeline, :ev)")
            .condition_expression(PARCEL_MOVES_FORWARD)
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
    /// A status change (conditional on the statuses it may come from), with the attention index
    /// keys it implies, and optionally a shipment's price in the same write.
    async fn transition_setting(
        &self,
        order_id: &str,
        next: OrderStatus,
        reason: Option<String>,
        event: TimelineEntry,
        price: Option<(&str, AttributeValue)>,
    ) -> Result<bool> {
        let from = next.allowed_from();
        if from.is_empty() {
            return Err(StepError::InvalidState(format!("no transition leads to {}", next.as_str())));
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let now = now_rfc3339();
        // Into, out of or between the statuses operators list (keys-only index: one index write).
        let (attention, update) = match order_index::attention_keys(order_id, next, &now) {
            Some(keys) => (Some(keys), "attention_pk = :apk, attention_key = :akey"),
            None => (None, ""),
        };
        let mut sets = vec!["#status = :next", "status_reason = :reason", "updated_at = :now", "timeline = list_append(timeline, :ev)"];
        let mut condition = format!("#status IN ({})", placeholders.join(", "));
        if price.is_some() {
            sets.push("shipments.#sid.amount = :amount");
            condition.push_str(" AND attribute_exists(shipments.#sid)");
        }
        if !update.is_empty() {
            sets.push(update);
        }
        let expression = format!("SET {}{}", sets.join(", "), if attention.is_none() { " REMOVE attention_pk, attention_key" } else { "" });
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(":reason", reason.map(s).unwrap_or(AttributeValue::Null(true)))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":ev", AttributeValue::L(vec![av(&event)?]));
        for (p, st) in placeholders.iter().zip(from) {
            req = req.expression_attribute_values(p, s(st.as_str()));
        }
        if let Some((pk, sk)) = attention {
            req = req.expression_attribute_values(":apk", s(pk)).expression_attribute_values(":akey", s(sk));
        }
        if let Some((sid, amount)) = price {
            req = req.expression_attribute_names("#sid", sid).expression_attribute_values(":amount", amount);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(StepError::from_sdk("orders.transition", e)),
        }
    }

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

/// `return_seq` as read (absent on orders without returns): the compare-and-set shared by returns
/// and refunds (`:rseq`).
fn return_seq_condition(before: i64) -> String {
    if before == 0 {
        "(attribute_not_exists(return_seq) OR return_seq = :rseq)".to_string()
    } else {
        "return_seq = :rseq".to_string()
    }
}

/// A claim on an email older than this is taken to be from a crashed attempt and may be taken over.
const EMAIL_CLAIM_STALE_SECONDS: i64 = 120;

/// On the order's email log item: `claim#<key>` {claimant, at} while an email is being sent,
/// `sent#<key>` (when) once it went out or was skipped, and the `timeline` of emails sent.
#[async_trait]
impl EmailLog for DynamoOrders {
    async fn claim_email(&self, order_id: &str, key: &str) -> Result<OnceClaim> {
        let log_key = crate::domain::order::email_log_key(order_id);
        let now = epoch_now();
        // Who claimed: a retry of this very write (the SDK's, after a lost answer) finds its own claim.
        let claimant = uuid::Uuid::new_v4().simple().to_string();
        let claim = AttributeValue::M([("claimant".to_string(), s(&claimant)), ("at".to_string(), n(now))].into());
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(&log_key))
            .update_expression("SET #c = :claim")
            .condition_expression("attribute_not_exists(#s) AND (attribute_not_exists(#c) OR #c.#at < :stale)")
            .expression_attribute_names("#c", format!("claim#{key}"))
            .expression_attribute_names("#s", format!("sent#{key}"))
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":claim", claim)
            .expression_attribute_values(":stale", n(now - EMAIL_CLAIM_STALE_SECONDS))
            .send()
            .await;
        match res {
            Ok(_) => Ok(OnceClaim::Go),
            Err(e) if is_ccf(&e) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("order_id", s(&log_key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StepError::from_sdk("orders.email_claim_get", e))?
                    .item
                    .unwrap_or_default();
                let held_by = item.get(&format!("claim#{key}")).and_then(|c| c.as_m().ok()).and_then(|c| c.get("claimant")).and_then(|c| c.as_s().ok());
                Ok(if item.contains_key(&format!("sent#{key}")) {
                    OnceClaim::AlreadyDone
                } else if held_by == Some(&claimant) {
                    OnceClaim::Go
                } else {
                    OnceClaim::InProgress
                })
            }
            Err(e) => Err(StepError::from_sdk("orders.claim_email", e)),
        }
    }

    async fn email_done(&self, order_id: &str, key: &str, event: Option<TimelineEntry>) -> Result<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(crate::domain::order::email_log_key(order_id)))
            .expression_attribute_names("#c", format!("claim#{key}"))
            .expression_attribute_names("#s", format!("sent#{key}"))
            .expression_attribute_values(":now", s(now_rfc3339()));
        req = match event {
            Some(ev) => req
                .update_expression("SET #s = :now, timeline = list_append(if_not_exists(timeline, :none), :ev) REMOVE #c")
                .expression_attribute_values(":none", AttributeValue::L(vec![]))
                .expression_attribute_values(":ev", AttributeValue::L(vec![av(&ev)?])),
            None => req.update_expression("SET #s = :now REMOVE #c"),
        };
        req.send().await.map_err(|e| StepError::from_sdk("orders.email_done", e))?;
        Ok(())
    }

    async fn release_email(&self, order_id: &str, key: &str) -> Result<()> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(crate::domain::order::email_log_key(order_id)))
            .update_expression("REMOVE #c")
            .condition_expression("attribute_exists(#c) AND attribute_not_exists(#s)")
            .expression_attribute_names("#c", format!("claim#{key}"))
            .expression_attribute_names("#s", format!("sent#{key}"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_ccf(&e) => Ok(()),
            Err(e) => Err(StepError::from_sdk("orders.release_email", e)),
        }
    }
}
