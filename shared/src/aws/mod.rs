//! AWS adapters for the ports, and the one place SDK clients are configured. Each adapter is behind
//! the Cargo feature of its SDK crate, so a function links only the clients it uses
//! (`cargo tree -p <function>` shows which).
#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "ses")]
pub mod mailer;
#[cfg(feature = "sqs")]
pub mod queue;
pub mod trust;
#[cfg(feature = "sfn")]
pub mod workflows;

use crate::env::Env;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Load the SDK config once per cold start, from the function's environment: the region and the
/// role's credentials Lambda puts there (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), and `AWS_ENDPOINT_URL` on the local stack. Reading them from `Env` rather
/// than the process lets the local stack give each in-process function credentials of its own,
/// which its edge checks against that function's IAM policy.
pub async fn sdk_config(env: &Env) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(env.region())).http_client(trust::https_client(env));
    if let (Some(id), Some(secret)) = (env.optional("AWS_ACCESS_KEY_ID"), env.optional("AWS_SECRET_ACCESS_KEY")) {
        loader = loader.credentials_provider(Credentials::new(id, secret, env.optional("AWS_SESSION_TOKEN"), None, "lambda-environment"));
    }
    if let Some(url) = env.optional("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// True when the SDK talks to the local stack's edge rather than AWS.
pub fn is_local(env: &Env) -> bool {
    env.optional("AWS_ENDPOINT_URL").is_some()
}
