"""Average several exported models of one wake word into one exported folder.

Trainings of one recipe that differ only in their seed spread by tens of points of FRR on
voices they never heard (benchmarks/RESULTS.md); averaging their probabilities cancels
much of that. The ensemble is an ordinary exported folder, so the judge, the sentry,
`hark eval` and `hark cascade eval` use it unchanged:

  features.onnx  the members' streaming frontend (parameter-free, so identical in all;
                 checked on audio, not assumed)
  model.onnx     one graph that runs every member's classifier on the same features and
                 averages their probabilities (ONNX Mean)
  manifest.json  the members' geometry, threshold (default: the mean of theirs; run
                 `hark eval` on the ensemble to choose one on your eval set), where each
                 member came from, and their training data's provenance
  MODEL_CARD.md  as `hark export` writes it

Cost: N classifiers per window on one set of features; the features, most of a judge
request's work for a sentry-sized model, are computed once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import compose, helper

from sentry.errors import SentryError
from sentry.manifest import Manifest, load_manifest
from sentry.scoring import require_graphs

from .errors import TrainerError
from .export import FILES, FP32_TOLERANCE, check_parity, cpu_session
from .model_card import write_model_card
from .provenance import ensemble_provenance

log = logging.getLogger(__name__)

MIN_MEMBERS = 2
GEOMETRY = ("sample_rate", "window_samples", "hop_samples", "overlap_samples", "window_frames",
            "hop_frames", "n_mels")
"""Manifest fields every member must share: they fix what the graphs take and give."""
FEATURES_TOLERANCE = 1e-4
"""Max |difference| between members' log-mel frames on the same audio."""
PARITY_ROWS = 64
INPUT, OUTPUT = "features", "prob"


def _load_members(member_dirs: Sequence[Path]) -> list[Manifest]:
    if len(member_dirs) < MIN_MEMBERS:
        raise TrainerError(f"an ensemble needs at least {MIN_MEMBERS} exported models, got "
                           f"{len(member_dirs)}")
    if len({d.resolve() for d in member_dirs}) != len(member_dirs):
        raise TrainerError("the same model folder is named twice; an ensemble of a model with "
                           "itself only weighs it double")
    manifests = []
    for folder in member_dirs:
        try:
            manifest = load_manifest(folder)
            require_graphs(manifest, folder, ("features", "model"))
        except SentryError as exc:
            raise TrainerError(f"cannot use {folder} in an ensemble: {exc}") from exc
        manifests.append(manifest)
    first = manifests[0]
    for folder, manifest in zip(member_dirs[1:], manifests[1:]):
        if manifest.wake_word != first.wake_word:
            raise TrainerError(f"{folder} detects {manifest.wake_word!r} but {member_dirs[0]} "
                               f"detects {first.wake_word!r}; ensemble models of one wake word")
        differ = [k for k in GEOMETRY if getattr(manifest, k) != getattr(first, k)]
        if differ:
            raise TrainerError(f"{folder} and {member_dirs[0]} differ in "
                               f"{', '.join(differ)}; members must share the audio geometry")
    return manifests


def _check_same_features(member_dirs: Sequence[Path], manifests: Sequence[Manifest]) -> None:
    """All members' features.onnx give the same frames on the same (seeded) audio."""
    m = manifests[0]
    pcm = np.random.default_rng(0).uniform(-0.5, 0.5, (4, m.overlap_samples + m.hop_samples))
    pcm = pcm.astype(np.float32)
    reference = None
    for folder, manifest in zip(member_dirs, manifests):
        path = folder / manifest.files["features"]
        try:
            session = cpu_session(path)
            frames = session.run(None, {session.get_inputs()[0].name: pcm})[0]
        except Exception as exc:  # onnxruntime's errors share no useful base class
            raise TrainerError(f"{path}: cannot run it as a features graph ({exc}); "
                               "re-export the model") from exc
        if reference is None:
            reference = frames
        elif frames.shape != reference.shape or np.abs(frames - reference).max() > FEATURES_TOLERANCE:
            raise TrainerError(f"{folder}: its features.onnx computes other features than "
                               f"{member_dirs[0]}'s; members must share the frontend")


def merge_classifiers(models: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
    """One graph: `features` -> every member's classifier -> Mean of their `prob`s."""
    opsets = {tuple((o.domain, o.version) for o in m.opset_import) for m in models}
    if len(opsets) != 1:
        raise TrainerError("the members' classifiers were exported with different ONNX opsets; "
                           "re-export them with one hark version")
    nodes, initializers, functions, value_info, outputs = [], [], [], [], []
    for i, model in enumerate(models):
        names_in = [x.name for x in model.graph.input]
        names_out = [x.name for x in model.graph.output]
        if names_in != [INPUT] or names_out != [OUTPUT]:
            raise TrainerError(f"member {i + 1}'s model.onnx maps {names_in} to {names_out}; "
                               f"expected [{INPUT!r}] to [{OUTPUT!r}] (a `hark export` classifier)")
        prefixed = compose.add_prefix(model, f"m{i}_", rename_inputs=False)
        nodes += prefixed.graph.node
        initializers += prefixed.graph.initializer
        functions += prefixed.functions
        value_info += prefixed.graph.value_info
        outputs.append(prefixed.graph.output[0].name)
    mean = helper.make_node("Mean", outputs, [OUTPUT], name="ensemble_mean")
    graph = helper.make_graph(nodes + [mean], "hark_ensemble", [models[0].graph.input[0]],
                              [models[0].graph.output[0]], initializer=initializers,
                              value_info=value_info)
    merged = helper.make_model(graph, opset_imports=list(models[0].opset_import),
                               functions=functions)
    merged.ir_version = models[0].ir_version
    onnx.checker.check_model(merged)
    return merged


def build_ensemble(member_dirs: Sequence[str | Path], out_dir: str | Path, *,
                   threshold: float | None = None) -> tuple[Path, Manifest]:
    """Write the ensemble of `member_dirs` (exported folders) to `out_dir`.

    threshold: the ensemble's detection threshold (0..1); default the mean of the members'.
    Returns the folder and its manifest. Every problem is a TrainerError.
    """
    member_dirs = [Path(d) for d in member_dirs]
    out = Path(out_dir)
    manifests = _load_members(member_dirs)
    if out.resolve() in {d.resolve() for d in member_dirs}:
        raise TrainerError(f"{out} is one of the members; write the ensemble to a new folder")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise TrainerError(f"threshold must be in [0, 1], got {threshold}")
    _check_same_features(member_dirs, manifests)
    models = [onnx.load(str(d / m.files["model"])) for d, m in zip(member_dirs, manifests)]
    merged = merge_classifiers(models)

    first = manifests[0]
    rng = np.random.default_rng(1)
    feats = rng.normal(0.0, 1.0, (PARITY_ROWS, first.window_frames, first.n_mels))
    feats = (feats + rng.normal(0.0, 3.0, (PARITY_ROWS, 1, 1))).astype(np.float32)
    expected = np.mean([cpu_session(d / m.files["model"]).run(None, {INPUT: feats})[0]
                        for d, m in zip(member_dirs, manifests)], axis=0)
    parity = check_parity("ensemble model.onnx", expected,
                          cpu_session(merged).run(None, {INPUT: feats})[0], FP32_TOLERANCE)

    out.mkdir(parents=True, exist_ok=True)
    files = {"features": FILES["features"], "model": FILES["model"]}
    for stale in set(FILES.values()) - set(files.values()):
        (out / stale).unlink(missing_ok=True)  # an earlier export's graphs would mislead
    shutil.copyfile(member_dirs[0] / first.files["features"], out / files["features"])
    onnx.save(merged, str(out / files["model"]))

    members = [{"source": str(d.resolve()), "architecture": m.architecture,
                "parameters": m.parameters, "config_hash": m.config_hash,
                "threshold": m.threshold, "created": m.created}
               for d, m in zip(member_dirs, manifests)]
    architectures = sorted({m.architecture for m in manifests})
    config_hash = hashlib.sha256("".join(m.config_hash for m in manifests).encode()).hexdigest()
    manifest = Manifest(
        **{k: getattr(first, k) for k in GEOMETRY}, wake_word=first.wake_word,
        threshold=(float(np.mean([m.threshold for m in manifests])) if threshold is None
                   else float(threshold)),
        smoothing_hops=first.smoothing_hops, refractory_s=first.refractory_s,
        parameters=sum(m.parameters for m in manifests),
        architecture=f"ensemble of {len(manifests)}: {' + '.join(architectures)}",
        config_hash=config_hash[:len(first.config_hash)] if first.config_hash else config_hash,
        files=files,
        metrics={"ensemble": members, "parity": {"model": parity},
                 "size_bytes": {role: os.path.getsize(out / name) for role, name in files.items()}},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        provenance=ensemble_provenance([m.provenance for m in manifests]))
    manifest.write(out)
    write_model_card(out)  # an ensemble is an exported folder: it says what it was trained on
    log.info("ensemble of %d models written to %s (max |mean - graph| %.1e)", len(manifests), out,
             parity["max_abs_diff"])
    return out, manifest
