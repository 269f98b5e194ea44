//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("record_review_task", record_review_task::Deps::from_env).await?);
    orderflow_shared::lambda::run("record_review_task", move |payload| {
        let deps = deps.clone();
        async move { record_review_task::invoke(&deps, payload).await }
    })
    .await
}
