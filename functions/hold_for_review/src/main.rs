//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("hold_for_review", hold_for_review::Deps::from_env).await?);
    orderflow_shared::lambda::run("hold_for_review", move |payload| {
        let deps = deps.clone();
        async move { hold_for_review::invoke(&deps, payload).await }
    })
    .await
}
