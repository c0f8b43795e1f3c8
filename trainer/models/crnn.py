"""CRNN teacher: residual temporal convolutions, then a bidirectional GRU over time.

Far larger than the sentry (around a million parameters with configs/teacher_crnn.toml):
the convolutions pick out phone-sized patterns, the GRU hears their order across the whole
1.5 s window. Meant as a distillation teacher or the judge's model, not for the edge.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .common import conv_stem, run_blocks


class ConvBlock(nn.Module):
    """Two full (not depthwise) temporal convolutions with a residual connection."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else nn.Sequential(
            nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.body(x) + self.skip(x)))


class CRNN(nn.Module):
    """log-mel [B, frames, N_MELS] -> logit [B].

    Reads model.channels / strides / kernel_size / dropout for the convolutions (as
    TC-ResNet does) and model.rnn_hidden / num_layers for the GRU.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.window_norm = config.window_norm
        self.gradient_checkpointing = False
        channels = config.channels
        self.stem = conv_stem(channels[0])
        self.blocks = nn.Sequential(*[
            ConvBlock(c_in, c_out, config.kernel_size, stride, config.dropout)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], config.strides)])
        self.rnn = nn.GRU(channels[-1], config.rnn_hidden, num_layers=config.num_layers,
                          batch_first=True, bidirectional=True,
                          dropout=config.dropout if config.num_layers > 1 else 0.0)
        # Mean and max over time, as TC-ResNet: the whole phrase and its sharpest cue.
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(4 * config.rnn_hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.window_norm:
            features = features - features.mean(dim=1, keepdim=True)
        x = run_blocks(self.blocks, self.stem(features.transpose(1, 2)), self.gradient_checkpointing)
        seq, _ = self.rnn(x.transpose(1, 2))  # [B, frames', 2 * rnn_hidden]
        pooled = torch.cat([seq.mean(dim=1), seq.amax(dim=1)], dim=1)
        return self.head(pooled).squeeze(1)
