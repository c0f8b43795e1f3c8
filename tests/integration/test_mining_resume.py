"""`hark mine` as a real process: killed with SIGKILL at random points and resumed, it ends
with exactly the hits of an uninterrupted run; SIGTERM and SIGINT pause it at a safe point.

The recordings (4 files x 6 min, two of them FLAC) are built from the tiny dataset and
scored by the tiny exported model. That model is barely trained, so the thresholds are
taken from its own score distribution on the first recording: many distinct hits, and a
probe threshold that leaves most of the coarse hops unrefined.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sentry.audio import read_wav
from sentry.detector import Detector
from sentry.postprocess import smooth

pytestmark = pytest.mark.integration

KILLS = 5
POLL_S = 0.02
RUN_TIMEOUT_S = 300


def _builder():
    path = Path(__file__).with_name("mining_audio.py")
    spec = importlib.util.spec_from_file_location("hark_mining_test_audio", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def job(tiny_dataset, exported, tmp_path_factory):
    """Recordings plus the `hark mine` options every run of this module uses."""
    folder = tmp_path_factory.mktemp("mining_rec")
    recordings = _builder().build_recordings(tiny_dataset, folder / "rec", files=4, minutes=6)
    detector = Detector(exported)
    raw = detector.score_pcm(read_wav(recordings[0]))
    smoothed = smooth(raw, detector.settings.smoothing_hops)
    threshold = float(np.round(np.quantile(smoothed, 0.99), 4))
    probe = float(np.round(np.quantile(raw, 0.9), 4))
    options = ["--model", str(exported), "--threshold", str(threshold), "--probe-threshold",
               str(probe), "--merge-gap", "0.5", "--no-progress"]
    return folder, options


def _cmd(session: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.cli", "mine", str(session), *args]


def _hits(session: Path) -> list[tuple]:
    data = json.loads(session.read_text())
    return [(h["id"], h["source"], h["peak_hop"], h["score"], h["offset_s"], h["clip"])
            for h in data["hits"]]


def _committed(session: Path) -> bool:
    """True once the running miner has committed progress inside the job."""
    try:
        data = json.loads(session.read_text())
    except (OSError, ValueError):
        return False
    return data["position"]["file"] > 0 or data["position"]["hop"] > 0


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory):
    folder, options = job
    session = tmp_path_factory.mktemp("mining_ref") / "ref.json"
    start = time.monotonic()
    subprocess.run(_cmd(session, str(folder / "rec"), *options), check=True, timeout=RUN_TIMEOUT_S,
                   capture_output=True)
    hits = _hits(session)
    assert len(hits) >= 10, "the thresholds should give many hits"
    return session, hits, time.monotonic() - start


def _clip_names(session: Path) -> list[str]:
    return sorted(p.name for p in session.with_suffix(".clips").iterdir())


def test_sigkill_at_random_points_then_resume_gives_exactly_the_same_hits(job, reference, tmp_path):
    folder, options = job
    ref_session, ref_hits, ref_seconds = reference
    session = tmp_path / "killed.json"
    rng = random.Random(1234)
    interrupted = 0
    for _ in range(KILLS):
        if session.exists():
            cmd = _cmd(session, "--resume", "--no-progress")
        else:
            cmd = _cmd(session, str(folder / "rec"), *options)
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.6) * ref_seconds)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=RUN_TIMEOUT_S)
        if session.exists() and json.loads(session.read_text())["state"] != "complete":
            interrupted += 1
    assert interrupted >= 2, "most kills should land before the session completes"
    cmd = _cmd(session, "--resume", "--no-progress") if session.exists() else \
        _cmd(session, str(folder / "rec"), *options)
    subprocess.run(cmd, check=True, timeout=RUN_TIMEOUT_S, capture_output=True)
    got = _hits(session)
    want = [h[:-1] + (h[-1].replace("ref.clips", "killed.clips"),) for h in ref_hits]
    assert got == want  # none lost, none duplicated, same ids, scores and offsets
    assert _clip_names(session) == _clip_names(ref_session)  # no orphaned temp clips either
    assert not list(tmp_path.glob(".killed.json.*.tmp"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_pauses_at_a_safe_point_and_resume_completes(job, reference, tmp_path, signum):
    folder, options = job
    _, ref_hits, _ = reference
    session = tmp_path / "paused.json"
    process = subprocess.Popen(_cmd(session, str(folder / "rec"), *options),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _committed(session) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert process.poll() is None, "the run ended before it could be paused"
    process.send_signal(signum)
    output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 75, output
    assert "paused" in output and "--resume" in output and "Traceback" not in output
    data = json.loads(session.read_text())
    assert data["state"] == "paused"
    done = subprocess.run(_cmd(session, "--resume", "--no-progress"), timeout=RUN_TIMEOUT_S,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [h[:-1] for h in _hits(session)] == [h[:-1] for h in ref_hits]


def test_a_second_miner_on_the_same_session_is_refused(job, tmp_path):
    folder, options = job
    session = tmp_path / "busy.json"
    first = subprocess.Popen(_cmd(session, str(folder / "rec"), *options),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not _committed(session) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if first.poll() is not None:
            pytest.fail("the first run ended before the second could start")
        # Frozen, the first run keeps its lock however long the second takes to start.
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(_cmd(session, "--resume"), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT_S, check=False)
        assert second.returncode == 1 and "another `hark mine`" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert os.path.exists(session)
