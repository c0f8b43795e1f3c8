"""Held-out voices: only real English voices are voices, every engine call must write audio,
and the eval set's voices are pinned whatever else is installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trainer.errors import TrainerError
from trainer.synth import evalsets, heldout


def _voice(root: Path, language: str, name: str, proclaim: str | None) -> Path:
    folder = root / language / name / "festvox"
    folder.mkdir(parents=True)
    body = f"(define (voice_{name})\n  (voice_kal_diphone))\n"
    if proclaim:
        body += f"(proclaim_voice\n '{name}\n '((language {proclaim})\n   (gender female)))\n"
    (folder / f"{name}.scm").write_text(body)
    return folder.parent


@pytest.fixture
def voice_dir(tmp_path, monkeypatch) -> Path:
    """A festival voice folder laid out as Debian's packages lay it out."""
    root = tmp_path / "voices"
    _voice(root, "english", "ked_diphone", "english")
    _voice(root, "us", "cmu_us_x_arctic_hts", None)  # no proclamation: the folder says English
    _voice(root, "italian", "lp_diphone", "italian")
    _voice(root, "czech", "czech_dita", None)  # festival-czech proclaims with its own macro
    # Debian's Finnish voices: shared data in suopuhe.common, the voice's festvox/ links to it.
    common = root / "finnish" / "suopuhe.common"
    common.mkdir(parents=True)
    (common / "finnish_lex.scm").write_text(";; lexicon\n")
    (common / "suo_fi_lj_diphone.scm").write_text(
        "(define (voice_suo_fi_lj_diphone) t)\n"
        "(proclaim_voice 'suo_fi_lj_diphone '((language finnish) (gender female)))\n")
    (root / "finnish" / "suo_fi_lj_diphone").mkdir()
    os.symlink("../suopuhe.common", root / "finnish" / "suo_fi_lj_diphone" / "festvox")
    (root / "english" / "half_installed").mkdir()  # a voice folder with no voice in it
    monkeypatch.setattr(heldout, "FESTIVAL_VOICE_DIR", root)
    return root


def test_only_folders_festival_would_load_are_voices(voice_dir):
    found = {v.name: v.language for v in heldout.scan_festival_voices(voice_dir)}
    assert found == {"ked_diphone": "english", "cmu_us_x_arctic_hts": "us", "lp_diphone": "italian",
                     "czech_dita": "czech", "suo_fi_lj_diphone": "finnish"}


def test_shared_data_and_foreign_voices_are_not_heldout_voices(voice_dir, monkeypatch):
    monkeypatch.setattr(heldout, "_flite_voices", lambda: ())
    real_which = shutil.which
    monkeypatch.setattr(heldout.shutil, "which",
                        lambda p: "/usr/bin/text2wave" if p == "text2wave" else real_which(p))
    assert heldout.list_heldout_voices() == ["festival:cmu_us_x_arctic_hts", "festival:ked_diphone"]
    for voice in ("festival:suopuhe.common", "festival:lp_diphone", "festival:half_installed"):
        with pytest.raises(TrainerError, match="not installed as an English voice"):
            heldout.synthesize_heldout("hey jarvis", voice)


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival not installed")
def test_festival_writing_no_audio_is_an_error_naming_voice_and_command(voice_dir):
    """text2wave exits 0 when it cannot load the voice, and writes nothing."""
    _voice(voice_dir, "english", "not_really_a_voice", "english")
    with pytest.raises(TrainerError) as caught:
        heldout.synthesize_heldout("hey jarvis", "festival:not_really_a_voice")
    message = str(caught.value)
    assert "festival:not_really_a_voice" in message and "wrote no audio" in message
    assert "text2wave" in message and "(voice_not_really_a_voice)" in message


def test_an_engine_that_exits_0_without_audio_is_an_error(tmp_path, monkeypatch):
    """A flite that lists a voice and exits 0 but writes nothing (no festival needed)."""
    fake = tmp_path / "bin" / "flite"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nif [ "$1" = "-lv" ]; then echo "Voices available: kal"; fi\n'
                    'echo "no audio device" >&2\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    heldout._flite_voices.cache_clear()
    try:
        with pytest.raises(TrainerError, match=r"flite:kal: `.*flite -voice kal .*` exited 0 but "
                                               r"wrote no audio\. It printed: no audio device"):
            heldout.synthesize_heldout("hey jarvis", "flite:kal")
    finally:
        heldout._flite_voices.cache_clear()


def test_heldout_set_is_the_standard_one_whatever_else_is_installed(monkeypatch, capsys):
    extra = ["festival:rab_diphone", "festival:don_diphone"]
    monkeypatch.setattr(evalsets, "list_heldout_voices", lambda: [*heldout.STANDARD_VOICES, *extra])
    chosen = evalsets.heldout_voices_for(None)
    assert chosen["voices"] == list(heldout.STANDARD_VOICES)
    assert chosen["installed_not_used"] == extra and chosen["missing_from_standard"] == []
    assert capsys.readouterr().err == ""

    fewer = [v for v in heldout.STANDARD_VOICES if v != "festival:ked_diphone"]
    monkeypatch.setattr(evalsets, "list_heldout_voices", lambda: fewer)
    chosen = evalsets.heldout_voices_for(None)
    assert chosen["voices"] == fewer and chosen["missing_from_standard"] == ["festival:ked_diphone"]
    assert "festival:ked_diphone not installed" in capsys.readouterr().err
    assert "festvox-kdlpc16k" in heldout.install_hint("festival:ked_diphone")


def test_a_pinned_voice_missing_here_is_an_error_saying_which(monkeypatch):
    monkeypatch.setattr(evalsets, "list_heldout_voices", lambda: ["flite:kal", "flite:slt"])
    pin = {"voices": ["flite:slt", "festival:ked_diphone"]}
    with pytest.raises(TrainerError, match=r"festival:ked_diphone are pinned in the dataset manifest "
                                           r"but are not installed.*festvox-kdlpc16k"):
        evalsets.heldout_voices_for(pin)
    assert evalsets.heldout_voices_for({"voices": ["flite:slt"]})["voices"] == ["flite:slt"]
    assert evalsets.heldout_voices_for(None, ["flite:kal"])["installed_not_used"] == ["flite:slt"]


def test_a_training_engine_that_returns_no_audio_is_an_error_naming_the_voice(tmp_path, monkeypatch):
    import numpy as np

    from trainer.synth import build
    monkeypatch.setattr(build, "synthesize", lambda text, voice, *a: np.zeros(0, np.float32))
    config = build.SynthConfig(n_positive=2, n_negative_speech=0, n_neighbour=0, background_files=0,
                               engines=("espeak",), workers=1)
    with pytest.raises(TrainerError, match=r"en[\w+-]*: the speech engine returned no audio for "
                                           r"'hey jarvis"):
        build.synthesize_dataset("hey jarvis", tmp_path / "d", config, progress=False)
    assert build.require_speech(np.full(10, 0.5, np.float32), "v", "t").shape == (10,)
    with pytest.raises(TrainerError, match="only silence"):
        build.require_speech(np.zeros(10, np.float32), "v", "t")
