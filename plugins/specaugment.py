"""Feature-domain augmentation on log-mel [B, frames, mels]: mel-axis warp and SpecAugment."""

from __future__ import annotations

import torch

from trainer import hookimpl


def mel_warp(features: torch.Tensor, aug, generator: torch.Generator) -> torch.Tensor:
    """Stretch the mel axis of some windows by a random factor (vocal-tract-length perturbation).

    Bin k of the output reads bin k / factor of the input (linear interpolation), so a factor
    above 1 moves formants up, as a shorter vocal tract does.
    """
    batch, frames, mels = features.shape
    factor = torch.empty(batch, 1).uniform_(*aug.mel_warp, generator=generator)
    apply = torch.rand(batch, 1, generator=generator) < aug.mel_warp_probability
    factor = torch.where(apply, factor, torch.ones_like(factor)).to(features.device)
    src = (torch.arange(mels, device=features.device).unsqueeze(0) / factor).clamp(0, mels - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=mels - 1)
    frac = (src - lo).unsqueeze(1)
    gather = lambda idx: features.gather(2, idx.unsqueeze(1).expand(batch, frames, mels))
    return gather(lo) * (1 - frac) + gather(hi) * frac


def spec_augment(features: torch.Tensor, aug, generator: torch.Generator) -> torch.Tensor:
    """Time and frequency masking on log-mel [B, frames, mels] (masked to each window's minimum)."""
    features = features.clone()
    batch, frames, mels = features.shape
    fill = features.amin(dim=(1, 2), keepdim=True)
    for count, width, axis, size in ((aug.time_masks, aug.time_mask_frames, 1, frames),
                                     (aug.freq_masks, aug.freq_mask_bins, 2, mels)):
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1), generator=generator)
            start = (torch.rand(batch, 1, generator=generator) * (size - w)).long()
            idx = torch.arange(size).unsqueeze(0)
            mask = ((idx >= start) & (idx < start + w)).to(features.device)  # [B, size]
            mask = mask.unsqueeze(2) if axis == 1 else mask.unsqueeze(1)
            features = torch.where(mask, fill, features)
    return features


class _Feature:
    stage = "features"

    def __init__(self, config, context) -> None:
        self.config = config


class MelWarp(_Feature):
    def __call__(self, feats, labels, generator):
        return mel_warp(feats, self.config, generator)


class SpecAugment(_Feature):
    def __call__(self, feats, labels, generator):
        return spec_augment(feats, self.config, generator)


@hookimpl
def register_augmentations(register) -> None:
    register("mel_warp", MelWarp)
    register("specaugment", SpecAugment)
