"""Typed training configuration: defaults in one place, strict loading, a stable hash.

A config file (TOML or YAML) may set any subset of the fields below; everything else
keeps its default. Unknown keys and wrong types are errors, all reported at once with
their dotted path (e.g. ``train.lr: expected float, got 'fast'``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from sentry.postprocess import TriggerSettings

from .errors import TrainerError


@dataclass
class DataConfig:
    dataset: str = "data/hey_jarvis"
    """Dataset folder in the standard layout (positive/, negative/, ...)."""
    negatives_per_positive: float = 3.0
    """Negative windows drawn per positive window each epoch: FA/h matters more than FRR."""
    partial_fraction: float = 0.15
    """Share of negatives that are a positive cut off mid-word, so the model fires at the end."""
    max_positive_s: float = 1.45
    """Positives longer than this (after trimming) do not fit the window and are skipped, counted."""
    context_probability: float = 0.0
    """Share of training windows with a wake word (whole or cut off) in which the end of another
    speech clip comes 0.05-0.4 s before it, as when the wake word follows a sentence."""
    after_probability: float = 0.0
    """Share of training windows with a wake word (whole or cut off) that end 0.15-0.5 s after
    it, with the start of another speech clip 0.05-0.3 s after the word, as when a command
    follows the wake word."""


AUGMENTATIONS = ("noise", "lowpass", "gain", "mel_warp", "specaugment")
"""The default chain, in order: waveform steps first, then feature steps (see plugins/)."""
SNR_SCHEDULES = ("none", "linear", "cosine", "step")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class AugmentConfig:
    chain: tuple[str, ...] = AUGMENTATIONS
    """Augmentations applied to training batches, by registered name (`hark plugins` lists
    them); each reads its probability and ranges from the keys below. Empty: none."""
    noise_probability: float = 0.8
    snr_db: tuple[float, float] = (0.0, 25.0)
    """Background noise mixed at an SNR drawn uniformly from this range (dB), unless
    snr_schedule moves it over the epochs."""
    noise_source: str = "background"
    """"background": clips from the dataset's background/ folder (an error if empty);
    "colored": synthetic noise with a random spectral slope."""
    snr_schedule: str = "none"
    """How the SNR range moves over training: none (snr_db throughout), linear, cosine or
    step (halfway) from snr_start_db at the first epoch to snr_end_db at the last."""
    snr_start_db: tuple[float, float] = (15.0, 30.0)
    """Easy: the first epoch's SNR range (dB)."""
    snr_end_db: tuple[float, float] = (0.0, 20.0)
    """Hard: the last epoch's SNR range (dB)."""
    gain_probability: float = 1.0
    gain_db: tuple[float, float] = (-18.0, 6.0)
    reverb_probability: float = 0.5
    reverb_source: str = "generated"
    """"rir": impulse responses from the dataset's rir/ folder; "generated": synthetic rooms."""
    reverb_rt60_s: tuple[float, float] = (0.2, 0.8)
    """Reverberation time of generated rooms (seconds): a furnished room to a bare kitchen."""
    pitch_probability: float = 0.5
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    speed_probability: float = 0.5
    speed_factor: tuple[float, float] = (0.9, 1.1)
    """Playback-rate factor (pitch moves with it); the window stays end-aligned."""
    shift_probability: float = 0.0
    shift_s: tuple[float, float] = (-0.05, 0.05)
    """Circular time shift (seconds); off by default: end_jitter_s already places the word."""
    end_jitter_s: tuple[float, float] = (0.0, 0.25)
    """Silence between the end of the wake word and the end of the window (seconds)."""
    lowpass_probability: float = 0.25
    lowpass_hz: tuple[float, float] = (3_400.0, 6_000.0)
    """Band-limit some windows: 8 kHz voices, cheap microphones and codecs cut the top."""
    tilt_probability: float = 0.0
    tilt_db_per_octave: tuple[float, float] = (-6.0, 6.0)
    """Spectral tilt around 1 kHz (dB per octave) for the "tilt" step, when it is in the chain."""
    mel_warp_probability: float = 0.8
    mel_warp: tuple[float, float] = (0.85, 1.18)
    """Stretch the mel axis by this factor (VTLP): other vocal-tract lengths, e.g. female and
    child voices that the synthetic training voices under-represent."""
    time_masks: int = 3
    time_mask_frames: int = 10
    freq_masks: int = 3
    freq_mask_bins: int = 8
    """Stronger masking than usual: it raised every held-out voice's peak score (RESULTS.md)."""


@dataclass
class ModelConfig:
    architecture: str = "tcresnet"
    channels: tuple[int, ...] = (48, 64, 64, 96, 96)
    """Output channels of the stem and of each residual block."""
    strides: tuple[int, ...] = (1, 2, 1, 2)
    """Time stride of each residual block (one per block after the stem)."""
    kernel_size: int = 9
    dropout: float = 0.25
    window_norm: bool = True
    """Subtract each mel bin's mean over the window: removes the fixed colouring of a
    voice, microphone or room, which differs more between speakers than the words do."""
    # Teacher architectures (crnn, conformer) read these; tcresnet ignores them.
    d_model: int = 144
    """conformer: width of every layer (must divide by heads)."""
    num_layers: int = 4
    """conformer: Conformer layers; crnn: stacked bidirectional GRU layers."""
    heads: int = 4
    """conformer: self-attention heads."""
    ffn_dim: int = 576
    """conformer: hidden width of each feed-forward module (4 x d_model is usual)."""
    rnn_hidden: int = 128
    """crnn: GRU hidden units per direction."""


@dataclass
class TrainConfig:
    epochs: int = 16
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.05
    ema_decay: float = 0.995
    """Validation, the best checkpoint and export use an exponential moving average of the
    weights, updated every step with this decay (0.995 averages over about 200 steps, under 3
    of the default job's epochs): a flatter, less seed-dependent model than the last step's
    weights; it lowered held-out misses at <= 1 FA/h in five paired trainings out of five
    (benchmarks/RESULTS.md). A short run averages over at most a fifth of its steps (the decay
    is capped at 1 - 5 / total steps). 0 turns it off."""
    seed: int = 1234
    threads: int = 2
    """Torch intra-op threads (this class of laptop has 2-8 cores); under torchrun the
    processes on one machine share them (each gets threads // processes, at least 1)."""
    device: str = "auto"
    """"auto" (a CUDA GPU when torch sees one, else the CPU), "cpu" or "cuda". The data
    pipeline always runs on the CPU; only the model moves (see trainer/perf.py)."""
    precision: str = "fp32"
    """"fp32"; "bf16" (autocast on CPU and bf16-capable GPUs: faster, less memory, the
    activations rounded to 8 mantissa bits); "fp16" (CUDA only, with loss scaling). fp32 is
    the default because the 85k-parameter student is not memory-bound and exact resume is
    bit-for-bit in fp32."""
    use_compile: bool = False
    """torch.compile the model: faster steps after a one-off compile (about 30-60 s on a
    laptop CPU, which a short run does not win back). Needs a C++ compiler on CPU; without
    one the run trains eagerly and logs a 'compile fallback' warning."""
    gradient_checkpointing: bool = False
    """Recompute each repeated block's activations in backward instead of storing them: less
    memory for larger batches or models, about one more forward pass of compute. Only for
    architectures with repeated blocks (an error otherwise)."""


@dataclass
class TriggerConfig:
    threshold: float = 0.5
    """Used until evaluation recommends one for the target FA/h."""
    smoothing_hops: int = 3
    refractory_s: float = 2.0
    target_fa_per_hour: float = 0.5

    def settings(self) -> TriggerSettings:
        return TriggerSettings(self.threshold, self.smoothing_hops, self.refractory_s)


DISTILL_MODES = ("auto", "none", "single", "dual")
TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class DistillConfig:
    """Knowledge distillation from one or two trained teacher runs (trainer/teachers.py
    checks them before the first step; `hark config validate` runs the same checks)."""

    mode: str = "auto"
    """none, single (teacher_*), dual (teacher_* and secondary_teacher_*), or auto: from
    which teacher_model_path keys are set. A mode that disagrees with the paths is an error."""
    distiller: str = "kd"
    """Registered distiller that computes the loss (`hark plugins` lists them)."""
    teacher_architecture: str = ""
    """Architecture the teacher checkpoint must hold (e.g. "conformer"); required with a path."""
    teacher_model_path: str = ""
    """A teacher run's checkpoint (e.g. runs/teacher/checkpoints/best.pt); empty: none."""
    secondary_teacher_architecture: str = ""
    secondary_teacher_model_path: str = ""
    """The second teacher of dual mode."""
    temperature: float = 2.0
    """Softmax temperature of the soft targets with temperature_schedule = "constant"."""
    temperature_schedule: str = "constant"
    """constant (temperature throughout), linear or cosine from temperature_start at the
    first epoch to temperature_end at the last: soft early, sharper later."""
    temperature_start: float = 4.0
    temperature_end: float = 1.0
    alpha: float = 0.5
    """Weight of the soft-target loss; the hard-label loss gets 1 - alpha."""
    secondary_weight: float = 0.5
    """Dual mode: the secondary teacher's share of the soft target; the primary gets the rest."""

    def resolved_mode(self) -> str:
        """none, single or dual: ``mode``, or with "auto" what the given paths imply."""
        if self.mode != "auto":
            return self.mode
        if self.secondary_teacher_model_path:
            return "dual"
        return "single" if self.teacher_model_path else "none"


@dataclass
class Config:
    wake_word: str = "hey jarvis"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """sha256 of the canonical JSON form: identical configs, identical hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _coerce(value: Any, hint: Any, path: str, errors: list[str]) -> Any:
    """Check `value` against type `hint`; collect a message instead of raising."""
    origin = typing.get_origin(hint)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a table/mapping, got {type(value).__name__}")
            return None
        return _build(hint, value, path, errors)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected a list, got {value!r}")
            return None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]", errors) for i, v in enumerate(value))
        if len(value) != len(args):
            errors.append(f"{path}: expected {len(args)} values, got {len(value)}")
            return None
        return tuple(_coerce(v, a, f"{path}[{i}]", errors) for i, (v, a) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            trial: list[str] = []
            result = _coerce(value, arg, path, trial)
            if not trial:
                return result
        errors.append(f"{path}: {value!r} matches none of {hint}")
        return None
    if hint is type(None):
        if value is not None:
            errors.append(f"{path}: expected null, got {value!r}")
        return None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            errors.append(f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
            return None
        return value
    raise TypeError(f"config field {path} has unsupported type {hint}")  # programming error


def _build(cls: type, data: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            errors.append(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            where = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], where, errors)
    if errors:
        return None
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], source: str = "config", *, check: bool = True) -> Config:
    """Build a Config; unknown keys and wrong types always raise, value checks (``validate``)
    only with ``check`` (`hark config validate` runs them itself, together with the teachers')."""
    errors: list[str] = []
    config = _build(Config, data, "", errors)
    if errors:
        raise TrainerError(f"{source}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    problems = validate(config) if check else []
    if problems:
        raise TrainerError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return config


def validate(config: Config) -> list[str]:
    """Value checks that types alone cannot express, each with its dotted key."""
    problems = []
    if not config.wake_word.strip():
        problems.append("wake_word: must not be empty")
    if len(config.model.strides) != len(config.model.channels) - 1:
        problems.append("model.strides: need one stride per block "
                        f"({len(config.model.channels) - 1}), got {len(config.model.strides)}")
    for name in ("snr_db", "gain_db", "end_jitter_s", "lowpass_hz", "mel_warp", "snr_start_db",
                 "snr_end_db", "shift_s", "tilt_db_per_octave", "reverb_rt60_s", "pitch_semitones", "speed_factor"):
        lo, hi = getattr(config.augment, name)
        if lo > hi:
            problems.append(f"augment.{name}: low {lo} > high {hi}")
    if config.augment.snr_schedule not in SNR_SCHEDULES:
        problems.append(f"augment.snr_schedule: unknown '{config.augment.snr_schedule}' "
                        f"(known: {', '.join(SNR_SCHEDULES)})")
    if config.augment.reverb_source not in ("rir", "generated"):
        problems.append(f"augment.reverb_source: unknown '{config.augment.reverb_source}' "
                        "(known: rir, generated)")
    if config.augment.reverb_rt60_s[0] <= 0 or config.augment.speed_factor[0] <= 0:
        problems.append("augment.reverb_rt60_s and augment.speed_factor: must be > 0")
    if config.augment.noise_source not in ("background", "colored"):
        problems.append(f"augment.noise_source: unknown '{config.augment.noise_source}' "
                        "(known: background, colored)")
    for name in ("noise_probability", "gain_probability", "shift_probability",
                 "lowpass_probability", "tilt_probability", "mel_warp_probability", "reverb_probability",
                 "pitch_probability", "speed_probability"):
        if not 0 <= getattr(config.augment, name) <= 1:
            problems.append(f"augment.{name}: must be in [0, 1], got {getattr(config.augment, name)}")
    for name in ("partial_fraction", "context_probability", "after_probability"):
        if not 0 <= getattr(config.data, name) <= 1:
            problems.append(f"data.{name}: must be in [0, 1], got {getattr(config.data, name)}")
    for key, value in (("train.epochs", config.train.epochs), ("train.batch_size", config.train.batch_size)):
        if value < 1:
            problems.append(f"{key}: must be >= 1, got {value}")
    if not 0 <= config.trigger.threshold <= 1:
        problems.append(f"trigger.threshold: must be in [0, 1], got {config.trigger.threshold}")
    if config.train.lr <= 0:
        problems.append(f"train.lr: must be > 0, got {config.train.lr}")
    for key, value, known in (("device", config.train.device, TRAIN_DEVICES),
                              ("precision", config.train.precision, PRECISIONS)):
        if value not in known:
            problems.append(f"train.{key}: unknown '{value}' (known: {', '.join(known)})")
    if not 0.0 <= config.train.ema_decay < 1.0:
        problems.append(f"train.ema_decay: must be in [0, 1), got {config.train.ema_decay}")
    if config.train.threads < 1:
        problems.append(f"train.threads: must be >= 1, got {config.train.threads}")
    problems += _validate_model(config.model) + _validate_distill(config.distill)
    return problems


def _validate_model(model: ModelConfig) -> list[str]:
    problems = [f"model.{name}: must be >= 1, got {getattr(model, name)}"
                for name in ("d_model", "num_layers", "heads", "ffn_dim", "rnn_hidden")
                if getattr(model, name) < 1]
    if model.architecture == "conformer":
        if model.heads >= 1 and model.d_model % model.heads:
            problems.append(f"model.d_model: {model.d_model} must divide by model.heads ({model.heads})")
        if model.kernel_size % 2 == 0:
            problems.append(f"model.kernel_size: the conformer's depthwise kernel must be odd, "
                            f"got {model.kernel_size}")
    return problems


def _validate_distill(distill: DistillConfig) -> list[str]:
    """Value checks only; whether the teacher files exist and fit is trainer/teachers.py's job."""
    problems = []
    if distill.mode not in DISTILL_MODES:
        problems.append(f"distill.mode: unknown '{distill.mode}' (known: {', '.join(DISTILL_MODES)})")
    if distill.temperature_schedule not in TEMPERATURE_SCHEDULES:
        problems.append(f"distill.temperature_schedule: unknown '{distill.temperature_schedule}' "
                        f"(known: {', '.join(TEMPERATURE_SCHEDULES)})")
    for name in ("temperature", "temperature_start", "temperature_end"):
        if getattr(distill, name) <= 0:
            problems.append(f"distill.{name}: must be > 0, got {getattr(distill, name)}")
    for name in ("alpha", "secondary_weight"):
        if not 0 <= getattr(distill, name) <= 1:
            problems.append(f"distill.{name}: must be in [0, 1], got {getattr(distill, name)}")
    return problems


def read_config_mapping(path: Path) -> dict[str, Any]:
    """The raw mapping in a TOML or YAML (.yaml/.yml) file, before any checking."""
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(path.read_text()) or {}
        else:
            data = tomllib.loads(path.read_text())
    except Exception as exc:  # parse errors of either format
        raise TrainerError(f"{path}: cannot parse config ({exc})") from exc
    if not isinstance(data, dict):
        raise TrainerError(f"{path}: top level must be a table/mapping")
    return data


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None, *,
                check: bool = True) -> Config:
    """Load a TOML/YAML file (or defaults when path is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise TrainerError(f"{path}: config file not found")
        data = read_config_mapping(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(data, source, check=check)


def load_training_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """load_config for a training: the dataset decides what the model detects, so a dataset
    whose manifest names a phrase sets ``wake_word`` (`hark train`, benchmarks/train_eval.py)."""
    from .dataset import read_manifest

    config = load_config(path, overrides)
    dataset = Path(config.data.dataset)
    phrase = read_manifest(dataset).get("phrase") if dataset.is_dir() else None
    if not phrase or phrase == config.wake_word:
        return config
    logging.getLogger(__name__).info("wake word '%s' (from the dataset's manifest)", phrase)
    return load_config(path, {**(overrides or {}), "wake_word": phrase})


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as TOML, so a run directory can be re-run with `--config`."""
    path.write_text(to_toml(config.to_dict()))


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(to_toml(value, f"{prefix}{key}."))
        else:
            scalars.append(f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    body = head + "\n".join(scalars) + ("\n" if scalars else "")
    return "\n".join([body] + tables) if tables else body
