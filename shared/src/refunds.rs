//! Applying the gateway's word on a refund, shared by the refund step (the call's answer) and the
//! webhook consumer (`refund.*` events): forward only, compare-and-set on the status read, and a
//! refund that failed gives its amount and units back to the ledger once.

use crate::domain::order::TimelineEntry;
use crate::domain::refund::{gives_back, refund_advances};
use crate::money::Money;
use crate::ports::OrderRepository;
use crate::StepError;

/// What applying a refund status came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundSettled {
    /// Moved to the new status; `gave_back` when it failed or was canceled.
    Applied { gave_back: bool },
    /// The refund is already at or past that status (a duplicate or a late event): as stored.
    Unchanged { status: String },
    /// No such order or refund here.
    UnknownRefund,
}

const ATTEMPTS: usize = 5;

pub async fn settle_refund(
    orders: &dyn OrderRepository,
    order_id: &str,
    refund_id: &str,
    status: &str,
    gateway_refund_id: Option<&str>,
    detail: &str,
) -> Result<RefundSettled, StepError> {
    for _ in 0..ATTEMPTS {
        let Some(order) = orders.get(order_id).await? else { return Ok(RefundSettled::UnknownRefund) };
        let Some(r) = order.refunds.get(refund_id) else { return Ok(RefundSettled::UnknownRefund) };
        if !refund_advances(&r.status, status) {
            return Ok(RefundSettled::Unchanged { status: r.status.clone() });
        }
        let currency = order.totals.total.currency;
        let event = TimelineEntry::now(&format!("refund_{status}"), Some(format!("{} {refund_id} ({detail})", Money::new(r.amount_minor, currency).display())));
        if orders.settle_refund(order_id, r, status, gateway_refund_id, event).await? {
            return Ok(RefundSettled::Applied { gave_back: gives_back(status) });
        }
        // Another writer moved the refund between our read and write: read again.
    }
    Err(StepError::Retryable(format!("refund {refund_id} of {order_id} kept changing; retry")))
}
