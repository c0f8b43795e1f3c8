"""Export panel: turn a run's best checkpoint into the ONNX model folder the sentry and
the judge load, show its manifest, and hand it out as a zip or the manifest alone.

    POST /api/export                         {run}  -> starts the "export" job (`hark export runs/R`)
    GET  /api/export/manifest?run=R          the manifest, the folder's files and sizes
    GET  /api/export/download?run=R          R-export.zip (every file of runs/R/export)
    GET  /api/export/manifest.json?run=R     the manifest file alone

The export folder is runs/R/export (see studio.workspace). Only what really lies in it is
handed out: a symlink in it that leads out of the folder (which `hark export` never writes)
makes these requests a 403 rather than a zip of whatever it points at.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request, send_file

from sentry.errors import SentryError
from sentry.manifest import MANIFEST_NAME, load_manifest

from ..context import get_studio
from ..errors import FORBIDDEN, NOT_FOUND, StudioError
from ..files import within
from ..jobs import hark_argv
from ..workspace import named

bp = Blueprint("export", __name__, url_prefix="/api/export")

EXPORT_FOLDER = "export"
"""Where `hark export RUN` writes by default, inside the run folder."""
CHECKPOINT = Path("checkpoints") / "best.pt"
"""The checkpoint `hark export` reads."""
PARTIAL_SUFFIXES = (".tmp",)
"""Files a writer is still replacing (atomic writes); never zipped."""


def run_folder(run: str | None) -> Path:
    """WORKSPACE/runs/RUN, which must exist (StudioError 404 otherwise)."""
    return named(get_studio().folder("runs"), run or "", "run")


def export_folder(run: str | None) -> Path:
    """runs/RUN/export, which must hold a manifest; StudioError 404 says how to make one."""
    folder = run_folder(run) / EXPORT_FOLDER
    if not (folder / MANIFEST_NAME).is_file():
        raise StudioError(f"run {run!r} has no exported model yet: export it in the Export panel "
                          f"(or run `hark export runs/{run}`)", status=NOT_FOUND, code="not_exported")
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an export folder as a dict, checked by sentry's loader."""
    try:
        load_manifest(folder)  # validates fields and that the listed files exist
        return json.loads((folder / MANIFEST_NAME).read_text())
    except (SentryError, OSError, ValueError) as exc:
        shown = f"runs/{folder.parent.name}/{EXPORT_FOLDER}"  # as the page names it, not the real path
        raise StudioError(f"{shown}/{MANIFEST_NAME}: {str(exc).replace(str(folder), shown)}; export the run "
                          "again", code="bad_manifest") from exc


def _confined(folder: Path, path: Path) -> Path:
    """PATH, when its real path lies inside FOLDER's and FOLDER inside the studio's roots."""
    real_folder = folder.resolve()
    get_studio().files.api_path(real_folder)  # 403 when runs/R itself leads out of the roots
    if not within(path.resolve(), real_folder):
        raise StudioError(f"runs/{folder.parent.name}/{EXPORT_FOLDER}/{path.relative_to(folder).as_posix()} "
                          "is a symlink leading out of the export folder; it is not handed out "
                          f"(export the run again: `hark export runs/{folder.parent.name}`)",
                          status=FORBIDDEN, code="outside_roots")
    return path


def _export_files(folder: Path) -> list[Path]:
    """The files to list and zip; StudioError (403) if any entry leads out of FOLDER."""
    _confined(folder, folder)  # runs/R itself must lie inside the roots
    files = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.suffix in PARTIAL_SUFFIXES:
            continue
        if path.is_symlink():
            _confined(folder, path)
        if path.is_file():
            files.append(path)
    return files


@bp.post("")
def start_export():
    """Body {run}: export that run's best checkpoint as the "export" background job."""
    body = request.get_json(silent=True) or {}
    run = body.get("run")
    folder = run_folder(run)
    if not (folder / CHECKPOINT).is_file():
        raise StudioError(f"run {run!r} has no {CHECKPOINT} yet: train it first (Training panel)",
                          code="no_checkpoint")
    studio = get_studio()
    job = studio.jobs.start("export", hark_argv("export", f"runs/{folder.name}"),
                            title=f"export {folder.name}", meta={"run": folder.name})
    return jsonify({"job": studio.jobs.describe(job)})


@bp.get("/manifest")
def manifest():
    """?run=R: {"run", "manifest", "files": [{name, size}], "folder"}."""
    folder = export_folder(request.args.get("run"))
    files = _export_files(folder)  # first: refuse before reading what a symlink points at
    return jsonify({"run": folder.parent.name, "folder": f"runs/{folder.parent.name}/{EXPORT_FOLDER}",
                    "manifest": read_manifest(folder),
                    "files": [{"name": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
                              for p in files]})


@bp.get("/download")
def download():
    """?run=R: the export folder as R-export.zip, built in memory (an export is about a MB)."""
    folder = export_folder(request.args.get("run"))
    run = folder.parent.name
    files = _export_files(folder)
    read_manifest(folder)  # refuse to hand out a folder the sentry would reject
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, f"{run}-export/{path.relative_to(folder).as_posix()}")
    buffer.seek(0)
    return send_file(buffer, mimetype="application/zip", as_attachment=True,
                     download_name=f"{run}-export.zip")


@bp.get("/manifest.json")
def manifest_file():
    """?run=R: the manifest.json file itself, as a download."""
    folder = export_folder(request.args.get("run"))
    return send_file(_confined(folder, folder / MANIFEST_NAME), mimetype="application/json",
                     as_attachment=True, download_name=MANIFEST_NAME, max_age=0)
