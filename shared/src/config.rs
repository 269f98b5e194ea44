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

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

impl Config {
    pub fn from_env() -> Config {
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
            aws_endpoint_url: std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        }
    }
}
