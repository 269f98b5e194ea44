//! `orderflow-local up`   start the local stack and keep it running until Ctrl-C
//! `orderflow-local demo` start it, place the sample orders, print what happened, stop
//! `orderflow-local bench [--orders N] [--concurrency C]` what an order costs on AWS, how fast checkout is
//! `orderflow-local soak [--orders N] [--concurrency C] [--fault-rate R]` the mix with transient faults, then checks
//! `orderflow-local render-asl DIR` write the state machines with the template's substitutions
//! `orderflow-local iam-report [--iam-definition FILE] [RUN_DIR...]` permissions granted vs used
//! `orderflow-local load --api URL [--ops-token T] FILE` load catalog, stock, rates and warehouses
//! `orderflow-local smoke --api URL --sku SKU [--ops-token T] [--payment-method PM] [--quantity N]
//!   [--country CC] [--wait-seconds N]` the post-deploy check against a running API

use orderflow_local::{demo, Options, Stack};

fn port(name: &str, default: u16) -> u16 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Write each state machine definition with the template's substitutions (AWS-shaped ARNs and
/// URLs, parameter defaults) to `dir`, for offline validators.
fn render_asl(dir: &str) -> Result<(), String> {
    let repo = Options::default().repo;
    let mut t = orderflow_local::template::Template::load(&repo.join("infra/template.yaml"))?;
    for q in t.queues()? {
        t.queue_urls.insert(q.logical_id.clone(), format!("https://sqs.us-east-1.amazonaws.com/123456789012/{}", q.name));
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for m in t.state_machines()? {
        let raw = std::fs::read_to_string(&m.definition).map_err(|e| e.to_string())?;
        let def = orderflow_local::template::substitute(&raw, &m.substitutions)?;
        let out = std::path::Path::new(dir).join(format!("{}.asl.json", m.name));
        std::fs::write(&out, def).map_err(|e| e.to_string())?;
        println!("{}", out.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_else(|| "up".into());
    if cmd == "render-asl" {
        let dir = std::env::args().nth(2).unwrap_or_else(|| "target/asl".into());
        if let Err(e) = render_asl(&dir) {
            eprintln!("render-asl: {e}");
            std::process::exit(1);
        }
        return;
    }
    if cmd == "smoke" {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let (Some(api), Some(sku)) = (flag("--api"), flag("--sku")) else {
            eprintln!("usage: orderflow-local smoke --api URL --sku SKU [--ops-token T] [--payment-method pm_card_visa] [--quantity 1] [--country US] [--wait-seconds 60]");
            std::process::exit(2);
        };
        let o = orderflow_local::smoke::SmokeOptions {
            api,
            sku,
            quantity: flag("--quantity").and_then(|q| q.parse().ok()).unwrap_or(1),
            payment_method: flag("--payment-method").unwrap_or_else(|| "pm_card_visa".into()),
            ops_token: flag("--ops-token").or_else(|| std::env::var("ORDERFLOW_OPS_TOKEN").ok()),
            email: flag("--email").unwrap_or_else(|| "smoke-check@example.com".into()),
            country: flag("--country").unwrap_or_else(|| "US".into()),
            wait: std::time::Duration::from_secs(flag("--wait-seconds").and_then(|w| w.parse().ok()).unwrap_or(60)),
        };
        if let Err(e) = orderflow_local::smoke::run(&o).await {
            eprintln!("[smoke] FAILED: {e}");
            std::process::exit(1);
        }
        return;
    }
    if cmd == "load" {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let token = flag("--ops-token").or_else(|| std::env::var("ORDERFLOW_OPS_TOKEN").ok());
        let (Some(api), Some(token), Some(file)) = (flag("--api"), token, args.last().filter(|a| !a.starts_with("--"))) else {
            eprintln!("usage: orderflow-local load --api URL [--ops-token T | env ORDERFLOW_OPS_TOKEN] FILE.json|FILE.csv");
            std::process::exit(2);
        };
        match orderflow_local::load::load(&api, &token, std::path::Path::new(file)).await {
            Ok(l) => println!("[load] {} requests, {} already applied before (replays)", l.requests, l.replayed),
            Err(e) => {
                eprintln!("[load] FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if cmd == "redrive" {
        // The operator API's DLQ redrive, for a person at a terminal (README, "Dead letters").
        let args: Vec<String> = std::env::args().skip(2).collect();
        let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let token = flag("--ops-token").or_else(|| std::env::var("ORDERFLOW_OPS_TOKEN").ok());
        let (Some(api), Some(token), Some(queue)) = (flag("--api"), token, flag("--queue")) else {
            eprintln!("usage: orderflow-local redrive --api URL --queue notifications|refunds|review|supplier|webhook-events [--ops-token T | env ORDERFLOW_OPS_TOKEN]");
            std::process::exit(2);
        };
        let url = format!("{}/ops/dead-letters/{queue}/redrive", api.trim_end_matches('/'));
        match reqwest::Client::new().post(&url).bearer_auth(token).send().await {
            Ok(r) => {
                let st = r.status();
                let body = r.text().await.unwrap_or_default();
                println!("[redrive] {queue}: HTTP {} {body}", st.as_u16());
                if !st.is_success() {
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("[redrive] FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if cmd == "iam-report" {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let mut definition = None;
        let mut dirs = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--iam-definition" {
                definition = it.next().map(std::path::PathBuf::from);
            } else {
                dirs.push(std::path::PathBuf::from(a));
            }
        }
        let repo = Options::default().repo;
        if dirs.is_empty() {
            dirs = vec![repo.join("target/local/e2e"), repo.join("target/local")];
        }
        if let Err(e) = orderflow_local::iam_report::print(&repo, &dirs, definition.as_deref()) {
            eprintln!("[iam] least privilege not shown:\n{e}");
            std::process::exit(1);
        }
        return;
    }
    let (edge, api, gw) = match cmd.as_str() {
        "up" => (port("EDGE_PORT", 4566), port("API_PORT", 3000), port("GATEWAY_PORT", 12111)),
        _ => (port("EDGE_PORT", 0), port("API_PORT", 0), port("GATEWAY_PORT", 0)),
    };
    // `up` and `demo` run the sandbox warehouses and carrier on their own: pick lists are shipped
    // at once and parcels walk to delivered, so an order goes all the way without a hand on it.
    let fault_rate = match cmd.as_str() {
        "soak" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            args.iter().position(|a| a == "--fault-rate").and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.05)
        }
        _ => 0.0,
    };
    let opts = Options {
        fault_rate,
        edge_port: edge,
        api_port: api,
        gateway_port: gw,
        warehouse_auto: true,
        carrier_auto_walk: Some(std::time::Duration::from_millis(400)),
        warehouse_timeout_seconds: 600,
        return_authorization_seconds: 600,
        ..Options::default()
    };
    let log = opts.log_dir.join("functions.log");
    std::fs::create_dir_all(&opts.log_dir).ok();
    let _ = orderflow_shared::telemetry::init_to_file(&log);
    eprintln!("[local] starting: moto, edge, orders + partner API, sandbox gateway, carrier and warehouses ...");
    let stack = match Stack::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[local] failed to start: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("[local] orders API      {}", stack.api_url);
    eprintln!("[local] AWS edge        {}  (AWS_ENDPOINT_URL for any SDK)", stack.edge_url);
    eprintln!("[local] sandbox gateway {}", stack.gateway_url);
    eprintln!("[local] partner API     {}/warehouse/shipments, /warehouse/receipts, /webhooks/carrier, /webhooks/gateway", stack.api_url);
    eprintln!("[local] sandbox warehouses wh-east, wh-west ship every pick list at once; carrier walks parcels to delivered");
    eprintln!("[local] moto            {}", stack.moto_url);
    eprintln!("[local] function logs   {}", log.display());
    match cmd.as_str() {
        "bench" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<usize>().ok());
            let r = orderflow_local::bench::run(&stack, flag("--orders").unwrap_or(200), flag("--concurrency").unwrap_or(10)).await;
            stack.shutdown();
            if let Err(e) = r {
                eprintln!("[local] bench failed: {e}");
                std::process::exit(1);
            }
        }
        "soak" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<usize>().ok());
            let started = std::time::Instant::now();
            let r = orderflow_local::soak::run(&stack, flag("--orders").unwrap_or(1000), flag("--concurrency").unwrap_or(20)).await;
            stack.shutdown();
            eprintln!("[soak] took {:.0} s", started.elapsed().as_secs_f64());
            if let Err(e) = r {
                eprintln!("[local] soak failed: {e}");
                std::process::exit(1);
            }
        }
        "demo" => {
            let r = demo::run(&stack).await;
            stack.shutdown();
            if let Err(e) = r {
                eprintln!("[local] demo failed: {e}");
                std::process::exit(1);
            }
        }
        "up" => {
            let env_file = Options::default().repo.join("target/local/lambda.env");
            match std::fs::write(&env_file, stack.lambda_env()) {
                Ok(()) => eprintln!("[local] cargo lambda  cargo lambda watch --env-file {}", env_file.display()),
                Err(e) => eprintln!("[local] could not write {}: {e}", env_file.display()),
            }
            eprintln!("[local] ready; operator token: {} ; Ctrl-C to stop", stack.ops_token);
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("[local] stopping");
            stack.shutdown();
        }
        other => {
            eprintln!(
                "usage: orderflow-local [up|demo|bench [--orders N] [--concurrency C]|soak [--orders N] [--concurrency C] [--fault-rate R]]  (got '{other}')"
            );
            std::process::exit(2);
        }
    }
}
