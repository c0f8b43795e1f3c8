"""The judge client's deadline bounds the whole call, against a real judge that trickles.

A socket timeout bounds each read; a judge (or anything in between) that sends one
byte every fraction of a second never trips it. These tests run a real server thread
on 127.0.0.1 that reads the request and then trickles an answer that never ends, and
check the call, the listen loop's gate and `hark-sentry listen` on a real stream.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from sentry.cli import cli
from sentry.daemon import Listener, StdinSource
from sentry.detector import Detector
from sentry.judge_client import BreakerState, JudgeClient, Policy
from sentry.judge_gate import JudgeGate

TRICKLE_EVERY_S = 0.05
TRICKLE_FOR_S = 20.0
"""How long the server keeps trickling one answer before giving up: far beyond any
deadline here, so a client that waits for the answer fails the test, and short enough
that such a failure does not hang the suite."""
SLACK_S = 0.5
"""Scheduling slack on top of a deadline on a loaded two-core machine."""
BURSTS_S = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0]
"""Eight real detections in a 17 s stream (the fixture's refractory period is 1 s)."""


class TrickleJudge:
    """Accepts connections on 127.0.0.1, reads the request, then sends a 200 status
    line and a header that never ends, one byte every `every_s` seconds for `for_s`
    seconds (benchmarks/reliability.py runs it too)."""

    def __init__(self, every_s: float = TRICKLE_EVERY_S, for_s: float = TRICKLE_FOR_S) -> None:
        self.every_s, self.for_s = every_s, for_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(65536)  # the request (its head at least); its content is not needed
                answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
                ends = time.monotonic() + self.for_s
                for byte in answer:
                    if self.stop.is_set() or time.monotonic() > ends:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every_s)
            except OSError:  # the client gave up: what the tests want
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.listener.close()


@pytest.fixture()
def trickle():
    server = TrickleJudge()
    yield server
    server.close()


def test_one_attempt_ends_at_its_timeout_however_the_judge_trickles(trickle):
    client = JudgeClient(trickle.url, timeout_s=1.0, retries=0)
    started = time.monotonic()
    verdict = client.verify_pcm(np.zeros(16_000, np.float32))
    took = time.monotonic() - started
    assert took < 1.0 + SLACK_S, f"the call took {took:.1f} s against a 1 s timeout"
    assert verdict.source == "policy" and verdict.verified  # fail-open by default
    assert verdict.attempts == 1 and "timed out" in verdict.error


def test_retries_share_one_budget_and_a_missed_deadline_opens_the_breaker(trickle):
    client = JudgeClient(trickle.url, timeout_s=0.4, retries=5, deadline_s=1.0,
                         backoff_s=0.01, breaker_failures=10, policy=Policy.FAIL_CLOSED)
    started = time.monotonic()
    verdict = client.verify_pcm(np.zeros(16_000, np.float32))
    took = time.monotonic() - started
    assert took < 1.0 + SLACK_S, f"the call took {took:.1f} s against a 1 s budget"
    assert verdict.source == "policy" and not verdict.verified
    assert 2 <= verdict.attempts <= 3 and "no time left" in verdict.error

    misses = JudgeClient(trickle.url, timeout_s=0.2, retries=0, breaker_failures=3)
    for _ in range(3):
        assert misses.verify_pcm(np.zeros(1600, np.float32)).attempts == 1
    assert misses.breaker.state is BreakerState.OPEN
    skipped = misses.verify_pcm(np.zeros(1600, np.float32))
    assert skipped.attempts == 0 and skipped.verified and "breaker open" in skipped.error


def test_the_default_budget_is_the_attempts_worst_case():
    client = JudgeClient("http://127.0.0.1:9", timeout_s=2.0, retries=2, backoff_s=0.1,
                         backoff_max_s=1.0)
    assert client.deadline_s == pytest.approx(2.0 * 3 + 0.1 + 0.2)


def _stream(bursts) -> bytes:
    audio = bursts(17.0, BURSTS_S)
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def test_every_wake_word_gets_through_a_trickling_judge_fail_open(trickle, model_dir, bursts):
    client = JudgeClient(trickle.url, timeout_s=0.3, retries=1, breaker_failures=3)
    emitted = []
    gate = JudgeGate(client, lambda detection, verdict: emitted.append((detection, verdict)))
    seen = []

    def on_detection(detection):
        seen.append(detection)
        gate.on_detection(detection)

    listener = Listener(Detector(model_dir), StdinSource(io.BytesIO(_stream(bursts))),
                        on_detection, on_audio=gate.on_audio)
    stats = listener.run()
    verdicts = gate.close(timeout_s=10.0)
    assert stats.detections == len(BURSTS_S)
    assert len(emitted) == len(BURSTS_S), f"{len(emitted)} of {len(BURSTS_S)} emitted"
    assert sorted(d.time_s for d, _ in emitted) == [d.time_s for d in seen]
    assert all(v.source == "policy" and v.verified for _, v in emitted)
    assert (verdicts.submitted, verdicts.fail_open, verdicts.fail_closed, verdicts.undecided) == \
        (len(BURSTS_S), len(BURSTS_S), 0, 0)
    assert client.breaker.state is BreakerState.OPEN
    assert trickle.connections <= 3  # once open, the breaker spares the judge


def test_listen_emits_every_wake_word_and_counts_each_outcome(trickle, model_dir, bursts):
    result = CliRunner().invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw", "--json",
                                      "--judge-url", trickle.url, "--judge-timeout", "0.3"],
                                input=_stream(bursts))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(BURSTS_S)
    assert all(r["judge"]["source"] == "policy" and r["judge"]["verified"] for r in records)
    assert (f"judge: 0 verified, 0 rejected, {len(BURSTS_S)} decided by --judge-policy fail-open "
            f"({len(BURSTS_S)} fail-open, 0 fail-closed), 0 undecided") in result.stderr


def test_closing_decides_the_waiting_clips_and_counts_the_one_in_flight(trickle):
    from sentry.detector import Detection

    # A deadline far beyond the close timeout: the first clip is still in flight at close.
    client = JudgeClient(trickle.url, timeout_s=TRICKLE_FOR_S, retries=0)
    emitted = []
    gate = JudgeGate(client, lambda detection, verdict: emitted.append(detection.time_s))
    gate.on_audio(np.zeros(4 * 16_000, np.float32))
    for time_s in (0.5, 1.0, 1.5):
        gate.on_detection(Detection(time_s, 0.9, "test tone"))
    until = time.monotonic() + 5
    while trickle.connections < 1 and time.monotonic() < until:
        time.sleep(0.01)
    started = time.monotonic()
    stats = gate.close(timeout_s=1.0)
    assert time.monotonic() - started < 1.0 + SLACK_S
    assert (stats.submitted, stats.fail_open, stats.undecided) == (3, 2, 1)
    assert emitted == [1.0, 1.5]  # the two the worker never took, by the policy (fail-open)


def test_listen_judge_deadline_caps_the_whole_call(trickle, model_dir, bursts):
    result = CliRunner().invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw", "--json",
                                      "--judge-url", trickle.url, "--judge-timeout", "5",
                                      "--judge-deadline", "0.5"], input=_stream(bursts))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(BURSTS_S)
    # The calls made had 0.5 s, not --judge-timeout's 5 s (the stream is read faster than
    # real time, so clips beyond the gate's queue were decided by policy at once).
    errors = [r["judge"]["error"] for r in records]
    assert any("no whole answer within 0.50 s" in e for e in errors), errors
    assert not any("within 5.00 s" in e for e in errors), errors
