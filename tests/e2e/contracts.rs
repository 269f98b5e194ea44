//! The local stack against infra/template.yaml and infra/openapi.yaml.

use orderflow_e2e::*;
use orderflow_local::template::Template;
use std::collections::BTreeSet;

fn repo() -> std::path::PathBuf {
    orderflow_local::Options::default().repo
}

#[test]
fn the_local_stack_provisions_exactly_the_templates_resources() {
    let h = harness();
    h.run(async {
        let t = Template::load(&repo().join("infra/template.yaml")).unwrap();
        let sdk = h.operator_sdk().await;
        let tables: BTreeSet<String> = aws_sdk_dynamodb::Client::new(&sdk).list_tables().send().await.unwrap().table_names().iter().cloned().collect();
        let want: BTreeSet<String> = t.tables().unwrap().into_iter().map(|x| x.name).collect();
        assert_eq!(tables, want);
        let queues: BTreeSet<String> =
            h.stack.moto_sqs.list_queues().send().await.unwrap().queue_urls().iter().map(|u| u.rsplit('/').next().unwrap().to_string()).collect();
        let want: BTreeSet<String> = t.queues().unwrap().into_iter().map(|q| q.name).collect();
        assert_eq!(queues, want);
        let machines: BTreeSet<String> =
            h.stack.moto_sfn.list_state_machines().send().await.unwrap().state_machines().iter().map(|m| m.name().to_string()).collect();
        let mut t2 = Template::load(&repo().join("infra/template.yaml")).unwrap();
        t2.queue_urls = h.stack.queue_urls.clone();
        let want: BTreeSet<String> = t2.state_machines().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(machines, want);
        // and the redrive policies are the template's
        for (queue, dlq) in &h.stack.dead_letter {
            let attrs = h
                .stack
                .moto_sqs
                .get_queue_attributes()
                .queue_url(&h.stack.queue_urls[queue])
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .unwrap();
            let rp = attrs.attributes().unwrap().get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).unwrap().clone();
            let dlq_arn = t.get_att(&format!("{dlq}.Arn")).unwrap();
            assert!(rp.contains(&format!("\"{dlq_arn}\"")), "{queue}: {rp} is not {dlq_arn}");
        }
    });
}

#[test]
fn every_openapi_example_gets_its_declared_answer() {
    let h = harness();
    h.run(async {
        let text = std::fs::read_to_string(repo().join("infra/openapi.yaml")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let codes: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let op = &doc["paths"]["/orders"]["post"];
        let declared: BTreeSet<u16> = op["responses"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().parse().unwrap()).collect();
        let examples = op["requestBody"]["content"]["application/json"]["examples"].as_mapping().unwrap();
        assert!(examples.len() >= 5);
        let http = reqwest::Client::new();
        for (name, ex) in examples {
            let body: serde_json::Value = serde_json::to_value(&ex["value"]).unwrap();
            let mut body = body;
            if body.get("email").is_some() {
                body["email"] = serde_json::json!(h.email("openapi"));
            }
            let r = post_order(&http, h.api(), Some(&h.key()), body.to_string().as_bytes()).await;
            let want = ex["x-expect"]["status"].as_u64().unwrap() as u16;
            assert_eq!(r.status, want, "example {name:?}: {}", r.body);
            assert!(declared.contains(&r.status), "example {name:?}: {} not declared", r.status);
            if let Some(code) = ex["x-expect"]["code"].as_str() {
                assert_eq!(r.body["error"]["code"], code, "example {name:?}");
            }
            if let Some(code) = r.body["error"]["code"].as_str() {
                assert!(codes.contains(code), "{code} is not in the OpenAPI error code list");
            }
        }
        // errors of the other routes are declared too
        let (st, body) = get_order(&http, h.api(), "ord_00000000000000000000000000000000", "x").await;
        assert_eq!(st, 404);
        assert!(codes.contains(body["error"]["code"].as_str().unwrap()));
    });
}

/// DynamoDB applies an UpdateItem's actions as one: a consistent read sees the item before it or
/// after it, never between two of its actions. moto applied them one by one to the stored item and
/// a read could catch `status` set without `status_reason` (a FAILED order without its reason in
/// CI); the local stack holds one lock per DynamoDB request.
#[test]
fn a_read_never_sees_half_of_an_update() {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let h = harness();
    h.run(async {
        let sdk = h.operator_sdk().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        // `#` in the key: an order's side item, which no order listing reads as an order
        let prefix = format!("e2e-scratch#{}", uuid::Uuid::new_v4());
        let timeline = || Av::L((0..30).map(|i| Av::M([("event".to_string(), Av::S(format!("step {i} {}", "x".repeat(40))))].into())).collect());
        let current = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (ddb, prefix, current, done) = (ddb.clone(), prefix.clone(), current.clone(), done.clone());
                tokio::spawn(async move {
                    let (mut reads, mut torn) = (0, 0);
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("{prefix}-{}", current.load(std::sync::atomic::Ordering::Relaxed));
                        let item = ddb.get_item().table_name("OrdersTable").key("order_id", Av::S(key)).consistent_read(true).send().await.unwrap().item;
                        reads += 1;
                        if let Some(item) = item {
                            let failed = item.get("status").and_then(|v| v.as_s().ok()).is_some_and(|s| s == "FAILED");
                            let entries = item.get("timeline").and_then(|v| v.as_l().ok()).map_or(0, |l| l.len());
                            if failed != item.contains_key("status_reason") || failed != (entries == 60) {
                                torn += 1;
                            }
                        }
                    }
                    (reads, torn)
                })
            })
            .collect();
        for i in 0..200 {
            current.store(i, std::sync::atomic::Ordering::Relaxed);
            let key = Av::S(format!("{prefix}-{i}"));
            ddb.put_item()
                .table_name("OrdersTable")
                .item("order_id", key.clone())
                .item("status", Av::S("PENDING".into()))
                .item("timeline", timeline())
                .send()
                .await
                .unwrap();
            ddb.update_item()
                .table_name("OrdersTable")
                .key("order_id", key.clone())
                .update_expression("SET #s = :n, timeline = list_append(timeline, :ev), status_reason = :r")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":n", Av::S("FAILED".into()))
                .expression_attribute_values(":ev", timeline())
                .expression_attribute_values(":r", Av::S("capture refused".into()))
                .send()
                .await
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut reads, mut torn) = (0, 0);
        for r in readers {
            let (n, t) = r.await.unwrap();
            (reads, torn) = (reads + n, torn + t);
        }
        for i in 0..200 {
            ddb.delete_item().table_name("OrdersTable").key("order_id", Av::S(format!("{prefix}-{i}"))).send().await.unwrap();
        }
        assert!(reads > 200, "the readers ran alongside the writes: {reads} reads");
        assert_eq!(torn, 0, "{torn} of {reads} reads saw half of an update");
    });
}
