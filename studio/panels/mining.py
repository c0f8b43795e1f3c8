"""Mining Queue panel (/api/mining): the background miner and the review queue.

The miner is `hark mine` itself, run as the studio's "mine" job on WORKSPACE/sessions/NAME.json;
pausing sends it SIGTERM (it commits and exits 75, the job turns "paused") and resuming runs
`hark mine ... --resume`. The queue reads and edits the same session files through the same
functions as `hark queue` (trainer.mining.queue), so the CLI and the browser see one queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request

from trainer.errors import TrainerError
from trainer.mining.session import (
    CONFIRMED,
    DISCARDED,
    FILE_SKIPPED,
    Session,
    list_sessions,
    load_session,
)

from ..context import get_studio
from ..errors import CONFLICT, NOT_FOUND, StudioError
from ..jobs import RUNNING_STATES, hark_argv
from ..workspace import check_name, named

bp = Blueprint("mining", __name__, url_prefix="/api/mining")

JOB_KIND = "mine"
SESSION_SUFFIX = ".json"
ACTIONS = {"hard_negative": (CONFIRMED, "hard_negative"), "positive": (CONFIRMED, "positive"),
           "discard": (DISCARDED, None)}
"""Review buttons -> (hit status, dataset label), as `hark queue confirm [--positive]` / `discard`."""
MAX_PICKED_PATHS = 256
"""Most files or folders one session may start from (a folder counts once, whatever it holds)."""


# ---------------------------------------------------------------------- helpers

def _name(value: Any, what: str) -> str:
    """check_name for a value from a JSON body, which may be a number or null."""
    return check_name(value if isinstance(value, str) else "", what)


def _session_path(name: str, *, must_exist: bool = True) -> Path:
    return named(get_studio().folder("sessions"), name, "session", suffix=SESSION_SUFFIX,
                 must_exist=must_exist)


def _load(name: str) -> Session:
    try:
        return load_session(_session_path(name))
    except TrainerError as exc:
        raise StudioError(str(exc), code="bad_session") from exc


def _mine_job(name: str | None = None):
    """The newest mine job (of session NAME when given), or None."""
    job = get_studio().jobs.current(JOB_KIND)
    if job is None or (name is not None and job.meta.get("session") != name):
        return None
    return job


def _api_path(path: str | Path) -> str | None:
    """PATH as the file browser names it, or None when it lies outside every root."""
    try:
        return get_studio().files.api_path(Path(path))
    except StudioError:
        return None


def _workspace_relative(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(get_studio().workspace))
    except ValueError:
        return path


def _state(name: str, session: Session) -> str:
    """What the panel calls the session: running, pausing, paused, complete, interrupted, new."""
    job = _mine_job(name)
    if job is not None and job.state in RUNNING_STATES:
        return "pausing" if job.state == "stopping" else "running"
    on_disk = session.data.get("state", "new")
    if on_disk == "running":  # its miner died without committing a pause (killed, crashed)
        return "interrupted"
    return on_disk


def _summary(name: str, session: Session) -> dict[str, Any]:
    """A session as the sessions list and the live progress show it."""
    counts = session.counts()
    wall_s = float(session.data.get("stats", {}).get("wall_s", 0.0))
    total_s = sum(f["duration_s"] for f in session.files if f["status"] != FILE_SKIPPED)
    state = _state(name, session)
    return {
        "name": name, "state": state, "wake_word": session.data["model"].get("wake_word"),
        "model": _workspace_relative(session.data["model"].get("dir")),
        "dataset": _workspace_relative(session.data.get("dataset")),
        "threshold": session.data["settings"].get("threshold"),
        **counts,
        "total_s": round(total_s, 3),
        "hours_done": round(counts["audio_s"] / 3600, 4),
        "hours_total": round(total_s / 3600, 4),
        "realtime_factor": round(counts["audio_s"] / wall_s, 1) if wall_s > 0 else None,
        "complete": session.complete,
        "resumable": state in ("paused", "interrupted", "new") and not session.complete,
        "updated": session.data.get("updated"),
    }


def _threshold(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = -1.0
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise StudioError(f"mining threshold {value!r}: give a number from 0 to 1, or leave it "
                          "empty for the default (0.6 x the model's threshold)", code="bad_threshold")
    return threshold


def _export_dir(run: str) -> Path:
    folder = get_studio().folder("runs") / check_name(run, "run") / "export"
    if not (folder / "manifest.json").is_file():
        raise StudioError(f"run {run!r} has no export (runs/{run}/export/manifest.json); export it "
                          "in the Export panel first", status=NOT_FOUND, code="no_export")
    return folder


def _picked(paths: Any) -> list[Path]:
    """The recordings picked in the browser: real paths, each confined to a browsable root."""
    if not isinstance(paths, list) or not paths:
        raise StudioError("pick at least one recording or folder of recordings in the file browser",
                          code="no_paths")
    if len(paths) > MAX_PICKED_PATHS:
        raise StudioError(f"{len(paths)} paths picked; pick at most {MAX_PICKED_PATHS} (pick their "
                          "folder instead)", code="too_many_paths")
    real: list[Path] = []
    for path in paths:
        if not isinstance(path, str):
            raise StudioError(f"picked path {path!r} is not a path string", code="bad_path")
        resolved = get_studio().files.resolve(path)
        if resolved not in real:
            real.append(resolved)
    return real


# ---------------------------------------------------------------------- endpoints

@bp.get("/sessions")
def sessions():
    """Every session in WORKSPACE/sessions with its state and progress; the current mine job."""
    studio = get_studio()
    rows = []
    for path, session, error in list_sessions(studio.folder("sessions")):
        if session is None:
            rows.append({"name": path.stem, "state": "corrupted", "error": error})
        else:
            rows.append(_summary(path.stem, session))
    job = studio.jobs.current(JOB_KIND)
    return jsonify({"sessions": rows, "job": studio.jobs.describe(job, lines=5) if job else None})


@bp.get("/defaults")
def defaults():
    """?run=R: the mining threshold `hark mine` would use for R's export."""
    from sentry.errors import SentryError
    from sentry.manifest import load_manifest
    from trainer.mining import DEFAULT_THRESHOLD_RATIO

    folder = _export_dir(request.args.get("run", ""))
    try:
        manifest = load_manifest(folder)
    except SentryError as exc:
        raise StudioError(str(exc), code="bad_export") from exc
    return jsonify({"threshold": round(manifest.threshold * DEFAULT_THRESHOLD_RATIO, 4),
                    "model_threshold": manifest.threshold, "ratio": DEFAULT_THRESHOLD_RATIO,
                    "wake_word": manifest.wake_word})


@bp.post("/start")
def start():
    """{name, run, dataset, paths: [api paths], threshold?}: a new session, mined in the background."""
    body = request.get_json(silent=True) or {}
    name = _name(body.get("name"), "session")
    path = _session_path(name, must_exist=False)
    if path.exists():
        raise StudioError(f"a session named {name!r} already exists; resume it from the sessions "
                          "list or choose another name", status=CONFLICT, code="session_exists")
    run = _name(body.get("run"), "run")
    _export_dir(run)
    dataset = _name(body.get("dataset"), "dataset")
    named(get_studio().folder("data"), dataset, "dataset")
    threshold = _threshold(body.get("threshold"))
    recordings = _picked(body.get("paths"))
    argv = ["mine", f"sessions/{name}{SESSION_SUFFIX}", "--model", f"runs/{run}/export",
            "--dataset", f"data/{dataset}"]
    if threshold is not None:
        argv += ["--threshold", repr(threshold)]
    job = get_studio().jobs.start(JOB_KIND, hark_argv(*argv, "--", *map(str, recordings)),
                                  title=f"mining {name}", meta={"session": name, "run": run,
                                                                "dataset": dataset})
    return jsonify({"job": get_studio().jobs.describe(job)})


@bp.post("/pause")
def pause():
    """SIGTERM to the running miner: it commits at the next block and exits 75 (paused)."""
    studio = get_studio()
    job = studio.jobs.current(JOB_KIND)
    if job is None or job.state not in RUNNING_STATES:
        raise StudioError("no mining session is running", status=CONFLICT, code="not_running")
    # Before its first progress bar the miner is still loading and has no signal handler yet:
    # a SIGTERM then would kill it instead of pausing it.
    if studio.jobs.describe(job, lines=0)["progress"] is None:
        raise StudioError("the miner is still starting (loading the model); pause it in a moment",
                          status=CONFLICT, code="starting")
    return jsonify({"job": studio.jobs.describe(studio.jobs.stop(JOB_KIND))})


@bp.post("/resume")
def resume():
    """{name}: continue a paused or interrupted session exactly where it stopped."""
    name = _name((request.get_json(silent=True) or {}).get("name"), "session")
    session = _load(name)
    if session.complete:
        raise StudioError(f"session {name!r} is complete: every file was mined; review its hits",
                          status=CONFLICT, code="complete")
    job = get_studio().jobs.start(JOB_KIND, hark_argv("mine", f"sessions/{name}{SESSION_SUFFIX}", "--resume"),
                                  title=f"mining {name} (resumed)", meta={"session": name})
    return jsonify({"job": get_studio().jobs.describe(job)})


@bp.get("/sessions/<name>")
def session_detail(name: str):
    """One session's progress and its hits (highest score first), each with a playable clip."""
    session = _load(name)
    from trainer.mining.queue import hit_rows

    hits = []
    for row in sorted(hit_rows(session), key=lambda r: (-r["score"], r["id"])):
        hits.append({"id": row["id"], "status": row["status"], "label": row.get("label"),
                     "score": row["score"], "offset_s": row["offset_s"],
                     "source": _api_path(row["source"]) or Path(row["source"]).name,
                     "clip": _api_path(row["clip_path"]),
                     "dataset_path": _workspace_relative(row.get("dataset_path"))})
    return jsonify({"session": _summary(name, session), "hits": hits})


@bp.post("/sessions/<name>/review")
def review(name: str):
    """{ids: [..], action: hard_negative | positive | discard}: `hark queue confirm/discard`."""
    from trainer.mining.queue import review as review_hits

    body = request.get_json(silent=True) or {}
    action = body.get("action")
    if action not in ACTIONS:
        raise StudioError(f"action {action!r}: choose one of {', '.join(ACTIONS)}", code="bad_action")
    ids = body.get("ids")
    # type() rather than isinstance: JSON true is a bool, and a bool is an int in Python.
    if not isinstance(ids, list) or not ids or not all(type(i) is int and i > 0 for i in ids):
        raise StudioError("select at least one hit (ids: a list of hit numbers)", code="no_hits")
    path = _load(name).path
    status, label = ACTIONS[action]
    try:
        changed = review_hits(path, tuple(str(i) for i in ids), status=status, label=label)
    except TrainerError as exc:
        raise StudioError(str(exc), code="review_failed") from exc
    return jsonify({"changed": [{"id": h["id"], "status": h["status"], "label": h["label"],
                                 "dataset_path": _workspace_relative(h["dataset_path"])}
                                for h in changed]})
