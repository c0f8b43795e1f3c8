"""Reliability under hostile input and hostile networks, against real processes on loopback.

Usage:
  python benchmarks/reliability.py              # the full run (issue 23's figures; ~10 min)
  python benchmarks/reliability.py --quick      # the same five runs, shrunk (~2 min)
  python benchmarks/reliability.py --only fuzz,slow-client --model DIR

Five runs, each counting requests, 5xx answers, hangs and lost hits:

  fuzz         --fuzz malformed requests to a real `hark-judge serve`: random methods,
               paths, headers and bodies (random bytes, truncated and mutated WAVs), and
               raw protocol garbage on the socket. A hang: no answer in HANG_S seconds.
  load         --load valid verifications from --clients keep-alive clients: errors, and
               the server's memory (RSS) before and after.
  slow-client  --slow-sockets connections trickling a request head one line a second
               at a judge started with --max-connections below that: how fast /healthz
               answers (200, or the full judge's 503), and whether the judge serves again
               once its --request-timeout has shed them.
  slow-judge   a loopback judge that trickles its answer a byte at a time, asked by
               JudgeClient directly (longest call against its deadline) and through the
               listen loop's JudgeGate on a stream with --wake-words wake words
               (fail-open: all must be emitted; undecided ones are counted).
  miner        `hark mine` on synthesised recordings, SIGKILLed at --kills random points
               and resumed, against an uninterrupted run: lost and extra hits.

The judge runs the tests' closed-form tone model (tests/unit/judge/conftest.py, a
960 Hz tone scores ~1; built in a temp folder) unless --model names an exported
folder; the tone model also drives the listen loop and the miner, so every count is
deterministic and the run needs no trained model. Prints a table and writes
benchmarks/out/reliability.json. Issue 23's bar: 0 x 5xx, 0 hangs, 0 lost hits.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import io
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sentry.constants import SAMPLE_RATE  # noqa: E402
from sentry.judge_client import BreakerState, JudgeClient, encode_wav  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "out" / "reliability.json"
HANG_S = 10.0
"""Seconds without an answer that count as a hang."""
START_TIMEOUT_S = 60.0
FULL = {"fuzz": 2000, "load": 10_000, "clients": 8, "slow_sockets": 300, "max_connections": 256,
        "kills": 10, "mine_files": 4, "mine_minutes": 6.0, "wake_words": 8}
QUICK = {"fuzz": 300, "load": 1000, "clients": 8, "slow_sockets": 40, "max_connections": 32,
         "kills": 3, "mine_files": 2, "mine_minutes": 2.0, "wake_words": 8}
RUNS = ("fuzz", "load", "slow-client", "slow-judge", "miner")


def _test_module(relative: str, name: str):
    """A module of the test suite, loaded from its file (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture():
    """The judge tests' closed-form model builder (features, classifier and clip graphs)."""
    return _test_module("tests/unit/judge/conftest.py", "hark_bench_judge_fixture")


class Judge:
    """`hark-judge serve` on a free loopback port, one worker, with a fresh key."""

    def __init__(self, model: Path, *extra: str) -> None:
        self.key = secrets.token_hex(16)
        self._keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        self._keys.write(self.key + "\n")
        self._keys.close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "judge.cli", "serve", "--model", str(model), "--port", "0",
             "--workers", "1", "--keys-file", self._keys.name, *extra],
            stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HARK_JUDGE_KEYS": ""})
        line = self.proc.stderr.readline()
        match = re.search(r"http://[\d.]+:(\d+)", line)
        if not match:
            self.proc.kill()
            raise SystemExit(f"the judge did not start: {line}{self.proc.stderr.read()}")
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        until = time.monotonic() + START_TIMEOUT_S
        while request(self.port, "GET", "/readyz")[0] != 200:
            if time.monotonic() > until or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("the judge never became ready: " + "".join(self.log))
            time.sleep(0.1)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        os.unlink(self._keys.name)
        return code


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, timeout: float = HANG_S) -> tuple[int | None, bytes]:
    """(status, body) on a fresh connection; status None when there was no answer in
    `timeout` seconds (a hang), 0 when the connection failed or was cut."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except TimeoutError:
        return None, b""
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = HANG_S) -> tuple[int | None, bytes]:
    """Send raw bytes, half-close, read until the server closes: (status or 0, answer);
    None on a hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return None, b""
        except OSError:
            return 0, b""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match.group(1)) if match else 0), answer


# ------------------------------------------------------------------ fuzz

def _mutated_wav(rng: random.Random, wavs: list[bytes]) -> bytes:
    wav = bytearray(rng.choice(wavs))
    kind = rng.choice(["truncate", "flip", "field"])
    if kind == "truncate":
        return bytes(wav[:rng.randrange(len(wav) + 1)])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            wav[rng.randrange(min(64, len(wav)))] = rng.randrange(256)
        return bytes(wav)
    offset, fmt = rng.choice([(4, "<I"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"),
                              (34, "<H"), (40, "<I")])
    limit = 2 ** (8 * struct.calcsize(fmt)) - 1
    value = rng.choice([0, 1, 7, 192_000, 4_000_000_000, limit, rng.randrange(limit + 1)])
    wav[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, min(value, limit))
    return bytes(wav)


def _fuzz_request(rng: random.Random, key: str, wavs: list[bytes]) -> tuple:
    """(method, path, body, headers) of one malformed request, mostly aimed at /v1/verify
    with the right key so that it reaches decoding rather than stopping at the router."""
    method = rng.choice(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
    path = rng.choice(["/v1/verify"] * 6 + ["/v1/models", "/healthz", "/nope", "/v1/verify?x=1",
                                             "/v1/verify?sentry_score=nan",
                                             "/v1/verify?device_id=%00%ff"])
    headers = {"Content-Type": rng.choice(["audio/wav", "text/plain", "", "\u00e9",
                                           "application/octet-stream"])}
    auth = rng.choice(["key", "key", "wrong", "none", "latin-1"])
    if auth != "none":
        headers["Authorization"] = {"key": f"Bearer {key}", "wrong": "Bearer " + "x" * 32,
                                    "latin-1": "Bearer \u00ff\u00fe"}[auth]
    body = (bytes(rng.randrange(256) for _ in range(rng.randrange(2048)))
            if rng.random() < 0.3 else _mutated_wav(rng, wavs))
    return method, path, body, headers


def fuzz_run(model: Path, n: int, wavs: list[bytes], seed: int = 23) -> dict:
    rng = random.Random(seed)
    judge = Judge(model, "--max-body-bytes", str(256 * 1024))
    statuses: dict[str, int] = {}
    hangs = server_errors = not_json = 0
    try:
        for _ in range(n):
            if rng.random() < 0.15:  # protocol garbage straight on the socket
                data = rng.choice([
                    bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),
                    b"GET /" + b"a" * rng.randrange(70_000) + b" HTTP/1.1\r\n\r\n",
                    b"POST /v1/verify HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                    b"POST /v1/verify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                    b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
                    b"\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n"])
                status, answer = raw_exchange(judge.port, data)
                body = answer.partition(b"\r\n\r\n")[2]
            else:
                status, body = request(judge.port, *_fuzz_request(rng, judge.key, wavs))
            # "closed": the server hung up without an HTTP answer (on raw garbage)
            key = "hang" if status is None else "closed" if status == 0 else str(status)
            statuses[key] = statuses.get(key, 0) + 1
            if status is None:
                hangs += 1
            elif status >= 500:
                server_errors += 1
            elif status >= 400 and body:
                try:
                    json.loads(body)
                except ValueError:
                    not_json += 1
        alive = request(judge.port, "GET", "/healthz")[0] == 200
    finally:
        code = judge.stop()
    return {"requests": n, "5xx": server_errors, "hangs": hangs, "errors_not_json": not_json,
            "statuses": dict(sorted(statuses.items())), "alive_after": alive,
            "exit_code": code, "tracebacks": sum("Traceback" in line for line in judge.log)}


# ------------------------------------------------------------------ load

def load_run(model: Path, n: int, clients: int, clip: bytes) -> dict:
    judge = Judge(model)
    headers = {"Authorization": f"Bearer {judge.key}", "Content-Type": "audio/wav"}
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[str] = []
    slowest = [0.0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", judge.port, timeout=HANG_S)
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            started = time.monotonic()
            try:
                conn.request("POST", "/v1/verify", body=clip, headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or "verified" not in json.loads(body):
                    errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", judge.port, timeout=HANG_S)
            with lock:
                slowest[0] = max(slowest[0], time.monotonic() - started)
        conn.close()

    try:
        warm = [request(judge.port, "POST", "/v1/verify", clip, headers) for _ in range(50)]
        rss_before = judge.rss_mb()
        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        rss_after = judge.rss_mb()
    finally:
        code = judge.stop()
    return {"requests": n, "clients": clients, "5xx": sum(e.startswith("HTTP 5") for e in errors),
            "errors": len(errors), "hangs": sum(e == "TimeoutError" for e in errors),
            "warmup_ok": sum(s == 200 for s, _ in warm), "per_second": round(n / wall, 1),
            "slowest_ms": round(slowest[0] * 1000, 1), "rss_before_mb": round(rss_before, 1),
            "rss_after_mb": round(rss_after, 1), "rss_growth_mb": round(rss_after - rss_before, 1),
            "exit_code": code}


# ------------------------------------------------------------------ slow clients

def slow_client_run(model: Path, n_sockets: int, max_connections: int, clip: bytes,
                    request_timeout_s: int = 5, probes: int = 10) -> dict:
    judge = Judge(model, "--max-connections", str(max_connections),
                  "--request-timeout", str(request_timeout_s))
    socks: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        line = 0
        while not stop.wait(1.0):
            line += 1
            for sock in socks:
                try:
                    sock.send(f"X-Line-{line}: typing\r\n".encode())
                except OSError:
                    pass

    try:
        for _ in range(n_sockets):
            sock = socket.create_connection(("127.0.0.1", judge.port), timeout=HANG_S)
            sock.setblocking(False)
            try:
                sock.send(b"POST /v1/verify HTTP/1.1\r\nHost: judge\r\n")
            except OSError:
                pass
            socks.append(sock)
        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        time.sleep(1.0)
        answers, times = [], []
        for _ in range(probes):  # while the crowd holds every slot
            started = time.monotonic()
            status, _ = request(judge.port, "GET", "/healthz")
            times.append(time.monotonic() - started)
            answers.append("hang" if status is None else str(status))
            time.sleep(0.1)
        time.sleep(request_timeout_s + 3.0)  # the request timeout sheds the crowd
        after = request(judge.port, "GET", "/healthz")[0]
        verify = request(judge.port, "POST", "/v1/verify", clip,
                         {"Authorization": f"Bearer {judge.key}", "Content-Type": "audio/wav"})[0]
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        code = judge.stop()
    return {"requests": probes + 2, "slow_sockets": n_sockets, "max_connections": max_connections,
            "5xx_other_than_503": sum(a.isdigit() and int(a) >= 500 and a != "503" for a in answers),
            "hangs": answers.count("hang"),
            "healthz_during": {a: answers.count(a) for a in sorted(set(answers))},
            "healthz_max_ms": round(max(times) * 1000, 1), "healthz_after": after,
            "verify_after": verify, "exit_code": code}


# ------------------------------------------------------------------ slow judge

TRICKLE_EVERY_S = 0.2
"""Seconds between the trickling judge's bytes."""


def slow_judge_run(model: Path, calls: int, wake_words: int, fixture) -> dict:
    from sentry.daemon import Listener, StdinSource
    from sentry.detector import Detector
    from sentry.judge_gate import JudgeGate

    # The client tests' judge that reads the request, then trickles an endless header.
    trickle = _test_module("tests/unit/sentry/test_judge_deadline.py",
                           "hark_bench_trickle").TrickleJudge(every_s=TRICKLE_EVERY_S)
    try:
        client = JudgeClient(trickle.url, timeout_s=1.0, retries=0, breaker_failures=10**6)
        durations = []
        for _ in range(calls):
            started = time.monotonic()
            verdict = client.verify_pcm(np.zeros(SAMPLE_RATE, np.float32))
            durations.append(time.monotonic() - started)
            assert verdict.source == "policy"
        # The listen loop: wake words 4 s apart, each a 0.9 s tone: the tone model scores
        # over 0.5 while over half its 1.5 s window is tone, 0.9 s, under the 1 s refractory.
        starts = [1.0 + 4.0 * i for i in range(wake_words)]
        audio = np.concatenate([fixture.make_clip(4.0, (0.0, 0.9), seed=i) for i in range(wake_words)]
                               + [fixture.make_clip(3.0, None, seed=99)])
        pcm = np.round(np.clip(np.concatenate([fixture.make_clip(1.0, None, seed=98), audio]), -1, 1)
                       * 32767).astype("<i2").tobytes()
        gated = JudgeClient(trickle.url, timeout_s=0.5, retries=1, breaker_failures=3)
        emitted = []
        gate = JudgeGate(gated, lambda detection, verdict: emitted.append(detection))
        stats = Listener(Detector(model), StdinSource(io.BytesIO(pcm)), gate.on_detection,
                         on_audio=gate.on_audio).run()
        outcome = gate.close()
    finally:
        trickle.close()
    deadline = client.deadline_s
    return {"requests": calls + outcome.submitted, "calls": calls, "deadline_s": deadline,
            "max_call_s": round(max(durations), 3), "hangs": sum(d > deadline + 0.5 for d in durations),
            "5xx": 0, "wake_words": len(starts), "detections": stats.detections,
            "emitted_fail_open": len(emitted), "lost_hits": stats.detections - len(emitted),
            "undecided": outcome.undecided, "breaker": gated.breaker.state.value,
            "breaker_opened": gated.breaker.state is not BreakerState.CLOSED,
            "judge_connections": trickle.connections}


# ------------------------------------------------------------------ miner

def _recordings(folder: Path, files: int, minutes: float, fixture) -> Path:
    import soundfile as sf

    rec = folder / "rec"
    rec.mkdir(parents=True)
    for f in range(files):
        rng = np.random.default_rng(1000 + f)
        seconds = minutes * 60
        audio = fixture.make_clip(seconds, None, seed=f)
        t = np.arange(audio.size) / SAMPLE_RATE
        for start in np.sort(rng.uniform(0, seconds - 2, int(seconds / 8))):  # a tone every ~8 s
            on = (t >= start) & (t < start + rng.uniform(0.8, 1.8))
            audio[on] += 0.5 * np.sin(2 * np.pi * fixture.TONE_HZ * t[on])
        sf.write(rec / f"rec{f}.wav", np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    return rec


def _mine(session: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.cli", "mine", str(session), *args, "--no-progress"]


def _hits(session: Path) -> list[tuple]:
    data = json.loads(session.read_text())
    return [(h["source"], h["peak_hop"], h["score"], h["offset_s"]) for h in data["hits"]]


def _wait_for_commit(session: Path, proc: subprocess.Popen) -> None:
    """Until a starting miner has saved progress in `session` (or ended)."""
    while proc.poll() is None:
        try:
            data = json.loads(session.read_text())
            if data["state"] == "complete" or data["position"]["file"] or data["position"]["hop"]:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)


def miner_run(model: Path, kills: int, files: int, minutes: float, fixture, seed: int = 23) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        rec = _recordings(Path(tmp), files, minutes, fixture)
        options = ["--model", str(model), "--threshold", "0.5", "--merge-gap", "0.5"]
        reference = Path(tmp) / "ref.json"
        proc = subprocess.Popen(_mine(reference, str(rec), *options), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
        _wait_for_commit(reference, proc)
        started = time.monotonic()
        if proc.wait() != 0:
            raise SystemExit("the uninterrupted `hark mine` run failed")
        scan_s = time.monotonic() - started  # after start-up: where kills can land mid-run
        want = _hits(reference)
        session = Path(tmp) / "killed.json"
        rng = random.Random(seed)
        interrupted = 0
        for k in range(kills):
            cmd = (_mine(session, "--resume") if session.exists()
                   else _mine(session, str(rec), *options))
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env, cwd=REPO_ROOT)
            _wait_for_commit(session, proc)
            # Spread the kills over the run: each resumed run has less left to do.
            time.sleep(rng.uniform(0.0, 1.0) * scan_s / (kills + 1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            if session.exists() and json.loads(session.read_text())["state"] != "complete":
                interrupted += 1
        cmd = _mine(session, "--resume") if session.exists() else _mine(session, str(rec), *options)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        got = _hits(session) if done.returncode == 0 else []
    lost = len([h for h in want if h not in got])
    extra = len([h for h in got if h not in want])
    return {"requests": kills, "5xx": 0, "hangs": 0, "kills": kills,
            "kills_mid_run": interrupted, "audio_min": files * minutes,
            "uninterrupted_scan_s": round(scan_s, 1), "hits": len(want), "hits_after": len(got),
            "lost_hits": lost, "extra_hits": extra, "resume_exit": done.returncode}


# ------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Shrunk sizes: a couple of minutes.")
    parser.add_argument("--only", default=",".join(RUNS), help=f"Comma-separated subset of {RUNS}.")
    parser.add_argument("--model", type=Path, default=None,
                        help="Exported model folder for the judge (default: the tests' tone model).")
    for name in FULL:
        parser.add_argument("--" + name.replace("_", "-"), type=int if name != "mine_minutes" else float,
                            default=None, help=f"default {FULL[name]} ({QUICK[name]} with --quick)")
    args = parser.parse_args()
    sizes = {name: getattr(args, name) if getattr(args, name) is not None
             else (QUICK if args.quick else FULL)[name] for name in FULL}
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(RUNS)
    if unknown:
        parser.error(f"unknown run(s) {sorted(unknown)}; pick from {RUNS}")

    logging.getLogger("sentry").setLevel(logging.ERROR)  # the policy's warnings, by design here
    fixture = _fixture()
    with tempfile.TemporaryDirectory() as tmp:
        tone_model = fixture.write_judge_model(Path(tmp) / "tone-model")
        judge_model = args.model or tone_model
        clip = encode_wav(fixture.make_clip(3.0, (1.4, 3.0)))
        wavs = [clip, encode_wav(fixture.make_clip(1.0, None)), encode_wav(fixture.make_clip(0.2, None))]
        results: dict[str, dict] = {}
        for name in only:
            started = time.monotonic()
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            if name == "fuzz":
                results[name] = fuzz_run(judge_model, sizes["fuzz"], wavs)
            elif name == "load":
                results[name] = load_run(judge_model, sizes["load"], sizes["clients"], clip)
            elif name == "slow-client":
                results[name] = slow_client_run(judge_model, sizes["slow_sockets"],
                                                sizes["max_connections"], clip)
            elif name == "slow-judge":
                results[name] = slow_judge_run(tone_model, 5, sizes["wake_words"], fixture)
            else:
                results[name] = miner_run(tone_model, sizes["kills"], sizes["mine_files"],
                                          sizes["mine_minutes"], fixture)
            results[name]["wall_s"] = round(time.monotonic() - started, 1)

    print(f"\n{'run':<12} {'requests':>9} {'5xx':>5} {'hangs':>6} {'lost hits':>10}  notes")
    for name, r in results.items():
        notes = {
            "fuzz": lambda: f"statuses {r['statuses']}, alive after: {r['alive_after']}",
            "load": lambda: (f"{r['errors']} errors, {r['per_second']}/s at {r['clients']} clients, "
                             f"RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB"),
            "slow-client": lambda: (f"{r['slow_sockets']} slow sockets > limit {r['max_connections']}: "
                                    f"/healthz {r['healthz_during']} in <= {r['healthz_max_ms']} ms; "
                                    f"after shedding: healthz {r['healthz_after']}, verify {r['verify_after']}"),
            "slow-judge": lambda: (f"max call {r['max_call_s']} s (deadline {r['deadline_s']} s); "
                                   f"{r['emitted_fail_open']}/{r['detections']} wake words emitted, "
                                   f"{r['undecided']} undecided, breaker {r['breaker']}"),
            "miner": lambda: (f"{r['kills']} SIGKILLs ({r['kills_mid_run']} mid-run), {r['hits']} hits, "
                              f"{r['extra_hits']} extra, resume exit {r['resume_exit']}"),
        }[name]()
        hangs = r.get("hangs", 0)
        fives = r.get("5xx", r.get("5xx_other_than_503", 0))
        print(f"{name:<12} {r['requests']:>9} {fives:>5} {hangs:>6} {r.get('lost_hits', 0):>10}  {notes}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"quick": args.quick, "sizes": sizes, "model": str(args.model or "tone fixture"),
                               "load_avg_1min": round(os.getloadavg()[0], 2), "results": results},
                              indent=2) + "\n")
    print(f"\nwrote {OUT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
