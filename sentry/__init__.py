"""Hark's edge runtime: wake-word detection with numpy and onnxruntime only.

The public API is re-exported here and imported lazily, so that the trainer, which
only needs `sentry.constants` and `sentry.manifest`, does not pay for onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SentryError": "errors",
    "Detector": "detector",
    "Detection": "detector",
    "read_wav": "audio",
    "to_float32": "audio",
    "resample": "audio",
    "StreamResampler": "audio",
    "Manifest": "manifest",
    "load_manifest": "manifest",
    "TriggerSettings": "postprocess",
    "Graphs": "scoring",
    "StreamScorer": "scoring",
    "ClipScorer": "scoring",
    "Listener": "daemon",
    "ListenStats": "daemon",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # static analysers see ordinary imports
    from .audio import StreamResampler, read_wav, resample, to_float32
    from .daemon import Listener, ListenStats
    from .detector import Detection, Detector
    from .errors import SentryError
    from .manifest import Manifest, load_manifest
    from .postprocess import TriggerSettings
    from .scoring import ClipScorer, Graphs, StreamScorer


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed distribution's (sentry.version), read on demand
        from .version import package_version
        globals()[name] = package_version()
        return globals()[name]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sentry' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
