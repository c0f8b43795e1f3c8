"""Judge throughput and latency under concurrent clients, against a real server on loopback.

Usage:
  python benchmarks/judge_latency.py --model hark-runs/runs/hey_jarvis/export [--workers 2]
  python benchmarks/judge_latency.py --url http://127.0.0.1:8080 --key KEY

With --model it starts `hark-judge serve` (python -m judge.cli) on a free loopback port
and stops it at the end. Each level of --concurrency runs --requests POST /v1/verify
of the same --clip-seconds WAV (16 kHz mono 16-bit, a sentry's clip), each client
thread on its own keep-alive connection. Prints a table (throughput, client-side
p50/p95/p99 latency, errors) and writes JSON to benchmarks/out/judge_latency.json.
The client threads run on the same machine and take CPU from the server: on a small
machine the numbers are a lower bound on what the server alone can do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
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

from sentry.constants import SAMPLE_RATE  # noqa: E402
from sentry.judge_client import encode_wav  # noqa: E402

START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
WARMUP_REQUESTS = 20
PERCENTILES = (50, 95, 99)


def make_clip(seconds: float, seed: int = 0) -> bytes:
    """Speech-like test audio: noise with a gated 220 Hz buzz (content does not change cost)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    audio = 0.01 * rng.standard_normal(n) + 0.3 * gate * np.sin(2 * np.pi * 220 * t)
    return encode_wav(audio.astype(np.float32))


def start_server(model: Path, key: str, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write(key + "\n")
    keys.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "judge.cli", "serve", "--model", str(model), "--port", "0",
         "--workers", str(workers), "--threads", str(threads), "--keys-file", keys.name],
        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    line = proc.stderr.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    if not match:
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
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the judge never became ready")


def run_level(url: str, key: str, body: bytes, concurrency: int, n_requests: int) -> dict:
    """n_requests spread over `concurrency` threads; latencies in ms."""
    parsed = urllib.parse.urlsplit(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"}
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def client() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=REQUEST_TIMEOUT_S)
        while True:
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

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "requests": n_requests, "ok": len(latencies),
            "errors": len(errors), "error_kinds": sorted(set(errors)), "wall_s": wall,
            "per_second": len(latencies) / wall,
            **{f"p{p}_ms": float(np.percentile(lat, p)) for p in PERCENTILES},
            "max_ms": float(lat.max()),
            "server_p50_ms": float(np.median(server_ms)) if server_ms else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=Path, help="start a judge on this exported model")
    target.add_argument("--url", help="benchmark a running judge instead")
    parser.add_argument("--key", help="API key for --url")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300, help="requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "judge_latency.json")
    args = parser.parse_args()

    proc = None
    if args.model:
        key = secrets.token_urlsafe(24)
        proc, url = start_server(args.model, key, args.workers, args.threads)
    else:
        if not args.key:
            parser.error("--url needs --key")
        url, key = args.url.rstrip("/"), args.key
    body = make_clip(args.clip_seconds)
    try:
        run_level(url, key, body, 1, WARMUP_REQUESTS)
        rows = [run_level(url, key, body, c, args.requests) for c in args.concurrency]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    print(f"judge {url}: {args.clip_seconds:g} s clips, {args.requests} requests per level, "
          f"{args.workers} worker(s) x {args.threads} thread(s), {os.cpu_count()} CPU(s)")
    print(f"{'clients':>7} {'ok':>6} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'server p50':>10}")
    for r in rows:
        server = f"{r['server_p50_ms']:.1f}" if r["server_p50_ms"] is not None else "-"
        print(f"{r['concurrency']:>7} {r['ok']:>6} {r['errors']:>6} {r['per_second']:>7.1f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} "
              f"{server:>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(sys.argv), "url": url, "model": str(args.model) if args.model else None,
        "clip_seconds": args.clip_seconds, "workers": args.workers, "threads": args.threads,
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "levels": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
