"""Ask a judge server whether a detection is real, without ever hanging the device.

The sentry fires on a short window and is tuned for recall; a judge (`hark-judge
serve`) rescoring the clip with a larger model removes most of its false accepts. The
network is the weak link, so every call is bounded:

  * a deadline on each attempt that bounds all of it: connecting, sending the clip and
    reading the whole answer (a judge that trickles one byte at a time cannot stretch
    it, as it could a plain socket timeout, which bounds each read on its own);
  * a few retries of transient failures (connection refused or reset, timeout, 429,
    5xx), spaced by exponential backoff with jitter so devices do not retry in step,
    all within one budget for the whole call (`deadline_s`);
  * a circuit breaker: after `breaker_failures` consecutive failed attempts (a missed
    deadline is one) the judge is
    not called at all for `breaker_cooldown_s`; then one probe request is let through
    (half-open) and its outcome closes or re-opens the breaker;
  * a policy for when no verdict can be had: fail-open (act on the sentry alone) or
    fail-closed (drop the detection). Either way it is logged.

Standard library only (http.client): the device has no `requests`. Connections go
straight to the judge, ignoring $http_proxy: the judge is a LAN or loopback service.
(Resolving the judge's host name is the one step no deadline bounds: give an address,
or a name the device resolves locally, e.g. from /etc/hosts.)
"""

from __future__ import annotations

import enum
import http.client
import io
import json
import logging
import random
import socket
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .constants import CLIP_SAMPLES, HOP_SAMPLES, SAMPLE_RATE
from .errors import SentryError
from .wav import encode_wav

log = logging.getLogger(__name__)

VERIFY_PATH = "/v1/verify"

PRE_ROLL_S = 0.5
"""Seconds of audio sent from before the detector's window: the judge sees the lead-in
to the wake word, which a window that fired on its tail may have cut."""
CLIP_LEAD_S = CLIP_SAMPLES / SAMPLE_RATE + PRE_ROLL_S
"""Seconds before the detection time a clip starts (2.0): the sentry's 1.5 s window that
fired, plus the pre-roll."""
POST_ROLL_HOPS = 3
"""Hops (80 ms each) after the detection time a clip ends: the smoothed score can peak
a hop or three before the phrase's last phoneme ends. A whole number of hops keeps the
window that fired among the judge's windows, which it aligns to the clip's end."""
POST_ROLL_S = POST_ROLL_HOPS * HOP_SAMPLES / SAMPLE_RATE
"""Seconds after the detection time a clip ends (0.24)."""

DEFAULT_TIMEOUT_S = 2.0
"""Seconds one attempt may take, all of it (connect, send, read the whole answer): a
verification on a LAN takes tens of milliseconds; two seconds means the judge is down
or drowning, and the user is waiting."""
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.1
DEFAULT_BACKOFF_MAX_S = 1.0
DEFAULT_BREAKER_FAILURES = 3
DEFAULT_BREAKER_COOLDOWN_S = 30.0
"""Seconds an open breaker waits before one probe: long enough not to hammer a judge
that is restarting, short enough that verification resumes soon after it is back."""

MAX_RESPONSE_BYTES = 64 * 1024
"""A verdict is ~300 bytes; more than this is not a judge answering."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: the judge is overloaded or restarting, not refusing."""


class Policy(str, enum.Enum):
    """What to do with a detection when the judge gives no verdict."""

    FAIL_OPEN = "fail-open"  # act on the sentry alone: the device stays usable
    FAIL_CLOSED = "fail-closed"  # drop it: no action without a judge's say-so


@dataclass(frozen=True)
class Verdict:
    """The answer to one detection.

    verified: act on the detection (the judge's verdict, or the policy's).
    source: "judge" (the judge answered) or "policy" (it could not; see `error`).
    score, threshold, model_version: the judge's, when source == "judge".
    latency_ms: wall time of the whole call on the client, retries included.
    attempts: HTTP requests made (0 when the breaker was open).
    """

    verified: bool
    source: str
    score: float | None = None
    threshold: float | None = None
    model_version: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency_ms"] = round(self.latency_ms, 3)
        return out


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker, safe to share between threads.

    failures_to_open: consecutive failures that open it.
    cooldown_s: seconds it stays open before letting one probe through.
    clock: monotonic seconds (injectable so tests need not sleep through cool-downs).
    """

    def __init__(self, failures_to_open: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures_to_open < 1 or cooldown_s < 0:
            raise SentryError(f"circuit breaker needs failures_to_open >= 1 and cooldown_s >= 0, "
                              f"got {failures_to_open} and {cooldown_s}")
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state is BreakerState.OPEN and self._cooled_down():
                return BreakerState.HALF_OPEN
            return self._state

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.cooldown_s

    def seconds_to_probe(self) -> float:
        """Seconds until an open breaker lets a probe through (0 if it would now)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one probe at a time may."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if not self._cooled_down():
                    return False
                self._state = BreakerState.HALF_OPEN
                self._probe_out = False
            if self._probe_out:
                return False
            self._probe_out = True
            return True

    def record_success(self) -> None:
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                log.warning("judge reachable again; circuit breaker closed")
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probe_out = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failures_to_open:
                if self._state is not BreakerState.OPEN:
                    log.warning("judge failed %d time(s) in a row; circuit breaker open, not "
                                "calling it for %.0f s", self._failures, self.cooldown_s)
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._probe_out = False


class _Transient(Exception):
    """A failure worth retrying: the judge may answer the same request soon."""


class _Refused(Exception):
    """The judge answered but refused (wrong key, clip too big...): retrying cannot help."""


def clip_span(time_s: float) -> tuple[int, int]:
    """(start, end) sample indices at 16 kHz of the clip sent for a detection at `time_s`
    (seconds of stream time): CLIP_LEAD_S before it to POST_ROLL_S after; start may be
    negative near the stream's beginning (take what exists)."""
    at = int(round(time_s * SAMPLE_RATE))
    return at - int(round(CLIP_LEAD_S * SAMPLE_RATE)), at + POST_ROLL_HOPS * HOP_SAMPLES


def read_key_file(path: str | Path) -> str:
    """The API key in `path`: its first line that is neither blank nor a '#' comment."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SentryError(f"{path}: cannot read the judge key file ({exc})") from exc
    for line in lines:
        key = line.split("#", 1)[0].strip()
        if key:
            return key
    raise SentryError(f"{path}: no API key in the file; put the key the judge was given "
                      "(its --keys-file or $HARK_JUDGE_KEYS) on the first line")


class JudgeClient:
    """Posts clips to a judge's /v1/verify and turns whatever happens into a Verdict.

    url: the judge's base URL (http://host:8080) or its full /v1/verify URL.
    key: API key sent as 'Authorization: Bearer <key>'; None sends none.
    timeout_s: seconds one attempt may take in all (connect, send, the whole answer).
    retries: extra attempts after a transient failure.
    deadline_s: seconds the whole call may take, attempts and backoffs together; None:
        (retries + 1) * timeout_s plus the longest backoffs, the most the attempts could
        take anyway. A retry that could not start before it is not made.
    backoff_s, backoff_max_s: the n-th retry waits min(backoff_max_s, backoff_s * 2**n)
        seconds scaled by a random factor in [0.5, 1) (equal jitter).
    breaker_failures, breaker_cooldown_s: see CircuitBreaker; a missed deadline counts
        as a failure.
    policy: what a detection becomes when no verdict can be had (a missed deadline too).
    device_id: sent with each clip for the judge's log.
    A call returns within deadline_s (plus scheduling slack, milliseconds), and at once
    while the breaker is open. Thread-safe.
    """

    def __init__(self, url: str, key: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 deadline_s: float | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S, backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
                 breaker_failures: int = DEFAULT_BREAKER_FAILURES,
                 breaker_cooldown_s: float = DEFAULT_BREAKER_COOLDOWN_S,
                 policy: Policy | str = Policy.FAIL_OPEN, device_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SentryError(f"judge URL {url!r} is not an http(s) URL; give e.g. "
                              "http://judge.local:8080")
        base = url.rstrip("/")
        self.url = base if base.endswith(VERIFY_PATH) else base + VERIFY_PATH
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or backoff_max_s < 0:
            raise SentryError(f"judge client needs timeout_s > 0 and retries, backoff_s, "
                              f"backoff_max_s >= 0; got {timeout_s}, {retries}, {backoff_s}, "
                              f"{backoff_max_s}")
        if deadline_s is not None and not deadline_s > 0:
            raise SentryError(f"judge client needs deadline_s > 0 (seconds for the whole "
                              f"call), got {deadline_s}")
        try:
            self.policy = Policy(policy)
        except ValueError as exc:
            raise SentryError(f"judge policy must be one of "
                              f"{', '.join(p.value for p in Policy)}, got {policy!r}") from exc
        self.key = key
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.deadline_s = (float(deadline_s) if deadline_s is not None
                           else self.timeout_s * (self.retries + 1)
                           + sum(self.backoff_ceiling(n) for n in range(self.retries)))
        self.device_id = device_id
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s, clock)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()

    # ------------------------------------------------------------------ public

    def verify_pcm(self, pcm: np.ndarray, sentry_score: float | None = None) -> Verdict:
        """Verify a float32 16 kHz mono clip (encoded as a 16-bit WAV)."""
        return self.verify(encode_wav(pcm), sentry_score)

    def verify(self, wav: bytes, sentry_score: float | None = None) -> Verdict:
        """Send WAV bytes; the judge's verdict, or the policy's when it gives none."""
        started = self._clock()
        # Network time is real time, whatever clock the breaker is given (tests fake it).
        call_ends = time.monotonic() + self.deadline_s
        attempts = 0
        error: str | None = None
        for attempt in range(self.retries + 1):
            left = call_ends - time.monotonic()
            if left <= 0:
                error = f"{error}; no time left for a retry within {self.deadline_s:g} s"
                break
            if not self.breaker.allow():
                error = error or (f"circuit breaker open after repeated failures; next probe in "
                                  f"{self.breaker.seconds_to_probe():.1f} s")
                break
            attempts += 1
            try:
                answer = self._post(wav, sentry_score, min(self.timeout_s, left))
            except _Transient as exc:
                self.breaker.record_failure()
                error = str(exc)
                if attempt < self.retries and self.breaker.state is BreakerState.CLOSED:
                    delay = self.backoff_delay(attempt)
                    if delay >= call_ends - time.monotonic():
                        error = f"{error}; no time left for a retry within {self.deadline_s:g} s"
                        break
                    self._sleep(delay)
                continue
            except _Refused as exc:
                self.breaker.record_success()  # it answered: reachable, if unhappy with us
                error = str(exc)
                break
            self.breaker.record_success()
            return Verdict(verified=answer["verified"], source="judge", score=answer["score"],
                           threshold=answer.get("threshold"),
                           model_version=answer.get("model_version"),
                           latency_ms=(self._clock() - started) * 1000.0, attempts=attempts)
        return self.fallback(error or "no attempt was made", attempts=attempts,
                             latency_ms=(self._clock() - started) * 1000.0)

    def fallback(self, reason: str, *, attempts: int = 0, latency_ms: float = 0.0) -> Verdict:
        """The policy's verdict when the judge gave none; logged either way."""
        verified = self.policy is Policy.FAIL_OPEN
        action = ("acting on the sentry alone" if verified else "dropping the detection")
        log.warning("no verdict from the judge at %s (%s); %s (%s)", self.url, reason, action,
                    self.policy.value)
        return Verdict(verified=verified, source="policy", latency_ms=latency_ms,
                       attempts=attempts, error=reason)

    def backoff_ceiling(self, retry: int) -> float:
        """The longest wait, in seconds, before retry number `retry` (0-based)."""
        return min(self.backoff_max_s, self.backoff_s * (2 ** retry))

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based), with equal jitter."""
        return self.backoff_ceiling(retry) * (0.5 + 0.5 * self._rng.random())

    # ------------------------------------------------------------------ HTTP

    def _post(self, wav: bytes, sentry_score: float | None, budget_s: float) -> dict[str, Any]:
        """One attempt, over by `budget_s` seconds from now whatever the judge does."""
        params = {}
        if sentry_score is not None:
            params["sentry_score"] = f"{min(max(float(sentry_score), 0.0), 1.0):.6f}"
        if self.device_id:
            params["device_id"] = self.device_id
        url = urllib.parse.urlsplit(self.url)  # read per call: the URL may be changed
        target = url.path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"Content-Type": "audio/wav", "User-Agent": f"hark-sentry/{__version__}",
                   "Connection": "close"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        connection_class = (_DeadlineHTTPSConnection if url.scheme == "https"
                            else _DeadlineHTTPConnection)
        connection = connection_class(url.hostname, url.port, time.monotonic() + budget_s)
        try:
            connection.request("POST", target, body=wav, headers=headers)
            response = connection.getresponse()
            status, reason = response.status, response.reason
            body = response.read(MAX_RESPONSE_BYTES + 1)
            response.close()
        except TimeoutError as exc:  # the connect, a send or a read ran out of budget
            raise _Transient(f"timed out: no whole answer within {budget_s:.2f} s "
                             "(connect, send and read together)") from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut off
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()
        if status >= 300:
            message = _error_message(body, reason)
            if status in RETRY_STATUSES:
                raise _Transient(f"HTTP {status}: {message}")
            raise _Refused(f"HTTP {status}: {message}")
        return _parse_verdict(body)


class _DeadlineSocket:
    """A connected socket whose sends and receives all end by one `deadline`
    (time.monotonic seconds): before each, its timeout is set to the time left, so
    the sum of them is bounded, not each one alone. Raises TimeoutError past it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._readers = 0  # open makefile() readers: as with a socket, close waits for them
        self._closing = False

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)  # the timeout bounds the whole sendall (Python >= 3.5)

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        """What http.client reads the answer through: every read goes via recv_into."""
        self._readers += 1
        return io.BufferedReader(_SocketReader(self))

    def close(self) -> None:
        """Close once no reader is open (http.client closes the connection while the
        response it handed on still reads from it)."""
        self._closing = True
        if self._readers == 0:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closing and self._readers == 0:
            self._sock.close()

    def __getattr__(self, name: str):  # setsockopt, fileno...: the socket's own
        return getattr(self._sock, name)


class _SocketReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock._reader_closed()
        super().close()


class _DeadlineMixin:
    """An http.client connection whose connect, send and reads share one deadline."""

    def __init__(self, host: str, port: int | None, deadline: float) -> None:
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 1e-3))
        self._deadline = deadline

    def connect(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed before connecting")
        self.timeout = left  # bounds the TCP connect (and a TLS handshake's each step)
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHTTPConnection(_DeadlineMixin, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):
    pass


def _error_message(body: bytes, reason: str) -> str:
    """The judge's JSON error message, or the status's reason phrase."""
    try:
        return str(json.loads(body)["error"]["message"])
    except Exception:  # noqa: BLE001 - any non-judge error body: fall back to the phrase
        return str(reason)


def _parse_verdict(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_RESPONSE_BYTES:
        raise _Refused(f"the answer is over {MAX_RESPONSE_BYTES} bytes; is the URL a hark judge?")
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refused(f"the answer is not JSON ({exc}); is the URL a hark judge?") from exc
    if (not isinstance(answer, dict) or not isinstance(answer.get("verified"), bool)
            or not isinstance(answer.get("score"), (int, float))):
        raise _Refused("the answer lacks 'verified' (bool) and 'score' (number); "
                       "is the URL a hark judge?")
    return answer
