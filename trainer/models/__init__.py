"""Model architectures by name. Plugins will extend this registry."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..errors import TrainerError
from .tcresnet import TCResNet

ARCHITECTURES: dict[str, type[nn.Module]] = {"tcresnet": TCResNet}


def build_model(config: ModelConfig) -> nn.Module:
    try:
        cls = ARCHITECTURES[config.architecture]
    except KeyError:
        raise TrainerError(f"model.architecture: unknown '{config.architecture}' "
                           f"(known: {', '.join(sorted(ARCHITECTURES))})") from None
    return cls(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
