"""`hark-judge serve` as a real process on loopback, with the tiny trained model; the
sentry's JudgeClient against it: verdicts, refusals, a timeout, the server going away
and coming back."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

import numpy as np
import pytest

import judge
from sentry.audio import read_wav
from sentry.judge_client import BreakerState, JudgeClient, Policy, encode_wav
from tests.integration.conftest import JudgeServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(judge.__file__).resolve().parents[1]
KEY = "integration-key-0123456789"
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
MAX_BODY = 400_000  # bytes: 12 s of 16 kHz 16-bit mono would not fit


def Server(model: Path, keys_file: Path, *extra: str, port: int = 0) -> JudgeServer:
    """The judge with this file's body limit."""
    return JudgeServer(model, keys_file, "--max-body-bytes", str(MAX_BODY), *extra, port=port)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("judge") / "keys"
    path.write_text(f"# integration tests\n{KEY}\n")
    return path


@pytest.fixture(scope="module")
def positive_wav(tiny_dataset) -> Path:
    return sorted((tiny_dataset / "eval" / "espeak" / "positive").glob("*.wav"))[0]


def request(url: str, body: bytes | None = None, key: str | None = KEY,
            content_type: str = "audio/wav") -> tuple[int, dict | str]:
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def test_a_real_server_with_two_workers_verifies_and_refuses_in_json(
        exported, keys_file, positive_wav):
    server = Server(exported, keys_file, "--workers", "2", "--threads", "2", "--idle-timeout", "1")
    try:
        body = positive_wav.read_bytes()
        started = time.perf_counter()
        status, verdict = request(server.url + "/v1/verify?device_id=it-1", body)
        round_trip_ms = (time.perf_counter() - started) * 1000
        assert status == 200, verdict
        assert isinstance(verdict["verified"], bool) and 0.0 <= verdict["score"] <= 1.0
        assert verdict["verified"] == (verdict["score"] >= verdict["threshold"])
        assert verdict["model"] == "hey_jarvis" and re.fullmatch(r"[0-9a-f]{12}", verdict["model_version"])
        assert 0 < verdict["latency_ms"] < round_trip_ms and verdict["device_id"] == "it-1"
        assert verdict["clip_seconds"] == pytest.approx(read_wav(positive_wav).size / 16_000, abs=1e-3)

        status, error = request(server.url + "/v1/verify", body, key=None)
        assert status == 401 and error["error"]["code"] == "unauthorized"
        status, error = request(server.url + "/v1/verify", body, key="not-the-key-0123456789")
        assert status == 401 and error["error"]["code"] == "unauthorized"
        status, error = request(server.url + "/v1/verify", encode_wav(np.zeros(16_000 * 13)))
        assert status == 413 and error["error"]["code"] == "payload_too_large"
        status, error = request(server.url + "/v1/verify", b"RIFF\x00\x00")
        assert status == 400 and error["error"]["code"] == "not_wav"
        status, models = request(server.url + "/v1/models")
        assert status == 200 and models["models"][0]["version"] == verdict["model_version"]
        status, text = request(server.url + "/metrics")
        assert status == 200 and "hark_judge_verdicts_total" in text
        status, document = request(server.url + "/openapi.json")
        assert status == 200 and "/v1/verify" in document["paths"]
        assert request(server.url + "/healthz")[1] == {"status": "ok"}

        with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S) as stalled:
            stalled.sendall(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\n")  # and then nothing
            started = time.monotonic()
            assert stalled.recv(1024) == b""  # the server hung up on the idle client
            assert time.monotonic() - started < 5.0
        assert request(server.url + "/healthz")[1] == {"status": "ok"}  # and kept serving
    finally:
        code = server.stop()
    assert code == 0, "".join(server.stderr)
    log = "".join(server.stderr)
    assert "Traceback" not in log and "hark-judge: stopped" in log


class _HungJudge:
    """A loopback listener that takes the request and never replies, so the client's
    timeout fires however fast the machine is."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            self.held.append(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_the_client_against_the_real_judge_down_slow_and_back(exported, keys_file, positive_wav):
    clip = read_wav(positive_wav)
    server = Server(exported, keys_file)
    port = server.port
    client = JudgeClient(server.url, KEY, timeout_s=10.0, retries=0, breaker_failures=2,
                         breaker_cooldown_s=0.3, policy=Policy.FAIL_CLOSED)
    try:
        verdict = client.verify_pcm(clip, sentry_score=0.7)
        assert verdict.source == "judge" and verdict.score is not None and verdict.attempts == 1

        wrong_key = JudgeClient(server.url, "wrong-key-0123456789ab", retries=2)
        refused = wrong_key.verify_pcm(clip)
        assert refused.source == "policy" and refused.attempts == 1 and "HTTP 401" in refused.error

        with _HungJudge() as hung:  # accepts, reads, never answers: a judge stuck mid-request
            impatient = JudgeClient(hung.url, KEY, timeout_s=0.2, retries=0)
            started = time.monotonic()
            slow = impatient.verify_pcm(clip)
            waited = time.monotonic() - started
        assert slow.source == "policy" and "timed out" in slow.error and hung.requests == 1
        assert 0.2 <= waited < 5.0
    finally:
        assert server.stop() == 0

    down = [client.verify_pcm(clip) for _ in range(3)]
    assert [v.source for v in down] == ["policy"] * 3 and not any(v.verified for v in down)
    assert [v.attempts for v in down] == [1, 1, 0]  # the breaker opened after two failures
    assert client.breaker.state is BreakerState.OPEN

    server = Server(exported, keys_file, port=port)  # back, on the same port
    try:
        time.sleep(0.35)  # the cool-down
        back = client.verify_pcm(clip)
        assert back.source == "judge" and back.score == pytest.approx(verdict.score, abs=1e-6)
        assert client.breaker.state is BreakerState.CLOSED
    finally:
        assert server.stop() == 0


def test_the_judge_scores_the_sentry_s_windows_as_clip_onnx_does(exported, tiny_dataset):
    """The trained model: every window the judge scores equals clip.onnx on the same
    samples and the sentry's score at the hop where the window ends."""
    import onnxruntime as ort

    from judge.verifier import WINDOW_SPAN_SAMPLES, Verifier
    from sentry.constants import CLIP_SAMPLES, HOP_SAMPLES
    from sentry.detector import Detector
    from sentry.judge_client import clip_span

    verifier, sentry = Verifier(exported), Detector(exported)
    clip_graph = ort.InferenceSession(str(exported / "clip.onnx"), providers=["CPUExecutionProvider"])
    stream = read_wav(tiny_dataset / "eval" / "espeak" / "negative_stream.wav")[:30 * 16_000]
    streamed = sentry.score_pcm(stream)
    checked = 0
    for fired_at in np.arange(3.04, 29.0, 1.68):  # seconds, on the 80 ms grid
        start, end = clip_span(float(fired_at))
        clip = stream[start:end]
        ends, scores = verifier.window_scores(clip)
        np.testing.assert_allclose(scores, streamed[(start + ends) // HOP_SAMPLES - 1], atol=1e-5)
        windows = np.stack([clip[e - WINDOW_SPAN_SAMPLES:e] for e in ends])
        windows = np.pad(windows, ((0, 0), (0, CLIP_SAMPLES - WINDOW_SPAN_SAMPLES)))
        np.testing.assert_allclose(scores, clip_graph.run(None, {"pcm": windows})[0], atol=1e-4)
        checked += ends.size
    assert checked > 100


def test_serve_refuses_a_model_without_keys_cleanly(exported, tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# no keys yet\n")
    proc = subprocess.run(
        [sys.executable, "-m", "judge.cli", "serve", "--model", str(exported), "--port", "0",
         "--keys-file", str(empty)], capture_output=True, text=True, timeout=START_TIMEOUT_S,
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HARK_JUDGE_KEYS": ""})
    assert proc.returncode == 1 and "no API keys configured" in proc.stderr
    assert "Traceback" not in proc.stderr



def test_cascade_eval_over_http_matches_in_process(exported, keys_file, tiny_dataset):
    """The same judge asked over HTTP (clips sent as 16-bit WAV) and in-process agree."""
    from trainer.cascade import evaluate_cascade

    local = evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=0.05, progress=False)
    server = Server(exported, keys_file)
    try:
        remote = evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=0.05,
                                  judge_url=server.url, judge_key=KEY, progress=False)
    finally:
        assert server.stop() == 0
    assert sum(r.judge_calls for r in remote) > 0
    for a, b in zip(local, remote, strict=True):
        assert a.judge_calls == b.judge_calls
        assert a.judge_threshold == b.judge_threshold
        assert a.sentry == b.sentry
        # 16-bit quantisation moves scores by ~1e-4: a verdict flips only at a tie.
        assert abs(a.cascade.false_accepts - b.cascade.false_accepts) <= 1
        assert abs(a.cascade.missed - b.cascade.missed) <= 1
