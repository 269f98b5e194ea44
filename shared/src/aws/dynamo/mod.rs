//! DynamoDB adapters, one file per aggregate (orders, inventory, catalog, idempotency, velocity),
//! and the helpers they share (attribute values, conditional-failure detection, the one
//! transaction-conflict retry loop). Tables and keys (declared in infra/template.yaml):
//! - orders      pk `order_id` (S): one item per order, the `Order` record via serde_dynamo; and
//!   `<order id>#emails` {timeline}: the emails sent for it (an email appends there, so it does not
//!   rewrite the whole order item); `<order id>#tracking` {`scan#<parcel id>` {status, updated_at, rank},
//!   timeline}: the carrier's scans up to in transit (`apply_tracking_aside`). `get` never returns
//!   these items, `get_for_view` merges them.
//! - inventory   pk `pk` (S):
//!   `SKU#<sku>` {available, reserved, shipped, received, adjusted}: network-wide counts, what checkout reserves against;
//!   `STOCK#<sku>#<warehouse>` {available, allocated, shipped, reorder_point, reorder_quantity}: one warehouse;
//!   `RESERVATION#<order>` {status RESERVED|ROUTED|RELEASED, lines, allocations, shipped, shipments, version};
//!   `PO#<sku>#<warehouse>` {status OPEN|RECEIVED, po_id, quantity}: at most one open purchase order;
//!   `RECEIPT#<key>`: a delivery already booked (receiving is idempotent);
//!   `ADJUSTMENT#<sku>#<Idempotency-Key>`: an operator's stock adjustment, its audit entry (sparse index
//!   `AdjustmentsBySku` on audit_sku, audit_at).
//! - idempotency pk `pk` (S): `orders-post#<Idempotency-Key>`, `once#<marker>`, `lookup#<key>`; TTL `expires_at`.
//! - catalog     pk `pk` (S): `PRODUCT#<sku>` items, the `RATES` item (rate table JSON), the
//!   `WAREHOUSES` item (warehouse network and zone table JSON); both documents carry a `version` that
//!   guards their read-modify-write (one country's rates or one warehouse at a time).
//! - velocity    pk `pk` (S) = `email#..`/`card#..`, sk `sk` (S) = `<placed_at>#<order>`; TTL `expires_at`.

mod catalog;
mod idempotency;
mod inventory;
mod order_index;
mod orders;
mod velocity;

pub use catalog::DynamoCatalog;
pub use idempotency::DynamoIdempotency;
pub use inventory::{aggregate, DynamoInventory};
pub use orders::DynamoOrders;
pub use velocity::DynamoVelocity;

use crate::error::StepError;
use crate::ports::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value;
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

const CONFLICT_ATTEMPTS: u32 = 12;

/// The per-item cancellation codes of a cancelled transaction ("None", "ConditionalCheckFailed",
/// "TransactionConflict", ...), in request order; any other error is returned as a StepError.
pub(super) fn cancellation_reasons(
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

/// What one attempt at a transaction came to.
pub(super) enum Attempt<T> {
    /// Decided: committed, or cancelled for a reason that is an answer (a replay, short stock).
    Done(T),
    /// Cancelled by a concurrent transaction on the same items: try again after a jittered backoff.
    Conflict,
    /// What the attempt was built from changed under it: re-read and rebuild at once.
    Reread,
}

/// The one retry loop around DynamoDB transactions (TransactionConflict on AWS, a concurrent
/// writer locally): each attempt builds and sends its transaction and says what it came to.
/// (A plain closure returning a future: an async closure's future is not provably `Send` for the
/// `async_trait` methods that call this.)
pub(super) async fn with_conflict_retries<T, F, Fut>(context: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt<T>>>,
{
    for n in 0..CONFLICT_ATTEMPTS {
        match attempt().await? {
            Attempt::Done(v) => return Ok(v),
            Attempt::Conflict => backoff(n).await,
            Attempt::Reread => {}
        }
    }
    Err(StepError::Retryable(format!("{context} kept conflicting; retry")))
}
