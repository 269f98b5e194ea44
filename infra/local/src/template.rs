//! infra/template.yaml, read by the local stack: the one source of truth for tables (keys, TTL),
//! queues (visibility, retention, redrive), state machines (definition files, substitutions), the
//! SES identity, SQS event sources and the functions' environment. Intrinsics (!Ref, !GetAtt, !Sub)
//! are resolved to the local resources. `Fn::ForEach` loops (AWS::LanguageExtensions) are expanded
//! first, over the parameters' values, as CloudFormation expands them before it creates anything.

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STACK_NAME: &str = "orderflow";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// (attribute, HASH|RANGE)
    pub keys: Vec<(String, String)>,
    pub attributes: Vec<(String, String)>,
    pub ttl_attribute: Option<String>,
    /// Global secondary indexes: (name, key schema); projection ALL.
    pub indexes: Vec<(String, Vec<(String, String)>)>,
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub logical_id: String,
    /// `QueueName` when the template names the queue, else the logical id.
    pub name: String,
    pub visibility_timeout: Option<i64>,
    pub retention: Option<i64>,
    /// (dead-letter queue logical id, maxReceiveCount)
    pub redrive: Option<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    pub logical_id: String,
    pub name: String,
    pub kind: String,
    pub definition: PathBuf,
    pub substitutions: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    pub binary: String,
    /// Logical id of the SQS queue feeding it, if any.
    pub sqs_source: Option<String>,
    /// Seconds between runs of its EventBridge `Schedule: rate(N minutes|hours)` event, if any.
    pub schedule_seconds: Option<u64>,
}

/// `rate(5 minutes)` -> 300 (EventBridge's rate expressions; cron expressions are not used here).
pub fn rate_seconds(expr: &str) -> Option<u64> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let per = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(n * per)
}

pub struct Template {
    pub dir: PathBuf,
    /// The template with its `Fn::ForEach` loops expanded (see [`Template::expand`]).
    pub doc: Value,
    raw: Value,
    /// Parameter overrides (the local stack's gateway URL, review timeout, ...).
    pub params: BTreeMap<String, String>,
    /// Queue logical id -> local URL, known once queues exist.
    pub queue_urls: BTreeMap<String, String>,
}

fn tag_of(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut t = Template {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            doc: doc.clone(),
            raw: doc,
            params: BTreeMap::new(),
            queue_urls: BTreeMap::new(),
        };
        t.expand()?;
        Ok(t)
    }

    /// Set a parameter and expand the loops again (a loop's collection may be that parameter).
    pub fn set_param(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.params.insert(name.to_string(), value.to_string());
        self.expand()
    }

    /// Expand every `Fn::ForEach::<Loop>: [Identifier, Collection, {OutputKey: OutputValue}]` of the
    /// Resources, Conditions and Outputs sections: one entry per item, `${Identifier}` in keys and
    /// `!Sub` strings replaced by the item, `&{Identifier}` by the item without its non-alphanumeric
    /// characters (for logical ids), `!Ref Identifier` by the item.
    pub fn expand(&mut self) -> Result<(), String> {
        let mut doc = self.raw.clone();
        for section in ["Resources", "Conditions", "Outputs"] {
            let Some(m) = self.raw[section].as_mapping() else { continue };
            let mut out = serde_yaml::Mapping::new();
            for (k, v) in m {
                let key = s(k);
                if !key.starts_with("Fn::ForEach::") {
                    out.insert(k.clone(), v.clone());
                    continue;
                }
                let parts = v.as_sequence().filter(|p| p.len() == 3).ok_or_else(|| format!("{key}: expected [Identifier, Collection, Fragment]"))?;
                let ident = s(&parts[0]);
                let items: Vec<String> = match &parts[1] {
                    Value::Sequence(items) => items.iter().map(s).collect(),
                    other => self.resolve(other)?.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
                };
                let fragment = parts[2].as_mapping().ok_or_else(|| format!("{key}: the fragment must be a mapping"))?;
                for item in &items {
                    for (fk, fv) in fragment {
                        out.insert(Value::String(replace_identifier(&s(fk), &ident, item)), substitute_identifier(fv, &ident, item));
                    }
                }
            }
            doc[section] = Value::Mapping(out);
        }
        self.doc = doc;
        Ok(())
    }

    pub fn resources(&self) -> Vec<(String, &Value)> {
        self.doc["Resources"].as_mapping().map(|m| m.iter().map(|(k, v)| (s(k), v)).collect()).unwrap_or_default()
    }

    fn of_type(&self, ty: &str) -> Vec<(String, &Value)> {
        self.resources().into_iter().filter(|(_, r)| r["Type"].as_str() == Some(ty)).collect()
    }

    fn resource_type(&self, id: &str) -> Option<String> {
        self.doc["Resources"][id]["Type"].as_str().map(String::from)
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params.get(name).cloned().or_else(|| {
            let p = &self.doc["Parameters"][name];
            (!p.is_null()).then(|| s(&p["Default"]))
        })
    }

    pub fn function_binary(&self, id: &str) -> Option<String> {
        self.doc["Resources"][id]["Metadata"]["BuildProperties"]["Binary"].as_str().map(String::from)
    }

    /// What `!Ref X` means locally.
    pub fn reference(&self, id: &str) -> Result<String, String> {
        match id {
            "AWS::StackName" => return Ok(STACK_NAME.into()),
            "AWS::Region" => return Ok(REGION.into()),
            "AWS::AccountId" => return Ok(ACCOUNT.into()),
            "AWS::Partition" => return Ok("aws".into()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            _ => {}
        }
        if let Some(p) = self.param(id) {
            return Ok(p);
        }
        match self.resource_type(id).as_deref() {
            Some("AWS::DynamoDB::Table") | Some("AWS::SES::ConfigurationSet") => Ok(id.to_string()),
            Some("AWS::SQS::Queue") => self.queue_urls.get(id).cloned().ok_or_else(|| format!("queue {id} not created yet")),
            Some("AWS::Serverless::Function") => self.function_binary(id).ok_or_else(|| format!("function {id} has no Binary")),
            Some("AWS::Serverless::StateMachine") => {
                Ok(format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{}", self.resolve(&self.doc["Resources"][id]["Properties"]["Name"])?))
            }
            Some(other) => Ok(format!("{id} ({other})")),
            None => Err(format!("!Ref {id}: no such parameter or resource")),
        }
    }

    /// A queue's name: its `QueueName` when the template gives one, else (as locally named) its logical id.
    fn queue_name(&self, id: &str) -> Result<String, String> {
        match &self.doc["Resources"][id]["Properties"]["QueueName"] {
            Value::Null => Ok(id.to_string()),
            name => self.resolve(name),
        }
    }

    /// What `!GetAtt X.Attr` means locally.
    pub fn get_att(&self, spec: &str) -> Result<String, String> {
        let (id, attr) = spec.split_once('.').ok_or_else(|| format!("!GetAtt {spec}: expected Resource.Attribute"))?;
        match (self.resource_type(id).as_deref(), attr) {
            (Some("AWS::Serverless::Function"), "Arn") => Ok(crate::functions::function_arn(&self.reference(id)?)),
            (Some("AWS::SQS::Queue"), "Arn") => Ok(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", self.queue_name(id)?)),
            (Some("AWS::SQS::Queue"), "QueueName") => self.queue_name(id),
            (Some("AWS::DynamoDB::Table"), "Arn") => Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{id}")),
            (Some(t), a) => Ok(format!("arn:local:{t}:{id}:{a}")),
            (None, _) => Err(format!("!GetAtt {spec}: no such resource")),
        }
    }

    pub fn sub(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| format!("!Sub {text}: unclosed ${{"))? + start;
            let name = &rest[start + 2..end];
            out.push_str(&if name.contains('.') { self.get_att(name)? } else { self.reference(name)? });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub fn resolve(&self, v: &Value) -> Result<String, String> {
        if let Some((tag, inner)) = tag_of(v) {
            return match tag.as_str() {
                "!Ref" => self.reference(&s(inner)),
                "!GetAtt" => self.get_att(&self.get_att_spec(inner)?),
                "!Sub" => match inner {
                    Value::Sequence(parts) => self.sub_with(&s(&parts[0]), parts.get(1)),
                    _ => self.sub(&s(inner)),
                },
                "!Join" => {
                    let parts = inner.as_sequence().filter(|p| p.len() == 2).ok_or("!Join: expected [separator, list]")?;
                    Ok(self.list(&parts[1])?.join(&s(&parts[0])))
                }
                "!Select" => {
                    let parts = inner.as_sequence().filter(|p| p.len() == 2).ok_or("!Select: expected [index, list]")?;
                    let i: usize = self.resolve(&parts[0])?.parse().map_err(|_| "!Select: index".to_string())?;
                    self.list(&parts[1])?.get(i).cloned().ok_or_else(|| format!("!Select: no item {i}"))
                }
                other => Err(format!("unsupported intrinsic {other}")),
            };
        }
        if let Some(m) = v.as_mapping() {
            if let Some(x) = m.get("Ref") {
                return self.reference(&s(x));
            }
            if let Some(x) = m.get("Fn::Sub") {
                return self.sub(&s(x));
            }
            if let Some(x) = m.get("Fn::GetAtt") {
                return self.get_att(&s(x));
            }
        }
        Ok(s(v))
    }

    /// `!GetAtt` as `X.Attr` or `[X or !Sub X, Attr]`.
    fn get_att_spec(&self, v: &Value) -> Result<String, String> {
        match v {
            Value::Sequence(parts) if parts.len() == 2 => Ok(format!("{}.{}", self.resolve(&parts[0])?, s(&parts[1]))),
            other => Ok(s(other)),
        }
    }

    /// A list: a sequence, `!Split [sep, text]`, or a CommaDelimitedList parameter.
    fn list(&self, v: &Value) -> Result<Vec<String>, String> {
        if let Value::Sequence(items) = v {
            return items.iter().map(|x| self.resolve(x)).collect();
        }
        if let Some((tag, inner)) = tag_of(v) {
            if tag == "!Split" {
                let parts = inner.as_sequence().filter(|p| p.len() == 2).ok_or("!Split: expected [separator, text]")?;
                return Ok(self.resolve(&parts[1])?.split(s(&parts[0]).as_str()).map(String::from).collect());
            }
        }
        Ok(self.resolve(v)?.split(',').map(String::from).collect())
    }

    /// `!Sub [text, {Var: value}]`: the variables first, then as `!Sub text`.
    fn sub_with(&self, text: &str, vars: Option<&Value>) -> Result<String, String> {
        let mut text = text.to_string();
        for (k, v) in vars.and_then(|v| v.as_mapping()).into_iter().flatten() {
            text = text.replace(&format!("${{{}}}", s(k)), &self.resolve(v)?);
        }
        self.sub(&text)
    }

    pub fn tables(&self) -> Result<Vec<Table>, String> {
        self.of_type("AWS::DynamoDB::Table")
            .into_iter()
            .map(|(id, r)| {
                let p = &r["Properties"];
                let pairs = |key: &str, a: &str, b: &str| -> Vec<(String, String)> {
                    p[key].as_sequence().map(|seq| seq.iter().map(|e| (s(&e[a]), s(&e[b]))).collect()).unwrap_or_default()
                };
                let ttl = &p["TimeToLiveSpecification"];
                Ok(Table {
                    name: id,
                    keys: pairs("KeySchema", "AttributeName", "KeyType"),
                    attributes: pairs("AttributeDefinitions", "AttributeName", "AttributeType"),
                    ttl_attribute: (ttl["Enabled"].as_bool() == Some(true)).then(|| s(&ttl["AttributeName"])),
                    indexes: p["GlobalSecondaryIndexes"]
                        .as_sequence()
                        .map(|seq| {
                            seq.iter()
                                .map(|g| {
                                    let keys = g["KeySchema"].as_sequence().map(|k| k.iter().map(|e| (s(&e["AttributeName"]), s(&e["KeyType"]))).collect());
                                    (s(&g["IndexName"]), keys.unwrap_or_default())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Queues with their dead-letter queues first, so redrive targets exist when referenced.
    pub fn queues(&self) -> Result<Vec<Queue>, String> {
        let mut qs: Vec<Queue> = Vec::new();
        for (id, r) in self.of_type("AWS::SQS::Queue") {
            let p = &r["Properties"];
            let redrive = match &p["RedrivePolicy"] {
                Value::Null => None,
                rp => {
                    let target = match tag_of(&rp["deadLetterTargetArn"]) {
                        Some((t, inner)) if t == "!GetAtt" => self.get_att_spec(inner)?.trim_end_matches(".Arn").to_string(),
                        _ => return Err(format!("{id}: deadLetterTargetArn must be !GetAtt <Queue>.Arn")),
                    };
                    Some((target, rp["maxReceiveCount"].as_i64().unwrap_or(5)))
                }
            };
            qs.push(Queue {
                name: self.queue_name(&id)?,
                logical_id: id,
                visibility_timeout: p["VisibilityTimeout"].as_i64(),
                retention: p["MessageRetentionPeriod"].as_i64(),
                redrive,
            });
        }
        qs.sort_by_key(|q| q.redrive.is_some());
        Ok(qs)
    }

    pub fn state_machines(&self) -> Result<Vec<StateMachine>, String> {
        self.of_type("AWS::Serverless::StateMachine")
            .into_iter()
            .map(|(id, r)| {
                let p = &r["Properties"];
                let mut substitutions = BTreeMap::new();
                if let Some(m) = p["DefinitionSubstitutions"].as_mapping() {
                    for (k, v) in m {
                        substitutions.insert(s(k), self.resolve(v)?);
                    }
                }
                Ok(StateMachine {
                    name: self.resolve(&p["Name"])?,
                    kind: s(&p["Type"]),
                    definition: self.dir.join(s(&p["DefinitionUri"])),
                    substitutions,
                    logical_id: id,
                })
            })
            .collect()
    }

    pub fn functions(&self) -> Vec<Function> {
        self.of_type("AWS::Serverless::Function")
            .into_iter()
            .map(|(id, r)| {
                let sqs_source = r["Properties"]["Events"].as_mapping().and_then(|events| {
                    events
                        .values()
                        .find(|e| e["Type"].as_str() == Some("SQS"))
                        .and_then(|e| tag_of(&e["Properties"]["Queue"]).map(|(_, q)| s(q).trim_end_matches(".Arn").to_string()))
                });
                let schedule_seconds = r["Properties"]["Events"].as_mapping().and_then(|events| {
                    events.values().find(|e| e["Type"].as_str() == Some("Schedule")).and_then(|e| e["Properties"]["Schedule"].as_str()).and_then(rate_seconds)
                });
                Function { binary: self.function_binary(&id).unwrap_or_default(), logical_id: id, sqs_source, schedule_seconds }
            })
            .collect()
    }

    /// SES configuration sets: (name, the reasons its suppression options suppress).
    pub fn configuration_sets(&self) -> Vec<(String, Vec<String>)> {
        self.of_type("AWS::SES::ConfigurationSet")
            .into_iter()
            .map(|(id, r)| {
                let reasons = r["Properties"]["SuppressionOptions"]["SuppressedReasons"]
                    .as_sequence()
                    .map(|seq| seq.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                (id, reasons)
            })
            .collect()
    }

    pub fn sender_identity(&self) -> Result<Option<String>, String> {
        match self.of_type("AWS::SES::EmailIdentity").first() {
            Some((_, r)) => Ok(Some(self.resolve(&r["Properties"]["EmailIdentity"])?)),
            None => Ok(None),
        }
    }

    /// The environment the template gives one function (Globals, then the function's own
    /// Environment.Variables), resolved as CloudFormation would.
    pub fn function_environment(&self, logical_id: &str) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        let globals = &self.doc["Globals"]["Function"]["Environment"]["Variables"];
        let own = &self.doc["Resources"][logical_id]["Properties"]["Environment"]["Variables"];
        for vars in [globals, own] {
            if let Some(m) = vars.as_mapping() {
                for (k, v) in m {
                    env.insert(s(k), self.resolve(v).map_err(|e| format!("{logical_id}: {}: {e}", s(k)))?);
                }
            }
        }
        Ok(env)
    }

    /// A function's or state machine's inline policy statements (`Policies: - Statement: [...]`),
    /// resolved. SAM policy templates and managed policy names are not used by this template and
    /// are refused rather than guessed.
    pub fn policy(&self, logical_id: &str) -> Result<Vec<crate::iam::Statement>, String> {
        let mut out = Vec::new();
        let list = |v: &Value| -> Result<Vec<String>, String> {
            match v {
                Value::Sequence(items) => items.iter().map(|x| self.resolve(x)).collect(),
                other => Ok(vec![self.resolve(other)?]),
            }
        };
        for p in self.doc["Resources"][logical_id]["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            let statements = p["Statement"].as_sequence().ok_or_else(|| format!("{logical_id}: only inline Statement policies are supported locally"))?;
            for st in statements {
                out.push(crate::iam::Statement {
                    allow: st["Effect"].as_str() != Some("Deny"),
                    actions: list(&st["Action"])?,
                    resources: list(&st["Resource"])?,
                });
            }
        }
        Ok(out)
    }
}

/// `${Identifier}` -> the item, `&{Identifier}` -> the item's alphanumeric characters.
fn replace_identifier(text: &str, ident: &str, item: &str) -> String {
    let alnum: String = item.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    text.replace(&format!("${{{ident}}}"), item).replace(&format!("&{{{ident}}}"), &alnum)
}

/// A loop's fragment for one item: identifiers in every string, `!Ref Identifier` -> the item.
fn substitute_identifier(v: &Value, ident: &str, item: &str) -> Value {
    match v {
        Value::String(x) => Value::String(replace_identifier(x, ident, item)),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|x| substitute_identifier(x, ident, item)).collect()),
        Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, x)| (substitute_identifier(k, ident, item), substitute_identifier(x, ident, item))).collect()),
        Value::Tagged(t) if t.tag == "!Ref" && s(&t.value) == ident => Value::String(item.to_string()),
        Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue { tag: t.tag.clone(), value: substitute_identifier(&t.value, ident, item) })),
        other => other.clone(),
    }
}

/// Replace every ${Name} of an ASL definition; an unknown placeholder is an error.
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

/// The placeholders an ASL definition uses.
pub fn placeholders(definition: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        match rest[start..].find('}') {
            Some(end) => {
                found.insert(rest[start + 2..start + end].to_string());
                rest = &rest[start + end + 1..];
            }
            None => break,
        }
    }
    found
}
