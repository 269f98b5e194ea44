//! infra/template.yaml against the code: one source of truth. Adding a function, a placeholder or a
//! configuration variable on one side only fails here (and the e2e suite checks that the local stack
//! provisioned exactly the template's tables, queues and state machines).

use orderflow_local::template::{placeholders, Template};
use std::collections::BTreeSet;

fn template() -> Template {
    let repo = orderflow_local::Options::default().repo;
    let mut t = Template::load(&repo.join("infra/template.yaml")).unwrap();
    for q in t.queues().unwrap() {
        t.queue_urls.insert(q.name.clone(), format!("https://sqs.example/{}", q.name));
    }
    t
}

#[test]
fn every_function_crate_is_in_the_template_and_vice_versa() {
    let repo = orderflow_local::Options::default().repo;
    let crates: BTreeSet<String> = std::fs::read_dir(repo.join("functions")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    let declared: BTreeSet<String> = template().functions().into_iter().map(|f| f.binary).collect();
    assert_eq!(crates, declared, "functions/ and infra/template.yaml disagree");
    for f in template().functions() {
        assert!(f.logical_id.ends_with("Function"), "{}", f.logical_id);
    }
}

#[test]
fn every_asl_placeholder_is_substituted_and_every_substitution_used() {
    for m in template().state_machines().unwrap() {
        let raw = std::fs::read_to_string(&m.definition).unwrap();
        let used = placeholders(&raw);
        let given: BTreeSet<String> = m.substitutions.keys().cloned().collect();
        assert_eq!(used, given, "{}: placeholders vs DefinitionSubstitutions", m.name);
    }
}

#[test]
fn every_configuration_variable_is_set_by_the_template() {
    let env = template().function_environment().unwrap();
    for var in orderflow_shared::config::ENV_VARS {
        assert!(env.contains_key(*var), "{var} is read by the functions but not set in Globals.Function.Environment");
    }
    for (k, v) in &env {
        assert!(!k.contains("API_KEY") || k.ends_with("_SECRET_ARN"), "{k} looks like a plain secret");
        assert!(!v.starts_with("sk_"), "{k} holds a gateway key in plain text");
    }
}

#[test]
fn queues_have_dead_letter_queues_and_a_long_enough_visibility() {
    let t = template();
    let queues = t.queues().unwrap();
    let dlqs: BTreeSet<String> = queues.iter().filter_map(|q| q.redrive.as_ref().map(|r| r.0.clone())).collect();
    for q in &queues {
        if dlqs.contains(&q.name) {
            continue;
        }
        assert!(q.redrive.is_some(), "{} has no dead-letter queue", q.name);
        let dlq = queues.iter().find(|d| d.name == q.redrive.as_ref().unwrap().0).unwrap();
        assert!(dlq.retention.unwrap_or(345_600) > q.retention.unwrap_or(345_600), "{}: DLQ retention must be longer", q.name);
    }
    // visibility >= 6 x the consumer's timeout (AWS's guidance for SQS event sources)
    for f in t.functions() {
        if let Some(q) = f.sqs_source {
            let timeout = t.doc["Resources"][&f.logical_id]["Properties"]["Timeout"].as_i64().unwrap();
            let vis = queues.iter().find(|x| x.name == q).unwrap().visibility_timeout.unwrap();
            assert!(vis >= 6 * timeout, "{q}: visibility {vis}s < 6 x {timeout}s");
        }
    }
}

#[test]
fn iam_policies_name_no_wildcards() {
    let text = std::fs::read_to_string(orderflow_local::Options::default().repo.join("infra/template.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    fn walk(v: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, x) in m {
                    let key = k.as_str().unwrap_or("");
                    if (key == "Action" || key == "Resource") && format!("{x:?}").contains('*') {
                        out.push(format!("{path}.{key}"));
                    }
                    walk(x, &format!("{path}.{key}"), out);
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter().for_each(|x| walk(x, path, out)),
            serde_yaml::Value::Tagged(t) => walk(&t.value, path, out),
            _ => {}
        }
    }
    let mut found = vec![];
    walk(&doc["Resources"], "Resources", &mut found);
    // The one allowed: API Gateway's permission to invoke the API function from any route of this API.
    found.retain(|p| !p.starts_with("Resources.OrdersApiInvokePermission"));
    assert!(found.is_empty(), "wildcards in IAM: {found:?}");
}
