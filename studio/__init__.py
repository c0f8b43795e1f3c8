"""Hark Studio: the whole workflow (data, config, training, evaluation, mining, cascade,
export) in a browser, served by Flask from this machine with every asset local.

    app = create_app(workspace="studio-work")

`hark studio` (trainer.cli) serves it with waitress on 127.0.0.1. Long work runs as `hark`
subprocesses managed by studio.jobs, so it outlives the browser tab. Each panel is a
blueprint in studio/panels/ with its script in studio/static/js/; panels reach the shared
state through studio.context, so none imports this package back.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request

from . import security
from .context import EXTENSION, Studio, get_studio
from .errors import StudioError, error_response, register_error_handlers
from .files import FileRoots
from .jobs import JobManager

__all__ = ["Studio", "StudioError", "create_app", "get_studio"]

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest request body (uploads): 64 MiB holds 30 minutes of 16 kHz 16-bit mono audio."""
WORKSPACE_FOLDERS = ("data", "runs", "configs", "sessions", "uploads")


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
    app.extensions[EXTENSION] = studio
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
    from .panels import register_panels
    app.register_blueprint(core_bp)
    register_panels(app)
    return app

