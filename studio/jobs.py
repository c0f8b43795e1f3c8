"""Background jobs: each long task (synthesis, training, mining, ...) runs as its own `hark`
process, at most one at a time per kind, so it survives the browser tab closing and a
page that opens later reattaches to it by kind.

State is kept in WORKSPACE/.studio/jobs.json (rewritten atomically) and each job's output
in WORKSPACE/.studio/logs/<id>.log. A studio restarted while a job ran finds its process
gone and marks it "interrupted"; training and mining can then be resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sentry.files import write_text_atomic

from .errors import CONFLICT, NOT_FOUND, StudioError

STOP_GRACE_S = 30.0
"""Seconds a job may take to stop after SIGINT (finishing a step, saving) before SIGKILL."""
LOG_TAIL_BYTES = 64 * 1024
"""Bytes read from the end of a log for progress and the log view."""
PAUSED_EXIT = 75
"""`hark mine` exits with this after pausing on a signal (EX_TEMPFAIL): resumable."""

RUNNING_STATES = ("running", "stopping")
_STOPPABLE = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
              "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])")
"""Runs a job's argv with SIGINT and SIGTERM at their defaults: a studio started in the
background of a script (`hark studio &`) inherits them ignored, and a job that ignores them
could only be killed, not stopped with its checkpoint saved. exec keeps the pid."""
# tqdm's bar: " 45%|####      | 45/100 [00:10<00:12, 4.5it/s]" (carriage-return separated),
# also with a unit after the counts, as `hark mine`'s " 4%|▍ | 0.08/2.00 h audio [00:00<00:05, ...]"
_TQDM = re.compile(r"(\d+)%\|[^|]*\|\s*([\d.]+[kMG]?)/([\d.]+[kMG]?)[^\[\r\n]*\[([\d:]+)<([\d:?]+)")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
"""Terminal escapes; of these only cursor-up changes what a terminal ends up showing."""
_CURSOR_UP = re.compile(r"\x1b\[(\d*)A")
_SCREEN_CONTROLS = re.compile(r"(\r|\n|\x1b\[\d*A)")


def hark_argv(*args: str) -> list[str]:
    """argv that runs `hark ARGS...` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "trainer.cli", *map(str, args)]


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def parse_progress(text: str) -> dict[str, Any] | None:
    """The last tqdm bar in TEXT: {"percent", "done", "total", "elapsed_s", "eta_s", "line"}."""
    last = None
    for line in re.split(r"[\r\n]", text):
        match = _TQDM.search(line)
        if match:
            last = (line.strip(), match)
    if last is None:
        return None
    line, match = last
    return {"percent": int(match.group(1)), "done": match.group(2), "total": match.group(3),
            "elapsed_s": _seconds(match.group(4)), "eta_s": _seconds(match.group(5)), "line": line}


def screen_lines(text: str) -> list[str]:
    """TEXT (a process's output) as a terminal shows it at the end, one string per line.

    tqdm redraws a bar in place with carriage returns, draws a nested bar one line down and
    moves back up with cursor-up, and clears a finished leave=False bar with spaces. Replaying
    just those moves ("\\n", "\\r", cursor-up; other escapes are dropped) leaves each bar in
    its last state and drops cleared ones, instead of every intermediate "0%" a plain split
    of the text would keep."""
    text = _ANSI.sub(lambda m: m.group(0) if _CURSOR_UP.fullmatch(m.group(0)) else "", text)
    rows, row, col = [""], 0, 0
    for token in _SCREEN_CONTROLS.split(text):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(rows):
                rows.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b"):
            row = max(0, row - int(_CURSOR_UP.fullmatch(token).group(1) or 1))
        elif token:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return [line.rstrip() for line in rows]


@dataclass
class Job:
    id: str
    kind: str
    argv: list[str]
    title: str
    state: str = "running"
    """running, stopping, done, failed, stopped (by the user), paused (mining), interrupted."""
    returncode: int | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    pid: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """What the panel needs to find the job's results (run dir, session file, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobManager:
    """Starts, watches and stops the studio's background processes."""

    def __init__(self, state_dir: Path, cwd: Path) -> None:
        self.state_dir = Path(state_dir)
        self.logs = self.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cwd = Path(cwd)
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self.jobs: dict[str, Job] = {}
        self._load()

    # -- persistence -------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.state_dir / "jobs.json"

    def _load(self) -> None:
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        for item in data.get("jobs", []):
            try:
                job = Job(**item)
            except TypeError:
                continue
            if job.state in RUNNING_STATES:  # its process belonged to an earlier studio
                job.state, job.ended = "interrupted", job.ended or time.time()
            self.jobs[job.id] = job

    def _save(self) -> None:
        write_text_atomic(self._state_file,
                          json.dumps({"jobs": [j.to_dict() for j in self.jobs.values()]}, indent=1))

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, kind: str, argv: list[str], *, title: str, meta: dict[str, Any] | None = None) -> Job:
        """Start ARGV as the job of KIND; StudioError (409) while one of that kind runs."""
        with self._lock:
            current = self.current(kind)
            if current is not None and current.state in RUNNING_STATES:
                raise StudioError(f"a {kind} job is already running ({current.title}); stop it or "
                                  "wait for it to finish", status=CONFLICT, code="busy")
            job = Job(id=uuid.uuid4().hex[:12], kind=kind, argv=list(map(str, argv)), title=title,
                      meta=dict(meta or {}))
            if shutil.which(job.argv[0]) is None:  # the wrapper's exec would fail in the child
                raise StudioError(f"could not start {kind}: {job.argv[0]} is not an executable",
                                  code="start_failed")
            log = open(self.log_path(job.id), "wb")  # noqa: SIM115 - owned by the child
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "HARK_STUDIO_JOB": job.id}
            try:
                proc = subprocess.Popen([sys.executable, "-c", _STOPPABLE, *job.argv], cwd=self.cwd,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, start_new_session=True)
            except OSError as exc:
                log.close()
                raise StudioError(f"could not start {kind}: {exc}", code="start_failed") from exc
            log.close()
            job.pid = proc.pid
            self._procs[job.id] = proc
            self.jobs[job.id] = job
            self._save()
        threading.Thread(target=self._watch, args=(job, proc), daemon=True).start()
        return job

    def _watch(self, job: Job, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._lock:
            job.returncode, job.ended = code, time.time()
            if code == 0:
                job.state = "done"
            elif code == PAUSED_EXIT and job.kind == "mine":
                job.state = "paused"
            elif job.state == "stopping":
                job.state = "stopped"
            else:
                job.state = "failed"
            self._procs.pop(job.id, None)
            self._save()

    def stop(self, kind: str) -> Job:
        """Ask KIND's running job to stop (SIGINT: it saves and exits); SIGKILL after a grace."""
        with self._lock:
            job = self.current(kind)
            proc = self._procs.get(job.id) if job else None
            if job is None or proc is None or job.state not in RUNNING_STATES:
                raise StudioError(f"no {kind} job is running", status=CONFLICT, code="not_running")
            job.state = "stopping"
            self._save()
            sig = signal.SIGTERM if kind == "mine" else signal.SIGINT
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        threading.Thread(target=self._kill_later, args=(proc,), daemon=True).start()
        return job

    @staticmethod
    def _kill_later(proc: subprocess.Popen) -> None:
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Stop every running job (the studio itself is exiting)."""
        for job in list(self.jobs.values()):
            if job.state in RUNNING_STATES:
                try:
                    self.stop(job.kind)
                except StudioError:
                    pass
        for proc in list(self._procs.values()):
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- queries -----------------------------------------------------------------------
    def current(self, kind: str) -> Job | None:
        """KIND's newest job (running or not)."""
        with self._lock:
            of_kind = [j for j in self.jobs.values() if j.kind == kind]
            return max(of_kind, key=lambda j: j.started) if of_kind else None

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self.jobs:
                raise StudioError(f"no job {job_id!r}", status=NOT_FOUND, code="no_such_job")
            return self.jobs[job_id]

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    def log_tail(self, job_id: str, max_bytes: int = LOG_TAIL_BYTES) -> str:
        path = self.log_path(job_id)
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - max_bytes))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe(self, job: Job, *, lines: int = 40) -> dict[str, Any]:
        """The job as the UI shows it: state, progress bar, the log's last LINES lines."""
        tail = self.log_tail(job.id)
        shown = screen_lines(tail)
        return {**job.to_dict(), "progress": parse_progress(_ANSI.sub("", tail)) if job.state in RUNNING_STATES else None,
                "log": "\n".join(line for line in shown if line.strip())[-20_000:].split("\n")[-lines:]}
