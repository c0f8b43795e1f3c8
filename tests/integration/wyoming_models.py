"""Exported model folders whose classifier fires on a pure tone, for the Wyoming tests.

The closed-form graphs of tests/unit/sentry/conftest.py, rebuilt here rather than
imported because those builders are fixed to one tone: here the tone band is a
parameter, so that two models can listen to one stream for different "words".

  features.onnx  pcm [B, 1520] -> frames [B, 8, 40]: 8 Hann-windowed 400-sample frames
                 (step 160), log power at DFT bins 4, 8, ..., 160 (band b at
                 (b + 1) * BAND_STEP_HZ).
  model.onnx     frames [B, 148, 40] -> prob [B]: how far band `band`'s log power stands
                 above the mean of all bands, averaged with weights decaying into the
                 past (RECENCY_FRAMES), minus CONTRAST_CENTER, through a sigmoid.

A loud tone exactly on a band's bin fires that band's model within a hop or two of
its onset; quiet noise and tones on other bands do not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sentry.constants import (CLIP_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES,
                              SAMPLE_RATE, WINDOW_FRAMES)
from sentry.manifest import Manifest

# The features graph is shared with the sentry unit tests; test folders are not packages.
_TONE_FEATURES_PATH = Path(__file__).parents[1] / "tone_features.py"
_spec = importlib.util.spec_from_file_location("hark_test_tone_features", _TONE_FEATURES_PATH)
_TONE_FEATURES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_TONE_FEATURES)
OPSET = _TONE_FEATURES.OPSET
BAND_STEP_HZ = _TONE_FEATURES.BAND_STEP_HZ
"""Band spacing: every 4th DFT bin of the 400-sample window (40 Hz per bin)."""
RECENCY_FRAMES = 4.0
"""Time constant, in 10 ms frames, of the classifier's exponential look-back."""
CONTRAST_CENTER = 5.0
"""Natural-log power contrast at which the classifier scores 0.5."""
BURST_AMPLITUDE = 0.5
BURST_S = 0.5
NOISE_AMPLITUDE = 0.003
"""RMS of the background noise under every signal: quiet, but not digital silence."""


def band_hz(band: int) -> float:
    """Frequency in Hz that sits exactly on `band`'s DFT bin (no leakage under Hann)."""
    return BAND_STEP_HZ * (band + 1)


def _features_graph() -> onnx.ModelProto:
    return _TONE_FEATURES.features_graph()


def _classifier_graph(band: int) -> onnx.ModelProto:
    contrast = np.full(N_MELS, -1.0 / N_MELS, np.float32)
    contrast[band] += 1.0
    age = np.arange(WINDOW_FRAMES)[::-1]  # frames before the window's end
    recency = np.exp(-age / RECENCY_FRAMES)
    recency = (recency / recency.sum()).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["features", "contrast"], ["per_frame"]),  # [B, frames]
        helper.make_node("MatMul", ["per_frame", "recency"], ["level"]),  # [B]
        helper.make_node("Sub", ["level", "center"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "tone_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", WINDOW_FRAMES, N_MELS])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B"])],
        initializer=[numpy_helper.from_array(contrast, "contrast"),
                     numpy_helper.from_array(recency, "recency"),
                     numpy_helper.from_array(np.array(CONTRAST_CENTER, np.float32), "center")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def write_tone_model(folder: Path, wake_word: str, band: int, *, threshold: float = 0.5,
                     refractory_s: float = 1.0) -> Path:
    """A complete exported-model folder that detects `wake_word` = a tone on `band`."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_features_graph(), str(folder / "features.onnx"))
    classifier = _classifier_graph(band)
    onnx.save(classifier, str(folder / "model.onnx"))
    onnx.save(classifier, str(folder / "model.int8.onnx"))
    Manifest(wake_word=wake_word, sample_rate=SAMPLE_RATE, window_samples=CLIP_SAMPLES,
             hop_samples=HOP_SAMPLES, overlap_samples=OVERLAP_SAMPLES,
             window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES, n_mels=N_MELS,
             threshold=threshold, smoothing_hops=1, refractory_s=refractory_s, parameters=0,
             architecture="tone-fixture", config_hash=f"tone-band-{band}",
             files={"features": "features.onnx", "model": "model.onnx",
                    "model_int8": "model.int8.onnx"}).write(folder)
    return folder


def tone_bursts(duration_s: float, bursts: list[tuple[float, float]], *,
                rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Quiet seeded noise with BURST_S tone bursts, float32 mono at `rate` Hz.

    bursts: (start in seconds, frequency in Hz) per burst.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    audio = rng.normal(0.0, NOISE_AMPLITUDE, n)
    t = np.arange(n) / rate
    for start, hz in bursts:
        on = (t >= start) & (t < start + BURST_S)
        audio[on] += BURST_AMPLITUDE * np.sin(2 * np.pi * hz * (t[on] - start))
    return audio.astype(np.float32)


def encode_pcm(audio: np.ndarray, width: int, channels: int) -> bytes:
    """float32 mono in [-1, 1] -> interleaved little-endian PCM bytes as Wyoming carries
    it (8-bit unsigned, 16/24/32-bit signed), the same signal on every channel."""
    full_scale = 2 ** (8 * width - 1)
    ints = np.clip(np.round(audio.astype(np.float64) * (full_scale - 1)), -full_scale, full_scale - 1)
    ints = np.repeat(ints.astype(np.int64)[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        return (ints + 128).astype(np.uint8).tobytes()
    little_endian = ints.astype("<i8").view(np.uint8).reshape(-1, 8)
    return little_endian[:, :width].tobytes()
