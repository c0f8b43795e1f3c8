"""Gain, circular time shift and low-pass EQ on pcm batches [B, samples] (torch, any device)."""

from __future__ import annotations

import torch

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl

ROLLOFF_HZ = 400.0
"""Width of the low-pass's cosine roll-off: a brick wall would ring."""


def lowpass(pcm: torch.Tensor, cutoff_hz: torch.Tensor | float, rolloff_hz: float = ROLLOFF_HZ) -> torch.Tensor:
    """Low-pass [B, N] (or [N]) in the frequency domain; cutoff_hz is a float or [B] Hz."""
    samples = pcm.shape[-1]
    freqs = torch.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE, device=pcm.device)
    cutoff = torch.as_tensor(cutoff_hz, dtype=freqs.dtype, device=pcm.device)
    if cutoff.ndim:
        cutoff = cutoff.unsqueeze(-1)
    ramp = ((freqs - cutoff) / rolloff_hz).clamp(0.0, 1.0)
    return torch.fft.irfft(torch.fft.rfft(pcm) * (0.5 + 0.5 * torch.cos(torch.pi * ramp)), n=samples)


def _rows(batch: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(batch, generator=generator) < probability


class LowPass:
    """Band-limit some windows: 8 kHz voices, cheap microphones and codecs cut the top."""

    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.hz = config.lowpass_probability, config.lowpass_hz

    def __call__(self, pcm, labels, generator):
        apply = _rows(len(pcm), self.probability, generator)
        cutoff = torch.empty(len(pcm)).uniform_(*self.hz, generator=generator)
        out = lowpass(pcm, cutoff.to(pcm.device))
        return torch.where(apply.to(pcm.device).unsqueeze(1), out, pcm)


class Gain:
    """Random level in dB: users stand near or far, microphones differ in sensitivity."""

    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.db = config.gain_probability, config.gain_db

    def __call__(self, pcm, labels, generator):
        apply = _rows(len(pcm), self.probability, generator)
        db = torch.empty(len(pcm)).uniform_(*self.db, generator=generator)
        factor = torch.where(apply, 10.0 ** (db / 20.0), torch.ones_like(db))
        return pcm * factor.to(pcm.device).unsqueeze(1)


class TimeShift:
    """Circular shift by a random number of samples (seconds in config.shift_s)."""

    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.seconds = config.shift_probability, config.shift_s

    def __call__(self, pcm, labels, generator):
        apply = _rows(len(pcm), self.probability, generator)
        shifts = (torch.empty(len(pcm)).uniform_(*self.seconds, generator=generator) * SAMPLE_RATE).long()
        shifts = torch.where(apply, shifts, torch.zeros_like(shifts))
        samples = pcm.shape[1]
        index = (torch.arange(samples).unsqueeze(0) - shifts.unsqueeze(1)) % samples
        return pcm.gather(1, index.to(pcm.device))


@hookimpl
def register_augmentations(register) -> None:
    register("lowpass", LowPass)
    register("gain", Gain)
    register("shift", TimeShift)
