//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("route_shipments", route_shipments::Deps::from_env).await?);
    orderflow_shared::lambda::run("route_shipments", move |payload| {
        let deps = deps.clone();
        async move { route_shipments::invoke(&deps, payload).await }
    })
    .await
}
