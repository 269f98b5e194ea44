//! Provisioning from infra/template.yaml: the tables, the queues with their dead-letter queues, the
//! verified SES sender and the state machines (definition files + substitutions). The store's data is loaded afterwards
//! through the operator API (`load`).

use crate::template::{substitute, Template};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sfn::types::StateMachineType;
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::template::{ACCOUNT, REGION};

pub const CHECKOUT_MACHINE: &str = "orderflow-checkout";
pub const LIFECYCLE_MACHINE: &str = "orderflow-lifecycle";
pub const PARCEL_MACHINE: &str = "orderflow-parcel";
pub const SETTLE_MACHINE: &str = "orderflow-settle";
pub const FULFILLMENT_MACHINE: &str = "orderflow-fulfillment";
pub const DISPATCH_MACHINE: &str = "orderflow-dispatch";
/// The machines an order's runs are named after it in (`<order id>-...`): Express runs (billed per
/// request and duration) and the Standard dispatch waits (billed per state).
pub const ORDER_RUN_MACHINES: [(&str, bool); 4] = [(FULFILLMENT_MACHINE, true), (DISPATCH_MACHINE, false), (PARCEL_MACHINE, true), (SETTLE_MACHINE, true)];

pub fn machine_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}
pub fn execution_arn(machine: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}:{name}")
}

pub struct Provisioned {
    pub template: Template,
    /// Queue logical id -> URL (dead-letter queues included).
    pub queue_urls: BTreeMap<String, String>,
    /// Source queue logical id -> its dead-letter queue's logical id.
    pub dead_letter: BTreeMap<String, String>,
}

pub async fn provision(sdk: &aws_config::SdkConfig, repo: &Path, params: BTreeMap<String, String>) -> Result<Provisioned, String> {
    let mut t = Template::load(&repo.join("infra/template.yaml"))?;
    t.params = params;

    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for table in t.tables()? {
        let mut req = ddb.create_table().table_name(&table.name).billing_mode(BillingMode::PayPerRequest);
        for (name, ty) in &table.attributes {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::from(ty.as_str()))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let key = |name: &str, ty: &str| KeySchemaElement::builder().attribute_name(name).key_type(KeyType::from(ty)).build().map_err(|e| e.to_string());
        for (name, ty) in &table.keys {
            req = req.key_schema(key(name, ty)?);
        }
        for (index, keys) in &table.indexes {
            let mut gsi = GlobalSecondaryIndex::builder().index_name(index).projection(Projection::builder().projection_type(ProjectionType::All).build());
            for (name, ty) in keys {
                gsi = gsi.key_schema(key(name, ty)?);
            }
            req = req.global_secondary_indexes(gsi.build().map_err(|e| e.to_string())?);
        }
        req.send().await.map_err(|e| format!("create table {}: {e:?}", table.name))?;
        if let Some(attr) = &table.ttl_attribute {
            ddb.update_time_to_live()
                .table_name(&table.name)
                .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name(attr).enabled(true).build().map_err(|e| e.to_string())?)
                .send()
                .await
                .map_err(|e| format!("ttl {}: {e:?}", table.name))?;
        }
    }

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut dead_letter = BTreeMap::new();
    for q in t.queues()? {
        let mut req = sqs.create_queue().queue_name(&q.name);
        if let Some(v) = q.visibility_timeout {
            req = req.attributes(QueueAttributeName::VisibilityTimeout, v.to_string());
        }
        if let Some(r) = q.retention {
            req = req.attributes(QueueAttributeName::MessageRetentionPeriod, r.to_string());
        }
        if let Some((dlq, max)) = &q.redrive {
            let arn = t.get_att(&format!("{dlq}.Arn"))?;
            req = req.attributes(QueueAttributeName::RedrivePolicy, serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string());
            dead_letter.insert(q.logical_id.clone(), dlq.clone());
        }
        let out = req.send().await.map_err(|e| format!("create queue {}: {e:?}", q.name))?;
        t.queue_urls.insert(q.logical_id.clone(), out.queue_url.unwrap_or_default());
    }

    // The configuration set every email goes through (its suppression options), then, as on AWS,
    // the verified identity SES sends from.
    let ses = aws_sdk_sesv2::Client::new(sdk);
    for (name, reasons) in t.configuration_sets() {
        let options = aws_sdk_sesv2::types::SuppressionOptions::builder()
            .set_suppressed_reasons(Some(reasons.iter().map(|r| aws_sdk_sesv2::types::SuppressionListReason::from(r.as_str())).collect()))
            .build();
        ses.create_configuration_set()
            .configuration_set_name(&name)
            .suppression_options(options)
            .send()
            .await
            .map_err(|e| format!("ses configuration set {name}: {e:?}"))?;
    }
    if let Some(sender) = t.sender_identity()? {
        aws_sdk_sesv2::Client::new(sdk).create_email_identity().email_identity(&sender).send().await.map_err(|e| format!("ses identity: {e:?}"))?;
    }

    let sfn = aws_sdk_sfn::Client::new(sdk);
    for m in t.state_machines()? {
        let raw = std::fs::read_to_string(&m.definition).map_err(|e| format!("{}: {e}", m.definition.display()))?;
        let def = substitute(&raw, &m.substitutions).map_err(|e| format!("{}: {e}", m.definition.display()))?;
        serde_json::from_str::<serde_json::Value>(&def).map_err(|e| format!("{} is not valid JSON after substitution: {e}", m.definition.display()))?;
        sfn.create_state_machine()
            .name(&m.name)
            .definition(def)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{}", m.logical_id))
            .r#type(if m.kind == "EXPRESS" { StateMachineType::Express } else { StateMachineType::Standard })
            .send()
            .await
            .map_err(|e| format!("create state machine {}: {e:?}", m.name))?;
    }
    let queue_urls = t.queue_urls.clone();
    Ok(Provisioned { template: t, queue_urls, dead_letter })
}

/// Store each secret the template takes as a `*SecretArn` parameter in moto's Secrets Manager, as a
/// store team does with `aws secretsmanager create-secret`, and return parameter -> the full ARN
/// Secrets Manager gave it (with its random suffix), to deploy the template with.
pub async fn create_secrets(moto_url: &str, values: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let http = reqwest::Client::new();
    let mut arns = BTreeMap::new();
    for (param, value) in values {
        let name = format!("orderflow/{}", kebab(param.trim_end_matches("SecretArn")));
        let resp = crate::secrets_extension::secretsmanager_request(
            &http,
            moto_url,
            "local",
            "CreateSecret",
            serde_json::json!({"Name": name, "SecretString": value}),
        )
        .send()
        .await
        .map_err(|e| format!("create secret {name}: {e}"))?;
        let v: serde_json::Value = resp.json().await.map_err(|e| format!("create secret {name}: {e}"))?;
        let arn = v["ARN"].as_str().ok_or_else(|| format!("create secret {name}: {v}"))?;
        arns.insert(param.clone(), arn.to_string());
    }
    Ok(arns)
}

/// `GatewayApiKey` -> `gateway-api-key`.
fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
