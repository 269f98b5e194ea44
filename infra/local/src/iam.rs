//! IAM as infra/template.yaml writes it, enforced at the edge.
//!
//! moto cannot do this for us (its authorization resolves resources only for IAM, SQS and STS, its
//! Step Functions engine signs with fixed credentials, and Lambda invokes and StartSyncExecution
//! never reach it). So every hosted function calls with credentials of its own (its access key id
//! names it), and the edge turns each request into the IAM actions and resource ARNs AWS would
//! authorize (one per item of a transaction), then evaluates the caller's policy from the template:
//! an explicit Deny wins, otherwise some Allow must match action and resource, with IAM's `*` / `?`
//! wildcards (actions case-insensitive). Calls from moto's engine are attributed to the state
//! machines whose definitions can make them and checked against their roles. A refusal is answered
//! as AWS answers it (AccessDeniedException naming the action and resource) and recorded; every
//! allowed (action, resource) is recorded for the least-privilege report (`orderflow-local
//! iam-report`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

pub const ACCOUNT: &str = crate::template::ACCOUNT;
pub const REGION: &str = crate::template::REGION;
/// The integration a parent uses to start a child and wait for it (`.sync` or `.sync:2`).
const SYNC_START: &str = "arn:aws:states:::states:startExecution.sync";

/// Marks a state machine reference whose target is chosen at run time (`machine_refs`).
pub const DYNAMIC_TARGET: &str = "dynamic:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// Who made a call, as the edge can tell from the request's credentials.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Principal {
    /// A hosted function, by its Lambda name (its execution role).
    Function(String),
    /// moto's Step Functions engine (fixed credentials "ak"): some state machine's role.
    Engine,
    /// The local stack itself, the tests and the demo (provisioning, seeding, observing): not a
    /// deployed role, not checked.
    Operator,
}

/// One (action, resource) a request needs authorized.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Need {
    pub action: String,
    pub resource: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Denial {
    pub role: String,
    pub action: String,
    pub resource: String,
}

/// What the report reads back: one line per first use of (role, action, resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exercised {
    pub role: String,
    pub action: String,
    pub resource: String,
}

pub struct Iam {
    /// Role name (function name, or state machine logical id) -> its statements.
    pub policies: RwLock<BTreeMap<String, Vec<Statement>>>,
    /// Access key id -> function name.
    pub keys: BTreeMap<String, String>,
    /// State machine logical id -> the resources its definition can call (function ARNs, queue ARNs)
    /// and the integrations it uses (`arn:aws:states:::sqs:sendMessage...`).
    pub machine_refs: BTreeMap<String, BTreeSet<String>>,
    exercised: Mutex<BTreeSet<(String, Need)>>,
    pub denials: Mutex<Vec<Denial>>,
    journal: Option<PathBuf>,
}

impl Iam {
    pub fn new(
        policies: BTreeMap<String, Vec<Statement>>,
        keys: BTreeMap<String, String>,
        machine_refs: BTreeMap<String, BTreeSet<String>>,
        journal: Option<PathBuf>,
    ) -> Iam {
        Iam { policies: RwLock::new(policies), keys, machine_refs, exercised: Mutex::default(), denials: Mutex::default(), journal }
    }

    /// The caller of a request, from the access key id in its SigV4 `Authorization` header.
    pub fn principal(&self, authorization: Option<&str>) -> Principal {
        let akid = authorization.and_then(|a| a.split("Credential=").nth(1)).and_then(|c| c.split('/').next()).unwrap_or("");
        match (self.keys.get(akid), akid) {
            (Some(f), _) => Principal::Function(f.clone()),
            (None, "ak") => Principal::Engine,
            _ => Principal::Operator,
        }
    }

    /// Check every need of one request; Err names the first refused one (as AWS does).
    pub fn authorize(&self, principal: &Principal, needs: &[Need]) -> Result<(), Denial> {
        for need in needs {
            let roles: Vec<String> = match principal {
                Principal::Operator => continue,
                Principal::Function(f) => vec![f.clone()],
                Principal::Engine => self.machines_that_can_call(&need.resource, &need.action),
            };
            if roles.is_empty() {
                return Err(self.deny("(no state machine calls this)", need));
            }
            for role in roles {
                if !self.allows(&role, &need.action, &need.resource) {
                    return Err(self.deny(&role, need));
                }
                self.note(&role, need);
            }
        }
        Ok(())
    }

    /// Whether `role`'s policy allows `action` on `resource` (explicit deny first).
    pub fn allows(&self, role: &str, action: &str, resource: &str) -> bool {
        let policies = self.policies.read().unwrap_or_else(|e| e.into_inner());
        let Some(statements) = policies.get(role) else { return false };
        let matches = |s: &Statement| {
            s.actions.iter().any(|a| wildcard(&a.to_lowercase(), &action.to_lowercase())) && s.resources.iter().any(|r| resource_matches(r, resource))
        };
        if statements.iter().any(|s| !s.allow && matches(s)) {
            return false;
        }
        statements.iter().any(|s| s.allow && matches(s))
    }

    /// Remove every statement of `role` that grants `action` on `resource` (tests of enforcement).
    pub fn revoke(&self, role: &str, action: &str, resource: &str) -> Vec<Statement> {
        let mut policies = self.policies.write().unwrap_or_else(|e| e.into_inner());
        let Some(statements) = policies.get_mut(role) else { return vec![] };
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for s in statements.iter_mut() {
            if s.allow && s.actions.iter().any(|a| a.eq_ignore_ascii_case(action)) && s.resources.iter().any(|r| r == resource) {
                removed.push(s.clone());
                s.resources.retain(|r| r != resource);
                // The statement's other actions on that resource stay granted.
                let others: Vec<String> = s.actions.iter().filter(|a| !a.eq_ignore_ascii_case(action)).cloned().collect();
                if !others.is_empty() {
                    kept.push(Statement { allow: true, actions: others, resources: vec![resource.to_string()] });
                }
            }
        }
        statements.extend(kept);
        statements.retain(|s| !s.resources.is_empty());
        removed
    }

    pub fn restore(&self, role: &str, statements: Vec<Statement>) {
        self.policies.write().unwrap_or_else(|e| e.into_inner()).entry(role.to_string()).or_default().extend(statements);
    }

    fn machines_that_can_call(&self, resource: &str, action: &str) -> Vec<String> {
        // A `.sync` task's calls about the child execution (DescribeExecution, StopExecution) name
        // the execution: the machines whose definitions name its state machine make them.
        // Only a machine that waits for a child (`startExecution.sync`) asks about its runs; one
        // that starts the same machine without waiting never does.
        let about_a_run = execution_machine(resource);
        let waits = |refs: &BTreeSet<String>| about_a_run.is_none() || refs.iter().any(|r| r.starts_with(SYNC_START));
        let resource = &about_a_run.clone().unwrap_or_else(|| resource.to_string());
        let direct: Vec<String> = self.machine_refs.iter().filter(|(_, refs)| refs.contains(resource) && waits(refs)).map(|(m, _)| m.clone()).collect();
        if !direct.is_empty() {
            return direct;
        }
        // An AWS SDK integration (`arn:aws:states:::aws-sdk:sfn:sendTaskSuccess`): the machines
        // whose definitions use it for this action (the SDK names Step Functions `sfn`, IAM `states`).
        if let Some((service, operation)) = action.split_once(':') {
            let sdk_service = if service == "states" { "sfn" } else { service };
            let integration = format!("arn:aws:states:::aws-sdk:{sdk_service}:{operation}").to_lowercase();
            let by_sdk: Vec<String> =
                self.machine_refs.iter().filter(|(_, refs)| refs.iter().any(|r| r.to_lowercase() == integration)).map(|(m, _)| m.clone()).collect();
            if !by_sdk.is_empty() {
                return by_sdk;
            }
        }
        // A resource chosen at run time (a warehouse queue from the state's input): every machine
        // whose definition picks that integration's target at run time must be allowed.
        let integration = format!("{DYNAMIC_TARGET}arn:aws:states:::{}", action.to_lowercase());
        self.machine_refs.iter().filter(|(_, refs)| refs.iter().any(|r| r.to_lowercase().starts_with(&integration))).map(|(m, _)| m.clone()).collect()
    }

    fn deny(&self, role: &str, need: &Need) -> Denial {
        let d = Denial { role: role.to_string(), action: need.action.clone(), resource: need.resource.clone() };
        tracing::warn!(role, action = %need.action, resource = %need.resource, "IAM: access denied");
        self.denials.lock().unwrap_or_else(|e| e.into_inner()).push(d.clone());
        d
    }

    fn note(&self, role: &str, need: &Need) {
        // The lock is held while the line is appended, and the line goes out in one write: two
        // calls at once used to interleave their bytes (`writeln!` may write in pieces).
        let mut exercised = self.exercised.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = exercised.insert((role.to_string(), need.clone()));
        if let (true, Some(path)) = (fresh, &self.journal) {
            let mut line =
                serde_json::to_string(&Exercised { role: role.into(), action: need.action.clone(), resource: need.resource.clone() }).unwrap_or_default();
            line.push('\n');
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

impl Denial {
    /// AWS's wording, e.g. "User: arn:aws:sts::123456789012:assumed-role/reserve_stock-role/reserve_stock
    /// is not authorized to perform: dynamodb:PutItem on resource: arn:... because no identity-based
    /// policy allows the dynamodb:PutItem action".
    pub fn message(&self) -> String {
        format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}-role/{role} is not authorized to perform: {a} on resource: {r} because no identity-based policy allows the {a} action",
            role = self.role,
            a = self.action,
            r = self.resource
        )
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` exactly one.
/// `arn:aws:states:R:A:execution:M:name` -> `arn:aws:states:R:A:stateMachine:M`.
fn execution_machine(arn: &str) -> Option<String> {
    let (head, rest) = arn.split_once(":execution:")?;
    let machine = rest.split(':').next()?;
    Some(format!("{head}:stateMachine:{machine}"))
}

pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A statement's Resource against a request's resource. Actions without resource-level permissions
/// are requested on "*", which only a Resource of "*" grants.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    if resource == "*" {
        return pattern == "*";
    }
    wildcard(pattern, resource)
}

pub fn table_arn(table: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
}

/// `http://host:port/123456789012/NotificationsQueue` -> `arn:aws:sqs:us-east-1:123456789012:NotificationsQueue`.
pub fn queue_arn(url: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", url.trim_end_matches('/').rsplit('/').next().unwrap_or(""))
}

pub fn function_arn(name: &str) -> String {
    crate::functions::function_arn(name.rsplit(':').next().unwrap_or(name))
}

/// What AWS authorizes for one API request: (service, operation) as the edge classified it, and the
/// request body (JSON protocols) or path.
pub fn needs(service: &str, operation: &str, body: &[u8], path: &str) -> Vec<Need> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let need = |action: String, resource: String| Need { action, resource };
    match service {
        "dynamodb" => dynamodb_needs(operation, &v),
        // A DLQ redrive: the task reads and deletes from the dead-letter queue and sends to the
        // destination, and AWS checks the caller for each of those (SQS developer guide, DLQ redrive).
        "sqs" if operation == "StartMessageMoveTask" => {
            let source = v["SourceArn"].as_str().unwrap_or("*").to_string();
            let mut out: Vec<Need> = ["StartMessageMoveTask", "ReceiveMessage", "DeleteMessage", "GetQueueAttributes"]
                .iter()
                .map(|a| need(format!("sqs:{a}"), source.clone()))
                .collect();
            out.push(need("sqs:SendMessage".into(), v["DestinationArn"].as_str().unwrap_or("*").to_string()));
            out
        }
        "sqs" => {
            let resource = match v["QueueUrl"].as_str() {
                Some(url) => queue_arn(url),
                None => v["QueueName"].as_str().map(|n| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{n}")).unwrap_or_else(|| "*".into()),
            };
            vec![need(format!("sqs:{operation}"), resource)]
        }
        "states" => {
            let resource = match operation {
                // The service authorization reference lists no resource type for the callback
                // actions: they are authorized on "*" (the task token is the capability).
                "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => "*".to_string(),
                _ => v["stateMachineArn"].as_str().or(v["executionArn"].as_str()).unwrap_or("*").to_string(),
            };
            vec![need(format!("states:{operation}"), resource)]
        }
        "sesv2" if operation == "SendEmail" => {
            let from = v["FromEmailAddress"].as_str().unwrap_or("");
            let mut out = vec![need("ses:SendEmail".into(), format!("arn:aws:ses:{REGION}:{ACCOUNT}:identity/{from}"))];
            if let Some(cs) = v["ConfigurationSetName"].as_str() {
                out.push(need("ses:SendEmail".into(), format!("arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{cs}")));
            }
            out
        }
        // The suppression-list actions have no resource type: IAM evaluates them on "*".
        "sesv2" => vec![need(format!("ses:{operation}"), "*".into())],
        "secretsmanager" => vec![need(format!("secretsmanager:{operation}"), v["SecretId"].as_str().unwrap_or("*").to_string())],
        "lambda" => vec![need("lambda:InvokeFunction".into(), function_arn(path))],
        _ => vec![need(format!("{service}:{operation}"), "*".into())],
    }
}

fn dynamodb_needs(operation: &str, v: &Value) -> Vec<Need> {
    let mut out = Vec::new();
    let mut push = |action: &str, table: &str, index: Option<&str>| {
        let resource = match index {
            Some(i) => format!("{}/index/{i}", table_arn(table)),
            None => table_arn(table),
        };
        out.push(Need { action: format!("dynamodb:{action}"), resource });
    };
    match operation {
        "TransactWriteItems" | "TransactGetItems" => {
            for item in v["TransactItems"].as_array().into_iter().flatten() {
                for (kind, op) in item.as_object().into_iter().flatten() {
                    let action = match kind.as_str() {
                        "ConditionCheck" => "ConditionCheckItem",
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        _ => "GetItem",
                    };
                    push(action, op["TableName"].as_str().unwrap_or(""), None);
                }
            }
        }
        "BatchGetItem" | "BatchWriteItem" => {
            for table in v["RequestItems"].as_object().into_iter().flat_map(|m| m.keys()) {
                push(operation, table, None);
            }
        }
        _ => push(operation, v["TableName"].as_str().unwrap_or(""), v["IndexName"].as_str()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iam(statements: Vec<Statement>) -> Iam {
        Iam::new(BTreeMap::from([("f".to_string(), statements)]), BTreeMap::new(), BTreeMap::new(), None)
    }

    fn allow(actions: &[&str], resources: &[&str]) -> Statement {
        Statement { allow: true, actions: actions.iter().map(|s| s.to_string()).collect(), resources: resources.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard("dynamodb:*", "dynamodb:putitem"));
        assert!(wildcard("arn:aws:dynamodb:*:*:table/Orders*", "arn:aws:dynamodb:us-east-1:1:table/OrdersTable"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(!wildcard("arn:aws:sqs:*:*:Notifications", "arn:aws:sqs:us-east-1:1:NotificationsDeadLetter"));
    }

    #[test]
    fn allow_needs_action_and_resource_and_deny_wins() {
        let t = table_arn("OrdersTable");
        let i = iam(vec![allow(&["dynamodb:GetItem", "dynamodb:UpdateItem"], &[&t])]);
        assert!(i.allows("f", "dynamodb:getitem", &t));
        assert!(!i.allows("f", "dynamodb:PutItem", &t));
        assert!(!i.allows("f", "dynamodb:GetItem", &table_arn("InventoryTable")));
        assert!(!i.allows("other", "dynamodb:GetItem", &t));
        let mut s = vec![allow(&["dynamodb:*"], &["*"])];
        s.push(Statement { allow: false, actions: vec!["dynamodb:DeleteItem".into()], resources: vec![t.clone()] });
        let i = iam(s);
        assert!(i.allows("f", "dynamodb:PutItem", &t));
        assert!(!i.allows("f", "dynamodb:DeleteItem", &t));
    }

    #[test]
    fn callbacks_need_a_star_resource() {
        let i = iam(vec![allow(&["states:SendTaskSuccess"], &["arn:aws:states:us-east-1:1:stateMachine:orderflow-lifecycle"])]);
        assert!(!i.allows("f", "states:SendTaskSuccess", "*"));
        let i = iam(vec![allow(&["states:SendTaskSuccess"], &["*"])]);
        assert!(i.allows("f", "states:SendTaskSuccess", "*"));
    }

    #[test]
    fn a_sync_tasks_calls_about_its_child_run_are_the_parents() {
        let parcel = "arn:aws:states:us-east-1:1:stateMachine:orderflow-parcel";
        let run = "arn:aws:states:us-east-1:1:execution:orderflow-parcel:ord_1-abc";
        let mut i = iam(vec![allow(&["states:DescribeExecution"], &["arn:aws:states:us-east-1:1:execution:orderflow-parcel:*"])]);
        // f waits for its parcel runs; h starts them without waiting (never asks about a run)
        let waits = BTreeSet::from([parcel.to_string(), format!("{SYNC_START}:2")]);
        let starts = BTreeSet::from([parcel.to_string(), "arn:aws:states:::states:startExecution".to_string()]);
        i.machine_refs = BTreeMap::from([("f".to_string(), waits), ("g".to_string(), BTreeSet::new()), ("h".to_string(), starts)]);
        assert_eq!(i.machines_that_can_call(run, "states:DescribeExecution"), vec!["f".to_string()]);
        assert_eq!(i.machines_that_can_call(parcel, "states:StartExecution"), vec!["f".to_string(), "h".to_string()]);
        assert!(i.authorize(&Principal::Engine, &[Need { action: "states:DescribeExecution".into(), resource: run.into() }]).is_ok());
        let other = "arn:aws:states:us-east-1:1:execution:orderflow-returns:r1";
        assert!(i.authorize(&Principal::Engine, &[Need { action: "states:DescribeExecution".into(), resource: other.into() }]).is_err());
    }

    #[test]
    fn an_sdk_integrations_call_is_the_machines_that_use_it() {
        let mut i = iam(vec![allow(&["states:SendTaskSuccess"], &["*"])]);
        let answers = BTreeSet::from(["arn:aws:states:::aws-sdk:sfn:sendTaskSuccess".to_string()]);
        i.machine_refs = BTreeMap::from([("f".to_string(), answers), ("g".to_string(), BTreeSet::new())]);
        assert_eq!(i.machines_that_can_call("*", "states:SendTaskSuccess"), vec!["f".to_string()]);
        assert!(i.machines_that_can_call("*", "states:SendTaskFailure").is_empty(), "only the action the definition names");
        assert!(i.authorize(&Principal::Engine, &[Need { action: "states:SendTaskSuccess".into(), resource: "*".into() }]).is_ok());
    }

    #[test]
    fn a_transaction_needs_each_item_authorized() {
        let body = serde_json::json!({"TransactItems": [
            {"ConditionCheck": {"TableName": "Inv"}}, {"Update": {"TableName": "Inv"}}, {"Put": {"TableName": "Orders"}}
        ]});
        let n = needs("dynamodb", "TransactWriteItems", body.to_string().as_bytes(), "/");
        let actions: Vec<&str> = n.iter().map(|x| x.action.as_str()).collect();
        assert_eq!(actions, ["dynamodb:ConditionCheckItem", "dynamodb:UpdateItem", "dynamodb:PutItem"]);
        assert_eq!(n[2].resource, table_arn("Orders"));
    }

    #[test]
    fn revoking_a_grant_refuses_it_and_restoring_gives_it_back() {
        let t = table_arn("OrdersTable");
        let i = iam(vec![allow(&["dynamodb:GetItem", "dynamodb:PutItem"], &[&t, &table_arn("Other")])]);
        let removed = i.revoke("f", "dynamodb:GetItem", &t);
        assert!(!i.allows("f", "dynamodb:GetItem", &t));
        assert!(i.allows("f", "dynamodb:PutItem", &t));
        assert!(i.allows("f", "dynamodb:GetItem", &table_arn("Other")));
        i.restore("f", removed);
        assert!(i.allows("f", "dynamodb:GetItem", &t));
    }
}
