//! Building a function's ports from its environment, one port at a time. Each function's
//! `Deps::from_env` asks only for the ports it uses, so it reads only the variables those need
//! (the template gives it exactly those, tests/template_contract.rs checks) and links only their SDK
//! clients (the Cargo features of this crate).

use crate::env::{ConfigError, Env};
#[allow(unused_imports)]
use crate::ports::{Carrier, Catalog, EmailLog, Mailer, OrderRepository, PaymentGateway, Queue, StockLedger, VelocityCounter, Workflows};
use std::sync::Arc;

/// One SDK client per service, however many ports use it: each client made is a few hundred
/// microseconds of a cold start (its runtime plugins and config, and the HTTP client's check that
/// builds a TLS connector), and clients share nothing by being separate.
pub struct Wiring {
    pub env: Env,
    pub sdk: aws_config::SdkConfig,
    #[cfg(feature = "dynamodb")]
    dynamodb: std::sync::OnceLock<aws_sdk_dynamodb::Client>,
    #[cfg(feature = "sqs")]
    sqs: std::sync::OnceLock<aws_sdk_sqs::Client>,
    #[cfg(feature = "sfn")]
    sfn: std::sync::OnceLock<aws_sdk_sfn::Client>,
}

impl Wiring {
    pub async fn new(env: Env) -> Wiring {
        let sdk = crate::aws::sdk_config(&env).await;
        Wiring {
            env,
            sdk,
            #[cfg(feature = "dynamodb")]
            dynamodb: Default::default(),
            #[cfg(feature = "sqs")]
            sqs: Default::default(),
            #[cfg(feature = "sfn")]
            sfn: Default::default(),
        }
    }

    /// The function's DynamoDB client (made on first use, then shared).
    #[cfg(feature = "dynamodb")]
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.dynamodb.get_or_init(|| aws_sdk_dynamodb::Client::new(&self.sdk)).clone()
    }

    #[cfg(feature = "sqs")]
    fn sqs(&self) -> aws_sdk_sqs::Client {
        self.sqs.get_or_init(|| aws_sdk_sqs::Client::new(&self.sdk)).clone()
    }

    #[cfg(feature = "sfn")]
    fn sfn(&self) -> aws_sdk_sfn::Client {
        self.sfn.get_or_init(|| crate::aws::workflows::sfn_client(&self.sdk, crate::aws::is_local(&self.env))).clone()
    }

    #[cfg(feature = "dynamodb")]
    pub fn orders(&self) -> Result<Arc<dyn OrderRepository>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoOrders::new(self.dynamodb(), self.env.require("ORDERS_TABLE")?)))
    }

    /// The orders table's email logs (send_notifications).
    #[cfg(feature = "dynamodb")]
    pub fn email_log(&self) -> Result<Arc<dyn EmailLog>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoOrders::new(self.dynamodb(), self.env.require("ORDERS_TABLE")?)))
    }

    #[cfg(feature = "dynamodb")]
    pub fn stock(&self) -> Result<Arc<dyn StockLedger>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoInventory::new(self.dynamodb(), self.env.require("INVENTORY_TABLE")?)))
    }

    #[cfg(feature = "dynamodb")]
    pub fn catalog(&self) -> Result<Arc<dyn Catalog>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoCatalog::new(self.dynamodb(), self.env.require("CATALOG_TABLE")?)))
    }

    /// The idempotency table serves request claims, once-markers and lookups.
    #[cfg(feature = "dynamodb")]
    pub fn idempotency(&self) -> Result<Arc<crate::aws::dynamo::DynamoIdempotency>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoIdempotency::new(self.dynamodb(), self.env.require("IDEMPOTENCY_TABLE")?)))
    }

    #[cfg(feature = "dynamodb")]
    pub fn velocity(&self) -> Result<Arc<dyn VelocityCounter>, ConfigError> {
        Ok(Arc::new(crate::aws::dynamo::DynamoVelocity::new(self.dynamodb(), self.env.require("VELOCITY_TABLE")?)))
    }

    #[cfg(feature = "sqs")]
    pub fn queue(&self) -> Arc<dyn Queue> {
        Arc::new(crate::aws::queue::SqsQueue::new(self.sqs()))
    }

    /// The queue for a function whose usual requests send nothing (orders_api: only cancels,
    /// refunds and redrives do): its SQS client is made at the first message, not at cold start.
    /// Not for a function that also uses `queue()` (that would make a second client).
    #[cfg(feature = "sqs")]
    pub fn queue_on_first_use(&self) -> Arc<dyn Queue> {
        Arc::new(crate::aws::queue::SqsQueue::on_first_use(self.sdk.clone()))
    }

    #[cfg(feature = "ses")]
    pub fn mailer(&self) -> Result<Arc<dyn Mailer>, ConfigError> {
        Ok(Arc::new(crate::aws::mailer::SesMailer::new(&self.sdk, self.env.require("SENDER_EMAIL")?, self.env.require("SES_CONFIGURATION_SET")?)))
    }

    /// Step Functions for callbacks (SendTaskSuccess) only.
    #[cfg(feature = "sfn")]
    pub fn callbacks(&self) -> crate::aws::workflows::SfnWorkflows {
        crate::aws::workflows::SfnWorkflows::with_client(self.sfn())
    }

    #[cfg(feature = "sfn")]
    pub fn lifecycle_starter(&self) -> Result<Arc<dyn Workflows>, ConfigError> {
        Ok(Arc::new(self.callbacks().starting_lifecycle(self.env.require("LIFECYCLE_STATE_MACHINE_ARN")?)))
    }

    #[cfg(feature = "sfn")]
    pub fn fulfillment_starter(&self) -> Result<Arc<dyn Workflows>, ConfigError> {
        Ok(Arc::new(self.callbacks().starting_fulfillment(self.env.require("FULFILLMENT_STATE_MACHINE_ARN")?)))
    }

    /// Callbacks, and starting parcel runs for a warehouse's answer (`PARCEL_STATE_MACHINE_ARN`).
    #[cfg(feature = "sfn")]
    pub fn parcel_starter(&self) -> Result<Arc<dyn Workflows>, ConfigError> {
        Ok(Arc::new(self.callbacks().starting_parcels(self.env.require("PARCEL_STATE_MACHINE_ARN")?)))
    }

    /// Callbacks, and starting returns executions (`RETURNS_STATE_MACHINE_ARN`).
    #[cfg(feature = "sfn")]
    pub fn returns_starter(&self) -> Result<crate::aws::workflows::SfnWorkflows, ConfigError> {
        Ok(self.callbacks().starting_returns(self.env.require("RETURNS_STATE_MACHINE_ARN")?))
    }

    pub fn gateway(&self) -> Result<Arc<dyn PaymentGateway>, ConfigError> {
        let key = Arc::new(self.env.secret("GATEWAY_API_KEY")?);
        Ok(Arc::new(crate::gateway::HttpGateway::new(&self.env.require("GATEWAY_BASE_URL")?, key)))
    }

    pub fn carrier(&self) -> Result<Arc<dyn Carrier>, ConfigError> {
        let key = Arc::new(self.env.secret("CARRIER_API_KEY")?);
        Ok(Arc::new(crate::carrier::HttpCarrier::new(&self.env.require("CARRIER_BASE_URL")?, key)))
    }

    /// A queue URL the function sends to (its IAM policy allows exactly that queue).
    pub fn queue_url(&self, variable: &str) -> Result<String, ConfigError> {
        self.env.require(variable)
    }
}

/// The ports of the steps that work on an order and its payment hold (authorize_payment,
/// void_payment, capture_payment): the orders table and the gateway (its key from Secrets Manager).
#[cfg(feature = "dynamodb")]
pub struct OrderAndGateway {
    pub orders: Arc<dyn OrderRepository>,
    pub gateway: Arc<dyn PaymentGateway>,
}

#[cfg(feature = "dynamodb")]
impl OrderAndGateway {
    pub async fn from_env(env: Env) -> Result<OrderAndGateway, ConfigError> {
        let w = Wiring::new(env).await;
        Ok(OrderAndGateway { orders: w.orders()?, gateway: w.gateway()? })
    }
}

/// The ports of the steps that move an order's stock at checkout (reserve_stock, release_stock):
/// the orders table and the inventory table.
#[cfg(feature = "dynamodb")]
pub struct OrderAndStock {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
}

#[cfg(feature = "dynamodb")]
impl OrderAndStock {
    pub async fn from_env(env: Env) -> Result<OrderAndStock, ConfigError> {
        let w = Wiring::new(env).await;
        Ok(OrderAndStock { orders: w.orders()?, stock: w.stock()? })
    }
}
