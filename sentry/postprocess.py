"""Turning per-hop scores into detections: smoothing, threshold, refractory period.

One implementation serves the streaming sentry (`Trigger`, fed one score at a time,
with an optional trigger level for the Wyoming service), offline evaluation (`detect`,
over a whole score array), the judge's clip score and the miner's block scan (`smooth`),
so the false accepts per hour measured on the dev box are the ones the device produces.
The scores themselves come from sentry.scoring.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .constants import HOP_SAMPLES, SAMPLE_RATE
from .errors import SentryError

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
    """Trailing moving average over `smoothing_hops` hops (float64 [hops]); the first
    hops average over what exists so far.

    Each average is the sum of its own scores, newest first, so it depends on those
    scores alone: a slice of a long score array smooths (past its first hops) exactly as
    the whole array does, which the miner's resumable block scan relies on, and a NaN
    (a score not computed) makes NaN only the averages that include it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if smoothing_hops <= 1 or scores.size == 0:
        return scores
    total = scores.copy()
    for back in range(1, min(smoothing_hops, scores.size)):
        total[back:] += scores[:-back]
    return total / np.minimum(np.arange(1, scores.size + 1), smoothing_hops)


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
    """Streaming twin of `detect`: feed one score per hop, get True when it fires.

    level: consecutive hops the smoothed score must stay at or above the threshold
    before it fires (a "trigger level", as openWakeWord users know it); 1, the default,
    fires on the first such hop, exactly as `detect`. After firing, the next detection
    needs `level` fresh hops and the refractory period to have passed.
    """

    def __init__(self, settings: TriggerSettings, level: int = 1) -> None:
        if level < 1:
            raise SentryError(f"trigger level must be >= 1 hop, got {level}")
        self.settings = settings
        self.level = level
        self._recent: deque[float] = deque(maxlen=settings.smoothing_hops)
        self.reset()

    def update(self, score: float) -> tuple[bool, float]:
        """Add the next hop's raw score; returns (fired, smoothed score)."""
        self._hop += 1
        self._recent.append(float(score))
        smoothed = sum(self._recent) / len(self._recent)
        self._run = self._run + 1 if smoothed >= self.settings.threshold else 0
        if self._run >= self.level and self._hop >= self._next_allowed:
            self._next_allowed = self._hop + max(self.settings.refractory_hops, 1)
            self._run = 0
            return True, smoothed
        return False, smoothed

    def reset(self) -> None:
        self._recent.clear()
        self._run = 0  # consecutive hops at or above the threshold
        self._hop = -1
        self._next_allowed = -1
