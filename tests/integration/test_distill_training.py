"""Distillation end to end: tiny CRNN and Conformer teachers trained and exported by the same
trainer, then students distilled from one and from two of them; the configured values are
seen inside the training step, and a bad teacher stops the run before its first step."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from plugins.distill import KnowledgeDistiller
from trainer import hookimpl
from trainer.cli import main
from trainer.errors import TrainerError
from trainer.loop import BEST, LAST, load_checkpoint, train
from trainer.plugins import DISABLE_AUTOLOAD_ENV, PluginManager

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEACHERS = {
    "crnn": {"model.architecture": "crnn", "model.channels": [16, 24, 24], "model.strides": [2, 2],
             "model.kernel_size": 5, "model.rnn_hidden": 16, "model.num_layers": 1},
    "conformer": {"model.architecture": "conformer", "model.d_model": 24, "model.num_layers": 2,
                  "model.heads": 2, "model.ffn_dim": 48, "model.kernel_size": 7},
}

SHORT = {"data.negatives_per_positive": 1.0}
"""Fewer windows per epoch: these runs prove plumbing, not accuracy."""


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")


@pytest.fixture(scope="module")
def teachers(tiny_dataset, make_config, tmp_path_factory):
    """Checkpoint paths of two tiny teachers, each trained one epoch on the tiny dataset."""
    root = tmp_path_factory.mktemp("teachers")
    paths = {}
    for arch, overrides in TEACHERS.items():
        train(make_config(tiny_dataset, **{**overrides, **SHORT, "train.epochs": 1}), root / arch, progress=False)
        paths[arch] = root / arch / BEST
    return paths


class Spy:
    """Wraps the built-in "kd" distiller as "spy_kd" and records what each step computed,
    next to the loss recomputed here from the configured values and the teachers' raw logits."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.loop_losses: list[float] = []
        self.inner: KnowledgeDistiller | None = None

    @hookimpl
    def register_distillers(self, register):
        def factory(config, context):
            self.inner = inner = KnowledgeDistiller(config, context)
            d = config.distill

            def distill(student_logits, hard_loss, batch):
                out = inner(student_logits, hard_loss, batch)
                progress = batch.epoch / (batch.total_epochs - 1) if batch.total_epochs > 1 else 1.0
                t = d.temperature if d.temperature_schedule == "constant" else (
                    d.temperature_start + (d.temperature_end - d.temperature_start) * progress)
                with torch.no_grad():
                    probs = [torch.sigmoid(teacher.model(batch.features) / t) for teacher in inner.teachers]
                    target = probs[0] if len(probs) == 1 else (
                        (1 - d.secondary_weight) * probs[0] + d.secondary_weight * probs[1])
                    q = torch.sigmoid(student_logits.detach() / t)
                    kl = (target * (target / q).log() + (1 - target) * ((1 - target) / (1 - q)).log()).mean()
                    expected = (1 - d.alpha) * hard_loss.detach() + d.alpha * t * t * kl
                self.steps.append({"epoch": batch.epoch, "temperature": t, "loss": out.item(),
                                   "expected": expected.item(), "teachers": len(probs),
                                   "grad": out.requires_grad})
                return out
            return distill
        register("spy_kd", factory)

    @hookimpl
    def on_batch_end(self, loss):
        self.loop_losses.append(loss)


def _run(config, run_dir):
    spy = Spy()
    pm = PluginManager(autoload=False)
    pm.register(spy, "spy")
    result = train(config, run_dir, progress=False, plugins=pm)
    return spy, result


def test_single_teacher_distillation_uses_the_configured_values(tiny_dataset, make_config, teachers, tmp_path):
    config = make_config(tiny_dataset, **{
        **SHORT, "train.epochs": 1, "distill.distiller": "spy_kd", "distill.teacher_architecture": "conformer",
        "distill.teacher_model_path": str(teachers["conformer"]), "distill.temperature": 3.5,
        "distill.alpha": 0.7})
    spy, result = _run(config, tmp_path / "student")
    assert result.epochs_run == 1 and spy.steps
    assert all(s["teachers"] == 1 and s["temperature"] == 3.5 and s["grad"] for s in spy.steps)
    for step in spy.steps:
        assert step["loss"] == pytest.approx(step["expected"], rel=1e-4, abs=1e-6)
    # The loss the loop optimised (and reported) is the distiller's, step for step.
    assert spy.loop_losses == pytest.approx([s["loss"] for s in spy.steps], rel=1e-6)
    # The teacher only taught: frozen, gradient-free, and its weights untouched by the run.
    [teacher] = spy.inner.teachers
    assert not teacher.model.training
    saved = load_checkpoint(teachers["conformer"])["model"]
    for name, param in teacher.model.named_parameters():
        assert param.grad is None and not param.requires_grad, name
        assert torch.equal(param, saved[name]), name
    stored = load_checkpoint(tmp_path / "student" / LAST)
    assert stored["config"]["distill"]["alpha"] == 0.7 and stored["architecture"] == "tcresnet"


def test_dual_teacher_distillation_with_a_temperature_schedule(tiny_dataset, make_config, teachers, tmp_path):
    config = make_config(tiny_dataset, **{
        **SHORT, "train.epochs": 2, "distill.distiller": "spy_kd", "distill.mode": "dual",
        "distill.teacher_architecture": "crnn", "distill.teacher_model_path": str(teachers["crnn"]),
        "distill.secondary_teacher_architecture": "conformer",
        "distill.secondary_teacher_model_path": str(teachers["conformer"]),
        "distill.secondary_weight": 0.3, "distill.alpha": 0.4, "distill.temperature_schedule": "linear",
        "distill.temperature_start": 3.0, "distill.temperature_end": 1.5})
    spy, _ = _run(config, tmp_path / "student")
    assert {s["epoch"]: s["temperature"] for s in spy.steps} == {0: 3.0, 1: 1.5}
    assert all(s["teachers"] == 2 for s in spy.steps)
    for step in spy.steps:
        assert step["loss"] == pytest.approx(step["expected"], rel=1e-4, abs=1e-6)
    assert spy.loop_losses == pytest.approx([s["loss"] for s in spy.steps], rel=1e-6)
    assert [t.architecture for t in spy.inner.teachers] == ["crnn", "conformer"]
    for teacher in spy.inner.teachers:
        assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())


@pytest.mark.parametrize("problem", ["corrupt", "other_mels", "dual_with_one"])
def test_a_bad_teacher_stops_training_before_the_first_step(tiny_dataset, make_config, teachers, tmp_path, problem):
    path = tmp_path / "teacher.pt"
    ckpt = load_checkpoint(teachers["crnn"])
    overrides = {"train.epochs": 1, "distill.distiller": "spy_kd", "distill.teacher_architecture": "crnn",
                 "distill.teacher_model_path": str(path)}
    if problem == "corrupt":
        path.write_bytes(teachers["crnn"].read_bytes()[:4096])
        key, words = "distill.teacher_model_path", "not a readable checkpoint"
    elif problem == "other_mels":
        ckpt["features"]["n_mels"] = 80
        torch.save(ckpt, path)
        key, words = "distill.teacher_model_path", "n_mels = 80"
    else:
        torch.save(ckpt, path)
        overrides["distill.mode"] = "dual"
        key, words = "distill.secondary_teacher_model_path", "dual mode needs both teachers"
    spy = Spy()
    pm = PluginManager(autoload=False)
    pm.register(spy, "spy")
    with pytest.raises(TrainerError) as info:
        train(make_config(tiny_dataset, **overrides), tmp_path / "student", progress=False, plugins=pm)
    assert f"{key}:" in str(info.value) and words in str(info.value)
    assert spy.steps == [] and spy.loop_losses == []
    assert not (tmp_path / "student" / LAST).exists()


@pytest.mark.parametrize("arch", ["crnn", "conformer"])
def test_teachers_export_like_any_model(teachers, tmp_path, arch):
    """`hark export` on a teacher run: every graph passes the parity check, so a teacher can
    serve as the judge's model."""
    run_dir = teachers[arch].parent.parent
    out = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"] == arch
    for graph, report in manifest["metrics"]["parity"].items():
        assert report["max_abs_diff"] <= (0.25 if graph == "model_int8" else 1e-2), graph
