"""Background noise mixed at an exact target SNR, batched on torch tensors.

The noise is scaled so that 10·log10(P_signal / P_noise) equals the drawn target, with both
powers measured over the whole window after any earlier step; measured on the mixed audio
(mixed − clean) it matches the target to float precision. Windows with no signal (silent
background-only negatives) are left to the data path, which fills them with background.
"""

from __future__ import annotations

import numpy as np
import torch

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl
from trainer.audio import snr_gain
from trainer.errors import TrainerError

MIN_POWER = 1e-12
"""Below this mean power (≈ −120 dBFS) a window counts as silent: no SNR is defined."""
COLOR_EXPONENT = (-2.0, 0.0)
"""Spectral slope of synthetic noise, power ∝ f^exponent: −2 brown, −1 pink, 0 white."""


def colored_noise(batch: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-power noise [batch, samples] with a random spectral slope per row."""
    white = torch.randn(batch, samples, generator=generator)
    exponent = torch.empty(batch, 1).uniform_(*COLOR_EXPONENT, generator=generator)
    freqs = torch.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE).clamp(min=20.0)  # no infinite DC
    spectrum = torch.fft.rfft(white) * freqs.unsqueeze(0) ** (exponent / 2)
    noise = torch.fft.irfft(spectrum, n=samples)
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt()


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """signal + noise scaled to snr_db [B] dB below each row's signal power (float32 [B, N])."""
    p_signal = signal.pow(2).mean(dim=1, keepdim=True)
    p_noise = noise.pow(2).mean(dim=1, keepdim=True).clamp(min=MIN_POWER)
    return signal + noise * snr_gain(p_signal.sqrt(), p_noise.sqrt(), snr_db.unsqueeze(1))


def measured_snr_db(clean: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """SNR [B] in dB of each mixed row against its clean row (float64 for the measurement)."""
    clean, noise = clean.double(), mixed.double() - clean.double()
    return 10.0 * torch.log10(clean.pow(2).mean(dim=1) / noise.pow(2).mean(dim=1))


class NoiseMix:
    """Noise on a share of the windows at an SNR drawn from the run state's current range."""

    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability = config.noise_probability
        self.state = context.state  # read on every batch: the SNR schedule moves it per epoch
        self.source = config.noise_source
        self.background = [torch.from_numpy(np.asarray(c, dtype=np.float32)) for c in context.background]
        if self.source == "background" and not self.background:
            raise TrainerError("augment.chain has 'noise' but the dataset's background/ folder is empty; "
                               "add noise WAVs to background/, set augment.noise_source = \"colored\", "
                               "or drop 'noise' from augment.chain")

    def _draw_background(self, batch: int, samples: int, generator: torch.Generator) -> torch.Tensor:
        rows = []
        picks = torch.randint(len(self.background), (batch,), generator=generator).tolist()
        offsets = torch.rand(batch, generator=generator).tolist()
        for pick, offset in zip(picks, offsets):
            clip = self.background[pick]
            if len(clip) < samples:
                clip = clip.repeat(-(-samples // len(clip)))
            start = int(offset * (len(clip) - samples + 1))
            rows.append(clip[start:start + samples])
        return torch.stack(rows)

    def __call__(self, pcm: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch, samples = pcm.shape
        apply = torch.rand(batch, generator=generator) < self.probability
        snr = torch.empty(batch).uniform_(*self.state.snr_db, generator=generator)
        if self.source == "background":
            noise = self._draw_background(batch, samples, generator)
        else:
            noise = colored_noise(batch, samples, generator)
        apply &= pcm.detach().cpu().pow(2).mean(dim=1) > MIN_POWER
        mixed = mix_at_snr(pcm, noise.to(pcm.device), snr.to(pcm.device))
        return torch.where(apply.to(pcm.device).unsqueeze(1), mixed, pcm)


@hookimpl
def register_augmentations(register) -> None:
    register("noise", NoiseMix)
