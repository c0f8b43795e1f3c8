"""Every extra works alone: the built wheel installed with only `[sentry]`, `[judge]`,
`[train]` or `[studio]` into a throwaway venv, and that side's `--help`, `--version` and one
real command run there (a sentry scan of a WAV, a judge serving one verify on loopback, a
tiny `hark synth`, the studio serving its page).

The venvs are cheap because nothing is downloaded or copied: the extra's requirements are
resolved (transitively, markers and extras evaluated) against the distributions installed
in the interpreter running the tests, and exactly those are symlinked into the throwaway
venv's site-packages, dist-info folders included, so pip finds them satisfied. Then
`pip install --no-index WHEEL[extra]` installs only Hark itself, and fails if the extra
names something the closure lacks. torch with its CUDA wheels (~5 GB here) is linked, not
copied. Because only the closure is linked, a module that imports something its extra
does not declare (Flask from `[train]`, torch from `[sentry]`) fails here as it would on a
user's machine; the venvs check that too. The wheel is built once per test session.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
import wave
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sentry
from sentry.constants import SAMPLE_RATE
from sentry.version import DISTRIBUTION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(sentry.__file__).resolve().parents[1]
WHEEL_SOURCES = ("pyproject.toml", "README.md", "sentry", "judge", "trainer", "plugins", "studio")
"""What the wheel is built from (a copy: setuptools writes build/ and *.egg-info in place)."""
COMMAND_TIMEOUT_S = 180
SERVER_START_S = 90
KEY = "extras-test-key-0123456789"
TONE_BAND = 9

_spec = importlib.util.spec_from_file_location("hark_test_wyoming_models",
                                               Path(__file__).with_name("wyoming_models.py"))
tone_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tone_models)


# ------------------------------------------------------------------ the wheel and the venvs

def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path: the venv sees only what pip put there."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """`python -m build --wheel` of this checkout, once per session. Without build
    isolation when this interpreter already has what pyproject's [build-system] asks for
    (offline, a few seconds), isolated otherwise."""
    pytest.importorskip("build", reason="needs the `build` package (the dev extra's tooling)")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in WHEEL_SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist")]
    if _build_requirements_met(source / "pyproject.toml"):
        command.append("--no-isolation")
    done = subprocess.run([*command, str(source)], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, check=False, env=_clean_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = (root / "dist").glob("*.whl")
    return built


def _build_requirements_met(pyproject: Path) -> bool:
    requires = tomllib.loads(pyproject.read_text())["build-system"]["requires"] + ["wheel"]
    for line in requires:
        req = Requirement(line)
        try:
            if not req.specifier.contains(metadata.version(req.name), prereleases=True):
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def _wheel_requirements(wheel_path: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel_path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(name).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def requirement_closure(wheel_path: Path, extra: str) -> dict[str, metadata.Distribution]:
    """The installed distributions `WHEEL[extra]` needs, transitively, by canonical name."""
    own = canonicalize_name(DISTRIBUTION)
    ours = _wheel_requirements(wheel_path)
    todo = [r for r in ours if r.marker is None]  # the base requirements
    extras, pending = set(), [extra]
    while pending:  # our own extras, expanding self-references like hark-wakeword[train,judge]
        name = pending.pop()
        if name in extras:
            continue
        extras.add(name)
        for req in ours:
            if req.marker is not None and req.marker.evaluate({"extra": name}):
                if canonicalize_name(req.name) == own:
                    pending.extend(req.extras)
                else:
                    todo.append(req)
    closure: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req} (needed by [{extra}]) is not installed in the test interpreter")
        assert req.specifier.contains(dist.version, prereleases=True), \
            f"[{extra}] needs {req}; the test interpreter has {dist.version}"
        closure[key[0]] = dist
        for sub in map(Requirement, dist.requires or []):
            if sub.marker is None or any(sub.marker.evaluate({"extra": e})
                                         for e in {"", *req.extras}):
                todo.append(sub)
    return closure


@functools.cache
def _owners(site: Path) -> dict[Path, set[str]]:
    """Every path (and parent folder) under site-packages -> the distributions owning files in it."""
    owners: dict[Path, set[str]] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            parts = Path(file).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts:
                continue
            for depth in range(1, len(parts) + 1):
                owners.setdefault(Path(*parts[:depth]), set()).add(name)
    return owners


def link_distributions(closure: dict[str, metadata.Distribution], target: Path) -> None:
    """Symlink the closure's files into `target` (a site-packages), whole folders where every
    owner of the folder is in the closure, file by file inside shared ones (nvidia/ holds
    many distributions' files; a distribution outside the closure must not come along)."""
    sites = {Path(d.locate_file("")) for d in closure.values()}
    wanted = set(closure)
    for site in sites:
        owners = _owners(site)

        def place(rel: Path) -> None:
            who = owners.get(rel, set())
            if not who & wanted:
                return
            source, dest = site / rel, target / rel
            if who <= wanted or not source.is_dir():
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.symlink_to(source, target_is_directory=source.is_dir())
                return
            dest.mkdir(parents=True, exist_ok=True)
            for child in sorted(source.iterdir()):
                place(rel / child.name)

        for top in sorted({p for p in owners if len(p.parts) == 1}):
            place(top)


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.python = self.bin / "python"

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT_S, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        program = args[0] if args[0].startswith("/") else str(self.bin / args[0])
        done = subprocess.run([program, *args[1:]], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.root, env=_clean_env(), check=False)
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return done

    def cannot_import(self, module: str) -> bool:
        return self.run(str(self.python), "-c", f"import {module}", check=False).returncode != 0


@pytest.fixture(scope="session")
def make_venv(wheel, tmp_path_factory):
    """make_venv(extra): a fresh venv holding WHEEL[extra] and exactly what it requires."""
    made: dict[str, Venv] = {}

    def make(extra: str) -> Venv:
        if extra in made:
            return made[extra]
        root = tmp_path_factory.mktemp(f"venv-{extra}")
        # --without-pip: ensurepip takes seconds; this interpreter's pip installs into it
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                       timeout=COMMAND_TIMEOUT_S)
        venv = Venv(root)
        site = Path(subprocess.run(
            [str(venv.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
        link_distributions(requirement_closure(wheel, extra), site)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--no-index",
             "--no-cache-dir", "--disable-pip-version-check", "--no-compile", f"{wheel}[{extra}]"],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env=_clean_env(), check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        made[extra] = venv
        return venv
    return make


def _check_version_and_help(venv: Venv, *programs: str) -> None:
    for program in programs:
        shown = venv.run(program, "--version").stdout.strip()
        assert re.fullmatch(rf"{re.escape(program)}, version \d+\.\d+\.\d+\S*", shown), shown
        assert "unknown" not in shown
        assert "Usage:" in venv.run(program, "--help").stdout


# ------------------------------------------------------------------ helpers for the commands

def _wav_bytes(audio: np.ndarray) -> bytes:
    """16-bit mono WAV at SAMPLE_RATE (the stdlib codec: the test side needs no soundfile)."""
    buffer = io.BytesIO()
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory) -> Path:
    return tone_models.write_tone_model(tmp_path_factory.mktemp("extras") / "tone", "test tone",
                                        TONE_BAND)


class Server:
    """A server console script in a venv, ready once its printed URL answers."""

    def __init__(self, argv: list[str], url_pattern: str, ready_path: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd, env=_clean_env(HARK_JUDGE_KEYS=""))
        deadline = time.monotonic() + SERVER_START_S
        self.stderr = []
        match = None
        while match is None:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            line = self.proc.stderr.readline() if ready else ""
            if not line:
                self.stop()
                raise AssertionError(f"{argv[:2]} did not start: {''.join(self.stderr)}")
            self.stderr.append(line)
            match = re.search(url_pattern, line)
        self.url = match.group(1)
        while True:
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"{argv[:2]} never became ready: {''.join(self.stderr)}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ------------------------------------------------------------------ one test per extra

def test_sentry_extra_alone_scans_a_wav(make_venv, tone_model, tmp_path):
    venv = make_venv("sentry")
    _check_version_and_help(venv, "hark-sentry")
    audio = tone_models.tone_bursts(4.0, [(1.5, tone_models.band_hz(TONE_BAND))], seed=3)
    wav = tmp_path / "burst.wav"
    wav.write_bytes(_wav_bytes(audio))
    done = venv.run("hark-sentry", "scan", str(wav), "--model", str(tone_model), "--json")
    detections = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(detections) == 1 and abs(detections[0]["time_s"] - 1.5) < 0.5, done.stdout
    # the edge device's venv has neither torch nor Flask
    assert venv.cannot_import("torch") and venv.cannot_import("flask")


def test_judge_extra_alone_serves_and_verifies(make_venv, tone_model, tmp_path):
    venv = make_venv("judge")
    _check_version_and_help(venv, "hark-judge")
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    server = Server([str(venv.bin / "hark-judge"), "serve", "--model", str(tone_model), "--host",
                     "127.0.0.1", "--port", "0", "--workers", "1", "--keys-file", str(keys)],
                    r"serving .* on (http://127\.0\.0\.1:\d+)", "/readyz", tmp_path)
    try:
        audio = tone_models.tone_bursts(2.0, [(1.2, tone_models.band_hz(TONE_BAND))], seed=4)
        request = urllib.request.Request(server.url + "/v1/verify", data=_wav_bytes(audio),
                                         headers={"Content-Type": "audio/wav",
                                                  "Authorization": f"Bearer {KEY}"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            verdict = json.loads(response.read())
    finally:
        code = server.stop()
    assert verdict["verified"] is True and verdict["score"] >= verdict["threshold"], verdict
    assert code == 0, "".join(server.stderr)
    assert venv.cannot_import("torch")


def test_train_extra_alone_synthesizes_without_flask(make_venv, tmp_path):
    venv = make_venv("train")
    _check_version_and_help(venv, "hark")
    assert "Usage:" in venv.run("hark", "mine", "--help").stdout
    out = tmp_path / "data"
    venv.run("hark", "synth", "hey jarvis", "--out", str(out), "--positives", "3", "--negatives", "2",
             "--neighbours", "2", "--no-eval", "--engine", "espeak")
    clips = json.loads((out / "manifest.json").read_text())["clips"]
    assert {c["engine"] for c in clips} == {"espeak", "synthetic"}
    assert venv.cannot_import("flask")
    studio = venv.run("hark", "studio", check=False)
    assert studio.returncode == 1 and f'pip install "{DISTRIBUTION}[studio]"' in studio.stderr


def test_studio_extra_alone_serves_its_page(make_venv, tmp_path):
    venv = make_venv("studio")
    _check_version_and_help(venv, "hark")
    server = Server([str(venv.bin / "hark"), "studio", "--workspace", str(tmp_path / "ws"),
                     "--port", "0"], r"serving .* on (http://127\.0\.0\.1:\d+)/", "/", tmp_path)
    try:
        with urllib.request.urlopen(server.url + "/", timeout=30) as response:
            page = response.read().decode()
        with urllib.request.urlopen(server.url + "/api/data/defaults", timeout=30) as response:
            defaults = json.loads(response.read())
    finally:
        code = server.stop()
    assert "<html" in page.lower()
    assert defaults["seed"] == 0 and "espeak" in defaults["engines"]
    assert code == 0, "".join(server.stderr)
