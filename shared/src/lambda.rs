//! Running a step: on AWS under lambda_runtime, locally through the same typed handler.

use crate::error::StepError;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use tracing::Instrument;

/// The order a step input concerns, for the log span (`orderId` in every state's input).
pub fn order_id_of(v: &serde_json::Value) -> String {
    v.get("orderId").and_then(|x| x.as_str()).unwrap_or("-").to_string()
}

/// Decode the input, run the handler inside a span naming the order, encode the output.
pub async fn invoke_json<I, O, F, Fut>(step: &'static str, payload: serde_json::Value, handler: F) -> Result<serde_json::Value, StepError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I) -> Fut,
    Fut: Future<Output = Result<O, StepError>>,
{
    let order_id = order_id_of(&payload);
    let span = tracing::info_span!("step", step, order_id = %order_id);
    async move {
        let started = std::time::Instant::now();
        let input: I = serde_json::from_value(payload).map_err(|e| StepError::InvalidInput(format!("{step}: bad input: {e}")))?;
        let result = handler(input).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(elapsed_ms, "step succeeded"),
            Err(e) => tracing::warn!(elapsed_ms, error_type = e.error_type(), error = %e, "step failed"),
        }
        serde_json::to_value(result?).map_err(|e| StepError::Internal(e.to_string()))
    }
    .instrument(span)
    .await
}

/// The start of every function's `main`: JSON logs first, then the function's own ports from its
/// environment. Every `main` runs on tokio's current-thread runtime (`flavor = "current_thread"`):
/// Lambda hands an instance one event at a time, a function's work is waiting on I/O (which still
/// overlaps on one thread), and at the template's 256 MB a function has a fraction of one vCPU; the
/// multi-threaded runtime's worker threads only added to the cold start (0.3-0.5 ms here,
/// `.ci/coldstart`) and moved every wake-up across threads. A missing or invalid setting stops the
/// cold start with its name, logged as JSON (so it shows in CloudWatch) and returned to the runtime
/// (Lambda reports the init error).
pub async fn cold_start<D, B, Fut>(function: &'static str, build: B) -> Result<D, lambda_runtime::Error>
where
    B: FnOnce(crate::env::Env) -> Fut,
    Fut: Future<Output = Result<D, crate::env::ConfigError>>,
{
    crate::telemetry::init();
    match build(crate::env::Env::process()).await {
        Ok(d) => Ok(d),
        Err(e) => {
            tracing::error!(function, error = %e, "cold start failed: the function's configuration is incomplete");
            Err(Box::new(e))
        }
    }
}

/// The body of every step's `main`: serve events until the runtime stops us.
pub async fn run<F, Fut>(step: &'static str, handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(serde_json::Value) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<serde_json::Value, StepError>> + Send,
{
    tracing::info!(step, "cold start");
    lambda_runtime::run(lambda_runtime::service_fn(move |ev: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let h = handler.clone();
        async move { h(ev.payload).await }
    }))
    .await
}

/// Output type for steps that only confirm they ran.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Done {
    pub done: bool,
}

/// Run `one` on every record of an SQS batch and report the failed ones (ReportBatchItemFailures):
/// only those come back, after the visibility timeout, and end in the dead-letter queue if they
/// keep failing.
pub async fn for_each_sqs_record<F, Fut>(event: aws_lambda_events::event::sqs::SqsEvent, mut one: F) -> aws_lambda_events::event::sqs::SqsBatchResponse
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), StepError>>,
{
    let mut resp = aws_lambda_events::event::sqs::SqsBatchResponse::default();
    for rec in event.records {
        let id = rec.message_id.clone().unwrap_or_default();
        if let Err(e) = one(rec.body.unwrap_or_default()).await {
            tracing::warn!(message_id = %id, error_type = e.error_type(), error = %e, "message failed; it will be retried");
            let mut f = aws_lambda_events::event::sqs::BatchItemFailure::default();
            f.item_identifier = id;
            resp.batch_item_failures.push(f);
        }
    }
    resp
}

/// What a state machine `Catch` puts at its ResultPath: `{Error, Cause}` of the step that failed.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl CaughtError {
    /// Step Functions puts the Lambda error payload as JSON in Cause; fall back to the raw text.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.cause)
            .ok()
            .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| self.cause.clone())
    }
}
