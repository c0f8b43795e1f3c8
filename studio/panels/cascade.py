"""Cascade Testing panel (/api/cascade): is the judge there, and what does it say about a clip?

POST /api/cascade/health {url, key} probes the judge from the studio server: GET /healthz
(is a judge answering?), /readyz (is its model loaded?) and an authenticated GET /v1/models
(is the key right?), and reports the first thing that is wrong, in words.
POST /api/cascade/verify (multipart: audio, url, key, run) scores the clip with the run's
exported sentry, cuts the judge clip around its peak as a device cuts it around a detection
(sentry.judge_client.clip_span) and asks the judge through the device's own client
(sentry.judge_client.JudgeClient, with a timeout and one retry).

The API key only travels in these requests: it is never stored, logged or echoed back.
"""

from __future__ import annotations

import http.client
import json
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, jsonify, request

from ..context import get_studio
from ..errors import StudioError
from ..workspace import check_name

bp = Blueprint("cascade", __name__, url_prefix="/api/cascade")

HEALTH_TIMEOUT_S = 3.0
"""Seconds per health probe: a judge answers these in milliseconds; three means it is not
answering (a firewall dropping packets, a wrong host)."""
VERIFY_TIMEOUT_S = 5.0
"""Seconds per verify attempt: generous for a judge on a busy machine, short for a user."""
VERIFY_RETRIES = 1
"""Extra attempts after a transient failure (one, not the device's endless patience)."""
MAX_RESPONSE_BYTES = 64 * 1024
"""A health answer is ~500 bytes; more than this is not a judge."""
MAX_CLIP_SECONDS = 120.0
"""Longest recording scored for "Verify with Judge" (seconds): a test clip, not a night.
Checked from the WAV header before anything is decoded (sentry.wav.DecodeBudget)."""
DEVICE_ID = "hark-studio"
MODELS_PATH = "/v1/models"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A judge never redirects; following one would carry the key to another address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def judge_base(url: Any) -> str:
    """The judge's base URL (scheme://host[:port][/prefix]) from what the user typed."""
    text = (url or "").strip() if isinstance(url, str) else ""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise StudioError(f"judge URL {text[:200]!r}: give an http:// or https:// URL with a host, "
                          "e.g. http://127.0.0.1:8080", code="bad_url")
    if parsed.username or parsed.password:
        raise StudioError("judge URL: put the API key in the key field, not in the URL",
                          code="bad_url")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise StudioError(f"judge URL {text[:200]!r}: {exc}", code="bad_url") from None
    path = parsed.path.rstrip("/")
    for suffix in ("/v1/verify", MODELS_PATH, "/healthz", "/readyz"):
        path = path.removesuffix(suffix)
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def _key(value: Any) -> str | None:
    key = value.strip() if isinstance(value, str) else ""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in key):
        raise StudioError("the API key may only hold printable ASCII characters without spaces",
                          code="bad_key")
    return key or None


def _get(url: str, key: str | None, timeout_s: float) -> tuple[int, Any, float]:
    """GET URL -> (HTTP status, JSON body or None, milliseconds). Network failures raise OSError."""
    headers = {"Accept": "application/json", "User-Agent": "hark-studio"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout_s) as answer:
            status, body = answer.status, answer.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(MAX_RESPONSE_BYTES + 1)
        exc.close()
    except http.client.HTTPException as exc:  # garbage instead of HTTP: treat as unreachable
        raise OSError(f"not an HTTP answer ({type(exc).__name__}: {exc})") from exc
    ms = (time.perf_counter() - started) * 1000.0
    try:
        data = json.loads(body) if len(body) <= MAX_RESPONSE_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    return status, data, ms


def _why(exc: OSError, timeout_s: float) -> str:
    reason = getattr(exc, "reason", exc)  # URLError wraps the socket error
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:g} s (timed out)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    return f"{type(reason).__name__}: {reason}"


def _message(data: Any, status: int) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))[:300]
    return f"HTTP {status}"


def check_health(url: str, key: str | None, timeout_s: float = HEALTH_TIMEOUT_S) -> dict[str, Any]:
    """Probe the judge at URL; {"status", "message", "checks", "model"} where status is one of
    unreachable, not_a_judge, not_ready, unauthorized, error or ok."""
    base = judge_base(url)
    checks: list[dict[str, Any]] = []

    def result(status: str, message: str, model: dict | None = None) -> dict[str, Any]:
        return {"status": status, "ok": status == "ok", "message": message, "url": base,
                "checks": checks, "model": model}

    def probe(path: str, auth: str | None = None) -> tuple[int, Any] | None:
        """(status, JSON) of GET base+path, recorded in checks; None when it cannot be reached."""
        try:
            status, data, ms = _get(base + path, auth, timeout_s)
        except OSError as exc:
            checks.append({"path": path, "http": None, "ms": None, "error": _why(exc, timeout_s)})
            return None
        checks.append({"path": path, "http": status, "ms": round(ms, 1)})
        return status, data

    def unreachable() -> dict[str, Any]:
        return result("unreachable", f"cannot reach {base}{checks[-1]['path']}: {checks[-1]['error']}")

    if (answer := probe("/healthz")) is None:
        return unreachable()
    status, data = answer
    if status != 200 or not isinstance(data, dict) or data.get("status") != "ok":
        return result("not_a_judge", f"{base}/healthz answered HTTP {status} without a judge's "
                      "{\"status\": \"ok\"}; is this the URL of `hark-judge serve`?")
    if (answer := probe("/readyz")) is None:
        return unreachable()
    status, data = answer
    if status != 200:
        return result("not_ready", f"the judge is up but not ready ({_message(data, status)}); its "
                      "model is still loading or failed to load: see the judge's log")
    if (answer := probe(MODELS_PATH, key)) is None:
        return unreachable()
    status, data = answer
    if status == 401:
        hint = ("no API key was given: enter the judge's key" if key is None else
                "the key was refused: use a key from the judge's --keys-file")
        return result("unauthorized", f"{_message(data, status)} ({hint})")
    models = data.get("models") if isinstance(data, dict) else None
    if status != 200 or not isinstance(models, list) or not models or not isinstance(models[0], dict):
        return result("error", f"{base}{MODELS_PATH} answered HTTP {status}: {_message(data, status)}")
    model = models[0]
    return result("ok", f"ready: {model.get('name')} {model.get('version')}, threshold "
                  f"{model.get('threshold')}", model)


@bp.post("/health")
def health():
    """{url, key}: what the judge at url says about itself (see check_health)."""
    body = request.get_json(silent=True) or {}
    return jsonify(check_health(body.get("url"), _key(body.get("key"))))


def _read_upload() -> np.ndarray:
    """The uploaded WAV as float32 16 kHz mono (sentry.audio.read_wav: any rate or width),
    once its header says it is short enough to decode."""
    from sentry.audio import read_wav
    from sentry.errors import SentryError
    from sentry.wav import DecodeBudget, WavError

    upload = request.files.get("audio")
    if upload is None or not upload.filename:
        raise StudioError("no audio: upload a WAV file or record from the microphone", code="no_audio")
    with tempfile.NamedTemporaryFile(dir=get_studio().folder("uploads"), prefix=".verify-",
                                     suffix=".wav") as tmp:
        upload.save(tmp)
        tmp.flush()
        try:  # the budget checks rate and length from the header, before anything is decoded
            pcm = read_wav(tmp.name, DecodeBudget(max_seconds=MAX_CLIP_SECONDS))
        except SentryError as exc:
            too_long = isinstance(exc, WavError) and exc.reason == "too_long"
            raise StudioError(f"{upload.filename}: {exc}".replace(tmp.name, "the upload"),
                              code="too_long" if too_long else "bad_audio") from exc
    return pcm


def _sentry(export: Path, pcm: np.ndarray) -> dict[str, Any]:
    """Score PCM with the exported sentry: its best smoothed score, where that peaks (seconds,
    the end of the hop) and the hops where its trigger fires."""
    from sentry.constants import SAMPLE_RATE
    from sentry.detector import Detector
    from sentry.errors import SentryError
    from sentry.postprocess import HOP_SECONDS, detect_hops, smooth

    seconds = pcm.size / SAMPLE_RATE
    if seconds > MAX_CLIP_SECONDS:
        raise StudioError(f"the recording is {seconds:.0f} s long; verify clips up to "
                          f"{MAX_CLIP_SECONDS:.0f} s (cut it around the wake word)", code="too_long")
    try:
        detector = Detector(export)
        scores = detector.score_pcm(pcm)
    except SentryError as exc:
        raise StudioError(str(exc), code="bad_export") from exc
    if scores.size == 0:
        raise StudioError("the recording is shorter than one 80 ms hop; record or upload more",
                          code="too_short")
    settings = detector.settings
    smoothed = smooth(scores, settings.smoothing_hops)
    fired = detect_hops(smoothed, settings.threshold, settings.refractory_hops)
    # The clip is cut around the best moment, as the device cuts it around the hop that fired:
    # a weak model can cross its threshold early on anything, and the question asked here is
    # whether the judge agrees about the wake word, not about the first hop over the line.
    peak = int(np.argmax(smoothed))
    return {"score": round(float(smoothed[peak]), 6), "peak_s": round((peak + 1) * HOP_SECONDS, 3),
            "fired": bool(fired.size), "detections": [round((int(h) + 1) * HOP_SECONDS, 3) for h in fired],
            "threshold": settings.threshold,
            "wake_word": detector.wake_word, "seconds": round(seconds, 3),
            "scores": [[round((i + 1) * HOP_SECONDS, 3), round(float(s), 4)] for i, s in enumerate(smoothed)]}


@bp.post("/verify")
def verify():
    """Multipart audio + url, key, run: the sentry's score beside the judge's verdict."""
    from sentry.constants import SAMPLE_RATE
    from sentry.errors import SentryError
    from sentry.judge_client import JudgeClient, Policy, clip_span

    base = judge_base(request.form.get("url"))
    key = _key(request.form.get("key"))
    run = check_name(request.form.get("run"), "run")
    export = get_studio().folder("runs") / run / "export"
    if not (export / "manifest.json").is_file():
        raise StudioError(f"run {run!r} has no export; export it in the Export panel first",
                          status=404, code="no_export")
    pcm = _read_upload()
    sentry = _sentry(export, pcm)
    start, end = clip_span(sentry["peak_s"])
    clip = pcm[max(start, 0):min(end, pcm.size)]
    try:
        client = JudgeClient(base, key, timeout_s=VERIFY_TIMEOUT_S, retries=VERIFY_RETRIES,
                             policy=Policy.FAIL_CLOSED, device_id=DEVICE_ID)
    except SentryError as exc:
        raise StudioError(str(exc), code="bad_url") from exc
    verdict = client.verify_pcm(clip, sentry_score=sentry["score"])
    return jsonify({"sentry": sentry, "judge": verdict.to_dict(), "url": base,
                    "clip": {"start_s": round(max(start, 0) / SAMPLE_RATE, 3),
                             "end_s": round(min(end, pcm.size) / SAMPLE_RATE, 3),
                             "seconds": round(clip.size / SAMPLE_RATE, 3)}})
