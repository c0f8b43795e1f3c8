"""Training throughput (windows/s) of the real training loop with each performance toggle.

Usage: python benchmarks/train_throughput.py [--data DATASET] [--steps 24] [--warmup 4]
           [--variants baseline,threads1,compile,grad_checkpointing,bf16,ddp2_gloo] [--threads N]
           [--out JSON]

Each variant runs ``trainer.loop.train`` for one epoch in a fresh process on a subset of the
dataset sized so that the epoch is exactly WARMUP + STEPS full batches (the step limit), with
the default model and batch size. A timing plugin stamps every optimizer step (on_batch_end);
windows/s counts the last STEPS steps only, so torch.compile's one-off compilation (reported
separately as the warm-up seconds) and validation are not in it. ddp2_gloo runs the same under
``torchrun --nproc_per_node 2`` (gloo, CPU); its windows/s counts both ranks' windows, and
each rank gets train.threads // 2 = 1 thread, so threads1 (one process, one thread) is the
row to compare it with as well as baseline (one process, train.threads = 2).
The machine may be shared: each row records the load average, how many cores were busy (all
processes, from /proc/stat) while it ran, how many cores the timed steps got (our_cores), and
windows per CPU-second of ours, which contention disturbs far less than windows/s (it cannot
show a parallel speed-up, only the work each window costs). Prints a table; writes
benchmarks/out/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path("/tmp/hark-bench3/data/hey_jarvis")
OUT = Path(__file__).resolve().parent / "out" / "train_throughput.json"
VARIANTS = {
    "baseline": {},
    "threads1": {"train.threads": 1},
    "compile": {"train.use_compile": True},
    "grad_checkpointing": {"train.gradient_checkpointing": True},
    "bf16": {"train.precision": "bf16"},
    "ddp2_gloo": {},
}
PROCESSES = {"ddp2_gloo": 2}
SPLIT_POSITIVES = {"val": 64}
"""Validation positives in the subset: validation is not timed, so keep it short."""
VARIANT_TIMEOUT_S = 1_200


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def make_subset(data: Path, dest: Path, train_positives: int) -> Path:
    """A dataset folder of symlinks: ``train_positives`` training positives (so one epoch is the
    step limit), a few validation positives, and the negatives and background in proportion."""
    from trainer.dataset import read_manifest, write_manifest
    manifest = read_manifest(data)
    want = {("positive", "train"): train_positives, ("positive", "val"): SPLIT_POSITIVES["val"]}
    taken: dict[tuple[str, str], int] = {}
    clips = []
    for entry in manifest.get("clips", []):
        key = (entry["label"], entry["split"])
        # Negative pools only need to be varied, not complete: loading audio is not what we time.
        limit = want.get(key, train_positives if key[1] == "train" else SPLIT_POSITIVES["val"])
        if entry["split"] == "test" or taken.get(key, 0) >= limit:
            continue
        taken[key] = taken.get(key, 0) + 1
        target = dest / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(data / entry["path"])
        clips.append(entry)
    for folder in ("rir",):  # background clips are in the manifest
        if (data / folder).is_dir() and not (dest / folder).exists():
            (dest / folder).symlink_to(data / folder)
    if taken.get(("positive", "train"), 0) < train_positives:
        raise SystemExit(f"{data}: only {taken.get(('positive', 'train'), 0)} training positives, "
                         f"{train_positives} needed; lower --steps")
    write_manifest(dest, {**{k: v for k, v in manifest.items() if k != "clips"}, "clips": clips})
    return dest


def worker(variant: str, data: str, result_path: str, threads: int | None) -> None:
    """One variant's training run (one rank of it under torchrun); rank 0 writes the result."""
    from trainer import hookimpl
    from trainer.config import load_config
    from trainer.loop import train
    from trainer.plugins import PluginManager

    class Stamps:
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []

        @hookimpl
        def on_batch_end(self, step: int, loss: float) -> None:
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())  # this process's CPU seconds, all threads

    stamps = Stamps()
    plugins = PluginManager(autoload=False)
    plugins.register(stamps, name="throughput-stamps")
    base = {"data.dataset": data, "train.epochs": 1, **({"train.threads": threads} if threads else {})}
    config = load_config(None, {**base, **VARIANTS[variant]})
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(config, Path(run_dir) / "run", progress=False, plugins=plugins)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(result_path).write_text(json.dumps({
            "start": began, "stamps": stamps.times, "cpu": stamps.cpu, "batch_size": config.train.batch_size,
            "runtime": result.runtime.describe(), "compiled": result.runtime.compiled}))


def run_variant(variant: str, data: Path, steps: int, warmup: int, threads: int | None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = fh.name
    script = [str(Path(__file__).resolve()), "--worker", variant, "--data", str(data), "--result", result_path,
              *(["--threads", str(threads)] if threads else [])]
    procs = PROCESSES.get(variant, 1)
    if procs > 1:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                   "--master_addr", "127.0.0.1", "--master_port", str(port), *script]
    else:
        command = [sys.executable, *script]
    load_before = os.getloadavg()[0]
    busy0, total0 = _cpu_ticks()
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=VARIANT_TIMEOUT_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1" if procs > 1 else
                               os.environ.get("OMP_NUM_THREADS", "2")})
    busy1, total1 = _cpu_ticks()
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    raw = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    stamps = raw["stamps"]
    if len(stamps) != warmup + steps:
        raise SystemExit(f"{variant}: expected {warmup + steps} steps, got {len(stamps)}")
    timed_s = stamps[-1] - stamps[warmup - 1]
    # CPU seconds we got during the timed steps (rank 0's, times the ranks: they do equal work).
    cpu_s = (raw["cpu"][-1] - raw["cpu"][warmup - 1]) * procs
    return {"variant": variant, "processes": procs, "runtime": raw["runtime"], "compiled": raw["compiled"],
            "windows_per_s": round(steps * raw["batch_size"] / timed_s, 1),
            "ms_per_step": round(1000 * timed_s / steps, 1),
            "windows_per_cpu_s": round(steps * raw["batch_size"] / cpu_s, 1),
            "our_cores": round(cpu_s / timed_s, 2),
            "warmup_s": round(stamps[warmup - 1] - raw["start"], 1),
            "load_avg_1min_before": round(load_before, 2),
            "busy_cores": round(os.cpu_count() * (busy1 - busy0) / max(total1 - total0, 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=24, help="Timed steps per variant.")
    parser.add_argument("--warmup", type=int, default=4, help="Untimed first steps (compilation).")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=OUT, help="JSON report path.")
    parser.add_argument("--threads", type=int, help="train.threads for every variant (default: the "
                        "config default; threads1 always uses 1).")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, str(args.data), args.result, args.threads)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    from trainer.config import DataConfig, TrainConfig
    batches = args.warmup + args.steps
    # One epoch = ceil(positives * (1 + negatives_per_positive) / batch) batches, all full.
    per_positive = 1 + DataConfig().negatives_per_positive
    train_positives = int(batches * TrainConfig().batch_size / per_positive)
    subset_root = Path(tempfile.mkdtemp(prefix="hark-throughput-"))
    rows = []
    try:
        subset = make_subset(args.data, subset_root / args.data.name, train_positives)
        for variant in variants:
            print(f"running {variant} ...", file=sys.stderr, flush=True)
            rows.append(run_variant(variant, subset, args.steps, args.warmup, args.threads))
    finally:
        shutil.rmtree(subset_root, ignore_errors=True)
    base = next((r["windows_per_s"] for r in rows if r["variant"] == "baseline"), None)
    print(f"{'variant':<20}{'windows/s':>11}{'x base':>8}{'ms/step':>9}{'win/cpu-s':>11}{'our cores':>11}"
          f"{'warmup s':>10}{'busy cores':>12}{'load':>7}  runtime")
    for r in rows:
        ratio = f"{r['windows_per_s'] / base:.2f}" if base else "-"
        print(f"{r['variant']:<20}{r['windows_per_s']:>11.1f}{ratio:>8}{r['ms_per_step']:>9.1f}"
              f"{r['windows_per_cpu_s']:>11.1f}{r['our_cores']:>11.2f}{r['warmup_s']:>10.1f}{r['busy_cores']:>12.2f}{r['load_avg_1min_before']:>7.2f}  {r['runtime']}")
    import torch
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "dataset": str(args.data),
        "steps": args.steps, "warmup": args.warmup, "batch_size": TrainConfig().batch_size,
        "threads": args.threads or TrainConfig().threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "processor": platform.processor()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
