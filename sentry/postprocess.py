"""Turning per-hop scores into detections: smoothing, threshold, refractory period.

One implementation serves the streaming sentry (`Trigger`, fed one score at a time)
and offline evaluation (`detect`, over a whole score array), so the false accepts per
hour measured on the dev box are the ones the device will produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections import deque

import numpy as np

from .constants import HOP_SAMPLES, SAMPLE_RATE

HOP_SECONDS = HOP_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True)
class TriggerSettings:
    """How scores become detections.

    threshold: smoothed score (0..1) at or above which the detector fires.
    smoothing_hops: moving-average length in hops (1 = no smoothing).
    refractory_s: seconds after a detection during which no new one fires.
    """

    threshold: float = 0.5
    smoothing_hops: int = 3
    refractory_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.smoothing_hops < 1:
            raise ValueError(f"smoothing_hops must be >= 1, got {self.smoothing_hops}")
        if self.refractory_s < 0:
            raise ValueError(f"refractory_s must be >= 0, got {self.refractory_s}")

    @property
    def refractory_hops(self) -> int:
        return int(round(self.refractory_s / HOP_SECONDS))


def smooth(scores: np.ndarray, smoothing_hops: int) -> np.ndarray:
    """Trailing moving average; the first hops average over what exists so far."""
    scores = np.asarray(scores, dtype=np.float64)
    if smoothing_hops <= 1 or scores.size == 0:
        return scores
    csum = np.concatenate([[0.0], np.cumsum(scores)])
    idx = np.arange(1, scores.size + 1)
    lo = np.maximum(idx - smoothing_hops, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def detect_hops(smoothed: np.ndarray, threshold: float, refractory_hops: int) -> np.ndarray:
    """Indices of hops that fire, given already-smoothed scores."""
    candidates = np.flatnonzero(smoothed >= threshold)
    fired: list[int] = []
    next_allowed = -1
    for i in candidates:
        if i >= next_allowed:
            fired.append(int(i))
            next_allowed = i + max(refractory_hops, 1)
    return np.asarray(fired, dtype=np.int64)


def detect(scores: np.ndarray, settings: TriggerSettings) -> np.ndarray:
    """Detection times in seconds (end of the firing hop) for a whole score array."""
    hops = detect_hops(smooth(scores, settings.smoothing_hops), settings.threshold,
                       settings.refractory_hops)
    return (hops + 1) * HOP_SECONDS


class Trigger:
    """Streaming twin of `detect`: feed one score per hop, get True when it fires."""

    def __init__(self, settings: TriggerSettings) -> None:
        self.settings = settings
        self._recent: deque[float] = deque(maxlen=settings.smoothing_hops)
        self._hop = -1
        self._next_allowed = -1

    def update(self, score: float) -> tuple[bool, float]:
        """Add the next hop's score; returns (fired, smoothed score)."""
        self._hop += 1
        self._recent.append(float(score))
        smoothed = sum(self._recent) / len(self._recent)
        if smoothed >= self.settings.threshold and self._hop >= self._next_allowed:
            self._next_allowed = self._hop + max(self.settings.refractory_hops, 1)
            return True, smoothed
        return False, smoothed

    def reset(self) -> None:
        self._recent.clear()
        self._hop = -1
        self._next_allowed = -1
