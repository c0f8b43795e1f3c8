"""Held-out speech engines: flite and festival. Never used for training.

A model trained only on espeak can learn espeak's synthesis artefacts instead of the phrase.
Scoring it on speech from entirely different engines (flite's and festival's diphone, cluster
unit and HTS voices) tells whether it generalises beyond the training synthesiser.

Voices are ``engine:name``: flite voices from ``flite -lv`` (minus ``awb_time``, which can only
say the time) and festival voices found under /usr/share/festival/voices/<language>/<name>/.
Duration stretch is the engines' own (flite ``duration_stretch``, festival ``Duration_Stretch``)
except for festival HTS voices, which ignore it: those are stretched afterwards with WSOLA.
Both engines run as subprocesses; install them with ``apt-get install flite festival``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from trainer.audio import load_audio
from trainer.errors import TrainerError
from trainer.synth.warps import time_stretch

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
EXCLUDED_FLITE_VOICES = frozenset({"awb_time"})
"""awb_time is a limited-domain voice that only speaks clock times."""
STRETCH_LIMITS = (0.5, 2.0)
"""Allowed duration stretch factors (>1 is slower)."""
ENGINE_TIMEOUT_S = 60.0
"""Seconds one synthesis subprocess may take before it is considered hung."""
INSTALL_HINT = "Fix: apt-get install flite festival"


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


@functools.lru_cache(maxsize=1)
def _festival_voices() -> tuple[str, ...]:
    if shutil.which("text2wave") is None or not FESTIVAL_VOICE_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in FESTIVAL_VOICE_DIR.glob("*/*") if p.is_dir()))


def list_heldout_voices() -> list[str]:
    """All held-out voices, e.g. ["flite:kal", ..., "festival:kal_diphone"].

    Raises TrainerError when neither engine is installed.
    """
    voices = [f"flite:{v}" for v in _flite_voices()] + [f"festival:{v}" for v in _festival_voices()]
    if not voices:
        raise TrainerError(f"no held-out speech engine found (flite, festival). {INSTALL_HINT}")
    return voices


def _parse_voice(voice: str) -> tuple[str, str]:
    engine, _, name = voice.partition(":")
    known = _flite_voices() if engine == "flite" else _festival_voices() if engine == "festival" else ()
    if engine not in ("flite", "festival") or not name:
        raise TrainerError(f"bad held-out voice {voice!r}: expected 'flite:NAME' or 'festival:NAME'")
    if name not in known:
        _require("flite" if engine == "flite" else "text2wave")
        raise TrainerError(
            f"held-out voice {voice!r} is not installed; installed: {', '.join(list_heldout_voices())}"
        )
    return engine, name


def _run(cmd: list[str], stdin: str | None, voice: str) -> None:
    try:
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise TrainerError(f"{voice}: synthesis hung for {ENGINE_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        raise TrainerError(f"{voice}: {cmd[0]} failed ({result.returncode}): {result.stderr.strip()}")


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
            _run([_require("flite"), "-voice", name, "--setf", f"duration_stretch={stretch:.3f}",
                  "-f", str(txt), "-o", str(wav)], None, voice)
            return load_audio(wav)
        native_stretch = 1.0 if _is_hts(name) else stretch
        _run([_require("text2wave"), "-o", str(wav), "-eval", f"(voice_{name})",
              "-eval", f"(Parameter.set 'Duration_Stretch {native_stretch:.3f})"], clean + "\n", voice)
        audio = load_audio(wav)
    return audio if native_stretch == stretch else time_stretch(audio, 1.0 / stretch)


def _is_hts(festival_voice: str) -> bool:
    """HTS (statistical parametric) voices ignore festival's Duration_Stretch parameter."""
    return festival_voice.endswith("_hts")
