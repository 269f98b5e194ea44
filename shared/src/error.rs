//! The one error vocabulary shared by the Rust steps and the state machines.
//!
//! Each variant's name is the Lambda `errorType` the step reports, and exactly the string an ASL
//! `Retry`/`Catch` `ErrorEquals` uses. `tests/asl_contract.rs` checks both sides agree.

use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StepError {
    /// Not enough stock for at least one line; nothing was reserved.
    #[error("{0}")]
    OutOfStock(String),
    /// The gateway declined the authorization (card_declined, insufficient funds, 3-D Secure required).
    #[error("{0}")]
    PaymentDeclined(String),
    /// A transient failure (throttling, timeouts, gateway 5xx, idempotency key in use): safe to retry.
    #[error("{0}")]
    Retryable(String),
    /// The step was given input it cannot act on (unknown order, missing field). Not retried.
    #[error("{0}")]
    InvalidInput(String),
    /// The order is in a state where this step must not run (for example release after a ship).
    #[error("{0}")]
    InvalidState(String),
    /// Anything else. Not retried by the workflow; compensated.
    #[error("{0}")]
    Internal(String),
}

/// Every errorType a step can raise. The ASL contract test checks each `ErrorEquals` name is in here.
pub const ERROR_TYPES: &[&str] = &["OutOfStock", "PaymentDeclined", "Retryable", "InvalidInput", "InvalidState", "Internal"];

impl StepError {
    pub fn error_type(&self) -> &'static str {
        match self {
            StepError::OutOfStock(_) => "OutOfStock",
            StepError::PaymentDeclined(_) => "PaymentDeclined",
            StepError::Retryable(_) => "Retryable",
            StepError::InvalidInput(_) => "InvalidInput",
            StepError::InvalidState(_) => "InvalidState",
            StepError::Internal(_) => "Internal",
        }
    }

    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Map an AWS SDK error: throttling, timeouts, 5xx answers and dispatch failures are retryable
    /// (what is left of them once the SDK's own retries ran out), the rest is not.
    pub fn from_sdk<E: std::error::Error + 'static>(
        context: &str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> Self {
        use aws_smithy_runtime_api::client::result::SdkError;
        let retryable = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(se) => {
                let text = format!("{:?}", se.err());
                se.raw().status().is_server_error()
                    || text.contains("Throttl")
                    || text.contains("ProvisionedThroughputExceeded")
                    || text.contains("InternalServer")
                    || text.contains("RequestLimitExceeded")
                    || text.contains("TransactionConflict")
                    || text.contains("TransactionInProgress")
            }
            _ => false,
        };
        let detail = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        if retryable {
            StepError::Retryable(format!("{context}: {detail}"))
        } else {
            StepError::Internal(format!("{context}: {detail}"))
        }
    }
}

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Self {
        Diagnostic { error_type: e.error_type().to_string(), error_message: e.message() }
    }
}

#[cfg(feature = "dynamodb")]
impl From<serde_dynamo::Error> for StepError {
    fn from(e: serde_dynamo::Error) -> Self {
        StepError::Internal(format!("record mapping: {e}"))
    }
}
