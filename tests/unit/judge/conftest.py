"""Fixtures for the judge tests: a real exported-model folder whose verdicts are known in
closed form, with the graphs the judge runs (the sentry's) and a clip.onnx equal to them.

  features.onnx  pcm [B, 1520] -> frames [B, 8, 40]: tests/tone_features.py, log power at
                 40 DFT bins, band b at (b + 1) * 160 Hz.
  model.onnx     features [B, 148, 40] -> prob [B]: how far the TONE_BAND log power stands
                 above the mean of all bands, averaged over the window's frames, minus
                 CENTER, times SLOPE, through a sigmoid. A window full of the tone scores
                 ~1; noise, silence and other tones score ~0; a window partly tone, between.
  clip.onnx      pcm [B, 24000] -> prob [B]: the two graphs composed over one 1.5 s window
                 (frames 148 of 400 samples every 160, as the exporter's clip graph).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sentry.constants import (CLIP_SAMPLES, FRAME_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS,
                              OVERLAP_SAMPLES, SAMPLE_RATE, WIN_SAMPLES, WINDOW_FRAMES)
from sentry.manifest import Manifest

# The features graph is shared with the sentry and Wyoming tests; test folders are not packages.
_TONE_FEATURES_PATH = Path(__file__).parents[2] / "tone_features.py"
_spec = importlib.util.spec_from_file_location("hark_test_tone_features_judge", _TONE_FEATURES_PATH)
_TONE_FEATURES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_TONE_FEATURES)
OPSET = _TONE_FEATURES.OPSET
TONE_BAND = 5
TONE_HZ = _TONE_FEATURES.BAND_STEP_HZ * (TONE_BAND + 1)
"""960 Hz: exactly on band 5's DFT bin, so a Hann window leaks nothing into other bands."""
CENTER = 6.0
"""Natural-log contrast (tone band over the mean band) at which a window scores 0.5: a
window full of the tone stands ~12 above, noise ~0."""
SLOPE = 2.0
NOISE_RMS = 0.01
TONE_AMPLITUDE = 0.5
WAKE_WORD = "test tone"
KEY = "k" * 20 + "-fixture-key"


def _classifier_graph() -> onnx.ModelProto:
    band_contrast = np.full(N_MELS, -1.0 / N_MELS, np.float32)
    band_contrast[TONE_BAND] += 1.0
    nodes = [
        helper.make_node("MatMul", ["features", "band_contrast"], ["contrast"]),  # [B, frames]
        helper.make_node("ReduceMean", ["contrast"], ["level"], axes=[1], keepdims=0),
        helper.make_node("Sub", ["level", "center"], ["centred"]),
        helper.make_node("Mul", ["centred", "slope"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "fixture_judge_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", WINDOW_FRAMES, N_MELS])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B"])],
        initializer=[numpy_helper.from_array(band_contrast, "band_contrast"),
                     numpy_helper.from_array(np.array(CENTER, np.float32), "center"),
                     numpy_helper.from_array(np.array(SLOPE, np.float32), "slope")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _clip_graph() -> onnx.ModelProto:
    """clip.onnx as the exporter builds it: the window framed into WINDOW_FRAMES frames
    without centre padding (its last 80 samples unread), then the same two graphs."""
    features = _TONE_FEATURES.features_graph()
    classifier = _classifier_graph()
    # The features graph frames 1520 samples into 8 frames with a Gather; over a whole
    # window the same Gather of WINDOW_FRAMES frames gives [B, 148, 40] in one go.
    frame_index = (np.arange(WINDOW_FRAMES)[:, None] * FRAME_SAMPLES
                   + np.arange(WIN_SAMPLES)[None, :]).astype(np.int64)
    inits = {i.name: numpy_helper.to_array(i) for i in features.graph.initializer}
    inits["frame_index"] = frame_index
    inits.update({i.name: numpy_helper.to_array(i) for i in classifier.graph.initializer})
    nodes = [*features.graph.node, helper.make_node("Identity", ["frames"], ["features"]),
             *classifier.graph.node]
    graph = helper.make_graph(
        nodes, "fixture_judge_clip",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["B", CLIP_SAMPLES])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def write_judge_model(folder: Path, threshold: float = 0.5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_TONE_FEATURES.features_graph(), str(folder / "features.onnx"))
    onnx.save(_classifier_graph(), str(folder / "model.onnx"))
    onnx.save(_clip_graph(), str(folder / "clip.onnx"))
    Manifest(wake_word=WAKE_WORD, sample_rate=SAMPLE_RATE, window_samples=CLIP_SAMPLES,
             hop_samples=HOP_SAMPLES, overlap_samples=OVERLAP_SAMPLES,
             window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES, n_mels=N_MELS,
             threshold=threshold, smoothing_hops=1, refractory_s=1.0, parameters=N_MELS + 2,
             architecture="fixture-tone-contrast", config_hash="fixture",
             files={"features": "features.onnx", "model": "model.onnx",
                    "clip": "clip.onnx"}).write(folder)
    return folder


def make_clip(seconds: float, tone: tuple[float, float] | None, *, rate: int = SAMPLE_RATE,
              hz: float = TONE_HZ, seed: int = 0) -> np.ndarray:
    """Noise at NOISE_RMS with an `hz` tone over `tone` = (start_s, end_s), float32 mono."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    audio = rng.normal(0.0, NOISE_RMS, n)
    if tone is not None:
        t = np.arange(n) / rate
        on = (t >= tone[0]) & (t < tone[1])
        audio[on] += TONE_AMPLITUDE * np.sin(2 * np.pi * hz * t[on])
    return audio.astype(np.float32)


@pytest.fixture(scope="session")
def judge_model(tmp_path_factory) -> Path:
    return write_judge_model(tmp_path_factory.mktemp("judge_model"))


@pytest.fixture(scope="session")
def judge_spec() -> SimpleNamespace:
    """Constants and builders of the fixture (tests reach them here, not by importing
    a conftest, which is ambiguous with several conftest files)."""
    return SimpleNamespace(key=KEY, tone_hz=TONE_HZ, make_clip=make_clip,
                           write_judge_model=write_judge_model)
