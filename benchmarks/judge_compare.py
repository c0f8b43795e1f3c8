"""Compare candidate judges on the same sentry detections: which judge, and which clip score.

Usage:
  python benchmarks/judge_compare.py --sentry DIR --sentry-threshold 0.45 --eval-root ROOT \
      --judge s42=DIR --judge s7=DIR ... [--group plain=s42,s7] [--max-frr 0.05]

The sentry scans every eval set once (as `hark cascade eval` does); each judge scores every
detection's clip once (judge.verifier window probabilities). A group is an ensemble
(`hark ensemble`): the mean of its members' window probabilities. Each judge and group is
then scored two ways, the single best window ("max") and the best mean of 3 consecutive
windows ("smooth3", what judge.verifier does now), and the table gives, per eval set, the
lowest FA/h over the judge thresholds of the one sweep grid (trainer.thresholds) that keep
FRR <= --max-frr, with that threshold and FRR. Those thresholds are read off the set itself: this compares judges
with each other, it does not choose a shipped threshold. JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from judge.verifier import Verifier, best_smoothed
from sentry.detector import Detector
from trainer.cascade import JudgedDetections, cut_clip
from trainer.evaluate import audio_hours, build_positive_stream, find_eval_sets

SCORINGS = {"max": 1, "smooth3": 3}  # windows averaged before the best is taken


def _named(specs: list[str]) -> dict[str, str]:
    return dict(spec.split("=", 1) for spec in specs)


def best_point(judged: JudgedDetections, max_frr: float) -> dict | None:
    """The judge threshold with the fewest FA/h whose FRR <= max_frr (ties: the lowest)."""
    rows = [r for r in judged.sweep() if r["frr"] <= max_frr]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["fa_per_hour"])
    return {"threshold": best["judge_threshold"], "frr": best["frr"],
            "fa_per_hour": float(best["fa_per_hour"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentry", type=Path, required=True)
    parser.add_argument("--sentry-threshold", type=float, required=True)
    parser.add_argument("--eval-root", type=Path, required=True)
    parser.add_argument("--judge", action="append", default=[], help="NAME=DIR (repeat)")
    parser.add_argument("--group", action="append", default=[], help="NAME=J1,J2,... (repeat)")
    parser.add_argument("--max-frr", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/judge_compare.json"))
    args = parser.parse_args()
    judges = {name: Verifier(path) for name, path in _named(args.judge).items()}
    groups = {name: [name] for name in judges}
    groups.update({name: members.split(",") for name, members in _named(args.group).items()})
    detector = Detector(args.sentry, threshold=args.sentry_threshold)
    results: dict[str, dict] = {}
    for eval_set in find_eval_sets(args.eval_root):
        stream, regions = build_positive_stream(eval_set.positives(), np.random.default_rng(0),
                                                word_regions=eval_set.word_regions())
        negative = eval_set.negative_stream()
        hours = audio_hours(negative.size)
        pos_t = np.array([d.time_s for d in detector.detect_pcm(stream)])
        neg_t = np.array([d.time_s for d in detector.detect_pcm(negative)])
        windows = {name: ([v.window_scores(cut_clip(stream, t))[1] for t in pos_t],
                          [v.window_scores(cut_clip(negative, t))[1] for t in neg_t])
                   for name, v in judges.items()}
        print(f"{eval_set.name}: sentry fired on {pos_t.size} positives, {neg_t.size} times in "
              f"{hours:.2f} h of negatives", flush=True)
        for group, members in groups.items():
            for scoring, hops in SCORINGS.items():
                def scores(side):
                    n = len(windows[members[0]][side])
                    return np.array([best_smoothed(np.mean([windows[m][side][i] for m in members], 0),
                                                   hops) for i in range(n)])
                judged = JudgedDetections(regions, pos_t, scores(0), scores(1), hours)
                point = best_point(judged, args.max_frr)
                results.setdefault(group, {}).setdefault(scoring, {})[eval_set.name] = point
    print(f"\nlowest FA/h with FRR <= {args.max_frr:.0%} (threshold, FRR)")
    for group, by_scoring in results.items():
        for scoring, by_set in by_scoring.items():
            cells = [f"{name}: " + (f"{p['fa_per_hour']:.1f} ({p['threshold']:.3f}, {p['frr']:.1%})"
                                    if p else "-") for name, p in by_set.items()]
            print(f"{group:<24} {scoring:<8} " + " | ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
