"""The built-in model architectures: the sentry student and two larger teachers."""

from __future__ import annotations

from trainer import hookimpl
from trainer.models.conformer import Conformer
from trainer.models.crnn import CRNN
from trainer.models.tcresnet import TCResNet


@hookimpl
def register_architectures(register) -> None:
    register("tcresnet", TCResNet)
    register("crnn", CRNN)
    register("conformer", Conformer)
