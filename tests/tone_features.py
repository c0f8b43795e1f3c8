"""The closed-form features.onnx shared by the tone-model test fixtures.

pcm [B, 1520] -> frames [B, 8, 40]: the 1520 samples framed into 8 Hann-windowed frames
of 400 (step 160), then log power at DFT bins 4, 8, ..., 160, so band b sits at
(b + 1) * BAND_STEP_HZ. Used by tests/unit/sentry/conftest.py and
tests/integration/wyoming_models.py; with --import-mode=importlib no test folder is on
sys.path, so they load this file by path.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sentry.constants import (FRAME_SAMPLES, HOP_FRAMES, HOP_SAMPLES, LOG_FLOOR, N_MELS,
                              OVERLAP_SAMPLES, WIN_SAMPLES)

OPSET = 17
BAND_STEP_HZ = 160.0
"""Hz between bands: DFT bin spacing is 40 Hz at 400 samples, and every 4th bin is kept."""


def features_graph() -> onnx.ModelProto:
    n_in = OVERLAP_SAMPLES + HOP_SAMPLES
    frame_index = (np.arange(HOP_FRAMES)[:, None] * FRAME_SAMPLES
                   + np.arange(WIN_SAMPLES)[None, :]).astype(np.int64)
    window = np.hanning(WIN_SAMPLES + 1)[:-1]  # periodic Hann
    bins = 4 * (np.arange(N_MELS) + 1)
    phase = 2 * np.pi * np.arange(WIN_SAMPLES)[:, None] * bins[None, :] / WIN_SAMPLES
    cos = (window[:, None] * np.cos(phase)).astype(np.float32)
    sin = (window[:, None] * np.sin(phase)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["pcm", "frame_index"], ["framed"], axis=1),
        helper.make_node("MatMul", ["framed", "cos"], ["re"]),
        helper.make_node("MatMul", ["framed", "sin"], ["im"]),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("Add", ["power", "floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["frames"]),
    ]
    graph = helper.make_graph(
        nodes, "tone_features",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["B", n_in])],
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["B", HOP_FRAMES, N_MELS])],
        initializer=[numpy_helper.from_array(frame_index, "frame_index"),
                     numpy_helper.from_array(cos, "cos"), numpy_helper.from_array(sin, "sin"),
                     numpy_helper.from_array(np.array(LOG_FLOOR, np.float32), "floor")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])

