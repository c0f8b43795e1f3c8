"""Export panel: turn a run's best checkpoint into the ONNX model folder the sentry and
the judge load, show its manifest, and hand it out as a zip or the manifest alone.

    POST /api/export                         {run}  -> starts the "export" job (`hark export runs/R`)
    GET  /api/export/manifest?run=R          the manifest, the folder's files and sizes
    GET  /api/export/download?run=R          R-export.zip (every file of runs/R/export)
    GET  /api/export/manifest.json?run=R     the manifest file alone

The export folder is runs/R/export (see studio.workspace).
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
from ..errors import NOT_FOUND, StudioError
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
        raise StudioError(f"{folder / MANIFEST_NAME}: {exc}; export the run again", code="bad_manifest") from exc


def _export_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.suffix not in PARTIAL_SUFFIXES)


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
    return jsonify({"run": folder.parent.name, "folder": f"runs/{folder.parent.name}/{EXPORT_FOLDER}",
                    "manifest": read_manifest(folder),
                    "files": [{"name": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
                              for p in _export_files(folder)]})


@bp.get("/download")
def download():
    """?run=R: the export folder as R-export.zip, built in memory (an export is about a MB)."""
    folder = export_folder(request.args.get("run"))
    run = folder.parent.name
    read_manifest(folder)  # refuse to hand out a folder the sentry would reject
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _export_files(folder):
            archive.write(path, f"{run}-export/{path.relative_to(folder).as_posix()}")
    buffer.seek(0)
    return send_file(buffer, mimetype="application/zip", as_attachment=True,
                     download_name=f"{run}-export.zip")


@bp.get("/manifest.json")
def manifest_file():
    """?run=R: the manifest.json file itself, as a download."""
    folder = export_folder(request.args.get("run"))
    return send_file(folder / MANIFEST_NAME, mimetype="application/json", as_attachment=True,
                     download_name=MANIFEST_NAME, max_age=0)
