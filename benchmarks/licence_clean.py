"""What licence-clean synthesis costs: the default engine mix against the licence-clean one
(espeak-ng + SVOX Pico, no DECtalk), same recipe and seeds, scored on the same eval sets.

Usage:
  python benchmarks/licence_clean.py --workdir /tmp/licence --seeds 1234 7 42 [--train]

With --train, missing pieces are made first, each once, so the benchmark can be built over
several sessions: WORKDIR/data/default (`hark synth "hey jarvis"`, with its eval sets),
WORKDIR/data/clean (`hark synth ... --licence-clean --no-eval`, whose eval/ links the default
dataset's, so both mixes are scored on the very same audio), and one training per mix and
seed (WORKDIR/runs/MIX_sSEED, as benchmarks/train_eval.py trains: default recipe, one
thread; a finished run has a `done` file). Without --train it only reads the finished runs.

Prints, per run and as mean/min/max per mix: held-out (flite + festival) FRR at <= 0.5 and
<= 1 FA/h, and FRR and FA/h at the run's shipped threshold (chosen on the espeak test
voices, never on held-out data); writes benchmarks/out/licence_clean.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from trainer.thresholds import row_at

MIXES = {"default": [], "clean": ["--licence-clean"]}
"""Mix name -> extra `hark synth` options."""
PHRASE = "hey jarvis"
HELD_OUT = "heldout"
HERE = Path(__file__).resolve().parent


def _hark(*args: str) -> list[str]:
    return [sys.executable, "-c", "from trainer.cli import main; main()", *args]


def make_data(workdir: Path) -> None:
    data = workdir / "data"
    default = data / "default"
    if not (default / "eval" / HELD_OUT / "negative_stream.wav").exists():
        subprocess.run(_hark("synth", PHRASE, "--out", str(default), "--overwrite"), check=True)
    clean = data / "clean"
    if not (clean / "manifest.json").exists():
        subprocess.run(_hark("synth", PHRASE, "--out", str(clean), "--no-eval", "--overwrite",
                             *MIXES["clean"]), check=True)
    if not (clean / "eval").exists():
        (clean / "eval").symlink_to(default / "eval")


def train_run(workdir: Path, mix: str, seed: int) -> None:
    name = f"{mix}_s{seed}"
    run = workdir / "runs" / name
    if (run / "done").exists():
        return
    overrides = {"_data": str(workdir / "data" / mix), "train.seed": seed, "train.threads": 1}
    subprocess.run([sys.executable, str(HERE / "train_eval.py"), name, json.dumps(overrides),
                    "--runs", str(workdir / "runs")], check=True)
    (run / "done").touch()


def held_out_row(run: Path) -> dict | None:
    """The held-out set's numbers of a finished run, or None when it is not finished."""
    report = run / "export" / "eval_report.json"
    if not (run / "done").exists() or not report.exists():
        return None
    data = json.loads(report.read_text())
    threshold = data["operating_threshold"]
    held = next(s for s in data["sets"] if s["name"] == HELD_OUT)
    at = row_at(held["sweep"], threshold)
    return {"threshold": threshold, "frr_at_0.5": held["frr_at_fa"]["0.5"],
            "frr_at_1": held["frr_at_fa"]["1.0"], "frr_shipped": at["frr"],
            "fa_per_hour_shipped": at["fa_per_hour"]}


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234, 7, 42])
    parser.add_argument("--train", action="store_true", help="make what is missing first")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "licence_clean.json")
    args = parser.parse_args()
    if args.train:
        make_data(args.workdir)
        for seed in args.seeds:
            for mix in MIXES:
                train_run(args.workdir, mix, seed)

    rows = {mix: {seed: held_out_row(args.workdir / "runs" / f"{mix}_s{seed}") for seed in args.seeds}
            for mix in MIXES}
    print(f"held-out set ({HELD_OUT}: flite + festival), '{PHRASE}'")
    print(f"{'mix':8} {'seed':>5} {'shipped thr':>11} {'FRR@<=0.5':>10} {'FRR@<=1':>8} "
          f"{'FRR shipped':>11} {'FA/h shipped':>12}")
    summary = {}
    for mix, by_seed in rows.items():
        done = {s: r for s, r in by_seed.items() if r is not None}
        for seed, r in done.items():
            print(f"{mix:8} {seed:>5} {r['threshold']:>11.3f} {_pct(r['frr_at_0.5']):>10} "
                  f"{_pct(r['frr_at_1']):>8} {_pct(r['frr_shipped']):>11} {r['fa_per_hour_shipped']:>12.2f}")
        if done:
            stats = {k: {"mean": sum(r[k] for r in done.values()) / len(done),
                         "min": min(r[k] for r in done.values()),
                         "max": max(r[k] for r in done.values())}
                     for k in ("frr_at_0.5", "frr_at_1", "frr_shipped", "fa_per_hour_shipped")}
            summary[mix] = {"seeds": sorted(done), "stats": stats}
            s = stats
            print(f"{mix:8} {'mean':>5} {'':>11} {_pct(s['frr_at_0.5']['mean']):>10} "
                  f"{_pct(s['frr_at_1']['mean']):>8} {_pct(s['frr_shipped']['mean']):>11} "
                  f"{s['fa_per_hour_shipped']['mean']:>12.2f}   ({len(done)} seed(s); "
                  f"FRR@<=0.5 {_pct(s['frr_at_0.5']['min']).strip()}-{_pct(s['frr_at_0.5']['max']).strip()})")
        missing = sorted(set(by_seed) - set(done))
        if missing:
            print(f"{mix:8} not finished for seed(s) {missing}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"phrase": PHRASE, "set": HELD_OUT, "runs": {
        mix: {str(s): r for s, r in by_seed.items()} for mix, by_seed in rows.items()},
        "summary": summary}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
