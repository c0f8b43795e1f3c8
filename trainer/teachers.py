"""Distillation teachers: load a trained run's checkpoint safely, rebuild and freeze its model,
and check it fits the student before any training step.

Every problem is collected with the config key that fixes it (``distill.teacher_model_path:
...``), so one `hark config validate` or one failed `hark train` lists them all. A teacher sees
the student's log-mel input, so its checkpoint must record the same feature settings
(``feature_settings()``, stored in every checkpoint by trainer/loop.py).

A teacher's model is rebuilt by its architecture's name, so every function here takes the
run's ``build_model`` (``PluginManager.build_model``): an architecture registered on that
manager is found, and this module never builds a manager of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sentry.constants import CLIP_SAMPLES, F_MAX, F_MIN, FRAME_SAMPLES, N_MELS, SAMPLE_RATE, WIN_SAMPLES

from .config import Config, DistillConfig, ModelConfig, config_from_dict
from .errors import TrainerError
from .features import LOG_MEL_OFFSET, LOG_MEL_SCALE

ROLES = ("teacher", "secondary_teacher")
"""Config key prefixes of the two teachers: ``distill.<role>_architecture`` / ``_model_path``."""
TRAIN_HINT = "train one with `hark train --config configs/teacher_crnn.toml --run-dir RUN`"

Builder = Callable[[ModelConfig], nn.Module]
"""ModelConfig -> nn.Module by architecture name: the run's ``PluginManager.build_model``."""


def feature_settings() -> dict[str, float]:
    """The frontend this code trains with (sample rate Hz, window / hop / clip in samples,
    mel bins, mel band edges Hz, log-mel affine); written into every checkpoint."""
    return {"sample_rate": SAMPLE_RATE, "n_mels": N_MELS, "win_samples": WIN_SAMPLES,
            "hop_samples": FRAME_SAMPLES, "clip_samples": CLIP_SAMPLES, "f_min": F_MIN,
            "f_max": F_MAX, "log_mel_offset": LOG_MEL_OFFSET, "log_mel_scale": LOG_MEL_SCALE}


@dataclass
class Teacher:
    """One frozen teacher: eval mode, no parameter requires grad."""

    role: str
    path: Path
    architecture: str
    model: nn.Module
    config: Config

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _roles(distill: DistillConfig) -> tuple[list[str], list[str]]:
    """The teacher roles the mode uses, and mode/path disagreements (never silently ignored)."""
    mode = distill.resolved_mode()
    given = {role: bool(getattr(distill, f"{role}_model_path")) for role in ROLES}
    problems = []
    wanted = {"none": [], "single": ["teacher"], "dual": list(ROLES)}.get(mode, [])
    for role in ROLES:
        key = f"distill.{role}_model_path"
        if role in wanted and not given[role]:
            why = "dual mode needs both teachers" if mode == "dual" else f"distill.mode is '{mode}'"
            problems.append(f"{key}: required ({why}); set it to a teacher run's checkpoint "
                            f"(RUN/checkpoints/best.pt; {TRAIN_HINT})")
        elif role not in wanted and given[role]:
            problems.append(f"{key}: set, but distill.mode is '{mode}' so it would be ignored; "
                            f"clear it or set distill.mode to {'dual' if role == ROLES[1] else 'single'}")
        arch_key = f"distill.{role}_architecture"
        if role in wanted and not getattr(distill, f"{role}_architecture"):
            problems.append(f"{arch_key}: required with {key} (e.g. \"crnn\" or \"conformer\"); "
                            "it must match the architecture stored in the checkpoint")
    return wanted, problems


def _load(role: str, distill: DistillConfig, build_model: Builder) -> tuple[Teacher | None, list[str]]:
    """Load and check one teacher; (None, problems) when it cannot be used."""
    key = f"distill.{role}_model_path"
    arch_key = f"distill.{role}_architecture"
    path = Path(getattr(distill, f"{role}_model_path")).expanduser()
    configured = getattr(distill, f"{role}_architecture")
    if not path.is_file():
        return None, [f"{key}: {path}: no such file; fix the path or {TRAIN_HINT}"]
    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holds non-weight objects
        return None, [(f"{key}: {path} is not a readable checkpoint ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:160]}); point it at a hark run's checkpoints/best.pt")]
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt):
        return None, [(f"{key}: {path} is not a hark checkpoint (no model weights and config); "
                       "point it at a hark run's checkpoints/best.pt")]
    problems = []
    try:
        config = config_from_dict(ckpt["config"], f"{path} config")
    except TrainerError as exc:
        return None, [f"{key}: the config stored in {path} does not load: {exc}"]
    stored = ckpt.get("architecture", config.model.architecture)
    if configured and stored != configured:
        problems.append(f"{arch_key}: '{configured}' configured, but {path} holds a '{stored}' "
                        f"model; set {arch_key} = \"{stored}\" or point {key} at a {configured} run")
    features = ckpt.get("features")
    if features is None:
        problems.append(f"{key}: {path} records no feature settings (saved by an older hark); "
                        "retrain the teacher so its mel settings can be checked")
    else:
        mine = feature_settings()
        for name in sorted(set(mine) | set(features)):
            if features.get(name) != mine.get(name):
                problems.append(f"{key}: {path} was trained with {name} = {features.get(name)!r}, "
                                f"the student uses {mine.get(name)!r}; retrain the teacher with the "
                                "student's feature settings")
    if problems:
        return None, problems
    try:
        model = build_model(config.model)
        model.load_state_dict(ckpt["model"])
    except (TrainerError, RuntimeError) as exc:
        return None, [(f"{key}: {path}'s weights do not fit a '{stored}' model built from its own "
                       f"config ({str(exc).splitlines()[0][:200]}); retrain the teacher")]
    model.eval()
    model.requires_grad_(False)
    return Teacher(role, path, stored, model, config), []


def inspect_teachers(config: Config, build_model: Builder) -> tuple[list[Teacher], list[str]]:
    """The configured teachers (frozen) and every problem found, each naming its config key."""
    roles, problems = _roles(config.distill)
    teachers = []
    if roles:
        for role in roles:
            if not getattr(config.distill, f"{role}_model_path"):
                continue  # already reported by _roles
            teacher, found = _load(role, config.distill, build_model)
            problems += found
            if teacher is not None:
                teachers.append(teacher)
    return teachers, problems


def check_teachers(config: Config, build_model: Builder) -> list[str]:
    """Every teacher problem with its config key; empty when distillation can start."""
    return inspect_teachers(config, build_model)[1]


def load_teachers(config: Config, build_model: Builder) -> list[Teacher]:
    """The frozen teachers distill.mode asks for; a TrainerError listing all problems otherwise."""
    teachers, problems = inspect_teachers(config, build_model)
    if problems:
        raise TrainerError(f"{len(problems)} problem(s) with the distillation teachers:\n  "
                           + "\n  ".join(problems))
    return teachers
