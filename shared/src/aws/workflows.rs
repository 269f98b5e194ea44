//! Step Functions adapter.

use crate::error::StepError;
use crate::ports::{Result, SyncExecution, Workflows};
use async_trait::async_trait;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

pub struct SfnWorkflows {
    pub client: aws_sdk_sfn::Client,
    /// Only the functions that start a workflow name it (and are allowed to start it).
    pub checkout_arn: Option<String>,
    pub lifecycle_arn: Option<String>,
    pub fulfillment_arn: Option<String>,
    pub returns_arn: Option<String>,
    pub parcel_arn: Option<String>,
}

impl SfnWorkflows {
    /// A client for callbacks only (SendTaskSuccess); add the machines this function starts.
    pub fn new(sdk: &aws_config::SdkConfig, env: &crate::env::Env) -> SfnWorkflows {
        SfnWorkflows::with_client(sfn_client(sdk, super::is_local(env)))
    }
    /// The same, on a client the function already has (`Wiring::sfn`).
    pub fn with_client(client: aws_sdk_sfn::Client) -> SfnWorkflows {
        SfnWorkflows { client, checkout_arn: None, lifecycle_arn: None, fulfillment_arn: None, returns_arn: None, parcel_arn: None }
    }
    pub fn starting_checkout(mut self, arn: String) -> Self {
        self.checkout_arn = Some(arn);
        self
    }
    pub fn starting_lifecycle(mut self, arn: String) -> Self {
        self.lifecycle_arn = Some(arn);
        self
    }
    pub fn starting_fulfillment(mut self, arn: String) -> Self {
        self.fulfillment_arn = Some(arn);
        self
    }
    pub fn starting_returns(mut self, arn: String) -> Self {
        self.returns_arn = Some(arn);
        self
    }
    pub fn starting_parcels(mut self, arn: String) -> Self {
        self.parcel_arn = Some(arn);
        self
    }
    async fn start_named(&self, arn: &Option<String>, which: &str, name: &str, input: &serde_json::Value) -> Result<bool> {
        match self.client.start_execution().state_machine_arn(machine(arn, which)?).name(name).input(input.to_string()).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_execution_already_exists()) => Ok(false),
            Err(e) => Err(StepError::from_sdk("sfn.start_execution", e)),
        }
    }
}

fn machine<'a>(arn: &'a Option<String>, which: &str) -> Result<&'a str> {
    arn.as_deref().ok_or_else(|| StepError::Internal(format!("this function was not configured to start the {which} workflow")))
}

/// StartSyncExecution is modelled with the host prefix `sync-`, which the SDK also prepends to a
/// custom endpoint (`sync-127.0.0.1` does not resolve). With a local endpoint configured we undo
/// the prefix just before the request is sent. Never installed against real AWS.
#[derive(Debug)]
pub struct LocalEndpointHostFix;

impl Intercept for LocalEndpointHostFix {
    fn name(&self) -> &'static str {
        "LocalEndpointHostFix"
    }
    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let uri = ctx.request().uri().to_string();
        if let Some(fixed) = uri.strip_prefix("http://sync-").map(|rest| format!("http://{rest}")) {
            ctx.request_mut().set_uri(fixed.as_str()).map_err(|e| BoxError::from(format!("{e:?}")))?;
        }
        Ok(())
    }
}

pub fn sfn_client(sdk: &aws_config::SdkConfig, local: bool) -> aws_sdk_sfn::Client {
    let mut b = aws_sdk_sfn::config::Builder::from(sdk);
    if local {
        b = b.interceptor(LocalEndpointHostFix);
    }
    aws_sdk_sfn::Client::from_conf(b.build())
}

#[async_trait]
impl Workflows for SfnWorkflows {
    async fn run_checkout(&self, order_id: &str, input: &serde_json::Value) -> Result<SyncExecution> {
        let out = self
            .client
            .start_sync_execution()
            .state_machine_arn(machine(&self.checkout_arn, "checkout")?)
            .name(order_id)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| StepError::from_sdk("sfn.start_sync_execution", e))?;
        Ok(SyncExecution { status: out.status.as_str().to_string(), output: out.output, error: out.error, cause: out.cause })
    }

    async fn start_lifecycle(&self, order_id: &str, input: &serde_json::Value) -> Result<bool> {
        self.start_named(&self.lifecycle_arn, "lifecycle", order_id, input).await
    }

    async fn start_fulfillment(&self, order_id: &str, input: &serde_json::Value) -> Result<()> {
        let name = format!("{order_id}-{}", uuid::Uuid::new_v4());
        self.start_named(&self.fulfillment_arn, "fulfillment", &name, input).await.map(|_| ())
    }

    async fn start_return(&self, return_id: &str, input: &serde_json::Value) -> Result<bool> {
        self.start_named(&self.returns_arn, "returns", return_id, input).await
    }

    async fn send_task_success(&self, token: &str, output: &serde_json::Value) -> Result<()> {
        self.client.send_task_success().task_token(token).output(output.to_string()).send().await.map_err(|e| {
            let gone = e.as_service_error().is_some_and(|se| se.is_task_timed_out() || se.is_invalid_token() || se.is_task_does_not_exist());
            token_error(gone, e, "sfn.send_task_success")
        })?;
        Ok(())
    }

    async fn task_heartbeat(&self, token: &str) -> Result<()> {
        self.client.send_task_heartbeat().task_token(token).send().await.map_err(|e| {
            let gone = e.as_service_error().is_some_and(|se| se.is_task_timed_out() || se.is_invalid_token() || se.is_task_does_not_exist());
            token_error(gone, e, "sfn.send_task_heartbeat")
        })?;
        Ok(())
    }

    async fn start_parcel(&self, order_id: &str, input: &serde_json::Value) -> Result<()> {
        let name = format!("{order_id}-{}", uuid::Uuid::new_v4());
        self.start_named(&self.parcel_arn, "parcel", &name, input).await.map(|_| ())
    }
}

/// A token that is no longer waiting (used, timed out, execution ended) is the caller's business,
/// not a transient failure.
fn token_error<E: std::error::Error + 'static>(
    gone: bool,
    e: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    what: &str,
) -> StepError {
    if gone {
        StepError::InvalidState(format!("task token no longer waiting: {}", e.as_service_error().map(|se| se.to_string()).unwrap_or_default()))
    } else {
        StepError::from_sdk(what, e)
    }
}
