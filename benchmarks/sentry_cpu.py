"""CPU cost and size of the sentry: CPU-seconds per hour of streamed audio.

Usage: python benchmarks/sentry_cpu.py --model hark-runs/runs/hey_jarvis/export [--minutes 10]

Streams audio through sentry.Detector in 80 ms chunks (as a microphone would deliver it),
one onnxruntime thread, and measures process CPU time; also the batch path used by
mining and evaluation. Prints a table and writes JSON next to this script (out/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.detector import Detector
from sentry.manifest import load_manifest

SECONDS_PER_HOUR = 3600.0


def test_audio(minutes: float, seed: int = 0) -> np.ndarray:
    """Noise with speech-like bursts: the cost does not depend on content, only on length."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * SAMPLE_RATE)
    audio = rng.standard_normal(n).astype(np.float32) * 0.01
    envelope = np.repeat(rng.random(n // 1600 + 1) > 0.6, 1600)[:n]
    audio += envelope * np.sin(np.arange(n) * 2 * np.pi * 220 / SAMPLE_RATE).astype(np.float32) * 0.2
    return audio


def measure_streaming(model_dir: Path, audio: np.ndarray, int8: bool) -> float:
    detector = Detector(model_dir, int8=int8)
    pcm16 = (audio * 32767).astype(np.int16)
    start = time.process_time()
    for i in range(0, len(pcm16), HOP_SAMPLES):
        detector.process(pcm16[i:i + HOP_SAMPLES])
    return time.process_time() - start


def measure_batch(model_dir: Path, audio: np.ndarray, int8: bool) -> float:
    detector = Detector(model_dir, int8=int8)
    start = time.process_time()
    detector.score_pcm(audio)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "sentry_cpu.json")
    args = parser.parse_args()

    manifest = load_manifest(args.model)
    audio = test_audio(args.minutes)
    hours = len(audio) / SAMPLE_RATE / SECONDS_PER_HOUR
    rows = []
    for int8 in (False, True):
        name = manifest.files["model_int8" if int8 else "model"]
        stream_cpu = measure_streaming(args.model, audio, int8)
        batch_cpu = measure_batch(args.model, audio, int8)
        rows.append({"model": name, "bytes": os.path.getsize(args.model / name),
                     "streaming_cpu_s_per_audio_hour": stream_cpu / hours,
                     "batch_cpu_s_per_audio_hour": batch_cpu / hours,
                     "batch_realtime_factor": (hours * SECONDS_PER_HOUR) / max(batch_cpu, 1e-9)})
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "audio_minutes": args.minutes, "parameters": manifest.parameters,
              "features_bytes": os.path.getsize(args.model / manifest.files["features"]), "rows": rows}
    print(f"parameters: {manifest.parameters}   audio: {args.minutes:.0f} min   machine: {result['machine']}")
    print(f"{'model':<18} {'KB':>6} {'stream CPU-s/h':>15} {'batch CPU-s/h':>14} {'batch x realtime':>17}")
    for r in rows:
        print(f"{r['model']:<18} {r['bytes'] / 1024:>6.0f} {r['streaming_cpu_s_per_audio_hour']:>15.1f} "
              f"{r['batch_cpu_s_per_audio_hour']:>14.1f} {r['batch_realtime_factor']:>17.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
