"""The JSON manifest that travels with an exported model folder.

An exported folder holds:
  features.onnx     streaming frontend: float32 pcm [B, OVERLAP+HOP] -> log-mel [B, HOP_FRAMES, N_MELS]
  model.onnx        classifier:          float32 features [B, WINDOW_FRAMES, N_MELS] -> prob [B]
  model.int8.onnx   the classifier quantized to INT8 (same input/output)
  clip.onnx         whole-window scorer: float32 pcm [B, CLIP_SAMPLES] -> prob [B] (judge, batch)
  manifest.json     this file
  MODEL_CARD.md     for people: training data, licences, evaluation (the sentry never reads it)

Fields added after format 1 first shipped have defaults, so folders exported before them load.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import SentryError
from .files import write_text_atomic
from .postprocess import TriggerSettings

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    wake_word: str
    sample_rate: int
    window_samples: int
    hop_samples: int
    overlap_samples: int
    window_frames: int
    hop_frames: int
    n_mels: int
    threshold: float
    smoothing_hops: int
    refractory_s: float
    parameters: int
    architecture: str
    config_hash: str
    files: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Training data sources and their licences, dataset hash, Hark version (trainer.provenance);
    kept through rewrites, never read by the sentry; empty in folders exported before it."""
    format_version: int = FORMAT_VERSION

    @property
    def trigger(self) -> TriggerSettings:
        return TriggerSettings(self.threshold, self.smoothing_hops, self.refractory_s)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, folder: Path) -> Path:
        return write_text_atomic(Path(folder) / MANIFEST_NAME, self.to_json())


def load_manifest(folder: str | Path) -> Manifest:
    """Read and check `folder/manifest.json`; every problem is a SentryError."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise SentryError(f"{path}: no manifest; is {folder} a folder written by `hark export`?")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SentryError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(raw, dict):
        raise SentryError(f"{path}: manifest must be a JSON object")
    known = {f.name for f in fields(Manifest)}
    required = {f.name for f in fields(Manifest)
                if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - raw.keys())
    if missing:
        raise SentryError(f"{path}: manifest lacks {', '.join(missing)}")
    if raw.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise SentryError(f"{path}: manifest format {raw['format_version']} is newer than this "
                          f"sentry understands ({FORMAT_VERSION}); upgrade hark")
    manifest = Manifest(**{k: v for k, v in raw.items() if k in known})
    for role, name in manifest.files.items():
        if not (folder / name).is_file():
            raise SentryError(f"{folder / name}: the manifest lists it as '{role}' but it is missing")
    return manifest
