"""Hark Studio: the whole workflow (data, config, training, evaluation, mining, cascade,
export) in a browser, served by Flask from this machine with every asset local.

    app = create_app(workspace="studio-work")

`hark studio` (trainer.cli) serves it with waitress on 127.0.0.1. Long work runs as `hark`
subprocesses managed by studio.jobs, so it outlives the browser tab. Each panel is a
blueprint in studio/panels/ with its script in studio/static/js/.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app, request

from . import security
from .errors import StudioError, error_response, register_error_handlers
from .files import FileRoots
from .jobs import JobManager

__all__ = ["Studio", "StudioError", "create_app", "get_studio"]

PANELS = ("data", "config", "train", "evaluate", "mining", "cascade", "export")
"""Blueprint modules under studio.panels, one per panel, registered in this order."""

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest request body (uploads): 64 MiB holds 30 minutes of 16 kHz 16-bit mono audio."""
WORKSPACE_FOLDERS = ("data", "runs", "configs", "sessions", "uploads")


@dataclass
class Studio:
    """What every panel shares: the workspace folders, the job manager, the browsable roots."""

    workspace: Path
    jobs: JobManager
    files: FileRoots
    token: str | None = None
    csrf_token: str = field(default_factory=security.new_csrf_token)
    """Per launch; state-changing requests echo it in the X-Hark-Csrf header (studio.security)."""
    hosts: security.HostPolicy = field(default_factory=security.HostPolicy)

    def folder(self, name: str) -> Path:
        """WORKSPACE/<name> (data, runs, configs, sessions, uploads), created on first use."""
        path = self.workspace / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_studio() -> Studio:
    return current_app.extensions["hark_studio"]


def create_app(workspace: str | Path, *, roots: dict[str, str | Path] | None = None,
               token: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = ()) -> Flask:
    """The studio app over WORKSPACE. ROOTS: extra folders the file browser may show, by
    name; TOKEN: required on every request when set (for hosts other than loopback); HOST:
    the interface it listens on and ALLOWED_HOSTS: extra names it answers to (Host check,
    see studio.security)."""
    workspace = Path(workspace).resolve()
    for name in WORKSPACE_FOLDERS:
        (workspace / name).mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    all_roots = {"workspace": workspace, **{k: Path(v) for k, v in (roots or {}).items()}}
    for name, path in all_roots.items():
        if not Path(path).is_dir():
            raise StudioError(f"browsable root {name!r}: {path} is not a folder")
    studio = Studio(workspace, JobManager(workspace / ".studio", cwd=workspace), FileRoots(all_roots), token,
                    hosts=security.HostPolicy(host, allowed_hosts))
    app.extensions["hark_studio"] = studio
    register_error_handlers(app)

    @app.before_request
    def _limit_body():  # Flask checks the limit only when a view reads the body; refuse early
        if request.content_length is not None and request.content_length > max_upload_bytes:
            return error_response("too_large", f"the upload is {request.content_length} bytes; the "
                                  f"limit is {max_upload_bytes} (hark studio --max-upload-mb)", 413)
        return None

    security.install(app, hosts=studio.hosts, csrf_token=studio.csrf_token, token=token)
    index_html = security.inject_csrf((Path(app.static_folder) / "index.html").read_text(), studio.csrf_token)

    @app.get("/")
    def index():
        # Never cached: the CSRF token inside changes with every launch.
        return index_html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}

    from .core_api import bp as core_bp
    app.register_blueprint(core_bp)
    for name in PANELS:
        app.register_blueprint(importlib.import_module(f"studio.panels.{name}").bp)
    return app

