"""Room reverb: convolution with impulse responses from the dataset's rir/ folder or with
generated rooms (exponentially decaying noise with a drawn RT60), batched by FFT."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.functional as AF

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl
from trainer.audio import load_audio
from trainer.errors import TrainerError

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


class Reverb:
    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.rt60 = config.reverb_probability, config.reverb_rt60_s
        self.rirs: list[torch.Tensor] = []
        if config.reverb_source == "rir":
            if not context.rir:
                raise TrainerError("augment.chain has 'reverb' with reverb_source = \"rir\" but the "
                                   "dataset's rir/ folder is empty; add impulse-response WAVs or set "
                                   "augment.reverb_source = \"generated\"")
            for path in context.rir:  # read now: an unreadable file fails before training
                audio = load_audio(path)[: int(MAX_RIR_S * SAMPLE_RATE)]
                peak = float(np.max(np.abs(audio)))
                if peak == 0.0:
                    raise TrainerError(f"{path}: impulse response is silent; replace or delete it")
                self.rirs.append(torch.from_numpy(audio / peak))

    def __call__(self, pcm, labels, generator):
        batch = len(pcm)
        apply = torch.rand(batch, generator=generator) < self.probability
        if self.rirs:
            picks = torch.randint(len(self.rirs), (batch,), generator=generator).tolist()
            longest = max(len(self.rirs[i]) for i in picks)
            rir = torch.stack([torch.nn.functional.pad(self.rirs[i], (0, longest - len(self.rirs[i])))
                               for i in picks])
        else:
            rir = generated_rir(torch.empty(batch).uniform_(*self.rt60, generator=generator), generator)
        return torch.where(apply.to(pcm.device).unsqueeze(1), reverberate(pcm, rir), pcm)


@hookimpl
def register_augmentations(register) -> None:
    register("reverb", Reverb)
