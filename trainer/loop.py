"""The training loop: epochs, validation, checkpoints, exact resume.

The loop knows nothing of the architecture: it gets an nn.Module mapping log-mel
[B, frames, mels] to logits [B]. Each epoch's data and augmentation are seeded from
(seed, epoch), and the torch RNG is reseeded per epoch too, so resuming from the
checkpoint of epoch k reproduces epochs k+1.. bit for bit.

Augmentation, the architecture and lifecycle events go only through the plugin manager
(trainer/plugins.py): with every optional plugin blocked the loop trains on clean windows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from sentry.files import atomic_write, write_text_atomic

from . import distributed, perf
from .config import Config, config_from_dict, save_config
from .data import WindowSampler, load_pools, open_dataset
from .errors import TrainerError
from .features import LogMel
from .models import count_parameters
from .plugins import AugmentContext, AugmentState, DistillBatch, PluginManager
from .teachers import feature_settings

log = logging.getLogger(__name__)

LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
VAL_SEED_OFFSET = 10_000_019
"""Validation windows use a seed no training epoch can reach."""
RUNTIME_KEYS = ("device", "threads", "use_compile", "gradient_checkpointing")
"""train.* keys that describe the machine rather than the run: on resume the given values win
(a run started on a laptop can continue on a GPU box); for every other key the checkpoint wins."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    parameters: int
    seconds: float
    runtime: perf.Runtime | None = None
    """The performance toggles in effect (device, precision, compiled, checkpointing)."""


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def save_checkpoint(path: Path, *, model: nn.Module, optimizer, scheduler, epoch: int, step: int,
                    config: Config, best: dict[str, float], scaler=None,
                    ema: AveragedModel | None = None) -> None:
    """Atomic write: a crash mid-save never leaves a half checkpoint behind. ``model`` is the
    plain module (never the DDP or torch.compile wrapper), so keys carry no `module.` or
    `_orig_mod.` prefix and export and resume read them as they are. With ``ema`` the
    averaged weights are "model" (what export and distillation read), and the weights being
    trained are kept apart for resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    averaged = {} if ema is None else {"model": ema.module.state_dict(), "ema": ema.state_dict(),
                                        "train_model": model.state_dict()}
    with atomic_write(path) as handle:
        torch.save({"model": model.state_dict(), **averaged, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                    "rng": _rng_state(), "config": config.to_dict(), "best": best,
                    "architecture": config.model.architecture,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    # What a student checks before distilling from this run (trainer/teachers.py).
                    "features": feature_settings()}, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainerError(f"{path}: no checkpoint here; train first (`hark train`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainerError(f"{path}: not a readable hark checkpoint ({exc})") from exc


def ema_decay(decay: float, total_steps: int) -> float:
    """``decay``, lowered so that the average spans at most a fifth of a short run's steps
    (a 10-step run at 0.995 would export weights still 95% at their random start)."""
    return max(0.0, min(decay, 1.0 - 5.0 / max(total_steps, 1)))


def _loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    target = labels * (1 - smoothing) + smoothing / 2
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: checkpoint {va!r}, given {vb!r}")
    return out


@torch.no_grad()
def validate(model: nn.Module, frontend: LogMel, sampler: WindowSampler, seed: int,
             runtime: perf.Runtime | None = None) -> dict[str, float]:
    """Loss and error rates at 0.5 on the validation windows; with ``runtime`` the model runs
    on its device and precision (the frontend stays on the CPU)."""
    model.eval()
    losses, probs, labels = [], [], []
    for pcm, y in sampler.epoch(seed):
        if runtime is None:
            logits = model(frontend(pcm))
        else:
            with runtime.autocast():
                logits = model(frontend(pcm).to(runtime.device)).float().cpu()
        losses.append(_loss(logits, y, 0.0).item() * len(y))
        probs.append(torch.sigmoid(logits))
        labels.append(y)
    p, y = torch.cat(probs), torch.cat(labels)
    pos, neg = p[y == 1], p[y == 0]
    return {"val_loss": sum(losses) / len(y), "val_frr@0.5": float((pos < 0.5).float().mean()),
            "val_far@0.5": float((neg >= 0.5).float().mean())}


def _trim_metrics(path: Path, epochs_done: int) -> None:
    """Keep the metrics of the epochs the checkpoint holds: a run stopped between writing an
    epoch's line and saving its checkpoint repeats that epoch, and must not log it twice."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("epoch", 0) <= epochs_done:
                kept.append(line)
        except ValueError:
            pass  # a line cut short by the crash that ended the run
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, plugins: PluginManager | None = None) -> TrainResult:
    """Train (or resume) a run; `stop_after` ends this call after that many epochs in total
    (a later `resume=True` call carries on exactly as if it had never stopped). `plugins`
    defaults to a fresh PluginManager (built-ins plus entry-point plugins)."""
    run_dir = Path(run_dir)
    ctx = distributed.from_env()  # world size 1 unless started by torchrun
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(run_dir / LAST)
        stored = config_from_dict(checkpoint["config"], f"{run_dir / LAST} config")
        runtime_lines = tuple(f"train.{key}:" for key in RUNTIME_KEYS)
        for line in _diff(checkpoint["config"], config.to_dict()):
            if line.startswith(runtime_lines):
                log.info("resume: the given value wins (a machine setting): %s", line)
            else:
                log.warning("resume: the checkpoint's value wins: %s", line)
        config = dataclasses.replace(stored, train=dataclasses.replace(
            stored.train, **{key: getattr(config.train, key) for key in RUNTIME_KEYS}))
    elif (run_dir / LAST).exists():
        raise TrainerError(f"{run_dir} already holds a run; pass --resume to continue it "
                           "or choose another --run-dir")
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_NAME)

    torch.set_num_threads(ctx.threads(config.train.threads))
    dataset = open_dataset(config)
    train_pools = load_pools(dataset, "train", config.data.max_positive_s)
    val_pools = load_pools(dataset, "val", config.data.max_positive_s)
    for reason, count in {**train_pools.skipped, **val_pools.skipped}.items():
        log.warning("skipped %d clip(s): %s", count, reason)
    train_sampler = WindowSampler(train_pools, config, augment=True)
    val_sampler = WindowSampler(val_pools, config, augment=False)
    # Every name in the config is resolved here, so a typo fails before the first epoch.
    plugins = plugins or PluginManager()
    state = AugmentState(config=config.augment, snr_db=config.augment.snr_db)
    rirs = [clip.path for clip in dataset.select("rir")]
    augmenter = plugins.build_augmenter(config.augment, AugmentContext(state, train_pools.background, rirs))
    # Teachers are loaded and checked here too: a bad teacher fails before the first step.
    distiller = plugins.build_distiller(config)

    torch.manual_seed(config.train.seed)
    model = plugins.build_model(config.model)
    runtime = perf.prepare_model(model, config.train, config.model.architecture, ctx.local_rank)
    distributed.start(ctx, runtime.device)
    frontend = LogMel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)
    steps_per_epoch = train_sampler.n_batches()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.train.lr, total_steps=config.train.epochs * steps_per_epoch,
        pct_start=0.15)
    ema = None
    if config.train.ema_decay > 0:
        ema = AveragedModel(model, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(
            ema_decay(config.train.ema_decay, config.train.epochs * steps_per_epoch)))
    start_epoch, step = 0, 0
    best = {"val_loss": float("inf"), "epoch": -1}
    if checkpoint is not None:
        model.load_state_dict(checkpoint.get("train_model", checkpoint["model"]))
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, step, best = checkpoint["epoch"] + 1, checkpoint["step"], checkpoint["best"]
        random.setstate(checkpoint["rng"]["python"])
        if runtime.scaler is not None and checkpoint.get("scaler"):
            runtime.scaler.load_state_dict(checkpoint["scaler"])
        log.info("resuming %s at epoch %d", run_dir, start_epoch + 1)
        if ctx.is_main:
            _trim_metrics(run_dir / METRICS_NAME, start_epoch)
    # Weights are loaded into the plain module; DDP and compile wrap it only for the steps.
    step_model = ctx.wrap(model, runtime.device)
    if config.train.use_compile:
        step_model, runtime.compiled = perf.compile_model(step_model, runtime.device)
    if ctx.is_main:
        log.info("training on %s%s", runtime.describe(),
                 f", {ctx.world} processes" if ctx.active else "")

    began = time.monotonic()
    last_epoch = config.train.epochs if stop_after is None else min(stop_after, config.train.epochs)
    for epoch in range(start_epoch, last_epoch):
        torch.manual_seed(ctx.seed(config.train.seed * 1_000 + epoch))
        aug_gen = torch.Generator().manual_seed(ctx.seed(config.train.seed * 1_000 + epoch))
        plugins.epoch_start(epoch, config.train.epochs, state)
        model.train()
        bar = tqdm(train_sampler.epoch(config.train.seed * 1_000 + epoch), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch",
                   disable=not (progress and ctx.is_main), leave=False)
        running, batches = 0.0, 0
        for pcm, labels in bar:
            shard = ctx.shard(pcm, labels)
            if shard is None:  # fewer rows than processes: every rank skips it
                continue
            pcm, labels = shard
            with torch.no_grad():
                pcm = augmenter.waveform(pcm, labels, aug_gen)
                feats = augmenter.features(frontend(pcm), labels, aug_gen)
            with runtime.autocast():
                logits = step_model(feats.to(runtime.device)).float()
            loss = _loss(logits, labels.to(runtime.device), config.train.label_smoothing)
            if distiller is not None:
                # Teachers follow the features to the student's device (the distiller moves them).
                batch = DistillBatch(pcm, feats.to(runtime.device), labels.to(runtime.device),
                                     epoch, config.train.epochs)
                loss = distiller(logits, loss, batch)
            runtime.backward_step(loss, optimizer)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step, batches = step + 1, batches + 1
            running += (loss.item() - running) / batches
            if ctx.is_main:
                plugins.batch_end(step, loss.item())
            bar.set_postfix(loss=f"{running:.4f}")
        ctx.sync_buffers(model)
        if not ctx.is_main:  # rank 0 validates and writes; the others wait for it
            ctx.barrier()
            continue
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": running,
                   **validate(model if ema is None else ema.module, frontend, val_sampler,
                              VAL_SEED_OFFSET, runtime)}
        if metrics["val_loss"] < best["val_loss"]:
            best = {"val_loss": metrics["val_loss"], "epoch": epoch + 1}
            save_checkpoint(run_dir / BEST, model=model, optimizer=optimizer, scheduler=scheduler,
                            epoch=epoch, step=step, config=config, best=best, scaler=runtime.scaler,
                            ema=ema)
            plugins.checkpoint_saved(run_dir / BEST, epoch)
        with open(run_dir / METRICS_NAME, "a") as fh:  # before last.pt: resume trims a line it outlived
            fh.write(json.dumps(metrics) + "\n")
        save_checkpoint(run_dir / LAST, model=model, optimizer=optimizer, scheduler=scheduler,
                        epoch=epoch, step=step, config=config, best=best, scaler=runtime.scaler,
                        ema=ema)
        plugins.checkpoint_saved(run_dir / LAST, epoch)
        plugins.epoch_end(epoch, metrics)
        if progress:
            tqdm.write(f"epoch {epoch + 1}: train_loss {running:.4f} val_loss {metrics['val_loss']:.4f} "
                       f"val FRR@0.5 {metrics['val_frr@0.5']:.3f} val FAR@0.5 {metrics['val_far@0.5']:.4f}")
        ctx.barrier()
    best = ctx.share(best)  # only rank 0 validated; every rank reports its result
    ctx.close()
    return TrainResult(run_dir, max(last_epoch - start_epoch, 0), best["epoch"], best["val_loss"],
                       count_parameters(model), time.monotonic() - began, runtime)
