//! `POST /ops/dead-letters/{queue}/redrive` (operator token): move every message of one of the
//! stack's dead-letter queues back to the queue it came from (SQS StartMessageMoveTask, the
//! console's "Start DLQ redrive"). Safe to replay: every consumer is idempotent per message
//! (emails once per marker, refunds once per gateway key, webhook events once per id, review tasks
//! once per order). The queues are named by `DEAD_LETTER_QUEUES` (JSON: name -> {deadLetterArn,
//! queueArn}); the role may redrive exactly those.

use super::{error, internal, ops_authorized, AppState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterQueue {
    pub dead_letter_arn: String,
    pub queue_arn: String,
}

pub async fn ops_redrive(State(deps): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(refused) = ops_authorized(&deps, &headers).await {
        return refused;
    }
    let Some(q) = deps.dead_letter_queues.get(&name) else {
        let known: Vec<&String> = deps.dead_letter_queues.keys().collect();
        return error(StatusCode::NOT_FOUND, "queue_not_found", &format!("no dead-letter queue {name}; one of {known:?}"), None);
    };
    match deps.queue.start_redrive(&q.dead_letter_arn, &q.queue_arn).await {
        Ok(task) => {
            tracing::info!(queue = %name, task = %task, "dead letters redriven");
            (StatusCode::ACCEPTED, axum::Json(json!({"queue": name, "task_handle": task}))).into_response()
        }
        Err(e) => internal(e),
    }
}
