#!/usr/bin/env python3
"""Cold start of every function's release binary against a hello-world lambda_runtime binary, on this
machine, the way Lambda starts a `provided.al2023` function: the binary is started with the function's
settings (the local stack's env file, as `cargo lambda watch` uses it) and AWS_LAMBDA_RUNTIME_API
pointing at an emulated Runtime API here; its cold start is the time from exec to its first
`GET /2018-06-01/runtime/invocation/next` (Lambda's Init phase). Each binary is started RUNS times; the
median is reported with its ratio to hello world (#11 item 3 asks for 1.5x at most).

usage: coldstart.py <release dir> <hello-world binary> <env file> [functions...]
"""
import http.server, os, shlex, socketserver, statistics, subprocess, sys, threading, time

RUNS = 41
first_next = {}
lock = threading.Lock()


class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            with lock:
                first_next.setdefault("t", time.perf_counter())
            # Hold the request: the measurement ends here; the process is killed next.
            time.sleep(5)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def env_file(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = shlex.split(v)[0] if v else ""
    return env


def cold_start(binary, name, base_env, port, extra=None):
    env = dict(base_env)
    env.update(extra or {})
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "_HANDLER": "bootstrap", "LAMBDA_TASK_ROOT": os.path.dirname(binary), "PATH": os.environ.get("PATH", ""),
    })
    with lock:
        first_next.clear()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < 10:
        with lock:
            if "t" in first_next:
                break
        if p.poll() is not None:
            break
        time.sleep(0.0005)
    p.kill()
    p.wait()
    with lock:
        return (first_next["t"] - t0) * 1000 if "t" in first_next else None


def main():
    release, hello, envf = sys.argv[1:4]
    names = sys.argv[4:]
    base = env_file(envf)
    srv = Server(("127.0.0.1", 0), Runtime)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]

    # Interleaved rounds (hello world, then each function, RUNS times over): a slow spell on this
    # machine then weighs on every binary alike instead of on whichever was being measured.
    # The baseline is hello world as `#[tokio::main]` builds it; the same binary on the current-thread
    # runtime (what our functions use) is measured alongside, for reference.
    ct = {"HELLO_RUNTIME": "current_thread"}
    todo = [("hello_world", hello, None), ("hello_world_current_thread", hello, ct)]
    todo += [(n, os.path.join(release, n), None) for n in names if os.path.exists(os.path.join(release, n))]
    for n in names:
        if not os.path.exists(os.path.join(release, n)):
            print(f"[coldstart] {n:<22} no release binary (build it first)")
    times = {n: [] for n, _, _ in todo}
    for _ in range(RUNS):
        for n, b, extra in todo:
            t = cold_start(b, n, base, port, extra)
            if t is not None:
                times[n].append(t)
    if not times["hello_world"]:
        print("[coldstart] the hello-world binary did not reach the Runtime API")
        return
    base_ms = statistics.median(times["hello_world"])
    print(f"[coldstart] hello world (lambda_runtime, release): {base_ms:.1f} ms (median of {RUNS}, interleaved with the functions)")
    if times["hello_world_current_thread"]:
        ct_ms = statistics.median(times["hello_world_current_thread"])
        print(f"[coldstart] hello world on the current-thread runtime (for reference): {ct_ms:.1f} ms, {ct_ms / base_ms:.1f}x")
    worst = 0.0
    for name, binary, _ in todo[2:]:
        if not times[name]:
            print(f"[coldstart] {name:<22} did not reach the Runtime API (init failed)")
            continue
        ms = statistics.median(times[name])
        ratio = ms / base_ms
        worst = max(worst, ratio)
        print(f"[coldstart] {name:<22} {ms:7.1f} ms  {ratio:4.1f}x hello world  ({os.path.getsize(binary) / 1048576:.1f} MB)")
    print(f"[coldstart] slowest: {worst:.1f}x hello world (goal: 1.5x)")


if __name__ == "__main__":
    main()
