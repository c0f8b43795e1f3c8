"""trainer.provenance and trainer.model_card: engines, licences and counts of the training data,
licence-clean synthesis, and the card of a folder exported before provenance existed."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sentry.constants import SAMPLE_RATE
from sentry.manifest import Manifest
from trainer.config import AugmentConfig
from trainer.dataset import load_dataset
from trainer.errors import TrainerError
from trainer.model_card import render_card
from trainer.provenance import (DECTALK_PACKAGE, ENGINES, LICENCE_CLEAN_ENGINES, hark_version,
                                training_provenance)
from trainer.synth import dectalk
from trainer.synth.build import SynthConfig, synthesize_dataset

REPO = Path(__file__).resolve().parents[3]
PHRASE = "hey jarvis"
TINY = SynthConfig(seed=4, n_positive=24, n_negative_speech=16, n_neighbour=16, background_files=2,
                   background_seconds=2.0, workers=1)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The same tiny recipe synthesized twice: the default mix and licence-clean."""
    root = tmp_path_factory.mktemp("prov")
    return {clean: synthesize_dataset(PHRASE, root / f"clean_{clean}",
                                      replace(TINY, licence_clean=clean), progress=False)
            for clean in (False, True)}


def _provenance(dataset) -> dict:
    return json.loads((dataset.root / "manifest.json").read_text())["provenance"]


def test_dataset_manifest_lists_engines_with_licences_and_counts(datasets):
    dataset = datasets[False]
    p = _provenance(dataset)
    assert p["licence_clean"] is False and p["hark_version"] == hark_version()
    engines = {e["engine"]: e for e in p["engines"]}
    speech = [c for c in dataset.clips if c.label != "background"]
    assert sum(e["clips"] for e in engines.values()) == len(speech) == 56
    for name, entry in engines.items():
        assert entry["clips"] == sum(c.engine == name for c in speech)
        assert entry["voices"] == len({c.voice for c in speech if c.engine == name}) > 0
        assert entry["licence"] == ENGINES[name].licence
    assert engines["espeak"]["name"] == "espeak-ng"
    assert "libespeak-ng" in engines["espeak"]["version"]
    assert [b["name"] for b in p["backgrounds"]] == [
        "generated noise, music-like chords and mains hum", "babble"]
    if dectalk.available():
        assert engines["dectalk"]["clips"] > 0 and p["commercial_use"].startswith("unclear: DECtalk")


def test_licence_clean_synthesis_uses_only_engines_whose_output_may_be_sold(datasets):
    clean = datasets[True]
    assert set(LICENCE_CLEAN_ENGINES) == {"espeak", "pico", "kokoro"}  # kokoro: Apache-2.0 + MIT
    assert {c.engine for c in clean.clips if c.label != "background"} <= set(LICENCE_CLEAN_ENGINES)
    p = _provenance(clean)
    assert p["licence_clean"] is True and "dectalk" not in {e["engine"] for e in p["engines"]}
    assert p["commercial_use"].startswith("the licences of every speech engine used allow")
    manifest = json.loads((clean.root / "manifest.json").read_text())
    assert manifest["config"]["licence_clean"] is True
    assert not any(v.startswith("dectalk:") for vs in manifest["speaker_splits"].values() for v in vs)


def test_licence_clean_refuses_an_engine_it_must_leave_out(tmp_path):
    from trainer.pipeline import synth_all
    with pytest.raises(TrainerError, match="--engine dectalk with --licence-clean: DECtalk's "
                                           "licence is unclear"):
        synth_all(PHRASE, tmp_path / "d", engines=("dectalk",), licence_clean=True, with_eval=False)
    assert not (tmp_path / "d").exists()


def test_a_reused_dataset_must_match_the_licence_clean_request(datasets):
    from trainer.pipeline import _check_licence_clean
    _check_licence_clean(datasets[True].root, True)
    _check_licence_clean(datasets[False].root, False)
    with pytest.raises(TrainerError, match="synthesized without --licence-clean.*--fresh"):
        _check_licence_clean(datasets[False].root, True)


def test_training_provenance_counts_what_training_reads(datasets, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(datasets[True].root, root)
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    for rel in ("positive/me_saying_it.wav", "hard_negative/mined/night_00001.wav",
                "hard_negative/mined/night_00002.wav", "rir/kitchen.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, tone, SAMPLE_RATE)
    augment = AugmentConfig(chain=("noise", "reverb"), reverb_source="rir")
    p = training_provenance(load_dataset(root), augment)
    assert p["dataset"]["manifest_sha256"] == hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
    assert p["licence_clean"] is True and p["hark_version"] == hark_version()
    others = {s["name"].split(" ")[0]: s["clips"] for s in p["other_sources"]}
    assert others == {"mined": 2, "files": 1}
    assert p["splits"] == ["train", "val"]
    assert p["noise"]["used"] and p["noise"]["clips"] == sum(
        c.label == "background" and c.split == "train" for c in load_dataset(root).clips)
    assert p["reverb"]["source"].startswith("1 impulse-response file(s)") and p["reverb"]["commercial_output"] is None
    assert "whose licences Hark does not know" in p["commercial_use"]
    plain = training_provenance(load_dataset(root), AugmentConfig(chain=("gain",)))
    assert plain["noise"] == {"used": False} and plain["reverb"] == {"used": False}


def test_a_dataset_from_before_provenance_gets_its_engines_from_its_clips(datasets, tmp_path):
    root = tmp_path / "old"
    shutil.copytree(datasets[False].root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["provenance"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    p = training_provenance(load_dataset(root), AugmentConfig())
    engines = {e["engine"]: e for e in p["engines"]}
    assert engines["espeak"]["clips"] == sum(c["engine"] == "espeak" and c["split"] in ("train", "val")
                                             for c in manifest["clips"])
    assert engines["espeak"]["version"] == "" and p["licence_clean"] is False
    assert p["dataset"]["synthesized_with_hark"] == ""


def test_dectalk_version_is_the_one_the_install_script_fetches():
    script = (REPO / "scripts" / "install_dectalk.sh").read_text()
    name, version = DECTALK_PACKAGE.split(" ", 1)[1].split(" ")
    assert f"/{name}/-/{name}-{version}.tgz" in script


def test_hark_version_is_the_installed_distributions():
    dists = importlib.metadata.packages_distributions().get("trainer", [])
    assert hark_version() == (importlib.metadata.version(dists[0]) if dists else "")


def test_card_of_a_folder_exported_before_provenance():
    old = Manifest(wake_word="hey jarvis", sample_rate=16000, window_samples=24000, hop_samples=1280,
                   overlap_samples=400, window_frames=148, hop_frames=8, n_mels=40, threshold=0.5,
                   smoothing_hops=2, refractory_s=2.0, parameters=1234, architecture="tcresnet",
                   config_hash="abc", files={"model": "model.onnx"})
    card = render_card(old)
    assert card.startswith('# Wake-word model: "hey jarvis"')
    assert "No provenance was recorded" in card and "Not evaluated on continuous audio yet" in card
    assert "## Licence notes" in card and "Apache-2.0" in card


def test_an_engine_without_a_recorded_licence_is_marked_unknown_not_clean():
    from trainer.provenance import dataset_provenance
    clips = [{"engine": "espeak", "voice": "en-us+m3"}, {"engine": "newtts", "voice": "newtts:a"},
             {"engine": "newtts", "voice": "newtts:b"}, {"engine": "synthetic", "voice": ""}]
    p = dataset_provenance(clips, babble_voices=1, licence_clean=False)
    assert [(e["engine"], e["voices"], e["clips"]) for e in p["engines"]] == [("espeak", 1, 1), ("newtts", 2, 2)]
    assert p["engines"][1]["licence"] == "unknown" and p["engines"][1]["commercial_output"] is None
    assert p["commercial_use"].startswith("unclear: newtts") and "newtts" not in LICENCE_CLEAN_ENGINES


def test_cli_licence_clean_with_dectalk_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from trainer.cli import main
    out = tmp_path / "d"
    result = CliRunner().invoke(main, ["synth", PHRASE, "--out", str(out), "--engine", "dectalk",
                                       "--license-clean", "--no-eval"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--engine dectalk with --licence-clean" in result.output and not out.exists()
    assert "--licence-clean" in CliRunner().invoke(main, ["run", "--help"]).output


def test_an_ensemble_of_one_dataset_keeps_its_members_provenance():
    from trainer.provenance import ensemble_provenance
    member = {"dataset": {"path": "/d/hj", "phrase": "hey jarvis", "manifest_sha256": "ab"},
              "licence_clean": True, "engines": [{"engine": "espeak", "name": "espeak-ng",
                                                  "licence": "GPL", "voices": 10, "clips": 100}]}
    assert ensemble_provenance([member, dict(member)]) == {**member, "ensemble_members": 2}
    assert ensemble_provenance([member, {}]) == {}  # a member exported before provenance


def test_an_ensemble_of_different_data_merges_engines_and_is_clean_only_if_all_are():
    from trainer.provenance import ENGINES, ensemble_provenance

    def engine(name: str, voices: int, clips: int) -> dict:
        info = ENGINES[name]
        return {"engine": name, "name": info.name, "licence": info.licence,
                "commercial_output": info.commercial_output, "voices": voices, "clips": clips}

    clean = {"dataset": {"path": "/d/a", "phrase": "hey jarvis", "manifest_sha256": "aa"},
             "licence_clean": True, "engines": [engine("espeak", 10, 100), engine("pico", 2, 30)],
             "other_sources": []}
    full = {"dataset": {"path": "/d/b", "phrase": "hey jarvis", "manifest_sha256": "bb"},
            "licence_clean": False, "engines": [engine("espeak", 12, 90), engine("dectalk", 27, 40)],
            "other_sources": [{"name": "files added by hand", "licence": "yours", "clips": 3}]}
    merged = ensemble_provenance([clean, full])
    assert merged["ensemble_members"] == 2 and merged["licence_clean"] is False
    by_engine = {e["engine"]: (e["voices"], e["clips"]) for e in merged["engines"]}
    assert by_engine == {"espeak": (12, 190), "pico": (2, 30), "dectalk": (27, 40)}
    assert merged["dataset"]["path"] == "/d/a; /d/b" and merged["dataset"]["manifest_sha256"] is None
    assert [d["manifest_sha256"] for d in merged["datasets"]] == ["aa", "bb"]
    assert merged["other_sources"] == full["other_sources"]
    assert "files added by hand" in merged["commercial_use"]
