"""The main job, measured: `hark run "hey jarvis"` from nothing, with timings and accuracy.

Usage: python benchmarks/default_job.py [--workdir /tmp/hark-bench] [--phrase "hey jarvis"]

Runs synthesis, training, export, evaluation and the demo scan in a fresh work folder,
then prints a table and writes benchmarks/out/default_job.json. Accuracy is reported on
continuous audio for two sets: espeak voices held out of training (same engine) and
flite/festival voices (engines never used in training).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

from trainer.pipeline import print_eval_table, run_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hark-bench"))
    parser.add_argument("--phrase", default="hey jarvis")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "default_job.json")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    summary = run_all(args.phrase, args.workdir, fresh=True)
    summary["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    int8 = f"int8 {summary['int8_bytes'] / 1024:.0f} KB" if summary["int8_bytes"] else "no int8 model"
    print(f"\nphrase '{summary['phrase']}'  parameters {summary['parameters']}  {int8}  "
          f"threshold {summary['threshold']:.3f}  machine {summary['machine']}")
    print(" ".join(f"{k} {v:.0f}s" for k, v in summary["seconds"].items()),
          f"| total {summary['total_seconds'] / 60:.1f} min")
    print_eval_table(summary["evaluation"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
