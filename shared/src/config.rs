//! Configuration read once at cold start. On AWS every value comes from the function's environment
//! (set by infra/template.yaml); the local stack builds the same struct for its in-process functions.

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub orders_table: String,
    pub inventory_table: String,
    pub idempotency_table: String,
    pub catalog_table: String,
    pub velocity_table: String,
    pub notifications_queue_url: String,
    pub review_queue_url: String,
    pub checkout_state_machine_arn: String,
    pub lifecycle_state_machine_arn: String,
    pub sender_email: String,
    pub gateway_base_url: String,
    /// Secret: never logged (Debug is implemented by hand below on the wrapper).
    pub gateway_api_key: Secret,
    pub ops_api_token: Secret,
    /// Warehouse id -> its pick-list queue URL (JSON in WAREHOUSE_QUEUE_URLS).
    pub warehouse_queue_urls: std::collections::BTreeMap<String, String>,
    pub supplier_queue_url: String,
    pub webhook_events_queue_url: String,
    pub carrier_base_url: String,
    pub carrier_api_key: Secret,
    /// Carrier webhook HMAC secret(s); several comma-separated during a rotation.
    pub carrier_webhook_secret: Secret,
    /// Gateway (Stripe) webhook signing secret(s); several comma-separated during a rotation.
    pub gateway_webhook_secret: Secret,
    /// JSON object warehouse id -> bearer token: each warehouse authenticates as itself.
    pub warehouse_api_tokens: Secret,
    /// The hold guard acts this long before a payment hold expires (PAY-5).
    pub hold_expiry_margin_seconds: i64,
    /// How long the workflow waits for a warehouse's next shipment report.
    pub warehouse_timeout_seconds: i64,
    /// Delay of the feedback request after delivery (SQS delay, at most 900 s).
    pub feedback_delay_seconds: i32,
    /// The local stack's edge; None on AWS.
    pub aws_endpoint_url: Option<String>,
    pub region: String,
}

/// A string that never prints itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(<empty>)" } else { "Secret(<redacted>)" })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}


/// Every environment variable `Config::from_env` reads; infra/template.yaml must set each one
/// (checked by tests/template_contract.rs). Secrets come as `*_SECRET_ARN` and are fetched at cold start.
pub const ENV_VARS: &[&str] = &[
    "ORDERS_TABLE", "INVENTORY_TABLE", "IDEMPOTENCY_TABLE", "CATALOG_TABLE", "VELOCITY_TABLE",
    "NOTIFICATIONS_QUEUE_URL", "REVIEW_QUEUE_URL", "CHECKOUT_STATE_MACHINE_ARN", "LIFECYCLE_STATE_MACHINE_ARN",
    "SENDER_EMAIL", "GATEWAY_BASE_URL", "GATEWAY_API_KEY_SECRET_ARN", "OPS_API_TOKEN_SECRET_ARN",
    "WAREHOUSE_QUEUE_URLS", "SUPPLIER_QUEUE_URL", "WEBHOOK_EVENTS_QUEUE_URL", "CARRIER_BASE_URL",
    "CARRIER_API_KEY_SECRET_ARN", "CARRIER_WEBHOOK_SECRET_SECRET_ARN", "GATEWAY_WEBHOOK_SECRET_SECRET_ARN",
    "WAREHOUSE_API_TOKENS_SECRET_ARN", "HOLD_EXPIRY_MARGIN_SECONDS", "WAREHOUSE_TIMEOUT_SECONDS", "FEEDBACK_DELAY_SECONDS",
];

/// The secrets resolved at cold start, by the variable holding their ARN (locally the same name
/// without `_SECRET_ARN` holds the value).
const SECRET_ARN_VARS: &[&str] = &[
    "GATEWAY_API_KEY_SECRET_ARN", "OPS_API_TOKEN_SECRET_ARN", "CARRIER_API_KEY_SECRET_ARN",
    "CARRIER_WEBHOOK_SECRET_SECRET_ARN", "GATEWAY_WEBHOOK_SECRET_SECRET_ARN", "WAREHOUSE_API_TOKENS_SECRET_ARN",
];

impl Config {
    /// Build from any name -> value lookup (the process environment, or the template's resolved
    /// environment in the local stack).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Config {
        let env = |k: &str| get(k).unwrap_or_default();
        Config {
            orders_table: env("ORDERS_TABLE"),
            inventory_table: env("INVENTORY_TABLE"),
            idempotency_table: env("IDEMPOTENCY_TABLE"),
            catalog_table: env("CATALOG_TABLE"),
            velocity_table: env("VELOCITY_TABLE"),
            notifications_queue_url: env("NOTIFICATIONS_QUEUE_URL"),
            review_queue_url: env("REVIEW_QUEUE_URL"),
            checkout_state_machine_arn: env("CHECKOUT_STATE_MACHINE_ARN"),
            lifecycle_state_machine_arn: env("LIFECYCLE_STATE_MACHINE_ARN"),
            sender_email: env("SENDER_EMAIL"),
            gateway_base_url: env("GATEWAY_BASE_URL"),
            gateway_api_key: Secret(env("GATEWAY_API_KEY")),
            ops_api_token: Secret(env("OPS_API_TOKEN")),
            warehouse_queue_urls: serde_json::from_str(&env("WAREHOUSE_QUEUE_URLS")).unwrap_or_default(),
            supplier_queue_url: env("SUPPLIER_QUEUE_URL"),
            webhook_events_queue_url: env("WEBHOOK_EVENTS_QUEUE_URL"),
            carrier_base_url: env("CARRIER_BASE_URL"),
            carrier_api_key: Secret(env("CARRIER_API_KEY")),
            carrier_webhook_secret: Secret(env("CARRIER_WEBHOOK_SECRET")),
            gateway_webhook_secret: Secret(env("GATEWAY_WEBHOOK_SECRET")),
            warehouse_api_tokens: Secret(env("WAREHOUSE_API_TOKENS")),
            hold_expiry_margin_seconds: env("HOLD_EXPIRY_MARGIN_SECONDS").parse().unwrap_or(86_400),
            warehouse_timeout_seconds: env("WAREHOUSE_TIMEOUT_SECONDS").parse().unwrap_or(259_200),
            feedback_delay_seconds: env("FEEDBACK_DELAY_SECONDS").parse().unwrap_or(900),
            aws_endpoint_url: get("AWS_ENDPOINT_URL").filter(|s| !s.is_empty()),
            region: get("AWS_REGION").filter(|s| !s.is_empty()).unwrap_or_else(|| "us-east-1".into()),
        }
    }

    /// On AWS the gateway key and the operator token live in Secrets Manager; the function gets
    /// their ARNs and reads them once at cold start through the AWS Parameters and Secrets Lambda
    /// Extension (a local HTTP cache), so no secret is ever in the environment or the logs.
    pub async fn resolve_secrets(&mut self) -> Result<(), String> {
        let port = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|_| "2773".into());
        let token = std::env::var("AWS_SESSION_TOKEN").unwrap_or_default();
        let http = reqwest::Client::new();
        for arn_var in SECRET_ARN_VARS {
            let slot = self.secret_mut(arn_var);
            let Some(arn) = std::env::var(arn_var).ok().filter(|a| !a.is_empty()) else { continue };
            if !slot.0.is_empty() {
                continue;
            }
            let resp = http
                .get(format!("http://localhost:{port}/secretsmanager/get"))
                .query(&[("secretId", arn.as_str())])
                .header("X-Aws-Parameters-Secrets-Token", &token)
                .send()
                .await
                .map_err(|e| format!("{arn_var}: secrets extension unreachable: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{arn_var}: secrets extension answered {}", resp.status()));
            }
            let v: serde_json::Value = resp.json().await.map_err(|e| format!("{arn_var}: {e}"))?;
            *slot = Secret(v["SecretString"].as_str().unwrap_or_default().to_string());
        }
        Ok(())
    }

    fn secret_mut(&mut self, arn_var: &str) -> &mut Secret {
        match arn_var {
            "GATEWAY_API_KEY_SECRET_ARN" => &mut self.gateway_api_key,
            "OPS_API_TOKEN_SECRET_ARN" => &mut self.ops_api_token,
            "CARRIER_API_KEY_SECRET_ARN" => &mut self.carrier_api_key,
            "CARRIER_WEBHOOK_SECRET_SECRET_ARN" => &mut self.carrier_webhook_secret,
            "GATEWAY_WEBHOOK_SECRET_SECRET_ARN" => &mut self.gateway_webhook_secret,
            _ => &mut self.warehouse_api_tokens,
        }
    }

    /// The warehouse a bearer token belongs to (compared in constant time).
    pub fn warehouse_for_token(&self, token: &str) -> Option<String> {
        let tokens: std::collections::BTreeMap<String, String> = serde_json::from_str(self.warehouse_api_tokens.expose()).ok()?;
        let mut found = None;
        for (wh, t) in tokens {
            if !t.is_empty() && t.len() == token.len() && bool::from(subtle::ConstantTimeEq::ct_eq(t.as_bytes(), token.as_bytes())) {
                found = Some(wh);
            }
        }
        found
    }

    pub fn from_env() -> Config {
        Config::from_lookup(|k| std::env::var(k).ok())
    }
}
