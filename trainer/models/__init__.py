"""Model architectures: built by name from the plugin registry (built-ins in plugins/)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig


def build_model(config: ModelConfig) -> nn.Module:
    """``config.architecture`` from the architectures registered by the loaded plugins."""
    from ..plugins import PluginManager  # the manager imports plugins that import this package
    return PluginManager().build_model(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
