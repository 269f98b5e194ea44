//! Hello world on lambda_runtime: the baseline for the functions' cold starts.
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async { Ok::<_, Error>(serde_json::json!({"hello": "world"})) })).await
}
