//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("receive_return", receive_return::Deps::from_env).await?);
    orderflow_shared::lambda::run("receive_return", move |payload| {
        let deps = deps.clone();
        async move { receive_return::invoke(&deps, payload).await }
    })
    .await
}
