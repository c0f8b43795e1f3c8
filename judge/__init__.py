"""Hark's judge: a verification server for wake-word detections (Flask + onnxruntime).

A sentry that fires sends the judge a short WAV clip (pre-roll, the wake word, a little
after); the judge scores it with a larger model and answers whether to act on it.

    app = create_app({"MODEL_DIR": "runs/hj/export", "API_KEYS": ["..."]})

`create_app` is the application factory; `hark-judge serve` (judge.cli) runs it under
waitress. The judge never imports torch or the trainer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sentry.version import package_version

from .errors import JudgeError, register_error_handlers
from .metrics import UNMATCHED, Metrics

if TYPE_CHECKING:
    from flask import Flask

__version__ = package_version()
"""The installed distribution's version (one number for every Hark command)."""
__all__ = ["create_app", "init_app", "validate_config", "JudgeError", "JudgeState", "DEFAULTS",
           "__version__"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": None,
    # Score (0..1) at or above which a clip is verified; None: the manifest's threshold.
    "THRESHOLD": None,
    # API keys: a list, and/or a file with one per line; $HARK_JUDGE_KEYS is always read.
    "API_KEYS": None,
    "KEYS_FILE": None,
    # Mapping read for $HARK_JUDGE_KEYS; None: os.environ (tests pass their own).
    "ENVIRON": None,
    # Bytes. 8 MiB holds 10 s of 48 kHz stereo 32-bit audio with room to spare; a clip
    # of a few seconds at 16 kHz mono 16-bit is ~100 KB.
    "MAX_BODY_BYTES": 8 * 1024 * 1024,
    # Seconds of audio per clip: 2 s of lead, the phrase and a little after fit in 4 s;
    # 10 s leaves room for slow talkers and long pre-roll without inviting bulk scoring.
    "MAX_CLIP_SECONDS": 10.0,
    # onnxruntime intra-op threads per worker; request threads give the concurrency.
    "ORT_THREADS": 1,
}

OPENAPI_FILE = "openapi.json"

MIN_BODY_BYTES = 1024
"""Smallest body limit accepted: a WAV header alone is 44 bytes, a useful clip ~30 KB."""

NO_MODEL = ("no model folder configured; pass --model DIR (a folder written by `hark export`, "
            "holding features.onnx, model.onnx and manifest.json)")


@dataclass
class JudgeState:
    """Everything a worker loads once, kept in app.extensions['hark_judge']."""

    verifier: Any  # judge.verifier.Verifier (imported lazily, with onnxruntime)
    keys: tuple[str, ...]
    metrics: Metrics
    max_clip_seconds: float
    openapi: dict[str, Any]


def _openapi_document() -> dict[str, Any]:
    text = resources.files(__name__).joinpath(OPENAPI_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    document.setdefault("info", {})["version"] = __version__
    return document


def _limits(cfg: Mapping[str, Any]) -> tuple[int, float]:
    """(max body bytes, max clip seconds), checked."""
    try:
        max_body, max_clip = int(cfg["MAX_BODY_BYTES"]), float(cfg["MAX_CLIP_SECONDS"])
    except (TypeError, ValueError) as exc:
        raise JudgeError(f"MAX_BODY_BYTES and MAX_CLIP_SECONDS must be numbers ({exc})") from exc
    if max_body < MIN_BODY_BYTES or not max_clip > 0:
        raise JudgeError(f"limits out of range: max body {max_body} bytes (>= {MIN_BODY_BYTES}), "
                         f"max clip {max_clip} s (> 0)")
    return max_body, max_clip


def _keys(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    from .auth import check_keys, read_keys

    return check_keys([*(cfg.get("API_KEYS") or ()),
                       *read_keys(cfg.get("KEYS_FILE"), cfg.get("ENVIRON"))])


def validate_config(config: Mapping[str, Any] | None = None) -> None:
    """Check a configuration without loading onnxruntime: limits, keys, the model's
    manifest and its clip graph's presence. `hark-judge serve` runs this before it binds
    a port or forks workers, so setup mistakes are reported once, up front."""
    from .verifier import load_judge_manifest

    cfg = {**DEFAULTS, **(config or {})}
    _limits(cfg)
    _keys(cfg)
    if not cfg.get("MODEL_DIR"):
        raise JudgeError(NO_MODEL)
    load_judge_manifest(Path(cfg["MODEL_DIR"]))


def init_app(app: Flask) -> JudgeState:
    """Load the model, keys and metrics for this worker (once) and attach them to `app`."""
    from .verifier import Verifier

    cfg = app.config
    if not cfg.get("MODEL_DIR"):
        raise JudgeError(NO_MODEL)
    max_body, max_clip = _limits(cfg)
    cfg["MAX_CONTENT_LENGTH"] = max_body  # werkzeug answers 413 beyond it
    keys = _keys(cfg)
    verifier = Verifier(Path(cfg["MODEL_DIR"]), threshold=cfg.get("THRESHOLD"),
                        threads=int(cfg["ORT_THREADS"]))
    state = JudgeState(verifier=verifier, keys=keys,
                       metrics=Metrics(verifier.name, verifier.version),
                       max_clip_seconds=max_clip, openapi=_openapi_document())
    app.extensions["hark_judge"] = state
    log.info("judge model %s (version %s) from %s, threshold %.3f", verifier.name,
             verifier.version, verifier.model_dir, verifier.threshold)
    return state


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The judge application: DEFAULTS updated by `config`, model loaded, routes attached.

    Raises JudgeError for a bad setup (no model, unreadable keys...), before serving.
    """
    # Flask is imported here, not at the top, so the judge's model code (judge.verifier)
    # can be imported where Flask is not installed.
    from flask import Flask, g, request

    from .api import v1
    from .ops import ops

    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.json.sort_keys = False  # responses keep the documented field order
    register_error_handlers(app)
    init_app(app)
    app.register_blueprint(v1)
    app.register_blueprint(ops)

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response):
        state: JudgeState = app.extensions["hark_judge"]
        started = g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        state.metrics.observe_request(endpoint, request.method, response.status_code,
                                      time.perf_counter() - started)
        return response

    return app
