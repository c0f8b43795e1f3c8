"""The built-in model architectures."""

from __future__ import annotations

from trainer import hookimpl
from trainer.models.tcresnet import TCResNet


@hookimpl
def register_architectures(register) -> None:
    register("tcresnet", TCResNet)
