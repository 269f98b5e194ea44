//! Secrets, read on first use through the AWS Parameters and Secrets Lambda Extension.
//!
//! The template gives a function the ARN of each secret it may read (`<NAME>_SECRET_ARN`) and a
//! role that may read exactly those. The extension answers on `localhost:2773` only while the
//! function is invoked (AWS documents it as callable during INVOKE, not INIT), and needs the
//! function's session token in `X-Aws-Parameters-Secrets-Token`; so a secret is fetched the first
//! time a request needs it and then kept for five minutes, like the extension's own cache (a
//! rotated webhook secret is picked up without a new deploy). A refused or failed fetch is a
//! retryable error naming the variable, never an empty secret.
//!
//! Outside Lambda (`cargo lambda watch`) a secret may be given directly as `<NAME>`; that path is
//! taken only when `<NAME>_SECRET_ARN` is absent.

use crate::env::{ConfigError, Env, Secret};
use crate::StepError;
use std::time::{Duration, Instant};

const CACHE_FOR: Duration = Duration::from_secs(300);

/// One client for every secret of the function, made on the first fetch (not at cold start): the
/// extension is plain HTTP on localhost.
fn extension_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default())
}

pub struct SecretSource {
    /// The variable that names it (`GATEWAY_API_KEY_SECRET_ARN`), for error messages.
    variable: String,
    arn: Option<String>,
    direct: Option<Secret>,
    port: String,
    session_token: String,
    cached: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource").field("variable", &self.variable).field("arn", &self.arn).finish()
    }
}

impl SecretSource {
    pub fn from_env(env: &Env, name: &str) -> Result<SecretSource, ConfigError> {
        let variable = format!("{name}_SECRET_ARN");
        let arn = env.optional(&variable);
        let direct = if arn.is_none() { env.optional(name).map(Secret) } else { None };
        if arn.is_none() && direct.is_none() {
            return Err(ConfigError::Missing(variable));
        }
        Ok(SecretSource {
            variable,
            arn,
            direct,
            port: env.optional("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|| "2773".into()),
            session_token: env.optional("AWS_SESSION_TOKEN").unwrap_or_default(),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The secret's value, fetched on first use and cached.
    pub async fn get(&self) -> Result<Secret, StepError> {
        if let Some(v) = &self.direct {
            return Ok(v.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some((v, at)) = cached.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(v.clone());
            }
        }
        match self.fetch().await {
            Ok(v) => {
                *cached = Some((v.clone(), Instant::now()));
                Ok(v)
            }
            // A value read before stays usable while the extension is briefly unavailable.
            Err(e) => match cached.as_ref() {
                Some((v, _)) => {
                    tracing::warn!(secret = %self.variable, error = %e, "secret refresh failed; using the cached value");
                    Ok(v.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Secret, StepError> {
        let arn = self.arn.as_deref().unwrap_or_default();
        let fail = |what: String| {
            tracing::error!(secret = %self.variable, "{what}");
            StepError::Retryable(format!("secret {}: {what}", self.variable))
        };
        let resp = extension_client()
            .get(format!("http://localhost:{}/secretsmanager/get", self.port))
            .query(&[("secretId", arn)])
            .header("X-Aws-Parameters-Secrets-Token", &self.session_token)
            .send()
            .await
            .map_err(|e| fail(format!("secrets extension unreachable: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            // The extension passes Secrets Manager's error on (AccessDeniedException, ...); its
            // body names the error, never the value.
            return Err(fail(format!("secrets extension answered {status}: {}", text.chars().take(300).collect::<String>())));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("unreadable answer: {e}")))?;
        match v["SecretString"].as_str() {
            Some(s) if !s.is_empty() => Ok(Secret(s.to_string())),
            _ => Err(fail("the secret has no SecretString".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_without_its_secret_arn_does_not_start() {
        let env = Env::from_map(Default::default());
        assert_eq!(SecretSource::from_env(&env, "GATEWAY_API_KEY").unwrap_err(), ConfigError::Missing("GATEWAY_API_KEY_SECRET_ARN".into()));
    }

    #[tokio::test]
    async fn an_unreachable_extension_is_a_retryable_error_naming_the_secret() {
        let env = Env::from_map(
            [
                ("GATEWAY_API_KEY_SECRET_ARN".to_string(), "arn:aws:secretsmanager:us-east-1:1:secret:k-AbCdEf".to_string()),
                ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".to_string(), "9".to_string()),
            ]
            .into(),
        );
        let s = SecretSource::from_env(&env, "GATEWAY_API_KEY").unwrap();
        let err = s.get().await.unwrap_err();
        assert_eq!(err.error_type(), "Retryable");
        assert!(err.to_string().contains("GATEWAY_API_KEY_SECRET_ARN"), "{err}");
    }
}
