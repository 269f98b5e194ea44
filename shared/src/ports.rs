//! The ports the steps are written against. Each has one AWS adapter in `crate::aws` and the
//! sandbox-backed HTTP client for the gateway; handlers only see these traits.

use crate::domain::fraud::FraudAssessment;
use crate::domain::order::{Order, OrderStatus, PaymentRecord, StockShortage, TimelineEntry};
use crate::domain::pricing::{CatalogItem, RateTable};
use crate::error::StepError;
use crate::money::Money;
use async_trait::async_trait;
use std::collections::HashMap;

pub type Result<T> = std::result::Result<T, StepError>;

#[async_trait]
pub trait OrderRepository: Send + Sync {
    /// Store a new order; fails if the id exists.
    async fn create(&self, order: &Order) -> Result<()>;
    async fn get(&self, order_id: &str) -> Result<Option<Order>>;
    /// Move the order to `next` only from a status in `next.allowed_from()`, appending `event` to the
    /// timeline. Returns false (and writes nothing) when the order is not in such a status.
    async fn transition(&self, order_id: &str, next: OrderStatus, reason: Option<String>, event: TimelineEntry) -> Result<bool>;
    async fn append_timeline(&self, order_id: &str, event: TimelineEntry) -> Result<()>;
    async fn record_payment(&self, order_id: &str, payment: &PaymentRecord, event: Option<TimelineEntry>) -> Result<()>;
    async fn record_fraud(&self, order_id: &str, fraud: &FraudAssessment, event: TimelineEntry) -> Result<()>;
    async fn record_shortage(&self, order_id: &str, shortage: &[StockShortage]) -> Result<()>;
    async fn record_review_token(&self, order_id: &str, token: &str) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved now, or by an earlier run of the same step (`fresh` = false).
    Reserved { fresh: bool },
    /// At least one SKU was short; nothing was decremented.
    Short(Vec<StockShortage>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    pub available: i64,
    pub reserved: i64,
}

#[async_trait]
pub trait StockLedger: Send + Sync {
    /// Reserve every line in one transaction, repeated SKUs summed; idempotent per order.
    async fn reserve(&self, order_id: &str, lines: &[(String, i64)]) -> Result<Reservation>;
    /// Give back what the order reserved, once. Returns true if this call released it.
    async fn release(&self, order_id: &str) -> Result<bool>;
    async fn level(&self, sku: &str) -> Result<Option<StockLevel>>;
    /// Set a SKU's available count (seeding and receiving stock).
    async fn put_level(&self, sku: &str, available: i64) -> Result<()>;
}

#[async_trait]
pub trait Catalog: Send + Sync {
    async fn items(&self, skus: &[String]) -> Result<HashMap<String, CatalogItem>>;
    async fn rates(&self) -> Result<RateTable>;
    async fn put_item(&self, item: &CatalogItem) -> Result<()>;
    async fn put_rates(&self, rates: &RateTable) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub order_id: String,
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
    async fn claim(&self, key: &str, request_hash: &str, order_id: &str) -> Result<Claim>;
    async fn complete(&self, key: &str, status: u16, body: &str) -> Result<()>;
    /// Forget a claim whose request failed on our side, so the client's retry can run.
    async fn abandon(&self, key: &str) -> Result<()>;
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
    async fn record_and_count(&self, subject: &str, order_id: &str, placed_at: &str) -> Result<u32>;
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue_url: &str, body: &serde_json::Value) -> Result<()>;
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, to: &str, subject: &str, text: &str) -> Result<String>;
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
    async fn send_task_success(&self, token: &str, output: &serde_json::Value) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub intent_id: String,
    pub status: String,
    pub amount: Money,
    pub capture_before: Option<i64>,
    pub risk_level: Option<String>,
    pub card_fingerprint: Option<String>,
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
    /// Release a hold. Voiding an already-canceled intent is success.
    async fn void(&self, intent_id: &str, idempotency_key: &str) -> std::result::Result<String, GatewayError>;
}
