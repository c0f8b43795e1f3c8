"""English speech from DECtalk, a second synthesis engine for training data.

espeak-ng alone teaches a model espeak's timbre: it then misses most voices of engines it never
heard (see benchmarks/RESULTS.md). DECtalk is a different formant synthesizer (Klatt's, with its
own glottal source, prosody and letter-to-sound rules) with nine built-in speakers, four of them
female or a child, and a "design voice" command that changes head size, pitch, breathiness and
laryngealization continuously. It is used when installed; without it synthesis is espeak only.

The program comes from the npm registry package ``dectalk`` (an x86-64 Linux build,
``dtalk/linux/say_demo_us``, plus its dictionary ``dtalk_us.dic``); ``./run.sh`` fetches it with
``scripts/install_dectalk.sh`` into ``.venv/share/dectalk``. ``HARK_DECTALK_DIR`` points
elsewhere. It needs ``libpulse0`` and ``libsndfile1`` from Debian. DECtalk's source licence is
unclear, so Hark never ships it: it only runs it on the developer's machine to make audio.

Voices are ``dectalk:SPEAKER:HEAD``: a built-in speaker letter and a head size in percent.
Each clip also draws its average pitch, pitch range, breathiness and rate, so no two clips of a
voice sound the same, while the voice (what the train/val/test split follows) stays fixed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from trainer.audio import load_audio
from trainer.errors import TrainerError

PREFIX = "dectalk:"
PROGRAM = "say_demo_us"
DICTIONARY = "dtalk_us.dic"
ENV_DIR = "HARK_DECTALK_DIR"
TIMEOUT_S = 30.0
"""A phrase takes about 40 ms; anything near this limit is a hung program."""

SPEAKERS = {
    "p": ("Paul", 122), "h": ("Harry", 89), "f": ("Frank", 155), "d": ("Dennis", 110),
    "b": ("Betty", 208), "u": ("Ursula", 240), "r": ("Rita", 106), "w": ("Wendy", 200),
    "k": ("Kit", 306),
}
"""Built-in speakers: letter -> (name, average pitch in Hz as DECtalk defines it)."""
HEAD_SIZES = (88, 100, 114)
"""Head sizes (percent of the speaker's own) crossed with the speakers: 9 x 3 = 27 voices."""
PITCH_SCALE = (0.8, 1.25)
"""Each clip's average pitch is the speaker's times a factor drawn from this range."""
PITCH_RANGE_PERCENT = (40, 160)
BREATHINESS_DB = (0, 45)
RATE_WPM = (120, 260)
"""DECtalk accepts 75..600 words per minute; natural speech sits in this band."""
_UNSAFE = str.maketrans({"[": " ", "]": " ", "\n": " ", "\r": " "})
"""Square brackets start DECtalk commands, so they never reach it from the text."""


def install_dir() -> Path:
    """Where the program is looked for: ``$HARK_DECTALK_DIR``, else ``<venv>/share/dectalk``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path(sys.prefix) / "share" / "dectalk"


@cache
def available() -> bool:
    """True if the program runs here (installed, x86-64 Linux, its libraries present)."""
    folder = install_dir()
    if not (folder / PROGRAM).is_file() or not (folder / DICTIONARY).is_file():
        return False
    try:
        _run("test", folder, timeout=TIMEOUT_S)
    except TrainerError:
        return False
    return True


def list_voices() -> list[str]:
    """DECtalk voice identifiers, or none when DECtalk is not available."""
    if not available():
        return []
    return [f"{PREFIX}{letter}:{head}" for letter in SPEAKERS for head in HEAD_SIZES]


def is_dectalk(voice: str) -> bool:
    return voice.startswith(PREFIX)


def _parse_voice(voice: str) -> tuple[str, int]:
    try:
        _, letter, head = voice.split(":")
        if letter not in SPEAKERS:
            raise ValueError(letter)
        return letter, int(head)
    except ValueError:
        raise TrainerError(f"bad DECtalk voice {voice!r}: expected dectalk:SPEAKER:HEAD with a "
                           f"speaker among {''.join(SPEAKERS)}, e.g. dectalk:b:100") from None


def _run(text: str, folder: Path, timeout: float) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="hark-dectalk-") as tmp:
        out = Path(tmp) / "out.wav"
        try:
            done = subprocess.run([str(folder / PROGRAM), "-fo", str(out), "-a", text],
                                  cwd=folder, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TrainerError(f"DECtalk ({folder / PROGRAM}) failed: {exc}") from exc
        if done.returncode != 0 or not out.is_file():
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
            raise TrainerError(f"DECtalk exited with {done.returncode}: {detail}. Fix: apt-get "
                               "install libpulse0 libsndfile1, or reinstall it with "
                               "scripts/install_dectalk.sh")
        return load_audio(out)


def synthesize(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """Speak ``text`` with a DECtalk voice, drawing this clip's prosody from ``rng``.

    Returns float32 mono audio at 16 kHz. DECtalk renders 11,025 Hz, so nothing lies above
    5.5 kHz: the band of a cheap microphone.
    """
    letter, head = _parse_voice(voice)
    text = text.translate(_UNSAFE).strip()
    if not text:
        raise TrainerError("DECtalk was asked to speak empty text")
    pitch = SPEAKERS[letter][1] * rng.uniform(*PITCH_SCALE)
    design = (f"[:dv hs {head} ap {pitch:.0f} pr {rng.integers(*PITCH_RANGE_PERCENT)} "
              f"br {rng.integers(*BREATHINESS_DB)}]")
    command = f"[:PHONE ON][:n{letter}]{design}[:rate {rng.integers(*RATE_WPM)}]{text}"
    return _run(command, install_dir(), TIMEOUT_S)  # load_audio resamples to SAMPLE_RATE
