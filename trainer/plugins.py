"""The plugin manager: built-in plugins, entry-point discovery, registries by name, hook calls.

Built-in plugins (``DEFAULT_PLUGINS``) are registered explicitly; third-party ones arrive
through the ``hark.plugins`` entry-point group. Environment:

- ``HARK_DISABLE_PLUGIN_AUTOLOAD=1``: do not load entry-point plugins.
- ``HARK_BLOCK_PLUGINS=a,b``: never register the plugins named a and b (built-in names are
  the module basenames, e.g. ``augment_noise``; third-party names are entry-point names).
  ``architectures`` is essential and cannot be blocked.

One manager serves a whole run: the entry point (a `hark` command, the studio app, a
benchmark) builds it once and passes it down to training, export, teacher loading and config
checks, so a plugin registered on it (an inline object in a test, say) is seen by every step.
Hooks are called only through this facade, never ``pm.hook.x`` directly.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
import torch

from sentry.version import DISTRIBUTION

from . import hookspecs
from .errors import TrainerError
from .hookspecs import AugmentContext, AugmentState, DistillBatch, DistillContext
from .teachers import check_teachers

__all__ = ["AugmentContext", "AugmentState", "Augmenter", "DistillBatch", "DistillContext",
           "PluginInfo", "PluginManager"]

ENTRY_POINT_GROUP = "hark.plugins"
DISABLE_AUTOLOAD_ENV = "HARK_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "HARK_BLOCK_PLUGINS"
DEFAULT_PLUGINS = ("augment_noise", "augment_basic", "augment_pitch", "augment_reverb", "specaugment",
                   "architectures", "snr_schedule", "distill")
"""Modules of the built-in ``plugins`` package, registered under these names."""
ESSENTIAL_PLUGINS = ("architectures",)
"""Built-ins that cannot be blocked: without an architecture there is nothing to train (as
pytest keeps its essential plugins). Blocking everything else leaves a plain trainer."""
BUILTIN_PACKAGE = "plugins"
REGISTRIES = ("augmentations", "architectures", "distillers")
STAGES = ("waveform", "features")


@dataclass
class PluginInfo:
    name: str
    version: str
    hooks: list[str]
    registers: dict[str, list[str]]


class Augmenter:
    """The configured augmentation chain, split by stage, applied in config order."""

    def __init__(self, steps: list[tuple[str, Any]]) -> None:
        self.steps = steps

    def _apply(self, stage: str, batch: torch.Tensor, labels: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        for _, step in self.steps:
            if step.stage == stage:
                batch = step(batch, labels, generator)
        return batch

    def waveform(self, pcm: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """pcm float32 [B, samples] -> same shape, peaks kept below full scale."""
        pcm = self._apply("waveform", pcm, labels, generator)
        peak = pcm.abs().amax(dim=1, keepdim=True)
        # Never clip: a digital clip is an artefact no microphone in a room produces.
        return torch.where(peak > 0.99, pcm / peak * 0.99, pcm)

    def features(self, feats: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._apply("features", feats, labels, generator)


def _env_blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


class PluginManager:
    """A pluggy manager with Hark's specs, the built-ins, and (by default) entry-point plugins."""

    def __init__(self, *, autoload: bool | None = None, blocked: set[str] | None = None,
                 builtins: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        known = set(DEFAULT_PLUGINS) | {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        for name in sorted(_env_blocked() | set(blocked or ())):
            if name not in known:
                raise TrainerError(f"{BLOCK_ENV}: no plugin named '{name}' (known: "
                                   f"{', '.join(sorted(known))}); fix the name")
            if name in ESSENTIAL_PLUGINS:
                raise TrainerError(f"{BLOCK_ENV}: plugin '{name}' is essential (it provides the "
                                   "model architectures) and cannot be blocked; remove it from the list")
            self.pm.set_blocked(name)
        if builtins:
            for name in DEFAULT_PLUGINS:
                if not self.pm.is_blocked(name):
                    self.register(importlib.import_module(f"{BUILTIN_PACKAGE}.{name}"), name)
        if autoload is None:
            autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("1", "true", "yes")
        if autoload:
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as exc:  # a broken third-party package: name it, do not trace back
                raise TrainerError(f"loading plugins from entry-point group {ENTRY_POINT_GROUP}: {exc}; "
                                   f"uninstall the broken package or set {BLOCK_ENV}=<name>") from exc
            self._check()
        self._registries: dict[str, dict[str, tuple[Callable[..., Any], str]]] | None = None

    # -- registration -------------------------------------------------------------------
    def _check(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise TrainerError(f"plugin {exc.plugin!r}: {exc}; fix the hook's name (see "
                               "trainer/hookspecs.py)") from None

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin object or module; a misspelt or mis-signed hook is a TrainerError."""
        try:
            registered = self.pm.register(plugin, name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise TrainerError(f"plugin {name or plugin!r}: {exc}") from None
        if registered is not None:
            try:
                self._check()
            except TrainerError:
                self.pm.unregister(plugin)
                raise
        self._registries = None
        return registered

    def unregister(self, plugin: object = None, name: str | None = None) -> None:
        self.pm.unregister(plugin, name)
        self._registries = None

    # -- registries ---------------------------------------------------------------------
    def _collect(self, kind: str) -> dict[str, tuple[Callable[..., Any], str]]:
        found: dict[str, tuple[Callable[..., Any], str]] = {}
        caller = getattr(self.pm.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():
            def register(name: str, factory: Callable[..., Any], _owner=impl.plugin_name) -> None:
                if name in found:
                    raise TrainerError(f"{kind[:-1]} '{name}' is registered by both plugin "
                                       f"'{found[name][1]}' and plugin '{_owner}'; block one with "
                                       f"{BLOCK_ENV}={_owner}")
                found[name] = (factory, _owner)
            impl.function(*[{"register": register}[a] for a in impl.argnames])
        return found

    def registry(self, kind: str) -> dict[str, tuple[Callable[..., Any], str]]:
        """name -> (factory, plugin name) for one of REGISTRIES; duplicate names raise."""
        if kind not in REGISTRIES:
            raise ValueError(f"unknown registry {kind!r}; one of {REGISTRIES}")
        if self._registries is None:
            self._registries = {k: self._collect(k) for k in REGISTRIES}
        return self._registries[kind]

    def factory(self, kind: str, name: str, key: str) -> Callable[..., Any]:
        table = self.registry(kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none: are its plugins blocked?"
            raise TrainerError(f"{key}: unknown {kind[:-1]} '{name}' (known: {known}); "
                               "fix the name or install the plugin that provides it")
        return table[name][0]

    def build_model(self, config: Any) -> torch.nn.Module:
        return self.factory("architectures", config.architecture, "model.architecture")(config)

    def build_augmenter(self, config: Any, context: AugmentContext) -> Augmenter:
        """The chain named in ``augment.chain``; every unknown name is reported before training."""
        unknown = [n for n in config.chain if n not in self.registry("augmentations")]
        if unknown:
            self.factory("augmentations", unknown[0], "augment.chain")
        steps = []
        for name in config.chain:
            step = self.factory("augmentations", name, "augment.chain")(config, context)
            if getattr(step, "stage", None) not in STAGES:
                raise TrainerError(f"augmentation '{name}': stage must be one of {STAGES}, "
                                   f"got {getattr(step, 'stage', None)!r}; fix the plugin")
            steps.append((name, step))
        return Augmenter(steps)

    def build_distiller(self, config: Any) -> Callable[..., torch.Tensor] | None:
        """The distiller ``distill.distiller`` names, with its teachers loaded and checked, or
        None when distill.mode resolves to none. Call before the first training step."""
        if config.distill.resolved_mode() == "none":  # a stray teacher path must not pass silently
            problems = check_teachers(config, self.build_model)
            if problems:
                raise TrainerError(f"{len(problems)} problem(s) with the distillation settings:\n  "
                                   + "\n  ".join(problems))
            return None
        factory = self.factory("distillers", config.distill.distiller, "distill.distiller")
        return factory(config, DistillContext(build_model=self.build_model))

    # -- lifecycle ----------------------------------------------------------------------
    def epoch_start(self, epoch: int, total_epochs: int, state: AugmentState) -> None:
        self.pm.hook.on_epoch_start(epoch=epoch, total_epochs=total_epochs, state=state)

    def epoch_end(self, epoch: int, metrics: dict) -> None:
        self.pm.hook.on_epoch_end(epoch=epoch, metrics=dict(metrics))

    def batch_end(self, step: int, loss: float) -> None:
        self.pm.hook.on_batch_end(step=step, loss=loss)

    def checkpoint_saved(self, path: Path, epoch: int) -> None:
        self.pm.hook.on_checkpoint_saved(path=path, epoch=epoch)

    # -- introspection ------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins in registration order, with versions and what each registers."""
        dists = {id(p): d for p, d in self.pm.list_plugin_distinfo()}
        try:
            own = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            own = "unknown"
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a blocked name
                continue
            dist = dists.get(id(plugin))
            registers = {k: sorted(n for n, (_, owner) in self.registry(k).items() if owner == name)
                         for k in REGISTRIES}
            out.append(PluginInfo(
                name=name, version=dist.version if dist is not None else own,
                hooks=sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()),
                registers={k: v for k, v in registers.items() if v}))
        return out
