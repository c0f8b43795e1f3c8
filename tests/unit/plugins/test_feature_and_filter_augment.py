import numpy as np
import torch

from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from trainer.config import AugmentConfig
from plugins.augment_basic import Tilt, lowpass, tilt
from plugins.specaugment import mel_warp, spec_augment


def _tone(freq: float) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(CLIP_SAMPLES) / SAMPLE_RATE).astype(np.float32)


def test_lowpass_keeps_the_band_and_removes_the_top():
    kept = lowpass(torch.from_numpy(_tone(1000.0)), 3400.0).numpy()
    removed = lowpass(torch.from_numpy(_tone(5000.0)), 3400.0).numpy()
    assert np.std(kept) > 0.69  # a unit sine has std 0.707
    assert np.std(removed) < 0.01


def test_mel_warp_moves_a_peak_up_by_the_factor():
    features = torch.zeros(1, 5, 40)
    features[:, :, 10] = 1.0
    aug = AugmentConfig(mel_warp_probability=1.0, mel_warp=(1.2, 1.2))
    warped = mel_warp(features, aug, torch.Generator().manual_seed(0))
    assert int(warped[0, 0].argmax()) == 12  # bin k reads k / 1.2: bin 12 reads 10


def test_mel_warp_with_probability_zero_is_identity():
    features = torch.randn(4, 6, 40)
    aug = AugmentConfig(mel_warp_probability=0.0)
    torch.testing.assert_close(mel_warp(features, aug, torch.Generator().manual_seed(0)), features)


def test_spec_augment_masks_within_limits_and_is_seeded():
    features = torch.randn(8, 148, 40)
    aug = AugmentConfig(time_masks=1, time_mask_frames=10, freq_masks=1, freq_mask_bins=6)
    a = spec_augment(features, aug, torch.Generator().manual_seed(1))
    b = spec_augment(features, aug, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    changed = (a != features).float()
    # at most one time mask (10 frames x 40 bins) + one freq mask (6 bins x 148 frames) per window
    assert (changed.sum(dim=(1, 2)) <= 10 * 40 + 6 * 148).all()
    assert changed.sum() > 0


def _tone_level_db(pcm: torch.Tensor, hz: float) -> float:
    spectrum = torch.fft.rfft(pcm).abs()
    return 20 * float(torch.log10(spectrum[round(hz * pcm.shape[-1] / SAMPLE_RATE)]))


def test_tilt_changes_level_by_db_per_octave_around_one_khz():
    t = torch.arange(CLIP_SAMPLES) / SAMPLE_RATE
    pcm = sum(torch.sin(2 * torch.pi * hz * t) for hz in (500.0, 1000.0, 4000.0)).unsqueeze(0)
    out = tilt(pcm, torch.tensor([6.0]))
    assert abs(_tone_level_db(out[0], 1000.0) - _tone_level_db(pcm[0], 1000.0)) < 0.1
    assert abs(_tone_level_db(out[0], 4000.0) - _tone_level_db(pcm[0], 4000.0) - 12.0) < 0.2
    assert abs(_tone_level_db(out[0], 500.0) - _tone_level_db(pcm[0], 500.0) + 6.0) < 0.2


def test_tilt_step_keeps_peak_and_skips_rows_by_probability():
    config = AugmentConfig(tilt_probability=0.5, tilt_db_per_octave=(6.0, 6.0))
    pcm = torch.randn(64, CLIP_SAMPLES) * 0.1
    out = Tilt(config, None)(pcm, torch.zeros(64), torch.Generator().manual_seed(0))
    changed = (out - pcm).abs().amax(dim=1) > 1e-4
    assert 10 < int(changed.sum()) < 54
    torch.testing.assert_close(out.abs().amax(dim=1), pcm.abs().amax(dim=1))
