"""The versioned API (`/v1`): verify a clip, list the served model.

POST /v1/verify
    body: a WAV file (Content-Type: audio/wav), any SUPPORTED_RATES rate, mono or
    multi-channel, holding pre-roll (>= 0.5 s before the sentry fired), the wake word
    and a little after: the wake word must end in the clip's last SCORED_TAIL_SECONDS
    (0.96 s), where the windows are scored (judge.verifier). Query parameters, both
    optional: sentry_score (0..1, the sentry's smoothed score, logged) and device_id
    (letters, digits, '._:-').
    answer: {"verified", "score", "threshold", "model", "model_version", "latency_ms",
    "clip_seconds", "device_id", "sentry_score"}.
GET /v1/models
    the model this server runs, with its threshold and version.

Both need `Authorization: Bearer <key>`. See judge/openapi.json for the full contract.
"""

from __future__ import annotations

import logging
import math
import re
import time

from flask import Blueprint, current_app, g, jsonify, request

from .auth import authorize
from .errors import UNSUPPORTED_MEDIA_TYPE, JudgeError
from .verifier import decode_wav

log = logging.getLogger(__name__)

v1 = Blueprint("v1", __name__, url_prefix="/v1")

WAV_MEDIA_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
                   "application/octet-stream")
"""Content types taken as a WAV body (the registered name has several spellings)."""

DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""A device id is logged; restricting it keeps log lines and label values clean."""

VERIFY_PARAMS = ("sentry_score", "device_id")

SCORE_DECIMALS = 6
LATENCY_DECIMALS = 3


def _state():
    return current_app.extensions["hark_judge"]


def _params() -> tuple[float | None, str | None]:
    """Validated optional query parameters of /v1/verify."""
    unknown = sorted(set(request.args) - set(VERIFY_PARAMS))
    if unknown:
        raise JudgeError(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                         f"accepted: {', '.join(VERIFY_PARAMS)}", code="bad_parameter")
    sentry_score = None
    raw = request.args.get("sentry_score")
    if raw is not None:
        try:
            sentry_score = float(raw)
        except ValueError:
            sentry_score = math.nan
        if not 0.0 <= sentry_score <= 1.0:  # also false for NaN
            raise JudgeError(f"sentry_score must be a number in [0, 1], got {raw[:40]!r}",
                             code="bad_parameter")
    device_id = request.args.get("device_id")
    if device_id is not None and not DEVICE_ID.fullmatch(device_id):
        raise JudgeError("device_id must be 1-64 characters of letters, digits and '._:-', got "
                         f"{device_id[:40]!r}", code="bad_parameter")
    return sentry_score, device_id


@v1.post("/verify")
def verify():
    """Score one clip and say whether the detection it holds is real."""
    state = _state()
    authorize(request.headers.get("Authorization"), state.keys)
    if request.mimetype not in WAV_MEDIA_TYPES:
        raise JudgeError(f"Content-Type {request.mimetype or '(none)'!r} is not a WAV type; send "
                         "the clip with 'Content-Type: audio/wav'",
                         status=UNSUPPORTED_MEDIA_TYPE, code="unsupported_media_type")
    sentry_score, device_id = _params()
    clip = decode_wav(request.get_data(cache=False), state.max_clip_seconds)
    verifier = state.verifier
    score = verifier.score(clip.pcm)
    verified = score >= verifier.threshold
    state.metrics.observe_verdict(verified)
    latency_ms = (time.perf_counter() - g.started) * 1000.0
    log.info("verify device=%s sentry=%s score=%.3f -> %s (%.1f ms, %.2f s at %d Hz x%d)",
             device_id, sentry_score, score, "verified" if verified else "rejected",
             latency_ms, clip.seconds, clip.source_rate, clip.source_channels)
    return jsonify({"verified": verified, "score": round(score, SCORE_DECIMALS),
                    "threshold": verifier.threshold, "model": verifier.name,
                    "model_version": verifier.version,
                    "latency_ms": round(latency_ms, LATENCY_DECIMALS),
                    "clip_seconds": round(clip.seconds, LATENCY_DECIMALS),
                    "device_id": device_id, "sentry_score": sentry_score})


@v1.get("/models")
def models():
    """The model this server runs (one per server)."""
    state = _state()
    authorize(request.headers.get("Authorization"), state.keys)
    return jsonify({"models": [state.verifier.describe()]})
