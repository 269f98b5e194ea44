//! Offline checks of the state machine definitions in statemachines/:
//! - every ErrorEquals name is a Step Functions built-in or in the Rust error vocabulary;
//! - WF-2: every Task has TimeoutSeconds, and every waitForTaskToken waits less than a payment
//!   hold lives (7 days at the gateway; 4 d 18 h for Visa merchant-initiated: we use the shorter);
//! - every Next / Default points at a state that exists; every placeholder is substituted.

use orderflow_local::template::{substitute, Template};
use orderflow_shared::error::ERROR_TYPES;
use serde_json::Value;

const HOLD_LIFETIME_SECONDS: u64 = 4 * 86_400 + 18 * 3_600;

fn machines() -> Vec<(String, Value)> {
    let repo = orderflow_local::Options::default().repo;
    let mut template = Template::load(&repo.join("infra/template.yaml")).unwrap();
    for q in template.queues().unwrap() {
        template.queue_urls.insert(q.logical_id.clone(), format!("https://sqs.us-east-1.amazonaws.com/123456789012/{}", q.name));
    }
    let mut out = vec![];
    for m in template.state_machines().unwrap() {
        let raw = std::fs::read_to_string(&m.definition).unwrap();
        let def = substitute(&raw, &m.substitutions).unwrap_or_else(|e| panic!("{}: {e}", m.definition.display()));
        out.push((m.name.clone(), serde_json::from_str(&def).unwrap_or_else(|e| panic!("{}: {e}", m.definition.display()))));
    }
    assert!(out.len() >= 2, "expected the checkout and lifecycle machines");
    out
}

/// Every state of a definition, Map iterators included: (name, state, inside a Map iterator).
fn all_states(def: &Value) -> Vec<(String, Value, bool)> {
    fn walk(states: &Value, in_map: bool, out: &mut Vec<(String, Value, bool)>) {
        for (name, st) in states.as_object().expect("States") {
            out.push((name.clone(), st.clone(), in_map));
            for key in ["Iterator", "ItemProcessor"] {
                if st[key].is_object() {
                    walk(&st[key]["States"], true, out);
                }
            }
        }
    }
    let mut out = vec![];
    walk(&def["States"], false, &mut out);
    out
}

/// Each scope's states (the top level, then each Map iterator) with its StartAt.
fn scopes(def: &Value) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut out = vec![(def["StartAt"].as_str().unwrap().to_string(), def["States"].as_object().unwrap().clone())];
    for (_, st, _) in all_states(def) {
        for key in ["Iterator", "ItemProcessor"] {
            if st[key].is_object() {
                out.push((st[key]["StartAt"].as_str().unwrap().to_string(), st[key]["States"].as_object().unwrap().clone()));
            }
        }
    }
    out
}

#[test]
fn error_names_match_the_rust_vocabulary() {
    for (file, def) in machines() {
        for (name, state, _) in all_states(&def) {
            for key in ["Retry", "Catch"] {
                for rule in state[key].as_array().cloned().unwrap_or_default() {
                    for e in rule["ErrorEquals"].as_array().unwrap() {
                        let e = e.as_str().unwrap();
                        // Lambda.* and StepFunctions.* are those services' own errors (throttling, service
                        // faults) a task retries.
                        let service = e.starts_with("Lambda.") || e.starts_with("StepFunctions.");
                        assert!(e.starts_with("States.") || service || ERROR_TYPES.contains(&e), "{file}:{name} matches unknown error {e}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_lambda_error_a_step_raises_is_handled() {
    // Each Lambda Task must catch States.ALL (or be a compensation that fails loudly into a Fail
    // state): no error type can escape unhandled and leave an order half-done.
    for (file, def) in machines() {
        for (name, state, in_map) in all_states(&def) {
            // Inside a Map iterator an error fails the Map, whose own Catch handles it (checked
            // for the Map state itself below).
            if !(state["Type"] == "Task" || state["Type"] == "Map") || in_map {
                continue;
            }
            let catches: Vec<String> = state["Catch"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .flat_map(|c| c["ErrorEquals"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            assert!(catches.iter().any(|c| c == "States.ALL"), "{file}:{name} does not catch States.ALL");
        }
    }
}

#[test]
fn wf_2_every_task_times_out_and_waits_are_shorter_than_the_hold() {
    for (file, def) in machines() {
        for (name, state, _) in all_states(&def) {
            if state["Type"] != "Task" {
                continue;
            }
            if state["TimeoutSecondsPath"].is_string() {
                // Computed per order by fulfillment::wait_seconds: the warehouse timeout, capped by
                // the hold guard. The parameter's ceiling is below the shortest hold.
                let t = Template::load(&orderflow_local::Options::default().repo.join("infra/template.yaml")).unwrap();
                let max: u64 = t.doc["Parameters"]["WarehouseTimeoutSeconds"]["MaxValue"].as_u64().unwrap();
                assert!(max < HOLD_LIFETIME_SECONDS, "{file}:{name}: WarehouseTimeoutSeconds may reach {max}s");
                let now = 1_000_000;
                assert!(orderflow_shared::domain::fulfillment::wait_seconds(now, Some(now + 7 * 86_400), 86_400, max as i64) < HOLD_LIFETIME_SECONDS as i64);
                continue;
            }
            let timeout = state["TimeoutSeconds"].as_u64().unwrap_or_else(|| panic!("{file}:{name} has no TimeoutSeconds"));
            if state["Resource"].as_str().unwrap_or("").ends_with(".sync:2") {
                // Waits for an Express execution, which AWS ends at 5 minutes: the child's own limit
                // comes first, the task's timeout only catches a child that never reports.
                assert!((300..=360).contains(&timeout), "{file}:{name}: a nested Express run ends within 300 s; wait a little longer");
            } else if state["Resource"].as_str().unwrap_or("").ends_with(".waitForTaskToken") {
                let wait = state["HeartbeatSeconds"].as_u64().unwrap_or(timeout);
                assert!(wait < HOLD_LIFETIME_SECONDS, "{file}:{name} waits {wait}s, longer than a hold lives");
            } else {
                assert!(timeout <= 60, "{file}:{name}: a Lambda step should time out within a minute");
            }
        }
    }
}

#[test]
fn transitions_point_at_existing_states() {
    for (file, def) in machines() {
        for (start, names) in scopes(&def) {
            assert!(names.contains_key(&start));
            for (name, state) in &names {
                let mut targets: Vec<&str> = vec![];
                targets.extend(state["Next"].as_str());
                targets.extend(state["Default"].as_str());
                for c in state["Choices"].as_array().into_iter().flatten().chain(state["Catch"].as_array().into_iter().flatten()) {
                    targets.extend(c["Next"].as_str());
                }
                for t in targets {
                    assert!(names.contains_key(t), "{file}:{name} -> {t} does not exist");
                }
                let terminal = state["End"] == true || matches!(state["Type"].as_str(), Some("Succeed") | Some("Fail") | Some("Choice"));
                assert!(terminal || state["Next"].is_string(), "{file}:{name} has no way out");
            }
        }
    }
}

#[test]
fn every_notification_a_state_machine_sends_is_a_notification_the_consumer_reads() {
    let mut found = 0;
    for (file, def) in machines() {
        for (name, st, _) in all_states(&def) {
            let p = &st["Parameters"];
            if !st["Resource"].as_str().is_some_and(|r| r.starts_with("arn:aws:states:::sqs:sendMessage"))
                || !p["QueueUrl"].as_str().is_some_and(|u| u.ends_with("/NotificationsQueue"))
            {
                continue;
            }
            // JSONPath fields (`orderId.$`) carry a value at run time: give each a sample.
            let body: serde_json::Map<String, Value> = p["MessageBody"]
                .as_object()
                .unwrap_or_else(|| panic!("{file}:{name}: MessageBody must be an object"))
                .iter()
                .map(|(k, v)| match k.strip_suffix(".$") {
                    Some(field) => (field.to_string(), Value::String(format!("sample-{field}"))),
                    None => (k.clone(), v.clone()),
                })
                .collect();
            let n: orderflow_shared::notification::Notification =
                serde_json::from_value(Value::Object(body.clone())).unwrap_or_else(|e| panic!("{file}:{name}: {body:?} is not a Notification: {e}"));
            assert_eq!(serde_json::to_value(&n).unwrap(), Value::Object(body), "{file}:{name}: fields the consumer would drop");
            found += 1;
        }
    }
    assert!(found >= 1, "the lifecycle tells the customer a parcel shipped through the queue");
}
