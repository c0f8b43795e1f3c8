"""The ESPHome export as the chip runs it: TFLite Micro fed by the TFLite Micro frontend.

Usage (the [esphome] extra; esphome itself may live in a venv of its own):
    python benchmarks/esphome_micro.py --model RUN_DIR/esphome/hey_jarvis.json \\
        --eval-set DATA/eval/heldout [--peer] [--esphome /path/to/bin/esphome]

For each system (Hark's export; with --peer also microWakeWord's own hey_jarvis from PyPI
pymicro-wakeword, run through the very same code): the held-out positive clips are laid in
one stream with gaps (trainer.evaluate.build_positive_stream, seed 0) and negative_stream.wav
is the negative audio; both get the same faint noise floor the export calibrates with
(trainer.micro.esphome.MIC_NOISE_DBFS). The audio goes 10 ms at a time through
pymicro-features, ESPHome's int8 mapping and PyPI tflite-micro (one Invoke per `stride`
slices); detections are ESPHome's rule (mean of the last sliding_window_size uint8
probabilities strictly above probability_cutoff, a 2 s refractory period). Reported: file
size, the tensor arena measured in TFLite Micro, CPU-seconds per audio hour of this Python
path (frontend + interpreter, one core; "model": the interpreter's share), FRR and FA/h at the manifest's cutoff, and the best
FRR at <= 0.5 and <= 1 FA/h over the cutoff grid. With --esphome, `esphome config` validates
a device using the manifest (offline). Prints a table, writes JSON (default out/).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from sentry.constants import SAMPLE_RATE
from trainer.audio import load_audio
from trainer.evaluate import EvalSet, build_positive_stream, match_detections
from trainer.micro.decide import detections
from trainer.thresholds import frr_at_fa_rate
from trainer.micro.esphome import esphome_config, sweep, with_noise_floor
from trainer.micro.tflm import measure_arena, stream_probabilities

SECONDS_PER_HOUR = 3600.0
FA_RATES = (0.5, 1.0)


def load_streams(eval_set: Path, seed: int = 0) -> dict:
    folder = EvalSet(eval_set)
    clips = [load_audio(p) for p in folder.positive_paths]
    positive, regions = build_positive_stream(clips, np.random.default_rng(seed))
    negative = load_audio(eval_set / "negative_stream.wav")
    return {"positive": with_noise_floor(positive, seed), "regions": regions,
            "negative": with_noise_floor(negative, seed + 1)}


def evaluate(name: str, manifest_path: Path, audio: dict) -> dict:
    manifest = json.loads(manifest_path.read_text())
    micro = manifest["micro"]
    tflite = manifest_path.parent / manifest["model"]
    flatbuffer = tflite.read_bytes()
    arena = measure_arena(tflite)
    pos_run = stream_probabilities(flatbuffer, audio["positive"], arena)
    neg_run = stream_probabilities(flatbuffer, audio["negative"], arena)
    pos, neg, stride = pos_run.probs, neg_run.probs, pos_run.stride
    window, cutoff, step = micro["sliding_window_size"], micro["probability_cutoff"], \
        micro["feature_step_size"]
    neg_hours = len(audio["negative"]) / SAMPLE_RATE / SECONDS_PER_HOUR
    audio_hours = neg_hours + len(audio["positive"]) / SAMPLE_RATE / SECONDS_PER_HOUR
    hits, _ = match_detections(detections(pos, cutoff=cutoff, window=window, stride=stride,
                                          step_ms=step), audio["regions"])
    false = len(detections(neg, cutoff=cutoff, window=window, stride=stride, step_ms=step))
    rows = sweep(pos, audio["regions"], neg, neg_hours, stride=stride, window=window)
    best = {}
    for rate in FA_RATES:
        best[str(rate)] = frr_at_fa_rate(rows, rate)
    return {"system": name, "manifest": str(manifest_path), "size_bytes": len(flatbuffer),
            "tensor_arena_bytes": arena, "manifest_arena_bytes": micro["tensor_arena_size"],
            "stride": stride, "probability_cutoff": cutoff, "sliding_window_size": window,
            "cpu_s_per_audio_hour": (pos_run.cpu_s + neg_run.cpu_s) / audio_hours,
            "frontend_cpu_s_per_audio_hour":
                (pos_run.frontend_cpu_s + neg_run.frontend_cpu_s) / audio_hours,
            "model_cpu_s_per_audio_hour": (pos_run.model_cpu_s + neg_run.model_cpu_s) / audio_hours,
            "frr": 1 - hits / len(audio["regions"]), "fa_per_hour": false / neg_hours,
            "best_frr_at_fa": best, "positives": len(audio["regions"]),
            "negative_hours": neg_hours}


def print_table(results: list[dict]) -> None:
    head = (f"{'system':<24} {'KB':>6} {'arena':>7} {'CPU-s/h':>8} {'model':>6} {'cutoff':>6} {'FRR':>7} "
            f"{'FA/h':>6} {'FRR@0.5':>8} {'FRR@1':>7}")
    print(head)
    print("-" * len(head))

    def pct(x):
        return "-" if x is None else f"{x:.1%}"
    for r in results:
        print(f"{r['system']:<24} {r['size_bytes'] / 1024:>6.1f} {r['tensor_arena_bytes']:>7} "
              f"{r['cpu_s_per_audio_hour']:>8.1f} {r['model_cpu_s_per_audio_hour']:>6.1f} "
              f"{r['probability_cutoff']:>6.3f} "
              f"{pct(r['frr']):>7} {r['fa_per_hour']:>6.2f} "
              f"{pct(r['best_frr_at_fa']['0.5']):>8} {pct(r['best_frr_at_fa']['1.0']):>7}")


def peer_manifest(word: str = "hey_jarvis") -> Path:
    import pymicro_wakeword
    return Path(pymicro_wakeword.__file__).parent / "models" / f"{word}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="NAME.json of the export")
    parser.add_argument("--eval-set", type=Path, required=True,
                        help="a folder with positive/*.wav and negative_stream.wav")
    parser.add_argument("--peer", action="store_true",
                        help="also microWakeWord's hey_jarvis (PyPI pymicro-wakeword)")
    parser.add_argument("--esphome", help="an esphome executable: validate the manifest with "
                                          "`esphome config`")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "out" / "esphome_micro.json")
    args = parser.parse_args()

    audio = load_streams(args.eval_set)
    results = [evaluate("Hark (TFLite Micro)", args.model, audio)]
    if args.peer:
        results.append(evaluate("microWakeWord (TFLM)", peer_manifest(), audio))
    print_table(results)
    report = {"machine": platform.processor() or platform.machine(),
              "eval_set": str(args.eval_set), "results": results}
    if args.esphome:
        valid, output = esphome_config(args.model, args.esphome)
        report["esphome_config"] = {"valid": valid, "esphome": args.esphome,
                                    "tail": output[-2000:]}
        print(f"esphome config on a device using {args.model}: "
              f"{'valid' if valid else 'INVALID'}")
        if not valid:
            print(output[-2000:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
