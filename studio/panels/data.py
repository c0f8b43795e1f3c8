"""Data panel: synthesize a phrase's dataset, import audio folders, check a dataset's health
and list its files to listen to.

    GET  /api/data/defaults                          the synthesis form's defaults (the CLI's)
    POST /api/data/create   {name}                   an empty dataset (class folders) to import into
    POST /api/data/synth    {phrase, name, positives, negatives, neighbours, eval, eval_minutes,
                             seed, licence_clean, overwrite}
                                                     -> the "synth" job (`hark synth`)
    POST /api/data/import   {dataset, label, paths}  -> the "import" job (python -m studio.importer)
    GET  /api/data/health?dataset=NAME               studio.health.dataset_health of data/NAME
    GET  /api/data/samples?dataset=NAME&label=L&offset=0&limit=20
                                                     a page of that class's files (API paths for /api/audio,
                                                     sizes, durations from the headers)

Form problems answer 400 with code "invalid_<field>" so the page can put the message next to
that field. Datasets live in WORKSPACE/data/NAME (studio.workspace).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import soundfile as sf
from flask import Blueprint, jsonify, request

from trainer.dataset import AUDIO_SUFFIXES, LABELS
from trainer.errors import TrainerError

from ..context import get_studio
from ..errors import CONFLICT, StudioError
from ..health import dataset_health
from ..jobs import hark_argv
from ..workspace import check_name, named, slug

bp = Blueprint("data", __name__, url_prefix="/api/data")

MAX_PHRASE_CHARS = 100
MAX_CLIPS = 100_000
"""Most clips of one kind a synthesis may ask for (the default is 3000)."""
EVAL_MINUTES_RANGE = (0.5, 600.0)
"""Minutes of negative audio per eval set: the CLI's minimum, and ten hours."""
MAX_IMPORT_SOURCES = 100
"""Files or folders one import may name."""
IMPORT_FOLDER = "imported"
"""Imports land in data/NAME/<class>/imported/, apart from synthesized files."""
SAMPLES_PAGE = 20
MAX_SAMPLES_PAGE = 200


def _dataset(name: str | None, *, must_exist: bool = True) -> Path:
    return named(get_studio().folder("data"), name or "", "dataset", must_exist=must_exist)


def _invalid(field: str, message: str) -> StudioError:
    return StudioError(message, code=f"invalid_{field}")


def _int(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = body.get(field, default)
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid(field, f"{field}: expected a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _invalid(field, f"{field}: expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise _invalid(field, f"{field}: must be between {low} and {high}, got {number}")
    return number


def synth_defaults() -> dict[str, Any]:
    """`hark synth`'s defaults (trainer.synth.defaults, which the command reads too), so the
    form and the command never disagree."""
    from trainer.provenance import ENGINES
    from trainer.synth import defaults
    from trainer.synth.build import SynthConfig, available_engines
    config = SynthConfig()
    return {"engines": available_engines(config), "positives": config.n_positive, "negatives": config.n_negative_speech,
            "neighbours": config.n_neighbour, "eval": defaults.WITH_EVAL,
            "eval_minutes": defaults.EVAL_MINUTES, "seed": defaults.SEED,
            "licence_clean": config.licence_clean,
            "licence_clean_engines": available_engines(SynthConfig(licence_clean=True)),
            "licences": {name: {"name": e.name, "licence": e.licence, "commercial_output": e.commercial_output}
                         for name, e in ENGINES.items()},
            "eval_minutes_range": list(EVAL_MINUTES_RANGE), "max_clips": MAX_CLIPS}


@bp.get("/defaults")
def defaults():
    return jsonify({**synth_defaults(), "labels": list(LABELS)})


@bp.post("/create")
def create():
    """data/NAME with empty class folders, for datasets made of imported recordings."""
    try:
        folder = _dataset(check_name(str((request.get_json(silent=True) or {}).get("name") or ""),
                                     "dataset"), must_exist=False)
    except StudioError as exc:
        raise _invalid("name", exc.message) from None
    if folder.exists():
        raise StudioError(f"dataset {folder.name!r} already exists; pick it in the list or choose "
                          "another name", status=CONFLICT, code="invalid_name")
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
    return jsonify({"dataset": folder.name})


@bp.post("/synth")
def synth():
    """Start `hark synth PHRASE --out data/NAME ...` as the synth job."""
    from trainer.synth.text import normalise_phrase
    body = request.get_json(silent=True) or {}
    phrase = str(body.get("phrase") or "").strip()
    if len(phrase) > MAX_PHRASE_CHARS:
        raise _invalid("phrase", f"the phrase is {len(phrase)} characters; keep it under {MAX_PHRASE_CHARS}")
    try:
        normalise_phrase(phrase)
    except TrainerError as exc:
        raise _invalid("phrase", str(exc)) from None
    try:
        name = check_name(str(body.get("name") or "").strip() or slug(phrase), "dataset")
    except StudioError as exc:
        raise _invalid("name", exc.message) from None
    found = synth_defaults()
    counts = {field: _int(body, field, found[field], 1, MAX_CLIPS)
              for field in ("positives", "negatives", "neighbours")}
    seed = _int(body, "seed", found["seed"], 0, 2**31 - 1)
    with_eval = bool(body.get("eval", found["eval"]))
    minutes = found["eval_minutes"]
    if with_eval:
        try:
            minutes = float(body.get("eval_minutes", minutes))
        except (TypeError, ValueError):
            raise _invalid("eval_minutes", "eval minutes: expected a number") from None
    low, high = EVAL_MINUTES_RANGE
    if not low <= minutes <= high:
        raise _invalid("eval_minutes", f"eval minutes: must be between {low} and {high}, got {minutes:g}")
    overwrite = bool(body.get("overwrite"))
    licence_clean = body.get("licence_clean", found["licence_clean"])
    if not isinstance(licence_clean, bool):
        raise _invalid("licence_clean", f"licence-clean: expected true or false, got {licence_clean!r}")
    out = _dataset(name, must_exist=False)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise StudioError(f"dataset {name!r} already exists: choose another name, or tick Overwrite to "
                          "replace its class folders (files imported there are deleted too)",
                          status=CONFLICT, code="invalid_name")
    argv = ["synth", "--out", f"data/{name}", "--seed", seed,
            *(arg for field, n in counts.items() for arg in (f"--{field}", n)),
            *(["--eval", "--eval-minutes", f"{minutes:g}"] if with_eval else ["--no-eval"]),
            *(["--licence-clean"] if licence_clean else []),
            *(["--overwrite"] if overwrite else []), "--", phrase]
    job = get_studio().jobs.start("synth", hark_argv(*argv), title=f"synthesize {phrase!r} into {name}"
                                  f"{' (licence-clean)' if licence_clean else ''}",
                                  meta={"dataset": name, "phrase": phrase, "licence_clean": licence_clean})
    return jsonify({"job": get_studio().jobs.describe(job)})


@bp.post("/import")
def import_audio():
    """Copy the chosen files/folders (API paths inside the roots) into data/NAME/LABEL/imported."""
    studio = get_studio()
    body = request.get_json(silent=True) or {}
    dataset = _dataset(body.get("dataset"))
    label = body.get("label")
    if label not in LABELS:
        raise _invalid("label", f"class {label!r}: choose one of {', '.join(LABELS)}")
    paths = body.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise _invalid("paths", "choose at least one file or folder to import in the file browser")
    if len(paths) > MAX_IMPORT_SOURCES:
        raise _invalid("paths", f"{len(paths)} sources: import at most {MAX_IMPORT_SOURCES} at a time "
                       "(pick their parent folder instead)")
    sources = [studio.files.resolve(p) for p in paths]  # 403/404 outside the roots
    dest = dataset / label / IMPORT_FOLDER
    argv = [sys.executable, "-m", "studio.importer", "--dest", str(dest), "--", *map(str, sources)]
    what = paths[0] if len(paths) == 1 else f"{len(paths)} sources"
    job = studio.jobs.start("import", argv, title=f"import {what} into {dataset.name}/{label}",
                            meta={"dataset": dataset.name, "label": label, "paths": paths})
    return jsonify({"job": studio.jobs.describe(job)})


@bp.get("/health")
def health():
    dataset = _dataset(request.args.get("dataset"))
    return jsonify({"dataset": dataset.name, **dataset_health(dataset)})


@bp.get("/samples")
def samples():
    """A page of LABEL's audio files in dataset NAME, sorted by path."""
    dataset = _dataset(request.args.get("dataset"))
    label = request.args.get("label", LABELS[0])
    if label not in LABELS:
        raise _invalid("label", f"class {label!r}: choose one of {', '.join(LABELS)}")
    offset = _int(dict(request.args), "offset", 0, 0, 10**9)
    limit = _int(dict(request.args), "limit", SAMPLES_PAGE, 1, MAX_SAMPLES_PAGE)
    folder = dataset / label
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
    page = [{"name": p.relative_to(folder).as_posix(), "path": _playable(p), "bytes": p.stat().st_size,
             "seconds": _seconds(p)} for p in files[offset:offset + limit]]
    return jsonify({"dataset": dataset.name, "label": label, "total": len(files), "offset": offset,
                    "limit": limit, "files": page})


def _seconds(path: Path) -> float | None:
    """PATH's duration from its header (seconds); None when it cannot be read as audio."""
    try:
        return round(sf.info(str(path)).duration, 3)
    except (RuntimeError, OSError, ValueError):  # sf.LibsndfileError is a RuntimeError
        return None


def _playable(path: Path) -> str | None:
    """PATH as /api/audio names it; None for a symlink out of the browsable roots (not served)."""
    try:
        return get_studio().files.api_path(path)
    except StudioError:
        return None
