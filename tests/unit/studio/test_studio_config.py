"""The Config panel's server side: the form schema covers every option of trainer/config.py,
problems come back keyed to their fields, and configs save and load as TOML in the workspace."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from studio import create_app
from studio.config_schema import (
    attribute_docs,
    build_schema,
    config_keys,
    literal_choices,
    schema_keys,
)
from studio.panels.config import parse_error, parse_problem
from trainer.config import (
    AUGMENTATIONS,
    PRECISIONS,
    SNR_SCHEDULES,
    TRAIN_DEVICES,
    Config,
    ModelConfig,
    config_from_dict,
    load_config,
)
from trainer.errors import TrainerError

TINY_MODEL = {"channels": [12, 12, 16], "strides": [1, 2], "kernel_size": 5}


@pytest.fixture
def workspace(tmp_path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def client(workspace):
    return create_app(workspace).test_client()


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory) -> Path:
    """A real (untrained) tcresnet checkpoint written by the training loop's own saver."""
    from trainer.loop import save_checkpoint
    from trainer.plugins import PluginManager
    config = Config(model=ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}))
    model = PluginManager().build_model(config.model)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = tmp_path_factory.mktemp("teacher") / "best.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=0, step=0,
                    config=config, best={"val_loss": 1.0, "epoch": 1})
    return path


def _fields() -> dict[str, dict]:
    return {f["key"]: f for group in build_schema()["groups"] for f in group["fields"]}


# -- schema ---------------------------------------------------------------------------------
def test_the_schema_covers_every_config_field_exactly_once():
    keys = [f["key"] for group in build_schema()["groups"] for f in group["fields"]]
    assert len(keys) == len(set(keys))
    assert set(keys) == config_keys() == schema_keys()
    assert {"distill.secondary_teacher_model_path", "train.use_compile", "augment.snr_end_db"} <= set(keys)


def test_fields_carry_group_type_default_choices_and_section():
    fields = _fields()
    defaults = Config()
    for key, spec in fields.items():
        group, _, name = key.rpartition(".")
        assert spec["group"] == (group or "general")
        value = getattr(getattr(defaults, group), name) if group else getattr(defaults, name)
        assert spec["default"] == (list(value) if isinstance(value, tuple) else value), key
    assert fields["augment.snr_schedule"]["choices"] == list(SNR_SCHEDULES)
    assert fields["train.device"]["choices"] == list(TRAIN_DEVICES)
    assert fields["train.precision"]["choices"] == list(PRECISIONS)
    assert fields["augment.noise_source"]["choices"] == ["background", "colored"]
    assert fields["augment.reverb_source"]["choices"] == ["rir", "generated"]
    assert "tcresnet" in fields["model.architecture"]["choices"]
    assert "tcresnet" in fields["distill.secondary_teacher_architecture"]["choices"]
    assert fields["distill.secondary_teacher_architecture"]["optional"]
    assert set(AUGMENTATIONS) <= set(fields["augment.chain"]["choices"])
    assert fields["augment.chain"]["type"] == "str_list"
    assert fields["augment.snr_start_db"]["type"] == "pair"
    assert fields["model.channels"]["type"] == "int_list"
    assert fields["train.use_compile"]["type"] == "bool"
    assert fields["train.gradient_checkpointing"]["section"] == "performance"
    assert fields["augment.snr_end_db"]["section"] == "snr_schedule"
    assert fields["distill.secondary_teacher_model_path"]["section"] == "teachers"


def test_help_is_the_attribute_docstring_from_the_source():
    fields = _fields()
    assert fields["augment.snr_start_db"]["help"] == "Easy: the first epoch's SNR range (dB)."
    assert fields["train.use_compile"]["help"].startswith("torch.compile the model")
    assert fields["train.use_compile"]["help"].endswith("logs a 'compile fallback' warning.")  # all lines
    assert fields["train.epochs"]["help"] == ""  # no docstring under it in trainer/config.py


@dataclass
class _Documented:
    first: int = 1
    """First's doc."""
    # a comment is not a docstring
    second: str = "x"
    third: float = 2.0
    """Third's doc,
    over two lines."""


def test_attribute_docs_reads_only_strings_right_under_a_field():
    assert attribute_docs(_Documented) == {"first": "First's doc.", "third": "Third's doc,\nover two lines."}


def test_inline_choices_come_from_the_validators_not_in_checks():
    found = literal_choices()
    assert found["augment.reverb_source"] == ("rir", "generated")
    assert found["distill.mode"][0] == "auto"


# -- problems -------------------------------------------------------------------------------
def test_problem_lines_map_to_fields():
    [entry] = parse_problem("train.lr: must be > 0, got -1.0", "value")
    assert entry == {"key": "train.lr", "field": "train.lr", "message": "must be > 0, got -1.0", "stage": "value"}
    [entry] = parse_problem("augment.snr_db[1]: expected float, got str 'x'", "structure")
    assert entry["field"] == "augment.snr_db" and entry["message"].startswith("value 2: expected float")
    both = parse_problem("augment.reverb_rt60_s and augment.speed_factor: must be > 0", "value")
    assert [e["field"] for e in both] == ["augment.reverb_rt60_s", "augment.speed_factor"]
    [unknown] = parse_problem("train.fast: unknown key (known: lr)", "structure")
    assert unknown["key"] == "train.fast" and unknown["field"] is None
    [loose] = parse_problem("something odd happened", "teacher")
    assert loose["key"] is None and loose["message"] == "something odd happened"


def test_a_loader_error_splits_into_one_entry_per_problem():
    with pytest.raises(TrainerError) as err:
        config_from_dict({"train": {"lr": "fast", "nope": 1}, "model": {"channels": [1, "a"]}}, "c", check=False)
    entries = parse_error(str(err.value), "structure")
    assert {e["key"] for e in entries} == {"train.lr", "train.nope", "model.channels[1]"}
    assert {e["field"] for e in entries} == {"train.lr", None, "model.channels"}


def test_validate_reports_each_stage_against_its_key(client, workspace):
    report = client.post("/api/config/validate", json={"config": {"train": {"lr": "fast"}}}).json
    assert not report["savable"] and not report["ok"]
    assert [(p["field"], p["stage"]) for p in report["problems"]] == [("train.lr", "structure")]

    report = client.post("/api/config/validate", json={"config": {
        "train": {"lr": -1.0}, "augment": {"chain": ["noise", "bogus"]},
        "distill": {"mode": "dual", "teacher_architecture": "tcresnet",
                    "teacher_model_path": "runs/t/checkpoints/best.pt"}}}).json
    by_field = {p["field"]: p for p in report["problems"]}
    assert report["savable"] and not report["ok"]
    assert by_field["train.lr"]["stage"] == "value"
    assert "bogus" in by_field["augment.chain"]["message"]
    # relative teacher paths are the workspace's (where `hark train` runs)
    assert str(workspace.resolve() / "runs/t/checkpoints/best.pt") in by_field["distill.teacher_model_path"]["message"]
    assert "dual mode needs both" in by_field["distill.secondary_teacher_model_path"]["message"]
    assert "required" in by_field["distill.secondary_teacher_architecture"]["message"]
    assert client.post("/api/config/validate", json={"config": "nope"}).status_code == 400


def test_dual_teachers_that_fit_pass_and_a_wrong_architecture_is_named(client, workspace, teacher_checkpoint):
    inside = workspace / "runs" / "teacher" / "checkpoints" / "best.pt"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(teacher_checkpoint.read_bytes())
    distill = {"mode": "dual", "teacher_architecture": "tcresnet", "teacher_model_path": str(inside),
               "secondary_teacher_architecture": "tcresnet", "secondary_teacher_model_path": str(inside)}
    report = client.post("/api/config/validate", json={"config": {"distill": distill}}).json
    assert report["ok"], report["problems"]
    assert [t["role"] for t in report["teachers"]] == ["teacher", "secondary_teacher"]
    assert report["teachers"][0]["parameters"] > 0

    wrong = {**distill, "secondary_teacher_architecture": "crnn"}
    report = client.post("/api/config/validate", json={"config": {"distill": wrong}}).json
    [problem] = report["problems"]
    assert problem["field"] == "distill.secondary_teacher_architecture" and "'tcresnet' model" in problem["message"]


def test_a_teacher_outside_the_roots_is_reported_and_never_opened(client, teacher_checkpoint):
    distill = {"mode": "single", "teacher_architecture": "tcresnet", "teacher_model_path": str(teacher_checkpoint)}
    [problem] = client.post("/api/config/validate", json={"config": {"distill": distill}}).json["problems"]
    assert problem["field"] == "distill.teacher_model_path" and "outside the studio's folders" in problem["message"]


# -- files ----------------------------------------------------------------------------------
def test_save_then_load_round_trips_through_toml(client, workspace):
    config = Config().to_dict()
    config["train"]["epochs"] = 3
    config["augment"]["snr_schedule"] = "cosine"
    config["model"]["channels"] = [12, 12, 16]
    config["model"]["strides"] = [1, 2]
    saved = client.post("/api/config/save", json={"name": "small", "config": config})
    assert saved.status_code == 200 and saved.json["ok"]
    path = workspace / "configs" / "small.toml"
    assert load_config(path).to_dict() == load_config(None, {"train.epochs": 3, "augment.snr_schedule": "cosine",
                                                             "model.channels": [12, 12, 16], "model.strides": [1, 2]}).to_dict()
    assert client.get("/api/config/list").json["configs"] == [{"name": "small", "file": "small.toml"}]
    loaded = client.get("/api/config/load?name=small").json
    assert loaded["config"] == tomllib.loads(path.read_text()) and loaded["ok"]


def test_save_refuses_what_train_could_not_load_but_keeps_drafts_with_warnings(client, workspace):
    refused = client.post("/api/config/save", json={"name": "bad", "config": {"train": {"epochs": "ten"}}})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_config"
    assert "train.epochs" in refused.json["error"]["message"]
    assert not (workspace / "configs" / "bad.toml").exists()

    draft = {"distill": {"teacher_architecture": "crnn", "teacher_model_path": "runs/later/checkpoints/best.pt"}}
    saved = client.post("/api/config/save", json={"name": "draft", "config": draft})
    assert saved.status_code == 200 and not saved.json["ok"]
    assert saved.json["problems"][0]["field"] == "distill.teacher_model_path"
    stored = tomllib.loads((workspace / "configs" / "draft.toml").read_text())
    assert stored["distill"]["teacher_model_path"] == str(workspace.resolve() / "runs/later/checkpoints/best.pt")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_bad_names_are_refused(client, workspace, name):
    response = client.post("/api/config/save", json={"name": name, "config": {}})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_name"
    assert client.get("/api/config/load", query_string={"name": name}).status_code == 400
    assert list((workspace / "configs").iterdir()) == []


def test_yaml_configs_load_and_their_names_are_not_shadowed(client, workspace):
    (workspace / "configs").mkdir(parents=True, exist_ok=True)
    (workspace / "configs" / "y.yaml").write_text("train:\n  epochs: 2\n  warp: 9\n")
    loaded = client.get("/api/config/load?name=y").json
    assert loaded["config"]["train"]["epochs"] == 2 and not loaded["savable"]
    assert [p["key"] for p in loaded["problems"]] == ["train.warp"]
    clash = client.post("/api/config/save", json={"name": "y", "config": {}})
    assert clash.status_code == 409
    assert client.get("/api/config/load?name=missing").status_code == 404
    (workspace / "configs" / "broken.toml").write_text("train = [")
    assert client.get("/api/config/load?name=broken").json["error"]["code"] == "bad_config_file"


def test_teacher_pickers_give_absolute_real_paths(client, workspace, teacher_checkpoint):
    run = workspace / "runs" / "t1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(teacher_checkpoint.read_bytes())
    (run / "config.toml").write_text('[model]\narchitecture = "tcresnet"\n')
    (workspace / "runs" / "untrained").mkdir()
    runs = client.get("/api/config/teachers").json["runs"]
    assert runs == [{"run": "t1", "path": str((run / "checkpoints" / "best.pt").resolve()), "architecture": "tcresnet"}]
    picked = client.get("/api/config/realpath?path=workspace/runs/t1/checkpoints/best.pt").json
    assert picked["path"] == runs[0]["path"]
    assert client.get("/api/config/realpath?path=workspace/runs/t1/config.toml").status_code == 400
    assert client.get("/api/config/realpath?path=workspace/../x.pt").status_code == 403



def test_the_cli_and_the_studio_run_one_validator(client, tmp_path):
    """`hark config validate` once printed OK for names only the studio checked."""
    from click.testing import CliRunner

    from trainer.cli import main
    bad = {"augment": {"chain": ["noise", "telepathy"]}, "model": {"architecture": "transformer9000"},
           "train": {"lr": -1.0}}
    path = tmp_path / "bad.toml"
    path.write_text('[augment]\nchain = ["noise", "telepathy"]\n[model]\narchitecture = "transformer9000"\n'
                    '[train]\nlr = -1.0\n')
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "3 problem(s)" in result.output, result.output
    cli_lines = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    studio = client.post("/api/config/validate", json={"config": bad}).json["problems"]
    assert {p["key"] for p in studio} == {"augment.chain", "model.architecture", "train.lr"}
    for problem in studio:  # the same words, keyed the same way
        assert f"{problem['key']}: {problem['message']}" in cli_lines
    assert any("unknown augmentation 'telepathy'" in line for line in cli_lines)
    assert any("unknown architecture 'transformer9000'" in line for line in cli_lines)
