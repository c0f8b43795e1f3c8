"""sentry.judge_client and sentry.judge_gate against a real HTTP server on 127.0.0.1.

The server here is a scripted stand-in for the judge (http.server), so a test can make
it slow, failing, refusing or gone; tests/integration/test_judge_server.py runs the
client against the real `hark-judge serve`.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.parse
import wave
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from click.testing import CliRunner

from sentry.cli import cli
from sentry.constants import SAMPLE_RATE
from sentry.daemon import Listener, StdinSource
from sentry.detector import Detection, Detector
from sentry.errors import SentryError
from sentry.judge_client import (CLIP_LEAD_S, POST_ROLL_S, BreakerState, CircuitBreaker,
                                 JudgeClient, Policy, clip_span, encode_wav, read_key_file)
from sentry.judge_gate import AudioRing, JudgeGate

KEY = "test-key-0123456789abcdef"
WAIT_S = 10.0  # upper bound on any wait in these tests; normally milliseconds


class FakeJudge:
    """A real HTTP server answering POST /v1/verify from a script of actions:
    ("verdict", verified, score), ("status", code, message), ("sleep", seconds) then a
    verdict, ("garbage",). `default` answers once the script is empty. Clearing `hold`
    makes answers wait until it is set again."""

    def __init__(self) -> None:
        self.script: deque = deque()
        self.default = ("verdict", True, 0.9)
        self.requests: list[dict] = []
        self.hold = threading.Event()
        self.hold.set()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                url = urllib.parse.urlsplit(self.path)
                judge.requests.append({"path": url.path, "query": dict(urllib.parse.parse_qsl(url.query)),
                                       "headers": dict(self.headers), "body": body})
                action = judge.script.popleft() if judge.script else judge.default
                judge.hold.wait(WAIT_S)
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("verdict", True, 0.9)
                if action[0] == "verdict":
                    self._send(200, {"verified": action[1], "score": action[2], "threshold": 0.5,
                                     "model": "fake", "model_version": "abc", "latency_ms": 1.0})
                elif action[0] == "status":
                    self._send(action[1], {"error": {"code": "x", "message": action[2]}})
                else:
                    self._send(200, None)

            def _send(self, status, payload):
                data = b"<html>not json</html>" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for_requests(self, n: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= n, f"{len(self.requests)} of {n} requests arrived"

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake():
    server = FakeJudge()
    yield server
    server.close()


@pytest.fixture()
def dead_url() -> str:
    """A loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decode(body: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(body)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32767
    return pcm, rate


# ------------------------------------------------------------------ the client

def test_a_verdict_comes_back_with_what_was_sent(fake):
    client = JudgeClient(fake.url, KEY, device_id="hall-2")
    clip = np.sin(np.linspace(0, 300, 16_000)).astype(np.float32) * 0.5
    verdict = client.verify_pcm(clip, sentry_score=0.734)
    assert verdict.verified and verdict.source == "judge" and verdict.score == 0.9
    assert verdict.attempts == 1 and verdict.error is None and verdict.model_version == "abc"
    (request,) = fake.requests
    assert request["path"] == "/v1/verify"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["Content-Type"] == "audio/wav"
    assert request["query"] == {"sentry_score": "0.734000", "device_id": "hall-2"}
    pcm, rate = decode(request["body"])
    assert rate == SAMPLE_RATE and np.abs(pcm - clip).max() < 1e-4


def test_a_rejection_is_not_verified(fake):
    fake.default = ("verdict", False, 0.1)
    verdict = JudgeClient(fake.url + "/v1/verify", KEY).verify(encode_wav(np.zeros(100)))
    assert verdict.source == "judge" and not verdict.verified and verdict.score == 0.1
    assert fake.requests[0]["path"] == "/v1/verify"  # a full URL is not doubled


def test_a_slow_judge_times_out_and_the_policy_decides(fake):
    fake.script.append(("sleep", 2.0))
    client = JudgeClient(fake.url, KEY, timeout_s=0.2, retries=0, policy=Policy.FAIL_CLOSED)
    started = time.monotonic()
    verdict = client.verify(encode_wav(np.zeros(100)))
    assert time.monotonic() - started < 1.5  # did not wait for the 2 s answer
    assert verdict.source == "policy" and not verdict.verified
    assert "timed out" in verdict.error


def test_transient_failures_are_retried_with_growing_jittered_backoff(fake):
    fake.script.extend([("status", 503, "busy"), ("status", 500, "oops")])
    sleeps: list[float] = []
    client = JudgeClient(fake.url, KEY, retries=2, backoff_s=0.1, backoff_max_s=1.0,
                         sleep=sleeps.append)
    verdict = client.verify(encode_wav(np.zeros(100)))
    assert verdict.source == "judge" and verdict.attempts == 3 and len(fake.requests) == 3
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] < 0.1 and 0.1 <= sleeps[1] < 0.2  # ceiling 0.1 * 2**n, jitter [0.5, 1)


def test_backoff_is_capped():
    client = JudgeClient("http://127.0.0.1:9", backoff_s=0.1, backoff_max_s=0.3)
    delays = [client.backoff_delay(n) for n in range(8)]
    assert all(0.15 <= d < 0.3 for d in delays[2:])


@pytest.mark.parametrize("status,message", [(401, "wrong API key"), (413, "too large"),
                                            (400, "not a WAV")])
def test_refusals_are_not_retried_and_say_why(fake, status, message, caplog):
    fake.default = ("status", status, message)
    client = JudgeClient(fake.url, KEY, retries=3, sleep=lambda s: None)
    with caplog.at_level("WARNING", logger="sentry.judge_client"):
        verdict = client.verify(encode_wav(np.zeros(100)))
    assert verdict.source == "policy" and verdict.attempts == 1 and len(fake.requests) == 1
    assert f"HTTP {status}: {message}" in verdict.error
    assert message in caplog.text and "fail-open" in caplog.text
    assert client.breaker.state is BreakerState.CLOSED  # it answered: it is up


def test_an_answer_that_is_not_a_verdict_is_refused(fake):
    fake.default = ("garbage",)
    verdict = JudgeClient(fake.url, KEY, retries=2).verify(encode_wav(np.zeros(100)))
    assert verdict.source == "policy" and verdict.attempts == 1 and "not JSON" in verdict.error


@pytest.mark.parametrize("policy,verified,words", [(Policy.FAIL_OPEN, True, "acting on the sentry alone"),
                                                   (Policy.FAIL_CLOSED, False, "dropping the detection")])
def test_policy_when_the_judge_is_down(dead_url, policy, verified, words, caplog):
    client = JudgeClient(dead_url, KEY, retries=1, policy=policy, sleep=lambda s: None)
    with caplog.at_level("WARNING", logger="sentry.judge_client"):
        verdict = client.verify(encode_wav(np.zeros(100)))
    assert verdict.verified is verified and verdict.source == "policy"
    assert verdict.attempts == 2 and "refused" in verdict.error.lower()
    assert words in caplog.text and policy.value in caplog.text


def test_the_breaker_opens_then_half_opens_and_recovers(fake, dead_url):
    clock = FakeClock()
    client = JudgeClient(dead_url, KEY, retries=0, breaker_failures=3, breaker_cooldown_s=30,
                         clock=clock, sleep=lambda s: None)
    for _ in range(3):
        assert client.verify(encode_wav(np.zeros(10))).attempts == 1
    assert client.breaker.state is BreakerState.OPEN
    skipped = client.verify(encode_wav(np.zeros(10)))
    assert skipped.attempts == 0 and "breaker open" in skipped.error

    clock.now += 31  # cool-down over: one probe, which fails -> open again
    assert client.breaker.state is BreakerState.HALF_OPEN
    assert client.verify(encode_wav(np.zeros(10))).attempts == 1
    assert client.breaker.state is BreakerState.OPEN
    assert client.verify(encode_wav(np.zeros(10))).attempts == 0

    client.url = fake.url + "/v1/verify"  # the judge is back (same client, new address)
    clock.now += 31
    recovered = client.verify(encode_wav(np.zeros(10)))
    assert recovered.source == "judge" and recovered.attempts == 1
    assert client.breaker.state is BreakerState.CLOSED


def test_retries_stop_as_soon_as_the_breaker_opens(dead_url):
    client = JudgeClient(dead_url, KEY, retries=5, breaker_failures=2, sleep=lambda s: None)
    assert client.verify(encode_wav(np.zeros(10))).attempts == 2


def test_half_open_lets_one_probe_through_at_a_time():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()  # the second caller waits for the probe
    breaker.record_success()
    assert breaker.allow() and breaker.allow()


@pytest.mark.parametrize("kwargs,message", [
    ({"url": "ftp://judge"}, "not an http"), ({"url": "judge:8080"}, "not an http"),
    ({"url": "http://j", "policy": "maybe"}, "policy must be one of"),
    ({"url": "http://j", "timeout_s": 0}, "timeout_s > 0"),
])
def test_bad_client_settings_are_sentry_errors(kwargs, message):
    with pytest.raises(SentryError, match=message):
        JudgeClient(**kwargs)


def test_key_files_take_the_first_real_line(tmp_path):
    path = tmp_path / "key"
    path.write_text("# the hall speaker\n\n  abc-123  # rotated in May\nsecond\n")
    assert read_key_file(path) == "abc-123"
    path.write_text("# nothing here\n")
    with pytest.raises(SentryError, match="no API key"):
        read_key_file(path)
    with pytest.raises(SentryError, match="cannot read"):
        read_key_file(tmp_path / "missing")


# ------------------------------------------------------------------ the gate

def test_the_ring_keeps_the_latest_audio_by_absolute_index():
    ring = AudioRing(10)
    ring.write(np.arange(7, dtype=np.float32))
    ring.write(np.arange(7, 12, dtype=np.float32))
    assert ring.total == 12
    np.testing.assert_array_equal(ring.read(3, 12), np.arange(3, 12))
    np.testing.assert_array_equal(ring.read(0, 5), np.arange(2, 5))  # 0, 1 are gone
    ring.write(np.arange(12, 40, dtype=np.float32))  # longer than the ring
    np.testing.assert_array_equal(ring.read(0, 100), np.arange(30, 40))


def test_clip_span_is_lead_before_and_post_roll_after():
    start, end = clip_span(5.0)
    assert (end - start) / SAMPLE_RATE == pytest.approx(CLIP_LEAD_S + POST_ROLL_S)
    assert end / SAMPLE_RATE == pytest.approx(5.0 + POST_ROLL_S)


def _run_gated_listener(model_dir, audio, client):
    emitted = []
    gate = JudgeGate(client, lambda detection, verdict: emitted.append((detection, verdict)))
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    listener = Listener(Detector(model_dir), StdinSource(io.BytesIO(pcm)), gate.on_detection,
                        on_audio=gate.on_audio)
    stats = listener.run()
    return stats, gate.close(), emitted


def test_the_gate_sends_the_right_clip_and_emits_only_what_the_judge_verifies(
        fake, model_dir, bursts):
    fake.script.extend([("verdict", True, 0.95), ("verdict", False, 0.2)])
    stats, verdicts, emitted = _run_gated_listener(model_dir, bursts(8.0, [1.0, 5.0]),
                                                   JudgeClient(fake.url, KEY))
    assert stats.detections == 2 and len(fake.requests) == 2
    assert (verdicts.verified, verdicts.rejected, verdicts.policy) == (1, 1, 0)
    assert len(emitted) == 1 and emitted[0][1].score == 0.95
    assert abs(emitted[0][0].time_s - 1.0) <= 0.2

    detection_times = []
    for request, burst_s in zip(fake.requests, [1.0, 5.0]):
        pcm, _ = decode(request["body"])
        onset_in_clip = np.flatnonzero(np.abs(pcm) > 0.2)[0] / SAMPLE_RATE
        clip_end_s = burst_s - onset_in_clip + pcm.size / SAMPLE_RATE  # in stream time
        detection_times.append(clip_end_s - POST_ROLL_S)
    # Each clip ends POST_ROLL_S after its detection; the first starts at the stream's start,
    # the second has its whole lead.
    assert detection_times[0] == pytest.approx(emitted[0][0].time_s, abs=2 / SAMPLE_RATE)
    assert 5.0 <= detection_times[1] <= 5.2
    assert decode(fake.requests[1]["body"])[0].size == round((CLIP_LEAD_S + POST_ROLL_S) * SAMPLE_RATE)


def test_the_gate_never_waits_for_the_judge(fake):
    fake.hold.clear()  # the judge will not answer until released
    emitted = []
    gate = JudgeGate(JudgeClient(fake.url, KEY, timeout_s=WAIT_S),
                     lambda d, v: emitted.append(d))
    started = time.monotonic()
    gate.on_audio(np.zeros(SAMPLE_RATE, np.float32))
    gate.on_detection(Detection(0.9, 0.8, "test tone"))
    assert not fake.requests  # the post-roll has not arrived yet
    gate.on_audio(np.zeros(SAMPLE_RATE // 2, np.float32))
    fake.wait_for_requests(1)
    assert time.monotonic() - started < WAIT_S / 2
    assert emitted == []  # the judge is still holding its answer, and we got here
    fake.hold.set()
    stats = gate.close()
    assert stats.verified == 1 and [d.time_s for d in emitted] == [0.9]


def test_when_too_many_clips_wait_the_policy_decides_at_once(fake):
    fake.hold.clear()
    gate = JudgeGate(JudgeClient(fake.url, KEY, timeout_s=WAIT_S, policy=Policy.FAIL_CLOSED),
                     lambda d, v: None, queue_clips=1)
    gate.on_audio(np.zeros(3 * SAMPLE_RATE, np.float32))
    gate.on_detection(Detection(0.5, 0.8, "w"))
    fake.wait_for_requests(1)  # the worker is busy with this one
    gate.on_detection(Detection(1.0, 0.8, "w"))  # queued
    gate.on_detection(Detection(1.5, 0.8, "w"))  # no room: decided now, by policy
    assert gate.stats.policy == 1
    fake.hold.set()
    stats = gate.close()
    assert (stats.submitted, stats.verified, stats.policy) == (3, 2, 1)


# ------------------------------------------------------------------ hark-sentry listen

def _listen(model_dir, bursts, url, *extra):
    pcm = np.round(bursts(8.0, [1.0, 5.0]) * 32767).astype("<i2").tobytes()
    return CliRunner().invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw", "--json",
                                    "--judge-url", url, *extra], input=pcm)


def test_listen_prints_only_verified_detections(fake, model_dir, bursts, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    fake.script.append(("verdict", False, 0.1))
    result = _listen(model_dir, bursts, fake.url, "--judge-key-file", str(key_file))
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert round(record["time_s"]) == 5 and record["judge"]["source"] == "judge"
    assert "judge: 1 verified, 1 rejected, 0 decided by --judge-policy fail-open" in result.stderr
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in fake.requests)


@pytest.mark.parametrize("policy,lines", [("fail-open", 2), ("fail-closed", 0)])
def test_listen_with_the_judge_down_follows_the_policy(dead_url, model_dir, bursts, policy, lines):
    result = _listen(model_dir, bursts, dead_url, "--judge-policy", policy, "--judge-timeout", "0.5")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == lines
    assert all(r["judge"]["source"] == "policy" for r in records)
    assert f"2 decided by --judge-policy {policy}" in result.stderr


def test_listen_key_file_without_url_is_a_usage_error(model_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = CliRunner().invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw",
                                      "--judge-key-file", str(key_file)])
    assert result.exit_code == 2 and "--judge-url" in result.stderr
