"""The features a microWakeWord-style model sees on an ESP32, computed bit for bit.

ESPHome's `micro_wake_word` runs the TFLite Micro audio frontend (30 ms Hann window, 10 ms
step, 40 filterbank channels 125-7500 Hz, noise reduction, PCAN gain control, log scale) on
16-bit PCM and gets one uint16 vector per 10 ms. It then maps each value u to the model's
int8 input as round(u * 256 / 666) - 128, clamped to [-128, 127]: 666 is 25.6 * 26 rounded,
i.e. the historical "divide by 25.6" of training pipelines followed by quantization of the
0..26 float range to 256 levels. PyPI `pymicro-features` wraps the same C frontend and
returns u / 25.6 as floats (exact: a multiple of 1/256), so u is recovered exactly.

`features_for` returns the float value each int8 input represents under the model's input
quantization (scale INPUT_SCALE, zero point INPUT_ZERO_POINT), so training sees exactly the
lattice of values the chip feeds, and `quantize` gives the int8 tensor itself.
"""

from __future__ import annotations

import numpy as np

from sentry.constants import FRAME_SAMPLES

from . import ESPHOME_EXTRA_HINT, MicroError

N_FEATURES = 40
"""Filterbank channels per 10 ms slice (ESPHome's PREPROCESSOR_FEATURE_SIZE)."""
FEATURE_STEP_MS = 10
"""Milliseconds of new audio per feature slice (the manifest's feature_step_size)."""
STEP_SAMPLES = FRAME_SAMPLES
"""Samples per feature slice at 16 kHz: 160."""
WINDOW_SAMPLES = 3 * STEP_SAMPLES
"""The frontend's 30 ms analysis window: the first slice appears after 480 samples."""
PCM16_SCALE = 32767.0
"""float [-1, 1] -> int16, as the benchmarks feed the peers."""

FRONTEND_DIVISOR = 25.6
"""pymicro-features reports uint16 / 25.6."""
ESPHOME_VALUE_SCALE = 256
ESPHOME_VALUE_DIV = 666
"""ESPHome's integer mapping uint16 -> int8: (u * 256 + 333) // 666 - 128."""
INPUT_ZERO_POINT = -128
INPUT_SCALE = 26.0 / 256
"""The int8 input quantization this mapping implies: q represents (q + 128) * 26 / 256."""


def _frontend():
    try:
        from pymicro_features import MicroFrontend
    except ImportError as exc:
        raise MicroError(f"the TFLite Micro frontend needs pymicro-features ({exc}); "
                         f"{ESPHOME_EXTRA_HINT}") from exc
    return MicroFrontend()


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> int16 samples, clipped."""
    return (np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0) * PCM16_SCALE).astype(np.int16)


def n_slices(n_samples: int) -> int:
    """Feature slices the frontend emits for n_samples of audio fed from a fresh state."""
    return 0 if n_samples < WINDOW_SAMPLES else 1 + (n_samples - WINDOW_SAMPLES) // STEP_SAMPLES


class StreamingFrontend:
    """The frontend with its state (noise estimate, PCAN), fed in any chunk sizes; emits the
    raw uint16 slices. One instance per audio stream, as on the chip."""

    def __init__(self) -> None:
        self._frontend = _frontend()
        self._pending = np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        self._frontend.reset()
        self._pending = np.zeros(0, dtype=np.int16)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """int16 samples -> uint16 features [slices, N_FEATURES] completed by them."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        n_steps = len(data) // STEP_SAMPLES
        out: list[list[float]] = []
        process = self._frontend.process_samples
        for i in range(n_steps):
            chunk = data[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES].tobytes()
            result = process(chunk)
            if result.samples_read != STEP_SAMPLES:  # the wrapper consumes one step per call
                raise MicroError(f"pymicro-features read {result.samples_read} of {STEP_SAMPLES} "
                                 "samples; this version of the package is not supported")
            if result.features:
                out.append(result.features)
        self._pending = data[n_steps * STEP_SAMPLES:]
        if not out:
            return np.zeros((0, N_FEATURES), dtype=np.uint16)
        return np.rint(np.asarray(out, dtype=np.float64) * FRONTEND_DIVISOR).astype(np.uint16)


def quantize(raw: np.ndarray) -> np.ndarray:
    """uint16 frontend output -> the int8 model input, ESPHome's integer arithmetic."""
    value = (raw.astype(np.int32) * ESPHOME_VALUE_SCALE + ESPHOME_VALUE_DIV // 2) // ESPHOME_VALUE_DIV
    return np.clip(value + INPUT_ZERO_POINT, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """int8 model input -> the float value it represents."""
    return ((q.astype(np.float32) - INPUT_ZERO_POINT) * INPUT_SCALE).astype(np.float32)


def int8_features_for(pcm: np.ndarray) -> np.ndarray:
    """float32 16 kHz pcm -> int8 [slices, N_FEATURES], from a fresh frontend."""
    return quantize(StreamingFrontend().process(to_int16(pcm)))


def features_for(pcm: np.ndarray) -> np.ndarray:
    """float32 16 kHz pcm -> float32 [slices, N_FEATURES], the values the chip's int8 input
    represents (0 .. 25.9), from a fresh frontend (as a clip starts on a fresh device)."""
    return dequantize(int8_features_for(pcm))


WARMUP_SAMPLES = 100 * STEP_SAMPLES
"""1 s: audio the frontend hears before a training window. Its noise estimate and PCAN gain
adapt over a few hundred ms; on the chip they have adapted long before any wake word, so a
window must not start on a fresh frontend's onset (a bright, unnormalised first half second
the chip never produces)."""
WARMUP_SOURCE_SAMPLES = 25 * STEP_SAMPLES
"""The warm-up is built from the window's first 250 ms: in a positive window that is the
room before the word (the word ends >= 1 s later), in a negative one the speech or noise
that continues into the window, i.e. what the chip would have heard just before."""


def warmed_features(pcm: np.ndarray, extra: int = 0) -> np.ndarray:
    """float32 16 kHz pcm (a whole number of 10 ms steps) -> float32 [slices, N_FEATURES]:
    the window's slices from a frontend that first heard 1 s built from the window's first
    250 ms played forwards and backwards in turn (continuous at every join and at the
    window's start), so the frontend has adapted as on a running device. Slices keep the
    window's own 10 ms framing; the first two also see the end of the warm-up, as slices
    after earlier audio do on the chip.
    extra: also return this many warm-up slices before the window's (at most 97)."""
    pcm = np.asarray(pcm, dtype=np.float32)
    if len(pcm) % STEP_SAMPLES or len(pcm) < WARMUP_SOURCE_SAMPLES:
        raise MicroError(f"warmed_features: {len(pcm)} samples is not a whole number of "
                         f"{STEP_SAMPLES}-sample steps of at least {WARMUP_SOURCE_SAMPLES}")
    head = pcm[:WARMUP_SOURCE_SAMPLES]
    reps = WARMUP_SAMPLES // WARMUP_SOURCE_SAMPLES
    # ..., head, reversed head | window: the sample before the window's first is its first.
    lead = np.concatenate([head if (reps - i) % 2 == 0 else head[::-1] for i in range(reps)])
    features = features_for(np.concatenate([lead, pcm]))
    return features[-(len(pcm) // STEP_SAMPLES + extra):]


def batch_features(pcm: np.ndarray, extra: int = 0) -> np.ndarray:
    """float32 [B, samples] -> float32 [B, samples // 160 + extra, N_FEATURES],
    `warmed_features` of each row."""
    pcm = np.asarray(pcm)
    rows = [warmed_features(row, extra) for row in pcm]
    return np.stack(rows) if rows else np.zeros(
        (0, pcm.shape[-1] // STEP_SAMPLES + extra, N_FEATURES), np.float32)

