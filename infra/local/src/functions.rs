//! Every function of the project, hosted in-process behind the Lambda Invoke API. Each entry calls
//! the same `invoke` the function's Lambda `main` calls.

use orderflow_shared::{Deps, StepError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFut = Pin<Box<dyn Future<Output = Result<Value, StepError>> + Send>>;
pub type Handler = Arc<dyn Fn(Value) -> BoxFut + Send + Sync>;

macro_rules! register {
    ($map:ident, $deps:ident, $($name:ident),* $(,)?) => {
        $(
            let d = $deps.clone();
            $map.insert(stringify!($name), Arc::new(move |v: Value| -> BoxFut {
                let d = d.clone();
                Box::pin(async move { $name::invoke(&d, v).await })
            }) as Handler);
        )*
    };
}

/// Function name -> handler. The names are the Lambda function names used in ARNs.
pub fn registry(deps: Arc<Deps>) -> BTreeMap<&'static str, Handler> {
    let mut m: BTreeMap<&'static str, Handler> = BTreeMap::new();
    register!(m, deps, reserve_stock, release_stock, authorize_payment, void_payment, score_fraud, confirm_order, hold_for_review, record_outcome, send_notifications, record_review_task, route_shipments, ship_stock, buy_label, capture_payment, settle_payment, apply_webhook_events);
    let d = deps.clone();
    m.insert("orders_api", Arc::new(move |v: Value| -> BoxFut {
        let d = d.clone();
        Box::pin(async move { orders_api::invoke_apigw(d, v).await })
    }) as Handler);
    let d = deps.clone();
    m.insert("partner_api", Arc::new(move |v: Value| -> BoxFut {
        let d = d.clone();
        Box::pin(async move { partner_api::invoke_apigw(d, v).await })
    }) as Handler);
    m
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}
