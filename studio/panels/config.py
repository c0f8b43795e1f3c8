"""Config panel: every training option as a form (studio/config_schema.py), checked inline
with the trainer's own checks, saved to and loaded from WORKSPACE/configs/NAME.toml.

Checks run in three stages, each problem tied to its dotted key so the page shows it next
to the field:

- structure: trainer.config's strict loader (unknown keys, wrong types). A config with these
  cannot be loaded by `hark train` at all, so it cannot be saved either.
- value: trainer.validate.check_config (ranges, known names, the plugin registries), the
  one validator `hark config validate` runs too.
- teacher: trainer.teachers.inspect_teachers (files exist and load, architecture and feature
  settings match, dual mode has both) -- what `hark config validate` runs.

Value and teacher problems do not stop a save (a draft may name a teacher that is still
training), but the Training panel refuses to start a run until they are fixed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request

from trainer.config import Config, config_from_dict, read_config_mapping, save_config
from trainer.errors import TrainerError
from trainer.validate import check_config as check_values

from ..context import Studio, get_studio
from ..config_schema import build_schema, plugin_names, schema_keys
from ..errors import CONFLICT, NOT_FOUND, StudioError
from ..workspace import check_name

bp = Blueprint("config", __name__, url_prefix="/api/config")

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")
"""Config files the panel lists and loads, in order of preference for one name; saves are TOML."""
TEACHER_ROLES = ("teacher", "secondary_teacher")
CHECKPOINT_SUFFIX = ".pt"
BEST_CHECKPOINT = Path("checkpoints") / "best.pt"
BLOCKING_STAGE = "structure"
"""Problems of this stage make a config unsavable (`hark train` could not load it)."""

_PROBLEM = re.compile(r"^(?P<keys>[A-Za-z_][\w.\[\]]*(?: and [A-Za-z_][\w.\[\]]*)*): (?P<message>.*)$", re.DOTALL)
_INDEX = re.compile(r"\[(\d+)\]$")


@dataclasses.dataclass
class Report:
    """A config's checks: the Config when it loads, every problem, the teachers found."""

    config: Config | None
    problems: list[dict[str, Any]]
    teachers: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def savable(self) -> bool:
        return self.config is not None and not any(p["stage"] == BLOCKING_STAGE for p in self.problems)

    @property
    def trainable(self) -> bool:
        return self.config is not None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"problems": self.problems, "ok": self.trainable, "savable": self.savable,
                "teachers": self.teachers}


# -- problems -------------------------------------------------------------------------------
def parse_problem(line: str, stage: str) -> list[dict[str, Any]]:
    """One trainer message ("train.lr: must be > 0, got -1") -> entries keyed to the form's
    fields. "augment.snr_db[1]: ..." belongs to augment.snr_db; "a and b: ..." to both; a key
    the form lacks (an unknown key) or no key at all leaves "field" null (shown above the form)."""
    known = schema_keys()
    match = _PROBLEM.match(line.strip())
    if not match:
        return [{"key": None, "field": None, "message": line.strip(), "stage": stage}]
    out = []
    for path in match.group("keys").split(" and "):
        key, message = path, match.group("message")
        index = _INDEX.search(path)
        if index:
            key = path[:index.start()]
            message = f"value {int(index.group(1)) + 1}: {message}"
        out.append({"key": path, "field": key if key in known else None, "message": message, "stage": stage})
    return out


def parse_error(text: str, stage: str) -> list[dict[str, Any]]:
    """A TrainerError from config_from_dict ("SOURCE: N problem(s):\\n  a: ...\\n  b: ...")."""
    lines = text.split("\n")
    items = [line for line in lines[1:] if line.strip()] if len(lines) > 1 else lines
    return [entry for line in items for entry in parse_problem(line, stage)]


def absolute_teachers(config: Config, workspace: Path) -> Config:
    """Teacher paths as absolute real paths (relative ones are relative to the workspace,
    where `hark train` runs), so what is checked is what is saved and trained with."""
    changes = {}
    for role in TEACHER_ROLES:
        value = getattr(config.distill, f"{role}_model_path")
        if value.strip():
            path = Path(value.strip()).expanduser()
            changes[f"{role}_model_path"] = str((workspace / path if not path.is_absolute() else path).resolve())
    return dataclasses.replace(config, distill=dataclasses.replace(config.distill, **changes))


def _confinement_problems(config: Config, studio: Studio) -> tuple[list[str], Config]:
    """Teacher files outside the browsable roots are reported, never opened (the studio only
    touches files inside its roots); returns the config with those paths blanked for loading."""
    problems, blank = [], {}
    for role in TEACHER_ROLES:
        value = getattr(config.distill, f"{role}_model_path")
        if not value:
            continue
        try:
            studio.files.api_path(Path(value))
        except StudioError:
            problems.append(f"distill.{role}_model_path: {value} is outside the studio's folders "
                            f"({', '.join(studio.files.names())}); copy the checkpoint into the workspace "
                            "or start `hark studio --root NAME=FOLDER`")
            blank[f"{role}_model_path"] = ""
    return problems, dataclasses.replace(config, distill=dataclasses.replace(config.distill, **blank))


def check_config(data: Any, studio: Studio) -> Report:
    """Every check of a config given as a nested dict (see the module docstring)."""
    if not isinstance(data, dict):
        raise StudioError("send the config as a JSON object: {\"config\": {...}}", code="bad_config")
    try:
        config = config_from_dict(data, "config", check=False)
    except TrainerError as exc:
        return Report(None, parse_error(str(exc), BLOCKING_STAGE))
    config = absolute_teachers(config, studio.workspace)
    problems = [e for line in check_values(config, plugin_names(studio.plugins)) for e in parse_problem(line, "value")]
    outside, loadable = _confinement_problems(config, studio)
    outside_entries = [e for line in outside for e in parse_problem(line, "teacher")]
    problems += outside_entries
    try:
        from trainer.teachers import inspect_teachers
        found, teacher_problems = inspect_teachers(loadable, studio.plugins().build_model)
    except TrainerError as exc:  # the plugins themselves failed to load
        found, teacher_problems = [], [str(exc)]
    # A blanked (outside) path would be reported again as "required": keep the first message.
    reported = {p["key"] for p in outside_entries}
    for line in teacher_problems:
        problems += [e for e in parse_problem(line, "teacher") if e["key"] not in reported]
    teachers = [{"role": t.role, "architecture": t.architecture, "parameters": t.parameters,
                 "path": str(t.path)} for t in found]
    return Report(config, problems, teachers)


# -- files ----------------------------------------------------------------------------------
def config_file(folder: Path, name: str) -> Path:
    """configs/NAME.toml (or .yaml / .yml), which must exist."""
    name = check_name(name, "config")
    for suffix in CONFIG_SUFFIXES:
        if (folder / (name + suffix)).is_file():
            return folder / (name + suffix)
    raise StudioError(f"no config named {name!r} in {folder}; save one in the Config panel first",
                      status=NOT_FOUND, code="no_such_config")


def list_configs(folder: Path) -> list[dict[str, str]]:
    seen: dict[str, str] = {}
    for suffix in CONFIG_SUFFIXES:
        for path in sorted(folder.glob(f"*{suffix}")):
            seen.setdefault(path.stem, path.name)
    return [{"name": name, "file": file} for name, file in sorted(seen.items())]


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a TOML or YAML file; StudioError when it does not parse."""
    try:
        return read_config_mapping(path)
    except TrainerError as exc:
        raise StudioError(f"{exc}; fix the file or delete it", code="bad_config_file") from exc


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """GIVEN over DEFAULTS, keys the form knows only (unknown ones come back as problems)."""
    out = {}
    for key, value in defaults.items():
        if isinstance(value, dict):
            out[key] = _merge(value, given.get(key) if isinstance(given.get(key), dict) else {})
        else:
            out[key] = given.get(key, value)
    return out


# -- routes ---------------------------------------------------------------------------------
def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise StudioError("send a JSON object body", code="bad_request")
    return body


@bp.get("/schema")
def schema():
    return jsonify(build_schema(get_studio().plugins))


@bp.post("/validate")
def validate_config():
    """{config: nested dict} -> {problems: [{key, field, message, stage}], ok, savable, teachers}."""
    return jsonify(check_config(_body().get("config"), get_studio()).to_dict())


@bp.get("/list")
def list_saved():
    return jsonify({"configs": list_configs(get_studio().folder("configs"))})


@bp.get("/load")
def load():
    """?name=NAME -> {name, file, config (over the defaults), problems, ok, savable, teachers}."""
    studio = get_studio()
    path = config_file(studio.folder("configs"), request.args.get("name", ""))
    data = read_config_file(path)
    report = check_config(data, studio)
    config = report.config.to_dict() if report.config else _merge(Config().to_dict(), data)
    return jsonify({"name": path.stem, "file": path.name, "config": config, **report.to_dict()})


@bp.post("/save")
def save():
    """{name, config}: write configs/NAME.toml; refused (400) while the config has structure
    problems, saved with the value and teacher problems listed otherwise."""
    studio = get_studio()
    body = _body()
    name = check_name(body.get("name"), "config")
    folder = studio.folder("configs")
    for suffix in CONFIG_SUFFIXES[1:]:
        if (folder / (name + suffix)).exists():
            raise StudioError(f"configs/{name}{suffix} exists (YAML); choose another name, the studio "
                              "saves TOML", status=CONFLICT, code="name_taken")
    report = check_config(body.get("config"), studio)
    if not report.savable:
        listed = "; ".join(f"{p['key'] or ''}: {p['message']}" for p in report.problems)
        raise StudioError(f"not saved: `hark train` could not load this config ({listed})",
                          code="invalid_config")
    path = folder / f"{name}.toml"
    save_config(report.config, path)
    return jsonify({"name": name, "file": path.name, "path": str(path), **report.to_dict()})


@bp.get("/teachers")
def teacher_runs():
    """Workspace runs with a best checkpoint: {runs: [{run, path (absolute), architecture}]}."""
    runs = []
    for folder in sorted(p for p in get_studio().folder("runs").iterdir() if p.is_dir()):
        checkpoint = folder / BEST_CHECKPOINT
        if not checkpoint.is_file():
            continue
        architecture = None
        try:
            stored = tomllib.loads((folder / "config.toml").read_text())
            architecture = stored.get("model", {}).get("architecture")
        except (OSError, tomllib.TOMLDecodeError):
            pass  # the checkpoint itself says; validation reads it
        runs.append({"run": folder.name, "path": str(checkpoint.resolve()), "architecture": architecture})
    return jsonify({"runs": runs})


@bp.get("/realpath")
def realpath():
    """?path=<root>/<relative> (a file-browser pick) -> {path: the absolute real path} of a .pt."""
    real = get_studio().files.resolve(request.args.get("path", ""))
    if not real.is_file() or real.suffix != CHECKPOINT_SUFFIX:
        raise StudioError(f"{request.args.get('path')!r} is not a checkpoint file (*.pt)", code="not_checkpoint")
    return jsonify({"path": str(real)})
