"""Model architectures: each an nn.Module plus the ModelConfig fields it reads.

They are built by name through the run's plugin manager (``PluginManager.build_model``; the
built-ins are registered by plugins/architectures.py), never from here: this package knows
nothing of plugins.
"""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
