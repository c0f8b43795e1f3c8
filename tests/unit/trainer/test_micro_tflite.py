"""The ESPHome export, TensorFlow side: the streaming TF graph equals MicroNet (fp32), the int8
flatbuffer keeps ESPHome's contract and op set and stays under 64 KB, TFLite Micro runs it
close to fp32, and the measured arena is the smallest that works.

Skipped without the [esphome] extra (tensorflow, tflite-micro, pymicro-features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")
pytest.importorskip("pymicro_features")

from trainer.micro.features import features_for  # noqa: E402
from trainer.micro.model import MicroNet  # noqa: E402
from trainer.micro.streaming import build_streaming, convert_int8, run_streaming  # noqa: E402
from trainer.micro.tflm import MicroModel, _fits, measure_arena  # noqa: E402

ESPHOME_OPS = {"CALL_ONCE", "VAR_HANDLE", "RESHAPE", "READ_VARIABLE", "STRIDED_SLICE",
               "CONCATENATION", "ASSIGN_VARIABLE", "CONV_2D", "MUL", "ADD", "MEAN",
               "FULLY_CONNECTED", "LOGISTIC", "QUANTIZE", "DEPTHWISE_CONV_2D",
               "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "PACK", "SPLIT_V"}
"""The ops ESPHome's micro_wake_word registers in its resolver (register_streaming_ops_)."""
INT8_TOLERANCE = 0.08
"""Largest |int8 TFLM - fp32| probability allowed on any step (the mean must be 4x smaller)."""


@pytest.fixture(scope="module")
def streams() -> list[np.ndarray]:
    from trainer.synth.espeak import synthesize
    texts = [("hey jarvis, turn on the kitchen lights please", "en-us+m3"),
             ("the weather tomorrow will be cloudy with some rain", "en-gb-scotland+f2"),
             ("hey jarvis", "en-us+f3")]
    return [features_for(synthesize(t, voice=v)) for t, v in texts]


@pytest.fixture(scope="module")
def model(streams) -> MicroNet:
    torch.manual_seed(0)
    net = MicroNet()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = None
    net.train()
    with torch.no_grad():
        for feats in streams:
            net(torch.from_numpy(feats)[None])
    return net.eval()


@pytest.fixture(scope="module")
def flatbuffer(model, streams) -> bytes:
    return convert_int8(model, streams[:2])


def test_tf_streaming_equals_torch_non_streaming(model, streams):
    module = build_streaming(model)
    for feats in streams:
        with torch.no_grad():
            whole = torch.sigmoid(model(torch.from_numpy(feats)[None]))[0].numpy()
        assert whole.std() > 0.01
        np.testing.assert_allclose(run_streaming(module, feats, model.config.stride), whole,
                                   atol=1e-4, rtol=0)


def test_int8_model_keeps_esphome_contract(flatbuffer):
    import tensorflow as tf
    assert len(flatbuffer) <= 64 * 1024
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= ESPHOME_OPS, ops - ESPHOME_OPS
    assert {"VAR_HANDLE", "ASSIGN_VARIABLE"} <= ops  # the state lives inside the model
    floats = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    assert not floats  # no float tensors, so no Dequantize: ring buffers are int8 too


def test_tflm_int8_tracks_fp32_on_held_back_speech(model, flatbuffer, streams):
    feats = streams[2]  # not among the calibration streams
    with torch.no_grad():
        fp32 = torch.sigmoid(model(torch.from_numpy(feats)[None]))[0].numpy()
    micro = MicroModel(flatbuffer)
    # Fed one slice at a time, as ESPHome does: the model invokes every `stride` slices.
    int8_feats = np.rint(feats / (26 / 256)).astype(np.int16) - 128
    probs = np.concatenate([micro.feed(int8_feats[i:i + 1].astype(np.int8))
                            for i in range(len(int8_feats))]) / 255.0
    assert len(probs) == len(fp32)
    error = np.abs(probs - fp32)
    assert error.max() <= INT8_TOLERANCE and error.mean() <= INT8_TOLERANCE / 4, \
        (error.max(), error.mean())


def test_measured_arena_is_the_smallest_that_runs(tmp_path, flatbuffer):
    path = tmp_path / "m.tflite"
    path.write_bytes(flatbuffer)
    arena = measure_arena(path)
    assert _fits(path, arena)
    assert not _fits(path, arena - 16)
    assert 4096 < arena < 64 * 1024


def _esphome() -> str:
    import os
    import shutil
    found = os.environ.get("HARK_ESPHOME") or shutil.which("esphome")
    if not found:
        pytest.skip("esphome is not installed (set HARK_ESPHOME to its executable)")
    return found


def test_esphome_config_accepts_the_manifest(tmp_path, flatbuffer):
    import json
    from trainer.micro.esphome import esphome_config, manifest_dict
    esphome = _esphome()
    (tmp_path / "hey_test.tflite").write_bytes(flatbuffer)
    manifest = manifest_dict(wake_word="hey test", model_file="hey_test.tflite", cutoff=0.9,
                             arena=30_000, author="Hark tests", website="https://example.org",
                             languages=["en"])
    good = tmp_path / "hey_test.json"
    good.write_text(json.dumps(manifest))
    valid, output = esphome_config(good, esphome, workdir=tmp_path)
    assert valid, output[-3000:]
    del manifest["micro"]["tensor_arena_size"]  # ESPHome's v2 schema requires it
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(manifest))
    valid, output = esphome_config(bad, esphome, workdir=tmp_path)
    assert not valid and "manifest" in output.lower()
