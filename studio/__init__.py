"""Hark Studio: the whole workflow (data, config, training, evaluation, mining, cascade,
export) in a browser, served by Flask from this machine with every asset local.

    app = create_app(workspace="studio-work")

`hark studio` (trainer.cli) serves it with waitress on 127.0.0.1. Long work runs as `hark`
subprocesses managed by studio.jobs, so it outlives the browser tab. Each panel is a
blueprint in studio/panels/ with its script in studio/static/js/.
"""

from __future__ import annotations

import hmac
import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app, redirect, request

from .errors import (
    FORBIDDEN,
    UNAUTHORIZED,
    StudioError,
    error_response,
    register_error_handlers,
)
from .files import FileRoots
from .jobs import JobManager

if TYPE_CHECKING:  # built on first use: starting the studio does not load torch
    from trainer.plugins import PluginManager

__all__ = ["Studio", "StudioError", "create_app", "get_studio"]

PANELS = ("data", "config", "train", "evaluate", "mining", "cascade", "export")
"""Blueprint modules under studio.panels, one per panel, registered in this order."""

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest request body (uploads): 64 MiB holds 30 minutes of 16 kHz 16-bit mono audio."""
TOKEN_COOKIE = "hark_studio_token"
WORKSPACE_FOLDERS = ("data", "runs", "configs", "sessions", "uploads")


@dataclass
class Studio:
    """What every panel shares: the workspace folders, the job manager, the browsable roots."""

    workspace: Path
    jobs: JobManager
    files: FileRoots
    token: str | None = None
    _plugins: PluginManager | None = field(default=None, repr=False)
    _plugins_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plugins(self) -> PluginManager:
        """The studio's one trainer PluginManager, built on first use (it imports torch and
        every plugin) and handed to every config check; a TrainerError while they cannot load."""
        with self._plugins_lock:
            if self._plugins is None:
                from trainer.plugins import PluginManager
                self._plugins = PluginManager()
            return self._plugins

    def folder(self, name: str) -> Path:
        """WORKSPACE/<name> (data, runs, configs, sessions, uploads), created on first use."""
        path = self.workspace / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_studio() -> Studio:
    return current_app.extensions["hark_studio"]


def create_app(workspace: str | Path, *, roots: dict[str, str | Path] | None = None,
               token: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Flask:
    """The studio app over WORKSPACE. ROOTS: extra folders the file browser may show, by
    name; TOKEN: required on every request when set (for hosts other than loopback)."""
    workspace = Path(workspace).resolve()
    for name in WORKSPACE_FOLDERS:
        (workspace / name).mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    all_roots = {"workspace": workspace, **{k: Path(v) for k, v in (roots or {}).items()}}
    for name, path in all_roots.items():
        if not Path(path).is_dir():
            raise StudioError(f"browsable root {name!r}: {path} is not a folder")
    studio = Studio(workspace, JobManager(workspace / ".studio", cwd=workspace), FileRoots(all_roots), token)
    app.extensions["hark_studio"] = studio
    register_error_handlers(app)

    @app.before_request
    def _limit_body():  # Flask checks the limit only when a view reads the body; refuse early
        if request.content_length is not None and request.content_length > max_upload_bytes:
            return error_response("too_large", f"the upload is {request.content_length} bytes; the "
                                  f"limit is {max_upload_bytes} (hark studio --max-upload-mb)", 413)
        return None

    if token:
        _require_token(app, token)

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    from .core_api import bp as core_bp
    app.register_blueprint(core_bp)
    for name in PANELS:
        app.register_blueprint(importlib.import_module(f"studio.panels.{name}").bp)
    return app


def _require_token(app: Flask, token: str) -> None:
    """Every request carries the token: `Authorization: Bearer T`, the cookie set when the
    page was opened with ?token=T, or that query parameter itself."""

    @app.before_request
    def _check():
        given = request.args.get("token")
        if given is not None and hmac.compare_digest(given, token):
            response = redirect(request.path)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return response
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        if given and hmac.compare_digest(given, token):
            return None
        if given:
            return error_response("wrong_token", "wrong access token", FORBIDDEN)
        return error_response("token_required", "this studio needs its access token: open the URL "
                              "`hark studio` printed (it ends in ?token=...)", UNAUTHORIZED)
