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
# An answer goes out in several writes (status and headers, then the body): on a kept connection
# Nagle's algorithm holds the body until the client's delayed ACK (~40 ms a call) unless it is off.
_H.disable_nagle_algorithm = True
# Werkzeug's development server answers every request with `Connection: close` (its comment: Python's
# http.server cannot drain a body before the next request line), so every call to moto was a new
# TCP connection and a new thread: ~30% of moto's busy time under the bench (py-spy), ~65 new
# connections a second. Here a request's body is counted as the app reads it and whatever is left
# is read before the next request, so the connection is kept; the drain werkzeug does instead
# (a 10 ms select after every answer) is skipped.
import types as _types
import werkzeug.serving as _ws
class _CountedBody:
    def __init__(self, raw, length):
        self.raw, self.left = raw, length
    def _took(self, data):
        self.left -= len(data)
        return data
    def read(self, n=-1):
        if self.left <= 0:
            return b""
        return self._took(self.raw.read(self.left if n is None or n < 0 else min(n, self.left)))
    def readline(self, limit=-1):
        if self.left <= 0:
            return b""
        return self._took(self.raw.readline(self.left if limit is None or limit < 0 else min(limit, self.left)))
    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))
    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
    def __iter__(self):
        return iter(self.readline, b"")
    def __getattr__(self, name):
        return getattr(self.raw, name)
_make_environ = _H.make_environ
def _make_environ_counted(self):
    environ = _make_environ(self)
    length = environ.get("CONTENT_LENGTH")
    if not environ.get("wsgi.input_terminated") and length and length.isdigit():
        self._orderflow_body = _CountedBody(environ["wsgi.input"], int(length))
        environ["wsgi.input"] = self._orderflow_body
    else:
        self._orderflow_body = None
    return environ
_H.make_environ = _make_environ_counted
_send_header = _H.send_header
def _send_header_keep_alive(self, keyword, value):
    if keyword.lower() == "connection" and value.lower() == "close":
        return
    _send_header(self, keyword, value)
_H.send_header = _send_header_keep_alive
_run_wsgi = _H.run_wsgi
def _run_wsgi_then_finish_body(self):
    self._orderflow_body = None
    _run_wsgi(self)
    body = self._orderflow_body
    if body is not None and body.left > 0:
        try:
            while body.left > 0 and body.read(65536):
                pass
        except Exception:
            self.close_connection = True
    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
        self.close_connection = True
class _NoDrain:
    def register(self, *args, **kwargs):
        pass
    def select(self, timeout=None):
        return []
    def close(self):
        pass
_ws.selectors = _types.SimpleNamespace(DefaultSelector=_NoDrain, EVENT_READ=1)
_H.run_wsgi = _run_wsgi_then_finish_body
import moto.stepfunctions.parser.asl.utils.boto_client as _bc
_client_for = _bc.boto_client_for
_clients = {}
def _one_client(region, service, state_credentials=None):
    # moto's own function ignores the credentials too (it signs as "ak").
    if (region, service) not in _clients:
        _clients[(region, service)] = _client_for(region, service)
    return _clients[(region, service)]
import importlib
# (Stop 26: the Step Functions and AWS SDK integrations made one per task too: 11% of the engine
# process's interpreter time went to botocore building a client class.)
for _m in ("moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
           "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
           "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
           "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk"):
    _mod = importlib.import_module(_m)
    if hasattr(_mod, "boto_client_for"):
        _mod.boto_client_for = _one_client

# Parsing a state machine's definition (ANTLR, in Python) was ~36% of moto's busy time under the
# bench: moto parses the whole definition again for every execution. The parse tree depends only
# on the definition's text, so it is kept; the evaluation components are still built fresh per
# execution from it (they hold per-execution state, a Choice's next state for one).
from moto.stepfunctions.parser.asl.parse import asl_parser as _ap
_parse = _ap.AmazonStateLanguageParser.parse
_trees = {}
def _parse_cached(definition):
    tree = _trees.get(definition)
    if tree is None:
        program, tree = _parse(definition)
        _trees[definition] = tree
        return program, tree
    return _ap.Preprocessor().visit(tree), tree
_ap.AmazonStateLanguageParser.parse = staticmethod(_parse_cached)

# StartSyncExecution is the edge's (moto has none): it starts an execution and asks for it until it
# ends. Asked with `x-orderflow-wait-ms`, DescribeExecution answers when the execution has stopped
# (or the wait is over), so the edge learns of the end within milliseconds without a poll per 5 ms.
# Waiters are woken when any execution ends (they were polling every 3 ms: ~16% of moto's interpreter
# time with ten checkouts waiting, by py-spy).
from moto.stepfunctions.responses import StepFunctionResponse as _SFR
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication as _Comm
_ended = threading.Condition()
_terminated = _Comm.terminated
def _terminated_notify(self):
    _terminated(self)
    with _ended:
        _ended.notify_all()
_Comm.terminated = _terminated_notify
def _wait_until_stopped(status, seconds):
    end = time.time() + seconds
    with _ended:
        while True:
            try:
                st = status()
            except Exception:
                return
            left = end - time.time()
            if str(getattr(st, "value", st)) != "RUNNING" or left <= 0:
                return
            _ended.wait(min(left, 0.25))
_describe = _SFR.describe_execution
def _describe_waiting(self):
    wait = float(self.headers.get("x-orderflow-wait-ms") or 0) / 1000
    if wait > 0:
        arn = self._get_param("executionArn")
        _wait_until_stopped(lambda: self.stepfunction_backend.describe_execution(arn).status, min(wait, 30))
    return _describe(self)
_SFR.describe_execution = _describe_waiting

# TransactWriteItems deep-copied every table it touched before each transaction, to roll back on a
# cancel: a third of moto's time under the bench, growing with the tables. DynamoDB checks every
# condition against the state before the transaction (no two actions share an item), so the checks
# run first and a cancel writes nothing; only when all pass are the writes made, with the touched
# items (not tables) kept to restore should a write itself fail.
import moto.dynamodb.models as _ddbm
from moto.dynamodb import exceptions as _ddbx
def _transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise _ddbx.TooManyTransactionsException()
    seen, plan, errors = set(), [], []
    for item in transact_items:
        if len(list(item.keys())) > 1:
            raise _ddbx.TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        original_item = None
        try:
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            if op_type == "Put":
                table = self.get_table(table_name)
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            marker = (str(table_name), str(dict(sorted(key.items()))))
            if marker in seen:
                raise _ddbx.MultipleTransactionsException()
            seen.add(marker)
            current = self.get_item(table_name, key)
            cond = op.get("ConditionExpression")
            if cond is not None:
                check = _ddbm.get_filter_expression(cond, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues"))
                if not check.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise _ddbx.ConditionalCheckFailed(item=original_item)
            plan.append((op_type, op, table_name, key, current.to_json()["Attributes"] if current else None))
            errors.append((None, None, None))
        except (_ddbx.MultipleTransactionsException, _ddbx.MockValidationException):
            raise
        except _ddbx.ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        raise _ddbx.TransactionCanceledException(errors)
    done = []
    try:
        for op_type, op, table_name, key, before in plan:
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(table_name, op["Item"], expression_attribute_names=names, expression_attribute_values=values)
            elif op_type == "Delete":
                self.delete_item(table_name, key, expression_attribute_names=names, expression_attribute_values=values)
            elif op_type == "Update":
                self.update_item(table_name, key, update_expression=op["UpdateExpression"], expression_attribute_names=names, expression_attribute_values=values)
            done.append((table_name, key, before))
    except Exception as e:
        for table_name, key, before in reversed(done):
            if before is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before)
        raise _ddbx.TransactionCanceledException([(type(e).__name__, str(e), None)] * len(transact_items))
_ddbm.DynamoDBBackend.transact_write_items = _transact_write_items

# DynamoDB checks a write's condition and applies it atomically per item, and a transaction as one;
# moto checks and applies in two steps without a lock (two concurrent refunds could both pass their
# condition). One lock around the backend's writes makes each atomic (moto's work runs under the GIL
# anyway); since stop 24 every DynamoDB request holds it too (below), so these wrappers only matter
# for a write that does not come through a request.
_write_lock = threading.RLock()
def _atomic(fn):
    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with _write_lock:
            return fn(*args, **kwargs)
    return locked
for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(_ddbm.DynamoDBBackend, _name, _atomic(getattr(_ddbm.DynamoDBBackend, _name)))
# A read must see an item as one write left it, as DynamoDB's reads do: moto's UpdateItem applies its
# actions one by one to the stored item, and a read hands out that live item, serialized after the
# backend returns. A GetItem between two actions saw `status` set and `status_reason` not yet
# (a CI run's FAILED order without its reason). Each DynamoDB request, answer included, holds the lock.
from moto.dynamodb.responses import DynamoHandler as _DH
_DH.call_action = _atomic(_DH.call_action)

# A Task with `.sync` (the lifecycle's RunParcel waits for a parcel's Express execution) asks for
# the child's status over HTTP every 0.5 s in moto; AWS learns of the end from an event within
# milliseconds. Here each ask first waits in-process (reading the execution's status, no request)
# until the child stops or a second passes, so the parent goes on as soon as the child ends
# and a waiting parent makes about one request a second (a 20 ms HTTP poll from every waiting
# parcel slowed the whole stack under the bench).
import moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback as _cb
from moto.stepfunctions.responses import get_backend as _sfn_backend
_cb._DELAY_SECONDS_SYNC_CONDITION_CHECK = 0.005
def _until_stopped(arn, seconds):
    try:
        parts = arn.split(":")
        backend = _sfn_backend(parts[4], parts[3])
    except Exception:
        return
    _wait_until_stopped(lambda: backend.describe_execution(arn).status, seconds)
# moto's Step Functions integration (`arn:aws:states:::states:startExecution...`) hands the state's
# parameters to boto3 as the ASL spells them (`StateMachineArn`, boto3 wants `stateMachineArn`) and
# reads boto3's answers as ASL spells them (`ExecutionArn`, `Output`): every such task failed with
# States.Runtime. The names are converted both ways, as AWS's integration does (its `.sync:2`
# output is the DescribeExecution answer in PascalCase with `Output` as JSON).
import moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn as _sfn
def _pascal(d):
    if isinstance(d, dict):
        for k in [k for k in d if k[:1].islower()]:
            d[k[0].upper() + k[1:]] = d.pop(k)
_sfn_params = _sfn.StateTaskServiceSfn._normalise_parameters
def _sfn_params_boto(self, parameters, boto_service_name=None, service_action_name=None):
    _sfn_params(self, parameters, boto_service_name=boto_service_name, service_action_name=service_action_name)
    if service_action_name is None:
        for k in [k for k in parameters if k[:1].isupper()]:
            parameters[k[0].lower() + k[1:]] = parameters.pop(k)
_sfn.StateTaskServiceSfn._normalise_parameters = _sfn_params_boto
_sfn_response = _sfn.StateTaskServiceSfn._normalise_response
def _sfn_response_asl(self, response, boto_service_name=None, service_action_name=None):
    _sfn_response(self, response, boto_service_name=boto_service_name, service_action_name=service_action_name)
    _pascal(response)
_sfn.StateTaskServiceSfn._normalise_response = _sfn_response_asl
_sfn_task = _sfn.StateTaskServiceSfn._eval_service_task
def _sfn_task_asl(self, env, *args, **kwargs):
    _sfn_task(self, env, *args, **kwargs)
    _pascal(env.stack[-1])
_sfn.StateTaskServiceSfn._eval_service_task = _sfn_task_asl
for _kind in ("_build_sync_resolver", "_build_sync2_resolver"):
    def _waiting(build):
        def build_waiting(self, env, *args, **kwargs):
            arn = env.stack[-1].get("ExecutionArn") if env.stack and isinstance(env.stack[-1], dict) else None
            resolve = build(self, env, *args, **kwargs)
            def resolve_when_stopped():
                if arn:
                    _until_stopped(arn, 1.0)
                return resolve()
            return resolve_when_stopped
        return build_waiting
    setattr(_sfn.StateTaskServiceSfn, _kind, _waiting(getattr(_sfn.StateTaskServiceSfn, _kind)))

# The AWS SDK integrations (`arn:aws:states:::aws-sdk:sfn:sendTaskSuccess`, the parcel run's EndWait)
# take the API's member names as the API reference spells them (`TaskToken`, `Output`); moto hands
# them to boto3 unchanged, which names Step Functions' members `taskToken` and `output`, so the task
# failed with States.Runtime. Each top-level name is matched to the operation's input member
# case-insensitively (botocore's model), as AWS accepts them.
import botocore.session as _bs
from botocore import xform_name as _xform
import moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk as _awssdk
_members = {}
def _sdk_params_boto(self, parameters, boto_service_name=None, service_action_name=None):
    service = self._get_boto_service_name(boto_service_name)
    action = self._get_boto_service_action(service_action_name)
    if (service, action) not in _members:
        model = _bs.get_session().get_service_model(service)
        names = {}
        for op in model.operation_names:
            if _xform(op) == action:
                shape = model.operation_model(op).input_shape
                names = {m.lower(): m for m in (shape.members if shape else {})}
        _members[(service, action)] = names
    names = _members[(service, action)]
    for k in list(parameters):
        if k.lower() in names and names[k.lower()] != k:
            parameters[names[k.lower()]] = parameters.pop(k)
_awssdk.StateTaskServiceAwsSdk._normalise_parameters = _sdk_params_boto

# SendTaskSuccess and SendTaskHeartbeat look for the token in every running execution, and one that
# is starting (its worker's environment not made yet) failed the whole call with a 500
# (AttributeError on `exec_worker.env`); a starting execution waits on no token, so it is skipped.
import moto.stepfunctions.parser.models as _sfnp
_running = _sfnp.StepFunctionsParserBackend._get_executions
def _ready_executions(self, execution_status=None):
    return [e for e in _running(self, execution_status) if getattr(getattr(e, "exec_worker", None), "env", None) is not None or execution_status is None]
_sfnp.StepFunctionsParserBackend._get_executions = _ready_executions

# A callback task's heartbeat clock is set up only after its Lambda invocation returns; a heartbeat
# in between (a warehouse answering a pick list before send_pick_list's invocation has returned) was
# answered InvalidToken, though the task is open (AWS accepts it from the task's start). An open task
# without a heartbeat clock yet accepts the heartbeat.
import moto.stepfunctions.parser.asl.eval.callback.callback as _cbk
_notify_heartbeat = _cbk.CallbackEndpoint.notify_heartbeat
def _notify_heartbeat_open(self):
    if getattr(self, "_heartbeat_endpoint", None) is None:
        return self.get_outcome() is None
    return _notify_heartbeat(self)
_cbk.CallbackEndpoint.notify_heartbeat = _notify_heartbeat_open

# The engine built a new JSONPath parser (jsonpath_ng's yacc tables, read afresh) for every path it
# evaluated: ~20% of the engine process's interpreter time under the bench (py-spy --gil). A parsed
# path is a tree that `find` and `update` only read, so one per path text is kept.
import moto.stepfunctions.parser.asl.utils.json_path as _jp
import moto.stepfunctions.parser.asl.component.common.path.result_path as _rp
_jp.parse = functools.lru_cache(maxsize=4096)(_jp.parse)
_rp.parse = functools.lru_cache(maxsize=4096)(_rp.parse)

# A Query of a table itself (not an index) took its partition's items from `all_items()`: every item
# of the table, sorted, for one partition. The velocity table grows with every order, so each
# checkout's card and email counts got slower as the stack ran (the bench's checkouts/s fell with the
# orders placed before them). The query now sees only the partition's items, which are the ones it
# kept anyway; DynamoDB requests hold the write lock (above), so no other request sees the swap.
from moto.dynamodb.models.table import Table as _Table
_table_query = _Table.query
def _query_one_partition(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is not None or hash_key is None:
        return _table_query(self, hash_key, *args, **kwargs)
    part = self.items.get(hash_key)
    if part is None:
        items = []
    elif self.range_key_attr:
        items = list(part.values())
    else:
        items = [part]
    items.sort(key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
    self.all_items = lambda: items
    try:
        return _table_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items
_Table.query = _query_one_partition

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
