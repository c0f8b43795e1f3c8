"""MODEL_CARD.md: what an exported model is, what it was trained on, how it measured.

Written beside manifest.json by `hark export`, and rewritten by `hark eval` (and the studio)
when the manifest's evaluation changes, so the card never disagrees with the manifest. Every
number on it comes from the manifest (its ``provenance`` and ``metrics``) or from the eval
sets' own manifest: the card states what was measured and says where nothing was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentry.files import write_text_atomic
from sentry.manifest import Manifest, load_manifest

CARD_NAME = "MODEL_CARD.md"
EVAL_MANIFEST = "manifest.json"
SET_DESCRIPTIONS = {
    "espeak": "espeak-ng voices of the dataset's test split: the training engine, speakers "
              "training never heard",
    "heldout": "flite and festival voices: engines no training clip came from",
}


def _pct(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def _rate(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.2f}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def _eval_sets_manifest(evaluation: dict[str, Any], eval_root: Path | None) -> dict[str, Any]:
    """The eval sets' own manifest (voices per set), where it can be found."""
    for root in (eval_root, evaluation.get("eval_root")):
        if root:
            path = Path(root) / EVAL_MANIFEST
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
    return {}


def _training_section(p: dict[str, Any]) -> list[str]:
    if not p:
        return ["No provenance was recorded: this folder was exported before Hark recorded "
                "training data sources. Re-export the run to add it.", ""]
    data = p.get("dataset", {})
    how = ("with licence-clean synthesis (only engines whose licences allow commercial use of "
           "their output)" if p.get("licence_clean") else "with the default engine mix")
    origin = ("Training speech was synthesized" if not p.get("other_sources")
              else "Training speech was synthesized, apart from the other sources in the table,")
    lines = [f"{origin} {how}.", "",
             f"- Dataset: `{data.get('path', '?')}` (phrase \"{data.get('phrase')}\"), manifest "
             f"SHA-256 `{data.get('manifest_sha256') or 'n/a'}`",
             f"- Exported with Hark {p.get('hark_version') or 'unknown'}"
             + (f"; dataset synthesized with Hark {data['synthesized_with_hark']}"
                if data.get("synthesized_with_hark") else ""),
             "", f"Clips and voices of the {' and '.join(p.get('splits', ['train', 'val']))} splits "
             "(what training reads):", "",
             "| engine | version | licence | voices | clips |", "|---|---|---|---:|---:|"]
    for e in p.get("engines", []):
        lines.append(f"| {e['name']} | {e.get('version') or 'unknown'} | {e['licence']} | "
                     f"{e.get('voices', 0)} | {e.get('clips', 0)} |")
    for s in p.get("other_sources", []):
        lines.append(f"| {s['name']} | - | {s['licence']} | - | {s.get('clips', 0)} |")
    lines.append("")
    noise, reverb = p.get("noise", {}), p.get("reverb", {})
    if noise.get("used"):
        lines.append(f"- Noise mixed under training windows: {noise.get('source')}"
                     + (f" ({noise['clips']} clips)" if "clips" in noise else ""))
        for s in noise.get("sources", []):
            lines.append(f"  - {s['name']}: {s['source']}; licence {s['licence']}")
    else:
        lines.append("- No noise was mixed in during training.")
    lines.append(f"- Reverberation: {reverb['source']}; licence {reverb['licence']}"
                 if reverb.get("used") else "- No reverberation was added during training.")
    lines.append("")
    return lines


def _evaluation_section(manifest: Manifest, eval_root: Path | None) -> list[str]:
    evaluation = manifest.metrics.get("evaluation")
    metrics = manifest.metrics
    lines = []
    if "val_loss" in metrics:
        lines += [f"Validation loss {metrics['val_loss']:.4f} at epoch {metrics.get('best_epoch')} "
                  "(validation voices of the training engines).", ""]
    if not isinstance(evaluation, dict) or not evaluation.get("sets"):
        return lines + ["Not evaluated on continuous audio yet: run "
                        f"`hark eval {'MODEL_DIR'} --eval-root DATASET/eval`; this card is "
                        "rewritten with the results.", ""]
    voices = {name: s.get("voices", []) for name, s in
              _eval_sets_manifest(evaluation, eval_root).get("sets", {}).items()}
    lines += [f"At the shipped threshold {manifest.threshold:.3f} (chosen on "
              f"`{evaluation.get('threshold_chosen_on', '?')}` for <= "
              f"{_number(evaluation.get('target_fa_per_hour'))} false accepts per hour"
              f"{', set in the studio' if evaluation.get('threshold_set_in') == 'studio' else ''}):",
              "", "| set | what it is | positives | negative hours | FRR | FA/h | "
              "best FRR at <= 0.5 FA/h | at <= 1 FA/h |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in evaluation["sets"].items():
        what = SET_DESCRIPTIONS.get(name, "")
        if voices.get(name):
            what += f"{'; ' if what else ''}voices: {', '.join(voices[name])}"
        lines.append(f"| {name} | {what or '-'} | {s.get('n_positive', 'n/a')} | "
                     f"{_rate(s.get('negative_hours'))} | {_pct(s.get('frr'))} | "
                     f"{_rate(s.get('fa_per_hour'))} | {_pct(s.get('frr_at_0.5_fa_h'))} | "
                     f"{_pct(s.get('frr_at_1_fa_h'))} |")
    return lines + ["", "FRR: share of wake words missed. FA/h: false accepts per hour of "
                    "negative audio (speech, confusable phrases, noise).", ""]


def _weaknesses(manifest: Manifest) -> list[str]:
    p = manifest.provenance or {}
    lines = []
    others = sum(s.get("clips", 0) for s in p.get("other_sources", []))
    if p:
        lines.append("- Every training voice is synthetic" + (
            f" apart from {others} clips from other sources" if others else
            ": no recorded human speech") + ". Nothing on this card was measured on recorded "
            "human voices.")
    evaluation = manifest.metrics.get("evaluation")
    sets = evaluation.get("sets", {}) if isinstance(evaluation, dict) else {}
    in_sentence = [n for n in sets if "sentence" in n]
    if in_sentence:
        for name in in_sentence:
            base = sets.get(name.replace("_sentence", "").replace("sentence", "").strip("_"))
            if base:
                lines.append(f"- Wake words inside a sentence (`{name}`): {_pct(sets[name].get('frr'))} "
                             f"missed at the shipped threshold, against {_pct(base.get('frr'))} "
                             "said alone.")
    else:
        lines.append("- Not measured here on wake words said inside a sentence (the eval sets hold "
                     "the phrase alone); Hark's earlier models missed those more often than the "
                     "phrase alone (benchmarks/RESULTS.md).")
    target = evaluation.get("target_fa_per_hour") if isinstance(evaluation, dict) else None
    for name, s in sets.items():
        fa = s.get("fa_per_hour")
        if isinstance(target, (int, float)) and isinstance(fa, (int, float)) and fa > target:
            lines.append(f"- On `{name}` the shipped threshold gives {fa:.2f} false accepts per hour, "
                         f"above the {_number(target)} it was chosen for.")
    lines.append(f"- English only, and only the phrase \"{manifest.wake_word}\".")
    return lines + [""]


def _licence_section(p: dict[str, Any]) -> list[str]:
    lines = ["- Hark, the software that trained and exported these files, is Apache-2.0."]
    for e in p.get("engines", []):
        lines.append(f"- {e['name']} ({e['licence']}): {e.get('note', '')}.")
    if p:
        lines.append(f"- Commercial use of the training speech: {p.get('commercial_use', 'unknown')}.")
    lines.append("- The licence of a trained model is not settled law; this lists the licences of "
                 "what went into it so that you can decide.")
    return lines + [""]


def render_card(manifest: Manifest, eval_root: Path | None = None) -> str:
    """The card's Markdown for an exported folder's manifest."""
    p = manifest.provenance or {}
    files = ", ".join(f"`{name}`" for name in manifest.files.values())
    lines = [f"# Wake-word model: \"{manifest.wake_word}\"", "",
             f"Exported {manifest.created or 'at an unknown time'} by Hark "
             f"{p.get('hark_version') or 'unknown'}: {manifest.architecture}, {manifest.parameters} "
             f"parameters; files {files}. Threshold {manifest.threshold:.3f}, smoothed over "
             f"{manifest.smoothing_hops} hops, {manifest.refractory_s} s refractory.", "",
             "## Intended use", "",
             f"Detecting the spoken phrase \"{manifest.wake_word}\" in a continuous 16 kHz audio "
             "stream on the device (`hark-sentry`), to start a voice interface, optionally "
             "confirmed by a second model on a server (`hark-judge`). Not for identifying who "
             "speaks, for security decisions (anyone, or a recording, saying the phrase wakes it), "
             "or for other languages.", "",
             "## Training data", "", *_training_section(p),
             "## Evaluation", "", *_evaluation_section(manifest, eval_root),
             "## Known weaknesses", "", *_weaknesses(manifest),
             "## Licence notes", "", *_licence_section(p)]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, eval_root: str | Path | None = None) -> Path:
    """(Re)write MODEL_CARD.md from the folder's manifest.json, atomically; returns its path."""
    model_dir = Path(model_dir)
    text = render_card(load_manifest(model_dir), Path(eval_root) if eval_root else None)
    return write_text_atomic(model_dir / CARD_NAME, text)
