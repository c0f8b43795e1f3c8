"""The Data panel's server side: dataset health from real (small, generated) audio files,
the importer, and the blueprint through Flask's test client."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sentry.constants import SAMPLE_RATE
from studio import create_app, health
from studio.health import dataset_health
from studio.importer import import_files
from studio.importer import main as importer_main
from studio.jobs import Job
from trainer.dataset import LABELS, hash_split, load_dataset

CD_RATE = 44_100
WAIT_S = 60.0


def tone(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def write(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


@pytest.fixture
def messy(tmp_path) -> Path:
    """A dataset with one of each problem, a manifest naming splits and a missing file."""
    root = tmp_path / "messy"
    for label in LABELS:
        (root / label).mkdir(parents=True)
    write(root / "positive" / "a.wav", tone(1.0))
    write(root / "positive" / "b.wav", tone(0.5, freq=300.0))
    (root / "hard_negative" / "a_copy.wav").write_bytes((root / "positive" / "a.wav").read_bytes())
    write(root / "negative" / "stereo.wav", tone(2.0, CD_RATE, channels=2), CD_RATE)
    write(root / "negative" / "nested" / "low.wav", tone(0.25, 8000), 8000)
    write(root / "negative" / "empty.wav", np.zeros(0, np.float32))
    (root / "background" / "garbage.wav").write_bytes(b"this is not a RIFF file at all")
    (root / "background" / "notes.txt").write_text("not audio")
    (root / "background" / ".hidden.wav").write_bytes(b"skipped: dot files are ignored")
    manifest = {"format": 1, "phrase": "hey messy", "clips": [
        {"path": "positive/a.wav", "label": "positive", "split": "test"},
        {"path": "positive/gone.wav", "label": "positive", "split": "train"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_health_counts_durations_and_every_problem(messy):
    report = dataset_health(messy)
    positive = report["classes"]["positive"]
    assert positive["total"] == 2 and positive["test"] >= 1  # a.wav's split comes from the manifest
    assert positive[hash_split("positive/b.wav")] >= 1
    assert positive["min_s"] == 0.5 and positive["max_s"] == 1.0 and positive["seconds"] == 1.5
    negative = report["classes"]["negative"]
    assert negative["total"] == 3 and negative["seconds"] == 2.25 and negative["min_s"] == 0.0
    assert report["classes"]["background"]["total"] == 1  # garbage.wav, counted though unreadable
    assert report["classes"]["background"]["min_s"] is None
    assert report["classes"]["rir"] == {"train": 0, "val": 0, "test": 0, "total": 0, "seconds": 0,
                                        "min_s": None, "max_s": None}
    assert report["totals"]["files"] == 7 and report["phrase"] == "hey messy"

    problems = report["problems"]
    assert problems["sample_rate"] == [
        {"path": "negative/nested/low.wav", "sample_rate": 8000, "channels": 1},
        {"path": "negative/stereo.wav", "sample_rate": CD_RATE, "channels": 2}]
    assert [p["path"] for p in problems["unreadable"]] == ["background/garbage.wav"]
    assert str(messy) not in problems["unreadable"][0]["detail"]  # paths stay dataset-relative
    assert problems["empty"] == [{"path": "negative/empty.wav"}]
    assert problems["missing"] == [{"path": "positive/gone.wav"}]
    assert problems["not_audio"] == [{"path": "background/notes.txt"}]
    assert problems["duplicates"] == [{"paths": ["hard_negative/a_copy.wav", "positive/a.wav"],
                                       "bytes": (messy / "positive" / "a.wav").stat().st_size,
                                       "classes": ["hard_negative", "positive"]}]
    assert report["problem_counts"] == {"sample_rate": 2, "unreadable": 1, "empty": 1, "missing": 1,
                                        "not_audio": 1, "duplicates": 1, "manifest": 0}
    assert report["truncated"] is False


def test_a_clean_dataset_has_no_problems_and_reports_its_eval_sets(tmp_path):
    root = tmp_path / "clean"
    write(root / "positive" / "p.wav", tone(1.0))
    write(root / "negative" / "n.wav", tone(1.5, freq=200.0))
    write(root / "eval" / "espeak" / "positive" / "e.wav", tone(1.0))
    write(root / "eval" / "espeak" / "negative_stream.wav", tone(30.0, freq=100.0))
    report = dataset_health(root)
    assert all(n == 0 for n in report["problem_counts"].values())
    assert report["eval"] == {"espeak": {"positives": 1, "negative_seconds": 30.0}}
    assert report["totals"] == {"files": 2, "seconds": 2.5} and report["phrase"] is None


def test_only_files_sharing_a_size_are_hashed(messy, monkeypatch):
    hashed = []
    real = health._digest
    monkeypatch.setattr(health, "_digest", lambda path: hashed.append(path.name) or real(path))
    dataset_health(messy)
    assert sorted(hashed) == ["a.wav", "a_copy.wav"]


def test_a_broken_manifest_is_a_problem_not_a_crash(messy):
    (messy / "manifest.json").write_text("{not json")
    report = dataset_health(messy)
    assert report["problem_counts"]["manifest"] == 1 and "not valid JSON" in report["problems"]["manifest"][0]["detail"]
    assert report["classes"]["positive"]["total"] == 2


def test_the_work_is_bounded(messy, monkeypatch):
    report = dataset_health(messy, max_files=3)
    assert report["truncated"] is True and report["totals"]["files"] == 3
    monkeypatch.setattr(health, "MAX_LISTED", 1)
    report = dataset_health(messy)
    assert len(report["problems"]["sample_rate"]) == 1 and report["problem_counts"]["sample_rate"] == 2


# -- importer ----------------------------------------------------------------------------
@pytest.fixture
def source(tmp_path) -> Path:
    folder = tmp_path / "recordings"
    write(folder / "one.wav", tone(0.5))
    write(folder / "deep" / "two.flac", tone(0.5, freq=600.0))
    (folder / "readme.txt").write_text("notes")
    (folder / "fake.wav").write_bytes(b"garbage")
    return folder


def test_import_copies_audio_recursively_and_never_overwrites(source, tmp_path):
    dest = tmp_path / "ds" / "positive" / "imported"
    first = import_files([source], dest, progress=False)
    assert sorted(p.relative_to(dest).as_posix() for p in first.copied) == [
        "recordings/deep/two.flac", "recordings/one.wav"]
    assert sorted((Path(p).name, why.split(" (")[0]) for p, why in first.skipped) == [
        ("fake.wav", "not readable audio"), ("readme.txt", "not an audio file")]
    existing = dest / "recordings" / "one.wav"
    existing.write_bytes(b"user edit")  # a file already there must survive a second import
    second = import_files([source, source / "one.wav"], dest, progress=False)
    names = sorted(p.relative_to(dest).as_posix() for p in second.copied)
    assert names == ["one.wav", "recordings/deep/two_2.flac", "recordings/one_2.wav"]
    assert existing.read_bytes() == b"user edit"
    assert not list(dest.rglob(".*"))  # no temporary files left behind


def test_imported_files_are_loaded_by_the_trainer(source, tmp_path):
    root = tmp_path / "ds"
    write(root / "negative" / "n.wav", tone(1.0, freq=250.0))
    import_files([source], root / "positive" / "imported", progress=False)
    assert len(load_dataset(root).select("positive")) == 2
    assert dataset_health(root)["classes"]["positive"]["total"] == 2


def test_import_refuses_symlinks_leading_out_of_the_chosen_folder(source, tmp_path):
    outside = write(tmp_path / "private" / "secret.wav", tone(0.5))
    os.symlink(outside, source / "link.wav")
    os.symlink(outside.parent, source / "linkdir")
    result = import_files([source], tmp_path / "dest", progress=False)
    refused = {Path(p).name: why for p, why in result.skipped}
    assert "symlink" in refused["link.wav"]
    assert sorted(p.name for p in result.copied) == ["one.wav", "two.flac"]  # linked folders: not entered


def test_the_importer_command_reports_and_fails_when_nothing_came_in(source, tmp_path):
    ok = CliRunner().invoke(importer_main, ["--dest", str(tmp_path / "d"), str(source)])
    assert ok.exit_code == 0 and "imported 2 files" in ok.output and "skipped" in ok.output
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    failed = CliRunner().invoke(importer_main, ["--dest", str(tmp_path / "d"), str(empty)])
    assert failed.exit_code == 1 and "nothing was imported" in failed.output
    assert "Traceback" not in failed.output


# -- blueprint ---------------------------------------------------------------------------
@pytest.fixture
def client_and_studio(tmp_path, messy, source):
    workspace = tmp_path / "ws"
    app = create_app(workspace, roots={"rec": source})
    shutil.copytree(messy, workspace / "data" / "messy")
    return app.test_client(), app.extensions["hark_studio"]


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


def test_health_and_samples_over_http(client_and_studio):
    client, _ = client_and_studio
    report = client.get("/api/data/health?dataset=messy").get_json()
    assert report["dataset"] == "messy" and report["problem_counts"]["duplicates"] == 1
    page = client.get("/api/data/samples?dataset=messy&label=negative&limit=2").get_json()
    assert page["total"] == 3 and [f["name"] for f in page["files"]] == ["empty.wav", "nested/low.wav"]
    assert [f["seconds"] for f in page["files"]] == [0.0, 0.25]  # from the headers, any rate
    second = client.get("/api/data/samples?dataset=messy&label=negative&offset=2&limit=2").get_json()
    assert [f["name"] for f in second["files"]] == ["stereo.wav"] and second["files"][0]["seconds"] == 2.0
    garbage = client.get("/api/data/samples?dataset=messy&label=background").get_json()["files"]
    assert [(f["name"], f["seconds"]) for f in garbage] == [("garbage.wav", None)]
    audio = client.get("/api/audio?path=" + second["files"][0]["path"])
    assert audio.status_code == 200 and audio.mimetype == "audio/wav"


def test_samples_linking_out_of_the_roots_are_listed_but_not_served(client_and_studio, tmp_path):
    client, studio = client_and_studio
    outside = write(tmp_path / "elsewhere" / "room.wav", tone(0.5))
    os.symlink(outside, studio.workspace / "data" / "messy" / "rir" / "room.wav")
    page = client.get("/api/data/samples?dataset=messy&label=rir").get_json()
    assert page["files"] == [{"name": "room.wav", "path": None, "bytes": outside.stat().st_size, "seconds": 0.5}]


@pytest.mark.parametrize("url", ["/api/data/health?dataset=../etc", "/api/data/health?dataset=a/b",
                                 "/api/data/samples?dataset=", "/api/data/health"])
def test_bad_names_are_400_json(client_and_studio, url):
    client, _ = client_and_studio
    assert _error(client.get(url), 400)["code"] == "bad_name"


def test_unknown_datasets_and_classes(client_and_studio):
    client, _ = client_and_studio
    assert _error(client.get("/api/data/health?dataset=nope"), 404)["code"] == "no_such_dataset"
    assert _error(client.get("/api/data/samples?dataset=nope"), 404)["code"] == "no_such_dataset"
    body = {"dataset": "nope", "label": "positive", "paths": ["rec"]}
    assert _error(client.post("/api/data/import", json=body), 404)["code"] == "no_such_dataset"
    assert _error(client.get("/api/data/samples?dataset=messy&label=music"), 400)["code"] == "invalid_label"


@pytest.mark.parametrize("path, status", [("rec/../..", 403), ("/etc", 404), ("workspace/../..", 403),
                                          ("rec/evil", 403), ("elsewhere/x", 404)])
def test_import_refuses_paths_outside_the_roots(client_and_studio, source, tmp_path, path, status):
    os.symlink(tmp_path, source / "evil")
    client, studio = client_and_studio
    body = {"dataset": "messy", "label": "positive", "paths": [path]}
    assert _error(client.post("/api/data/import", json=body), status)["code"] in ("outside_roots", "no_such_root")
    assert studio.jobs.current("import") is None


def test_import_form_errors_name_their_field(client_and_studio):
    client, _ = client_and_studio
    post = lambda **body: client.post("/api/data/import", json={"dataset": "messy", **body})
    assert _error(post(label="loud", paths=["rec"]), 400)["code"] == "invalid_label"
    assert _error(post(label="positive", paths=[]), 400)["code"] == "invalid_paths"
    assert _error(post(label="positive", paths=["rec"] * 101), 400)["code"] == "invalid_paths"


def test_an_import_job_runs_the_importer(client_and_studio):
    client, studio = client_and_studio
    answer = client.post("/api/data/import", json={"dataset": "messy", "label": "rir", "paths": ["rec/one.wav"]})
    assert answer.status_code == 200 and answer.get_json()["job"]["kind"] == "import"
    deadline = time.monotonic() + WAIT_S
    while studio.jobs.current("import").state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert studio.jobs.current("import").state == "done", studio.jobs.log_tail(studio.jobs.current("import").id)
    assert (studio.workspace / "data" / "messy" / "rir" / "imported" / "one.wav").is_file()


def test_synth_form_validation(client_and_studio):
    client, _ = client_and_studio
    post = lambda **body: client.post("/api/data/synth", json={"phrase": "hey there", **body})
    assert _error(post(phrase="!!"), 400)["code"] == "invalid_phrase"
    assert _error(post(phrase="x" * 101), 400)["code"] == "invalid_phrase"
    assert _error(post(name="../up"), 400)["code"] == "invalid_name"
    assert _error(post(positives=0), 400)["code"] == "invalid_positives"
    assert _error(post(negatives="many"), 400)["code"] == "invalid_negatives"
    assert _error(post(neighbours=True), 400)["code"] == "invalid_neighbours"
    assert _error(post(eval_minutes=0.1), 400)["code"] == "invalid_eval_minutes"
    assert _error(post(eval_minutes="soon"), 400)["code"] == "invalid_eval_minutes"
    assert _error(post(seed=-1), 400)["code"] == "invalid_seed"
    taken = _error(post(name="messy"), 409)
    assert taken["code"] == "invalid_name" and "Overwrite" in taken["message"]


def test_synth_runs_the_cli_with_the_forms_values(client_and_studio, monkeypatch):
    from trainer.cli import synth
    client, studio = client_and_studio
    started = []

    def record(kind, argv, *, title, meta):
        started.append((kind, argv, {"title": title, "meta": meta}))
        return Job(id=f"probe{len(started)}", kind=kind, argv=argv, title=title, meta=meta)
    monkeypatch.setattr(studio.jobs, "start", record)
    answer = client.post("/api/data/synth", json={"phrase": "-hey there", "positives": "8", "negatives": 9,
                                                  "neighbours": 10, "eval": False, "eval_minutes": "",
                                                  "seed": 3})
    assert answer.status_code == 200, answer.get_json()
    kind, argv, kw = started[0]
    assert kind == "synth" and argv[1:3] == ["-m", "trainer.cli"] and kw["meta"]["dataset"] == "hey_there"
    # The argv must parse with the real `hark synth` options (a phrase starting with '-' included).
    params = synth.make_context("synth", argv[4:]).params
    assert params["phrase"] == "-hey there" and params["out"] == Path("data/hey_there")
    assert (params["positives"], params["negatives"], params["neighbours"]) == (8, 9, 10)
    assert params["with_eval"] is False and params["seed"] == 3 and params["overwrite"] is False
    client.post("/api/data/synth", json={"phrase": "hey there", "name": "messy", "overwrite": True,
                                         "eval_minutes": 2})
    params = synth.make_context("synth", started[1][1][4:]).params
    assert params["overwrite"] is True and params["with_eval"] is True and params["eval_minutes"] == 2.0
    assert params["positives"] == 3000  # the CLI's default, sent explicitly
    assert params["licence_clean"] is False
    client.post("/api/data/synth", json={"phrase": "hey there", "name": "clean", "licence_clean": True})
    assert synth.make_context("synth", started[2][1][4:]).params["licence_clean"] is True
    assert started[2][2]["meta"]["licence_clean"] is True and "licence-clean" in started[2][2]["title"]
    answer = client.post("/api/data/synth", json={"phrase": "hey there", "licence_clean": "yes"})
    assert _error(answer, 400)["code"] == "invalid_licence_clean" and len(started) == 3


def test_defaults_are_the_clis_and_create_makes_an_empty_dataset(client_and_studio):
    client, studio = client_and_studio
    defaults = client.get("/api/data/defaults").get_json()
    assert defaults["positives"] == 3000 and defaults["eval"] is True and defaults["eval_minutes"] == 60.0
    assert defaults["labels"] == list(LABELS)
    from trainer.synth import dectalk, pico
    assert defaults["engines"] == ["espeak"] + ["dectalk"] * dectalk.available() + ["pico"] * pico.available()
    assert defaults["licence_clean"] is False
    assert defaults["licence_clean_engines"] == ["espeak"] + ["pico"] * pico.available()
    assert defaults["licences"]["dectalk"]["commercial_output"] is False
    assert client.post("/api/data/create", json={"name": "mine"}).get_json() == {"dataset": "mine"}
    assert all((studio.workspace / "data" / "mine" / label).is_dir() for label in LABELS)
    assert _error(client.post("/api/data/create", json={"name": "mine"}), 409)["code"] == "invalid_name"
    assert _error(client.post("/api/data/create", json={"name": "a b"}), 400)["code"] == "invalid_name"
    names = [d["name"] for d in client.get("/api/datasets").get_json()["datasets"]]
    assert names == ["messy", "mine"]
