"""The judge's HTTP API through the application factory (Flask's test client), on a
real onnxruntime session of a small clip graph."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import soundfile as sf

from judge import create_app
from judge.errors import JudgeError
from sentry.constants import SAMPLE_RATE

CLIP_S = 2.24  # what a sentry sends: 2.0 s of lead, 0.24 s after the detection
TONE = (0.4, 2.1)  # seconds: longer than the 1.5 s window, so one window is all tone


@pytest.fixture(scope="module")
def app(judge_model, judge_spec):
    return create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key],
                       "ENVIRON": {}, "MAX_BODY_BYTES": 4 * 1024 * 1024, "MAX_CLIP_SECONDS": 10.0})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def auth(judge_spec):
    return {"Authorization": f"Bearer {judge_spec.key}", "Content-Type": "audio/wav"}


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16",
              channels: int = 1) -> bytes:
    data = np.repeat(audio[:, None], channels, axis=1) if channels > 1 else audio
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def header(rate=SAMPLE_RATE, channels=1, bits=16, tag=1, data_size=0) -> bytes:
    """A canonical 44-byte WAV header with whatever it is told to claim."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) % 2**32, block, bits)
    return (b"RIFF" + struct.pack("<I", min(36 + data_size, 2**32 - 1)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size))


def post(client, body: bytes, headers: dict, query: str = ""):
    return client.post("/v1/verify" + query, data=body, headers=headers)


def error_of(response) -> dict:
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


# ------------------------------------------------------------------ verify

def test_a_clip_holding_the_wake_word_is_verified(client, auth, judge_spec):
    body = wav_bytes(judge_spec.make_clip(CLIP_S, TONE))
    response = post(client, body, auth, "?sentry_score=0.61&device_id=kitchen-1")
    assert response.status_code == 200
    verdict = response.get_json()
    assert list(verdict) == ["verified", "score", "threshold", "model", "model_version",
                             "latency_ms", "clip_seconds", "device_id", "sentry_score"]
    assert verdict["verified"] is True and verdict["score"] > 0.95
    assert verdict["threshold"] == 0.5 and verdict["model"] == "test_tone"
    assert len(verdict["model_version"]) == 12 and 0 < verdict["latency_ms"] < 10_000
    assert verdict["clip_seconds"] == pytest.approx(CLIP_S, abs=1e-3)
    assert verdict["device_id"] == "kitchen-1" and verdict["sentry_score"] == 0.61


def test_noise_and_another_tone_are_rejected(client, auth, judge_spec):
    noise = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, None)), auth).get_json()
    assert noise["verified"] is False and noise["score"] < 0.01
    other = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE, hz=1_500.0)), auth).get_json()
    assert other["verified"] is False and other["score"] < 0.01


def test_only_the_clip_tail_is_searched_for_the_wake_word(client, auth, judge_spec):
    """The wake word ends in a clip's last second: the same tone late in a long clip
    scores as in a sentry's clip; early in it, it is not looked at."""
    late = post(client, wav_bytes(judge_spec.make_clip(6.0, (4.2, 5.9))), auth).get_json()
    early = post(client, wav_bytes(judge_spec.make_clip(6.0, (0.2, 1.9))), auth).get_json()
    short = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE)), auth).get_json()
    assert late["verified"] and not early["verified"]
    assert late["score"] == pytest.approx(short["score"], abs=0.02)


@pytest.mark.parametrize("rate,subtype,channels", [
    (44_100, "PCM_16", 2), (48_000, "PCM_24", 1), (8_000, "PCM_U8", 1),
    (16_000, "FLOAT", 1), (22_050, "DOUBLE", 2), (32_000, "PCM_32", 6)])
def test_common_rates_encodings_and_channel_counts_are_decoded(client, auth, judge_spec,
                                                             rate, subtype, channels):
    tone = wav_bytes(judge_spec.make_clip(CLIP_S, TONE, rate=rate), rate, subtype, channels)
    noise = wav_bytes(judge_spec.make_clip(CLIP_S, None, rate=rate), rate, subtype, channels)
    yes, no = post(client, tone, auth), post(client, noise, auth)
    assert yes.status_code == no.status_code == 200, yes.data
    assert yes.get_json()["verified"] and not no.get_json()["verified"]
    assert yes.get_json()["clip_seconds"] == pytest.approx(CLIP_S, abs=1e-3)


def test_a_threshold_override_changes_the_verdict(judge_model, judge_spec, auth):
    strict = create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key],
                         "ENVIRON": {}, "THRESHOLD": 0.9999999})
    body = wav_bytes(judge_spec.make_clip(CLIP_S, (0.4, 1.7)))  # scores between 0.5 and 1
    verdict = post(strict.test_client(), body, auth).get_json()
    assert verdict["threshold"] == 0.9999999 and 0.5 < verdict["score"] < 0.9999999
    assert verdict["verified"] is False


# ------------------------------------------------------------------ auth

@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-wrong-key-wrong", "Basic abc",
                                           "Bearer", "Bearer \u00e9t\u00e9-key"])
def test_missing_or_wrong_keys_get_401(client, judge_spec, authorization):
    headers = {"Content-Type": "audio/wav"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE)), headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_keys_come_from_a_file_and_the_environment(judge_model, judge_spec, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# kitchen\nfile-key-0123456789abcdef  # the kitchen speaker\n\n")
    app = create_app({"MODEL_DIR": str(judge_model), "KEYS_FILE": str(keys),
                      "ENVIRON": {"HARK_JUDGE_KEYS": "env-key-0123456789abcdef,other-key-0123456789ab"}})
    body = wav_bytes(judge_spec.make_clip(CLIP_S, TONE))
    for key, status in [("file-key-0123456789abcdef", 200), ("env-key-0123456789abcdef", 200),
                        ("other-key-0123456789ab", 200), ("# kitchen", 401), (judge_spec.key, 401)]:
        response = post(app.test_client(), body, {"Authorization": f"Bearer {key}",
                                                  "Content-Type": "audio/wav"})
        assert response.status_code == status, key


@pytest.mark.parametrize("config,message", [
    ({"ENVIRON": {}}, "no API keys configured"),
    ({"API_KEYS": ["short"], "ENVIRON": {}}, "shorter than 16"),
    ({"KEYS_FILE": "/nonexistent/keys", "ENVIRON": {}}, "cannot read the keys file"),
    ({"API_KEYS": ["k" * 20], "MAX_CLIP_SECONDS": 0, "ENVIRON": {}}, "limits out of range"),
])
def test_a_bad_setup_fails_at_startup_with_a_reason(judge_model, config, message):
    with pytest.raises(JudgeError, match=message):
        create_app({"MODEL_DIR": str(judge_model), **config})


def test_a_model_folder_without_the_sentry_graphs_is_refused(tmp_path, judge_spec):
    folder = judge_spec.write_judge_model(tmp_path / "clip_only")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {"model": "model.onnx", "clip": "clip.onnx"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JudgeError, match="no 'features' graph"):
        create_app({"MODEL_DIR": str(folder), "API_KEYS": [judge_spec.key], "ENVIRON": {}})
    with pytest.raises(JudgeError, match="no manifest"):
        create_app({"MODEL_DIR": str(tmp_path), "API_KEYS": [judge_spec.key], "ENVIRON": {}})


# ------------------------------------------------------------------ bad input

def _pcm16(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    return np.zeros(int(seconds * rate), "<i2").tobytes()


BAD_BODIES = {
    "empty_body": b"",
    "not_wav": b"hello, judge",
    "not_wav_json": json.dumps({"verified": True}).encode(),
    "truncated": header(data_size=32_000) + _pcm16(0.1),
    "gigabytes_claimed": header(data_size=0xFFFFFFF0) + _pcm16(0.5),
    "no_data_chunk": header()[:36],
    "zero_length_audio": header(data_size=0),
    "odd_rate": header(rate=12_345, data_size=3200) + _pcm16(0.1),
    "huge_rate": header(rate=4_000_000_000, data_size=3200) + _pcm16(0.1),
    "zero_channels": header(channels=0, data_size=3200) + _pcm16(0.1),
    "too_many_channels": header(channels=64, data_size=128 * 100) + bytes(128 * 100),
    "alaw": header(tag=6, bits=8, data_size=1600) + bytes(1600),
    "40_bit": header(bits=40, data_size=3200) + _pcm16(0.1),
    "ten_minutes_at_8k": header(rate=8_000, bits=8, data_size=8_000 * 600) + bytes(0),
    "eleven_seconds": header(data_size=2 * 16_000 * 11) + _pcm16(11.0),
}
EXPECTED_CODES = {
    "empty_body": "empty_body", "not_wav": "not_wav", "not_wav_json": "not_wav",
    "truncated": "bad_wav", "gigabytes_claimed": "bad_wav", "no_data_chunk": "bad_wav",
    "zero_length_audio": "empty_audio", "odd_rate": "unsupported_rate",
    "huge_rate": "unsupported_rate", "zero_channels": "unsupported_encoding",
    "too_many_channels": "bad_wav", "alaw": "unsupported_encoding",
    "40_bit": "unsupported_encoding", "ten_minutes_at_8k": "bad_wav",
    "eleven_seconds": "clip_too_long",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_get_a_400_naming_the_problem(client, auth, name):
    response = post(client, BAD_BODIES[name], auth)
    assert response.status_code == 400, response.data
    assert error_of(response)["code"] == EXPECTED_CODES[name]


def test_a_ten_minute_clip_that_fits_the_body_limit_is_too_long(judge_model, judge_spec, auth):
    app = create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key],
                      "ENVIRON": {}, "MAX_BODY_BYTES": 8 * 1024 * 1024})
    body = header(rate=8_000, bits=8, data_size=8_000 * 600) + bytes(8_000 * 600)
    response = post(app.test_client(), body, auth)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "clip_too_long" and "600.0 s" in error["message"]


def test_decode_work_is_bounded_from_the_header_by_duration_and_rate(judge_model, judge_spec, auth):
    """10 s of 192 kHz float cost the judge 0.7 s of resampling against ~10 ms for a sentry's
    clip: the decoded samples (frames x channels) are capped at 10 s of 48 kHz stereo."""
    app = create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key],
                      "ENVIRON": {}, "MAX_BODY_BYTES": 8 * 1024 * 1024})
    client = app.test_client()
    heavy = wav_bytes(judge_spec.make_clip(10.0, (8.0, 9.9), rate=192_000), 192_000, "FLOAT")
    response = post(client, heavy, auth)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "clip_too_long" and "1,920,000 samples" in error["message"]
    light = wav_bytes(judge_spec.make_clip(CLIP_S, TONE, rate=192_000), 192_000, "FLOAT")
    verdict = post(client, light, auth)
    assert verdict.status_code == 200 and verdict.get_json()["verified"]


def test_nan_in_a_float_wav_is_refused(client, auth, judge_spec):
    audio = judge_spec.make_clip(CLIP_S, TONE)
    audio[100] = np.nan
    response = post(client, wav_bytes(audio, subtype="FLOAT"), auth)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_audio"


def test_a_body_over_the_limit_gets_413(client, auth):
    response = post(client, header(data_size=5 * 2**20) + bytes(5 * 2**20), auth)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large" and str(4 * 2**20) in error["message"]


@pytest.mark.parametrize("query", ["?sentry_score=abc", "?sentry_score=1.5", "?sentry_score=nan",
                                   "?sentry_score=-0.1", "?device_id=has%20space",
                                   "?device_id=" + "x" * 65, "?device_id=", "?colour=blue"])
def test_garbage_parameters_get_a_400(client, auth, judge_spec, query):
    response = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE)), auth, query)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_parameter"


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain",
                                          "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_declared_as_wav_gets_415(client, judge_spec, content_type):
    headers = {"Authorization": f"Bearer {judge_spec.key}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE)), headers)
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


def test_unknown_paths_and_methods_are_json_errors(client, auth):
    missing = client.get("/v2/verify")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong_method = client.get("/v1/verify", headers=auth)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"


def test_fuzzed_wav_bodies_never_crash_the_server(client, auth, judge_spec):
    """Seeded mutations of a valid WAV: byte flips, header field overwrites, cuts and
    splices. Every answer is a verdict or a JSON 4xx, never a 500."""
    rng = np.random.default_rng(1234)
    valid = bytearray(wav_bytes(judge_spec.make_clip(0.6, (0.1, 0.5))))
    statuses = set()
    for _ in range(300):
        body = bytearray(valid)
        kind = rng.integers(4)
        if kind == 0:  # random bytes anywhere, header included
            for pos in rng.integers(0, 64, rng.integers(1, 6)):
                body[pos] = int(rng.integers(256))
        elif kind == 1:  # a random 32-bit value over a header field
            pos = int(rng.choice([4, 16, 20, 22, 24, 28, 32, 34, 40]))
            body[pos:pos + 4] = struct.pack("<I", int(rng.integers(0, 2**32)))
        elif kind == 2:  # cut anywhere
            body = body[:int(rng.integers(0, len(body)))]
        else:  # splice random bytes into the middle of the header
            pos = int(rng.integers(0, 44))
            body[pos:pos] = rng.bytes(int(rng.integers(1, 16)))
        response = post(client, bytes(body), auth)
        statuses.add(response.status_code)
        assert response.status_code in (200, 400), (response.status_code, bytes(body[:48]))
        if response.status_code == 400:
            error_of(response)
    assert statuses == {200, 400}  # the fuzzing reached both outcomes
    assert client.get("/healthz").status_code == 200


# ------------------------------------------------------------------ operations

def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["model"] == "test_tone"


def test_models_lists_the_served_model_and_needs_a_key(client, auth):
    assert client.get("/v1/models").status_code == 401
    models = client.get("/v1/models", headers=auth).get_json()["models"]
    assert len(models) == 1
    model = models[0]
    assert model["wake_word"] == "test tone" and model["threshold"] == 0.5
    assert model["window_seconds"] == 1.5 and model["step_seconds"] == 0.08
    assert model["version"] == client.get("/readyz").get_json()["model_version"]


def test_metrics_count_requests_latency_and_verdicts(judge_model, judge_spec, auth):
    app = create_app({"MODEL_DIR": str(judge_model), "API_KEYS": [judge_spec.key], "ENVIRON": {}})
    client = app.test_client()
    post(client, wav_bytes(judge_spec.make_clip(CLIP_S, TONE)), auth)
    post(client, wav_bytes(judge_spec.make_clip(CLIP_S, None)), auth)
    post(client, wav_bytes(judge_spec.make_clip(CLIP_S, None)), auth)
    post(client, b"junk", auth)
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)

    def value(prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        assert len(lines) == 1, (prefix, lines)
        return float(lines[0].rsplit(" ", 1)[1])

    verify = 'endpoint="/v1/verify",method="POST"'
    assert value(f'hark_judge_requests_total{{{verify},status="200"') == 3
    assert value(f'hark_judge_requests_total{{{verify},status="400"') == 1
    assert value('hark_judge_requests_total{endpoint="unmatched",method="GET",status="404"') == 1
    assert value('hark_judge_verdicts_total{verdict="verified"') == 1
    assert value('hark_judge_verdicts_total{verdict="rejected"') == 2
    assert value('hark_judge_request_duration_seconds_count{endpoint="/v1/verify"') == 4
    assert value('hark_judge_request_duration_seconds_bucket{endpoint="/v1/verify",le="+Inf"') == 4
    buckets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('hark_judge_request_duration_seconds_bucket{endpoint="/v1/verify"')]
    assert buckets == sorted(buckets)  # cumulative


def test_the_openapi_document_describes_every_route(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(document["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            methods = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
            assert methods == set(document["paths"][rule.rule]), rule.rule
    verdict = document["components"]["schemas"]["Verdict"]
    assert set(verdict["required"]) == set(verdict["properties"])
