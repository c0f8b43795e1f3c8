"""Held-out speech engines: flite and festival. Never used for training.

A model trained only on espeak can learn espeak's synthesis artefacts instead of the phrase.
Scoring it on speech from entirely different engines (flite's and festival's diphone, cluster
unit and HTS voices) tells whether it generalises beyond the training synthesiser.

Voices are ``engine:name``: flite voices from ``flite -lv`` (minus ``awb_time``, which can only
say the time) and festival voices found under /usr/share/festival/voices/<language>/<name>/ by
festival's own rule (``search-for-voices`` in its voices.scm): a folder is a voice when its name
has no dot and it holds ``festvox/<name>.scm``. Shared-data folders such as Debian's Finnish
``suopuhe.common`` are not voices. Only English voices are held-out voices: the wake phrase is
English, and a Czech or Finnish voice reading it would measure the wrong thing.

Which voices an eval set uses is pinned (``STANDARD_VOICES``, recorded in the dataset manifest
by ``trainer.synth.evalsets``), so installing more voices never changes the held-out set.

Duration stretch is the engines' own (flite ``duration_stretch``, festival ``Duration_Stretch``)
except for festival HTS voices, which ignore it: those are stretched afterwards with WSOLA.
Both engines run as subprocesses; install them with ``apt-get install flite festival``. Every
call is checked to have written audio: an engine that exits 0 with nothing written (festival
does for an unknown voice) is an error naming the voice and the command.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.audio import load_audio
from trainer.errors import TrainerError
from trainer.synth.warps import time_stretch

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
EXCLUDED_FLITE_VOICES = frozenset({"awb_time"})
"""awb_time is a limited-domain voice that only speaks clock times."""
ENGLISH_LANGUAGES = frozenset({"english", "us", "uk", "british", "american"})
"""Festival language names (proclaimed in a voice's .scm, else its language folder) that are
English: Debian's diphone voices live in english/, the CMU arctic ones in us/."""
STANDARD_VOICES = (
    "flite:kal", "flite:kal16", "flite:awb", "flite:rms", "flite:slt",
    "festival:kal_diphone", "festival:ked_diphone", "festival:cmu_us_slt_arctic_hts",
)
"""The held-out voices of every eval set: flite's built-in voices and the festival voices that
./run.sh installs. A fixed list, so a machine with more voices builds the same set."""
PACKAGES = {"flite": "flite", "festival:kal_diphone": "festvox-kallpc16k",
            "festival:ked_diphone": "festvox-kdlpc16k",
            "festival:cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
"""Debian packages that install a standard voice (flite voices are all in flite)."""
STRETCH_LIMITS = (0.5, 2.0)
"""Allowed duration stretch factors (>1 is slower)."""
ENGINE_TIMEOUT_S = 60.0
"""Seconds one synthesis subprocess may take before it is considered hung."""
SILENT_PEAK = 1e-4
"""Peak amplitude below which an engine's output counts as no speech (-80 dBFS)."""
WAV_HEADER_BYTES = 44
INSTALL_HINT = "Fix: apt-get install flite festival"


@dataclass(frozen=True)
class FestivalVoice:
    """A festival voice folder: ``folder`` is <voices>/<language folder>/<name>."""

    name: str
    language: str
    folder: Path

    @property
    def english(self) -> bool:
        return self.language in ENGLISH_LANGUAGES


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise TrainerError(f"the held-out speech engine '{program}' is not installed. {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _flite_voices() -> tuple[str, ...]:
    if shutil.which("flite") is None:
        return ()
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True,
                         timeout=ENGINE_TIMEOUT_S).stdout
    # "Voices available: kal awb_time kal16 awb rms slt"
    names = out.split(":", 1)[1].split() if ":" in out else out.split()
    return tuple(n for n in names if n not in EXCLUDED_FLITE_VOICES)


def _proclaimed_language(definition: Path, name: str) -> str | None:
    """The language a voice's .scm proclaims (``(proclaim_voice 'NAME '((language X) ...``)."""
    try:
        text = definition.read_text(encoding="latin-1")
    except OSError:
        return None
    found = re.search(r"proclaim_voice\s+'" + re.escape(name) + r"\s+'\(\s*\(\s*language\s+([\w-]+)",
                      text)
    return found.group(1).lower() if found else None


@functools.lru_cache(maxsize=4)
def scan_festival_voices(root: Path) -> tuple[FestivalVoice, ...]:
    """Every festival voice under ``root`` (e.g. /usr/share/festival/voices), any language,
    sorted by name; folders that are not voices are left out, as festival leaves them out."""
    voices = []
    for folder in sorted(root.glob("*/*")):
        name = folder.name
        definition = folder / "festvox" / f"{name}.scm"
        if not folder.is_dir() or "." in name or not definition.is_file():
            continue
        language = _proclaimed_language(definition, name) or folder.parent.name.lower()
        voices.append(FestivalVoice(name, language, folder))
    return tuple(sorted(voices, key=lambda v: v.name))


def _festival_voices() -> tuple[str, ...]:
    """Names of the installed English festival voices."""
    if shutil.which("text2wave") is None or not FESTIVAL_VOICE_DIR.is_dir():
        return ()
    return tuple(v.name for v in scan_festival_voices(FESTIVAL_VOICE_DIR) if v.english)


def list_heldout_voices() -> list[str]:
    """All installed English held-out voices, e.g. ["flite:kal", ..., "festival:kal_diphone"].

    Raises TrainerError when neither engine is installed.
    """
    voices = [f"flite:{v}" for v in _flite_voices()] + [f"festival:{v}" for v in _festival_voices()]
    if not voices:
        raise TrainerError(f"no held-out speech engine found (flite, festival). {INSTALL_HINT}")
    return voices


def install_hint(voice: str) -> str:
    """How to install a held-out voice: its Debian package where known."""
    package = PACKAGES.get(voice) or (PACKAGES["flite"] if voice.startswith("flite:") else None)
    return f"apt-get install {package}" if package else f"install the festival voice {voice}"


def engine_versions() -> dict[str, str]:
    """Versions of the installed held-out engines, as they print them ("" when unknown)."""
    versions = {}
    for program, args, pattern in (("flite", ["--version"], r"version:\s*(\S+)"),
                                   ("festival", ["--version"], r"System:\s*([\d.]+)")):
        if shutil.which(program) is None:
            continue
        try:
            out = subprocess.run([program, *args], capture_output=True, text=True,
                                 timeout=ENGINE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            versions[program] = ""
            continue
        found = re.search(pattern, out.stdout + out.stderr, re.IGNORECASE)
        versions[program] = found.group(1) if found else ""
    return versions


def _parse_voice(voice: str) -> tuple[str, str]:
    engine, _, name = voice.partition(":")
    known = _flite_voices() if engine == "flite" else _festival_voices() if engine == "festival" else ()
    if engine not in ("flite", "festival") or not name:
        raise TrainerError(f"bad held-out voice {voice!r}: expected 'flite:NAME' or 'festival:NAME'")
    if name not in known:
        _require("flite" if engine == "flite" else "text2wave")
        raise TrainerError(
            f"held-out voice {voice!r} is not installed as an English voice; installed: "
            f"{', '.join(list_heldout_voices())}. Fix: {install_hint(voice)}"
        )
    return engine, name


def _run(cmd: list[str], stdin: str | None, voice: str) -> str:
    """Run one engine call; returns what it printed (stdout and stderr)."""
    try:
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise TrainerError(f"{voice}: synthesis hung for {ENGINE_TIMEOUT_S:.0f} s "
                           f"(`{shlex.join(cmd)}`)") from exc
    if result.returncode != 0:
        raise TrainerError(f"{voice}: `{shlex.join(cmd)}` failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return (result.stdout + result.stderr).strip()


def _read_output(wav: Path, cmd: list[str], voice: str, printed: str) -> np.ndarray:
    """The audio an engine call wrote; a clear error naming the voice and the command when it
    wrote none (festival exits 0 for a voice it cannot load) or only silence."""
    said = f" It printed: {printed[-300:]}" if printed else ""
    fix = (f"Fix: check that the voice speaks (run the command by hand), reinstall it "
           f"({install_hint(voice)}), or leave {voice} out of the held-out voices")
    if not wav.is_file() or wav.stat().st_size <= WAV_HEADER_BYTES:
        raise TrainerError(f"{voice}: `{shlex.join(cmd)}` exited 0 but wrote no audio.{said} {fix}")
    audio = load_audio(wav)
    if float(np.max(np.abs(audio))) < SILENT_PEAK:
        raise TrainerError(f"{voice}: `{shlex.join(cmd)}` wrote only silence.{said} {fix}")
    return audio


def synthesize_heldout(text: str, voice: str, stretch: float = 1.0) -> np.ndarray:
    """Speak ``text`` with a held-out voice.

    Args:
        text: plain English text.
        voice: ``flite:NAME`` or ``festival:NAME`` from ``list_heldout_voices()``.
        stretch: duration factor, >1 slower (0.5..2.0).

    Returns:
        float32 mono audio at 16 kHz.
    """
    if not text or not text.strip():
        raise TrainerError("a held-out engine was asked to speak empty text")
    if not STRETCH_LIMITS[0] <= stretch <= STRETCH_LIMITS[1]:
        raise TrainerError(f"stretch={stretch} is outside {STRETCH_LIMITS[0]}..{STRETCH_LIMITS[1]}")
    engine, name = _parse_voice(voice)
    # Text goes through stdin/a file, never the command line, so quotes cannot break the call.
    clean = " ".join(text.split())
    with tempfile.TemporaryDirectory(prefix="hark-heldout-") as tmp:
        wav = Path(tmp) / "out.wav"
        if engine == "flite":
            txt = Path(tmp) / "in.txt"
            txt.write_text(clean + "\n", encoding="utf-8")
            cmd = [_require("flite"), "-voice", name, "--setf", f"duration_stretch={stretch:.3f}",
                   "-f", str(txt), "-o", str(wav)]
            return _read_output(wav, cmd, voice, _run(cmd, None, voice))
        native_stretch = 1.0 if _is_hts(name) else stretch
        cmd = [_require("text2wave"), "-o", str(wav), "-eval", f"(voice_{name})",
               "-eval", f"(Parameter.set 'Duration_Stretch {native_stretch:.3f})"]
        audio = _read_output(wav, cmd, voice, _run(cmd, clean + "\n", voice))
    return audio if native_stretch == stretch else time_stretch(audio, 1.0 / stretch)


def _is_hts(festival_voice: str) -> bool:
    """HTS (statistical parametric) voices ignore festival's Duration_Stretch parameter."""
    return festival_voice.endswith("_hts")
