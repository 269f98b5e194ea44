//! Provisioning: the tables, queues (each with a dead-letter queue), the verified SES sender and
//! the state machines from statemachines/ with their ${Placeholder} substitutions; then seed data.

use crate::functions;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification};
use aws_sdk_sfn::types::StateMachineType;
use aws_sdk_sqs::types::QueueAttributeName;
use orderflow_shared::config::{Config, Secret};
use orderflow_shared::domain::pricing::{CatalogItem, RateTable};
use orderflow_shared::Deps;
use std::collections::BTreeMap;
use std::path::Path;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const SENDER: &str = "orders@orderflow.example";

/// (table, hash key, range key, ttl attribute)
pub const TABLES: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("orderflow-orders", "order_id", None, None),
    ("orderflow-inventory", "pk", None, None),
    ("orderflow-idempotency", "pk", None, Some("expires_at")),
    ("orderflow-catalog", "pk", None, None),
    ("orderflow-velocity", "pk", Some("sk"), Some("expires_at")),
];

/// (queue, visibility timeout seconds, max receives before the DLQ)
pub const QUEUES: &[(&str, i32, i32)] = &[("orderflow-notifications", 30, 5), ("orderflow-review", 30, 5)];

pub const CHECKOUT_MACHINE: &str = "orderflow-checkout";
pub const LIFECYCLE_MACHINE: &str = "orderflow-lifecycle";
/// How long the lifecycle waits for a reviewer: 3 days, well inside the 7-day hold (WF-2).
pub const REVIEW_TIMEOUT_SECONDS: u64 = 3 * 86_400;

pub fn machine_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}
pub fn execution_arn(machine: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}:{name}")
}

pub struct Provisioned {
    pub queue_urls: BTreeMap<String, String>,
    pub dlq_urls: BTreeMap<String, String>,
}

pub fn substitutions(queue_urls: &BTreeMap<String, String>, review_timeout: u64) -> BTreeMap<String, String> {
    let mut subs = BTreeMap::new();
    for name in ["reserve_stock", "release_stock", "authorize_payment", "void_payment", "score_fraud", "confirm_order", "hold_for_review", "record_outcome"] {
        subs.insert(functions::placeholder(name), functions::function_arn(name));
    }
    subs.insert("ReviewQueueUrl".into(), queue_urls.get("orderflow-review").cloned().unwrap_or_default());
    subs.insert("NotificationsQueueUrl".into(), queue_urls.get("orderflow-notifications").cloned().unwrap_or_default());
    subs.insert("ReviewTimeoutSeconds".into(), review_timeout.to_string());
    subs
}

pub fn substitute(definition: &str, subs: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = definition.to_string();
    for (k, v) in subs {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    if let Some(pos) = out.find("${") {
        return Err(format!("unsubstituted placeholder near: {}", &out[pos..(pos + 40).min(out.len())]));
    }
    Ok(out)
}

pub async fn provision(sdk: &aws_config::SdkConfig, repo: &Path, review_timeout: u64) -> Result<Provisioned, String> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for (table, hash, range, ttl) in TABLES {
        let mut req = ddb
            .create_table()
            .table_name(*table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(AttributeDefinition::builder().attribute_name(*hash).attribute_type(ScalarAttributeType::S).build().unwrap())
            .key_schema(KeySchemaElement::builder().attribute_name(*hash).key_type(KeyType::Hash).build().unwrap());
        if let Some(r) = range {
            req = req
                .attribute_definitions(AttributeDefinition::builder().attribute_name(*r).attribute_type(ScalarAttributeType::S).build().unwrap())
                .key_schema(KeySchemaElement::builder().attribute_name(*r).key_type(KeyType::Range).build().unwrap());
        }
        req.send().await.map_err(|e| format!("create table {table}: {e:?}"))?;
        if let Some(attr) = ttl {
            ddb.update_time_to_live()
                .table_name(*table)
                .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name(*attr).enabled(true).build().unwrap())
                .send()
                .await
                .map_err(|e| format!("ttl {table}: {e:?}"))?;
        }
    }

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queue_urls = BTreeMap::new();
    let mut dlq_urls = BTreeMap::new();
    for (name, visibility, max_receives) in QUEUES {
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|e| format!("create dlq {name}: {e:?}"))?;
        let dlq_url = dlq.queue_url.unwrap_or_default();
        let dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}-dlq");
        let q = sqs
            .create_queue()
            .queue_name(*name)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility.to_string())
            .attributes(QueueAttributeName::MessageRetentionPeriod, "345600")
            .attributes(QueueAttributeName::RedrivePolicy, serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string())
            .send()
            .await
            .map_err(|e| format!("create queue {name}: {e:?}"))?;
        queue_urls.insert(name.to_string(), q.queue_url.unwrap_or_default());
        dlq_urls.insert(name.to_string(), dlq_url);
    }

    // As on AWS, SES only sends from a verified identity.
    aws_sdk_sesv2::Client::new(sdk)
        .create_email_identity()
        .email_identity(SENDER)
        .send()
        .await
        .map_err(|e| format!("ses identity: {e:?}"))?;

    let sfn = aws_sdk_sfn::Client::new(sdk);
    let subs = substitutions(&queue_urls, review_timeout);
    for (name, file, kind) in [(CHECKOUT_MACHINE, "checkout.asl.json", StateMachineType::Express), (LIFECYCLE_MACHINE, "lifecycle.asl.json", StateMachineType::Standard)] {
        let raw = std::fs::read_to_string(repo.join("statemachines").join(file)).map_err(|e| format!("read {file}: {e}"))?;
        let def = substitute(&raw, &subs)?;
        serde_json::from_str::<serde_json::Value>(&def).map_err(|e| format!("{file} is not valid JSON after substitution: {e}"))?;
        sfn.create_state_machine()
            .name(name)
            .definition(def)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/orderflow-{name}"))
            .r#type(kind)
            .send()
            .await
            .map_err(|e| format!("create state machine {name}: {e:?}"))?;
    }
    Ok(Provisioned { queue_urls, dlq_urls })
}

pub fn config(edge_url: &str, gateway_url: &str, p: &Provisioned, ops_token: &str) -> Config {
    Config {
        orders_table: "orderflow-orders".into(),
        inventory_table: "orderflow-inventory".into(),
        idempotency_table: "orderflow-idempotency".into(),
        catalog_table: "orderflow-catalog".into(),
        velocity_table: "orderflow-velocity".into(),
        notifications_queue_url: p.queue_urls["orderflow-notifications"].clone(),
        review_queue_url: p.queue_urls["orderflow-review"].clone(),
        checkout_state_machine_arn: machine_arn(CHECKOUT_MACHINE),
        lifecycle_state_machine_arn: machine_arn(LIFECYCLE_MACHINE),
        sender_email: SENDER.into(),
        gateway_base_url: gateway_url.into(),
        gateway_api_key: Secret(crate::sandbox_gateway::SANDBOX_SECRET_KEY.into()),
        ops_api_token: Secret(ops_token.into()),
        aws_endpoint_url: Some(edge_url.into()),
        region: REGION.into(),
    }
}

#[derive(serde::Deserialize)]
pub struct StoreFixture {
    pub catalog: Vec<CatalogItem>,
    pub stock: BTreeMap<String, i64>,
    pub rates: RateTable,
}

pub async fn seed(deps: &Deps, fixture: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(fixture).map_err(|e| format!("{}: {e}", fixture.display()))?;
    let store: StoreFixture = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fixture.display()))?;
    for item in &store.catalog {
        deps.catalog.put_item(item).await.map_err(|e| e.to_string())?;
    }
    deps.catalog.put_rates(&store.rates).await.map_err(|e| e.to_string())?;
    for (sku, n) in &store.stock {
        deps.stock.put_level(sku, *n).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
