//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("apply_webhook_events", apply_webhook_events::Deps::from_env).await?);
    orderflow_shared::lambda::run("apply_webhook_events", move |payload| {
        let deps = deps.clone();
        async move { apply_webhook_events::invoke(&deps, payload).await }
    })
    .await
}
