//! Hello world on lambda_runtime: the baseline for the functions' cold starts. As `#[tokio::main]`
//! builds it (the multi-threaded runtime) unless `HELLO_RUNTIME=current_thread`, the runtime our
//! functions use (`.ci/coldstart` prints both).
use lambda_runtime::{service_fn, Error, LambdaEvent};

fn main() -> Result<(), Error> {
    let runtime = match std::env::var("HELLO_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    runtime.block_on(lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        Ok::<_, Error>(serde_json::json!({"hello": "world"}))
    })))
}
