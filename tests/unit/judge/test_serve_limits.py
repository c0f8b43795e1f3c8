"""`hark-judge serve` under a slow-loris crowd: a real server process on 127.0.0.1 with
the fixture model, more trickling sockets than its connection limit, then /healthz and
a real verification. Small limits and timeouts keep it to seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from sentry.judge_client import JudgeClient, encode_wav
from tests.integration.conftest import JudgeServer

MAX_CONNECTIONS = 6
SLOW_SOCKETS = MAX_CONNECTIONS + 4
REQUEST_TIMEOUT_S = 5
"""Long enough that the crowd is still connected when /healthz is probed on a loaded
machine (the probe follows the 503s, which can take seconds under load)."""
TRICKLE_EVERY_S = 0.3
"""A header line this often: far more activity than the idle timeout (30 s) needs."""
ANSWER_WAIT_S = 3.0
"""Longest a probe may wait for any answer: "a couple of seconds", not a hang."""
CUT_OFF_WAIT_S = 20.0
"""Longest to wait for the request timeout to close a trickler (5 s + waitress's 1 s
sweep + a loaded machine)."""


def _http_get(port: int, path: str) -> tuple[int, dict]:
    """A GET on a fresh connection, answered within ANSWER_WAIT_S or the test fails."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT_S) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: judge\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):  # socket.timeout here is the hang this test is about
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


class Tricklers:
    """SLOW_SOCKETS connections that each send a request head one line at a time, never
    finishing it; records what the server sends back on each."""

    def __init__(self, port: int, n: int) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
        self.received = [b""] * n
        self.closed = [False] * n
        self.stop = threading.Event()
        for sock in self.socks:
            sock.setblocking(False)
            sock.sendall(b"POST /v1/verify HTTP/1.1\r\nHost: judge\r\n")
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        line = 0
        while not self.stop.wait(TRICKLE_EVERY_S):
            line += 1
            for i, sock in enumerate(self.socks):
                if self.closed[i]:
                    continue
                try:
                    while chunk := sock.recv(65536):
                        self.received[i] += chunk
                    self.closed[i] = True  # b"": the server closed it
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed[i] = True
                    continue
                try:
                    sock.send(f"X-Line-{line}: still typing\r\n".encode())
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed[i] = True

    def refused(self) -> int:
        return sum(r.startswith(b"HTTP/1.1 503") for r in self.received)

    def wait(self, condition, timeout_s: float) -> bool:
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            if condition():
                return True
            time.sleep(0.05)
        return condition()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


@pytest.fixture()
def server(judge_model: Path, judge_spec, tmp_path) -> JudgeServer:
    keys = tmp_path / "keys"
    keys.write_text(judge_spec.key + "\n")
    proc = JudgeServer(judge_model, keys, "--workers", "1", "--max-connections",
                       str(MAX_CONNECTIONS), "--request-timeout", str(REQUEST_TIMEOUT_S))
    yield proc
    code = proc.stop()
    assert code == 0, "".join(proc.stderr)


def test_a_full_judge_answers_503_at_once_and_sheds_slow_clients(server, judge_spec):
    crowd = Tricklers(server.port, SLOW_SOCKETS)
    top_up: list[Tricklers] = []
    try:
        # The connections beyond the limit are answered 503 and closed, not left waiting
        # (one more may be, if the server has not yet seen the readiness probe's close).
        assert crowd.wait(lambda: crowd.refused() >= SLOW_SOCKETS - MAX_CONNECTIONS, ANSWER_WAIT_S), \
            [r[:40] for r in crowd.received]
        # If the readiness probe's connection was still open when the crowd came, one more
        # trickler was refused and its slot frees later: top the crowd up until a newcomer
        # is refused, so the judge is full when /healthz is asked.
        for _ in range(3):
            extra = Tricklers(server.port, 1)
            top_up.append(extra)
            if extra.wait(lambda: extra.refused() == 1, 1.0):
                break
        status, body = _http_get(server.port, "/healthz")
        assert status == 503 and body["error"]["code"] == "server_full"
        assert "--max-connections" in body["error"]["message"]

        # The request timeout closes the tricklers however busy they keep their sockets.
        assert crowd.wait(lambda: all(crowd.closed), CUT_OFF_WAIT_S), crowd.closed
        # The rest were cut off without an answer: no request ever came through.
        assert all(r == b"" or r.startswith(b"HTTP/1.1 503") for r in crowd.received)
        assert crowd.refused() <= SLOW_SOCKETS - MAX_CONNECTIONS + 1
    finally:
        crowd.close()
        for extra in top_up:
            extra.close()
    assert _http_get(server.port, "/healthz") == (200, {"status": "ok"})
    clip = judge_spec.make_clip(3.0, (1.4, 3.0))
    verdict = JudgeClient(server.url, judge_spec.key, retries=0, timeout_s=10).verify(encode_wav(clip))
    assert verdict.source == "judge" and verdict.verified, verdict
    log = "".join(server.stderr)
    assert "answered 503" in log and "Traceback" not in log


def test_the_limits_have_flags_with_defaults():
    from click.testing import CliRunner

    from judge.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split("Options:", 1)[1].split())  # click wraps the help
    for flag, default in [("--max-connections", "256"), ("--request-timeout", "10"),
                          ("--idle-timeout", "30")]:
        after = text[text.index(flag + " "):]
        assert f"[default: {default}" in after[:after.index(" --", 2)], after[:200]
