"""Room reverb primitives: generated impulse responses and RMS-preserving convolution.

One copy for the two users: the training augmentation (plugins/augment_reverb.py, the
`reverb` step of augment.chain) and the benchmark scenes (trainer/synth/benchset.py)."""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

from sentry.constants import SAMPLE_RATE

MAX_RIR_S = 1.0
"""Impulse responses are cut to this length (seconds): later tails are below the noise."""
DECAY_DB = 60.0
"""RT60 is the time a room takes to decay by 60 dB."""


def generated_rir(rt60_s: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B, samples] impulse responses: a unit direct path then noise decaying 60 dB in rt60_s."""
    samples = int(MAX_RIR_S * SAMPLE_RATE)
    t = torch.arange(samples) / SAMPLE_RATE
    envelope = torch.exp(-t.unsqueeze(0) * (DECAY_DB / 20.0 * math.log(10.0)) / rt60_s.unsqueeze(1))
    tail = torch.randn(len(rt60_s), samples, generator=generator) * envelope * 0.3
    tail[:, 0] = 1.0
    return tail


def reverberate(pcm: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Causal convolution of pcm [B, N] with rir [B, M], cut to N and rescaled to pcm's RMS."""
    wet = AF.fftconvolve(pcm, rir.to(pcm.device))[:, :pcm.shape[1]]
    scale = pcm.pow(2).mean(1, keepdim=True).sqrt() / wet.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)
    return wet * scale
