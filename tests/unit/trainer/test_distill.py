"""The "kd" distiller: temperature schedules, the loss it computes, dual weighting, and that
gradients reach the student only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from plugins.distill import KnowledgeDistiller, soft_loss, temperature_at
from trainer.config import load_config
from trainer.loop import _loss, save_checkpoint
from trainer.plugins import DISABLE_AUTOLOAD_ENV, DistillBatch, DistillContext, PluginManager

TEACHERS = {
    "crnn": {"model.architecture": "crnn", "model.channels": [8, 8], "model.strides": [2],
             "model.kernel_size": 3, "model.rnn_hidden": 8, "model.num_layers": 1, "model.dropout": 0.5},
    "conformer": {"model.architecture": "conformer", "model.d_model": 16, "model.num_layers": 1,
                  "model.heads": 2, "model.ffn_dim": 32, "model.kernel_size": 3, "model.dropout": 0.5},
}
STUDENT = {"model.channels": [8, 8, 8], "model.strides": [1, 2], "model.kernel_size": 3}


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory) -> dict[str, Path]:
    """Two real teacher checkpoints with different (seeded random) weights."""
    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for seed, (arch, overrides) in enumerate(TEACHERS.items()):
        torch.manual_seed(seed)
        config = load_config(None, overrides)
        net = PluginManager(autoload=False).build_model(config.model)
        optimizer = torch.optim.AdamW(net.parameters())
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=10)
        paths[arch] = folder / f"{arch}.pt"
        save_checkpoint(paths[arch], model=net, optimizer=optimizer, scheduler=scheduler, epoch=0,
                        step=1, config=config, best={"val_loss": 1.0, "epoch": 1})
    return paths


def _config(teacher_paths, dual: bool = False, **distill):
    overrides = {**STUDENT, "distill.teacher_architecture": "conformer",
                 "distill.teacher_model_path": str(teacher_paths["conformer"])}
    if dual:
        overrides |= {"distill.secondary_teacher_architecture": "crnn",
                      "distill.secondary_teacher_model_path": str(teacher_paths["crnn"])}
    return load_config(None, {**overrides, **{f"distill.{k}": v for k, v in distill.items()}})


def _batch(seed: int = 0, size: int = 6, epoch: int = 0, total: int = 4) -> DistillBatch:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(size, 148, 40, generator=gen)
    labels = (torch.arange(size) % 2).float()
    return DistillBatch(torch.zeros(size, 24_000), feats, labels, epoch, total)


def _kl(student_logits, target, t):
    """Bernoulli KL(target || sigmoid(s / t)) * t^2, written out independently."""
    q = torch.sigmoid(student_logits / t)
    return t * t * (target * (target / q).log() + (1 - target) * ((1 - target) / (1 - q)).log()).mean()


def test_temperature_schedules():
    assert temperature_at("constant", 3.0, 9.0, 9.0, 5, 10) == 3.0
    assert temperature_at("linear", 1.0, 4.0, 1.0, 0, 4) == 4.0
    assert temperature_at("linear", 1.0, 4.0, 1.0, 3, 4) == 1.0
    assert temperature_at("linear", 1.0, 4.0, 1.0, 1, 4) == pytest.approx(3.0)
    assert temperature_at("cosine", 1.0, 4.0, 2.0, 1, 3) == pytest.approx(3.0)  # halfway
    assert temperature_at("cosine", 1.0, 4.0, 2.0, 0, 3) == 4.0
    assert temperature_at("linear", 1.0, 4.0, 2.0, 0, 1) == 2.0  # one epoch: the end value


def test_soft_loss_is_zero_when_the_student_matches_and_scales_with_t_squared():
    logits = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    for t in (1.0, 2.0, 5.0):
        assert soft_loss(logits, torch.sigmoid(logits / t), t).item() == pytest.approx(0.0, abs=1e-5)
    target = torch.tensor([0.9, 0.2, 0.5, 0.7])
    for t in (1.0, 3.0):
        assert soft_loss(logits, target, t).item() == pytest.approx(_kl(logits, target, t).item(), rel=1e-4)


def test_the_facade_builds_the_configured_distiller(teacher_paths):
    distiller = PluginManager(autoload=False).build_distiller(_config(teacher_paths, temperature=3.0, alpha=0.25))
    assert isinstance(distiller, KnowledgeDistiller)
    assert [t.architecture for t in distiller.teachers] == ["conformer"]
    assert distiller.alpha == 0.25 and distiller.temperature(0, 4) == 3.0


@pytest.mark.parametrize("schedule, epoch, expected_t", [("constant", 2, 3.0), ("linear", 0, 5.0),
                                                          ("linear", 3, 1.0)])
def test_single_teacher_loss_uses_the_configured_values(teacher_paths, schedule, epoch, expected_t):
    config = _config(teacher_paths, temperature=3.0, alpha=0.3, temperature_schedule=schedule,
                     temperature_start=5.0, temperature_end=1.0)
    pm = PluginManager(autoload=False)
    distiller = pm.build_distiller(config)
    batch = _batch(epoch=epoch, total=4)
    student = torch.randn(len(batch.labels))
    hard = _loss(student, batch.labels, config.train.label_smoothing)
    teacher = distiller.teachers[0].model
    with torch.no_grad():
        target = torch.sigmoid(teacher(batch.features) / expected_t)
    expected = 0.7 * hard + 0.3 * _kl(student, target, expected_t)
    assert distiller(student, hard, batch).item() == pytest.approx(expected.item(), rel=1e-4)


def test_dual_teachers_are_weighted_by_secondary_weight(teacher_paths):
    batch = _batch(seed=3)
    student = torch.randn(len(batch.labels))
    hard = torch.tensor(0.5)

    def loss(config):
        return PluginManager(autoload=False).build_distiller(config)(student, hard, batch).item()

    conformer_only = loss(_config(teacher_paths))
    crnn_only = loss(load_config(None, {**STUDENT, "distill.teacher_architecture": "crnn",
                                        "distill.teacher_model_path": str(teacher_paths["crnn"])}))
    assert conformer_only != pytest.approx(crnn_only)
    assert loss(_config(teacher_paths, dual=True, secondary_weight=0.0)) == pytest.approx(conformer_only, rel=1e-5)
    assert loss(_config(teacher_paths, dual=True, secondary_weight=1.0)) == pytest.approx(crnn_only, rel=1e-5)

    distiller = PluginManager(autoload=False).build_distiller(_config(teacher_paths, dual=True, secondary_weight=0.25))
    with torch.no_grad():
        p1, p2 = (torch.sigmoid(t.model(batch.features) / 2.0) for t in distiller.teachers)
    assert torch.allclose(distiller.soft_targets(batch.features, 2.0), 0.75 * p1 + 0.25 * p2, atol=1e-6)


def test_gradients_reach_every_student_parameter_and_no_teacher(teacher_paths):
    config = _config(teacher_paths, dual=True)
    pm = PluginManager(autoload=False)
    torch.manual_seed(0)
    student = pm.build_model(config.model)
    distiller = pm.build_distiller(config)
    for teacher in distiller.teachers:
        teacher.model.train()  # even if someone flips a teacher to training, it must not learn
    batch = _batch(seed=1)
    logits = student(batch.features)
    loss = distiller(logits, _loss(logits, batch.labels, 0.05), batch)
    loss.backward()
    for name, param in student.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for teacher in distiller.teachers:
        assert not teacher.model.training  # put back into eval: dropout off
        for name, param in teacher.model.named_parameters():
            assert param.grad is None and not param.requires_grad, (teacher.role, name)


def test_teacher_targets_are_deterministic_despite_dropout(teacher_paths):
    distiller = PluginManager(autoload=False).build_distiller(_config(teacher_paths, dual=True))
    feats = _batch().features
    first = distiller.soft_targets(feats, 2.0)
    assert torch.equal(first, distiller.soft_targets(feats, 2.0))
    assert not first.requires_grad


def test_soft_loss_alone_moves_the_student_toward_the_teacher(teacher_paths):
    """alpha = 1: a few steps on the soft loss reduce the student-teacher disagreement."""
    config = _config(teacher_paths, alpha=1.0, temperature=1.0)
    pm = PluginManager(autoload=False)
    torch.manual_seed(0)
    student = pm.build_model(config.model)
    distiller = pm.build_distiller(config)
    batch = _batch(seed=5, size=8)
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-2)
    losses = []
    for _ in range(8):
        loss = distiller(student(batch.features), torch.tensor(0.0), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert math.isfinite(losses[-1])


def test_a_blocked_distill_plugin_is_an_error_not_a_no_op(teacher_paths):
    pm = PluginManager(autoload=False, blocked={"distill"})
    with pytest.raises(Exception, match="distill.distiller: unknown distiller 'kd'"):
        pm.build_distiller(_config(teacher_paths))


def test_distill_context_builds_models_by_name():
    context = DistillContext(build_model=PluginManager(autoload=False).build_model)
    model = context.build_model(load_config(None, TEACHERS["crnn"]).model)
    assert model(torch.zeros(2, 148, 40)).shape == (2,)
