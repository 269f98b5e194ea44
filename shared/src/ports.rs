//! The ports the steps are written against. Each has one AWS adapter in `crate::aws` and the
//! sandbox-backed HTTP client for the gateway; handlers only see these traits.

use crate::domain::fraud::FraudAssessment;
use crate::domain::fulfillment::{Allocation, Network, Warehouse};
use crate::domain::order::{Address, CancelRequest, Dispatch, Order, OrderStatus, Parcel, PaymentRecord, Shipment, StockShortage, TimelineEntry};
use crate::domain::pricing::{CatalogItem, CountryRates, RateTable};
use crate::error::StepError;
use crate::money::Money;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};

pub type Result<T> = std::result::Result<T, StepError>;

#[async_trait]
pub trait OrderRepository: Send + Sync {
    /// Store a new order; fails if the id exists.
    async fn create(&self, order: &Order) -> Result<()>;
    async fn get(&self, order_id: &str) -> Result<Option<Order>>;
    /// Move the order to `next` only from a status in `next.allowed_from()`, appending `event` to the
    /// timeline. Returns false (and writes nothing) when the order is not in such a status.
    async fn transition(&self, order_id: &str, next: OrderStatus, reason: Option<String>, event: TimelineEntry) -> Result<bool>;
    /// A transition that also sets a shipment's price (`shipments.<id>.amount`), in one write when
    /// the adapter can: false = the transition was not allowed and nothing was written. An adapter
    /// without a one-write form writes the price, then transitions.
    async fn transition_pricing_shipment(&self, order_id: &str, next: OrderStatus, shipment_id: &str, amount: Money, event: TimelineEntry) -> Result<bool> {
        self.update_shipment(order_id, shipment_id, vec![("amount", serde_json::json!(amount))], None).await?;
        self.transition(order_id, next, None, event).await
    }
    async fn append_timeline(&self, order_id: &str, event: TimelineEntry) -> Result<()>;
    /// Take the order's lease `name` until `until` (RFC 3339, UTC), unless another holder's lease
    /// is still running at `now`: false then, and nothing written. One worker at a time closes an
    /// order (the sweeper's runs may overlap), and a worker that dies lets the lease run out.
    async fn take_lease(&self, order_id: &str, name: &str, until: &str, now: &str) -> Result<bool>;
    /// A carrier scan that tells nobody anything and decides nothing (`tracking_kept_aside`: in
    /// transit and before) on the order's small tracking log, forward only per parcel as
    /// `apply_tracking` is; true when it moved the parcel on.
    async fn apply_tracking_aside(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool>;
    /// The order with its email log merged into its timeline (in time order) and the scans on its
    /// tracking log into its parcels and timeline: what the order views show.
    async fn get_for_view(&self, order_id: &str) -> Result<Option<Order>>;
    async fn record_payment(&self, order_id: &str, payment: &PaymentRecord, event: Option<TimelineEntry>) -> Result<()>;
    async fn record_fraud(&self, order_id: &str, fraud: &FraudAssessment, event: TimelineEntry) -> Result<()>;
    async fn record_shortage(&self, order_id: &str, shortage: &[StockShortage]) -> Result<()>;
    async fn record_review_token(&self, order_id: &str, token: &str) -> Result<()>;
    /// Record the routing; false (nothing written) when a cancel was asked for first.
    async fn record_dispatches(&self, order_id: &str, dispatches: &[Dispatch], event: TimelineEntry) -> Result<bool>;
    /// Record a cancel request, once: only while the order can still be cancelled (under review
    /// with its review task waiting, confirmed, partly shipped) and no review decision took effect.
    /// The order as the write left it, or None when refused (re-read to say why).
    async fn request_cancel(&self, order_id: &str, cancel: &CancelRequest, event: TimelineEntry) -> Result<Option<Order>>;
    /// Record a reviewer's decision, once: under review, its task waiting, no decision and no
    /// cancel before it (OPS-1). False when refused.
    async fn record_review_decision(&self, order_id: &str, decision: &str, event: TimelineEntry) -> Result<bool>;
    /// A warehouse accepted the cancel of a dispatch: its pick-list token is answered (once, like
    /// a shipment report). False when the token was answered before or no cancel was asked for.
    /// Add a refund to the ledger, once per refund id, only if the ledger is as it was read
    /// (`refunded_before`, each SKU's refunded units): two concurrent refunds never both pass.
    async fn record_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        refunded_before: i64,
        units_before: &BTreeMap<String, i64>,
        return_seq_before: i64,
    ) -> Result<RecordRefund>;
    /// Record a return, once per return id, only if no other return was recorded since the order
    /// was read (`return_seq`) and the refund ledger is as read (`refunded_minor`): a unit is never
    /// in two returns, nor returned after it was refunded. `record_refund` checks `return_seq` too.
    async fn record_return(
        &self,
        order_id: &str,
        ret: &crate::domain::returns::ReturnRecord,
        return_seq_before: i64,
        refunded_before: i64,
        event: TimelineEntry,
    ) -> Result<RecordReturn>;
    /// Set fields of one return parcel (`returns.<id>.parcels.<warehouse>.<field>`) only while its
    /// status is one of `from`; false when it was not (another step moved it first).
    async fn update_return_parcel(
        &self,
        order_id: &str,
        return_id: &str,
        warehouse: &str,
        from: &[&str],
        fields: Vec<(&str, serde_json::Value)>,
        event: Option<TimelineEntry>,
    ) -> Result<bool>;
    /// Move one refund to `to`, compare-and-set on the status it was read with (`refund.status`),
    /// with the gateway's refund id when known. When `to` gives back (failed, canceled) the
    /// refund's amount and units leave `refunded_minor` / `refunded_units` in the same write, so
    /// they can be refunded again. false = the refund's status was no longer the one read.
    async fn settle_refund(
        &self,
        order_id: &str,
        refund: &crate::domain::refund::Refund,
        to: &str,
        gateway_refund_id: Option<&str>,
        event: TimelineEntry,
    ) -> Result<bool>;
    /// Record an operator's decision about goods shipped uncharged, once: only on a FAILED order
    /// with no decision, or after a retry the gateway refused (OPS-1). False when refused.
    async fn record_collection(&self, order_id: &str, collection: &crate::domain::collection::Collection, event: TimelineEntry) -> Result<bool>;
    /// Set fields of `collection`, compare-and-set on its status (`from`). False when it moved.
    async fn settle_collection(&self, order_id: &str, from: &str, fields: Vec<(&str, serde_json::Value)>, event: TimelineEntry) -> Result<bool>;
    /// A pick-list token (its hash) issued for one of the order's dispatches. Idempotent.
    async fn record_issued_token(&self, order_id: &str, token_hash: &str, dispatch_id: &str) -> Result<()>;
    /// Record how a dispatch ended, once (a second end of the same dispatch changes nothing); the
    /// order as it now is. `settled`: the payment's settlement, written in the same update (the last
    /// dispatch of a fully captured order).
    async fn end_dispatch(
        &self,
        order_id: &str,
        dispatch_id: &str,
        end: &crate::domain::order::DispatchEnd,
        settled: Option<&str>,
        event: TimelineEntry,
    ) -> Result<Order>;
    async fn record_dispatch_cancelled(&self, order_id: &str, token_hash: &str, event: TimelineEntry) -> Result<bool>;
    /// One page of the orders an operator asked for (`domain::order_index`), oldest first, and the
    /// cursor of the next page.
    async fn list(&self, query: &crate::domain::order_index::ListQuery) -> Result<(Vec<Order>, Option<String>)>;
    /// Add a reported shipment while the order is CONFIRMED or PARTIALLY_SHIPPED. Never overwrites.
    async fn add_shipment(&self, order_id: &str, shipment: &Shipment, token_hash: &str) -> Result<AddShipment>;
    /// Take back a report that answered nothing (its token was no longer waiting).
    async fn remove_shipment(&self, order_id: &str, shipment_id: &str, token_hash: &str) -> Result<()>;
    /// Set fields of one shipment (`shipments.<id>.<field>`), optionally appending a timeline event.
    async fn update_shipment(&self, order_id: &str, shipment_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()>;
    /// Record a shipment's capture and add it to `payment.captured_minor`, once. false = recorded before.
    async fn record_capture(&self, order_id: &str, shipment_id: &str, amount: Money, event: TimelineEntry) -> Result<bool>;
    /// Set fields of `payment` (`payment.<field>`).
    async fn update_payment(&self, order_id: &str, fields: Vec<(&str, serde_json::Value)>, event: Option<TimelineEntry>) -> Result<()>;
    /// Apply a carrier status to a shipment only if it moves forward (see fulfillment::tracking_advances).
    async fn apply_tracking(&self, order_id: &str, shipment_id: &str, status: &str, updated_at: &str, event: TimelineEntry) -> Result<bool>;
    /// The last parcel's "delivered", and the order's move to DELIVERED, in one write: applied only
    /// if the status moves forward, the order is SHIPPED or PARTIALLY_FULFILLED and every parcel in
    /// `others` is delivered. Ok(false): nothing written (the caller takes the two-step path). An
    /// adapter without a one-write form answers false.
    async fn deliver_last_parcel(
        &self,
        _order_id: &str,
        _shipment_id: &str,
        _updated_at: &str,
        _others: &[String],
        _events: [TimelineEntry; 2],
    ) -> Result<bool> {
        Ok(false)
    }
}

/// What recording a return came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordReturn {
    Recorded,
    /// A return with this id exists (the same Idempotency-Key, or the same parcel sent back): as stored.
    Exists(Box<crate::domain::returns::ReturnRecord>),
    /// Another return or refund was recorded meanwhile: re-plan from a fresh read.
    Conflict,
}

/// What recording a refund came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordRefund {
    Recorded,
    /// A refund with this id exists (the same Idempotency-Key): as stored.
    Exists(Box<crate::domain::refund::Refund>),
    /// The ledger moved meanwhile (another refund, or a capture): re-plan from a fresh read.
    Conflict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AddShipment {
    Added,
    /// A shipment with this id is already recorded (returned as stored).
    Exists(Box<Shipment>),
    /// The order is not in a status that ships.
    NotShippable(OrderStatus),
    /// The pick list's token was already answered by another shipment.
    TokenAnswered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved now, or by an earlier run of the same step (`fresh` = false).
    Reserved { fresh: bool },
    /// At least one SKU was short; nothing was decremented.
    Short(Vec<StockShortage>),
}

/// Network-wide counts of one SKU. Conservation (INV-2, #9 item 6): every unit is available,
/// reserved, with a customer (shipped - returned) or written off:
/// available + reserved + (shipped - returned) + written_off == received + adjusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    pub available: i64,
    pub reserved: i64,
    pub shipped: i64,
    pub received: i64,
    /// The net of operators' stock adjustments (found units minus written-off units, DATA-1).
    pub adjusted: i64,
    /// Units that came back from customers (resellable ones are in `available` again).
    pub returned: i64,
    /// Returned units found damaged: off the books for good.
    pub written_off: i64,
}

/// What a stock adjustment came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustOutcome {
    Applied,
    /// An adjustment with this Idempotency-Key was made before: the one on the audit trail.
    Replayed(crate::domain::store_data::Adjustment),
    /// It would take free stock below zero (units reserved or allocated stay covered): the free
    /// units in that warehouse and in the whole network now.
    Short {
        free_in_warehouse: i64,
        free_in_network: i64,
    },
}

/// One SKU at one warehouse: free units, units allocated to routed orders, units shipped; and its
/// books (INV-2 per warehouse): available + allocated + (shipped - returned) + written_off ==
/// received + adjusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WarehouseStock {
    pub available: i64,
    pub allocated: i64,
    pub shipped: i64,
    pub received: i64,
    pub adjusted: i64,
    pub returned: i64,
    pub written_off: i64,
    pub reorder_point: i64,
    pub reorder_quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocateOutcome {
    /// The plan is recorded (now, or by an earlier run: then the stored plan is returned).
    Routed(Vec<Allocation>),
    /// A warehouse no longer has what the plan assumed: read again and re-plan.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipOutcome {
    /// What this shipment is charged, fixed when its stock left the books.
    pub amount_minor: i64,
    /// Every unit of the order has now shipped.
    pub order_complete: bool,
    /// SKU -> units of this warehouse's share not shipped yet (the next pick list).
    pub open_here: BTreeMap<String, i64>,
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationState {
    pub status: String,
    pub lines: BTreeMap<String, i64>,
    pub allocations: Vec<Allocation>,
    /// `<sku>@<warehouse>` -> units shipped.
    pub shipped: BTreeMap<String, i64>,
}

/// Prices a shipment given the units of each SKU shipped before it (fulfillment::shipment_amount).
pub type Charge<'a> = &'a (dyn Fn(&BTreeMap<String, i64>) -> i64 + Send + Sync);

#[async_trait]
pub trait StockLedger: Send + Sync {
    /// Reserve every line in one transaction, repeated SKUs summed; idempotent per order.
    async fn reserve(&self, order_id: &str, lines: &[(String, i64)]) -> Result<Reservation>;
    /// Give back what the order reserved, once. Returns true if this call released it.
    async fn release(&self, order_id: &str) -> Result<bool>;
    async fn level(&self, sku: &str) -> Result<Option<StockLevel>>;
    /// Units arriving at a warehouse (initial stock, a delivery). Once per `receipt_key`.
    async fn receive(&self, sku: &str, warehouse: &str, quantity: i64, receipt_key: &str) -> Result<bool>;
    /// Take a return parcel's units back at `warehouse`, once per `return_key`: resellable units
    /// into its available stock, damaged ones written off; both counted as returned. false = done before.
    async fn restock_return(&self, return_key: &str, warehouse: &str, inspection: &BTreeMap<String, crate::domain::returns::Inspection>) -> Result<bool>;
    async fn set_reorder(&self, sku: &str, warehouse: &str, point: i64, quantity: i64) -> Result<()>;
    /// An operator's adjustment, once per Idempotency-Key, in one transaction with its audit entry;
    /// never below what is reserved or allocated (DATA-1).
    async fn adjust(&self, adjustment: &crate::domain::store_data::Adjustment) -> Result<AdjustOutcome>;
    /// The audit trail of one SKU's adjustments, oldest first.
    async fn adjustments(&self, sku: &str) -> Result<Vec<crate::domain::store_data::Adjustment>>;
    /// warehouse -> sku -> stock, for the given SKUs at every listed warehouse.
    async fn warehouse_stock(&self, skus: &[String], warehouses: &[String]) -> Result<HashMap<String, HashMap<String, WarehouseStock>>>;
    /// Move the order's reservation into the planned warehouses (routing). Idempotent per order.
    async fn allocate(&self, order_id: &str, plan: &[Allocation]) -> Result<AllocateOutcome>;
    async fn reservation(&self, order_id: &str) -> Result<Option<ReservationState>>;
    /// Units leave a warehouse for a shipment: allocated -> shipped, reserved -> shipped. Once per shipment.
    async fn ship(&self, order_id: &str, shipment_id: &str, warehouse: &str, lines: &BTreeMap<String, i64>, charge: Charge<'_>) -> Result<ShipOutcome>;
    /// Open a purchase order for the SKU at the warehouse unless one is open. Some((id, quantity)) =
    /// a PO the caller must send: opened now, or open but never marked sent (a crash between open and send).
    async fn open_purchase_order(&self, sku: &str, warehouse: &str, quantity: i64) -> Result<Option<(String, i64)>>;
    async fn mark_purchase_order_sent(&self, sku: &str, warehouse: &str, po_id: &str) -> Result<()>;
    /// Receive a purchase order's units (the PO closes, stock goes up). false = received before.
    async fn receive_purchase_order(&self, po_id: &str, sku: &str, warehouse: &str, quantity: i64) -> Result<ReceiveOutcome>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveOutcome {
    Received,
    AlreadyReceived,
    UnknownPurchaseOrder,
}

#[async_trait]
pub trait Catalog: Send + Sync {
    async fn items(&self, skus: &[String]) -> Result<HashMap<String, CatalogItem>>;
    async fn rates(&self) -> Result<RateTable>;
    async fn put_item(&self, item: &CatalogItem) -> Result<()>;
    async fn put_rates(&self, rates: &RateTable) -> Result<()>;
    /// Set one destination's rates; the table's currency is the store's (Err(existing) when the
    /// request names another).
    async fn put_country_rates(&self, country: &str, currency: &str, rates: &CountryRates) -> Result<std::result::Result<(), String>>;
    /// Add or replace one warehouse of the network.
    async fn put_warehouse(&self, warehouse: &Warehouse) -> Result<()>;
    async fn network(&self) -> Result<Network>;
    async fn put_network(&self, network: &Network) -> Result<()>;
}

/// Small key -> JSON lookups (a tracking code -> its order and shipment).
#[async_trait]
pub trait Lookups: Send + Sync {
    async fn put_lookup(&self, key: &str, value: &serde_json::Value) -> Result<()>;
    async fn get_lookup(&self, key: &str) -> Result<Option<serde_json::Value>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub order_id: String,
    /// The access token the order was given (its hash is on the order): a retry that answers about
    /// the order after the first answer was lost can hand it out again.
    pub access_token: Option<String>,
    /// When the claim was made or last taken over (epoch seconds).
    pub claimed_at: i64,
    /// Set once the first request finished: the response to replay.
    pub response: Option<(u16, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Won,
    Existing(IdempotencyRecord),
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, key: &str, request_hash: &str, order_id: &str, access_token: &str) -> Result<Claim>;
    async fn complete(&self, key: &str, status: u16, body: &str) -> Result<()>;
    /// Forget a claim whose request failed on our side, so the client's retry can run.
    async fn abandon(&self, key: &str) -> Result<()>;
    /// Take over an unanswered claim whose lease ran out (its function was killed): true for the
    /// one retry that wins it (the claim as seen must be unchanged).
    async fn take_over(&self, key: &str, claimed_at_seen: i64) -> Result<bool>;
    /// End the lease of a claim whose request failed before anything was started for its order (a
    /// retry may take it over at once and continue the same order, instead of after the lease).
    async fn release_lease(&self, key: &str) -> Result<()>;
}

/// The emails of an order, on its small email log (its own item beside the order, so an email does
/// not rewrite the whole order: a write unit per KB of the item written). Each email (`key`: its
/// kind and what it is about) is claimed before it is sent, so it goes out once however often its
/// message comes (WF-5), and marked done with its log entry in one write.
#[async_trait]
pub trait EmailLog: Send + Sync {
    /// Claim the email: Go for this caller (a retry of its own claim included), AlreadyDone when
    /// it went out before, InProgress while another caller's claim is younger than the stale window.
    async fn claim_email(&self, order_id: &str, key: &str) -> Result<OnceClaim>;
    /// The email went out (or was skipped): never again; `event` goes on the log.
    async fn email_done(&self, order_id: &str, key: &str, event: Option<TimelineEntry>) -> Result<()>;
    /// Nothing went out: the next delivery may try at once instead of after the stale window.
    async fn release_email(&self, order_id: &str, key: &str) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceClaim {
    /// This caller may do the work; call `finish` after.
    Go,
    /// Done before: skip.
    AlreadyDone,
    /// Another caller is doing it right now: try later.
    InProgress,
}

/// Marks for work that must happen once (an email per order and kind).
#[async_trait]
pub trait OnceLedger: Send + Sync {
    async fn begin(&self, marker: &str) -> Result<OnceClaim>;
    async fn finish(&self, marker: &str) -> Result<()>;
    async fn forget(&self, marker: &str) -> Result<()>;
}

#[async_trait]
pub trait VelocityCounter: Send + Sync {
    /// Record that `order_id` (placed at `placed_at`, RFC 3339) used `subject`, and count the
    /// orders for that subject in the 24 h before now. Idempotent per order.
    async fn record_and_count(&self, subject: &str, order_id: &str, placed_at: &str) -> Result<u32> {
        self.record_and_count_within(subject, order_id, placed_at, 86_400).await
    }
    /// The same over the last `window_seconds` (checkout attempt limits count the last hour).
    async fn record_and_count_within(&self, subject: &str, order_id: &str, placed_at: &str, window_seconds: i64) -> Result<u32>;
    /// Count what was recorded for `subject` over the last `window_seconds`, recording nothing.
    async fn count_within(&self, subject: &str, window_seconds: i64) -> Result<u32>;
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()>;
    /// Deliver after `delay_seconds` (SQS caps this at 900).
    async fn send_delayed(&self, queue_url: &str, body: &serde_json::Value, delay_seconds: i32) -> Result<()>;
    /// Move every message of a dead-letter queue back to `destination_arn` (SQS
    /// StartMessageMoveTask: asynchronous on AWS); the task handle.
    async fn start_redrive(&self, dead_letter_arn: &str, destination_arn: &str) -> Result<String>;
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Send one email, unless the address is on the account's suppression list (it bounced or
    /// complained before): sending to it again would only hurt the sender's reputation.
    async fn send(&self, to: &str, subject: &str, text: &str) -> Result<Delivery>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by SES: its message id.
    Sent(String),
    /// Not sent: the address is suppressed (BOUNCE or COMPLAINT).
    Suppressed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncExecution {
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

#[async_trait]
pub trait Workflows: Send + Sync {
    /// Run the Express checkout synchronously; execution name = order id.
    async fn run_checkout(&self, order_id: &str, input: &serde_json::Value) -> Result<SyncExecution>;
    /// Start the Standard lifecycle execution named by the order id. false = it already existed (WF-1).
    async fn start_lifecycle(&self, order_id: &str, input: &serde_json::Value) -> Result<bool>;
    /// Start an order's fulfilment: an Express run (asynchronous, at-least-once, not de-duplicated
    /// by name) named `<order id>-<uuid>`; what it starts is de-duplicated by name downstream.
    async fn start_fulfillment(&self, order_id: &str, input: &serde_json::Value) -> Result<()>;
    /// Start the Standard returns execution named by the return id. false = it already existed.
    async fn start_return(&self, return_id: &str, input: &serde_json::Value) -> Result<bool>;
    /// Err(InvalidState) when the token is no longer waiting (used, timed out, execution over).
    async fn send_task_success(&self, token: &str, output: &serde_json::Value) -> Result<()>;
    /// Is the wait behind this token still open? Ok = waiting (a heartbeat changes nothing else);
    /// Err(InvalidState) when it is no longer waiting (answered, timed out, execution over).
    async fn task_heartbeat(&self, token: &str) -> Result<()>;
    /// Start a parcel run for a warehouse's answer (Express, asynchronous, not de-duplicated by
    /// name: every parcel step is idempotent), named `<order id>-<uuid>`.
    async fn start_parcel(&self, order_id: &str, input: &serde_json::Value) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub intent_id: String,
    pub status: String,
    pub amount: Money,
    pub capture_before: Option<i64>,
    pub risk_level: Option<String>,
    pub card_fingerprint: Option<String>,
    /// The authorized charge accepts several captures (Stripe multicapture: requested at creation,
    /// available only on IC+ pricing for Visa, Mastercard, Amex and Discover).
    pub multicapture: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("declined: {code} ({decline_code}): {message}")]
    Declined { code: String, decline_code: String, message: String, intent_id: Option<String> },
    #[error("retryable gateway error: {0}")]
    Retryable(String),
    #[error("gateway error {code}: {message}")]
    Rejected { code: String, message: String },
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Place a hold (manual capture). `idempotency_key` is derived from the order so replays hold once.
    async fn authorize(&self, order_id: &str, amount: Money, payment_method: &str, idempotency_key: &str) -> std::result::Result<Authorization, GatewayError>;
    /// The card's fingerprint (the same for every PaymentMethod made from one card number), read
    /// from the PaymentMethod before anything is authorized; None for a method without a card.
    async fn card_fingerprint(&self, payment_method: &str) -> std::result::Result<Option<String>, GatewayError>;
    /// Release a hold. Voiding an already-canceled intent is success.
    async fn void(&self, intent_id: &str, idempotency_key: &str) -> std::result::Result<String, GatewayError>;
    /// Capture part of a hold. `final_capture` = false keeps the rest held for later shipments.
    async fn capture(&self, intent_id: &str, amount: Money, final_capture: bool, idempotency_key: &str) -> std::result::Result<Capture, GatewayError>;
    /// Holds (`requires_capture` intents) the gateway made for this order between two instants
    /// (epoch seconds), found through the List API (`created` range, paged) by the order id in
    /// their metadata: the holds whose creation answer never reached us (orphans). Not Search,
    /// which Stripe documents as eventually consistent.
    async fn holds_for_order(&self, order_id: &str, created_from: i64, created_to: i64) -> std::result::Result<Vec<String>, GatewayError>;
    /// Refund part or all of what was captured (Stripe Refunds: reason is one of Stripe's three;
    /// metadata carries our ids and the operator's note).
    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        reason: &str,
        metadata: &[(&str, &str)],
        idempotency_key: &str,
    ) -> std::result::Result<GatewayRefund, GatewayError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRefund {
    pub id: String,
    /// pending | succeeded | failed | canceled | requires_action
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub status: String,
    pub amount_received: i64,
    pub amount_capturable: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequest {
    /// Our shipment id, printed on the label and echoed by the carrier.
    pub reference: String,
    pub from: Address,
    pub to: Address,
    pub parcel: Parcel,
    pub weight_grams: u32,
    /// The order's shipping method (standard, express).
    pub service_level: String,
    /// A return label (EasyPost `is_return`): the same addresses as the outbound parcel, the
    /// carrier swaps them, and the label is paid by us and printed by the customer.
    pub is_return: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub carrier_shipment_id: String,
    pub carrier: String,
    pub service: String,
    pub tracking_code: String,
    pub label_url: String,
    pub tracking_url: String,
}

#[async_trait]
pub trait Carrier: Send + Sync {
    /// Buy a label for a parcel. The idempotency key is derived from our shipment id, so a replay
    /// never buys a second label.
    async fn buy_label(&self, request: &LabelRequest, idempotency_key: &str) -> std::result::Result<Label, GatewayError>;
    /// Ask the carrier to refund an unused label (EasyPost `POST /shipments/{id}/refund`); its
    /// `refund_status` (`submitted`, `refunded`, `rejected`, `not_applicable`).
    async fn refund_label(&self, carrier_shipment_id: &str, idempotency_key: &str) -> std::result::Result<String, GatewayError>;
}
