//! SQS consumer of the review queue. The lifecycle workflow sends `{orderId, taskToken}` there and
//! waits; this stores the token on the order so the operator endpoint can answer the workflow.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use orderflow_shared::domain::order::TimelineEntry;
use orderflow_shared::ports::OrderRepository;
use orderflow_shared::{ConfigError, Env, StepError};
use serde::Deserialize;
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()? })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewTask {
    order_id: String,
    task_token: String,
}

async fn one(deps: &Deps, body: &str) -> Result<(), StepError> {
    let task: ReviewTask = serde_json::from_str(body).map_err(|e| StepError::InvalidInput(format!("review message: {e}")))?;
    let span = tracing::info_span!("review_task", order_id = %task.order_id);
    tracing::Instrument::instrument(
        async move {
            deps.orders.record_review_token(&task.order_id, &task.task_token).await?;
            deps.orders.append_timeline(&task.order_id, TimelineEntry::now("awaiting_review", None)).await?;
            tracing::info!("review task recorded");
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

/// Reports partial batch failures: only the messages that failed come back.
pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, StepError> {
    Ok(orderflow_shared::lambda::for_each_sqs_record(event, |body| async move { one(deps, &body).await }).await)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("record_review_task", payload, |i| handle(deps, i)).await
}
