"""The studio only its user can drive (studio/security.py): a Host check against DNS
rebinding, an Origin check and a per-launch CSRF token on every state-changing request,
tokens compared without a 500 whatever their characters. Through plain Flask clients (which,
unlike the page's, send no CSRF token) and a real waitress server on loopback."""

from __future__ import annotations

import http.client
import importlib.util
import io
import re
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from flask.testing import FlaskClient

from studio import create_app, get_studio
from studio.security import CSRF_HEADER

_SENTRY_FIXTURES = Path(__file__).parents[1] / "sentry" / "conftest.py"
_spec = importlib.util.spec_from_file_location("hark_test_sentry_fixtures_for_security", _SENTRY_FIXTURES)
tone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tone)

RATE = 16_000
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
"""A job that runs until it is stopped."""
EVIL = "http://attacker.example"


def raw(app) -> FlaskClient:
    """A client that sends only the headers each request names (no CSRF token)."""
    return FlaskClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def app(tmp_path):
    return create_app(tmp_path / "ws")


def _csrf_from_page(client: FlaskClient) -> str:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    match = re.search(r'<meta name="hark-csrf" content="([^"]+)">', page.get_data(as_text=True))
    assert match, "index.html carries no CSRF token"
    return match.group(1)


def _running(app, kind: str):
    with app.app_context():
        jobs = get_studio().jobs
        job = jobs.start(kind, SLEEPER, title=f"test {kind}")
        assert jobs.current(kind).state == "running"
        return job


def _state(app, kind: str) -> str:
    with app.app_context():
        return get_studio().jobs.current(kind).state


def test_a_cross_origin_post_cannot_stop_a_running_job(app):
    client = raw(app)
    _running(app, "mine")
    _running(app, "train")
    try:
        for path in ("/api/mining/pause", "/api/jobs/train/stop", "/api/jobs/mine/stop"):
            # what a form or fetch() on another site sends: its Origin, no token, no body
            answer = client.post(path, headers={"Origin": EVIL})
            assert answer.status_code == 403, path
            assert answer.get_json()["error"]["code"] == "cross_origin"
            answer = client.post(path)  # no Origin, but no token either
            assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "csrf_token"
            answer = client.post(path, headers={CSRF_HEADER: "guessed"})
            assert answer.status_code == 403
        assert _state(app, "mine") == "running" and _state(app, "train") == "running"
        # the studio's own page has the token and its own Origin: that stop goes through
        token = _csrf_from_page(client)
        answer = client.post("/api/jobs/train/stop", headers={CSRF_HEADER: token, "Origin": "http://localhost"})
        assert answer.status_code == 200 and _state(app, "train") in ("stopping", "stopped", "failed")
        # a correct token from another origin is still refused
        answer = client.post("/api/jobs/mine/stop", headers={CSRF_HEADER: token, "Origin": EVIL})
        assert answer.status_code == 403 and _state(app, "mine") == "running"
    finally:
        with app.app_context():
            get_studio().jobs.shutdown()


def test_each_launch_has_its_own_csrf_token(tmp_path):
    first, second = create_app(tmp_path / "a"), create_app(tmp_path / "b")
    token = _csrf_from_page(raw(first))
    assert token != _csrf_from_page(raw(second)) and len(token) >= 32
    refused = raw(second).post("/api/config/validate", json={"config": {}}, headers={CSRF_HEADER: token})
    assert refused.status_code == 403
    ok = raw(first).post("/api/config/validate", json={"config": {}}, headers={CSRF_HEADER: token})
    assert ok.status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8765", "127.0.0.1.nip.io",
                                  "localhost.attacker.example", "user@localhost", "10.1.2.3"])
def test_a_foreign_host_header_is_refused(app, host):
    answer = raw(app).get("/api/files?path=workspace", headers={"Host": host})
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "bad_host"
    assert raw(app).get("/", headers={"Host": host}).status_code == 403  # nor the token's page


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST"])
def test_loopback_hosts_are_served(app, host):
    assert raw(app).get("/api/files?path=workspace", headers={"Host": host}).status_code == 200


def test_configured_and_allowed_hosts(tmp_path):
    lan = create_app(tmp_path / "ws", host="192.168.7.7", token="tok-0123456789",
                     allowed_hosts=("studio.lan",))
    bearer = {"Authorization": "Bearer tok-0123456789"}
    for host in ("192.168.7.7:80", "studio.lan", "localhost"):
        assert raw(lan).get("/api/state", headers={**bearer, "Host": host}).status_code == 200, host
    assert raw(lan).get("/api/state", headers={**bearer, "Host": "evil.lan"}).status_code == 403
    # the access token in a header is no browser's doing, so it stands for the CSRF token
    assert raw(lan).post("/api/config/validate", json={"config": {}},
                         headers={**bearer, "Host": "studio.lan"}).status_code == 200
    everywhere = create_app(tmp_path / "ws2", host="0.0.0.0", token="tok-0123456789")
    assert raw(everywhere).get("/api/state", headers={**bearer, "Host": "10.1.2.3:8765"}).status_code == 200
    assert raw(everywhere).get("/api/state", headers={**bearer, "Host": "rebind.example"}).status_code == 403


@pytest.mark.parametrize("where", ["query", "cookie", "bearer"])
def test_a_non_ascii_token_is_refused_cleanly(tmp_path, where):
    app = create_app(tmp_path / "ws", token="tok-0123456789")
    client = raw(app)
    bad = "tök-ü-\u2603"
    if where == "query":
        answer = client.get(f"/api/state?token={bad}")
    elif where == "cookie":
        client.set_cookie("hark_studio_token", bad)
        answer = client.get("/api/state")
    else:
        answer = client.get("/api/state", headers={"Authorization": f"Bearer {bad}".encode().decode("latin-1")})
    assert answer.status_code in (401, 403), answer.get_data(as_text=True)
    assert "error" in answer.get_json()
    csrf = raw(create_app(tmp_path / "ws2")).post("/api/jobs/x/stop", headers={CSRF_HEADER: "\u00e9t\u00e9"})
    assert csrf.status_code == 403


def test_the_page_is_not_framed_and_types_are_not_sniffed(app):
    answer = raw(app).get("/api/state")
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def _wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * RATE), np.float32), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_a_cross_origin_verify_never_reaches_an_internal_url(tmp_path):
    """Blind SSRF: another site's form posts url=<an internal service> to /api/cascade/verify."""
    tone.write_model_dir(tmp_path / "ws" / "runs" / "tone" / "export")
    app = create_app(tmp_path / "ws")
    with socket.socket() as internal:
        internal.bind(("127.0.0.1", 0))
        internal.listen(4)
        internal.settimeout(0.5)
        url = f"http://127.0.0.1:{internal.getsockname()[1]}/admin/delete-everything"
        for headers in ({"Origin": EVIL}, {}):
            answer = raw(app).post("/api/cascade/verify", headers=headers, content_type="multipart/form-data",
                                   data={"url": url, "key": "k", "run": "tone",
                                         "audio": (io.BytesIO(_wav_bytes(1.0)), "clip.wav")})
            assert answer.status_code == 403
            with pytest.raises(TimeoutError):
                internal.accept()[0].close()  # nothing ever connected
        answer = raw(app).post("/api/cascade/health", json={"url": url}, headers={"Origin": EVIL})
        assert answer.status_code == 403
        with pytest.raises(TimeoutError):
            internal.accept()[0].close()


# ------------------------------------------------------------------ a real server

@pytest.fixture
def served(tmp_path):
    """The app under waitress on a free loopback port, as `hark studio` runs it."""
    from waitress.server import create_server

    app = create_app(tmp_path / "ws")
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    with app.app_context():
        get_studio().hosts.port = int(server.effective_port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield app, int(server.effective_port)
    server.close()
    thread.join(timeout=5)


def _request(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_a_rebinding_page_gets_nothing_from_a_real_server(served):
    app, port = served
    assert _request(port, "GET", "/api/files?path=workspace", {"Host": f"127.0.0.1:{port}"})[0] == 200
    assert _request(port, "GET", "/api/files?path=workspace", {"Host": f"localhost:{port}"})[0] == 200
    for host in (f"attacker.example:{port}", f"127.0.0.1:{port + 1}"):
        status, body = _request(port, "GET", "/api/files?path=workspace", {"Host": host})
        assert status == 403 and b"bad_host" in body, host
    status, page = _request(port, "GET", "/", {"Host": f"localhost:{port}"})
    token = re.search(rb'name="hark-csrf" content="([^"]+)"', page).group(1).decode()
    origin = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert _request(port, "POST", "/api/jobs/x/stop", origin)[0] == 403
    # With the page's token from the page's origin the request reaches the API (no such job).
    status, body = _request(port, "POST", "/api/jobs/x/stop", {**origin, CSRF_HEADER: token})
    assert status not in (401, 403) and b"csrf" not in body


# ------------------------------------------------------------------ hostile paths

HOSTILE_PATHS = ["workspace/a\x00b.wav", "workspace/\x00", "workspace/" + "n" * 300 + ".wav",
                 "workspace/" + "/".join(["d" * 200] * 30), "workspace/" + "é" * 200]
"""A NUL byte, a name over 255 bytes, a path over 4096 bytes, a name of 400 UTF-8 bytes."""


def _no_absolute_paths(answer, tmp_path) -> None:
    text = answer.get_data(as_text=True)
    assert str(tmp_path) not in text and "/tmp" not in text and "Traceback" not in text, text


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_a_400_without_absolute_paths(tmp_path, path):
    (tmp_path / "ws" / "data" / "d1").mkdir(parents=True)
    (tmp_path / "ws" / "runs" / "r1" / "export").mkdir(parents=True)
    (tmp_path / "ws" / "runs" / "r1" / "export" / "manifest.json").write_text("{}")
    client = create_app(tmp_path / "ws").test_client()
    answers = [client.get("/api/files", query_string={"path": path}),
               client.get("/api/audio", query_string={"path": path}),
               client.get("/api/config/realpath", query_string={"path": path}),
               client.post("/api/data/import", json={"dataset": "d1", "label": "positive", "paths": [path]}),
               client.post("/api/mining/start", json={"name": "s1", "run": "r1", "dataset": "d1",
                                                      "paths": [path]})]
    for answer in answers:
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert answer.get_json()["error"]["code"] == "bad_path"
        _no_absolute_paths(answer, tmp_path)


def test_a_symlink_loop_is_a_400(tmp_path):
    app = create_app(tmp_path / "ws")
    loop = tmp_path / "ws" / "data" / "loop"
    loop.symlink_to(loop)
    answer = app.test_client().get("/api/files", query_string={"path": "workspace/data/loop/x.wav"})
    assert answer.status_code in (400, 403, 404)
    _no_absolute_paths(answer, tmp_path)


def test_an_unexpected_error_names_its_type_but_no_path(app, tmp_path):
    secret = tmp_path / "home" / "someone" / "secret.key"

    def boom():
        raise PermissionError(13, "Permission denied", str(secret))

    app.add_url_rule("/api/boom", view_func=boom)
    answer = app.test_client().get("/api/boom")
    assert answer.status_code == 500
    assert answer.get_json()["error"] == {"code": "internal_error", "message": (
        "unexpected error (PermissionError); the `hark studio` log has the details")}
    _no_absolute_paths(answer, tmp_path)
