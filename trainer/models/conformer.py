"""Conformer teacher: convolution-augmented self-attention (Gulati et al., 2020).

A strided convolution halves the frame rate (148 -> 74 frames of 20 ms), then torchaudio's
Conformer layers mix local (depthwise conv) and global (attention) context. A few million
parameters with configs/teacher_conformer.toml: a distillation teacher or the judge's model.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models.conformer import ConformerLayer

from sentry.constants import N_MELS

from ..config import ModelConfig
from .common import run_blocks

SUBSAMPLE = 2
"""Time stride of the stem: attention cost falls with the square of the frame count."""


class _Layer(nn.Module):
    """A ConformerLayer with the one-argument, batch-first forward run_blocks expects.

    Every window has all its frames, so there is no padding mask.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer = ConformerLayer(config.d_model, config.ffn_dim, config.heads,
                                    config.kernel_size, dropout=config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.transpose(0, 1), None).transpose(0, 1)


class Conformer(nn.Module):
    """log-mel [B, frames, N_MELS] -> logit [B].

    Reads model.d_model / num_layers / heads / ffn_dim / kernel_size (depthwise, odd) /
    dropout / window_norm.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.window_norm = config.window_norm
        self.gradient_checkpointing = False
        self.stem = nn.Sequential(
            nn.Conv1d(N_MELS, config.d_model, 3, stride=SUBSAMPLE, padding=1),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList([_Layer(config) for _ in range(config.num_layers)])
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * config.d_model, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.window_norm:
            features = features - features.mean(dim=1, keepdim=True)
        x = self.stem(features.transpose(1, 2)).transpose(1, 2)  # [B, frames', d_model]
        x = run_blocks(self.blocks, x, self.gradient_checkpointing)
        pooled = torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=1)
        return self.head(pooled).squeeze(1)
