import json

import pytest

from sentry.errors import SentryError
from sentry.manifest import Manifest, load_manifest


def _manifest(**overrides) -> Manifest:
    values = dict(wake_word="hey jarvis", sample_rate=16000, window_samples=24000, hop_samples=1280,
                  overlap_samples=240, window_frames=148, hop_frames=8, n_mels=40, threshold=0.7,
                  smoothing_hops=3, refractory_s=2.0, parameters=1234, architecture="tcresnet",
                  config_hash="abc", files={"model": "model.onnx"})
    values.update(overrides)
    return Manifest(**values)


def test_round_trip(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    _manifest().write(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded == _manifest()
    assert loaded.trigger.threshold == 0.7


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SentryError, match="no manifest"):
        load_manifest(tmp_path)
    _manifest().write(tmp_path)
    with pytest.raises(SentryError, match="model.onnx.*missing"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(SentryError, match="unreadable manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"wake_word": "x"}))
    with pytest.raises(SentryError, match="lacks"):
        load_manifest(tmp_path)


def test_provenance_is_kept_and_older_or_newer_manifests_load(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    provenance = {"format": 1, "engines": [{"name": "espeak-ng", "licence": "GPL-3.0-or-later"}]}
    _manifest(provenance=provenance).write(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.provenance == provenance
    loaded.threshold = 0.4  # as `hark eval` rewrites it: the provenance stays
    loaded.write(tmp_path)
    assert load_manifest(tmp_path).provenance == provenance
    # A folder exported before provenance existed, and one from a later Hark with more fields.
    raw = json.loads((tmp_path / "manifest.json").read_text())
    del raw["provenance"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert load_manifest(tmp_path).provenance == {}
    (tmp_path / "manifest.json").write_text(json.dumps({**raw, "model_card": "MODEL_CARD.md"}))
    assert load_manifest(tmp_path).threshold == 0.4
