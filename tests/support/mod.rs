//! One local stack per test binary, started on first use and shared by every scenario. Scenarios
//! are plain `#[test]`s that run their async body on the stack's runtime (`h.run(...)`), so the
//! SDK and HTTP connection pools always live on one runtime.

use orderflow_local::{Options, Stack};
use orderflow_shared::domain::pricing::CatalogItem;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

pub use orderflow_local::demo::{get_order, order_body, post_order, review, wait_for_emails, wait_for_status, Placed};

pub struct Harness {
    pub stack: Stack,
    rt: tokio::runtime::Runtime,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// Load scenarios (100 concurrent checkouts) take this exclusively; every other scenario shares it.
/// On a 2-core machine an emulator serving both at once times out steps, which is not what those
/// scenarios are about.
static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Run `f` with no other scenario running (a scenario that brings its own stack, like the soak).
pub fn alone<T>(f: impl FnOnce() -> T) -> T {
    let _exclusive = LOAD.write().unwrap_or_else(|e| e.into_inner());
    f()
}

pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
            let opts = Options { log_dir: Options::default().repo.join("target/local/e2e"), ..Options::default() };
            let _ = std::fs::create_dir_all(&opts.log_dir);
            let _ = orderflow_shared::telemetry::init_to_file(&opts.log_dir.join("functions.log"));
            let stack = rt.block_on(Stack::start(opts)).unwrap_or_else(|e| panic!("local stack did not start: {e}"));
            Harness { stack, rt }
        })
        .join()
        .expect("harness thread")
    })
}

impl Harness {
    /// Run a scenario's async body on the stack's runtime.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        let _shared = LOAD.read().unwrap_or_else(|e| e.into_inner());
        self.rt.block_on(f)
    }

    /// Run a load scenario with the stack to itself.
    pub fn run_alone<F: Future>(&self, f: F) -> F::Output {
        let _exclusive = LOAD.write().unwrap_or_else(|e| e.into_inner());
        self.rt.block_on(f)
    }

    pub fn api(&self) -> &str {
        &self.stack.api_url
    }

    /// A SKU of the scenario's own (so scenarios running side by side never share stock).
    pub async fn new_sku(&self, price_minor: i64, stock: i64) -> String {
        let sku = format!("T-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).to_uppercase();
        let item = CatalogItem { sku: sku.clone(), name: format!("Test item {sku}"), unit_price_minor: price_minor, weight_grams: 100, active: true };
        self.stack.deps.catalog.put_item(&item).await.expect("catalog put");
        if stock > 0 {
            self.stack.deps.stock.receive(&sku, "wh-east", stock, &format!("seed:{sku}:wh-east")).await.expect("stock put");
        } else {
            self.stack.deps.stock.set_reorder(&sku, "wh-east", 0, 0).await.expect("stock put");
        }
        sku
    }

    pub async fn stock(&self, sku: &str) -> (i64, i64) {
        let l = self.stack.deps.stock.level(sku).await.expect("stock read").unwrap_or_default();
        (l.available, l.reserved)
    }

    pub fn email(&self, tag: &str) -> String {
        format!("{tag}.{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..10])
    }

    pub fn key(&self) -> String {
        format!("key-{}", uuid::Uuid::new_v4())
    }

    pub async fn place(&self, body: &serde_json::Value) -> Placed {
        post_order(&reqwest::Client::new(), self.api(), Some(&self.key()), body.to_string().as_bytes()).await
    }

    /// The settle window: before "exactly N" or "none" is asserted, wait until every queue the
    /// functions consume (notifications, webhook events, refunds, review tasks) is empty with
    /// nothing in flight, then hold a window long enough for a late duplicate to show. Absence is
    /// never asserted after a fixed sleep alone.
    pub async fn settle(&self) {
        use aws_sdk_sqs::types::QueueAttributeName::{ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible};
        let consumed: Vec<&String> = self
            .stack
            .queue_urls
            .iter()
            .filter(|(logical, _)| !logical.contains("DeadLetter") && !logical.starts_with("Warehouse") && !logical.starts_with("Supplier"))
            .map(|(_, url)| url)
            .collect();
        let started = std::time::Instant::now();
        loop {
            let mut busy = 0;
            for url in &consumed {
                let attrs = self
                    .stack
                    .moto_sqs
                    .get_queue_attributes()
                    .queue_url(*url)
                    .attribute_names(ApproximateNumberOfMessages)
                    .attribute_names(ApproximateNumberOfMessagesNotVisible)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.attributes)
                    .unwrap_or_default();
                busy += attrs.values().filter_map(|v| v.parse::<i64>().ok()).sum::<i64>();
            }
            if busy == 0 || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    /// Lose the order's stored payment record, as when a gateway call succeeded and the write that
    /// should have followed it did not (a timeout, a killed function): a replay of the step then
    /// really reaches the gateway, and only the gateway's idempotency can keep it to one effect.
    pub async fn forget_payment(&self, order_id: &str) {
        self.remove_order_attribute(order_id, "payment").await;
    }

    /// The operator's AWS settings, straight to the emulator (no function's role, nothing recorded
    /// at the edge): what an operator's console or script sees.
    pub async fn operator_sdk(&self) -> aws_config::SdkConfig {
        orderflow_shared::aws::sdk_config(&orderflow_local::ports::operator_env(&self.stack.moto_url, Default::default())).await
    }

    /// A DynamoDB client with the operator's settings (`operator_sdk`).
    pub async fn operator_dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.operator_sdk().await)
    }

    /// Remove one attribute of the stored order, straight in the table (a state an earlier version
    /// or a lost write leaves behind).
    pub async fn remove_order_attribute(&self, order_id: &str, attribute: &str) {
        self.operator_dynamodb()
            .await
            .update_item()
            .table_name("OrdersTable")
            .key("order_id", aws_sdk_dynamodb::types::AttributeValue::S(order_id.to_string()))
            .update_expression("REMOVE #a")
            .expression_attribute_names("#a", attribute)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{attribute} not removed: {e:?}"));
    }

    /// The gateway POSTs about an order, as they crossed the wire.
    /// The order as an operator sees it (`GET /ops/orders/{id}`).
    pub async fn ops_view(&self, order_id: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/ops/orders/{order_id}", self.api()))
            .bearer_auth(&self.stack.ops_token)
            .send()
            .await
            .expect("ops view")
            .json::<serde_json::Value>()
            .await
            .expect("ops view body")
    }

    pub fn gateway_requests(&self, order_id: &str) -> Vec<orderflow_local::sandbox_gateway::GatewayRequest> {
        self.stack.gateway.requests_for_order(order_id)
    }

    /// Wait (up to two minutes) until the stored order satisfies `f`; fails naming `what` and the status.
    pub async fn until(&self, id: &str, what: &str, f: impl Fn(&orderflow_shared::domain::order::Order) -> bool) -> orderflow_shared::domain::order::Order {
        let started = std::time::Instant::now();
        loop {
            let o = self.stack.deps.orders.get(id).await.expect("order read").expect("order exists");
            if f(&o) {
                return o;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{id}: timed out waiting for {what}; status {:?}", o.status);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Cancel a payment intent at the gateway, as the store would from its dashboard.
    pub async fn cancel_hold_at_gateway(&self, intent_id: &str) {
        let st = reqwest::Client::new()
            .post(format!("{}/v1/payment_intents/{intent_id}/cancel", self.stack.gateway_url))
            .bearer_auth(orderflow_local::sandbox_gateway::SANDBOX_SECRET_KEY)
            .send()
            .await
            .expect("gateway reachable")
            .status();
        assert!(st.is_success(), "cancel {intent_id}: {st}");
    }

    pub fn intents(&self, order_id: &str) -> Vec<serde_json::Value> {
        self.stack.gateway.intents_for_order(order_id)
    }
}
