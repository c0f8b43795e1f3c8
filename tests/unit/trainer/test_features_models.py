import numpy as np
import torch

from sentry.constants import (CLIP_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES,
                              SAMPLE_RATE, WINDOW_FRAMES)
from trainer.config import Config, ModelConfig
from trainer.features import LogMel, n_frames
from trainer.models import count_parameters
from trainer.plugins import PluginManager


def test_hop_by_hop_frames_equal_whole_stream_frames():
    """The streaming contract: framing hop by hop with 240 samples of overlap is exact."""
    rng = np.random.default_rng(0)
    stream = torch.from_numpy(rng.standard_normal(HOP_SAMPLES * 10).astype(np.float32) * 0.1)
    padded = torch.cat([torch.zeros(OVERLAP_SAMPLES), stream])
    frontend = LogMel()
    whole = frontend(padded[None])[0]
    hops = [frontend(padded[None, i * HOP_SAMPLES:i * HOP_SAMPLES + OVERLAP_SAMPLES + HOP_SAMPLES])[0]
            for i in range(10)]
    assert all(h.shape == (HOP_FRAMES, N_MELS) for h in hops)
    torch.testing.assert_close(torch.cat(hops), whole[:10 * HOP_FRAMES], atol=1e-4, rtol=1e-4)


def test_window_shape_and_tone_lands_in_the_right_mel_bin():
    assert n_frames(CLIP_SAMPLES) == WINDOW_FRAMES
    t = torch.arange(CLIP_SAMPLES) / SAMPLE_RATE
    low, high = (LogMel()(torch.sin(2 * torch.pi * f * t)[None] * 0.5)[0] for f in (300.0, 3000.0))
    assert low.shape == (WINDOW_FRAMES, N_MELS)
    assert low.mean(0).argmax() < high.mean(0).argmax()


def test_default_student_is_small_and_maps_windows_to_logits():
    build_model = PluginManager().build_model
    model = build_model(Config().model)
    assert count_parameters(model) <= 100_000
    assert model(torch.zeros(3, WINDOW_FRAMES, N_MELS)).shape == (3,)
    tiny = build_model(ModelConfig(channels=(8, 8), strides=(2,)))
    assert count_parameters(tiny) < count_parameters(model)
