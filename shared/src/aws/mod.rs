//! AWS adapters for the ports, and the one place SDK clients are configured.
pub mod dynamo;
pub mod messaging;
pub mod workflows;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Load the SDK config once per cold start. With an endpoint (the local stack's edge) static
/// credentials are used, as every local AWS emulator expects.
pub async fn sdk_config(endpoint: Option<&str>, region: &str) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
    if let Some(url) = endpoint {
        loader = loader
            .endpoint_url(url)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "orderflow-local"));
    }
    loader.load().await
}
