"""Pitch shift (formants and pitch move, duration kept) and speed perturbation, batched.

torchaudio works per call with one shift or factor, so each batch draws per-row values on a
grid and processes the rows that share a value together: a few calls per batch, not B.
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl

BINS_PER_OCTAVE = 24
"""Pitch grid: half-semitone steps, finer than listeners tell apart on a wake word."""
SPEED_STEP = 0.05
"""Speed factors are drawn on this grid (e.g. 0.9, 0.95, 1.0 …)."""


def pitch_shift(pcm: torch.Tensor, semitones: float) -> torch.Tensor:
    """Shift pcm [B, N] (16 kHz) by `semitones` keeping its length (phase vocoder + resample)."""
    steps = round(semitones * BINS_PER_OCTAVE / 12)
    if steps == 0:
        return pcm
    return AF.pitch_shift(pcm, SAMPLE_RATE, steps, bins_per_octave=BINS_PER_OCTAVE)


def change_speed(pcm: torch.Tensor, factor: float) -> torch.Tensor:
    """Play pcm [B, N] `factor` times faster (pitch moves too), end-aligned back to N samples.

    The wake word ends near the end of the window, so the end is kept and the start is padded
    with silence (slower) or cut (faster, only leading audio is lost).
    """
    if abs(factor - 1.0) < 1e-9:
        return pcm
    out, _ = AF.speed(pcm, SAMPLE_RATE, factor)
    samples = pcm.shape[1]
    if out.shape[1] >= samples:
        return out[:, -samples:]
    return torch.nn.functional.pad(out, (samples - out.shape[1], 0))


def _grouped(pcm, values, apply, fn):
    out = pcm.clone()
    for value in torch.unique(values[apply]).tolist():
        rows = (apply & (values == value)).nonzero().squeeze(1).to(pcm.device)
        out[rows] = fn(pcm[rows], value).to(pcm.dtype)
    return out


class PitchShift:
    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.semitones = config.pitch_probability, config.pitch_semitones

    def __call__(self, pcm, labels, generator):
        apply = torch.rand(len(pcm), generator=generator) < self.probability
        grid = 12 / BINS_PER_OCTAVE
        semis = torch.round(torch.empty(len(pcm)).uniform_(*self.semitones, generator=generator) / grid) * grid
        return _grouped(pcm, semis, apply, pitch_shift)


class Speed:
    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.factor = config.speed_probability, config.speed_factor

    def __call__(self, pcm, labels, generator):
        apply = torch.rand(len(pcm), generator=generator) < self.probability
        factors = torch.round(torch.empty(len(pcm)).uniform_(*self.factor, generator=generator)
                              / SPEED_STEP) * SPEED_STEP
        return _grouped(pcm, factors, apply, change_speed)


@hookimpl
def register_augmentations(register) -> None:
    register("pitch", PitchShift)
    register("speed", Speed)
