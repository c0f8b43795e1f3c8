"""One rank of the 2-process test in test_distributed.py (started by torchrun, not by pytest).

Usage: python -m torch.distributed.run --nproc_per_node 2 ddp_worker.py DATASET RUN_DIR OUT_DIR

Trains the tiny config through the ordinary ``trainer.loop.train`` with an architecture
registered by an inline plugin that keeps the model it built, then saves this rank's initial
and final weights to OUT_DIR/rank{RANK}.pt.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path

import torch

from trainer import hookimpl
from trainer.config import load_config
from trainer.loop import train
from trainer.models.tcresnet import TCResNet
from trainer.plugins import PluginManager

TINY = {"train.epochs": 1, "train.batch_size": 32, "model.channels": [12, 12, 16],
        "model.strides": [1, 2], "model.kernel_size": 5, "model.architecture": "kept_tcresnet"}


class KeepModel:
    """Registers TCResNet under another name and remembers the instance and its first weights."""

    def __init__(self) -> None:
        self.model = None
        self.initial = None

    @hookimpl
    def register_architectures(self, register) -> None:
        def build(config):
            self.model = TCResNet(config)
            self.initial = copy.deepcopy(self.model.state_dict())
            return self.model
        register("kept_tcresnet", build)


def main(dataset: str, run_dir: str, out_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keeper = KeepModel()
    plugins = PluginManager(autoload=False)
    plugins.register(keeper, name="keep-model")
    train(load_config(None, {**TINY, "data.dataset": dataset}), run_dir, progress=False, plugins=plugins)
    rank = int(os.environ["RANK"])
    torch.save({"initial": keeper.initial, "final": keeper.model.state_dict()},
               Path(out_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
