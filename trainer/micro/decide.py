"""ESPHome's decision rule, on the uint8 probabilities a streaming model emits per Invoke.

`micro_wake_word` keeps the last `sliding_window_size` probabilities (zeros at the start)
and reports the wake word when their mean, as a fraction of 255, is strictly above
`probability_cutoff`. It ignores the first MIN_SLICES_BEFORE_DETECTION feature slices after
a (re)start, and after a detection it stops, so the assist pipeline runs, and restarts with
a cleared window. Here that pause is REFRACTORY_S, the benchmarks' shared refractory period;
it is longer than the window, so the cleared window ESPHome restarts with changes nothing.
"""

from __future__ import annotations

import numpy as np

from sentry.constants import SAMPLE_RATE

from .features import STEP_SAMPLES, WINDOW_SAMPLES

REFRACTORY_S = 2.0
"""Seconds after a detection in which no other is reported."""
MIN_SLICES_BEFORE_DETECTION = 74
"""Feature slices (10 ms) ESPHome lets pass after starting before it may detect."""
FIRST_SLICE_DELAY_S = (WINDOW_SAMPLES - STEP_SAMPLES) / SAMPLE_RATE
"""Slice i is complete 30 ms + 10 ms * i into the stream: 20 ms more than (i + 1) steps."""


def sliding_means(probs: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` uint8 probabilities at each step, as a fraction of 255
    (the window starts full of zeros)."""
    padded = np.concatenate([np.zeros(window - 1), np.asarray(probs, dtype=np.float64)])
    return np.convolve(padded, np.ones(window), mode="valid") / (255.0 * window)


def detections(probs: np.ndarray, *, cutoff: float, window: int, stride: int,
               step_ms: int, refractory_s: float = REFRACTORY_S) -> np.ndarray:
    """Seconds from the stream's start (at the end of the deciding step) of each detection.

    probs: uint8, one per Invoke of `stride` feature slices of `step_ms` each."""
    step_s = stride * step_ms / 1000.0
    means = sliding_means(probs, window)
    skip = max(1, int(np.ceil(refractory_s / step_s)))
    ready = -(-MIN_SLICES_BEFORE_DETECTION // stride)
    times = []
    for j in np.flatnonzero(means > cutoff):
        if j >= ready:
            times.append((j + 1) * step_s + FIRST_SLICE_DELAY_S)
            ready = j + skip
    return np.asarray(times, dtype=np.float64)
