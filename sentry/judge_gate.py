"""The listen loop's second opinion: hold each detection until the judge has ruled.

`JudgeGate` sits between the detector and whatever acts on a detection. It keeps the
last few seconds of 16 kHz audio in a ring buffer; when the sentry fires it waits for
the post-roll, cuts the clip (sentry.judge_client.clip_span: the sentry's window plus
0.5 s of pre-roll before the detection, 0.24 s after it) and hands it to a worker
thread that asks the judge. Audio capture and scoring never wait on the network: the
scoring thread only copies audio into the ring and clips into a bounded queue. A detection is emitted only if the
verdict says so (the judge's, or the client's policy when the judge gives none).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .constants import SAMPLE_RATE
from .detector import Detection
from .errors import SentryError
from .judge_client import JudgeClient, Verdict, clip_span

log = logging.getLogger(__name__)

RING_SLACK_S = 2.0
"""Seconds of audio kept beyond one clip, so a detection reported a chunk or two after
its audio arrived still finds its whole clip in the ring."""

QUEUE_CLIPS = 4
"""Clips waiting for the judge before new ones are decided by policy at once: with a
2 s refractory period, four queued clips means the judge is far behind."""

CLOSE_TIMEOUT_S = 30.0
"""Seconds `close` waits for the judge's outstanding verdicts at shutdown. Each call
ends by the client's deadline_s, and after a few misses the breaker makes the rest
instant, so this is only reached with a long deadline and a full queue."""


class AudioRing:
    """The most recent `capacity` samples of a stream, addressed by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise SentryError(f"ring capacity must be >= 1 sample, got {capacity}")
        self._data = np.zeros(capacity, dtype=np.float32)
        self.total = 0  # samples written since the start

    @property
    def capacity(self) -> int:
        return self._data.size

    def write(self, chunk: np.ndarray) -> None:
        """Append samples; a chunk longer than the ring keeps only its tail."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.total += chunk.size
        tail = chunk[-self.capacity:]
        pos = (self.total - tail.size) % self.capacity
        first = min(tail.size, self.capacity - pos)
        self._data[pos:pos + first] = tail[:first]
        self._data[:tail.size - first] = tail[first:]

    def read(self, start: int, end: int) -> np.ndarray:
        """Copy of samples [start, end), clipped to what the ring still holds."""
        start = max(start, self.total - self.capacity, 0)
        end = min(end, self.total)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        idx = np.arange(start, end) % self.capacity
        return self._data[idx]


@dataclass
class GateStats:
    """What became of each detection handed to the gate; every one is counted once.

    verified, rejected: the judge's verdicts.
    fail_open, fail_closed: decided by the client's policy (the judge gave no verdict:
        down, too slow, breaker open, too many clips waiting), emitted or dropped.
    undecided: still waiting for the judge when the gate was closed (not emitted).
    """

    submitted: int = 0
    verified: int = 0
    rejected: int = 0
    fail_open: int = 0
    fail_closed: int = 0
    undecided: int = 0

    @property
    def policy(self) -> int:
        """Detections decided by the policy, either way."""
        return self.fail_open + self.fail_closed

    @property
    def decided(self) -> int:
        return self.verified + self.rejected + self.policy


class JudgeGate:
    """Verify detections with a judge before passing them on.

    client: the JudgeClient (its policy decides when the judge gives no verdict).
    emit: called in the gate's worker thread with each detection to act on and its verdict.
    Feed it from the scoring thread: `on_audio` with every 16 kHz chunk, in order, then
    `on_detection` with the detections that chunk produced. Call `close` at the end.
    """

    def __init__(self, client: JudgeClient, emit: Callable[[Detection, Verdict], None], *,
                 queue_clips: int = QUEUE_CLIPS) -> None:
        self.client = client
        self.emit = emit
        self.stats = GateStats()
        lead, post = clip_span(0.0)
        self._ring = AudioRing(post - lead + int(RING_SLACK_S * SAMPLE_RATE))
        self._pending: list[tuple[Detection, int, int]] = []
        self._queue: queue.Queue = queue.Queue(maxsize=queue_clips)
        self._lock = threading.Lock()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="hark-judge-client", daemon=True)
        self._worker.start()

    def on_audio(self, chunk: np.ndarray) -> None:
        """Append 16 kHz float32 audio; send the clips whose post-roll has now arrived."""
        self._ring.write(chunk)
        self._send_ready(final=False)

    def on_detection(self, detection: Detection) -> None:
        """A sentry detection: its clip goes to the judge once POST_ROLL_S has arrived."""
        start, end = clip_span(detection.time_s)
        self._pending.append((detection, start, end))
        self._send_ready(final=False)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> GateStats:
        """End of stream: send what is pending with the audio there is, wait up to
        `timeout_s` seconds for the verdicts. Clips the worker had not started by then
        are decided by the policy; one still in flight is counted as undecided, and a
        verdict that arrives for it later is logged, not emitted."""
        self._send_ready(final=True)
        until = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._worker.join(timeout=max(0.0, until - time.monotonic()))
        with self._lock:
            self._closed = True
        while True:  # what the worker never took: the policy decides now
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._decide(item[0], self.client.fallback(
                    f"still waiting for the judge {timeout_s:g} s after stopping"), closing=True)
        with self._lock:
            self.stats.undecided = self.stats.submitted - self.stats.decided
        if self.stats.undecided:
            log.warning("%d detection(s) had no verdict %.0f s after stopping; not acted on",
                        self.stats.undecided, timeout_s)
        return self.stats

    def _send_ready(self, final: bool) -> None:
        keep = []
        for detection, start, end in self._pending:
            if end > self._ring.total and not final:
                keep.append((detection, start, end))
                continue
            clip = self._ring.read(start, end)
            if clip.size < min(end, self._ring.total) - max(start, 0):
                log.info("detection at %.2f s: part of its clip had left the ring buffer",
                         detection.time_s)
            self._submit(detection, clip)
        self._pending = keep

    def _submit(self, detection: Detection, clip: np.ndarray) -> None:
        with self._lock:
            self.stats.submitted += 1
        try:
            self._queue.put_nowait((detection, clip))
        except queue.Full:
            self._decide(detection, self.client.fallback(
                f"{self._queue.maxsize} clips already waiting for the judge"))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            detection, clip = item
            try:
                verdict = self.client.verify_pcm(clip, sentry_score=detection.score)
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill the thread
                log.exception("judge client failed")
                verdict = self.client.fallback(f"client error: {exc!r}")
            self._decide(detection, verdict)

    def _decide(self, detection: Detection, verdict: Verdict, closing: bool = False) -> None:
        with self._lock:
            if self._closed and not closing:
                log.warning("detection at %.2f s: a verdict came after the gate closed; "
                            "not acted on", detection.time_s)
                return
            if verdict.source == "judge":
                field = "verified" if verdict.verified else "rejected"
            else:
                field = "fail_open" if verdict.verified else "fail_closed"
            setattr(self.stats, field, getattr(self.stats, field) + 1)
        if verdict.verified:
            self.emit(detection, verdict)
        else:
            log.info("detection at %.2f s (sentry %.3f) not acted on: %s", detection.time_s,
                     detection.score, f"judge score {verdict.score:.3f} < {verdict.threshold}"
                     if verdict.source == "judge" else verdict.error)

