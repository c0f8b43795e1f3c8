"""`hark studio`: the studio under waitress, on loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import signal
import sys
from pathlib import Path

import click

from . import create_app
from .context import get_studio
from .errors import StudioError

REQUEST_THREADS = 8
"""waitress request threads: the page polls a few endpoints at once while an upload runs."""
TOKEN_BYTES = 24


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_roots(values: tuple[str, ...]) -> dict[str, Path]:
    """--root NAME=PATH or --root PATH (named after the folder)."""
    roots: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).name or "root", value
        if not name or "/" in name or name == "workspace" or name in roots:
            raise click.BadParameter(f"{value!r}: each root needs its own simple name (NAME=PATH)",
                                     param_hint="--root")
        if not Path(path).expanduser().is_dir():
            raise click.BadParameter(f"{path} is not a folder", param_hint="--root")
        roots[name] = Path(path).expanduser()
    return roots


@click.command(name="studio")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), default=Path("hark-studio"),
              show_default=True, help="Folder for the studio's datasets, configs, runs and sessions.")
@click.option("--root", "roots", multiple=True,
              help="Extra folder the file browser may show (NAME=PATH or PATH); repeatable.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; anything but loopback requires --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port.")
@click.option("--token", envvar="HARK_STUDIO_TOKEN",
              help="Access token required by every request ($HARK_STUDIO_TOKEN); 'generate' makes one.")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another name the studio answers to in the Host header (e.g. behind a proxy or "
              "on a LAN name); repeatable. Loopback names and --host are always allowed.")
@click.option("--max-upload-mb", type=click.IntRange(1, 4096), default=64, show_default=True)
def studio(workspace: Path, roots, host: str, port: int, token, allowed_hosts, max_upload_mb: int) -> None:
    """Hark Studio: the whole workflow in a browser (data, config, training, evaluation,
    mining queue, cascade testing, export)."""
    from waitress.server import create_server

    if token == "generate":
        token = secrets.token_urlsafe(TOKEN_BYTES)
    if not is_loopback(host) and not token:
        raise click.UsageError(f"--host {host} exposes the studio (it can read files and run jobs) to "
                               "the network: also pass --token T (or --token generate)")
    try:
        app = create_app(workspace, roots=parse_roots(roots), token=token,
                         max_upload_bytes=max_upload_mb * 1024 * 1024, host=host,
                         allowed_hosts=tuple(allowed_hosts))
    except StudioError as exc:
        raise click.ClickException(exc.message) from None
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        server = create_server(app, host=host, port=port, threads=REQUEST_THREADS,
                               max_request_body_size=max_upload_mb * 1024 * 1024 + 1024 * 1024)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick "
                                   "another --port (0: any free port)") from None
    with app.app_context():
        get_studio().hosts.port = int(server.effective_port)  # the Host check now knows it
    url = f"http://{host}:{server.effective_port}/" + (f"?token={token}" if token else "")
    click.echo(f"hark studio: serving {workspace.resolve()} on {url}", err=True)

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        with app.app_context():
            get_studio().jobs.shutdown()
        server.close()
        click.echo("hark studio: stopped", err=True)
        sys.stdout.flush()
