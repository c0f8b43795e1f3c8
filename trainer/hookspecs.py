"""The trainer's hook specifications and the objects hooks receive: the contract between the
trainer and its plugins.

A plugin is any module or object with functions marked ``@hookimpl`` (``from trainer import
hookimpl``) whose names and argument names match the specs below; it may implement any subset
and may accept fewer arguments than a spec offers. Registration hooks receive a
``register(name, factory)`` callback; config then picks components by name, and a name
registered twice (by any two plugins) is a TrainerError. The trainer calls these hooks only
through ``trainer.plugins.PluginManager``.

The dataclasses below are what factories and lifecycle hooks are handed. They live here, with
the specs, rather than in the manager, so that a plugin (built-in or third-party) imports the
contract and never the manager that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # annotations only: `from trainer import hookimpl` must stay light
    import numpy as np
    import torch

PROJECT = "hark"
"""The pluggy project name: markers of another project never match ours."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Callable[..., Any]], None]


@dataclass
class AugmentState:
    """What lifecycle hooks change during a run and augmentations read on every batch."""

    config: Any
    """The run's AugmentConfig (schedules read their start and end ranges from it)."""
    snr_db: tuple[float, float]
    """Current (low, high) noise SNR range in dB; set by the SNR schedule at each epoch start."""


@dataclass
class AugmentContext:
    """What an augmentation factory may use besides its config."""

    state: AugmentState
    background: list[np.ndarray] = field(default_factory=list)
    """Background-noise clips (float32, 16 kHz) from the dataset's background/ folder."""
    rir: list[Path] = field(default_factory=list)
    """Impulse-response files in the dataset's rir/ folder (read by the reverb factory)."""


@dataclass
class DistillContext:
    """What a distiller factory may use besides the config."""

    build_model: Callable[[Any], torch.nn.Module]
    """ModelConfig -> nn.Module through the run's architectures registry (teachers' own configs)."""


@dataclass
class DistillBatch:
    """One training step as a distiller sees it (see register_distillers)."""

    pcm: torch.Tensor
    """float32 [B, samples] at 16 kHz, after waveform augmentation."""
    features: torch.Tensor
    """The student's input: log-mel [B, frames, mels] after feature augmentation."""
    labels: torch.Tensor
    """[B] float 0/1."""
    epoch: int
    """0-based."""
    total_epochs: int


@hookspec
def register_augmentations(register: Register) -> None:
    """Called once when the plugin manager is built. Call ``register(name, factory)`` per
    augmentation. ``factory(config: AugmentConfig, context: AugmentContext)`` returns an object
    with ``stage`` ("waveform": pcm float32 [B, samples] at 16 kHz, or "features": log-mel
    [B, frames, mels]) and ``__call__(batch, labels [B] float 0/1, generator: torch.Generator)
    -> tensor of the same shape``. It must draw all randomness from ``generator`` (the loop
    seeds it per epoch, which keeps resume exact) and run on the batch's device. The factory
    raises TrainerError for bad input (e.g. an empty background/ folder) before training."""


@hookspec
def register_architectures(register: Register) -> None:
    """Called once when the plugin manager is built. Call ``register(name, factory)`` per model
    architecture; ``factory(config: ModelConfig) -> nn.Module`` mapping log-mel
    [B, frames, mels] to logits [B]. ``model.architecture`` picks one by name."""


@hookspec
def register_distillers(register: Register) -> None:
    """Called once when the plugin manager is built. Call ``register(name, factory)`` per
    distillation loss; ``distill.distiller`` picks one by name, and only when distill.mode
    resolves to single or dual. ``factory(config: Config, context: DistillContext)`` runs
    before the first training step; it loads its teachers (``context.build_model`` rebuilds
    an architecture by name through the run's manager; ``trainer.teachers.load_teachers(config,
    context.build_model)`` does the checked, frozen loading) and raises TrainerError listing
    every problem with its config key. It returns a
    callable ``(student_logits [B], hard_loss: scalar tensor, batch: DistillBatch) -> scalar
    loss tensor`` that replaces the hard-label loss for that step (so it decides the weighting).
    ``batch`` holds the step's pcm [B, samples] at 16 kHz after waveform augmentation, the
    student's input log-mel [B, frames, mels] after feature augmentation, labels [B] float 0/1,
    and the 0-based epoch and train.epochs (for schedules). Teachers must run in eval mode under
    ``torch.no_grad()``: only the student's parameters are in the optimizer."""


@hookspec
def on_epoch_start(epoch: int, total_epochs: int, state: Any) -> None:
    """Called before each training epoch's first batch (also on resume, for every epoch run).
    ``epoch`` is 0-based, ``total_epochs`` is ``train.epochs``. ``state`` is the run's mutable
    ``AugmentState`` (e.g. ``state.snr_db``, the (low, high) noise SNR range in dB that the
    noise augmentation reads); implementations must set it from ``epoch`` alone, never from
    what an earlier epoch left there, so a resumed run matches an uninterrupted one."""


@hookspec
def on_epoch_end(epoch: int, metrics: dict) -> None:
    """Called after each epoch's validation and checkpoint; ``epoch`` is 0-based, ``metrics``
    the row written to metrics.jsonl (train_loss, val_loss, val_frr@0.5, ...). Read-only."""


@hookspec
def on_batch_end(step: int, loss: float) -> None:
    """Called after each optimizer step; ``step`` counts optimizer steps since the run began
    (1-based), ``loss`` is that batch's training loss."""


@hookspec
def on_checkpoint_saved(path: Path, epoch: int) -> None:
    """Called after a checkpoint file is atomically written; ``epoch`` is 0-based."""

