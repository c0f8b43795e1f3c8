"""Distillation, measured: a student without KD, with one teacher, with two teachers.

Usage: python benchmarks/distill.py [--data /tmp/hark-bench3/data/hey_jarvis] [--runs /tmp/hark-distill]
           [--teacher-epochs 16] [--student-epochs 16] [--quick]

Trains the CRNN and Conformer teachers (configs/teacher_*.toml) and three default-config
students on the default job's dataset, exports the students and evaluates them on the
dataset's eval/ sets (held-out espeak voices; `heldout`: engines never used in training).
Prints FRR at <= 0.5 FA/h per student and set, teacher sizes and seconds per epoch, and
writes benchmarks/out/distill.json. Finished runs are reused and an interrupted one resumes
(delete RUNS to retrain with other epochs). --quick shrinks the teachers for a CPU smoke run
(with few epochs its numbers show the machinery works, not what distillation is worth).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from trainer.config import load_config
from trainer.export import export_run
from trainer.loop import BEST, LAST, train
from trainer.pipeline import evaluate_and_report
from trainer.plugins import PluginManager

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OUT = Path(__file__).parent / "out" / "distill.json"
QUICK_TEACHERS = {
    "crnn": {"model.channels": [32, 64, 64], "model.strides": [2, 2], "model.rnn_hidden": 64,
             "model.num_layers": 1},
    "conformer": {"model.d_model": 96, "model.num_layers": 2, "model.ffn_dim": 256},
}
"""--quick: CPU-sized teachers (CRNN 133k, Conformer 346k parameters; the student has 85k)
for a smoke run; the full configs give 1.6M and 2.0M."""
KD = {"distill.alpha": 0.5, "distill.temperature": 2.0}
TIMING = "bench_timing.json"
"""Written into a run folder when its training finished: its size, epochs and s/epoch."""


def _train(name: str, run: Path, config_path: Path | None, overrides: dict,
           plugins: PluginManager) -> dict:
    """Train (or finish, or reuse) one run; its size and seconds per epoch."""
    config = load_config(config_path, overrides)
    if (run / TIMING).exists():  # finished earlier (with the epochs it records)
        print(f"{name}: reusing {run}")
        timing = json.loads((run / TIMING).read_text())
    else:
        result = train(config, run, progress=False, resume=(run / LAST).exists(), plugins=plugins)
        timing = {"parameters": result.parameters,
                  "seconds_per_epoch": result.seconds / max(result.epochs_run, 1),
                  "epochs": config.train.epochs, "best_epoch": result.best_epoch}
        (run / TIMING).write_text(json.dumps(timing))
    print(f"{name}: {timing['parameters']} parameters, {timing['seconds_per_epoch']:.0f} s/epoch")
    return timing


def _evaluate(run: Path, data: Path, plugins: PluginManager) -> dict:
    model_dir, _ = export_run(run, plugins=plugins)
    summary = evaluate_and_report(model_dir, data / "eval", progress=False)
    return {name: s["frr_at_0.5_fa_h"] for name, s in summary["sets"].items()}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/hark-bench3/data/hey_jarvis"))
    parser.add_argument("--runs", type=Path, default=Path("/tmp/hark-distill"))
    parser.add_argument("--teacher-epochs", type=int, default=16)
    parser.add_argument("--student-epochs", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2,
                        help="train.threads; use 1 when other jobs share the CPU (2 threads then thrash).")
    parser.add_argument("--quick", action="store_true", help="Smaller teachers (see QUICK_TEACHERS).")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    began = time.monotonic()
    base = {"data.dataset": str(args.data), "train.threads": args.threads}
    plugins = PluginManager()  # one manager serves every training and export of the benchmark

    teachers = {}
    for arch in ("crnn", "conformer"):
        overrides = {**base, "train.epochs": args.teacher_epochs, **(QUICK_TEACHERS[arch] if args.quick else {})}
        teachers[arch] = _train(f"teacher {arch}", args.runs / f"teacher_{arch}",
                                CONFIGS / f"teacher_{arch}.toml", overrides, plugins)
    ckpt = {arch: str(args.runs / f"teacher_{arch}" / BEST) for arch in teachers}
    students = {
        "no KD": {},
        "one teacher (conformer)": {**KD, "distill.teacher_architecture": "conformer",
                                    "distill.teacher_model_path": ckpt["conformer"]},
        "two teachers": {**KD, "distill.teacher_architecture": "conformer",
                         "distill.teacher_model_path": ckpt["conformer"],
                         "distill.secondary_teacher_architecture": "crnn",
                         "distill.secondary_teacher_model_path": ckpt["crnn"],
                         "distill.secondary_weight": 0.5},
    }
    results = {}
    for i, (name, distill) in enumerate(students.items()):
        run = args.runs / f"student_{i}"
        timing = _train(f"student {name}", run, None, {**base, "train.epochs": args.student_epochs, **distill},
                        plugins)
        results[name] = {**timing, "distill": distill, "frr_at_0.5_fa_h": _evaluate(run, args.data, plugins)}

    sets = sorted({s for r in results.values() for s in r["frr_at_0.5_fa_h"]})
    print(f"\nFRR at <= 0.5 FA/h (student: default config, {args.student_epochs} epochs; "
          f"teachers {args.teacher_epochs} epochs{', quick sizes' if args.quick else ''})")
    print(f"{'student':<26}" + "".join(f"{s:>10}" for s in sets) + f"{'s/epoch':>9}")
    for name, r in results.items():
        cells = "".join(f"{_pct(r['frr_at_0.5_fa_h'].get(s)):>10}" for s in sets)
        print(f"{name:<26}{cells}{r['seconds_per_epoch']:>9.0f}")
    for arch, t in teachers.items():
        print(f"teacher {arch}: {t['parameters']} parameters, {t['seconds_per_epoch']:.0f} s/epoch")
    report = {"teachers": teachers, "students": results, "data": str(args.data), "quick": args.quick,
              "teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "total_seconds": time.monotonic() - began}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}; total {report['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
