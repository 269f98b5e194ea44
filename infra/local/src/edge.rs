//! The edge: one endpoint for every AWS call (like LocalStack's edge port). It serves the Lambda
//! Invoke API for the in-process functions, implements StartSyncExecution (moto lacks it), forwards
//! everything else to moto, and records each call with its service, operation and order. Before any
//! of that it authorizes the call against the caller's IAM policy from the template (`iam.rs`).

use crate::functions::Hosted;
use crate::iam::{Denial, Iam};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub order_id: Option<String>,
    /// For Lambda invocations: the function; for DynamoDB: the tables the call touches.
    pub target: Option<String>,
    /// For Lambda invocations: the handler's wall time here; for the functions' own AWS calls: how
    /// long the emulator took to answer (microseconds). The bench bills a function's own time as
    /// the difference, plus AWS's latency for each call.
    #[serde(default)]
    pub micros: u64,
    /// For Lambda invocations: the CPU time of the handler's own polls (cpu_time.rs), microseconds.
    #[serde(default)]
    pub cpu_micros: u64,
    /// For AWS calls a function made: that function (its credentials).
    #[serde(default)]
    pub caller: Option<String>,
    /// For a function's DynamoDB writes while the bench measures: the write units DynamoDB bills
    /// (item_size.rs); 0 when not measured.
    #[serde(default)]
    pub write_units: u32,
    /// For DynamoDB batch and transaction calls: how many items.
    #[serde(default)]
    pub items: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SentEmail {
    pub order_id: Option<String>,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

pub struct Edge {
    pub functions: BTreeMap<&'static str, Arc<Hosted>>,
    pub iam: Arc<Iam>,
    /// The moto processes (DynamoDB's own, and the rest): each call goes straight to its own.
    pub moto: crate::moto_router::Backends,
    pub http: reqwest::Client,
    pub moto_sfn: aws_sdk_sfn::Client,
    /// For StartMessageMoveTask, which moto lacks (`move_messages`).
    pub moto_sqs: aws_sdk_sqs::Client,
    pub calls: Mutex<Vec<Call>>,
    /// The bench turns this on: each function's DynamoDB write is sized before and after (item_size.rs).
    pub measure_writes: std::sync::atomic::AtomicBool,
    /// Table -> its key attributes (for sizing PutItem's item), read once from moto.
    pub key_schemas: Mutex<HashMap<String, Vec<String>>>,
    pub emails: Mutex<Vec<SentEmail>>,
    /// The SES account suppression list (address -> BOUNCE | COMPLAINT); moto has none.
    pub suppressed: Mutex<HashMap<String, String>>,
    /// Transient faults on the functions' DynamoDB and SQS calls (the soak; off otherwise).
    pub faults: Arc<crate::faults::Faults>,
    /// Invocations whose answer a test holds back: (function, text the payload carries, how long).
    /// A slow function as Lambda would run it: the work is done, its return is late.
    pub held: Mutex<Vec<(String, String, Duration)>>,
}

/// The first order id (`ord_` + 32 hex) in a payload: what a call served.
pub fn find_order_id(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("ord_") {
        let start = i + pos;
        let end = start + 36;
        if end <= b.len() && b[start + 4..end].iter().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Some(text[start..end].to_string());
        }
        i = start + 4;
    }
    None
}

impl Edge {
    /// Log a call; its index in the log.
    pub fn record(&self, service: &str, operation: &str, order_id: Option<String>, target: Option<String>) -> usize {
        self.push(Call {
            service: service.into(),
            operation: operation.into(),
            order_id,
            target,
            micros: 0,
            cpu_micros: 0,
            items: 0,
            caller: None,
            write_units: 0,
        })
    }

    /// The logged call `index` was answered: how long it took here, and which function made it.
    fn answered(&self, index: usize, started: Instant, caller: Option<String>) {
        if let Some(c) = self.calls.lock().unwrap().get_mut(index) {
            c.micros = started.elapsed().as_micros() as u64;
            c.caller = caller;
        }
    }

    fn push(&self, call: Call) -> usize {
        let mut calls = self.calls.lock().unwrap();
        calls.push(call);
        calls.len() - 1
    }

    pub fn calls_for(&self, order_id: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.order_id.as_deref() == Some(order_id)).cloned().collect()
    }

    /// Hold back the answer of the next `function` invocation whose payload contains `carrying` for
    /// `how_long` after its handler has returned (it is logged in `calls` only once it is answered).
    pub fn hold_answer(&self, function: &str, carrying: &str, how_long: Duration) {
        self.held.lock().unwrap().push((function.into(), carrying.into(), how_long));
    }

    fn held_for(&self, function: &str, payload: &str) -> Option<Duration> {
        let mut held = self.held.lock().unwrap();
        let at = held.iter().position(|(f, c, _)| f == function && payload.contains(c.as_str()))?;
        Some(held.remove(at).2)
    }

    pub fn emails_for(&self, order_id: &str) -> Vec<SentEmail> {
        self.emails.lock().unwrap().iter().filter(|e| e.order_id.as_deref() == Some(order_id)).cloned().collect()
    }

    /// Invoke a hosted function the way Lambda does: a handled error is a 200 with
    /// X-Amz-Function-Error and `{errorType, errorMessage}`, which Step Functions matches in Catch.
    pub async fn invoke(&self, name: &str, payload: Value) -> Result<Value, (String, String)> {
        let text = payload.to_string();
        let order = find_order_id(&text);
        let hold = self.held_for(name, &text);
        let Some(f) = self.functions.get(name) else {
            self.record("lambda", "Invoke", order, Some(name.to_string()));
            return Err(("ResourceNotFoundException".into(), format!("Function not found: {name}")));
        };
        let started = Instant::now();
        let h = match f.handler().await {
            Ok(h) => h,
            Err(e) => {
                self.record("lambda", "Invoke", order, Some(name.to_string()));
                return Err(("Runtime.InitError".into(), e.message()));
            }
        };
        let (out, cpu) = crate::cpu_time::CpuTimed::new(h(payload)).await;
        let micros = started.elapsed().as_micros() as u64;
        if let Some(d) = hold {
            tokio::time::sleep(d).await;
        }
        // POST /orders names its order only in the answer.
        let order = order.or_else(|| out.as_ref().ok().and_then(|v| find_order_id(&v.to_string())));
        self.calls.lock().unwrap().push(Call {
            service: "lambda".into(),
            operation: "Invoke".into(),
            order_id: order,
            target: Some(name.to_string()),
            micros,
            cpu_micros: cpu.as_micros() as u64,
            items: 0,
            caller: None,
            write_units: 0,
        });
        match out {
            Ok(v) => Ok(v),
            Err(e) => Err((e.error_type().to_string(), e.message())),
        }
    }
}

pub fn router(edge: Arc<Edge>) -> Router {
    Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke)).fallback(forward).with_state(edge)
}

async fn invoke(State(edge): State<Arc<Edge>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    // moto's engine passes the function ARN; Lambda accepts names, ARNs and partial ARNs.
    let name = name.rsplit(':').next().unwrap_or(&name).to_string();
    let principal = edge.iam.principal(headers.get("authorization").and_then(|v| v.to_str().ok()));
    if let Err(d) = edge.iam.authorize(&principal, &crate::iam::needs("lambda", "Invoke", &[], &name)) {
        return access_denied("lambda", &d);
    }
    let payload: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    match edge.invoke(&name, payload).await {
        Ok(v) => (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response(),
        Err((t, m)) if t == "ResourceNotFoundException" => {
            (StatusCode::NOT_FOUND, [("x-amzn-errortype", t.as_str())], json!({"Type": "User", "message": m}).to_string()).into_response()
        }
        Err((t, m)) => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled"), ("content-type", "application/json")],
            json!({"errorType": t, "errorMessage": m}).to_string(),
        )
            .into_response(),
    }
}

fn classify(headers: &HeaderMap, method: &Method, uri: &Uri) -> (String, String) {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, op) = t.split_once('.').unwrap_or((t, ""));
        let service = match prefix {
            p if crate::moto_router::is_dynamodb_target(p) => "dynamodb",
            "AmazonSQS" => "sqs",
            "AWSStepFunctions" => "states",
            "secretsmanager" => "secretsmanager",
            other => other,
        };
        return (service.into(), op.into());
    }
    let path = uri.path();
    if path.starts_with("/v2/email/outbound-emails") {
        return ("sesv2".into(), "SendEmail".into());
    }
    if path.starts_with("/v2/email/suppression/addresses") {
        let op = if method == Method::GET {
            "GetSuppressedDestination"
        } else if method == Method::PUT {
            "PutSuppressedDestination"
        } else {
            "DeleteSuppressedDestination"
        };
        return ("sesv2".into(), op.into());
    }
    if path.starts_with("/v2/email") {
        return ("sesv2".into(), format!("{method} {path}"));
    }
    ("other".into(), format!("{method} {path}"))
}

async fn forward(State(edge): State<Arc<Edge>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (service, operation) = classify(&headers, &method, &uri);
    let text = String::from_utf8_lossy(&body);
    let order = find_order_id(&text);
    let principal = edge.iam.principal(headers.get("authorization").and_then(|v| v.to_str().ok()));
    if let Err(d) = edge.iam.authorize(&principal, &crate::iam::needs(&service, &operation, &body, uri.path())) {
        edge.record(&service, &format!("{operation} (AccessDenied)"), order, None);
        return access_denied(&service, &d);
    }
    let recorded = if service == "dynamodb" {
        // The tables and the number of items, for the bench's write and read units.
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let transact = v["TransactItems"].as_array().map(|a| a.len()).unwrap_or(0);
        let batch: usize =
            v["RequestItems"].as_object().map(|m| m.values().map(|x| x["Keys"].as_array().or(x.as_array()).map(|a| a.len()).unwrap_or(0)).sum()).unwrap_or(0);
        let call = Call {
            service: service.clone(),
            operation: operation.clone(),
            order_id: order.clone(),
            target: Some(tables_in(&body).join(",")),
            micros: 0,
            cpu_micros: 0,
            items: (transact + batch) as u32,
            caller: None,
            write_units: 0,
        };
        edge.push(call)
    } else {
        edge.record(&service, &operation, order.clone(), None)
    };
    let caller = match &principal {
        crate::iam::Principal::Function(f) => Some(f.clone()),
        _ => None,
    };
    // The soak's faults strike the functions' own DynamoDB and SQS calls (not the operator's, nor
    // the engine's), and a test's aimed fault their Step Functions calls too: before the call
    // (nothing done) or after it (done, answer lost).
    let fault = match &principal {
        crate::iam::Principal::Function(_) if matches!(service.as_str(), "dynamodb" | "sqs" | "states") => {
            edge.faults.roll(&service, &operation, order.clone(), &text)
        }
        _ => None,
    };
    if let Some(kind) = fault.filter(|k| !k.after_effect()) {
        return crate::faults::aws_error(&service, kind);
    }
    if service == "states" && operation == "StartSyncExecution" {
        let answer = start_sync_execution(&edge, &body).await;
        edge.answered(recorded, started, caller);
        return answer;
    }
    if service == "sqs" && operation == "StartMessageMoveTask" {
        let answer = move_messages(&edge, &body).await;
        edge.answered(recorded, started, caller);
        return answer;
    }
    if service == "sesv2" && operation.ends_with("SuppressedDestination") {
        return suppression_list(&edge, &operation, uri.path(), &body);
    }
    if service == "sesv2" && operation == "SendEmail" {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            let simple = &v["Content"]["Simple"];
            edge.emails.lock().unwrap().push(SentEmail {
                order_id: order,
                to: v["Destination"]["ToAddresses"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default(),
                subject: simple["Subject"]["Data"].as_str().unwrap_or("").into(),
                text: simple["Body"]["Text"]["Data"].as_str().unwrap_or("").into(),
            });
        }
    }
    // DynamoDB applies each write (a conditional one included) and each transaction atomically;
    // moto does too since the launcher (moto.rs) holds one lock around each DynamoDB request,
    // its answer included (a read never sees half of an update).
    let url = format!("{}{}", edge.moto.base_for(&headers), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let measured = if service == "dynamodb" && caller.is_some() && edge.measure_writes.load(std::sync::atomic::Ordering::Relaxed) {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let targets = crate::item_size::targets(&operation, &body);
        let before = item_sizes(&edge, &targets, headers.get("authorization")).await;
        Some((targets, before))
    } else {
        None
    };
    let mut req = edge.http.request(method, url).body(body);
    for (k, v) in headers.iter().filter(|(k, _)| crate::moto_router::end_to_end(k)) {
        req = req.header(k, v);
    }
    // The answer is read whole (and, while the bench measures, the items sized again) before the
    // call is timed: the function waits for all of it, none of it is the function's own time.
    let answered = match req.send().await {
        Ok(resp) => {
            let (status, headers) = (resp.status(), resp.headers().clone());
            Ok((status, headers, resp.bytes().await.unwrap_or_default()))
        }
        Err(e) => Err(e),
    };
    if let Some((targets, before)) = measured {
        let after = item_sizes(&edge, &targets, headers.get("authorization")).await;
        let per_item: u32 = before.iter().zip(&after).map(|(b, a)| crate::item_size::write_units(*b, *a)).sum();
        let units = if operation == "TransactWriteItems" { 2 * per_item } else { per_item };
        if let Some(c) = edge.calls.lock().unwrap().get_mut(recorded) {
            c.write_units = units;
        }
    }
    edge.answered(recorded, started, caller);
    if let Some(kind) = fault {
        return crate::faults::aws_error(&service, kind);
    }
    match answered {
        Ok((status, headers, bytes)) => {
            let mut out = Response::builder().status(status.as_u16());
            for (k, v) in headers.iter().filter(|(k, _)| crate::moto_router::end_to_end(k)) {
                out = out.header(k, v);
            }
            out.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("edge could not reach moto: {e}")).into_response(),
    }
}

/// SQS StartMessageMoveTask (a DLQ redrive), which moto 5.2.5 does not implement: every message of
/// the source queue is sent to the destination and then deleted from the source, as AWS's task does
/// (AWS runs it asynchronously; here it has finished when the answer comes). The caller was
/// authorized for it like AWS authorizes it (`iam::needs`).
async fn move_messages(edge: &Edge, body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let url_of = |arn: &str| format!("{}/{}/{}", edge.moto.rest, crate::iam::ACCOUNT, arn.rsplit(':').next().unwrap_or(""));
    let (Some(source), Some(dest)) = (v["SourceArn"].as_str(), v["DestinationArn"].as_str()) else {
        let e = json!({"__type": "com.amazonaws.sqs#InvalidParameterValueException", "message": "SourceArn and DestinationArn are required here"});
        return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
    };
    let (from, to) = (url_of(source), url_of(dest));
    let mut moved = 0;
    loop {
        let got = match edge.moto_sqs.receive_message().queue_url(&from).max_number_of_messages(10).visibility_timeout(30).send().await {
            Ok(o) => o.messages.unwrap_or_default(),
            Err(e) => {
                let e = json!({"__type": "com.amazonaws.sqs#ResourceNotFoundException", "message": format!("{e:?}")});
                return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
            }
        };
        if got.is_empty() {
            break;
        }
        for m in got {
            if edge.moto_sqs.send_message().queue_url(&to).message_body(m.body.unwrap_or_default()).send().await.is_ok() {
                if let Some(h) = m.receipt_handle {
                    let _ = edge.moto_sqs.delete_message().queue_url(&from).receipt_handle(h).send().await;
                }
                moved += 1;
            }
        }
    }
    tracing::info!(%source, %dest, moved, "edge: dead letters moved");
    axum::Json(json!({"TaskHandle": format!("local-move:{source}:{moved}")})).into_response()
}

/// AccessDeniedException as each protocol carries it: JSON-protocol services (DynamoDB, SQS, Step
/// Functions, Secrets Manager) answer 400 with `__type`; REST services (SESv2, Lambda) answer 403.
fn access_denied(service: &str, d: &Denial) -> Response {
    let message = d.message();
    let rest = matches!(service, "sesv2" | "lambda");
    let status = if rest { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    let content_type = if rest { "application/json" } else { "application/x-amz-json-1.0" };
    let mut resp = (
        status,
        [("content-type", content_type), ("x-amzn-errortype", "AccessDeniedException")],
        json!({"__type": "AccessDeniedException", "message": message, "Message": message}).to_string(),
    )
        .into_response();
    if service == "sqs" {
        resp.headers_mut().insert("x-amzn-query-error", axum::http::HeaderValue::from_static("AccessDenied;Sender"));
    }
    resp
}

fn tables_in(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return vec![] };
    let mut out: Vec<String> = v["TableName"].as_str().map(|s| vec![s.to_string()]).unwrap_or_default();
    for item in v["TransactItems"].as_array().into_iter().flatten() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            out.extend(op["TableName"].as_str().map(String::from));
        }
    }
    if let Some(m) = v["RequestItems"].as_object() {
        out.extend(m.keys().cloned());
    }
    out
}

/// One DynamoDB JSON call straight to moto (the bench's sizing reads; not logged, not the function's).
async fn moto_dynamodb(edge: &Edge, target: &str, body: &Value, auth: Option<&axum::http::HeaderValue>) -> Option<Value> {
    let mut req = edge
        .http
        .post(format!("{}/", edge.moto.dynamodb))
        .header("x-amz-target", format!("DynamoDB_20120810.{target}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.ok()?.json::<Value>().await.ok()
}

/// The current size of each target item (0 when absent), read from moto.
async fn item_sizes(edge: &Edge, targets: &[(String, Value)], auth: Option<&axum::http::HeaderValue>) -> Vec<usize> {
    let mut out = Vec::with_capacity(targets.len());
    for (table, fields) in targets {
        let known = edge.key_schemas.lock().unwrap().get(table).cloned();
        let keys = match known {
            Some(k) => k,
            None => {
                let d = moto_dynamodb(edge, "DescribeTable", &json!({"TableName": table}), auth).await.unwrap_or_default();
                let k: Vec<String> = d["Table"]["KeySchema"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e["AttributeName"].as_str().map(String::from)).collect())
                    .unwrap_or_default();
                edge.key_schemas.lock().unwrap().insert(table.clone(), k.clone());
                k
            }
        };
        let key: serde_json::Map<String, Value> = keys.iter().filter_map(|k| fields.get(k).map(|v| (k.clone(), v.clone()))).collect();
        let got = moto_dynamodb(edge, "GetItem", &json!({"TableName": table, "Key": key, "ConsistentRead": true}), auth).await.unwrap_or_default();
        out.push(got["Item"].as_object().map(crate::item_size::item_size).unwrap_or(0));
    }
    out
}

/// moto has no SESv2 suppression list: the account-level list, as SES keeps it (an address put on it
/// by a bounce or complaint through the configuration set, or by an operator).
fn suppression_list(edge: &Edge, operation: &str, path: &str, body: &[u8]) -> Response {
    let json = |status: StatusCode, v: Value| (status, [("content-type", "application/json")], v.to_string()).into_response();
    let email = path.trim_start_matches("/v2/email/suppression/addresses").trim_start_matches('/');
    let email = percent_decode(email);
    match operation {
        "GetSuppressedDestination" => match edge.suppressed.lock().unwrap().get(&email.to_lowercase()) {
            Some(reason) => json(
                StatusCode::OK,
                json!({"SuppressedDestination": {"EmailAddress": email, "Reason": reason, "LastUpdateTime": chrono::Utc::now().timestamp()}}),
            ),
            None => json(StatusCode::NOT_FOUND, json!({"message": format!("Email address {email} does not exist on your suppression list.")}))
                .into_response_with_type("NotFoundException"),
        },
        "PutSuppressedDestination" => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let (Some(addr), Some(reason)) = (v["EmailAddress"].as_str(), v["Reason"].as_str()) else {
                return json(StatusCode::BAD_REQUEST, json!({"message": "EmailAddress and Reason are required"}))
                    .into_response_with_type("BadRequestException");
            };
            edge.suppressed.lock().unwrap().insert(addr.to_lowercase(), reason.to_string());
            json(StatusCode::OK, json!({}))
        }
        _ => {
            edge.suppressed.lock().unwrap().remove(&email.to_lowercase());
            json(StatusCode::OK, json!({}))
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// REST services name their error in the `x-amzn-ErrorType` header.
trait WithErrorType {
    fn into_response_with_type(self, error_type: &str) -> Response;
}

impl WithErrorType for Response {
    fn into_response_with_type(mut self, error_type: &str) -> Response {
        if let Ok(v) = axum::http::HeaderValue::from_str(error_type) {
            self.headers_mut().insert("x-amzn-errortype", v);
        }
        self
    }
}

/// moto has no StartSyncExecution: start the execution (moto runs the definition), wait for it to
/// stop, and answer in the sync API's shape.
async fn start_sync_execution(edge: &Edge, body: &[u8]) -> Response {
    let err = |code: &str, msg: String| {
        (StatusCode::BAD_REQUEST, [("content-type", "application/x-amz-json-1.0")], json!({"__type": code, "message": msg}).to_string()).into_response()
    };
    let Ok(req) = serde_json::from_slice::<Value>(body) else { return err("ValidationException", "bad request body".into()) };
    let arn = req["stateMachineArn"].as_str().unwrap_or_default().to_string();
    let name = req["name"].as_str().map(String::from).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let input = req["input"].as_str().unwrap_or("{}").to_string();
    // AWS does not de-duplicate synchronous Express executions by name: a second start with the
    // same name runs again. moto refuses the name, so later runs get a suffix of their own.
    let mut attempt = 0;
    let started = loop {
        let run_name = if attempt == 0 { name.clone() } else { format!("{name}~{attempt}") };
        match edge.moto_sfn.start_execution().state_machine_arn(&arn).name(&run_name).input(&input).send().await {
            Ok(o) => break o,
            Err(e) => {
                let se = e.into_service_error();
                if se.is_execution_already_exists() && attempt < 50 {
                    attempt += 1;
                    continue;
                }
                return err("StatesException", format!("{se}"));
            }
        }
    };
    let t0 = Instant::now();
    let exec_arn = started.execution_arn;
    // moto answers this DescribeExecution when the execution has stopped or 2 s have passed (the
    // launcher's `x-orderflow-wait-ms`, moto.rs): the end is seen within milliseconds, with no poll
    // loop keeping moto (one Python process) busy.
    loop {
        let asked = edge
            .moto_sfn
            .describe_execution()
            .execution_arn(&exec_arn)
            .customize()
            .mutate_request(|r| {
                r.headers_mut().insert("x-orderflow-wait-ms", "2000");
            })
            .send()
            .await;
        match asked {
            Ok(d) if d.status.as_str() != "RUNNING" => {
                let start = d.start_date.secs() as f64 + d.start_date.subsec_nanos() as f64 / 1e9;
                let stop = d.stop_date.map(|s| s.secs() as f64 + s.subsec_nanos() as f64 / 1e9).unwrap_or(start);
                let mut out = json!({
                    "executionArn": exec_arn, "stateMachineArn": arn, "name": name,
                    "startDate": start, "stopDate": stop, "status": d.status.as_str(),
                    "input": input,
                    "billingDetails": {"billedDurationInMilliseconds": ((stop - start) * 1000.0).ceil() as i64, "billedMemoryUsedInMB": 64}
                });
                if let Some(o) = d.output {
                    out["output"] = json!(o);
                }
                if let Some(e) = d.error {
                    out["error"] = json!(e);
                }
                if let Some(c) = d.cause {
                    out["cause"] = json!(c);
                }
                return (StatusCode::OK, [("content-type", "application/x-amz-json-1.0")], out.to_string()).into_response();
            }
            Ok(_) => {}
            Err(e) => return err("StatesException", format!("describe: {e}")),
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return err("StatesException", "express execution exceeded 5 minutes".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_found_in_payloads() {
        let id = "ord_0123456789abcdef0123456789abcdef";
        assert_eq!(find_order_id(&format!("{{\"pk\":{{\"S\":\"RESERVATION#{id}\"}}}}")).as_deref(), Some(id));
        assert_eq!(find_order_id("ord_short and ord_XYZ"), None);
    }
}
