//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("capture_payment", capture_payment::Deps::from_env).await?);
    orderflow_shared::lambda::run("capture_payment", move |payload| {
        let deps = deps.clone();
        async move { capture_payment::invoke(&deps, payload).await }
    })
    .await
}
