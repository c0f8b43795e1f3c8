"""Training panel: start, stop and resume `hark train` as the studio's "train" job, and follow
a run's per-epoch metrics (runs/RUN/metrics.jsonl) for the live charts.

The job is a separate process (studio.jobs), so closing the tab does not stop it; the page
finds it again through jobs.current("train"), whose meta names the run. The loop writes a
checkpoint (runs/RUN/checkpoints/last.pt) at the end of every epoch, so Stop (SIGINT, a clean
exit 130) loses the epoch in progress and Resume continues after the last completed one.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request

from ..context import get_studio
from ..errors import CONFLICT, StudioError
from ..jobs import RUNNING_STATES, hark_argv
from ..workspace import check_name, named
from .config import check_config, config_file, read_config_file

bp = Blueprint("train", __name__, url_prefix="/api/train")

JOB_KIND = "train"
RUN_CONFIG = "config.toml"
METRICS = "metrics.jsonl"
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"
# The loop's per-epoch tqdm bar is labelled "epoch K/N".
_EPOCH_BAR = re.compile(r"epoch (\d+)/(\d+)")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per finished epoch; a line cut short by a concurrent write is skipped."""
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def run_epochs(run_dir: Path) -> int | None:
    """train.epochs of the run's resolved config (written when the run starts)."""
    try:
        return int(tomllib.loads((run_dir / RUN_CONFIG).read_text())["train"]["epochs"])
    except (OSError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError):
        return None


def overall_progress(job: dict[str, Any] | None, metrics: list[dict[str, Any]], epochs: int | None,
                     now: float | None = None) -> dict[str, Any] | None:
    """The whole run's progress: {epoch, epochs, percent, eta_s}. The bar of the epoch in
    progress (job["progress"]) adds its fraction; the ETA extrapolates this job's elapsed time
    over the epochs it has done (startup included, so early estimates run long)."""
    if not epochs:
        return None
    done = len(metrics)
    fraction = 0.0
    bar = (job or {}).get("progress")
    if bar:
        match = _EPOCH_BAR.search(bar.get("line", ""))
        if match and int(match.group(1)) > done:
            fraction = bar["percent"] / 100
    result = {"epoch": min(done + 1, epochs), "epochs": epochs, "done": done,
              "percent": round(100 * min(1.0, (done + fraction) / epochs), 1), "eta_s": None}
    if job and job["state"] in RUNNING_STATES:
        progressed = done - job["meta"].get("epochs_before", 0) + fraction
        elapsed = (now or time.time()) - job["started"]
        if progressed > 0:
            result["eta_s"] = elapsed * (epochs - done - fraction) / progressed
    return result


def list_train_runs(runs: Path, running: str | None = None) -> list[dict[str, Any]]:
    """The run folders under RUNS with their epochs; RUNNING names the run a train job is
    training now (not resumable: it is still going)."""
    out = []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        done, epochs = len(read_metrics(folder)), run_epochs(folder)
        complete = epochs is not None and done >= epochs
        now = folder.name == running
        out.append({"name": folder.name, "epochs_done": done, "epochs": epochs, "complete": complete,
                    "running": now, "resumable": (folder / LAST_CHECKPOINT).is_file() and not complete and not now})
    return out


@bp.get("/runs")
def runs():
    studio = get_studio()
    job = studio.jobs.current(JOB_KIND)
    running = job.meta.get("run") if job is not None and job.state in RUNNING_STATES else None
    return jsonify({"runs": list_train_runs(studio.folder("runs"), running)})


@bp.post("/start")
def start():
    """{config: saved name or "" (defaults), dataset, run, resume: bool} -> {job}.

    A new run is checked first (the Config panel's checks; any problem refuses the start).
    Resume continues runs/RUN with the run's own config.toml: the checkpoint's settings win
    over any other config, so naming another one would only produce warnings."""
    studio = get_studio()
    body = request.get_json(silent=True) or {}
    run = check_name(body.get("run"), "run")
    run_dir = studio.folder("runs") / run
    relative_run = f"runs/{run}"
    if body.get("resume"):
        if not (run_dir / LAST_CHECKPOINT).is_file():
            raise StudioError(f"runs/{run} has no checkpoint to resume from (one is saved at the end of "
                              "each epoch); start it anew instead", code="not_resumable")
        epochs = run_epochs(run_dir)
        if epochs is not None and len(read_metrics(run_dir)) >= epochs:
            raise StudioError(f"runs/{run} finished all its {epochs} epochs: nothing to resume; start a "
                              "new run to train longer", code="not_resumable")
        argv = hark_argv("train", "--config", f"{relative_run}/{RUN_CONFIG}", "--run-dir", relative_run,
                         "--resume")
        meta = {"run": run, "resume": True, "config": f"{relative_run}/{RUN_CONFIG}", "dataset": None}
    else:
        if (run_dir / LAST_CHECKPOINT).exists():
            raise StudioError(f"runs/{run} already holds a run; Resume it or choose another run name",
                              status=CONFLICT, code="run_exists")
        dataset = named(studio.folder("data"), body.get("dataset"), "dataset").name
        config_name = (body.get("config") or "").strip()
        path = config_file(studio.folder("configs"), config_name) if config_name else None
        report = check_config(read_config_file(path) if path else {}, studio)
        if not report.trainable:
            listed = "; ".join(f"{p['key'] or 'config'}: {p['message']}" for p in report.problems)
            raise StudioError(f"config {config_name or '(defaults)'} has problems; fix them in the Config "
                              f"panel first: {listed}", code="invalid_config")
        argv = hark_argv("train", *(("--config", f"configs/{path.name}") if path else ()),
                         "--dataset", f"data/{dataset}", "--run-dir", relative_run)
        meta = {"run": run, "resume": False, "config": config_name or None, "dataset": dataset}
    meta["epochs_before"] = len(read_metrics(run_dir)) if body.get("resume") else 0
    job = studio.jobs.start(JOB_KIND, argv, title=f"{'resume' if body.get('resume') else 'train'} {run}",
                            meta=meta)
    return jsonify({"job": studio.jobs.describe(job)})


@bp.get("/status")
def status():
    """?run=RUN (default: the current train job's run) -> {job, run, metrics, epochs, overall}.
    job is the newest train job whatever its run; overall is the run's progress."""
    studio = get_studio()
    job = studio.jobs.current(JOB_KIND)
    described = studio.jobs.describe(job) if job else None
    run = request.args.get("run") or (job.meta.get("run") if job else None)
    if not run:
        return jsonify({"job": described, "run": None, "metrics": [], "epochs": None, "overall": None})
    run_dir = studio.folder("runs") / check_name(run, "run")
    metrics, epochs = read_metrics(run_dir), run_epochs(run_dir)
    own = described if job and job.meta.get("run") == run else None
    return jsonify({"job": described, "run": run, "metrics": metrics, "epochs": epochs,
                    "overall": overall_progress(own, metrics, epochs)})
