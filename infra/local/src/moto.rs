//! moto server: a pinned virtualenv created on first run, one child process per stack.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const MOTO_VERSION: &str = "5.2.5";

/// Where the virtualenv lives: `$ORDERFLOW_VENV`, else a cache outside the clone so CI and later
/// runs reuse it (a fresh machine simply builds it once).
pub fn venv_dir() -> PathBuf {
    if let Ok(p) = std::env::var("ORDERFLOW_VENV") {
        return PathBuf::from(p);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache"));
    base.join("orderflow").join(format!("moto-{MOTO_VERSION}-venv"))
}

/// Create the virtualenv with `moto[server]==5.2.5` unless it is already complete.
pub fn ensure_venv() -> Result<PathBuf, String> {
    let dir = venv_dir();
    let marker = dir.join(".orderflow-ready");
    if marker.exists() {
        return Ok(dir);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("[local] first run: creating a Python virtualenv for moto {MOTO_VERSION} in {} ...", dir.display());
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.parent().unwrap()).map_err(|e| e.to_string())?;
    run(&python, &["-m", "venv", tmp.to_str().unwrap()])?;
    eprintln!("[local] installing moto[server]=={MOTO_VERSION} from PyPI (progress below) ...");
    run(tmp.join("bin/pip").to_str().unwrap(), &["install", "--disable-pip-version-check", "--progress-bar", "on", &format!("moto[server]=={MOTO_VERSION}")])?;
    std::fs::write(tmp.join(".orderflow-ready"), MOTO_VERSION).map_err(|e| e.to_string())?;
    // Rename into place atomically; if another process won the race, use theirs.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !marker.exists() {
            return Err(format!("could not move the virtualenv into {}", dir.display()));
        }
    }
    eprintln!("[local] moto is ready");
    Ok(dir)
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let st = std::process::Command::new(cmd).args(args).stdin(Stdio::null()).status().map_err(|e| format!("{cmd}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {} failed with {st}", args.join(" ")))
    }
}

const MOTO_WITH_WATCHDOG: &str = r#"
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["moto_server"] + sys.argv[1:]

# Speed (#11): two costs per request that are moto's own, not AWS's, fixed here without changing
# what any answer says. Measured with py-spy under the bench: ~60% of moto's CPU went to
# serializing DynamoDB item results through the generic shape walker, ~12% to finding the backend
# (a directory listing and hundreds of regexes per request, under a global lock).
import functools, json
import moto.backends as _backends
_modules = tuple(_backends.list_of_moto_modules())
_backends.list_of_moto_modules = lambda: _modules
from moto.moto_server.werkzeug_app import DomainDispatcherApplication as _D
_find = _D.get_backend_for_host
_found = {}
def _cached(self, host):
    if host not in _found:
        _found[host] = _find(self, host)
    return _found[host]
_D.get_backend_for_host = _cached
# Item operations answer attribute values that are already in DynamoDB's JSON form: written as
# they are (None members left out, as the serializer leaves them out).
from moto.dynamodb.responses import DynamoResult as _R
_serialize = _R.execute_result
_ITEM_OPS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems"}
def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v
def _fast(self, context):
    if context.operation_model.name in _ITEM_OPS and isinstance(self.result, dict):
        body = json.dumps(_drop_none(self.result), separators=(",", ":"))
        if os.environ.get("ORDERFLOW_MOTO_CHECK"):
            st, h, slow = _serialize(self, context)
            if json.loads(slow) != json.loads(body):
                print("ORDERFLOW_MOTO_CHECK mismatch", context.operation_model.name, slow[:300], body[:300], flush=True)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
    return _serialize(self, context)
_R.execute_result = _fast

# The engine made a boto3 client per Lambda and SQS task; one per service is enough (clients are
# thread-safe). Each request's access-log line and a new TCP connection per request were the next
# costs: keep connections alive (HTTP/1.1) and log warnings only.
import logging
logging.getLogger("werkzeug").setLevel(logging.WARNING)
from werkzeug.serving import WSGIRequestHandler as _H
_H.protocol_version = "HTTP/1.1"
import moto.stepfunctions.parser.asl.utils.boto_client as _bc
_client_for = _bc.boto_client_for
_clients = {}
def _one_client(region, service, state_credentials=None):
    # moto's own function ignores the credentials too (it signs as "ak").
    if (region, service) not in _clients:
        _clients[(region, service)] = _client_for(region, service)
    return _clients[(region, service)]
import importlib
for _m in ("moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
           "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs"):
    _mod = importlib.import_module(_m)
    if hasattr(_mod, "boto_client_for"):
        _mod.boto_client_for = _one_client

from moto.server import main
main()
"#;

pub struct Moto {
    pub child: Child,
}

/// Start moto on `port`. `edge_port` goes in MOTO_PORT: moto's Step Functions engine sends its
/// Lambda (and SQS) calls there, to the edge that hosts our functions.
pub async fn start(venv: &Path, port: u16, edge_port: u16, log: &Path) -> Result<Moto, String> {
    let logfile = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = // `python -m` rather than the bin/moto_server script: the venv is built in a temporary
    // directory and renamed into place, which leaves script shebangs pointing at the old path.
    // The watchdog makes moto exit when this process is gone, however it ended (a test binary's
    // static stack is never dropped, so kill_on_drop alone would leave moto running).
    Command::new(venv.join("bin/python"))
        .args(["-c", MOTO_WITH_WATCHDOG, "-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_PORT", edge_port.to_string())
        .envs(std::env::var("ORDERFLOW_MOTO_CHECK").ok().map(|v| ("ORDERFLOW_MOTO_CHECK", v)))
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().map_err(|e| e.to_string())?)
        .stderr(logfile)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("moto_server: {e}"))?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = http.post(format!("{base}/moto-api/config")).json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}})).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("moto did not come up on {base} within 60 s; see {}", log.display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Moto { child })
}
