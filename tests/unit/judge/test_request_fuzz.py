"""Seeded fuzz of the judge's request handling (hypothesis), through the application
factory's test client on the fixture's real onnxruntime model.

Random methods, paths, query strings, headers, content types and bodies (random bytes,
real WAVs truncated or with bytes and header fields overwritten): whatever comes in,
the answer is JSON with a status below 500 (an OPTIONS on a known path gets HTTP's
own empty 200 with an Allow header, a HEAD no body, /metrics Prometheus text). The one 5xx a judge sends by design, the
full server's 503, comes from the socket guard (judge.server), which this client does
not pass through (tests/unit/judge/test_serve_limits.py covers it).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from judge import create_app
from sentry.constants import SAMPLE_RATE

MAX_BODY = 256 * 1024  # small, so the 413 path is reached too
FUZZ = settings(derandomize=True, max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
"""derandomize: the same examples on every run (a seed from the test's name), so a
failure reproduces and CI never turns red by chance; ~200 requests take a few seconds."""

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
PATHS = ["/v1/verify", "/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/",
         "/v1", "/v1/", "/v1/verify/", "/v2/verify", "/static/x", "/%00", "/v1/verify%2F..",
         "/" + "a" * 3000]
CONTENT_TYPES = ["audio/wav", "audio/x-wav", "audio/wave", "application/octet-stream",
                 "application/json", "multipart/form-data; boundary=x", "text/plain", "",
                 "audio/wav; charset=utf-8", "audio/wav;;;", "\u00e9/\u00e9"]
QUERY_KEYS = ["sentry_score", "device_id", "x", "", "sentry_score[]"]


@pytest.fixture(scope="module")
def client(judge_model, judge_spec):
    app = create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key],
                      "ENVIRON": {}, "MAX_BODY_BYTES": MAX_BODY, "MAX_CLIP_SECONDS": 4.0})
    return app.test_client()


def _wav(audio: np.ndarray, rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def real_wavs(judge_spec) -> list[bytes]:
    clip = judge_spec.make_clip(2.24, (0.4, 2.1))
    return [_wav(clip, SAMPLE_RATE, "PCM_16"), _wav(clip[:8000], 8000, "PCM_U8"),
            _wav(clip[:4000], 48_000, "FLOAT"), _wav(clip[:3000], 22_050, "PCM_24"),
            _wav(np.stack([clip, -clip], axis=1)[:5000], SAMPLE_RATE, "PCM_32")]


# Header fields a mutation may overwrite: (offset, struct format) in a canonical WAV.
HEADER_FIELDS = [(4, "<I"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"), (28, "<I"),
                 (32, "<H"), (34, "<H"), (40, "<I")]


@st.composite
def bodies(draw, wavs: list[bytes]) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "fields", "empty"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "empty":
        return b""
    wav = bytearray(draw(st.sampled_from(wavs)))
    if kind == "truncated":
        return bytes(wav[:draw(st.integers(0, len(wav)))])
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            wav[draw(st.integers(0, min(len(wav), 64) - 1))] = draw(st.integers(0, 255))
        return bytes(wav)
    for _ in range(draw(st.integers(1, 3))):
        offset, fmt = draw(st.sampled_from(HEADER_FIELDS))
        limit = 2 ** (8 * struct.calcsize(fmt)) - 1
        value = draw(st.one_of(st.sampled_from([0, 1, 2, 7, 8000, 192_000, 4_000_000_000, limit]),
                               st.integers(0, limit)))
        wav[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, min(value, limit))
    return bytes(wav)


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                    exclude_characters="\r\n"), max_size=80)


@st.composite
def requests(draw, wavs: list[bytes], key: str) -> dict:
    # Most requests go where the work is (an authorised POST to /v1/verify), so the
    # fuzz reaches decoding and scoring rather than stopping at the router or the key.
    target = draw(st.sampled_from(["verify"] * 6 + ["known", "random"]))
    if target == "verify":
        path = "/v1/verify"
    elif target == "known":
        path = draw(st.sampled_from(PATHS))
    else:
        path = "/" + draw(st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                                exclude_characters="?#"), max_size=40))
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.one_of(
        st.sampled_from(["0.5", "1", "-1", "nan", "inf", "1e309", "hall-2", "a" * 100, ""]),
        header_text)), max_size=3))
    headers = {}
    auth = draw(st.sampled_from(["key"] * 5 + ["wrong", "random", "none", "basic"]))
    if auth != "none":
        headers["Authorization"] = {"key": f"Bearer {key}", "wrong": "Bearer " + "x" * 24,
                                    "basic": "Basic dXNlcjpwYXNz",
                                    "random": None}[auth] or draw(header_text)
    content_type = draw(st.one_of(st.sampled_from(["audio/wav"] * 4 + CONTENT_TYPES), header_text))
    if content_type:
        headers["Content-Type"] = content_type
    for name in draw(st.lists(st.sampled_from(["Accept", "Content-Encoding", "Transfer-Encoding",
                                               "Expect", "X-Forwarded-For", "Range"]), max_size=2)):
        headers[name] = draw(header_text)
    return {"method": draw(st.sampled_from(["POST"] * 6 + METHODS)), "path": path, "query_string": params,
            "headers": headers, "data": draw(bodies(wavs))}


def test_no_request_makes_the_judge_fail(client, real_wavs, judge_spec):
    seen: dict[int, int] = {}

    @FUZZ
    @given(requests(real_wavs, judge_spec.key))
    def check(req):
        response = client.open(req["path"], method=req["method"], query_string=req["query_string"],
                               headers=req["headers"], data=req["data"])
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (req, response.data[:300])
        if req["method"] == "OPTIONS" and response.status_code == 200:
            # HTTP's own answer for a known path: the methods it takes, no body.
            assert response.headers["Allow"] and not response.data
        elif response.status_code == 200 and req["path"] == "/metrics":
            assert response.mimetype == "text/plain"  # Prometheus' text format, by design
        elif req["method"] != "HEAD":  # a HEAD answer has no body, by definition
            assert response.is_json, (req, response.status_code, response.data[:200])
            body = response.get_json()
            assert isinstance(body, dict)
            if response.status_code >= 400:
                assert set(body["error"]) == {"code", "message"} and body["error"]["message"]

    check()
    # The fuzz reached the handlers, not only the router: verdicts, refusals and decoding errors.
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0 and seen.get(401, 0) > 0, seen
    assert seen.get(404, 0) > 0 and seen.get(405, 0) > 0, seen
