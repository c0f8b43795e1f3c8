"""Pitch shift, speed perturbation and reverb on real signals."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from plugins.augment_pitch import PitchShift, Speed, change_speed, pitch_shift
from plugins.augment_reverb import Reverb
from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from trainer.config import AugmentConfig
from trainer.errors import TrainerError
from trainer.plugins import AugmentContext, AugmentState


def _tone(freq: float, rows: int = 1) -> torch.Tensor:
    t = torch.arange(CLIP_SAMPLES, dtype=torch.float64) / SAMPLE_RATE
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float().repeat(rows, 1)


def _peak_hz(pcm: torch.Tensor) -> float:
    """Dominant frequency of the middle second (Hann-windowed; 1 Hz bins)."""
    mid = pcm[CLIP_SAMPLES // 2 - SAMPLE_RATE // 2: CLIP_SAMPLES // 2 + SAMPLE_RATE // 2].double()
    spectrum = torch.fft.rfft(mid * torch.hann_window(len(mid), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * SAMPLE_RATE / len(mid)


def _context(**kw) -> AugmentContext:
    return AugmentContext(AugmentState(AugmentConfig(), (0.0, 25.0)), **kw)


@pytest.mark.parametrize("semitones", [-2.0, 1.5, 3.0])
def test_pitch_shift_moves_a_440_hz_tone(semitones):
    out = pitch_shift(_tone(440.0), semitones)
    assert out.shape == (1, CLIP_SAMPLES)
    assert _peak_hz(out[0]) == pytest.approx(440.0 * 2 ** (semitones / 12), abs=3.0)


def test_pitch_step_applies_per_row_shifts_and_is_seeded():
    config = AugmentConfig(pitch_probability=1.0, pitch_semitones=(2.0, 2.0))
    step = PitchShift(config, _context())
    out = step(_tone(440.0, 2), torch.ones(2), torch.Generator().manual_seed(0))
    assert _peak_hz(out[1]) == pytest.approx(440.0 * 2 ** (2 / 12), abs=3.0)
    off = PitchShift(AugmentConfig(pitch_probability=0.0), _context())
    torch.testing.assert_close(off(_tone(440.0, 2), torch.ones(2), torch.Generator()), _tone(440.0, 2))


def test_speed_moves_pitch_and_keeps_the_end_aligned():
    out = change_speed(_tone(440.0), 1.1)
    assert out.shape == (1, CLIP_SAMPLES)
    assert _peak_hz(out[0]) == pytest.approx(484.0, abs=3.0)
    burst = torch.zeros(1, CLIP_SAMPLES)
    burst[0, -4000:-2000] = 1.0  # a "word" ending 2000 samples before the window end
    slow = change_speed(burst, 0.9)
    assert slow[0, -1000:].abs().max() < 0.1 and slow[0, -2500:-2300].mean() > 0.5
    step = Speed(AugmentConfig(speed_probability=1.0, speed_factor=(0.9, 1.1)), _context())
    a = step(_tone(440.0, 4), torch.ones(4), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, step(_tone(440.0, 4), torch.ones(4), torch.Generator().manual_seed(3)))


def test_generated_reverb_adds_a_causal_decaying_tail():
    config = AugmentConfig(reverb_probability=1.0, reverb_rt60_s=(0.5, 0.5))
    impulse = torch.zeros(2, CLIP_SAMPLES)
    impulse[:, 4000] = 1.0
    out = Reverb(config, _context())(impulse, torch.ones(2), torch.Generator().manual_seed(0))
    assert out[:, :4000].abs().max() < 1e-6  # nothing before the sound (FFT round-off aside)
    early = out[:, 4100:4100 + 1600].pow(2).mean()
    late = out[:, 4000 + 8000:4000 + 9600].pow(2).mean()  # 0.5 s later: 60 dB down
    assert early > 0 and 10 * torch.log10(early / late) > 45.0


def test_reverb_from_rir_files_convolves_with_them(tmp_path):
    rir = np.zeros(800, dtype=np.float32)
    rir[0], rir[400] = 1.0, 0.5
    sf.write(tmp_path / "room.wav", rir, SAMPLE_RATE, subtype="FLOAT")
    config = AugmentConfig(reverb_probability=1.0, reverb_source="rir")
    impulse = torch.zeros(1, CLIP_SAMPLES)
    impulse[0, 1000] = 1.0
    out = Reverb(config, _context(rir=[tmp_path / "room.wav"]))(impulse, torch.ones(1), torch.Generator())
    assert float(out[0, 1400] / out[0, 1000]) == pytest.approx(0.5, abs=1e-4)


def test_bad_rir_input_is_a_clear_error_naming_the_file(tmp_path):
    config = AugmentConfig(reverb_source="rir")
    with pytest.raises(TrainerError, match="rir/ folder is empty"):
        Reverb(config, _context(rir=[]))
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(TrainerError, match="broken.wav"):
        Reverb(config, _context(rir=[bad]))
