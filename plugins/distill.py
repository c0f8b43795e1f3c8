"""Built-in distiller "kd": hard labels plus temperature-softened targets from one or two teachers.

The sentry is a binary classifier, so a teacher's soft target is sigmoid(z_t / T) (a two-class
softmax at temperature T). With two teachers the target is their weighted mean probability
(``distill.secondary_weight`` to the second). The soft loss is the Bernoulli KL divergence
KL(p_t || sigmoid(z_s / T)), scaled by T^2 so its gradients keep their size as T changes
(Hinton et al., 2015); the step's loss is (1 - alpha) * hard + alpha * soft.

Teachers see exactly the student's input (the augmented log-mel), run in eval mode under
no_grad, and have requires_grad off: nothing of theirs reaches the optimizer.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from trainer import hookimpl
from trainer.config import Config
from trainer.hookspecs import DistillBatch, DistillContext
from trainer.teachers import Teacher, load_teachers

log = logging.getLogger(__name__)

PROBABILITY_EPS = 1e-6
"""Keeps log(p) finite for teachers that are (numerically) certain."""


def temperature_at(schedule: str, constant: float, start: float, end: float, epoch: int,
                   total_epochs: int) -> float:
    """The softmax temperature for a 0-based epoch: ``constant``, or moved from ``start`` at the
    first epoch to ``end`` at the last, linearly or along a half cosine."""
    if schedule == "constant":
        return constant
    progress = epoch / (total_epochs - 1) if total_epochs > 1 else 1.0
    if schedule == "cosine":
        progress = (1 - math.cos(math.pi * progress)) / 2
    return start + (end - start) * progress


def soft_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean Bernoulli KL(target || sigmoid(student_logits / T)); zero when they agree."""
    p = target.clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    cross = nn.functional.binary_cross_entropy_with_logits(student_logits / temperature, p,
                                                           reduction="none")
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    return temperature ** 2 * (cross - entropy).mean()


class KnowledgeDistiller:
    """The "kd" distiller (see the module docstring); built once per training run."""

    def __init__(self, config: Config, context: DistillContext) -> None:
        d = config.distill
        self.teachers: list[Teacher] = load_teachers(config, context.build_model)
        self.weights = [1.0] if len(self.teachers) == 1 else [1 - d.secondary_weight, d.secondary_weight]
        self.alpha = d.alpha
        self._schedule = (d.temperature_schedule, d.temperature, d.temperature_start, d.temperature_end)
        # The run's log is where a user (and the studio's test) sees which teachers were used.
        log.info("distillation (%s): %s", d.resolved_mode(), "; ".join(
            f"{t.role} {t.architecture} from {t.path} ({t.parameters} parameters, weight {w:g})"
            for t, w in zip(self.teachers, self.weights)))

    def temperature(self, epoch: int, total_epochs: int) -> float:
        return temperature_at(*self._schedule, epoch, total_epochs)

    @torch.no_grad()
    def soft_targets(self, features: torch.Tensor, temperature: float) -> torch.Tensor:
        """Weighted mean teacher probability at ``temperature``, [B]; never carries gradient."""
        target = torch.zeros(features.shape[0], device=features.device)
        for teacher, weight in zip(self.teachers, self.weights):
            model = teacher.model
            if next(model.parameters()).device != features.device:
                model.to(features.device)
            model.eval()  # stays in eval even if someone called .train() on it
            target += weight * torch.sigmoid(model(features).float() / temperature)
        return target

    def __call__(self, student_logits: torch.Tensor, hard_loss: torch.Tensor,
                 batch: DistillBatch) -> torch.Tensor:
        temperature = self.temperature(batch.epoch, batch.total_epochs)
        target = self.soft_targets(batch.features, temperature)
        return (1 - self.alpha) * hard_loss + self.alpha * soft_loss(student_logits, target, temperature)


@hookimpl
def register_distillers(register) -> None:
    register("kd", KnowledgeDistiller)
