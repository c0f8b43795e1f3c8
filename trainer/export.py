"""Export a trained run to ONNX for the sentry and the judge, with a parity check.

Writes features.onnx (streaming frontend), model.onnx (classifier over the frame
window), model.int8.onnx (static INT8 quantization of the classifier), clip.onnx
(raw 1.5 s PCM -> probability), manifest.json (with the training data's provenance) and
MODEL_CARD.md. Every graph is compared against
torch on real windows from the dataset; a mismatch beyond tolerance is an error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from torch import nn

from sentry.constants import (CLIP_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS,
                              OVERLAP_SAMPLES, SAMPLE_RATE, WINDOW_FRAMES)
from sentry.manifest import Manifest

from .config import Config, config_from_dict
from .data import WindowSampler, load_pools, open_dataset
from .errors import TrainerError
from .features import LogMel
from .loop import BEST, load_checkpoint
from .model_card import write_model_card
from .models import count_parameters
from .plugins import PluginManager
from .provenance import training_provenance

log = logging.getLogger(__name__)
# The exporter logs a warning per torchvision op it cannot register; hark uses none of them.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)

FILES = {"features": "features.onnx", "model": "model.onnx", "model_int8": "model.int8.onnx",
         "clip": "clip.onnx"}
FP32_TOLERANCE = 1e-3
"""Max |p_torch - p_onnx| for float graphs: only float rounding differs."""
INT8_MEAN_TOLERANCE = 0.03
INT8_MAX_TOLERANCE = 0.25
"""INT8 may move single probabilities, but not the model's behaviour on average."""
CALIBRATION_WINDOWS = 512


class Probability(nn.Module):
    """Wraps a logit model: features -> probability, the sentry's contract.

    forward()'s argument names are the ONNX input names (the exporter keys dynamic
    shapes by them), so they must stay `features` / `pcm`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(features))


class ClipScorer(nn.Module):
    """Raw PCM window -> probability, for the judge and batch scoring."""

    def __init__(self, frontend: LogMel, model: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.head = Probability(model)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return self.head(self.frontend(pcm))


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter narrates every stage on stdout and warns about optional packages
    # (torchvision) we do not use; keep the user's terminal for what matters.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=[input_name],
                                    output_names=[output_name],
                                    dynamic_shapes={input_name: {0: batch}})
    program.save(str(path))
    strip_metadata(path)


def strip_metadata(path: Path) -> None:
    """Drop per-node stack traces and doc strings the exporter records.

    They hold the dev box's file paths and, on the INT8 classifier, about a third of the
    file; the edge device needs neither.
    """
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    onnx.save(model, str(path))


def cpu_session(model: Path | onnx.ModelProto) -> ort.InferenceSession:
    """A one-thread CPU onnxruntime session on a graph file or an in-memory graph."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class _Calibration(CalibrationDataReader):
    def __init__(self, features: np.ndarray) -> None:
        self._rows = iter(features[i:i + 1] for i in range(len(features)))

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {"features": row}


def _windows(config: Config, n: int) -> torch.Tensor:
    """Real validation windows (positives and negatives) for calibration and parity."""
    pools = load_pools(open_dataset(config), "val", config.data.max_positive_s)
    sampler = WindowSampler(pools, config, augment=False)
    out = []
    for pcm, _ in sampler.epoch(seed=7):
        out.append(pcm)
        if sum(len(x) for x in out) >= n:
            break
    return torch.cat(out)[:n]


def check_parity(name: str, expected: np.ndarray, got: np.ndarray, max_tol: float, mean_tol: float | None = None) -> dict:
    diff = np.abs(expected - got)
    report = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if diff.max() > max_tol or (mean_tol is not None and diff.mean() > mean_tol):
        raise TrainerError(f"export parity failed for {name}: max |torch - onnx| = {diff.max():.4g} "
                           f"(tolerance {max_tol}), mean {diff.mean():.4g}"
                           + (f" (tolerance {mean_tol})" if mean_tol is not None else ""))
    return report


def _quantize(model_path: Path, int8_path: Path, feats: np.ndarray, probs: np.ndarray) -> dict | None:
    """Static INT8 (QDQ) of the classifier, calibrated on real windows; its parity report.

    Per-channel weight scales usually track the float model best, but on some trained models
    onnxruntime's per-channel result moves probabilities by 0.4 where per-tensor moves them
    by 0.03, so both are made and the closer one is kept. When neither is within tolerance
    there is no INT8 model (the float one is the sentry's default): a warning, not a failed
    export. Returns None then.
    """
    reports = {}
    # quantize_static suggests its pre-processing on the root logger; that step adds nothing
    # to this small graph, so the advice is muted rather than shown on every export.
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)
    try:
        for per_channel in (True, False):
            path = int8_path.with_suffix(f".{'channel' if per_channel else 'tensor'}.onnx")
            quantize_static(str(model_path), str(path), _Calibration(feats[:256]),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=per_channel,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"])
            diff = np.abs(probs - cpu_session(path).run(None, {"features": feats})[0])
            reports[path] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                             "per_channel": per_channel}
    finally:
        root.setLevel(level)
    path, report = min(reports.items(), key=lambda item: item[1]["mean_abs_diff"])
    path.replace(int8_path)
    for other in reports:
        other.unlink(missing_ok=True)
    if report["max_abs_diff"] > INT8_MAX_TOLERANCE or report["mean_abs_diff"] > INT8_MEAN_TOLERANCE:
        int8_path.unlink()
        log.warning("no INT8 model: quantizing moved probabilities by up to %.3g (mean %.3g; "
                    "tolerance %s, mean %s); the float model.onnx is exported as usual",
                    report["max_abs_diff"], report["mean_abs_diff"], INT8_MAX_TOLERANCE,
                    INT8_MEAN_TOLERANCE)
        return None
    strip_metadata(int8_path)
    return report


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, *,
               checkpoint: str = BEST, plugins: PluginManager | None = None) -> tuple[Path, Manifest]:
    """Export RUN_DIR's CHECKPOINT to OUT_DIR (default RUN_DIR/export). ``plugins`` is the
    run's manager, which rebuilds the model by its architecture's name (pass the one it was
    trained with); None builds the default one (built-ins plus entry-point plugins)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "export"
    ckpt = load_checkpoint(run_dir / checkpoint)
    config = config_from_dict(ckpt["config"], f"{run_dir / checkpoint} config")
    model = (plugins or PluginManager()).build_model(config.model)
    model.load_state_dict(ckpt["model"])
    model.eval()
    frontend = LogMel().eval()
    out.mkdir(parents=True, exist_ok=True)

    pcm = _windows(config, CALIBRATION_WINDOWS)
    with torch.no_grad():
        feats = frontend(pcm)
        probs = torch.sigmoid(model(feats)).numpy()
    _export(frontend, torch.zeros(2, OVERLAP_SAMPLES + HOP_SAMPLES), out / FILES["features"], "pcm", "frames")
    _export(Probability(model), feats[:2], out / FILES["model"], "features", "prob")
    _export(ClipScorer(frontend, model), pcm[:2], out / FILES["clip"], "pcm", "prob")
    parity = {}
    hop_pcm = pcm[:64, :OVERLAP_SAMPLES + HOP_SAMPLES]
    with torch.no_grad():
        hop_frames = frontend(hop_pcm).numpy()
    got = cpu_session(out / FILES["features"]).run(None, {"pcm": hop_pcm.numpy()})[0]
    if got.shape[1:] != (HOP_FRAMES, N_MELS):
        raise TrainerError(f"features.onnx gives shape {got.shape}, expected [B, {HOP_FRAMES}, {N_MELS}]")
    parity["features"] = check_parity("features.onnx", hop_frames, got, 1e-2)
    parity["model"] = check_parity("model.onnx", probs, cpu_session(out / FILES["model"]).run(
        None, {"features": feats.numpy()})[0], FP32_TOLERANCE)
    int8 = _quantize(out / FILES["model"], out / FILES["model_int8"], feats.numpy(), probs)
    if int8 is not None:
        parity["model_int8"] = int8
    parity["clip"] = check_parity("clip.onnx", probs, cpu_session(out / FILES["clip"]).run(
        None, {"pcm": pcm.numpy()})[0], FP32_TOLERANCE)
    for name, rep in parity.items():
        log.info("parity %s: max %.2e mean %.2e", name, rep["max_abs_diff"], rep["mean_abs_diff"])

    files = {role: name for role, name in FILES.items() if role != "model_int8" or int8 is not None}
    metrics = {"best_epoch": ckpt["best"]["epoch"], "val_loss": ckpt["best"]["val_loss"],
               "parity": parity,
               "size_bytes": {role: os.path.getsize(out / name) for role, name in files.items()}}
    manifest = Manifest(
        wake_word=config.wake_word, sample_rate=SAMPLE_RATE, window_samples=CLIP_SAMPLES,
        hop_samples=HOP_SAMPLES, overlap_samples=OVERLAP_SAMPLES, window_frames=WINDOW_FRAMES,
        hop_frames=HOP_FRAMES, n_mels=N_MELS, threshold=config.trigger.threshold,
        smoothing_hops=config.trigger.smoothing_hops, refractory_s=config.trigger.refractory_s,
        parameters=count_parameters(model), architecture=config.model.architecture,
        config_hash=config.hash(), files=files, metrics=metrics,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        provenance=training_provenance(open_dataset(config), config.augment))
    manifest.write(out)
    write_model_card(out)
    return out, manifest
