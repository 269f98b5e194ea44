//! Lambda entry point: the axum router served by lambda_http (API Gateway HTTP API, payload v2).
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = Arc::new(orderflow_shared::lambda::cold_start("store_data_api", store_data_api::Deps::from_env).await?);
    lambda_http::run(store_data_api::router(deps)).await
}
