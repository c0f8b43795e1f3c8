"""Hit rate per held-out voice: which voices does a model miss?

Usage: python benchmarks/per_voice.py DATASET MODEL_DIR [--set heldout] [--threshold 0.5]

Scores every positive clip of an eval set on its own (1 s of near-silence either side)
with the exported model and groups the peak scores by voice (eval sets assign voices
round-robin, as `trainer/synth/evalsets.py` writes them). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from sentry.constants import SAMPLE_RATE
from sentry.detector import Detector
from trainer.audio import load_audio
from trainer.evaluate import EvalSet

NEAR_SILENCE = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", dest="eval_set", default="heldout")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "per_voice.json")
    args = parser.parse_args()

    manifest = json.loads((args.dataset / "eval" / "manifest.json").read_text())
    voices = manifest["sets"][args.eval_set]["voices"]
    detector = Detector(args.model)
    rng = np.random.default_rng(0)
    peaks: dict[str, list[float]] = defaultdict(list)
    files = EvalSet(args.dataset / "eval" / args.eval_set).positive_paths
    for i, path in enumerate(files):
        clip = load_audio(path)
        pad = np.zeros(SAMPLE_RATE, dtype=np.float32)
        audio = np.concatenate([pad, clip, pad])
        audio += rng.standard_normal(len(audio)).astype(np.float32) * NEAR_SILENCE
        peaks[voices[i % len(voices)]].append(float(detector.score_pcm(audio).max()))
    rows = {v: {"clips": len(p), "mean_peak": float(np.mean(p)),
                "hit_rate": float(np.mean(np.array(p) >= args.threshold))} for v, p in sorted(peaks.items())}
    print(f"{'voice':<36} {'clips':>5} {'mean peak':>9} {'hit rate':>8}")
    for voice, r in rows.items():
        print(f"{voice:<36} {r['clips']:>5} {r['mean_peak']:>9.3f} {100 * r['hit_rate']:>7.0f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threshold": args.threshold, "voices": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
