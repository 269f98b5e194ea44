//! orderflow's shared library: the order domain, the ports the steps are written against, their
//! AWS adapters, the payment-gateway client, and the error vocabulary shared with the state machines.

pub mod aws;
pub mod carrier;
pub mod dispatch;
pub mod domain;
pub mod env;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod gateway;
#[cfg(feature = "http")]
pub mod http;
pub mod lambda;
pub mod money;
pub mod notification;
pub mod ports;
pub mod refunds;
pub mod secrets;
pub mod telemetry;
pub mod webhooks;
pub mod wiring;

pub use env::{ConfigError, Env};
pub use error::StepError;

/// Input every state passes to its Task: the order it works on. Steps ignore other fields.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    pub order_id: String,
}
