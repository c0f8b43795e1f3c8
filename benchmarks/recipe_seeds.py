"""The default recipe, not a lucky seed: `hark run` end to end for several seeds and phrases.

Usage:
    python benchmarks/recipe_seeds.py --workdir /work/exp/seeds \
        [--phrases "hey jarvis" alexa] [--seeds 1234 7 42] [--quick]

Each phrase is synthesized once (`hark synth`, its eval sets included) into
WORKDIR/<phrase>/base; every seed then runs the whole main job (`trainer.pipeline.run_all`,
the same code as `hark run`) in WORKDIR/<phrase>/s<SEED> on a hard-linked copy of that data
(the mining round only adds files, and every rewrite is an atomic replace, so seeds never see
each other's mined clips), so all seeds of a phrase are measured on the same eval sets.

Resumable: one result file per run (RESULTS/<phrase>_<recipe>_s<SEED>.json, by default
benchmarks/results/recipe_seeds/sentence0.3/, kept in the repository so a table can be built over several
sessions on machines that do not keep WORKDIR); a run whose file exists is skipped, an
interrupted one resumes where `hark run` stopped. The table
(mean, min and max over seeds of every eval set's FRR at <= 0.5 FA/h and of FRR / FA/h at
the shipped threshold, sentry alone and cascade) is printed and written to
benchmarks/out/recipe_seeds.json. Nothing here chooses anything: thresholds are chosen by
the job itself on the calibration set. The peers' rows on the same audio come from
benchmarks/peers.py (its command, with every seed's export, is printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from trainer.pipeline import QUICK, Recipe, run_all, synth_all
from trainer.synth.text import normalise_phrase

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "recipe_seeds.json"
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "recipe_seeds" / "sentence0.3"
"""Runs of the current default (30% of positives and neighbours after a sentence);
results/recipe_seeds/no_sentences/ holds runs on data made before sentence_share."""


def base_dataset(workdir: Path, phrase: str) -> Path:
    """The phrase's dataset and eval sets, synthesized once for every seed."""
    slug = phrase.replace(" ", "_")
    base = workdir / slug / "base" / slug
    if not (base / "eval" / "manifest.json").is_file():
        shutil.rmtree(base, ignore_errors=True)
        summary = synth_all(phrase, base, overwrite=True)
        # the main job's synthesis step, timed once per phrase (each seed then reuses it)
        (base.parent / "synth.json").write_text(json.dumps(summary, indent=1))
    return base


def seed_workdir(workdir: Path, phrase: str, seed: int, base: Path) -> Path:
    """WORKDIR/<phrase>/s<SEED>, its data a hard-linked copy of the base dataset."""
    slug = phrase.replace(" ", "_")
    run_root = workdir / slug / f"s{seed}"
    data = run_root / "data" / slug
    if not (data / "manifest.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(base, data, copy_function=os.link)
    return run_root


def stats(values: list[float | None]) -> dict[str, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": sum(known) / len(known), "min": min(known), "max": max(known), "n": len(known)}


def table(results: list[dict]) -> dict:
    """Per eval set: mean/min/max over seeds of each reported number."""
    sets: dict[str, dict[str, list]] = {}
    for result in results:
        for name, s in result["evaluation"].items():
            row = sets.setdefault(name, {})
            row.setdefault("frr_at_0.5_fa_h", []).append(s.get("frr_at_0.5_fa_h"))
            row.setdefault("frr", []).append(s["frr"])
            row.setdefault("fa_per_hour", []).append(s["fa_per_hour"])
            cascade = ((result.get("cascade") or {}).get("sets") or {}).get(name)
            if cascade:
                row.setdefault("cascade_frr", []).append(cascade["frr"])
                row.setdefault("cascade_fa_per_hour", []).append(cascade["fa_per_hour"])
    return {name: {k: stats(v) for k, v in row.items()} for name, row in sets.items()}


def print_table(phrase: str, recipe: str, seeds: list[int], summary: dict) -> None:
    def pct(s: dict) -> str:
        return "n/a" if s["mean"] is None else \
            f"{100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})"

    def rate(s: dict) -> str:
        return "n/a" if s["mean"] is None else f"{s['mean']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    print(f"\n'{phrase}', recipe {recipe}, seeds {' '.join(map(str, seeds))}: mean (min-max)")
    print("| set | FRR at <= 0.5 FA/h | FRR at shipped threshold | FA/h at shipped threshold "
          "| cascade FRR | cascade FA/h |")
    print("|---|---|---|---|---|---|")
    blank = {"mean": None}
    for name, row in summary.items():
        print(f"| {name} | {pct(row['frr_at_0.5_fa_h'])} | {pct(row['frr'])} | "
              f"{rate(row['fa_per_hour'])} | {pct(row.get('cascade_frr', blank))} | "
              f"{rate(row.get('cascade_fa_per_hour', blank))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--phrases", nargs="+", default=["hey jarvis", "alexa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 7, 42])
    parser.add_argument("--quick", action="store_true", help="the --quick recipe instead")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="one JSON per finished run (kept; a run with a file is skipped)")
    args = parser.parse_args()
    recipe = QUICK if args.quick else Recipe()
    results_dir = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "recipe": recipe.to_dict(), "phrases": {}}
    for phrase in map(normalise_phrase, args.phrases):
        slug = phrase.replace(" ", "_")
        base = base_dataset(args.workdir, phrase)
        results, exports = [], []
        for seed in args.seeds:
            path = results_dir / f"{slug}_{recipe.name}_s{seed}.json"
            if not path.is_file():
                began = time.monotonic()
                root = seed_workdir(args.workdir, phrase, seed, base)
                summary = run_all(phrase, root, overrides={"train.seed": seed}, recipe=recipe)
                summary["wall_seconds"] = round(time.monotonic() - began, 1)
                path.write_text(json.dumps(summary, indent=1))
            result = json.loads(path.read_text())
            synth = base.parent / "synth.json"
            if synth.is_file():  # what `hark run` from nothing would have spent first
                result["synthesize_seconds"] = json.loads(synth.read_text()).get("seconds")
            results.append(result)
            exports.append((seed, result["model_dir"], result.get("judge_dir")))
        summary = table(results)
        print_table(phrase, recipe.name, args.seeds, summary)
        report["phrases"][phrase] = {"seeds": args.seeds, "table": summary, "runs": results}
        hark = " ".join(f'--hark "{phrase}={d}@s{s}"' for s, d, _ in exports)
        print(f"peers on the same kind of audio: python benchmarks/peers.py --build-audio {hark}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
