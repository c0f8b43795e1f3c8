"""The studio's core: background jobs as real processes, progress parsing, the confined
file browser, JSON errors and the token."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from studio import create_app
from studio.errors import StudioError
from studio.files import FileRoots
from studio.jobs import JobManager, parse_progress, screen_lines

WAIT_S = 30.0


def _wait(manager: JobManager, kind: str, states=("done", "failed", "stopped", "paused")):
    deadline = time.monotonic() + WAIT_S
    while manager.current(kind).state not in states:
        assert time.monotonic() < deadline, manager.current(kind)
        time.sleep(0.02)
    return manager.current(kind)


def test_progress_is_the_last_tqdm_bar():
    text = ("loading\n 10%|#         | 1/10 [00:01<00:09,  1.00it/s]\r"
            " 40%|####      | 4/10 [00:04<01:06,  1.00it/s]\rnoise\n")
    progress = parse_progress(text)
    assert progress["percent"] == 40 and progress["done"] == "4" and progress["total"] == "10"
    assert progress["elapsed_s"] == 4 and progress["eta_s"] == 66
    assert parse_progress("no bar here") is None
    assert parse_progress(" 5%|5| 1/20 [00:00<?, ?it/s]")["eta_s"] is None


# `hark eval`'s bars: an outer bar over the eval sets, an inner leave=False bar per set.
NESTED_BARS = """
from tqdm import tqdm
for name in tqdm(["espeak", "heldout"], desc="eval sets", unit="set", mininterval=0):
    for _ in tqdm(range(3), desc=f"{name} clips", unit="clip", leave=False, mininterval=0):
        pass
print("threshold 0.780", flush=True)
"""


def test_the_log_shows_what_a_terminal_would():
    assert screen_lines("loading\n 10%|#  | 1/10\r 40%|#### | 4/10\r100%|#####| 10/10\ndone\n") == [
        "loading", "100%|#####| 10/10", "done", ""]
    # A nested bar is drawn one line down and the cursor moves back up; a cleared one is blank.
    assert screen_lines("\rsets 0%\n\rclips 0%\x1b[A\n\r" + " " * 8 + "\x1b[A\rsets 50%\n") == ["sets 50%", ""]
    assert screen_lines("\x1b[31mred\x1b[0m\x1b[5A up") == ["red up"]  # colours dropped, cursor kept in the screen


def test_finished_nested_progress_bars_leave_one_line(tmp_path):
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    manager.start("eval", [sys.executable, "-c", NESTED_BARS], title="nested bars")
    log = manager.describe(_wait(manager, "eval"))["log"]
    assert len(log) == 2 and log[0].startswith("eval sets: 100%|") and "2/2" in log[0], log
    assert log[1] == "threshold 0.780"


def test_a_job_runs_logs_and_allows_one_per_kind(tmp_path):
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    job = manager.start("sleep", [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(30)"],
                        title="sleeper", meta={"run": "r1"})
    with pytest.raises(StudioError) as busy:
        manager.start("sleep", [sys.executable, "-c", "pass"], title="second")
    assert busy.value.status == 409 and "already running" in busy.value.message
    other = manager.start("other", [sys.executable, "-c", "print('done')"], title="other kind")
    assert _wait(manager, "other").state == "done"
    deadline = time.monotonic() + WAIT_S
    while "hi" not in manager.log_tail(job.id):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    manager.start("bars", [sys.executable, "-c", r"print('a\x1b[Ab\x1b[2K')"], title="escapes")
    assert manager.describe(_wait(manager, "bars"))["log"] == ["ab"]
    manager.stop("sleep")
    stopped = _wait(manager, "sleep")
    assert stopped.state == "stopped" and stopped.returncode != 0
    assert manager.describe(other)["log"] == ["done"]

    reloaded = JobManager(tmp_path / "state", cwd=tmp_path)  # a restarted studio sees the history
    assert reloaded.current("sleep").state == "stopped" and reloaded.current("sleep").meta == {"run": "r1"}


def test_a_job_stops_even_when_the_studio_was_started_ignoring_sigint(tmp_path):
    # A studio launched in a script's background (`hark studio &`) inherits SIGINT ignored;
    # its jobs must still take the stop signal and save, not run on until SIGKILL.
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = manager.start("sleep", [sys.executable, "-c", "import time; print('up', flush=True); "
                                      "time.sleep(60)"], title="sleeper")
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + WAIT_S
    while "up" not in manager.log_tail(job.id):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    manager.stop("sleep")
    stopped = _wait(manager, "sleep")
    assert stopped.state == "stopped" and stopped.returncode == -signal.SIGINT
    assert time.monotonic() < deadline  # the signal, not the SIGKILL after the grace


def test_a_job_whose_program_does_not_exist_is_refused(tmp_path):
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    with pytest.raises(StudioError) as refused:
        manager.start("x", ["/no/such/program", "--flag"], title="missing")
    assert refused.value.code == "start_failed" and manager.current("x") is None


def test_a_failing_job_and_one_left_running_by_a_dead_studio(tmp_path):
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    manager.start("bad", [sys.executable, "-c", "raise SystemExit(3)"], title="fails")
    failed = _wait(manager, "bad")
    assert failed.state == "failed" and failed.returncode == 3
    manager.start("long", [sys.executable, "-c", "import time; time.sleep(30)"], title="orphan")
    reloaded = JobManager(tmp_path / "state", cwd=tmp_path)
    assert reloaded.current("long").state == "interrupted"
    manager.stop("long")
    _wait(manager, "long")


def test_the_miner_s_pause_exit_means_paused(tmp_path):
    manager = JobManager(tmp_path / "state", cwd=tmp_path)
    manager.start("mine", [sys.executable, "-c", "raise SystemExit(75)"], title="mine")
    assert _wait(manager, "mine").state == "paused"


def test_file_roots_confine_paths(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.wav").write_bytes(b"x")
    (outside / "b.wav").write_bytes(b"y")
    os.symlink(outside, root / "link")
    os.symlink(root / "sub" / "a.wav", root / "inside_link.wav")
    roots = FileRoots({"rec": root})
    assert roots.resolve("rec/sub/a.wav") == (root / "sub" / "a.wav").resolve()
    assert roots.resolve("rec/inside_link.wav").name == "a.wav"  # a symlink that stays inside
    for bad in ("rec/../outside/b.wav", "rec/link/b.wav", "rec/link", "rec//etc/passwd", "other/x"):
        with pytest.raises(StudioError) as err:
            roots.resolve(bad)
        assert err.value.status in (403, 404)
    assert [e.name for e in roots.list("rec")] == ["sub", "inside_link.wav"]
    assert roots.api_path(root / "sub" / "a.wav") == "rec/sub/a.wav"


def test_errors_are_json_and_the_token_is_required(tmp_path):
    app = create_app(tmp_path / "ws", token="tok-0123456789")
    client = app.test_client()
    assert client.get("/api/state").status_code == 401
    assert client.get("/api/state", headers={"Authorization": "Bearer nope"}).status_code == 403
    ok = client.get("/api/state", headers={"Authorization": "Bearer tok-0123456789"})
    assert ok.status_code == 200 and ok.get_json()["roots"] == ["workspace"]
    login = client.get("/?token=tok-0123456789")
    assert login.status_code == 302 and "hark_studio_token" in login.headers["Set-Cookie"]
    assert client.get("/api/jobs/train").get_json() == {"job": None}  # the cookie now carries it
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/audio?path=workspace/../../etc/passwd").status_code == 403


def test_an_upload_over_the_limit_is_a_json_413(tmp_path):
    app = create_app(tmp_path / "ws", max_upload_bytes=1024)
    response = app.test_client().post("/api/jobs/x/stop", data=b"x" * 4096,
                                      headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 413 and "error" in response.get_json()
