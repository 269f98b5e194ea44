//! The local stack: everything orderflow needs, on one machine, in one process (plus moto).
//!
//! ```text
//!  storefront --HTTP--> api (API Gateway v2 events) --Invoke--> orders_api ─┐
//!                                                                            │ AWS SDK calls
//!  moto (DynamoDB, SQS, SESv2, Step Functions engine) <--forward-- edge <────┘
//!        └── Lambda Invoke (MOTO_PORT) ──> edge ──> in-process step functions
//!  SQS pumps (event source mappings) ──> send_notifications, record_review_task
//!  sandbox gateway (Stripe-compatible) <── production gateway client
//! ```

pub mod api;
pub mod bench;
pub mod cpu_time;
pub mod demo;
pub use demo::demo_address;
pub mod edge;
pub mod faults;
pub mod functions;
pub mod iam;
pub mod iam_report;
pub mod item_size;
pub mod load;
pub mod moto;
pub mod moto_router;
pub mod ports;
pub mod provision;
pub mod pumps;
pub mod sandbox_carrier;
pub mod sandbox_gateway;
pub mod sandbox_warehouse;
pub mod secrets_extension;
pub mod smoke;
pub mod soak;
pub mod template;

use edge::{Call, Edge};
use ports::Ports;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Options {
    pub repo: PathBuf,
    pub edge_port: u16,
    pub api_port: u16,
    pub gateway_port: u16,
    pub ops_token: String,
    /// Overrides the template's ReviewTimeoutSeconds parameter.
    pub review_timeout_seconds: u64,
    /// Overrides the template's WarehouseTimeoutSeconds parameter (how long a dispatch waits).
    pub warehouse_timeout_seconds: u64,
    /// Overrides the template's ReturnAuthorizationSeconds parameter (how long a return waits).
    pub return_authorization_seconds: u64,
    /// Sandbox warehouses ship every pick list at once (demo) or leave them to the caller (tests).
    pub warehouse_auto: bool,
    /// Sandbox carrier walks each parcel to delivered with this step (demo), or waits for commands.
    pub carrier_auto_walk: Option<std::time::Duration>,
    pub log_dir: PathBuf,
    /// Share of the functions' DynamoDB, SQS, gateway and carrier calls that fail transiently (the
    /// soak; `faults.rs`). 0 = none.
    pub fault_rate: f64,
}

impl Default for Options {
    fn default() -> Self {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = repo.canonicalize().unwrap_or(repo);
        Options {
            log_dir: repo.join("target/local"),
            repo,
            edge_port: 0,
            api_port: 0,
            gateway_port: 0,
            ops_token: "ops_local_token".into(),
            review_timeout_seconds: 3 * 86_400,
            warehouse_timeout_seconds: 60,
            return_authorization_seconds: 30,
            warehouse_auto: false,
            carrier_auto_walk: None,
            fault_rate: 0.0,
        }
    }
}

pub struct Stack {
    pub api_url: String,
    pub edge_url: String,
    pub gateway_url: String,
    pub moto_url: String,
    pub edge: Arc<Edge>,
    pub gateway: Arc<sandbox_gateway::Gateway>,
    pub faults: Arc<faults::Faults>,
    pub carrier: Arc<sandbox_carrier::Carrier>,
    pub warehouses: Arc<sandbox_warehouse::Warehouses>,
    /// The operator's ports through the edge (tests set up and read with them).
    pub deps: Arc<Ports>,
    /// The same ports talking to moto directly: reads made to watch an order (the demo's waits) do
    /// not show up among the order's own AWS calls.
    pub observer: Arc<Ports>,
    pub moto_sfn: aws_sdk_sfn::Client,
    pub moto_sqs: aws_sdk_sqs::Client,
    /// Queue logical id (as in infra/template.yaml) -> URL.
    pub queue_urls: BTreeMap<String, String>,
    /// Source queue logical id -> its dead-letter queue's logical id.
    pub dead_letter: BTreeMap<String, String>,
    pub ops_token: String,
    /// Secret ARN -> value, for `lambda_env` (cargo lambda runs functions outside the stack).
    secrets_by_arn: BTreeMap<String, String>,
    moto: Mutex<Vec<moto::Moto>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

async fn bind(port: u16) -> Result<(TcpListener, u16), String> {
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    let p = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok((l, p))
}

fn serve(listener: TcpListener, router: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

#[derive(Debug, Serialize)]
pub struct OrderReport {
    pub calls: Vec<Call>,
    /// (service, operation) -> count
    pub calls_by_operation: BTreeMap<String, usize>,
    /// Per machine (checkout, lifecycle, and the runs named after the order): states entered, in order.
    pub states: BTreeMap<String, Vec<String>>,
    /// Checkout, lifecycle and dispatch states entered (the other Express runs' states are not
    /// transitions).
    pub transitions: usize,
    /// Express machine -> the order's runs of it (fulfilment, parcels, settlement).
    pub child_runs: BTreeMap<String, usize>,
}

/// Each role's statements from the template: functions by their Lambda name, state machines by
/// logical id.
fn iam_policies(t: &template::Template, functions: &BTreeMap<&'static str, Arc<functions::Hosted>>) -> Result<BTreeMap<String, Vec<iam::Statement>>, String> {
    let mut out = BTreeMap::new();
    for f in t.functions() {
        if functions.contains_key(f.binary.as_str()) {
            out.insert(f.binary.clone(), t.policy(&f.logical_id)?);
        }
    }
    for m in t.state_machines()? {
        out.insert(m.logical_id.clone(), t.policy(&m.logical_id)?);
    }
    Ok(out)
}

/// What each state machine's definition can call: the resources its substitutions name (functions,
/// queues) and the service integrations its Task states use.
fn machine_refs(t: &template::Template) -> Result<BTreeMap<String, std::collections::BTreeSet<String>>, String> {
    let mut out = BTreeMap::new();
    for m in t.state_machines()? {
        let mut refs: std::collections::BTreeSet<String> =
            m.substitutions.values().map(|v| if v.starts_with("http") { iam::queue_arn(v) } else { v.clone() }).collect();
        let raw = std::fs::read_to_string(&m.definition).map_err(|e| e.to_string())?;
        for part in raw.split("\"Resource\"").skip(1) {
            if let Some(r) = part.split('"').nth(1) {
                refs.insert(r.to_string());
                // A Task whose target is chosen at run time (`"QueueUrl.$"`): this machine may
                // call that integration on any resource its role allows.
                let task = part.split("\"Resource\"").next().unwrap_or_default();
                if task.contains("\"QueueUrl.$\"") {
                    refs.insert(format!("{}{r}", iam::DYNAMIC_TARGET));
                }
            }
        }
        out.insert(m.logical_id, refs);
    }
    Ok(out)
}

impl Stack {
    pub async fn start(opts: Options) -> Result<Stack, String> {
        std::fs::create_dir_all(&opts.log_dir).map_err(|e| e.to_string())?;
        let venv = tokio::task::spawn_blocking(moto::ensure_venv).await.map_err(|e| e.to_string())??;

        let (edge_listener, edge_port) = bind(opts.edge_port).await?;
        let (api_listener, api_port) = bind(opts.api_port).await?;
        let (gw_listener, gw_port) = bind(opts.gateway_port).await?;
        let (carrier_listener, carrier_port) = bind(0).await?;
        let (ext_listener, ext_port) = bind(0).await?;
        // DynamoDB in one moto process, every other service in another (moto_router.rs), behind
        // one URL for whatever talks to moto directly. `ORDERFLOW_MOTO_PROCESSES=1`: one process for
        // all (half the memory; the bench's figures before the split).
        let (ddb_port, rest_port) = (free_port(), free_port());
        let rest_log = opts.log_dir.join(format!("moto-{rest_port}.log"));
        let mut motos = vec![];
        let backends = if std::env::var("ORDERFLOW_MOTO_PROCESSES").as_deref() == Ok("1") {
            motos.push(moto::start(&venv, rest_port, edge_port, &rest_log).await?);
            let url = format!("http://127.0.0.1:{rest_port}");
            moto_router::Backends { dynamodb: url.clone(), rest: url }
        } else {
            let ddb_log = opts.log_dir.join(format!("moto-dynamodb-{ddb_port}.log"));
            let (ddb, rest) = tokio::try_join!(moto::start(&venv, ddb_port, edge_port, &ddb_log), moto::start(&venv, rest_port, edge_port, &rest_log))?;
            motos.extend([ddb, rest]);
            moto_router::Backends { dynamodb: format!("http://127.0.0.1:{ddb_port}"), rest: format!("http://127.0.0.1:{rest_port}") }
        };
        let (router_listener, router_port) = bind(0).await?;
        let router_task = serve(router_listener, moto_router::router(backends.clone())?);
        let moto_url = format!("http://127.0.0.1:{router_port}");
        let edge_url = format!("http://127.0.0.1:{edge_port}");
        let gateway_url = format!("http://127.0.0.1:{gw_port}");
        let carrier_url = format!("http://127.0.0.1:{carrier_port}");
        let api_url = format!("http://127.0.0.1:{api_port}");

        // Provisioning and the event-source pumps talk to moto directly: they are AWS's own work,
        // not calls an order pays for, so the edge's call log stays per-order.
        let moto_sdk = orderflow_shared::aws::sdk_config(&ports::operator_env(&moto_url, BTreeMap::new())).await;
        // The secrets a store puts in Secrets Manager before deploying; the template is then
        // deployed with their full ARNs, as the README's deploy steps do.
        let tokens: BTreeMap<&str, &str> = sandbox_warehouse::WAREHOUSE_TOKENS.iter().copied().collect();
        let secret_values = BTreeMap::from([
            ("GatewayApiKeySecretArn".to_string(), sandbox_gateway::SANDBOX_SECRET_KEY.to_string()),
            ("OpsApiTokenSecretArn".to_string(), opts.ops_token.clone()),
            ("CarrierApiKeySecretArn".to_string(), sandbox_carrier::SANDBOX_CARRIER_KEY.to_string()),
            ("CarrierWebhookSecretSecretArn".to_string(), sandbox_carrier::SANDBOX_CARRIER_WEBHOOK_SECRET.to_string()),
            ("GatewayWebhookSecretSecretArn".to_string(), sandbox_gateway::SANDBOX_WEBHOOK_SECRET.to_string()),
            ("WarehouseApiTokensSecretArn".to_string(), serde_json::to_string(&tokens).map_err(|e| e.to_string())?),
        ]);
        let mut params = provision::create_secrets(&moto_url, &secret_values).await?;
        let secrets_by_arn: BTreeMap<String, String> =
            params.iter().filter_map(|(param, arn)| secret_values.get(param).map(|v| (arn.clone(), v.clone()))).collect();
        params.extend([
            ("GatewayBaseUrl".to_string(), gateway_url.clone()),
            ("ReviewTimeoutSeconds".to_string(), opts.review_timeout_seconds.to_string()),
            // moto runs a hundred concurrent executions ~10x slower than AWS on 2 cores (its engine
            // threads compete for one Python process); give each Lambda task room there.
            ("LambdaTaskTimeoutSeconds".to_string(), "120".to_string()),
            // The same emulator slowness for the API's wait on the synchronous checkout.
            ("CheckoutBudgetSeconds".to_string(), "280".to_string()),
            ("CarrierBaseUrl".to_string(), carrier_url.clone()),
            ("WarehouseTimeoutSeconds".to_string(), opts.warehouse_timeout_seconds.to_string()),
            ("ReturnAuthorizationSeconds".to_string(), opts.return_authorization_seconds.to_string()),
            ("FeedbackDelaySeconds".to_string(), "1".to_string()),
        ]);
        let p = provision::provision(&moto_sdk, &opts.repo, params).await?;
        let deps = Arc::new(Ports::new(&edge_url, &p.template).await?);
        let observer = Arc::new(Ports::new(&moto_url, &p.template).await?);

        // Every function as the template declares it, each with its own role. The journal of
        // exercised permissions is this run's own (the report merges the runs of one CI job).
        let _ = std::fs::remove_file(opts.log_dir.join("iam-exercised.jsonl"));
        let functions = functions::host_all(&p.template, &edge_url, ext_port)?;
        let policies = iam_policies(&p.template, &functions)?;
        std::fs::write(opts.log_dir.join("iam-granted.json"), serde_json::to_string_pretty(&policies).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let iam = Arc::new(iam::Iam::new(
            policies,
            functions.values().map(|f| (f.identity.access_key_id.clone(), f.name.to_string())).collect(),
            machine_refs(&p.template)?,
            Some(opts.log_dir.join("iam-exercised.jsonl")),
        ));
        let extension = Arc::new(secrets_extension::Extension {
            edge_url: edge_url.clone(),
            sessions: functions.values().map(|f| (f.identity.session_token.clone(), f.identity.clone())).collect(),
            http: reqwest::Client::new(),
        });

        let moto_rest_sdk = orderflow_shared::aws::sdk_config(&ports::operator_env(&backends.rest, BTreeMap::new())).await;
        let moto_sfn = aws_sdk_sfn::Client::new(&moto_rest_sdk);
        let moto_sqs = aws_sdk_sqs::Client::new(&moto_rest_sdk);
        let faults = Arc::new(faults::Faults::new(opts.fault_rate, std::process::id() as u64));
        faults.arm(false);
        let edge = Arc::new(Edge {
            functions,
            iam,
            moto: backends,
            http: reqwest::Client::builder().pool_max_idle_per_host(64).build().map_err(|e| e.to_string())?,
            moto_sfn: moto_sfn.clone(),
            moto_sqs: moto_sqs.clone(),
            calls: Mutex::new(Vec::new()),
            measure_writes: Default::default(),
            key_schemas: Default::default(),
            emails: Mutex::new(Vec::new()),
            suppressed: Mutex::new(Default::default()),
            faults: faults.clone(),
            held: Mutex::new(Vec::new()),
        });
        let gateway = Arc::new(sandbox_gateway::Gateway::default());
        *gateway.webhook_url.lock().unwrap() = format!("{api_url}/webhooks/gateway");
        let carrier = Arc::new(sandbox_carrier::Carrier::new(opts.carrier_auto_walk));
        *carrier.webhook_url.lock().unwrap() = format!("{api_url}/webhooks/carrier");
        let warehouses = Arc::new(sandbox_warehouse::Warehouses::new(opts.warehouse_auto));
        *warehouses.api_url.lock().unwrap() = api_url.clone();
        let routes = api::routes(&opts.repo.join("infra/openapi.yaml"), &p.template)?;
        let mut tasks = vec![
            router_task,
            serve(edge_listener, edge::router(edge.clone())),
            serve(api_listener, api::router(edge.clone(), routes)),
            serve(
                gw_listener,
                sandbox_gateway::router(gateway.clone()).layer(axum::middleware::from_fn_with_state((faults.clone(), "gateway"), faults::partner_layer)),
            ),
            serve(
                carrier_listener,
                sandbox_carrier::router(carrier.clone()).layer(axum::middleware::from_fn_with_state((faults.clone(), "carrier"), faults::partner_layer)),
            ),
            serve(ext_listener, secrets_extension::router(extension)),
        ];
        for (logical, url) in &p.queue_urls {
            if logical.starts_with("Warehouse") && !logical.contains("DeadLetter") {
                tasks.push(sandbox_warehouse::spawn(warehouses.clone(), moto_sqs.clone(), url.clone()));
            }
        }
        // Lambda's SQS event source mappings, as the template declares them.
        for f in p.template.functions() {
            if let Some(queue) = f.sqs_source {
                let url = p.queue_urls.get(&queue).cloned().ok_or_else(|| format!("{}: no queue {queue}", f.logical_id))?;
                let arn = p.template.get_att(&format!("{queue}.Arn"))?;
                let name =
                    edge.functions.keys().find(|k| **k == f.binary).copied().ok_or_else(|| format!("{}: function {} is not hosted", f.logical_id, f.binary))?;
                tasks.push(pumps::spawn(edge.clone(), moto_sqs.clone(), url, arn, name));
            }
        }
        // EventBridge schedules, as the template declares them (the sweeper every 5 minutes).
        for f in p.template.functions() {
            if let Some(every) = f.schedule_seconds {
                let name =
                    edge.functions.keys().find(|k| **k == f.binary).copied().ok_or_else(|| format!("{}: function {} is not hosted", f.logical_id, f.binary))?;
                let edge = edge.clone();
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
                    tick.tick().await; // the first run is one period after start, as a new rule's
                    loop {
                        tick.tick().await;
                        let event = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "time": chrono::Utc::now().to_rfc3339()});
                        if let Err(e) = edge.invoke(name, event).await {
                            tracing::warn!(function = name, error = ?e, "scheduled run failed");
                        }
                    }
                }));
            }
        }
        // The store's data goes in through the operator API, as on a deployed stack (README: load
        // data), so that path runs on every start.
        let loaded = load::load(&api_url, &opts.ops_token, &opts.repo.join("infra/local/fixtures/store.json")).await.map_err(|e| format!("seeding: {e}"))?;
        tracing::debug!(requests = loaded.requests, "store data loaded through the operator API");
        faults.arm(true);
        Ok(Stack {
            api_url,
            edge_url,
            gateway_url,
            moto_url,
            edge,
            gateway,
            faults,
            carrier,
            warehouses,
            deps,
            observer,
            moto_sfn,
            moto_sqs,
            queue_urls: p.queue_urls,
            dead_letter: p.dead_letter,
            ops_token: opts.ops_token,
            secrets_by_arn,
            moto: Mutex::new(motos),
            tasks,
        })
    }

    /// The states each of the order's executions entered (Step Functions bills Standard per
    /// transition), and every AWS call that served the order.
    pub async fn report(&self, order_id: &str) -> OrderReport {
        let calls = self.edge.calls_for(order_id);
        let mut by_op = BTreeMap::new();
        for c in &calls {
            let key = match &c.target {
                Some(t) => format!("{}:{} ({t})", c.service, c.operation),
                None => format!("{}:{}", c.service, c.operation),
            };
            *by_op.entry(key).or_insert(0) += 1;
        }
        let mut states = BTreeMap::new();
        let mut transitions = 0;
        for machine in [provision::CHECKOUT_MACHINE, provision::LIFECYCLE_MACHINE] {
            let arn = provision::execution_arn(machine, order_id);
            if let Ok(h) = self.moto_sfn.get_execution_history().execution_arn(&arn).max_results(1000).send().await {
                let entered: Vec<String> = h
                    .events
                    .iter()
                    .filter(|e| e.r#type.as_str().ends_with("StateEntered"))
                    .map(|e| e.state_entered_event_details.as_ref().map(|d| d.name.clone()).unwrap_or_default())
                    .collect();
                transitions += entered.len();
                states.insert(machine.to_string(), entered);
            }
        }
        // The runs named after the order (`<order id>-...`): the Express ones (fulfilment, parcels,
        // the settlement) are billed per run and its duration, not per state (their states are
        // listed, not counted as transitions); the Standard dispatch waits per state.
        let mut child_runs = BTreeMap::new();
        for (machine, express) in provision::ORDER_RUN_MACHINES {
            let arn = provision::machine_arn(machine);
            let mut pages = self.moto_sfn.list_executions().state_machine_arn(&arn).into_paginator().items().send();
            while let Some(Ok(e)) = pages.next().await {
                if !e.name.starts_with(&format!("{order_id}-")) {
                    continue;
                }
                if express {
                    *child_runs.entry(machine.to_string()).or_insert(0) += 1;
                }
                if let Ok(h) = self.moto_sfn.get_execution_history().execution_arn(&e.execution_arn).max_results(1000).send().await {
                    let entered = h.events.iter().filter(|e| e.r#type.as_str().ends_with("StateEntered"));
                    let names: Vec<String> = entered.map(|e| e.state_entered_event_details.as_ref().map(|d| d.name.clone()).unwrap_or_default()).collect();
                    if !express {
                        transitions += names.len();
                    }
                    states.entry(machine.to_string()).or_insert_with(Vec::new).extend(names);
                }
            }
        }
        OrderReport { calls, calls_by_operation: by_op, states, transitions, child_runs }
    }

    /// An env file for `cargo lambda watch --env-file`: every function's settings from the template
    /// (each reads only its own), the edge as endpoint with operator credentials, and each secret
    /// given directly (cargo lambda has no Parameters and Secrets extension).
    pub fn lambda_env(&self) -> String {
        let mut all = BTreeMap::new();
        for f in self.edge.functions.values() {
            for (k, v) in &f.env {
                if orderflow_shared::env::is_runtime_variable(k) {
                    continue;
                }
                match k.strip_suffix("_SECRET_ARN") {
                    Some(name) => all.insert(name.to_string(), self.secrets_by_arn.get(v).cloned().unwrap_or_default()),
                    None => all.insert(k.clone(), v.clone()),
                };
            }
        }
        all.insert("AWS_ENDPOINT_URL".into(), self.edge_url.clone());
        all.insert("AWS_REGION".into(), template::REGION.into());
        all.insert("AWS_ACCESS_KEY_ID".into(), "local".into());
        all.insert("AWS_SECRET_ACCESS_KEY".into(), "local".into());
        all.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect()
    }

    pub async fn execution_status(&self, machine: &str, order_id: &str) -> Option<String> {
        let arn = provision::execution_arn(machine, order_id);
        self.moto_sfn.describe_execution().execution_arn(arn).send().await.ok().map(|d| d.status.as_str().to_string())
    }

    /// The order's runs of `machine` (named `<order id>-...`): their statuses.
    pub async fn order_runs(&self, machine: &str, order_id: &str) -> Vec<String> {
        let arn = provision::machine_arn(machine);
        let mut out = vec![];
        let mut pages = self.moto_sfn.list_executions().state_machine_arn(&arn).into_paginator().items().send();
        while let Some(Ok(e)) = pages.next().await {
            if e.name.starts_with(&format!("{order_id}-")) {
                out.push(e.status.as_str().to_string());
            }
        }
        out
    }

    /// How the order's runs of `machine` ended, once there is one and none is running (or what they
    /// are after `within`): "FAILED" if any failed, else the status they share.
    pub async fn order_runs_end(&self, machine: &str, order_id: &str, within: std::time::Duration) -> String {
        let started = std::time::Instant::now();
        loop {
            let runs = self.order_runs(machine, order_id).await;
            let stopped = !runs.is_empty() && runs.iter().all(|s| s != "RUNNING");
            if stopped || started.elapsed() >= within {
                return if runs.iter().any(|s| s == "FAILED") { "FAILED".into() } else { runs.first().cloned().unwrap_or_default() };
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The execution's status once it has stopped (or RUNNING after `within`): an order's end is
    /// recorded by a step inside the execution's last child run, a moment before the execution itself
    /// stops.
    pub async fn execution_end(&self, machine: &str, order_id: &str, within: std::time::Duration) -> Option<String> {
        let started = std::time::Instant::now();
        loop {
            let status = self.execution_status(machine, order_id).await;
            if status.as_deref() != Some("RUNNING") || started.elapsed() >= within {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        for mut m in self.moto.lock().unwrap().drain(..) {
            let _ = m.child.start_kill();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown();
    }
}
