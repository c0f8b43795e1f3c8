"""What every panel uses: the studio's state, background jobs, the confined file browser
and audio playback."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from .context import get_studio
from .errors import NOT_FOUND, StudioError
from .files import AUDIO_SUFFIXES

bp = Blueprint("core", __name__, url_prefix="/api")

AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}


@bp.get("/state")
def state():
    studio = get_studio()
    return jsonify({"workspace": str(studio.workspace), "roots": studio.files.names(),
                    "jobs": {kind: studio.jobs.describe(job, lines=5) for kind in _kinds()
                             if (job := studio.jobs.current(kind)) is not None}})


def _kinds() -> list[str]:
    return sorted({job.kind for job in get_studio().jobs.jobs.values()})


@bp.get("/jobs/<kind>")
def job_of_kind(kind: str):
    """KIND's newest job with progress and log tail; {"job": null} when there was none."""
    studio = get_studio()
    job = studio.jobs.current(kind)
    return jsonify({"job": studio.jobs.describe(job) if job else None})


@bp.post("/jobs/<kind>/stop")
def stop_job(kind: str):
    studio = get_studio()
    return jsonify({"job": studio.jobs.describe(studio.jobs.stop(kind))})


@bp.get("/files")
def list_files():
    """?path=<root>/<relative>: that folder's entries; no path: the roots."""
    studio = get_studio()
    path = request.args.get("path", "")
    if not path.strip("/"):
        return jsonify({"path": "", "entries": [{"name": n, "path": n, "is_dir": True, "size": 0}
                                                for n in studio.files.names()]})
    return jsonify({"path": path, "entries": [e.__dict__ for e in studio.files.list(path)]})


@bp.get("/audio")
def audio():
    """?path=<root>/<relative>: an audio file inside the roots, for the page's <audio>."""
    real = get_studio().files.resolve(request.args.get("path", ""))
    if not real.is_file() or real.suffix.lower() not in AUDIO_SUFFIXES:
        raise StudioError(f"{request.args.get('path')!r} is not an audio file", status=NOT_FOUND,
                          code="not_audio")
    return send_file(real, mimetype=AUDIO_TYPES[real.suffix.lower()], conditional=True)


@bp.get("/datasets")
def datasets():
    from .workspace import list_datasets
    return jsonify({"datasets": list_datasets(get_studio().folder("data"))})


@bp.get("/runs")
def runs():
    from .workspace import list_runs
    return jsonify({"runs": list_runs(get_studio().folder("runs"))})
