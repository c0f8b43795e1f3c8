"""Fixtures for the sentry tests: a real (tiny) exported model folder and test audio.

The trained model comes from the trainer; these tests need graphs whose behaviour is
known in closed form, so they are built here with onnx.helper against the exact
exported interface:

  features.onnx  pcm [B, 1520] -> frames [B, 8, 40]: the 1520 samples framed into 8
                 Hann-windowed frames of 400 (step 160), then log power at 40 DFT bins,
                 band b at (b + 1) * BAND_STEP_HZ.
  model.onnx     features [B, 148, 40] -> prob [B]: per frame, how far the TONE_BAND log
                 power stands above the mean of all bands (plus a little of that mean); averaged over the window with
                 weights decaying into the past; minus a centre, through a sigmoid. A
                 loud TONE_HZ tone fires it; silence and broadband noise do not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from sentry.constants import (CLIP_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES,
                              SAMPLE_RATE, WINDOW_FRAMES)
from sentry.manifest import Manifest

# The features graph is shared with the Wyoming tests; test folders are not packages.
_TONE_FEATURES_PATH = Path(__file__).parents[2] / "tone_features.py"
_spec = importlib.util.spec_from_file_location("hark_test_tone_features", _TONE_FEATURES_PATH)
_TONE_FEATURES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_TONE_FEATURES)
OPSET = _TONE_FEATURES.OPSET
BAND_STEP_HZ = _TONE_FEATURES.BAND_STEP_HZ
"""Fixture band spacing: every 4th DFT bin of the 400-sample window (40 Hz per bin)."""
TONE_BAND = 9
TONE_HZ = BAND_STEP_HZ * (TONE_BAND + 1)
"""1600 Hz: exactly on band 9's bin, so a Hann window leaks nothing into other bands."""
RECENCY_FRAMES = 4.0
"""Time constant, in 10 ms frames, of the fixture classifier's exponential look-back."""
LEVEL_WEIGHT = 0.05
"""Weight of the mean log power of all bands, so the score is not blind to a uniform
change of level (as the initial ring of silence frames is)."""
WINDOW_FLOOR_WEIGHT = 2e-3
"""Weight every frame of the window gets on top, so a frame misplaced anywhere in the
ring changes the score (the streaming-equals-batch tests rely on that)."""
CONTRAST_CENTER = 5.0
"""Natural-log power contrast at which the fixture classifier scores 0.5."""
INT8_CENTER_SHIFT = 3.0
"""The fixture's model.int8.onnx is the same graph centred higher, so a test can tell
which file ran."""

WAKE_WORD = "test tone"
BURST_AMPLITUDE = 0.5
BURST_S = 0.5
NOISE_AMPLITUDE = 0.003
"""RMS of the background noise under every fixture signal: quiet, but not digital silence."""


def _features_graph() -> onnx.ModelProto:
    return _TONE_FEATURES.features_graph()


def _classifier_graph(center: float) -> onnx.ModelProto:
    band_contrast = np.full(N_MELS, (LEVEL_WEIGHT - 1.0) / N_MELS, np.float32)
    band_contrast[TONE_BAND] += 1.0
    age = np.arange(WINDOW_FRAMES)[::-1]  # frames before the window's end
    recency = np.exp(-age / RECENCY_FRAMES) + WINDOW_FLOOR_WEIGHT
    recency = (recency / recency.sum()).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["features", "band_contrast"], ["contrast"]),  # [B, frames]
        helper.make_node("MatMul", ["contrast", "recency"], ["level"]),  # [B]
        helper.make_node("Sub", ["level", "center"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "fixture_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", WINDOW_FRAMES, N_MELS])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B"])],
        initializer=[numpy_helper.from_array(band_contrast, "band_contrast"),
                     numpy_helper.from_array(recency, "recency"),
                     numpy_helper.from_array(np.array(center, np.float32), "center")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def fixture_manifest(**overrides) -> Manifest:
    fields = dict(
        wake_word=WAKE_WORD, sample_rate=SAMPLE_RATE, window_samples=CLIP_SAMPLES,
        hop_samples=HOP_SAMPLES, overlap_samples=OVERLAP_SAMPLES, window_frames=WINDOW_FRAMES,
        hop_frames=HOP_FRAMES, n_mels=N_MELS, threshold=0.5, smoothing_hops=1, refractory_s=1.0,
        parameters=0, architecture="fixture-tone", config_hash="fixture",
        files={"features": "features.onnx", "model": "model.onnx", "model_int8": "model.int8.onnx"})
    fields.update(overrides)
    return Manifest(**fields)


def write_model_dir(folder: Path, **manifest_overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_features_graph(), str(folder / "features.onnx"))
    onnx.save(_classifier_graph(CONTRAST_CENTER), str(folder / "model.onnx"))
    onnx.save(_classifier_graph(CONTRAST_CENTER + INT8_CENTER_SHIFT), str(folder / "model.int8.onnx"))
    fixture_manifest(**manifest_overrides).write(folder)
    return folder


def make_bursts(duration_s: float, starts_s: list[float], *, rate: int = SAMPLE_RATE,
                burst_s: float = BURST_S, amplitude: float = BURST_AMPLITUDE,
                seed: int = 0) -> np.ndarray:
    """Quiet noise with TONE_HZ bursts starting at `starts_s` (seconds), float32 mono."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    audio = rng.normal(0.0, NOISE_AMPLITUDE, n)
    t = np.arange(n) / rate
    for start in starts_s:
        on = (t >= start) & (t < start + burst_s)
        audio[on] += amplitude * np.sin(2 * np.pi * TONE_HZ * (t[on] - start))
    return audio.astype(np.float32)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A complete exported-model folder with the fixture graphs and manifest."""
    return write_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def fixture_spec() -> SimpleNamespace:
    """The fixture model's constants and builders, for tests that need more than the
    ready-made folder (tests reach them through this fixture rather than importing
    conftest, which is ambiguous when several test folders have one)."""
    return SimpleNamespace(tone_hz=TONE_HZ, wake_word=WAKE_WORD, write_model_dir=write_model_dir,
                           make_bursts=make_bursts)


@pytest.fixture(scope="session")
def bursts() -> Callable[..., np.ndarray]:
    """Factory: make_bursts(duration_s, starts_s, rate=..., seed=...)."""
    return make_bursts


@pytest.fixture(scope="session")
def burst_wav(tmp_path_factory) -> Path:
    """4 s, 16 kHz, 16-bit WAV with one tone burst starting at 1.0 s."""
    path = tmp_path_factory.mktemp("audio") / "burst.wav"
    sf.write(path, make_bursts(4.0, [1.0]), SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def quiet_wav(tmp_path_factory) -> Path:
    """4 s, 16 kHz, 16-bit WAV of background noise only."""
    path = tmp_path_factory.mktemp("audio") / "quiet.wav"
    sf.write(path, make_bursts(4.0, []), SAMPLE_RATE, subtype="PCM_16")
    return path
