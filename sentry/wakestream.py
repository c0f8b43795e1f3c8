"""Several wake-word models on one audio stream, with a trigger level and judge clips.

A service (the Wyoming one) feeds 16 kHz audio of one client stream in and gets
detections out, each carrying the audio a judge needs to verify it. The Detectors do
the scoring; the triggering is done here on their raw scores, by sentry.postprocess's
Trigger with a trigger level (consecutive hops above the threshold) that can be set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .constants import HOP_SAMPLES
from .detector import Detection, Detector
from .postprocess import HOP_SECONDS, Trigger
from .scoring import BATCH_HOPS

FEED_SAMPLES = BATCH_HOPS * HOP_SAMPLES
"""Most 16 kHz samples handed to a Detector at once, so that its `scores` history
(SCORE_HISTORY_HOPS > BATCH_HOPS) still holds every score of the call."""

ClipSpan = Callable[[float], "tuple[int, int]"]
"""Detection time in seconds -> (start, end) stream sample indices at 16 kHz of the
audio to verify it on (sentry.judge_client.clip_span); start may be negative."""


@dataclass
class Hit:
    """A detection in a stream. clip: float32 16 kHz audio around it (see ClipSpan),
    or None when the stream keeps no clips."""

    detection: Detection
    clip: np.ndarray | None


@dataclass
class _Pending:
    detection: Detection
    start: int
    end: int


class WakeStream:
    """One audio stream scored by several models: 16 kHz float32 in, hits out.

    models: (name, Detector) pairs; each Detector is reset and owned by this stream.
    trigger_level: consecutive hops at or above each Detector's threshold to fire.
    clip_span: when given, every hit carries its clip, and is held back until the
        audio up to the clip's end has arrived (or `finish` is called).
    Not thread-safe: feed it from one thread at a time.
    """

    def __init__(self, models: Sequence[tuple[str, Detector]], trigger_level: int = 1,
                 clip_span: ClipSpan | None = None) -> None:
        self.runs = [(name, detector, Trigger(detector.settings, trigger_level))
                     for name, detector in models]
        for _, detector, _ in self.runs:
            detector.reset()
        self.samples = 0
        """16 kHz samples fed so far."""
        self._clip_span = clip_span
        self._lead = max(0, -clip_span(0.0)[0]) if clip_span is not None else 0
        self._pending: list[_Pending] = []
        self._recent = np.zeros(0, dtype=np.float32)  # audio from stream sample _first on
        self._first = 0

    def feed(self, audio: np.ndarray) -> list[Hit]:
        """Score the next 16 kHz mono float32 audio; returns the hits now complete, in
        time order."""
        for begin in range(0, audio.size, FEED_SAMPLES):
            piece = audio[begin:begin + FEED_SAMPLES]
            if self._clip_span is not None:
                self._recent = np.concatenate([self._recent, piece])
            for name, detector, trigger in self.runs:
                before = detector.hops
                detector.process(piece)  # its own trigger is unused: this one decides
                new = detector.hops - before
                for k, score in enumerate(list(detector.scores)[-new:] if new else []):
                    fired, smoothed = trigger.update(score)
                    if fired:
                        self._hit(Detection((before + k + 1) * HOP_SECONDS, smoothed, name))
            self.samples += piece.size
        return self._release(final=False)

    def finish(self) -> list[Hit]:
        """End of stream: every hit still held back, its clip cut short."""
        return self._release(final=True)

    def _hit(self, detection: Detection) -> None:
        span = self._clip_span(detection.time_s) if self._clip_span is not None else (0, 0)
        self._pending.append(_Pending(detection, *span))

    def _release(self, final: bool) -> list[Hit]:
        ready: list[_Pending] = []
        waiting: list[_Pending] = []
        for pending in self._pending:
            (ready if final or pending.end <= self.samples else waiting).append(pending)
        self._pending = waiting
        hits = [Hit(p.detection, self._cut(p) if self._clip_span is not None else None)
                for p in ready]
        if self._clip_span is not None:
            # Keep what a held-back hit or a hit at the next hop could still need.
            keep_from = min([p.start for p in self._pending] + [self.samples - self._lead])
            drop = max(0, keep_from - self._first)
            self._recent = self._recent[drop:]
            self._first += drop
        return sorted(hits, key=lambda hit: hit.detection.time_s)

    def _cut(self, pending: _Pending) -> np.ndarray:
        start = max(pending.start, self._first) - self._first
        return self._recent[start:max(start, min(pending.end, self.samples) - self._first)].copy()
