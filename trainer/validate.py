"""The one config validator: every value problem of a config, each with its dotted key, as
`hark config validate` prints them and the studio's Config panel shows them next to their
fields. trainer.config.validate checks ranges and fixed choices; this adds the names that
only the plugin registries know (architectures, distillers, augmentations).

    problems = check_config(config)   # [] when `hark train` would accept its values

Teacher checkpoints are trainer.teachers.inspect_teachers's job (both callers run it after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .config import Config, validate

PLUGIN_KEYS = {
    "model.architecture": "architectures",
    "distill.teacher_architecture": "architectures",
    "distill.secondary_teacher_architecture": "architectures",
    "distill.distiller": "distillers",
    "augment.chain": "augmentations",
}
"""Config keys that name a registered plugin component -> their registry (trainer.plugins)."""


def registered_names(manager=None) -> dict[str, list[str]]:
    """Registry -> sorted registered names, for the registries PLUGIN_KEYS uses. Builds a
    PluginManager when none is given; a plugin that fails to load raises TrainerError."""
    if manager is None:
        from .plugins import PluginManager  # plugins import trainer modules (and torch): late
        manager = PluginManager()
    return {kind: sorted(manager.registry(kind)) for kind in sorted(set(PLUGIN_KEYS.values()))}


def plugin_problems(config: Config, registries: Mapping[str, Iterable[str]]) -> list[str]:
    """Names under PLUGIN_KEYS that no plugin registered; a registry missing from the
    `registries` mapping is not checked (the studio passes {} when the plugins cannot load)."""
    problems = []
    for key, kind in PLUGIN_KEYS.items():
        if kind not in registries:
            continue
        known = list(registries[kind])
        group, name = key.split(".")
        value = getattr(getattr(config, group), name)
        for item in value if isinstance(value, tuple) else (value,):
            if item and item not in known:
                problems.append(f"{key}: unknown {kind[:-1]} '{item}' (known: {', '.join(known)}); fix "
                                "the name or install the plugin that provides it")
    return problems


def check_config(config: Config, registries: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """Every value problem of CONFIG: trainer.config.validate's, then unknown plugin names
    (against REGISTRIES, or the loaded plugins' when None)."""
    return validate(config) + plugin_problems(config, registered_names() if registries is None else registries)
