"""Same command, same machine, same bits: synthesis that does not depend on call order or on
how clips are spread over worker processes."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from trainer.provenance import engine_version
from trainer.synth import build
from trainer.synth.build import SynthConfig, synthesize_dataset
from trainer.synth.espeak import synthesize


def test_espeak_output_does_not_depend_on_what_was_said_before():
    engine_version("espeak")  # loads the wheel's library too, and keeps it loaded
    first = synthesize("hey jarvis!", "en+f1", 160, 40, 60)
    synthesize("the quick brown fox jumps over the lazy dog", "en-gb-scotland+klatt", 210, 30, 80)
    synthesize("something else entirely", "en-029+Annie", 140, 70, 20)
    again = synthesize("hey jarvis!", "en+f1", 160, 40, 60)
    assert again.dtype == first.dtype and np.array_equal(again, first)


def _files(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.wav"))}


def test_two_worker_synthesis_is_byte_identical_to_one_worker(tmp_path, monkeypatch):
    # Worker processes get chunks of clips in whatever order they finish; before each clip
    # depended only on itself, a clip's bits depended on the clips its worker had made before.
    monkeypatch.setattr(build, "PARALLEL_MIN_JOBS", 0)
    config = dict(seed=3, n_positive=14, n_negative_speech=10, n_neighbour=10,
                  background_files=4, background_seconds=1.5)
    one = synthesize_dataset("hey jarvis", tmp_path / "one", SynthConfig(**config, workers=1),
                             progress=False)
    two = synthesize_dataset("hey jarvis", tmp_path / "two", SynthConfig(**config, workers=2),
                             progress=False)
    files = _files(one.root)
    assert len(files) == 14 + 10 + 10 + 4
    assert _files(two.root) == files
    clips = [json.loads((d.root / "manifest.json").read_text())["clips"] for d in (one, two)]
    assert clips[0] == clips[1]


def test_a_library_that_cannot_be_unloaded_is_reported_not_silent(monkeypatch, caplog):
    # Without a private copy the wheel's file is loaded, and trainer.provenance keeps that
    # file mapped: unloading cannot reset espeak's state, and the log must say so.
    from trainer.synth import espeak
    monkeypatch.setattr(espeak, "_engine", None)
    monkeypatch.setattr(espeak, "_private", None)
    monkeypatch.delattr(espeak.os, "memfd_create", raising=False)
    engine_version("espeak")
    with caplog.at_level("WARNING", logger="trainer.synth.espeak"):
        synthesize("hey jarvis", "en-us+m3")
        synthesize("hey jarvis", "en-us+m3")
    assert espeak._engine.reloads is False
    assert "depends on what this process said before" in caplog.text
