"""The log-mel frontend, one module used by training and by every exported graph.

The same `LogMel` instance is traced into features.onnx (streaming: one hop of new
audio plus its overlap) and clip.onnx (a whole window), so the sentry never
re-implements feature math. Framing is without centre padding: a signal of N
samples gives 1 + (N - WIN_SAMPLES) // FRAME_SAMPLES frames, which is what lets a
stream be cut into hops and framed piecewise with identical results.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sentry.constants import (F_MAX, F_MIN, FRAME_SAMPLES, LOG_FLOOR, N_MELS, SAMPLE_RATE,
                              WIN_SAMPLES)

LOG_MEL_OFFSET = 6.0
LOG_MEL_SCALE = 4.0
"""Fixed affine that maps natural-log mel power of speech at typical levels to roughly
[-1, 1]. Fixed rather than learnt or per-utterance so streaming needs no running stats."""


def n_frames(n_samples: int) -> int:
    """Mel frames produced from n_samples of audio (no centre padding)."""
    return 0 if n_samples < WIN_SAMPLES else 1 + (n_samples - WIN_SAMPLES) // FRAME_SAMPLES


class LogMel(nn.Module):
    """float32 PCM [B, samples] in [-1, 1] -> normalised log-mel [B, frames, N_MELS]."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WIN_SAMPLES, win_length=WIN_SAMPLES,
            hop_length=FRAME_SAMPLES, f_min=F_MIN, f_max=F_MAX, n_mels=N_MELS,
            center=False, power=2.0, norm="slaney", mel_scale="slaney")

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        power = self.mel(pcm)  # [B, N_MELS, frames]
        logmel = (torch.log(power + LOG_FLOOR) + LOG_MEL_OFFSET) / LOG_MEL_SCALE
        return logmel.transpose(1, 2)
