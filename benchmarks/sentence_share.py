"""Wake words after a sentence in training: round 1 of the default recipe, paired by seed.

Usage:
    python benchmarks/sentence_share.py --workdir /work/exp/seeds --phrase "hey jarvis" \
        [--share 0.3] [--seeds 1234 7 42]

WORKDIR is benchmarks/recipe_seeds.py's: WORKDIR/<phrase>/base is the phrase's dataset, and
WORKDIR/<phrase>/s<SEED>/runs/<phrase>/round1 the first round of that seed's main job (8
epochs, training seed SEED + 1), the "plain" arm (trained here when it is missing). The
"sentence" arm is the same dataset with SynthConfig.sentence_share = SHARE: the very same
clips, except that SHARE of the positives and of the phonetic neighbours are said after an
ordinary sentence (only those are rendered; the rest are hard links), trained with the same
config and seed. Both arms are measured on the base dataset's eval sets (calib, espeak,
heldout, heldout_sentence); nothing is chosen on held-out audio (the threshold comes from
calib, as in `hark run`).

Resumable: one result file per arm and seed (RESULTS/<phrase>_<arm>_s<SEED>.json, by default
benchmarks/results/sentence_share/); a finished one is skipped. Prints the paired table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from trainer.export import export_run
from trainer.loop import LAST, train
from trainer.pipeline import Recipe, evaluate_and_report, round1_config
from trainer.plugins import PluginManager
from trainer.synth.build import synth_config_of, synthesize_dataset
from trainer.synth.text import normalise_phrase

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "sentence_share"


def variant_dataset(base: Path, out: Path, share: float) -> Path:
    """The base dataset with `share` of its positives and neighbours said after a sentence."""
    if not (out / "manifest.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        config = synth_config_of(base)
        config.sentence_share = share
        synthesize_dataset(json.loads((base / "manifest.json").read_text())["phrase"], out,
                           config, reuse=base)
        shutil.copytree(base / "eval", out / "eval", copy_function=os.link)
    return out


def round1(phrase: str, data: Path, run: Path, seed: int) -> Path:
    """Round 1 of the main job (its epochs and seed), trained in `run` unless exported there."""
    if not (run / "export" / "manifest.json").is_file():
        config = round1_config(Recipe(), None, {"wake_word": phrase, "data.dataset": str(data)}, seed)
        plugins = PluginManager()
        train(config, run, resume=(run / LAST).is_file(), progress=False, plugins=plugins)
        export_run(run, plugins=plugins)
    return run / "export"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--phrase", default="hey jarvis")
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 7, 42])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    phrase = normalise_phrase(args.phrase)
    slug = phrase.replace(" ", "_")
    base = args.workdir / slug / "base" / slug
    if not (base / "eval" / "manifest.json").is_file():
        raise SystemExit(f"error: {base} has no dataset with eval sets; run "
                         f"benchmarks/recipe_seeds.py --workdir {args.workdir} first")
    arms = {"plain": base,
            f"sent{args.share:g}": variant_dataset(base, args.workdir / slug / f"sent{args.share:g}" / slug,
                                                   args.share)}
    args.results.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[int, dict]] = {}
    for seed in args.seeds:
        for arm, data in arms.items():
            path = args.results / f"{slug}_{arm}_s{seed}.json"
            if not path.is_file():
                began = time.monotonic()
                run = (args.workdir / slug / f"s{seed}" / "runs" / slug / "round1"
                       if arm == "plain" else args.workdir / slug / f"r1_{arm}_s{seed}")
                model = round1(phrase, data, run, seed)
                summary = evaluate_and_report(model, base / "eval", update_manifest=False,
                                              out=args.workdir / slug / f"eval_{arm}_s{seed}",
                                              progress=False)
                summary.update(arm=arm, seed=seed, dataset=str(data), model=str(model),
                               seconds=round(time.monotonic() - began, 1))
                path.write_text(json.dumps(summary, indent=1))
            rows.setdefault(arm, {})[seed] = json.loads(path.read_text())
    sets = list(next(iter(rows["plain"].values()))["sets"])
    print(f"\n'{phrase}', round 1, per seed: FRR at <= 0.5 FA/h | FRR / FA/h at the calib threshold")
    print("| arm | seed | threshold | " + " | ".join(f"{n} <= 0.5 | {n} at threshold" for n in sets)
          + " |")
    print("|---|---|---|" + "---|---|" * len(sets))
    for arm, by_seed in rows.items():
        for seed, r in by_seed.items():
            cells = []
            for name in sets:
                s = r["sets"][name]
                best = s.get("frr_at_0.5_fa_h")
                cells.append(f"{'n/a' if best is None else f'{100 * best:.1f}%'} | "
                             f"{100 * s['frr']:.1f}% / {s['fa_per_hour']:.2f}")
            print(f"| {arm} | {seed} | {r['threshold']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
