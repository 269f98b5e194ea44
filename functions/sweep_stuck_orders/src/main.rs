//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("sweep_stuck_orders", sweep_stuck_orders::Deps::from_env).await?);
    orderflow_shared::lambda::run("sweep_stuck_orders", move |payload| {
        let deps = deps.clone();
        async move { sweep_stuck_orders::invoke(&deps, payload).await }
    })
    .await
}
