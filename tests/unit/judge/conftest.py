"""Fixtures for the judge tests: a real clip.onnx whose verdicts are known in closed form.

  clip.onnx  pcm [B, 24000] -> prob [B]: the fraction of the window's energy at TONE_HZ
             (a Hann-windowed DFT bin over the whole window, normalised so a tone that
             fills the window gives ~1), minus CENTER, times SLOPE, through a sigmoid.
             A window full of the tone scores ~1; noise and silence score ~0.

The folder holds only clip.onnx and a manifest listing it: the judge needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sentry.constants import CLIP_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES, \
    SAMPLE_RATE, WINDOW_FRAMES
from sentry.manifest import Manifest

OPSET = 17
TONE_HZ = 1_000.0
"""A whole number of cycles per 1.5 s window (1500), so the DFT bin is exact."""
ENERGY_FLOOR = 1e-6
"""Added to the window's energy so digital silence scores 0, not NaN."""
CENTER = 0.5
SLOPE = 20.0
NOISE_RMS = 0.01
TONE_AMPLITUDE = 0.5
WAKE_WORD = "test tone"
KEY = "k" * 20 + "-fixture-key"


def _clip_graph() -> onnx.ModelProto:
    n = np.arange(CLIP_SAMPLES)
    window = np.hanning(CLIP_SAMPLES + 1)[:-1]
    phase = 2 * np.pi * TONE_HZ * n / SAMPLE_RATE
    # A tone filling the window gives |DFT|^2 / energy = N / 8 with a Hann window.
    norm = 8.0 / CLIP_SAMPLES
    basis = np.stack([window * np.cos(phase), window * np.sin(phase)], axis=1).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["pcm", "basis"], ["reim"]),  # [B, 2]
        helper.make_node("ReduceSumSquare", ["reim"], ["bin_power"], axes=[1], keepdims=0),
        helper.make_node("ReduceSumSquare", ["pcm"], ["energy"], axes=[1], keepdims=0),
        helper.make_node("Add", ["energy", "floor"], ["energy_floored"]),
        helper.make_node("Div", ["bin_power", "energy_floored"], ["ratio_raw"]),
        helper.make_node("Mul", ["ratio_raw", "norm"], ["ratio"]),
        helper.make_node("Sub", ["ratio", "center"], ["centred"]),
        helper.make_node("Mul", ["centred", "slope"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    consts = {"basis": basis, "floor": np.array(ENERGY_FLOOR, np.float32),
              "norm": np.array(norm, np.float32), "center": np.array(CENTER, np.float32),
              "slope": np.array(SLOPE, np.float32)}
    graph = helper.make_graph(
        nodes, "fixture_clip",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["B", CLIP_SAMPLES])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def write_judge_model(folder: Path, threshold: float = 0.5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_clip_graph(), str(folder / "clip.onnx"))
    Manifest(wake_word=WAKE_WORD, sample_rate=SAMPLE_RATE, window_samples=CLIP_SAMPLES,
             hop_samples=HOP_SAMPLES, overlap_samples=OVERLAP_SAMPLES,
             window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES, n_mels=N_MELS,
             threshold=threshold, smoothing_hops=1, refractory_s=1.0, parameters=2 * CLIP_SAMPLES,
             architecture="fixture-tone-clip", config_hash="fixture",
             files={"clip": "clip.onnx"}).write(folder)
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
