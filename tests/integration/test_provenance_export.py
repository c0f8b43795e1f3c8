"""An export of a tiny training holds the training data's provenance and a model card, which
`hark eval` rewrites; a folder exported before either still loads in the sentry and the judge."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from judge.verifier import Verifier
from sentry.detector import Detector
from sentry.manifest import MANIFEST_NAME, load_manifest
from trainer.audio import load_audio
from trainer.model_card import CARD_NAME
from trainer.provenance import hark_version

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """An export of its own: the shared one's card is rewritten by other tests' evaluations."""
    from trainer.export import export_run
    folder, _ = export_run(trained_run, tmp_path_factory.mktemp("provenance") / "export")
    return folder


def test_export_holds_provenance_and_the_card(exported, tiny_dataset):
    p = load_manifest(exported).provenance
    assert p["hark_version"] == hark_version() and p["licence_clean"] is False
    digest = hashlib.sha256((tiny_dataset / "manifest.json").read_bytes()).hexdigest()
    assert p["dataset"]["manifest_sha256"] == digest and p["dataset"]["phrase"] == "hey jarvis"
    engines = {e["engine"]: e for e in p["engines"]}
    clips = [c for c in json.loads((tiny_dataset / "manifest.json").read_text())["clips"]
             if c["split"] in ("train", "val")]  # what training reads
    for name, entry in engines.items():
        assert entry["clips"] == sum(c["engine"] == name for c in clips) > 0
        assert entry["voices"] == len({c["voice"] for c in clips if c["engine"] == name})
        assert entry["licence"]
    assert engines["espeak"]["licence"] == "GPL-3.0-or-later"
    backgrounds = sum(c["label"] == "background" and c["split"] == "train" for c in clips)
    assert p["noise"]["used"] and p["noise"]["clips"] == backgrounds and p["reverb"] == {"used": False}
    raw = json.loads((exported / MANIFEST_NAME).read_text())
    assert raw["provenance"] == p  # written into manifest.json itself, not only in memory

    card = (exported / CARD_NAME).read_text()
    for heading in ("## Intended use", "## Training data", "## Evaluation", "## Known weaknesses",
                    "## Licence notes"):
        assert heading in card
    assert '"hey jarvis"' in card and digest in card and "Not evaluated on continuous audio yet" in card
    for entry in engines.values():
        assert f"| {entry['name']} | {entry['version'] or 'unknown'} | {entry['licence']} | " \
               f"{entry['voices']} | {entry['clips']} |" in card
    assert "Every training voice is synthetic" in card


def test_eval_rewrites_the_card_with_its_results(exported, tiny_dataset, tmp_path):
    from trainer.pipeline import evaluate_and_report
    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    summary = evaluate_and_report(folder, tiny_dataset / "eval", progress=False)
    card = (folder / CARD_NAME).read_text()
    assert "Not evaluated" not in card
    assert f"At the shipped threshold {summary['threshold']:.3f} (chosen on `{summary['threshold_chosen_on']}`" in card
    assert summary["threshold_chosen_on"] == "calib"
    eval_sets = json.loads((tiny_dataset / "eval" / "manifest.json").read_text())["sets"]
    for name, measured in summary["sets"].items():
        row = next(line for line in card.splitlines() if line.startswith(f"| {name} |"))
        assert ", ".join(eval_sets[name]["voices"]) in row
        assert f"| {100 * measured['frr']:.1f}% | {measured['fa_per_hour']:.2f} |" in row
    assert load_manifest(folder).provenance == load_manifest(exported).provenance  # kept


def test_a_folder_exported_before_provenance_still_loads(exported, tiny_dataset, tmp_path):
    """Sentry (library and `hark-sentry scan --model`) and judge read only manifest and graphs."""
    old = tmp_path / "old_export"
    shutil.copytree(exported, old)
    raw = json.loads((old / MANIFEST_NAME).read_text())
    del raw["provenance"]
    (old / MANIFEST_NAME).write_text(json.dumps(raw))
    (old / CARD_NAME).unlink()
    assert load_manifest(old).provenance == {}
    clip = sorted((tiny_dataset / "eval" / "heldout" / "positive").glob("*.wav"))[0]
    pcm = load_audio(clip)
    np.testing.assert_array_equal(Detector(old).score_pcm(pcm), Detector(exported).score_pcm(pcm))
    assert Verifier(old).score(pcm) == Verifier(exported).score(pcm)
    scan = subprocess.run([sys.executable, "-m", "sentry.cli", "scan", "--model", str(old), "--json",
                           str(clip)], capture_output=True, text=True, timeout=120)
    assert scan.returncode == 0, scan.stderr
