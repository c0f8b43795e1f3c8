"""Fixtures shared by the trainer's unit tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sentry.constants import SAMPLE_RATE


def _f0(audio: np.ndarray) -> float:
    """Autocorrelation peak (60-400 Hz) of the loudest 100 ms: the voice's pitch, roughly."""
    frames = audio[: len(audio) // 1600 * 1600].reshape(-1, 1600)
    loudest = frames[np.argmax(np.sum(frames ** 2, axis=1))]
    ac = np.correlate(loudest, loudest, "full")[len(loudest) - 1:]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    return SAMPLE_RATE / (lo + np.argmax(ac[lo:hi]))


@pytest.fixture
def f0() -> Callable[[np.ndarray], float]:
    return _f0
