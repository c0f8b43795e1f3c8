"""Miner throughput and faithfulness: how fast `hark mine` scans, and what a coarse stride misses.

Usage: python benchmarks/miner_throughput.py [--model DIR] [--audio WAV ...] [--threads 2]

1. Headline: `hark mine` end to end (decoding, scoring, hit merging, clip writing, atomic
   session saves) with its default settings on the first --audio file (one hour of real
   audio: an eval set's negative_stream.wav), as hours per second and real-time factor.
2. Scan paths over every --audio file: the sentry's own batch path (Detector.score_pcm,
   fp32, every 80 ms hop) as the reference, then the miner in fp32 and int8 at strides
   1..4. For each: real-time factor, classifier windows
   run, and the hits against the reference (same peak hop = found; missed; extra; largest
   score difference of found hits) against the sentry and against the same graph at stride
   1, at the mining threshold, and against the sentry at the detection threshold.

Both wall-clock and CPU time are reported: on a shared machine the wall clock measures the
neighbours' load; audio seconds per CPU-second is what one otherwise idle core delivers.

Prints a table and writes benchmarks/out/miner_throughput.json. Timings on a shared machine
vary with its load, which is recorded (os.getloadavg) next to every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sentry.detector import Detector
from sentry.postprocess import smooth
from trainer.mining.audio import AudioSource
from trainer.mining.cli import DEFAULT_STRIDE_HOPS, DEFAULT_THRESHOLD_RATIO, PROBE_RATIO
from trainer.mining.graphs import open_graphs
from trainer.mining.scan import BLOCK_HOPS, HitTracker, ScanSettings, Scorer

BENCH = Path("/tmp/hark-bench3")
DEFAULT_MODEL = BENCH / "runs/hey_jarvis/export"
DEFAULT_AUDIO = [BENCH / "data/hey_jarvis/eval/espeak/negative_stream.wav",
                 BENCH / "data/hey_jarvis/eval/heldout/negative_stream.wav"]
STRIDES = (1, 2, 3, 4)
HOP_S = 0.08


def _hits_from_smoothed(smoothed: np.ndarray, settings: ScanSettings) -> list[tuple[int, float]]:
    tracker = HitTracker(settings)
    closed = tracker.update(0, smoothed) + tracker.finish()
    return [(h.peak_hop, h.peak_score) for h in closed]


def reference(model: Path, audio: Path, threads: int) -> tuple[np.ndarray, float]:
    """Smoothed scores from the sentry's batch path over the whole file, and its seconds."""
    detector = Detector(model, threads=threads)
    with AudioSource(audio) as source:
        pcm = source.read(0, source.length)
    start, cpu = time.perf_counter(), time.process_time()
    raw = detector.score_pcm(pcm)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return smooth(raw, detector.settings.smoothing_hops), seconds, cpu


def miner_scan(model: Path, audio: Path, settings: ScanSettings, threads: int):
    graphs = open_graphs(model, int8=settings.int8, threads=threads)
    scorer = Scorer(graphs, settings)
    parts = []
    start, cpu = time.perf_counter(), time.process_time()
    with AudioSource(audio) as source:
        n_hops = source.length // 1280
        for h0 in range(0, n_hops, BLOCK_HOPS):
            parts.append(scorer.score_block(source, h0, min(h0 + BLOCK_HOPS, n_hops), n_hops))
    return (np.concatenate(parts), time.perf_counter() - start, time.process_time() - cpu,
            scorer.windows_scored)


def compare(ref: list[tuple[int, float]], got: list[tuple[int, float]]) -> dict:
    got_map = dict(got)
    found = [(hop, score, got_map[hop]) for hop, score in ref if hop in got_map]
    return {"reference": len(ref), "found": len(found), "missed": len(ref) - len(found),
            "extra": len(set(got_map) - {hop for hop, _ in ref}),
            "max_score_diff": round(max((abs(a - b) for _, a, b in found), default=0.0), 6)}


def end_to_end(model: Path, audio: Path, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "trainer.cli", "mine", str(session), "--model", str(model),
               str(audio), "--threads", str(threads), "--no-progress"]
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        data = json.loads(session.read_text())
    audio_s = sum(f["scanned_s"] for f in data["files"])
    return {"command": " ".join(["hark", *cmd[3:]]), "audio_h": round(audio_s / 3600, 4),
            "wall_s": round(wall, 2), "realtime_x": round(audio_s / wall, 1),
            "cpu_s": round(cpu, 2), "realtime_x_per_cpu_second": round(audio_s / cpu, 1),
            "hits": len(data["hits"]), "load_avg_1min": round(load, 2),
            "settings": data["settings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="Exported model folder; re-export one with an STFT node in its "
                             "features.onnx first (`hark export RUN_DIR`), or its features "
                             "run ~10x slower")
    parser.add_argument("--audio", type=Path, nargs="+", default=DEFAULT_AUDIO)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-strides", action="store_true", help="Only the end-to-end run.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "miner_throughput.json")
    args = parser.parse_args()

    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "model": str(args.model), "audio": [str(a) for a in args.audio]}
    report["end_to_end"] = e2e = end_to_end(args.model, args.audio[0], args.threads)
    print(f"end to end: {e2e['command']}\n  {e2e['audio_h']:.3f} h in {e2e['wall_s']:.2f} s wall = "
          f"{e2e['realtime_x']:.0f}x real time (load avg {e2e['load_avg_1min']} on "
          f"{os.cpu_count()} cores); {e2e['cpu_s']:.2f} CPU-s = {e2e['realtime_x_per_cpu_second']:.0f}x "
          f"real time per CPU-second; {e2e['hits']} hits")
    if args.skip_strides:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        return

    trigger = Detector(args.model).settings
    manifest_threshold, m, gap = trigger.threshold, trigger.smoothing_hops, trigger.refractory_s
    mining = round(manifest_threshold * DEFAULT_THRESHOLD_RATIO, 4)
    rows = []
    for audio in args.audio:
        ref_smoothed, ref_s, ref_cpu = reference(args.model, audio, args.threads)
        audio_s = ref_smoothed.size * HOP_S
        ref_hits = {t: _hits_from_smoothed(ref_smoothed, ScanSettings(t, 0, 1, m, gap, False))
                    for t in (mining, manifest_threshold)}
        rows.append({"audio": audio.parent.name, "path": "sentry score_pcm fp32",
                     "stride": 1, "realtime_x": round(audio_s / ref_s, 1),
                     "realtime_x_per_cpu_second": round(audio_s / ref_cpu, 1),
                     "windows": ref_smoothed.size, "load": round(os.getloadavg()[0], 2),
                     "vs_sentry": compare(ref_hits[mining], ref_hits[mining]),
                     "vs_stride1": compare(ref_hits[mining], ref_hits[mining]),
                     "detection_vs_sentry": compare(ref_hits[manifest_threshold],
                                                    ref_hits[manifest_threshold])})
        for int8 in (False, True):
            stride_one: list = []
            for stride in STRIDES:
                settings = ScanSettings(mining, round(mining * PROBE_RATIO, 4), stride, m, gap, int8)
                smoothed, seconds, cpu, windows = miner_scan(args.model, audio, settings, args.threads)
                scored = np.nan_to_num(smoothed, nan=-1.0)
                got = _hits_from_smoothed(scored, settings)
                stride_one = stride_one or got
                det = _hits_from_smoothed(scored, ScanSettings(manifest_threshold, 0, 1, m, gap, int8))
                rows.append({"audio": audio.parent.name,
                             "path": f"miner {'int8' if int8 else 'fp32'}",
                             "stride": stride, "realtime_x": round(audio_s / seconds, 1),
                             "realtime_x_per_cpu_second": round(audio_s / cpu, 1),
                             "windows": windows, "load": round(os.getloadavg()[0], 2),
                             "vs_sentry": compare(ref_hits[mining], got),
                             "vs_stride1": compare(stride_one, got),
                             "detection_vs_sentry": compare(ref_hits[manifest_threshold], det)})
    report["mining_threshold"] = mining
    report["detection_threshold"] = manifest_threshold
    report["default_stride"] = DEFAULT_STRIDE_HOPS
    report["rows"] = rows
    print(f"\nmining threshold {mining} (probe {round(mining * PROBE_RATIO, 4)}), detection "
          f"threshold {manifest_threshold}; hits vs the sentry's 80 ms fp32 path")
    print(f"{'audio':8} {'path':16} {'stride':>6} {'x rt':>6} {'x rt/cpu-s':>10} {'windows':>8} "
          f"{'load':>5}  {'vs sentry: found/ref (extra) max diff':38} {'vs stride 1':14} at detection thr")
    for r in rows:
        m, o, d = r["vs_sentry"], r["vs_stride1"], r["detection_vs_sentry"]
        print(f"{r['audio']:8} {r['path']:16} {r['stride']:>6} {r['realtime_x']:>6.0f} "
              f"{r['realtime_x_per_cpu_second']:>10.0f} {r['windows']:>8} {r['load']:>5.1f}  "
              f"{m['found']:>4}/{m['reference']:<4} ({m['extra']}) {m['max_score_diff']:<24.4g} "
              f"{o['found']:>4}/{o['reference']:<4} ({o['extra']})  {d['found']}/{d['reference']} ({d['extra']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
