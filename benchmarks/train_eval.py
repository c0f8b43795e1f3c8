"""One training recipe, measured: train -> export -> evaluate on an existing dataset.

Usage: python benchmarks/train_eval.py NAME '{"_data": "DATASET", "train.epochs": 8, ...}' [--runs /tmp/exp]

The JSON holds dotted config overrides (as in a config file) plus "_data", the dataset
folder (with its eval/ sets). The run goes to RUNS/NAME; the evaluation table is printed
and the report is written next to the exported model. Used for the attempts in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainer.config import load_training_config
from trainer.export import export_run
from trainer.loop import LAST, train
from trainer.pipeline import evaluate_and_report
from trainer.plugins import PluginManager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", default="{}")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/exp"))
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    data = Path(overrides.pop("_data"))
    run = args.runs / args.name
    began = time.monotonic()
    config = load_training_config(None, {"data.dataset": str(data), **overrides})
    plugins = PluginManager()  # one manager for the run: training and export
    train(config, run, progress=False, resume=(run / LAST).exists(), plugins=plugins)
    model_dir, manifest = export_run(run, plugins=plugins)
    evaluate_and_report(model_dir, data / "eval", progress=False)
    print(f"total {time.monotonic() - began:.0f} s; sizes {manifest.metrics['size_bytes']}")


if __name__ == "__main__":
    main()
