"""Judge throughput and latency under concurrent clients, against a real server on loopback.

Usage:
  python benchmarks/judge_latency.py --model hark-runs/runs/hey_jarvis/export [--workers 2 --threads 1]
  python benchmarks/judge_latency.py --url http://127.0.0.1:8080 --key KEY

With --model it starts `hark-judge serve` (the console script) on a free loopback port and
stops it at the end. Each level of --concurrency sends --requests POST /v1/verify of the
same --clip-seconds WAV (16 kHz mono 16-bit, like a sentry's clip), each client thread on
its own keep-alive connection, and stops early after --level-limit-s seconds (the row then
says so). Prints a table (throughput, client-side p50/p95/p99 latency, errors, CPU-ms per
request of the server's processes and of this client) and writes JSON to
benchmarks/out/judge_latency.json, with the load average around each level.

It also times the verifier in this process on one thread (WAV decoding and scoring of the
same clip, CPU time): the server's floor per request, and a number that other work on the
machine hardly moves. The client threads run on the same machine and take CPU from the
server: on a small machine the throughput is a lower bound on what the server alone does.

Targets (issue 6): >= 100 verifications/s with p99 <= 100 ms at 8 clients, and no error
over 10,000 requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from judge.verifier import Verifier, decode_wav  # noqa: E402
from sentry.constants import SAMPLE_RATE  # noqa: E402
from sentry.judge_client import encode_wav  # noqa: E402

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
WARMUP_REQUESTS = 50
IN_PROCESS_REPEATS = 300
"""Verifications timed in this process for the CPU-ms figure (a few seconds)."""
PERCENTILES = (50, 95, 99)
TARGET = {"concurrency": 8, "per_second": 100.0, "p99_ms": 100.0, "requests": 10_000}
"""Issue 6's load target, checked on the row with TARGET['concurrency'] clients."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Units of utime/stime in /proc/<pid>/stat (per second)."""


def make_clip(seconds: float, seed: int = 0) -> bytes:
    """Speech-like test audio: noise with a gated 220 Hz buzz (content does not change cost)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    audio = 0.01 * rng.standard_normal(n) + 0.3 * gate * np.sin(2 * np.pi * 220 * t)
    return encode_wav(audio.astype(np.float32))


def process_tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by `pid` and its live children (Linux
    /proc); None where /proc is not available."""
    def cpu(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    try:
        total = cpu(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu(int(child))
        return total
    except (OSError, ValueError, IndexError):
        return None


def in_process_cpu_ms(model: Path, body: bytes, max_clip_s: float) -> dict:
    """CPU-ms per verification in this process, one onnxruntime thread: decode alone and
    decode + score of `body`."""
    verifier = Verifier(model, threads=1)
    for _ in range(10):
        verifier.score(decode_wav(body, max_clip_s).pcm)
    started = time.process_time()
    for _ in range(IN_PROCESS_REPEATS):
        decode_wav(body, max_clip_s)
    decode_ms = (time.process_time() - started) * 1000.0 / IN_PROCESS_REPEATS
    started = time.process_time()
    for _ in range(IN_PROCESS_REPEATS):
        verifier.score(decode_wav(body, max_clip_s).pcm)
    total_ms = (time.process_time() - started) * 1000.0 / IN_PROCESS_REPEATS
    return {"decode_ms": decode_ms, "decode_and_score_ms": total_ms,
            "windows": int(verifier.window_scores(decode_wav(body, max_clip_s).pcm)[0].size)}


def hark_judge_command() -> list[str]:
    """The `hark-judge` console script of this environment."""
    script = Path(sys.executable).with_name("hark-judge")
    found = str(script) if script.exists() else shutil.which("hark-judge")
    if found is None:
        raise SystemExit("hark-judge is not installed in this environment: pip install -e '.[judge]'")
    return [found]


def start_server(model: Path, key: str, workers: int | None,
                 threads: int | None) -> tuple[subprocess.Popen, str, str]:
    """Start `hark-judge serve` on a free loopback port: (process, base URL, the
    "N worker(s) x T thread(s)" it reports)."""
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write(key + "\n")
    keys.close()
    proc = subprocess.Popen(
        [*hark_judge_command(), "serve", "--model", str(model), "--host", "127.0.0.1",
         "--port", "0", "--keys-file", keys.name,
         *(["--workers", str(workers)] if workers else []),
         *(["--threads", str(threads)] if threads else [])],
        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env={**os.environ, "HARK_JUDGE_KEYS": ""})
    line = proc.stderr.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    setup = re.search(r"\d+ worker\(s\) x \d+ thread\(s\)", line)
    if not match or not setup:
        proc.kill()
        raise SystemExit(f"the judge did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
    url = f"http://127.0.0.1:{match.group(2)}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", int(match.group(2)), timeout=1.0)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                # Every worker loads the model: give the others the time the first took.
                time.sleep(1.0)
                return proc, url, setup.group(0)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the judge never became ready")


def run_level(url: str, key: str, body: bytes, concurrency: int, n_requests: int,
              limit_s: float, server_pid: int | None) -> dict:
    """Up to n_requests spread over `concurrency` threads, for at most limit_s seconds;
    latencies in ms."""
    parsed = urllib.parse.urlsplit(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"}
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))
    deadline = time.monotonic() + limit_s

    def client() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=REQUEST_TIMEOUT_S)
        while time.monotonic() < deadline:
            with lock:
                if next(counter, None) is None:
                    break
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/verify", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                elapsed = (time.perf_counter() - started) * 1000.0
                with lock:
                    if response.status == 200:
                        latencies.append(elapsed)
                        server_ms.append(json.loads(payload)["latency_ms"])
                    else:
                        errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                                  timeout=REQUEST_TIMEOUT_S)
        conn.close()

    load_before = os.getloadavg()
    server_cpu = process_tree_cpu_s(server_pid) if server_pid else None
    client_cpu = time.process_time()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done = len(latencies) + len(errors)
    client_cpu_ms = (time.process_time() - client_cpu) * 1000.0 / max(done, 1)
    server_cpu_ms = None
    if server_cpu is not None:
        after = process_tree_cpu_s(server_pid)
        server_cpu_ms = (after - server_cpu) * 1000.0 / max(done, 1) if after is not None else None
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "requests": n_requests, "sent": done,
            "complete": done == n_requests, "ok": len(latencies), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "wall_s": wall,
            "per_second": len(latencies) / wall,
            **{f"p{p}_ms": float(np.percentile(lat, p)) for p in PERCENTILES},
            "max_ms": float(lat.max()),
            "server_p50_ms": float(np.median(server_ms)) if server_ms else None,
            "server_cpu_ms_per_request": server_cpu_ms,
            "client_cpu_ms_per_request": client_cpu_ms,
            "loadavg_1m_before": load_before[0], "loadavg_1m_after": os.getloadavg()[0]}


def target_verdict(rows: list[dict]) -> dict:
    """Whether the row with TARGET['concurrency'] clients meets issue 6's target."""
    row = next((r for r in rows if r["concurrency"] == TARGET["concurrency"]), None)
    if row is None:
        return {"checked": False, "why": f"no level with {TARGET['concurrency']} clients"}
    checks = {"per_second": row["per_second"] >= TARGET["per_second"],
              "p99_ms": row["p99_ms"] <= TARGET["p99_ms"],
              "requests": row["sent"] >= TARGET["requests"] and row["complete"],
              "errors": row["errors"] == 0}
    return {"checked": True, "met": all(checks.values()), "checks": checks, "target": TARGET}


def print_table(args, url: str, setup: str, rows: list[dict], local: dict | None,
                verdict: dict) -> None:
    print(f"judge {url}: {args.clip_seconds:g} s clips, {setup}, {os.cpu_count()} CPU(s)")
    if local is not None:
        print(f"in-process, one thread: decode {local['decode_ms']:.2f} CPU-ms, decode + score "
              f"({local['windows']} windows) {local['decode_and_score_ms']:.2f} CPU-ms per clip")
    print(f"{'clients':>7} {'sent':>6} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'srv p50':>7} {'srv CPU':>7} {'cli CPU':>7} {'load':>9}")
    for r in rows:
        server = f"{r['server_p50_ms']:.1f}" if r["server_p50_ms"] is not None else "-"
        cpu = (f"{r['server_cpu_ms_per_request']:.1f}"
               if r["server_cpu_ms_per_request"] is not None else "-")
        sent = f"{r['sent']}" + ("" if r["complete"] else "*")
        print(f"{r['concurrency']:>7} {sent:>6} {r['errors']:>6} {r['per_second']:>7.1f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} "
              f"{server:>7} {cpu:>7} {r['client_cpu_ms_per_request']:>7.2f} "
              f"{r['loadavg_1m_before']:>4.1f}-{r['loadavg_1m_after']:<4.1f}")
    if any(not r["complete"] for r in rows):
        print("* stopped at --level-limit-s before all requests were sent")
    print("srv CPU / cli CPU: CPU-ms per request of the server's processes / of this client; "
          "load: 1-minute load average before-after")
    if verdict["checked"]:
        t = verdict["target"]
        failed = [k for k, ok in verdict["checks"].items() if not ok]
        print(f"target at {t['concurrency']} clients (>= {t['per_second']:g}/s, p99 <= "
              f"{t['p99_ms']:g} ms, 0 errors over {t['requests']} requests): "
              + ("met" if verdict["met"] else f"NOT met ({', '.join(failed)})"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=Path, help="start a judge on this exported model")
    target.add_argument("--url", help="benchmark a running judge instead")
    parser.add_argument("--key", help="API key for --url")
    parser.add_argument("--workers", type=int, default=None,
                        help="server worker processes (default: the server's, one per core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="request threads per worker (default: the server's, 1)")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per level")
    parser.add_argument("--level-limit-s", type=float, default=300.0,
                        help="stop a level after this many seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "judge_latency.json")
    args = parser.parse_args()

    body = make_clip(args.clip_seconds)
    proc, local, setup = None, None, "server setup unknown"
    if args.model:
        local = in_process_cpu_ms(args.model, body, max_clip_s=max(10.0, args.clip_seconds))
        key = secrets.token_urlsafe(24)
        proc, url, setup = start_server(args.model, key, args.workers, args.threads)
    else:
        if not args.key:
            parser.error("--url needs --key")
        url, key = args.url.rstrip("/"), args.key
    server_pid = proc.pid if proc is not None else None
    try:
        run_level(url, key, body, max(args.concurrency), WARMUP_REQUESTS, args.level_limit_s, None)
        rows = [run_level(url, key, body, c, args.requests, args.level_limit_s, server_pid)
                for c in args.concurrency]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT_S)

    verdict = target_verdict(rows)
    print_table(args, url, setup, rows, local, verdict)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "url": url,
        "model": str(args.model) if args.model else None,
        "clip_seconds": args.clip_seconds, "server_setup": setup,
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "in_process": local, "target": verdict, "levels": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
