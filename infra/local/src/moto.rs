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
