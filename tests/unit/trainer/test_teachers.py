"""Teacher checkpoints: safe loading, freezing, and every compatibility problem named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trainer.cli import main
from trainer.config import load_config
from trainer.errors import TrainerError
from trainer.loop import save_checkpoint
from trainer.plugins import DISABLE_AUTOLOAD_ENV, PluginManager
from trainer.teachers import check_teachers, feature_settings, load_teachers

TINY = {
    "crnn": {"model.architecture": "crnn", "model.channels": [8, 8], "model.strides": [2],
             "model.kernel_size": 3, "model.rnn_hidden": 8, "model.num_layers": 1},
    "conformer": {"model.architecture": "conformer", "model.d_model": 16, "model.num_layers": 1,
                  "model.heads": 2, "model.ffn_dim": 32, "model.kernel_size": 3},
}


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")


def build_model(model_config):
    """The architectures of a fresh manager (what a run's manager hands the teacher checks)."""
    return PluginManager(autoload=False).build_model(model_config)


def write_teacher(path: Path, arch: str, *, features: dict | None = None, drop_features: bool = False,
                  **model) -> Path:
    """A real checkpoint as trainer/loop.py writes it, of an untrained tiny model."""
    config = load_config(None, {**TINY[arch], **{f"model.{k}": v for k, v in model.items()}})
    net = PluginManager(autoload=False).build_model(config.model)
    optimizer = torch.optim.AdamW(net.parameters())
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=10)
    save_checkpoint(path, model=net, optimizer=optimizer, scheduler=scheduler, epoch=0, step=1,
                    config=config, best={"val_loss": 1.0, "epoch": 1})
    if features is not None or drop_features:
        ckpt = torch.load(path, weights_only=True)
        if drop_features:
            del ckpt["features"]
        else:
            ckpt["features"].update(features)
        torch.save(ckpt, path)
    return path


def student(**distill):
    return load_config(None, {f"distill.{k}": v for k, v in distill.items()})


def test_every_checkpoint_records_the_feature_settings(tmp_path):
    ckpt = torch.load(write_teacher(tmp_path / "t.pt", "crnn"), weights_only=True)
    assert ckpt["features"] == feature_settings()
    assert ckpt["features"]["n_mels"] == 40 and ckpt["features"]["sample_rate"] == 16_000


@pytest.mark.parametrize("arch", ["crnn", "conformer"])
def test_a_good_teacher_loads_frozen(tmp_path, arch):
    path = write_teacher(tmp_path / "t.pt", arch)
    [teacher] = load_teachers(student(teacher_architecture=arch, teacher_model_path=str(path)), build_model)
    assert teacher.architecture == arch and teacher.role == "teacher" and teacher.parameters > 0
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    reference = torch.load(path, weights_only=True)["model"]
    for name, value in teacher.model.state_dict().items():
        assert torch.equal(value, reference[name]), name


def test_no_teacher_configured_is_no_problem():
    assert check_teachers(student(), build_model) == []


def test_missing_teacher_file(tmp_path):
    problems = check_teachers(student(teacher_architecture="crnn",
                                      teacher_model_path=str(tmp_path / "absent.pt")), build_model)
    assert len(problems) == 1
    assert problems[0].startswith("distill.teacher_model_path:") and "no such file" in problems[0]


def test_corrupt_teacher_file(tmp_path):
    path = write_teacher(tmp_path / "corrupt.pt", "crnn")
    path.write_bytes(path.read_bytes()[:2000])  # a copy cut off mid-transfer
    [problem] = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert problem.startswith("distill.teacher_model_path:") and "not a readable checkpoint" in problem


class Payload:
    """An arbitrary object: what an unsafe pickle could carry."""


def test_a_checkpoint_holding_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "pickle.pt"
    torch.save({"model": {}, "config": {}, "payload": Payload()}, path)
    [problem] = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert "not a readable checkpoint" in problem  # weights_only=True would not unpickle it


def test_a_file_that_is_not_a_hark_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    [problem] = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert "not a hark checkpoint" in problem


def test_architecture_mismatch_names_the_architecture_key(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn")
    [problem] = check_teachers(student(teacher_architecture="conformer", teacher_model_path=str(path)), build_model)
    assert problem.startswith("distill.teacher_architecture:")
    assert "'conformer' configured" in problem and "'crnn' model" in problem


def test_teacher_trained_on_other_mel_settings(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn", features={"n_mels": 64, "hop_samples": 320})
    problems = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert len(problems) == 2
    assert all(p.startswith("distill.teacher_model_path:") for p in problems)
    assert any("n_mels = 64" in p and "uses 40" in p for p in problems)
    assert any("hop_samples = 320" in p for p in problems)


def test_teacher_without_recorded_feature_settings(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn", drop_features=True)
    [problem] = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert "records no feature settings" in problem


def test_weights_that_do_not_fit_their_own_config(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn")
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["model"]["rnn_hidden"] = 12  # the weights were saved with 8
    torch.save(ckpt, path)
    [problem] = check_teachers(student(teacher_architecture="crnn", teacher_model_path=str(path)), build_model)
    assert problem.startswith("distill.teacher_model_path:") and "do not fit" in problem


def test_dual_mode_with_one_teacher(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn")
    problems = check_teachers(student(mode="dual", teacher_architecture="crnn", teacher_model_path=str(path)),
                              build_model)
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["distill.secondary_teacher_architecture", "distill.secondary_teacher_model_path"]
    assert any("dual mode needs both teachers" in p for p in problems)


def test_a_secondary_teacher_alone_is_not_silently_dual(tmp_path):
    path = write_teacher(tmp_path / "t.pt", "crnn")
    problems = check_teachers(student(secondary_teacher_architecture="crnn",
                                      secondary_teacher_model_path=str(path)), build_model)
    assert any(p.startswith("distill.teacher_model_path: required") for p in problems)


@pytest.mark.parametrize("mode, key", [("none", "distill.teacher_model_path"),
                                       ("single", "distill.secondary_teacher_model_path")])
def test_a_teacher_the_mode_would_ignore_is_an_error(tmp_path, mode, key):
    path = str(write_teacher(tmp_path / "t.pt", "crnn"))
    problems = check_teachers(student(mode=mode, teacher_architecture="crnn", teacher_model_path=path,
                                      secondary_teacher_architecture="crnn",
                                      secondary_teacher_model_path=path), build_model)
    assert [p for p in problems if p.startswith(key)], problems
    assert any("would be ignored" in p for p in problems)


def test_all_problems_are_reported_together(tmp_path):
    bad_mels = write_teacher(tmp_path / "t.pt", "crnn", features={"n_mels": 64})
    config = student(mode="dual", teacher_architecture="conformer", teacher_model_path=str(bad_mels),
                     secondary_teacher_architecture="crnn",
                     secondary_teacher_model_path=str(tmp_path / "absent.pt"))
    with pytest.raises(TrainerError) as info:
        load_teachers(config, build_model)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "distill.teacher_architecture:" in message and "n_mels = 64" in message
    assert "distill.secondary_teacher_model_path:" in message and "no such file" in message


def test_the_facade_refuses_a_stray_teacher_instead_of_ignoring_it(tmp_path):
    config = student(mode="none", teacher_architecture="crnn", teacher_model_path=str(tmp_path / "x.pt"))
    with pytest.raises(TrainerError, match="distill.teacher_model_path: set, but distill.mode is 'none'"):
        PluginManager(autoload=False).build_distiller(config)
    assert PluginManager(autoload=False).build_distiller(student()) is None


def test_distill_value_checks():
    with pytest.raises(TrainerError) as info:
        student(alpha=1.5, temperature=0.0, mode="triple", temperature_schedule="step", secondary_weight=-0.1)
    message = str(info.value)
    for key in ("distill.alpha", "distill.temperature:", "distill.mode", "distill.temperature_schedule",
                "distill.secondary_weight"):
        assert key in message, key


def test_teacher_model_value_checks():
    with pytest.raises(TrainerError) as info:
        load_config(None, {"model.architecture": "conformer", "model.d_model": 30, "model.heads": 4,
                           "model.kernel_size": 8, "model.rnn_hidden": 0})
    message = str(info.value)
    assert "model.d_model: 30 must divide by model.heads" in message
    assert "model.kernel_size" in message and "model.rnn_hidden: must be >= 1" in message


def test_config_validate_command(tmp_path):
    good = write_teacher(tmp_path / "good.pt", "crnn")
    ok = tmp_path / "ok.toml"
    ok.write_text(f'[distill]\nteacher_architecture = "crnn"\nteacher_model_path = "{good}"\n')
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(ok)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "teacher crnn" in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text(f'[distill]\nmode = "dual"\nalpha = 2.0\nteacher_architecture = "conformer"\n'
                   f'teacher_model_path = "{good}"\n')
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for key in ("distill.alpha:", "distill.teacher_architecture:", "distill.secondary_teacher_model_path:",
                "distill.secondary_teacher_architecture:"):
        assert key in result.output, key
    assert "4 problem(s)" in result.output


def test_config_validate_reports_unknown_keys(tmp_path):
    bad = tmp_path / "typo.toml"
    bad.write_text('[distill]\ntemprature = 3.0\n')
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(bad)])
    assert result.exit_code == 1 and "distill.temprature: unknown key" in result.output


@pytest.mark.parametrize("command", [["config"], ["config", "validate"]])
def test_config_help(command):
    result = CliRunner().invoke(main, command + ["--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
