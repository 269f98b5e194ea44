//! The fault soak, small (#10 item 12): `orderflow-local soak` runs 1,000 orders; this runs 16 on a
//! stack of their own with 8% of the functions' DynamoDB, SQS, gateway and carrier calls failing
//! (half after the call took effect), then the soak's checks: every order at rest, stock conserved
//! per SKU and warehouse, captured = value of what left, no hold open on a final order, duplicate
//! emails only where a fault struck.

use orderflow_local::{Options, Stack};
use std::time::Duration;

#[test]
fn orders_under_transient_faults_all_come_to_rest_with_books_and_money_balanced() {
    orderflow_e2e::alone(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(async {
            let opts = Options {
                log_dir: Options::default().repo.join("target/local/soak"),
                warehouse_auto: true,
                carrier_auto_walk: Some(Duration::from_millis(300)),
                warehouse_timeout_seconds: 600,
                return_authorization_seconds: 600,
                fault_rate: 0.08,
                ..Options::default()
            };
            let _ = std::fs::create_dir_all(&opts.log_dir);
            // The functions' log lines (when this runs on its own; in the whole suite the harness's file has them).
            let _ = orderflow_shared::telemetry::init_to_file(&opts.log_dir.join("functions.log"));
            let stack = Stack::start(opts).await.unwrap_or_else(|e| panic!("soak stack did not start: {e}"));
            let findings = orderflow_local::soak::run(&stack, 16, 16).await.unwrap_or_else(|e| panic!("soak: {e}"));
            assert_eq!(findings.orders, 16);
            let injected = stack.faults.injected.lock().unwrap().clone();
            assert!(
                injected.iter().any(|i| i.kind.after_effect()) && injected.iter().any(|i| !i.kind.after_effect()),
                "faults struck both before and after effect"
            );
            stack.shutdown();
        });
    });
}
