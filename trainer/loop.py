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
from .hookspecs import AugmentContext, AugmentState, DistillBatch
from .models import count_parameters
from .plugins import PluginManager
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


class TrainingRun:
    """One run in torchtune's recipe shape: building it is the setup (config, data, plugins,
    model, optimizer, EMA, then the resume from last.pt when asked); ``train_epoch``,
    ``validate`` and ``save_checkpoints`` are one epoch's parts, and ``train()`` below strings
    them together. The setup's order is fixed (the model is built right after the seed is
    set; weights are loaded into the plain module before DDP or compile wrap it), so a
    resumed run matches an uninterrupted one bit for bit."""

    def __init__(self, config: Config, run_dir: Path, plugins: PluginManager, *, resume: bool) -> None:
        self.run_dir = run_dir
        self.ctx = distributed.from_env()  # world size 1 unless started by torchrun
        self.plugins = plugins
        checkpoint = load_checkpoint(run_dir / LAST) if resume else None
        self.config = self._setup_config(config, checkpoint)
        self._setup_data()
        self._setup_plugins()
        self._setup_model()
        self._setup_optimizer()
        self._setup_ema()
        self.start_epoch, self.step = 0, 0
        self.best = {"val_loss": float("inf"), "epoch": -1}
        if checkpoint is not None:
            self._resume(checkpoint)
        # Weights are loaded into the plain module; DDP and compile wrap it only for the steps.
        self.step_model = self.ctx.wrap(self.model, self.runtime.device)
        if self.config.train.use_compile:
            self.step_model, self.runtime.compiled = perf.compile_model(self.step_model, self.runtime.device)
        if self.ctx.is_main:
            log.info("training on %s%s", self.runtime.describe(),
                     f", {self.ctx.world} processes" if self.ctx.active else "")

    # -- setup ------------------------------------------------------------------------------
    def _setup_config(self, config: Config, checkpoint: dict[str, Any] | None) -> Config:
        """The run's config: on resume the checkpoint's, except the machine settings
        (RUNTIME_KEYS); written to RUN/config.toml by rank 0."""
        if checkpoint is not None:
            stored = config_from_dict(checkpoint["config"], f"{self.run_dir / LAST} config")
            runtime_lines = tuple(f"train.{key}:" for key in RUNTIME_KEYS)
            for line in _diff(checkpoint["config"], config.to_dict()):
                if line.startswith(runtime_lines):
                    log.info("resume: the given value wins (a machine setting): %s", line)
                else:
                    log.warning("resume: the checkpoint's value wins: %s", line)
            config = dataclasses.replace(stored, train=dataclasses.replace(
                stored.train, **{key: getattr(config.train, key) for key in RUNTIME_KEYS}))
        elif (self.run_dir / LAST).exists():
            raise TrainerError(f"{self.run_dir} already holds a run; pass --resume to continue it "
                               "or choose another --run-dir")
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.run_dir / CONFIG_NAME)
        return config

    def _setup_data(self) -> None:
        config = self.config
        torch.set_num_threads(self.ctx.threads(config.train.threads))
        self.dataset = open_dataset(config)
        self.train_pools = load_pools(self.dataset, "train", config.data.max_positive_s)
        val_pools = load_pools(self.dataset, "val", config.data.max_positive_s)
        for reason, count in {**self.train_pools.skipped, **val_pools.skipped}.items():
            log.warning("skipped %d clip(s): %s", count, reason)
        self.train_sampler = WindowSampler(self.train_pools, config, augment=True)
        self.val_sampler = WindowSampler(val_pools, config, augment=False)
        self.steps_per_epoch = self.train_sampler.n_batches()
        self.frontend = LogMel()

    def _setup_plugins(self) -> None:
        """Every name in the config is resolved here, so a typo fails before the first epoch;
        teachers are loaded and checked here too."""
        augment = self.config.augment
        self.state = AugmentState(config=augment, snr_db=augment.snr_db)
        rirs = [clip.path for clip in self.dataset.select("rir")]
        self.augmenter = self.plugins.build_augmenter(
            augment, AugmentContext(self.state, self.train_pools.background, rirs))
        self.distiller = self.plugins.build_distiller(self.config)

    def _setup_model(self) -> None:
        torch.manual_seed(self.config.train.seed)
        self.model = self.plugins.build_model(self.config.model)
        self.runtime = perf.prepare_model(self.model, self.config.train, self.config.model.architecture,
                                          self.ctx.local_rank)
        distributed.start(self.ctx, self.runtime.device)

    def _setup_optimizer(self) -> None:
        train = self.config.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=train.lr, total_steps=train.epochs * self.steps_per_epoch, pct_start=0.15)

    def _setup_ema(self) -> None:
        train = self.config.train
        self.ema: AveragedModel | None = None
        if train.ema_decay > 0:
            self.ema = AveragedModel(self.model, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(
                ema_decay(train.ema_decay, train.epochs * self.steps_per_epoch)))

    def _resume(self, checkpoint: dict[str, Any]) -> None:
        """Weights, optimizer, scheduler, EMA, step, best and RNG from last.pt; the metrics
        file loses the lines of epochs the checkpoint does not hold."""
        self.model.load_state_dict(checkpoint.get("train_model", checkpoint["model"]))
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.start_epoch, self.step, self.best = checkpoint["epoch"] + 1, checkpoint["step"], checkpoint["best"]
        random.setstate(checkpoint["rng"]["python"])
        if self.runtime.scaler is not None and checkpoint.get("scaler"):
            self.runtime.scaler.load_state_dict(checkpoint["scaler"])
        log.info("resuming %s at epoch %d", self.run_dir, self.start_epoch + 1)
        if self.ctx.is_main:
            _trim_metrics(self.run_dir / METRICS_NAME, self.start_epoch)

    # -- one epoch --------------------------------------------------------------------------
    def train_epoch(self, epoch: int, progress: bool) -> float:
        """One epoch's optimizer steps, seeded from (seed, epoch); the mean training loss."""
        config, ctx, runtime = self.config, self.ctx, self.runtime
        epoch_seed = config.train.seed * 1_000 + epoch
        torch.manual_seed(ctx.seed(epoch_seed))
        aug_gen = torch.Generator().manual_seed(ctx.seed(epoch_seed))
        self.plugins.epoch_start(epoch, config.train.epochs, self.state)
        self.model.train()
        bar = tqdm(self.train_sampler.epoch(epoch_seed), total=self.steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch",
                   disable=not (progress and ctx.is_main), leave=False)
        running, batches = 0.0, 0
        for pcm, labels in bar:
            shard = ctx.shard(pcm, labels)
            if shard is None:  # fewer rows than processes: every rank skips it
                continue
            pcm, labels = shard
            with torch.no_grad():
                pcm = self.augmenter.waveform(pcm, labels, aug_gen)
                feats = self.augmenter.features(self.frontend(pcm), labels, aug_gen)
            with runtime.autocast():
                logits = self.step_model(feats.to(runtime.device)).float()
            loss = _loss(logits, labels.to(runtime.device), config.train.label_smoothing)
            if self.distiller is not None:
                # Teachers follow the features to the student's device (the distiller moves them).
                batch = DistillBatch(pcm, feats.to(runtime.device), labels.to(runtime.device),
                                     epoch, config.train.epochs)
                loss = self.distiller(logits, loss, batch)
            runtime.backward_step(loss, self.optimizer)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step, batches = self.step + 1, batches + 1
            running += (loss.item() - running) / batches
            if ctx.is_main:
                self.plugins.batch_end(self.step, loss.item())
            bar.set_postfix(loss=f"{running:.4f}")
        ctx.sync_buffers(self.model)
        return running

    def validate(self, epoch: int, train_loss: float) -> dict[str, float]:
        """The epoch's metrics row: training loss and validation of the weights export reads
        (the EMA average when there is one)."""
        model = self.model if self.ema is None else self.ema.module
        return {"epoch": epoch + 1, "step": self.step, "train_loss": train_loss,
                **validate(model, self.frontend, self.val_sampler, VAL_SEED_OFFSET, self.runtime)}

    def save_checkpoints(self, epoch: int, metrics: dict[str, float]) -> None:
        """best.pt when validation improved, the metrics line, then last.pt (in that order:
        resume trims a metrics line that outlived its checkpoint)."""
        if metrics["val_loss"] < self.best["val_loss"]:
            self.best = {"val_loss": metrics["val_loss"], "epoch": epoch + 1}
            self._save(self.run_dir / BEST, epoch)
        with open(self.run_dir / METRICS_NAME, "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        self._save(self.run_dir / LAST, epoch)

    def _save(self, path: Path, epoch: int) -> None:
        save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                        epoch=epoch, step=self.step, config=self.config, best=self.best,
                        scaler=self.runtime.scaler, ema=self.ema)
        self.plugins.checkpoint_saved(path, epoch)


def _report(metrics: dict[str, float]) -> None:
    tqdm.write(f"epoch {metrics['epoch']}: train_loss {metrics['train_loss']:.4f} "
               f"val_loss {metrics['val_loss']:.4f} val FRR@0.5 {metrics['val_frr@0.5']:.3f} "
               f"val FAR@0.5 {metrics['val_far@0.5']:.4f}")


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, plugins: PluginManager | None = None) -> TrainResult:
    """Train (or resume) a run; `stop_after` ends this call after that many epochs in total
    (a later `resume=True` call carries on exactly as if it had never stopped). `plugins` is
    the run's manager (the caller's entry point builds it); None builds the default one
    (built-ins plus entry-point plugins)."""
    run = TrainingRun(config, Path(run_dir), plugins or PluginManager(), resume=resume)
    began = time.monotonic()
    epochs = run.config.train.epochs
    last_epoch = epochs if stop_after is None else min(stop_after, epochs)
    for epoch in range(run.start_epoch, last_epoch):
        train_loss = run.train_epoch(epoch, progress)
        if run.ctx.is_main:  # rank 0 validates and writes; the others wait for it
            metrics = run.validate(epoch, train_loss)
            run.save_checkpoints(epoch, metrics)
            run.plugins.epoch_end(epoch, metrics)
            if progress:
                _report(metrics)
        run.ctx.barrier()
    best = run.ctx.share(run.best)  # only rank 0 validated; every rank reports its result
    run.ctx.close()
    return TrainResult(run.run_dir, max(last_epoch - run.start_epoch, 0), best["epoch"], best["val_loss"],
                       count_parameters(run.model), time.monotonic() - began, run.runtime)
