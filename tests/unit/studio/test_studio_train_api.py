"""The Training panel's server side without a browser: what it refuses to start, how it reads
a run's metrics, and the whole run's progress and ETA."""

from __future__ import annotations

import json
import sys
import time

import pytest

from studio import create_app
from studio.panels.train import list_train_runs, overall_progress, read_metrics

WAIT_S = 30.0


@pytest.fixture
def workspace(tmp_path):
    return tmp_path / "ws"


@pytest.fixture
def client(workspace):
    app = create_app(workspace)
    (workspace / "data" / "words").mkdir()
    return app.test_client()


def _job(state="running", line="", percent=0, started=1000.0, epochs_before=0):
    return {"state": state, "started": started, "meta": {"epochs_before": epochs_before},
            "progress": {"line": line, "percent": percent} if line else None}


def test_overall_progress_adds_the_epoch_in_progress_and_extrapolates_the_eta():
    metrics = [{"epoch": 1}, {"epoch": 2}]
    job = _job(line="epoch 3/4:  50%|#####     | 4/8 [00:02<00:02]", percent=50)
    result = overall_progress(job, metrics, 4, now=1025.0)
    assert result["done"] == 2 and result["epoch"] == 3 and result["percent"] == 62.5
    assert result["eta_s"] == pytest.approx(25.0 * 1.5 / 2.5)
    # The last bar of an epoch that has since finished adds nothing.
    stale = overall_progress(_job(line="epoch 2/4:  75%|", percent=75), metrics, 4, now=1025.0)
    assert stale["percent"] == 50.0
    # A resumed job times only its own epochs.
    resumed = overall_progress(_job(epochs_before=2), metrics, 4, now=1010.0)
    assert resumed["eta_s"] is None
    done = overall_progress(_job(state="done"), metrics + [{"epoch": 3}, {"epoch": 4}], 4)
    assert done["percent"] == 100.0 and done["eta_s"] is None
    assert overall_progress(job, metrics, None) is None


def test_metrics_skip_a_line_cut_short_by_the_writer(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_loss": 0.5}) + '\n{"epoch": 2, "val_')
    assert read_metrics(tmp_path) == [{"epoch": 1, "val_loss": 0.5}]
    assert read_metrics(tmp_path / "missing") == []


def test_runs_list_says_which_can_resume(workspace, client):
    run = workspace / "runs" / "half"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "config.toml").write_text("[train]\nepochs = 3\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    full = workspace / "runs" / "full"
    full.mkdir()
    (full / "config.toml").write_text("[train]\nepochs = 1\n")
    (full / "metrics.jsonl").write_text('{"epoch": 1}\n')
    assert list_train_runs(workspace / "runs") == [
        {"name": "full", "epochs_done": 1, "epochs": 1, "complete": True, "running": False, "resumable": False},
        {"name": "half", "epochs_done": 1, "epochs": 3, "complete": False, "running": False, "resumable": True}]
    assert client.get("/api/train/runs").json["runs"][1]["name"] == "half"

    # While a train job trains "half", the list says so (and offers no resume of it).
    jobs = client.application.extensions["hark_studio"].jobs
    jobs.start("train", [sys.executable, "-c", "import time; time.sleep(30)"], title="train half", meta={"run": "half"})
    try:
        half = client.get("/api/train/runs").json["runs"][1]
        assert half["running"] and not half["resumable"]
    finally:
        jobs.stop("train")
    deadline = time.monotonic() + WAIT_S
    while jobs.current("train").state == "stopping":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    half = client.get("/api/train/runs").json["runs"][1]
    assert not half["running"] and half["resumable"]


def test_start_refuses_what_cannot_run_and_starts_nothing(workspace, client):
    def start(**body):
        return client.post("/api/train/start", json={"dataset": "words", "run": "r1", **body})

    assert start(run="../x").json["error"]["code"] == "bad_name"
    assert start(dataset="nope").status_code == 404
    assert start(config="missing").status_code == 404
    (workspace / "configs" / "bad.toml").write_text("[train]\nlr = -1.0\n")
    refused = start(config="bad")
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_config"
    assert "train.lr: must be > 0" in refused.json["error"]["message"]
    resume = start(resume=True)
    assert resume.status_code == 400 and resume.json["error"]["code"] == "not_resumable"
    (workspace / "runs" / "r1" / "checkpoints").mkdir(parents=True)
    (workspace / "runs" / "r1" / "checkpoints" / "last.pt").write_bytes(b"x")
    assert start().status_code == 409
    assert client.get("/api/jobs/train").json["job"] is None
    status = client.get("/api/train/status").json
    assert status == {"job": None, "run": None, "metrics": [], "epochs": None, "overall": None}
