"""`hark-judge serve`: the judge under waitress, one or more worker processes.

Scoring a clip is CPU work (onnxruntime on one thread, ~80% of a request; the HTTP,
auth, decoding and JSON around it are the rest), so the server runs one worker process
per CPU core, each answering on one request thread: waitress's own I/O thread reads
whole requests and writes answers, so a slow client never holds the request thread, and
a second thread per worker only makes the two share a core (measured: ~10% more CPU per
request and lower throughput, benchmarks/judge_latency.py). The parent binds the
listening socket, then forks the workers that share it (the kernel hands each connection
to one of them) and each loads the model once. The parent only supervises: SIGTERM or
Ctrl+C stops every worker gracefully (in-flight requests finish), and a worker that dies
on its own stops the server with exit status 1, for systemd or a container runtime to
restart it whole.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from sentry.clitools import CommandGroup, setup_logging, version_option

from . import DEFAULTS, JudgeError, __version__, validate_config
from .server import DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT_S

log = logging.getLogger("judge")

LISTEN_BACKLOG = 128
"""Connections the kernel queues while every request thread is busy."""

WAITRESS_BODY_FACTOR = 4
"""waitress itself refuses (plain-text 413, without reading it) a body declared larger
than this many times --max-body-bytes. Between the two limits the application reads
the header and answers a JSON 413; keeping waitress's limit near ours bounds the disk
a hostile client can fill with one request (waitress spools bodies to a temp file)."""

DEFAULT_THREADS = 1
"""Request threads per worker: one, as the work is CPU-bound (see the module docstring)."""

MAX_DEFAULT_WORKERS = 8
"""Most worker processes started without --workers: each holds its own model and
onnxruntime sessions (~100 MB), so a big machine should be sized on purpose."""


def default_workers() -> int:
    """One worker per CPU core this process may run on, at most MAX_DEFAULT_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


DEFAULT_IDLE_TIMEOUT_S = 30
"""Seconds a connection may sit idle (sending nothing) before it is closed; one that
trickles is cut off by --request-timeout (judge.server.DEFAULT_REQUEST_TIMEOUT_S)."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot resolve --host {host!r} ({exc})") from exc
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); pick "
                                   "another --port, or --port 0 for any free one") from exc
    sock.listen(LISTEN_BACKLOG)
    return sock


def _serve_worker(sock: socket.socket, config: dict[str, Any], threads: int,
                  limits: dict[str, Any]) -> None:
    """Load the model and answer requests on `sock` until SIGTERM or SIGINT.
    limits: GuardedServer's max_connections, request_timeout_s and idle_timeout_s."""
    from . import create_app
    from .server import GuardedServer

    # waitress warns on every request that waits for the request thread; with one
    # thread per worker that is every request under concurrent load, the expected
    # state, not news (hark_judge_request_duration_seconds shows real queueing).
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = create_app(config)
    server = GuardedServer(app, sock, threads=threads, ident="hark-judge",
                           max_request_body_size=WAITRESS_BODY_FACTOR * config["MAX_BODY_BYTES"],
                           backlog=LISTEN_BACKLOG, **limits)

    def _stop(signum, frame):  # waitress finishes in-flight requests on SystemExit
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    server.run()


def _fork_workers(sock: socket.socket, n: int, config: dict[str, Any], threads: int,
                  limits: dict[str, Any]) -> int:
    """Run n worker processes; returns the exit status for the parent."""
    children: set[int] = set()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:  # worker: never returns into the parent's code
            code = 0
            try:
                _serve_worker(sock, config, threads, limits)
            except JudgeError as exc:
                click.echo(f"hark-judge: worker {os.getpid()} cannot start: {exc}", err=True)
                code = 1
            except KeyboardInterrupt:
                pass
            except BaseException:  # noqa: BLE001 - the worker must not unwind into the parent
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.add(pid)

    stopping = False

    def _stop_all(signum, frame):
        nonlocal stopping
        stopping = True
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, _stop_all)
    signal.signal(signal.SIGINT, _stop_all)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("worker %d exited with status %d; stopping the server", pid, code)
            failed = True
            _stop_all(signal.SIGTERM, None)
    return 1 if failed else 0


@click.group(cls=CommandGroup, user_errors=(JudgeError,))
@version_option("hark-judge")
@click.option("-v", "--verbose", is_flag=True, help="Log every verdict to stderr.")
def cli(verbose: bool) -> None:
    """Hark's judge: verify the sentry's wake-word detections with a larger model."""
    setup_logging("hark-judge", verbose, pid=True)  # the workers share one stderr


@cli.command()
@click.option("--model", "model_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model folder written by `hark export` (features.onnx, model.onnx, manifest.json).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port; 0 picks a free one (printed on stderr).")
@click.option("--workers", type=click.IntRange(1, 64), default=default_workers,
              show_default="one per CPU core, at most 8",
              help="Worker processes, each with its own copy of the model.")
@click.option("--threads", type=click.IntRange(1, 256), default=DEFAULT_THREADS,
              show_default=True, help="Request threads per worker.")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="API keys, one per line ('#' comments). $HARK_JUDGE_KEYS is read too.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score (0-1) needed to verify; default the manifest's threshold.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=DEFAULTS["MAX_BODY_BYTES"],
              show_default=True, help="Largest request body accepted (413 beyond).")
@click.option("--max-clip-seconds", type=click.FloatRange(min=0.1), default=DEFAULTS["MAX_CLIP_SECONDS"],
              show_default=True, help="Longest clip accepted, in seconds of audio (400 beyond).")
@click.option("--idle-timeout", "idle_timeout_s", type=click.IntRange(min=1),
              default=DEFAULT_IDLE_TIMEOUT_S, show_default=True,
              help="Seconds a connection may send nothing before it is closed.")
@click.option("--request-timeout", "request_timeout_s", type=click.IntRange(min=1),
              default=DEFAULT_REQUEST_TIMEOUT_S, show_default=True,
              help="Seconds from a request's first byte to its last (headers and body) "
                   "before the connection is closed, however it trickles.")
@click.option("--max-connections", type=click.IntRange(1, 10_000),
              default=DEFAULT_MAX_CONNECTIONS, show_default=True,
              help="Open connections per worker; beyond, new ones get an immediate 503.")
def serve(model_dir: Path, host: str, port: int, workers: int, threads: int,
          keys_file: Path | None, threshold: float | None, max_body_bytes: int,
          max_clip_seconds: float, idle_timeout_s: int, request_timeout_s: int,
          max_connections: int) -> None:
    """Serve POST /v1/verify, /v1/models, /healthz, /readyz, /metrics and /openapi.json.

    A full worker (--max-connections open) answers new connections with 503 at once
    rather than leave them waiting. Stops gracefully on SIGTERM or Ctrl+C.
    """
    limits = {"max_connections": max_connections, "request_timeout_s": request_timeout_s,
              "idle_timeout_s": idle_timeout_s}
    config = {"MODEL_DIR": str(model_dir), "KEYS_FILE": keys_file, "THRESHOLD": threshold,
              "MAX_BODY_BYTES": max_body_bytes, "MAX_CLIP_SECONDS": max_clip_seconds}
    validate_config(config)  # a JudgeError is the user's to fix: the group reports it
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"hark-judge {__version__}: serving {model_dir} on http://{bound_host}:{bound_port} "
               f"with {workers} worker(s) x {threads} thread(s) (Ctrl+C to stop)", err=True)
    sys.stderr.flush()
    if workers == 1:
        try:
            _serve_worker(sock, config, threads, limits)
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
        status = 0
    else:
        status = _fork_workers(sock, workers, config, threads, limits)
        sock.close()
    click.echo("hark-judge: stopped", err=True)
    if status:
        raise click.ClickException("a worker failed; see the messages above")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`hark-judge`); argv defaults to sys.argv[1:]."""
    cli.main(args=argv, prog_name="hark-judge")


if __name__ == "__main__":
    main()
