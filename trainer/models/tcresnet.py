"""TC-ResNet-style temporal CNN: the default sentry student.

Mel bins are channels and convolutions run along time only (Choi et al., 2019), with
depthwise-separable residual blocks. This keeps parameters under 100k and the cost of
one 1.5 s window to a few MFLOPs, so scoring every 80 ms is cheap on a Pi.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .common import conv_stem, run_blocks


class SeparableBlock(nn.Module):
    """Depthwise temporal conv -> pointwise conv, twice, with a residual connection."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_in, kernel, stride=stride, padding=pad, groups=c_in, bias=False),
            nn.Conv1d(c_in, c_out, 1, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel, padding=pad, groups=c_out, bias=False),
            nn.Conv1d(c_out, c_out, 1, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else nn.Sequential(
            nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.body(x) + self.skip(x)))


class TCResNet(nn.Module):
    """log-mel [B, frames, N_MELS] -> logit [B] (apply sigmoid for a probability)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.window_norm = config.window_norm
        self.gradient_checkpointing = False
        channels = config.channels
        self.stem = conv_stem(channels[0])
        self.blocks = nn.Sequential(*[
            SeparableBlock(c_in, c_out, config.kernel_size, stride, config.dropout)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], config.strides)])
        # Mean and max over time: mean hears the whole phrase, max catches a short cue.
        self.head = nn.Linear(2 * channels[-1], 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.window_norm:
            features = features - features.mean(dim=1, keepdim=True)
        x = run_blocks(self.blocks, self.stem(features.transpose(1, 2)), self.gradient_checkpointing)
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return self.head(pooled).squeeze(1)
