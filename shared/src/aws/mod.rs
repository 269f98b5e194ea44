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

/// The SDK config, once per cold start, from the function's environment: the region and the role's
/// credentials Lambda puts there (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
/// and `AWS_ENDPOINT_URL` on the local stack. Reading them from `Env` rather than the process lets the
/// local stack give each in-process function credentials of its own, which its edge checks against
/// that function's IAM policy.
///
/// With the credentials in the environment (always, on Lambda) the config is built directly with the
/// SDK's defaults written out (standard retries, 3 attempts; a 3.1 s connect timeout; the lazy
/// identity cache), instead of through `aws_config`'s loader, which looks for some fifteen settings
/// in the environment and the shared config files (`~/.aws/config`, `~/.aws/credentials`) at every
/// cold start (`.ci/coldstart`, design.md "Cold starts"). Without them, the loader's default chain.
pub async fn sdk_config(env: &Env) -> SdkConfig {
    let (Some(id), Some(secret)) = (env.optional("AWS_ACCESS_KEY_ID"), env.optional("AWS_SECRET_ACCESS_KEY")) else {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(env.region())).http_client(trust::https_client(env));
        if let Some(url) = env.optional("AWS_ENDPOINT_URL") {
            loader = loader.endpoint_url(url);
        }
        return loader.load().await;
    };
    let credentials = Credentials::new(id, secret, env.optional("AWS_SESSION_TOKEN"), None, "lambda-environment");
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env.region()))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .http_client(trust::https_client(env))
        .retry_config(aws_config::retry::RetryConfig::standard())
        .timeout_config(aws_config::timeout::TimeoutConfig::builder().connect_timeout(std::time::Duration::from_millis(3100)).build())
        .time_source(aws_smithy_async::time::SharedTimeSource::default());
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        config = config.sleep_impl(sleep);
    }
    if let Some(url) = env.optional("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
}

/// True when the SDK talks to the local stack's edge rather than AWS.
pub fn is_local(env: &Env) -> bool {
    env.optional("AWS_ENDPOINT_URL").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn with_credentials_in_the_environment_the_config_is_the_sdks_defaults_written_out() {
        let env = Env::from_map(BTreeMap::from(
            [
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        ));
        let c = sdk_config(&env).await;
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.retry_config().map(|r| (r.mode(), r.max_attempts())), Some((aws_config::retry::RetryMode::Standard, 3)));
        assert_eq!(c.timeout_config().and_then(|t| t.connect_timeout()), Some(std::time::Duration::from_millis(3100)));
        assert!(c.sleep_impl().is_some() && c.http_client().is_some() && c.identity_cache().is_some());
        use aws_credential_types::provider::ProvideCredentials;
        let creds = c.credentials_provider().unwrap().provide_credentials().await.unwrap();
        assert_eq!((creds.access_key_id(), creds.secret_access_key(), creds.session_token()), ("AKIDEXAMPLE", "s3cr3t", Some("tok")));
    }
}
