"""Pieces every architecture shares: running repeated blocks, with optional activation
checkpointing.

Convention: an architecture with repeated blocks keeps them in ``self.blocks`` (an
``nn.Sequential`` or ``nn.ModuleList``), has a ``gradient_checkpointing`` attribute (False by
default; the trainer sets it from ``train.gradient_checkpointing``), and runs the blocks with
``run_blocks``. Checkpointing trades compute for memory: a block's activations are dropped
after its forward pass and recomputed during backward, so only block boundaries stay alive.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sentry.constants import N_MELS


def run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Apply ``blocks`` in order; with ``checkpointing`` (and grad enabled) each block's
    forward is recomputed in backward instead of keeping its activations."""
    use = checkpointing and torch.is_grad_enabled()
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if use else block(x)
    return x


def supports_checkpointing(model: nn.Module) -> bool:
    """True when ``model`` follows the convention above (repeated blocks it can checkpoint)."""
    return hasattr(model, "gradient_checkpointing") and hasattr(model, "blocks")


def conv_stem(out_channels: int) -> nn.Sequential:
    """Mel bins as channels -> ``out_channels``: a 3-frame conv, batch norm, ReLU (the stem of
    the temporal-CNN architectures)."""
    return nn.Sequential(
        nn.Conv1d(N_MELS, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(),
    )
