"""The Mining Queue and Cascade Testing blueprints through Flask's test client: picked
recordings stay inside the roots, names stay plain, the review queue is `hark queue`'s, and
the judge health check classifies what real loopback sockets answer."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from studio import create_app, get_studio
from studio.errors import StudioError
from studio.panels.cascade import check_health, judge_base
from trainer.mining.session import clips_dir, new_session

RATE = 16_000
WAIT_S = 30.0
KEY = "unit-test-judge-key-0123456789"


@pytest.fixture
def roots(tmp_path) -> dict[str, Path]:
    rec, outside = tmp_path / "rec", tmp_path / "outside"
    rec.mkdir()
    outside.mkdir()
    sf.write(rec / "night.wav", np.zeros(RATE, np.float32), RATE)
    sf.write(outside / "secret.wav", np.zeros(RATE, np.float32), RATE)
    os.symlink(outside, rec / "escape")
    return {"rec": rec, "outside": outside}


@pytest.fixture
def workspace(tmp_path) -> Path:
    ws = tmp_path / "ws"
    (ws / "data" / "d1").mkdir(parents=True)
    # Only its presence is checked before the paths; no job is ever started with it here.
    (ws / "runs" / "r1" / "export").mkdir(parents=True)
    (ws / "runs" / "r1" / "export" / "manifest.json").write_text("{}")
    return ws


@pytest.fixture
def app(workspace, roots):
    return create_app(workspace, roots={"rec": roots["rec"]})


@pytest.fixture
def client(app):
    return app.test_client()


def _start(client, **overrides):
    body = {"name": "s1", "run": "r1", "dataset": "d1", "paths": ["rec/night.wav"], **overrides}
    return client.post("/api/mining/start", json=body)


def _no_job(app) -> bool:
    with app.app_context():
        return get_studio().jobs.current("mine") is None


# ---------------------------------------------------------------------- mining: requests refused

@pytest.mark.parametrize("paths, status", [
    (["rec/../outside/secret.wav"], 403),
    (["rec/escape/secret.wav"], 403),
    (["rec/escape"], 403),
    (["/etc/passwd"], 404),
    (["outside/secret.wav"], 404),
    (["workspace/../../outside"], 403),
    (["rec/night.wav", "rec/../outside"], 403),
    (["rec/missing.wav"], 404),
    ([], 400),
    ("rec/night.wav", 400),
    ([7], 400),
])
def test_picked_recordings_must_stay_inside_the_roots(app, client, workspace, paths, status):
    answer = _start(client, paths=paths)
    assert answer.status_code == status, answer.json
    assert answer.json["error"]["message"]
    assert _no_job(app) and not (workspace / "sessions" / "s1.json").exists()


@pytest.mark.parametrize("name", ["../s1", "a/b", "", ".hidden", "a..b", "x" * 65, "a b", None, 3])
def test_session_names_must_be_plain(app, client, name):
    answer = _start(client, name=name)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "bad_name"
    assert client.post("/api/mining/resume", json={"name": name}).json["error"]["code"] == "bad_name"
    assert _no_job(app)


@pytest.mark.parametrize("path", ["/api/mining/sessions/..x", "/api/mining/sessions/.x",
                                  "/api/mining/sessions/a%20b"])
def test_session_urls_with_bad_names_are_refused(client, path):
    assert client.get(path).json["error"]["code"] == "bad_name"
    assert client.post(path + "/review", json={"ids": [1], "action": "discard"}).status_code == 400


@pytest.mark.parametrize("value", ["abc", 1.5, -0.1, "nan", [0.2]])
def test_a_mining_threshold_is_a_number_from_0_to_1(app, client, value):
    answer = _start(client, threshold=value)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "bad_threshold"
    assert _no_job(app)


def test_the_model_and_the_dataset_must_exist(app, client, workspace):
    (workspace / "runs" / "bare").mkdir()
    assert _start(client, run="bare").json["error"]["code"] == "no_export"
    assert _start(client, run="nope").status_code == 404
    assert _start(client, dataset="nope").json["error"]["code"] == "no_such_dataset"
    assert client.get("/api/mining/defaults?run=bare").status_code == 404
    assert _no_job(app)


def test_nothing_to_pause_and_no_session_to_resume(client):
    assert client.post("/api/mining/pause").json["error"]["code"] == "not_running"
    answer = client.post("/api/mining/resume", json={"name": "never"})
    assert answer.status_code == 404 and "no session named" in answer.json["error"]["message"]


MINER_STANDIN = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))  # as `hark mine` pauses: exit 75
time.sleep({delay})
print(" 12%|#  | 0.08/0.67 h audio [00:00<00:02, 689x rt, 1 hits]", file=sys.stderr, flush=True)
time.sleep(60)
"""


def _job_state(app, states=("paused", "failed", "done", "stopped")):
    deadline = time.monotonic() + WAIT_S
    with app.app_context():
        while (job := get_studio().jobs.current("mine")).state not in states:
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        return job


def test_pause_waits_for_the_miner_to_show_progress(app, client):
    """Before its first progress bar the miner has no SIGTERM handler: pausing is refused
    then, and once the bar is there SIGTERM pauses it (exit 75 -> job state paused)."""
    with app.app_context():
        job = get_studio().jobs.start("mine", [sys.executable, "-c", MINER_STANDIN.format(delay=1.0)],
                                      title="stand-in", meta={"session": "s1"})
    answer = client.post("/api/mining/pause")
    assert answer.status_code == 409 and answer.json["error"]["code"] == "starting"
    deadline = time.monotonic() + WAIT_S
    while client.get("/api/jobs/mine").json["job"]["progress"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.get("/api/jobs/mine").json["job"]["progress"]["eta_s"] == 2
    assert client.post("/api/mining/pause").status_code == 200
    assert _job_state(app).state == "paused" and job.returncode == 75


# ---------------------------------------------------------------------- mining: the queue

def _session(workspace: Path, name: str = "s1", *, state: str = "paused") -> Path:
    """A session as `hark mine` leaves it: two hits with clips, the dataset recorded."""
    path = workspace / "sessions" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    clips = clips_dir(path)
    clips.mkdir()
    rng = np.random.default_rng(0)
    session = new_session(path, files=[{"path": "/recordings/night.wav", "key": "f00000-x", "status": "todo",
                                        "duration_s": 60.0, "scanned_s": 30.0, "error": None}],
                          settings={"threshold": 0.3}, model={"dir": str(workspace / "runs" / "r1" / "export"),
                                                              "wake_word": "hey jarvis"},
                          dataset=str(workspace / "data" / "d1"), shard=(1, 1))
    for hit_id, (offset, score) in enumerate([(12.0, 0.41), (20.0, 0.77)], start=1):
        clip = clips / f"f00000-x_{hit_id:09d}.wav"
        sf.write(clip, (rng.standard_normal(int(3.0 * RATE)) * 0.1).astype(np.float32), RATE, subtype="PCM_16")
        session.hits.append({"id": hit_id, "file": 0, "source": "/recordings/night.wav", "offset_s": offset,
                             "score": score, "clip": f"{clips.name}/{clip.name}", "clip_start_s": offset - 2.5,
                             "status": "pending", "label": None, "dataset_path": None, "reviewed": None})
    session.data["state"] = state
    session.save(keep_review=False)
    return path


def test_sessions_are_listed_with_their_state_and_corrupted_ones_say_so(client, workspace):
    _session(workspace)
    (workspace / "sessions" / "broken.json").write_text('{"kind": "hark-mining-session", "files": [')
    (workspace / "sessions" / "other.json").write_text('{"not": "a session"}')
    rows = {r["name"]: r for r in client.get("/api/mining/sessions").json["sessions"]}
    assert set(rows) == {"s1", "broken"}
    assert rows["broken"]["state"] == "corrupted" and "corrupted" in rows["broken"]["error"]
    s1 = rows["s1"]
    assert s1["state"] == "paused" and s1["resumable"] and not s1["complete"]
    assert (s1["files"], s1["files_done"], s1["hits"], s1["hits_pending"]) == (1, 0, 2, 2)
    assert s1["hours_done"] == round(30 / 3600, 4) and s1["dataset"] == "data/d1"


def test_review_is_the_cli_queue(client, workspace):
    from trainer.cli import main

    path = _session(workspace)
    detail = client.get("/api/mining/sessions/s1").json
    assert [h["id"] for h in detail["hits"]] == [2, 1]  # highest score first
    clip = detail["hits"][0]["clip"]
    assert clip == "workspace/sessions/s1.clips/f00000-x_000000002.wav"
    assert client.get(f"/api/audio?path={clip}").status_code == 200

    answer = client.post("/api/mining/sessions/s1/review", json={"ids": [2], "action": "hard_negative"})
    assert answer.status_code == 200, answer.json
    mined = workspace / "data" / "d1" / "hard_negative" / "mined" / "s1_00002.wav"
    assert mined.read_bytes() == (clips_dir(path) / "f00000-x_000000002.wav").read_bytes()
    assert answer.json["changed"] == [{"id": 2, "status": "confirmed", "label": "hard_negative",
                                       "dataset_path": "data/d1/hard_negative/mined/s1_00002.wav"}]

    assert client.post("/api/mining/sessions/s1/review", json={"ids": [1], "action": "positive"}).status_code == 200
    assert (workspace / "data" / "d1" / "positive" / "mined" / "s1_00001.wav").is_file()

    listed = CliRunner().invoke(main, ["queue", "list", str(path), "--status", "all", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["id"]: (r["status"], r["label"]) for r in json.loads(listed.output)} == {
        1: ("confirmed", "positive"), 2: ("confirmed", "hard_negative")}

    # What the CLI does, the panel shows: discard from the command line.
    discarded = CliRunner().invoke(main, ["queue", "discard", str(path), "2"])
    assert discarded.exit_code == 0, discarded.output
    assert not mined.exists()
    statuses = {h["id"]: h["status"] for h in client.get("/api/mining/sessions/s1").json["hits"]}
    assert statuses == {1: "confirmed", 2: "discarded"}


@pytest.mark.parametrize("body, code", [
    ({"ids": [1], "action": "delete"}, "bad_action"),
    ({"ids": [], "action": "discard"}, "no_hits"),
    ({"ids": ["1"], "action": "discard"}, "no_hits"),
    ({"ids": [True], "action": "discard"}, "no_hits"),
    ({"ids": [99], "action": "discard"}, "review_failed"),
])
def test_bad_reviews_change_nothing(client, workspace, body, code):
    path = _session(workspace)
    before = path.read_text()
    answer = client.post("/api/mining/sessions/s1/review", json=body)
    assert answer.status_code == 400 and answer.json["error"]["code"] == code, answer.json
    assert path.read_text() == before


def test_a_complete_session_is_not_resumed(app, client, workspace):
    path = _session(workspace, state="complete")
    data = json.loads(path.read_text())
    data["files"][0]["status"] = "done"
    path.write_text(json.dumps(data))
    answer = client.post("/api/mining/resume", json={"name": "s1"})
    assert answer.status_code == 409 and answer.json["error"]["code"] == "complete"
    assert _no_job(app)


# ---------------------------------------------------------------------- cascade: the health check

class FakeJudge:
    """A real HTTP server on loopback answering each path as told; records what it was sent."""

    def __init__(self, routes: dict[str, tuple[int, object, dict[str, str]]]) -> None:
        self.routes, self.seen = routes, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.seen.append((self.path, self.headers.get("Authorization")))
                status, body, headers = fake.routes.get(self.path, (404, {"error": {"message": "no"}}, {}))
                blob = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


MODEL = {"name": "hey_jarvis", "version": "abc123", "threshold": 0.5, "wake_word": "hey jarvis"}
HEALTHY = {"/healthz": (200, {"status": "ok"}, {}), "/readyz": (200, {"status": "ready"}, {}),
           "/v1/models": (200, {"models": [MODEL]}, {})}


@pytest.fixture
def fake_judge():
    made = []

    def make(**changes):
        made.append(FakeJudge({**HEALTHY, **changes}))
        return made[-1]
    yield make
    for judge in made:
        judge.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_is_unreachable():
    result = check_health(f"http://127.0.0.1:{_closed_port()}", KEY)
    assert result["status"] == "unreachable" and not result["ok"]
    assert "connection refused" in result["message"] and result["checks"][0]["http"] is None


def test_a_listener_that_never_answers_times_out():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = check_health(f"http://127.0.0.1:{sock.getsockname()[1]}", KEY, timeout_s=0.2)
    assert result["status"] == "unreachable" and "timed out" in result["message"]


def test_a_healthy_judge_and_the_key_only_on_the_authenticated_probe(fake_judge):
    judge = fake_judge()
    result = check_health(judge.url + "/v1/verify", KEY)
    assert result["status"] == "ok" and result["model"] == MODEL and result["url"] == judge.url
    assert [c["http"] for c in result["checks"]] == [200, 200, 200]
    assert judge.seen == [("/healthz", None), ("/readyz", None), ("/v1/models", f"Bearer {KEY}")]


@pytest.mark.parametrize("changes, key, status, words", [
    ({"/readyz": (503, {"error": {"message": "model not loaded"}}, {})}, KEY, "not_ready", "model not loaded"),
    ({"/v1/models": (401, {"error": {"message": "wrong API key"}}, {})}, "bad-key-0123456789", "unauthorized",
     "the key was refused"),
    ({"/v1/models": (401, {"error": {"message": "missing API key"}}, {})}, None, "unauthorized", "no API key was given"),
    ({"/healthz": (404, {"error": {"message": "not found"}}, {})}, KEY, "not_a_judge", "hark-judge serve"),
    ({"/healthz": (200, ["hello"], {})}, KEY, "not_a_judge", "hark-judge serve"),
    ({"/v1/models": (500, {"error": {"message": "boom"}}, {})}, KEY, "error", "boom"),
    ({"/v1/models": (200, {"models": []}, {})}, KEY, "error", "HTTP 200"),
])
def test_what_is_wrong_with_a_judge_is_named(fake_judge, changes, key, status, words):
    result = check_health(fake_judge(**changes).url, key)
    assert result["status"] == status and words in result["message"], result


def test_a_redirect_is_not_followed_with_the_key(fake_judge):
    elsewhere = fake_judge()
    judge = fake_judge(**{"/healthz": (302, {}, {"Location": elsewhere.url + "/healthz"})})
    assert check_health(judge.url, KEY)["status"] == "not_a_judge"
    assert elsewhere.seen == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://", "javascript:alert(1)", "", None, 5,
                                 "127.0.0.1:8080", "http://user:pw@127.0.0.1:8080", "http://127.0.0.1:99999"])
def test_judge_urls_are_http_with_a_host(client, url):
    answer = client.post("/api/cascade/health", json={"url": url, "key": KEY})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "bad_url"
    with pytest.raises(StudioError):
        judge_base(url)


def test_judge_base_drops_known_endpoints():
    assert judge_base(" https://judge.lan:8443/v1/verify ") == "https://judge.lan:8443"
    assert judge_base("http://h/prefix/readyz") == "http://h/prefix"


def test_the_key_is_never_written(client, workspace):
    answer = client.post("/api/cascade/health", json={"url": f"http://127.0.0.1:{_closed_port()}", "key": KEY})
    assert answer.status_code == 200 and answer.json["status"] == "unreachable"
    assert KEY not in answer.get_data(as_text=True)
    assert all(KEY.encode() not in p.read_bytes() for p in workspace.rglob("*") if p.is_file())
    assert client.post("/api/cascade/health", json={"url": "http://127.0.0.1:1", "key": "a key"}).json[
        "error"]["code"] == "bad_key"


def test_verify_refuses_a_hostile_header_before_decoding(client, workspace):
    """A 10 KB WAV claiming 1 Hz was a 500 MemoryError after 22.8 s; a long clip was decoded
    whole before its length was checked."""
    import struct
    from io import BytesIO

    def claiming(rate: int, bits: int, data_bytes: int, held: int) -> bytes:
        fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * bits // 8, bits // 8, bits)
        body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)
        return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body + bytes(held)

    form = {"url": f"http://127.0.0.1:{_closed_port()}", "key": KEY, "run": "r1"}
    answer = client.post("/api/cascade/verify",
                         data={**form, "audio": (BytesIO(claiming(1, 16, 10_000, 10_000)), "x.wav")})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "bad_audio"
    assert "sample rate of 1 Hz" in answer.json["error"]["message"]
    long = claiming(8_000, 8, 8_000 * 600, 8_000 * 600)  # 600 s of 8-bit audio, 4.8 MB
    answer = client.post("/api/cascade/verify", data={**form, "audio": (BytesIO(long), "long.wav")})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "too_long"
    assert "600.0 s of audio is more than the 120 s accepted" in answer.json["error"]["message"]


def test_verify_refuses_what_it_cannot_score(client, workspace):
    from io import BytesIO

    url = f"http://127.0.0.1:{_closed_port()}"
    form = {"url": url, "key": KEY, "run": "r1"}
    assert client.post("/api/cascade/verify", data=form).json["error"]["code"] == "no_audio"
    answer = client.post("/api/cascade/verify", data={**form, "audio": (BytesIO(b"not a wav"), "x.wav")})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "bad_audio"
    assert "x.wav" in answer.json["error"]["message"] and str(workspace) not in answer.json["error"]["message"]
    assert list((workspace / "uploads").iterdir()) == []  # the temporary upload is gone
    answer = client.post("/api/cascade/verify", data={**form, "run": "nope", "audio": (BytesIO(b""), "x.wav")})
    assert answer.status_code == 404 and answer.json["error"]["code"] == "no_export"
    answer = client.post("/api/cascade/verify", data={**form, "url": "file:///etc/passwd"})
    assert answer.json["error"]["code"] == "bad_url"


def _wav_header(rate: int, channels: int, width: int, data_bytes: int, declared: int | None = None) -> bytes:
    """A plain PCM WAV: header claiming RATE Hz, then DATA_BYTES of silence."""
    import struct
    block = channels * width
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 8 * width)
    size = data_bytes if declared is None else declared
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", size) + bytes(data_bytes))


@pytest.mark.parametrize("wav, code", [
    (_wav_header(1, 1, 2, 10_000), "bad_audio"),           # 10 kB claiming 1 Hz: outside 8-192 kHz
    (_wav_header(7, 1, 2, 100_000), "bad_audio"),          # the miner's 7 Hz case
    (_wav_header(16_000, 1, 2, 121 * 32_000), "too_long"),  # a real 121 s clip
    (_wav_header(8_000, 2, 2, 10_000, declared=0xFFFFFFFF), None),  # a streaming placeholder size: 0.3 s
    (_wav_header(0, 1, 2, 1000), "bad_audio"),
    (_wav_header(16_000, 0, 2, 1000), "bad_audio"),
])
def test_verify_checks_the_length_from_the_header_before_decoding(client, workspace, monkeypatch, wav, code):
    from io import BytesIO

    import sentry.wav

    decoded = []  # the sample data reaching the decoder, after the header checks
    real_decode = sentry.wav.decode_pcm
    monkeypatch.setattr(sentry.wav, "decode_pcm", lambda raw, *a: decoded.append(len(raw)) or real_decode(raw, *a))
    form = {"url": f"http://127.0.0.1:{_closed_port()}", "key": KEY, "run": "r1",
            "audio": (BytesIO(wav), "long.wav")}
    answer = client.post("/api/cascade/verify", data=form)
    if code is None:  # short enough: handed to the decoder (whatever it then makes of it)
        assert decoded and answer.json["error"]["code"] != "too_long"
        return
    assert answer.status_code == 400 and answer.json["error"]["code"] == code, answer.json
    assert decoded == [], "the upload was decoded before its length was checked"
    assert str(workspace) not in answer.json["error"]["message"]
    assert list((workspace / "uploads").iterdir()) == []
