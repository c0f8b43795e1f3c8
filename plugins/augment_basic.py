"""Gain, circular time shift, low-pass and spectral-tilt EQ on pcm batches [B, samples] (torch,
any device)."""

from __future__ import annotations

import torch

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl

ROLLOFF_HZ = 400.0
"""Width of the low-pass's cosine roll-off: a brick wall would ring."""
TILT_REFERENCE_HZ = 1_000.0
"""The tilt pivots here: 1 kHz keeps its level, higher bands rise or fall by dB per octave."""
TILT_FLOOR_HZ = 100.0
"""Below this the gain stays at its 100 Hz value, so the DC end is not boosted without bound."""


def lowpass(pcm: torch.Tensor, cutoff_hz: torch.Tensor | float, rolloff_hz: float = ROLLOFF_HZ) -> torch.Tensor:
    """Low-pass [B, N] (or [N]) in the frequency domain; cutoff_hz is a float or [B] Hz."""
    samples = pcm.shape[-1]
    freqs = torch.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE, device=pcm.device)
    cutoff = torch.as_tensor(cutoff_hz, dtype=freqs.dtype, device=pcm.device)
    if cutoff.ndim:
        cutoff = cutoff.unsqueeze(-1)
    ramp = ((freqs - cutoff) / rolloff_hz).clamp(0.0, 1.0)
    return torch.fft.irfft(torch.fft.rfft(pcm) * (0.5 + 0.5 * torch.cos(torch.pi * ramp)), n=samples)


def tilt(pcm: torch.Tensor, db_per_octave: torch.Tensor | float) -> torch.Tensor:
    """Tilt [B, N] (or [N]) spectra by ``db_per_octave`` (float or [B]) around 1 kHz."""
    samples = pcm.shape[-1]
    freqs = torch.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE, device=pcm.device)
    octaves = torch.log2(freqs.clamp(min=TILT_FLOOR_HZ) / TILT_REFERENCE_HZ)
    slope = torch.as_tensor(db_per_octave, dtype=freqs.dtype, device=pcm.device)
    if slope.ndim:
        slope = slope.unsqueeze(-1)
    gain = 10.0 ** (slope * octaves / 20.0)
    return torch.fft.irfft(torch.fft.rfft(pcm) * gain, n=samples)


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


class Tilt:
    """Random spectral tilt: voices, rooms and microphones differ in brightness. Held-out
    (non-espeak) voices scored far higher when brightened by 3 dB/octave (RESULTS.md), so the
    model must not rely on how much high-frequency energy a voice has."""

    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.db = config.tilt_probability, config.tilt_db_per_octave

    def __call__(self, pcm, labels, generator):
        apply = _rows(len(pcm), self.probability, generator)
        slope = torch.empty(len(pcm)).uniform_(*self.db, generator=generator)
        out = tilt(pcm, torch.where(apply, slope, torch.zeros_like(slope)).to(pcm.device))
        # Keep the peak level: a +6 dB/octave tilt would otherwise clip the loudest rows.
        scale = pcm.abs().amax(dim=1, keepdim=True) / out.abs().amax(dim=1, keepdim=True).clamp(min=1e-6)
        return out * scale


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
    register("tilt", Tilt)
    register("gain", Gain)
    register("shift", TimeShift)
