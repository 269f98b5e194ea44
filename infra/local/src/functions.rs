//! Every function of the project, hosted in-process behind the Lambda Invoke API, started the way
//! Lambda starts it: on its first invocation (a cold start) the function's own `Deps::from_env` runs
//! with the environment infra/template.yaml gives that function, resolved as CloudFormation would,
//! plus what Lambda adds (region, credentials of the function's own role, the Parameters and
//! Secrets extension's port). A setting the template forgot fails that cold start with its name,
//! as it would on AWS. Secrets are fetched on first use through the extension stand-in, which
//! answers only what the function's role may read; every AWS call carries the function's own
//! credentials, which the edge checks against its policy.

use orderflow_shared::{ConfigError, Env, StepError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type Handler = Arc<dyn Fn(Value) -> BoxFut<Result<Value, StepError>> + Send + Sync>;
type Init = fn(Env) -> BoxFut<Result<Handler, ConfigError>>;

macro_rules! hosted {
    ($(step $name:ident),* ; $(api $api:ident),*) => {
        vec![
            $((stringify!($name), (|env: Env| -> BoxFut<Result<Handler, ConfigError>> {
                Box::pin(async move {
                    let d = Arc::new($name::Deps::from_env(env).await?);
                    Ok(Arc::new(move |v: Value| -> BoxFut<Result<Value, StepError>> {
                        let d = d.clone();
                        Box::pin(async move { $name::invoke(&d, v).await })
                    }) as Handler)
                })
            }) as Init),)*
            $((stringify!($api), (|env: Env| -> BoxFut<Result<Handler, ConfigError>> {
                Box::pin(async move {
                    let d = Arc::new($api::Deps::from_env(env).await?);
                    Ok(Arc::new(move |v: Value| -> BoxFut<Result<Value, StepError>> {
                        let d = d.clone();
                        Box::pin(async move { $api::invoke_apigw(d, v).await })
                    }) as Handler)
                })
            }) as Init),)*
        ]
    };
}

/// Function name (the crate, the binary, the Lambda name) -> its cold start.
fn inits() -> Vec<(&'static str, Init)> {
    hosted!(
        step reserve_stock, step release_stock, step authorize_payment, step void_payment, step score_fraud,
        step confirm_order, step hold_for_review, step record_outcome, step send_notifications,
        step record_review_task, step route_shipments, step send_pick_list, step ship_stock, step buy_label, step capture_payment,
        step settle_payment, step end_dispatch, step apply_webhook_events, step refund_payment, step sweep_stuck_orders, step return_labels, step receive_return;
        api orders_api, api partner_api, api store_data_api
    )
}

/// The credentials Lambda gives a function (its role's session), distinct per function.
#[derive(Debug, Clone)]
pub struct Identity {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl Identity {
    pub fn new(function: &str) -> Identity {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(function.as_bytes())).to_uppercase();
        Identity {
            access_key_id: format!("ASIA{}", &h[..16]),
            secret_access_key: format!("local-secret-{function}"),
            session_token: format!("local-session-{function}-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// One hosted function: its environment and, after its cold start, its handler.
pub struct Hosted {
    pub name: &'static str,
    pub env: BTreeMap<String, String>,
    pub identity: Identity,
    init: Init,
    handler: tokio::sync::OnceCell<Handler>,
}

impl Hosted {
    /// The handler, starting the function first if this is its first invocation. A failed cold
    /// start is reported like Lambda's init errors and tried again on the next invocation.
    pub async fn handler(&self) -> Result<Handler, StepError> {
        self.handler
            .get_or_try_init(|| async {
                let started = std::time::Instant::now();
                let r = (self.init)(Env::from_map(self.env.clone())).await;
                match &r {
                    Ok(_) => tracing::info!(function = self.name, init_ms = started.elapsed().as_millis() as u64, "cold start"),
                    Err(e) => tracing::error!(function = self.name, error = %e, "cold start failed: the function's configuration is incomplete"),
                }
                r.map_err(|e| StepError::Internal(format!("Runtime.InitError: {e}")))
            })
            .await
            .cloned()
    }
}

/// What Lambda adds to a function's environment. `edge` is the local AWS endpoint.
pub fn runtime_environment(function: &str, identity: &Identity, edge: &str, extension_port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("AWS_REGION".to_string(), crate::template::REGION.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME".to_string(), function.to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), identity.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), identity.secret_access_key.clone()),
        ("AWS_SESSION_TOKEN".to_string(), identity.session_token.clone()),
        ("AWS_ENDPOINT_URL".to_string(), edge.to_string()),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".to_string(), extension_port.to_string()),
    ])
}

/// Every function the template declares, with the environment it gives each. A function the
/// template declares but this process cannot host (or the reverse) is an error.
pub fn host_all(template: &crate::template::Template, edge: &str, extension_port: u16) -> Result<BTreeMap<&'static str, Arc<Hosted>>, String> {
    let declared: BTreeMap<String, String> = template.functions().into_iter().map(|f| (f.binary, f.logical_id)).collect();
    let mut out = BTreeMap::new();
    for (name, init) in inits() {
        let logical = declared.get(name).ok_or_else(|| format!("function {name} is hosted but not declared in infra/template.yaml"))?;
        let identity = Identity::new(name);
        let mut env = template.function_environment(logical)?;
        env.extend(runtime_environment(name, &identity, edge, extension_port));
        out.insert(name, Arc::new(Hosted { name, env, identity, init, handler: Default::default() }));
    }
    if let Some(missing) = declared.keys().find(|b| !out.contains_key(b.as_str())) {
        return Err(format!("infra/template.yaml declares {missing}, which the local stack does not host"));
    }
    Ok(out)
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

/// Run one function's cold start (its `Deps::from_env`) with `env` and say which variables it read:
/// what tests/template_contract.rs compares with what the template gives it. No AWS call is made.
pub async fn cold_start_reads(name: &str, env: BTreeMap<String, String>) -> Result<std::collections::BTreeSet<String>, ConfigError> {
    let (_, init) = inits().into_iter().find(|(n, _)| *n == name).ok_or_else(|| ConfigError::Missing(format!("(no hosted function {name})")))?;
    let e = Env::from_map(env);
    init(e.clone()).await?;
    Ok(e.names_read())
}
