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
        let sdk = orderflow_shared::aws::sdk_config(&orderflow_local::ports::operator_env(&h.stack.moto_url, Default::default())).await;
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
