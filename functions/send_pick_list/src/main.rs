//! Lambda entry point: build the ports once, then serve events. The logic is in lib.rs.
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("send_pick_list", send_pick_list::Deps::from_env).await?);
    orderflow_shared::lambda::run("send_pick_list", move |payload| {
        let deps = deps.clone();
        async move { send_pick_list::invoke(&deps, payload).await }
    })
    .await
}
