"""Symlinks cannot carry the studio out of its roots: not through a folder picked for mining
(the miner lists only what really lies in it), not through the mined clips then served by
/api/audio, not through the export zip. Real files, real symlinks, a real `hark mine` job."""

from __future__ import annotations

import importlib.util
import io
import logging
import time
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from studio import create_app, get_studio
from trainer.mining.audio import find_audio
from trainer.mining.session import load_session

_SENTRY_FIXTURES = Path(__file__).parents[1] / "sentry" / "conftest.py"
_spec = importlib.util.spec_from_file_location("hark_test_sentry_fixtures_for_confinement", _SENTRY_FIXTURES)
tone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tone)

RATE = 16_000
JOB_WAIT_S = 120.0
SECRET = b"the neighbour's private recording"


@pytest.fixture
def layout(tmp_path) -> dict[str, Path]:
    """rec/ (a root) with one real recording, a symlinked file and a symlinked folder that
    lead to outside/, whose recording has the tone the model fires on."""
    rec, outside = tmp_path / "rec", tmp_path / "outside"
    (rec / "inner").mkdir(parents=True)
    outside.mkdir()
    sf.write(rec / "night.wav", tone.make_bursts(3.0, []), RATE)
    sf.write(rec / "inner" / "quiet.wav", tone.make_bursts(2.0, []), RATE)
    sf.write(outside / "secret.wav", tone.make_bursts(4.0, [1.0, 2.5]), RATE)
    (rec / "leak.wav").symlink_to(outside / "secret.wav")
    (rec / "escape").symlink_to(outside, target_is_directory=True)
    (rec / "alias.wav").symlink_to(rec / "night.wav")  # stays inside: mined (once)
    return {"rec": rec, "outside": outside}


def test_a_folder_means_what_really_lies_in_it(layout, caplog):
    rec, outside = layout["rec"], layout["outside"]
    with caplog.at_level(logging.WARNING, logger="trainer.mining.audio"):
        found = find_audio([rec])
    assert found == sorted([(rec / "inner" / "quiet.wav").resolve(), (rec / "night.wav").resolve()])
    assert "skipped 1 audio file(s) behind symlinks" in caplog.text
    # A path the user names is followed wherever it leads (plain `hark mine` from the CLI).
    assert find_audio([rec / "leak.wav"]) == [(outside / "secret.wav").resolve()]
    assert find_audio([rec / "escape"]) == [(outside / "secret.wav").resolve()]


def _wait_for(app, kind: str) -> dict:
    deadline = time.monotonic() + JOB_WAIT_S
    with app.app_context():
        jobs = get_studio().jobs
        while (job := jobs.current(kind)).state in ("running", "stopping"):
            assert time.monotonic() < deadline, jobs.describe(job)
            time.sleep(0.2)
        return jobs.describe(job)


def test_mining_a_root_never_mines_or_serves_a_file_outside_it(tmp_path, layout):
    workspace = tmp_path / "ws"
    tone.write_model_dir(workspace / "runs" / "tone" / "export")
    (workspace / "data" / "d1").mkdir(parents=True)
    app = create_app(workspace, roots={"rec": layout["rec"]})
    client = app.test_client()
    started = client.post("/api/mining/start", json={"name": "night", "run": "tone", "dataset": "d1",
                                                      "paths": ["rec"], "threshold": 0.05})
    assert started.status_code == 200, started.get_json()
    job = _wait_for(app, "mine")
    assert job["state"] == "done", job
    session = load_session(workspace / "sessions" / "night.json")
    mined = sorted(Path(f["path"]) for f in session.files)
    assert mined == sorted([(layout["rec"] / "inner" / "quiet.wav").resolve(),
                            (layout["rec"] / "night.wav").resolve()])
    detail = client.get("/api/mining/sessions/night").get_json()
    for hit in detail["hits"]:
        assert hit["source"].startswith("rec/"), hit
        assert not hit["source"].startswith("rec/leak")
    # the outside file itself is not served either, under any of its names
    for path in ("rec/leak.wav", "rec/escape/secret.wav"):
        assert client.get("/api/audio", query_string={"path": path}).status_code == 403


def _export(workspace: Path, run: str = "r1") -> Path:
    return tone.write_model_dir(workspace / "runs" / run / "export")


def test_the_export_zip_holds_no_symlink_that_leads_out(tmp_path):
    workspace = tmp_path / "ws"
    folder = _export(workspace)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    client = create_app(workspace).test_client()
    (folder / "notes.txt").symlink_to(folder / "manifest.json")  # inside: fine
    ok = client.get("/api/export/download?run=r1")
    assert ok.status_code == 200
    with zipfile.ZipFile(io.BytesIO(ok.data)) as archive:
        assert "r1-export/notes.txt" in archive.namelist()

    (folder / "id_rsa.txt").symlink_to(secret)
    for path in ("/api/export/download?run=r1", "/api/export/manifest?run=r1"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert answer.get_json()["error"]["code"] == "outside_roots"
        assert SECRET not in answer.data and str(tmp_path) not in answer.get_data(as_text=True)


def test_a_manifest_that_is_a_symlink_out_is_not_read_or_sent(tmp_path):
    workspace = tmp_path / "ws"
    folder = _export(workspace)
    real = tmp_path / "elsewhere.json"
    real.write_text((folder / "manifest.json").read_text().replace("}", ', "secret": "s3cr3t"}', 1))
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(real)
    client = create_app(workspace).test_client()
    for path in ("/api/export/manifest.json?run=r1", "/api/export/manifest?run=r1",
                 "/api/export/download?run=r1"):
        answer = client.get(path)
        assert answer.status_code == 403 and b"s3cr3t" not in answer.data, path


def test_a_run_folder_that_is_a_symlink_out_is_not_zipped(tmp_path):
    workspace = tmp_path / "ws"
    elsewhere = _export(tmp_path / "other")  # other/runs/r1/export
    (workspace / "runs").mkdir(parents=True)
    (workspace / "runs" / "r1").symlink_to(elsewhere.parent, target_is_directory=True)
    answer = create_app(workspace).test_client().get("/api/export/download?run=r1")
    assert answer.status_code == 403 and str(tmp_path) not in answer.get_data(as_text=True)


def test_a_broken_export_is_named_as_the_page_names_it(tmp_path):
    workspace = tmp_path / "ws"
    (_export(workspace) / "model.onnx").unlink()
    answer = create_app(workspace).test_client().get("/api/export/download?run=r1")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "bad_manifest"
    message = answer.get_json()["error"]["message"]
    assert message.startswith("runs/r1/export/manifest.json: ") and str(tmp_path) not in message, message
