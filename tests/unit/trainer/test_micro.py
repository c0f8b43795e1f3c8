"""The microcontroller student, torch side: ESPHome's feature mapping, the streaming parity
of MicroNet with its ring buffers, ESPHome's decision rule, the CLI's missing-extra message.

Tests needing PyPI pymicro-features (the [esphome] extra) skip without it; the streaming
parity test always runs (on log-mel features of espeak speech)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from trainer.micro import decide
from trainer.micro.model import MicroConfig, MicroNet, n_steps, streaming_forward

SPEECH = "hey jarvis, what is the weather like tomorrow in the mountains"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from trainer.synth.espeak import synthesize
    return synthesize(SPEECH, voice="en-us+m3")


def calibrated(model: MicroNet, features: torch.Tensor) -> MicroNet:
    """Batch-norm statistics from real features, so activations have realistic ranges."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(features)
    return model.eval()


def test_streaming_equals_non_streaming_on_speech(speech):
    from trainer.features import LogMel
    torch.manual_seed(0)
    # Log-mel of real speech mapped into the micro features' 0..26 range.
    with torch.no_grad():
        feats = ((LogMel()(torch.from_numpy(speech)[None])[0] + 2.5) * 5).clamp(0, 25.9)
        model = calibrated(MicroNet(), feats[None])
        whole = torch.sigmoid(model(feats[None]))[0]
    streamed = streaming_forward(model, feats)
    assert len(whole) == len(streamed) == n_steps(len(feats), model.config.stride)
    assert float(whole.std()) > 0.01  # a constant score would make the comparison empty
    np.testing.assert_allclose(streamed.numpy(), whole.numpy(), atol=1e-4, rtol=0)


def test_receptive_field_fits_the_training_window():
    from trainer.micro.features import n_slices
    from sentry.constants import CLIP_SAMPLES
    config = MicroConfig()
    # The newest step of a 1.5 s window must not reach into the left padding.
    assert config.receptive_field_slices() + 2 <= n_slices(CLIP_SAMPLES)


def test_window_score_ignores_audio_beyond_the_receptive_field():
    torch.manual_seed(1)
    model = calibrated(MicroNet(), torch.rand(4, 200, 40) * 20)
    a = torch.rand(1, 300, 40) * 20
    b = a.clone()
    reach = model.config.receptive_field_slices()
    b[:, : 300 - reach] = torch.rand(1, 300 - reach, 40) * 20  # change only the far past
    with torch.no_grad():
        assert torch.equal(model(a)[:, -1], model(b)[:, -1])
        b[:, 300 - reach] += 5  # the oldest slice inside the field: the score moves
        assert not torch.equal(model(a)[:, -1], model(b)[:, -1])


def test_esphome_feature_mapping_matches_its_integer_formula():
    from trainer.micro.features import dequantize, quantize
    raw = np.array([0, 1, 2, 332, 333, 334, 665, 666, 42000, 65535], dtype=np.uint16)
    # round(u * 256 / 666) - 128, halves rounded up, clamped to int8
    expected = np.clip([(int(u) * 256 + 333) // 666 - 128 for u in raw], -128, 127)
    assert quantize(raw).tolist() == expected.tolist()
    assert quantize(np.array([0], np.uint16))[0] == -128
    assert dequantize(np.array([-128, 127], np.int8)).tolist() == [0.0, 255 * 26 / 256]


def test_frontend_is_the_same_fed_in_any_chunks(speech):
    pytest.importorskip("pymicro_features")
    from trainer.micro.features import StreamingFrontend, features_for, n_slices, to_int16
    whole = StreamingFrontend().process(to_int16(speech))
    assert whole.shape == (n_slices(len(speech)), 40)
    frontend = StreamingFrontend()
    sizes = np.random.default_rng(0).integers(1, 700, size=400)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    parts = [frontend.process(to_int16(speech[a:b])) for a, b in zip(edges[:-1], edges[1:])]
    parts.append(frontend.process(to_int16(speech[edges[-1]:])))
    assert np.array_equal(np.concatenate(parts), whole)
    values = features_for(speech)
    # Every value is on ESPHome's int8 lattice and speech uses a good part of it.
    assert np.allclose(values / (26 / 256), np.round(values / (26 / 256)))
    assert values.min() >= 0 and 10 < values.max() <= 25.9


def test_sliding_mean_and_strict_cutoff():
    probs = np.array([0, 255, 255, 255, 0, 0, 0], dtype=np.uint8)
    means = decide.sliding_means(probs, 3)
    np.testing.assert_allclose(means, [0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0])
    long = np.zeros(200, dtype=np.uint8)
    long[100:103] = 255  # one full window at step 102
    at_one = decide.detections(long, cutoff=1.0, window=3, stride=3, step_ms=10)
    assert at_one.size == 0  # the mean must be strictly above the cutoff
    times = decide.detections(long, cutoff=0.9, window=3, stride=3, step_ms=10)
    assert times.tolist() == pytest.approx([103 * 0.03 + 0.02])


def test_refractory_and_startup_pause():
    probs = np.full(400, 255, dtype=np.uint8)  # 12 s of a certain wake word
    times = decide.detections(probs, cutoff=0.5, window=5, stride=3, step_ms=10)
    # the first after ESPHome's 74-slice start-up pause (25 steps), then one per 2 s
    assert times[0] == pytest.approx(25 * 0.03 + 0.02 + 0.03)
    assert np.allclose(np.diff(times), 67 * 0.03)


def test_export_without_the_extra_names_it(monkeypatch, tmp_path):
    from trainer.cli import main
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    result = CliRunner().invoke(main, ["export-esphome", str(tmp_path)])
    assert result.exit_code == 1
    assert "tensorflow" in result.output and "hark-wakeword[esphome]" in result.output
    assert "Traceback" not in result.output


def test_warmed_window_has_no_fresh_frontend_onset():
    pytest.importorskip("pymicro_features")
    from trainer.micro.features import features_for, warmed_features
    noise = (np.random.default_rng(3).standard_normal(24_000) * 0.01).astype(np.float32)
    fresh, warmed = features_for(noise), warmed_features(noise)
    assert warmed.shape == (150, 40)
    steady = warmed[-50:].mean()
    # A fresh frontend's noise estimate starts at zero: its first slices are far too bright.
    assert fresh[:20].mean() > 3 * steady
    assert abs(warmed[:20].mean() - steady) < 0.25 * steady
    assert warmed_features(noise, extra=24).shape == (174, 40)
    np.testing.assert_array_equal(warmed_features(noise, extra=24)[24:], warmed)


def test_export_esphome_help():
    from trainer.cli import main
    result = CliRunner().invoke(main, ["export-esphome", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and "micro_wake_word" in result.output


def test_hark_starts_without_loading_tensorflow_or_torch():
    import subprocess
    code = ("import sys, trainer.cli; print(sorted(m for m in ('tensorflow', 'torch', "
            "'tflite_micro') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
