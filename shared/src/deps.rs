//! The ports a step needs, built once per cold start from `Config` (thin mains call `Deps::from_env`).

use crate::aws::{dynamo::*, messaging::*, sdk_config, workflows::*};
use crate::config::Config;
use crate::domain::fraud::Policy;
use crate::carrier::HttpCarrier;
use crate::gateway::HttpGateway;
use crate::ports::*;
use std::sync::Arc;

#[derive(Clone)]
pub struct Deps {
    pub config: Config,
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub catalog: Arc<dyn Catalog>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub once: Arc<dyn OnceLedger>,
    pub velocity: Arc<dyn VelocityCounter>,
    pub queue: Arc<dyn Queue>,
    pub mailer: Arc<dyn Mailer>,
    pub workflows: Arc<dyn Workflows>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub carrier: Arc<dyn Carrier>,
    pub lookups: Arc<dyn Lookups>,
    pub fraud_policy: Policy,
}

impl Deps {
    pub async fn from_env() -> Deps {
        let mut config = Config::from_env();
        if let Err(e) = config.resolve_secrets().await {
            // Without its secrets a function cannot talk to the gateway or check operators; it
            // still starts so the error shows in every invocation's log rather than as a crash loop.
            tracing::error!(error = %e, "could not read secrets");
        }
        Deps::from_config(config).await
    }

    pub async fn from_config(config: Config) -> Deps {
        let sdk = sdk_config(config.aws_endpoint_url.as_deref(), &config.region).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let idem = Arc::new(DynamoIdempotency { client: ddb.clone(), table: config.idempotency_table.clone(), ttl_seconds: 86_400 });
        Deps {
            orders: Arc::new(DynamoOrders { client: ddb.clone(), table: config.orders_table.clone() }),
            stock: Arc::new(DynamoInventory { client: ddb.clone(), table: config.inventory_table.clone() }),
            catalog: Arc::new(DynamoCatalog { client: ddb.clone(), table: config.catalog_table.clone() }),
            idempotency: idem.clone(),
            once: idem.clone(),
            lookups: idem,
            velocity: Arc::new(DynamoVelocity { client: ddb, table: config.velocity_table.clone() }),
            queue: Arc::new(SqsQueue { client: aws_sdk_sqs::Client::new(&sdk) }),
            mailer: Arc::new(SesMailer { client: aws_sdk_sesv2::Client::new(&sdk), from: config.sender_email.clone() }),
            workflows: Arc::new(SfnWorkflows {
                client: sfn_client(&sdk, config.aws_endpoint_url.is_some()),
                checkout_arn: config.checkout_state_machine_arn.clone(),
                lifecycle_arn: config.lifecycle_state_machine_arn.clone(),
            }),
            gateway: Arc::new(HttpGateway::new(&config.gateway_base_url, config.gateway_api_key.clone())),
            carrier: Arc::new(HttpCarrier::new(&config.carrier_base_url, config.carrier_api_key.clone())),
            fraud_policy: Policy::default(),
            config,
        }
    }
}
