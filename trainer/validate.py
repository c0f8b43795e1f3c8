"""The one config validator: every value problem of a config, each with its dotted key, as
`hark config validate` prints them and the studio's Config panel shows them next to their
fields. trainer.config.validate checks ranges and fixed choices; this adds the names that
only the plugin registries know (architectures, distillers, augmentations).

    problems = check_config(config, registered_names(plugins))  # [] when `hark train` would accept it

Teacher checkpoints are trainer.teachers.inspect_teachers's job (both callers run it after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .config import Config, validate

if TYPE_CHECKING:
    from .plugins import PluginManager

PLUGIN_KEYS = {
    "model.architecture": "architectures",
    "distill.teacher_architecture": "architectures",
    "distill.secondary_teacher_architecture": "architectures",
    "distill.distiller": "distillers",
    "augment.chain": "augmentations",
}
"""Config keys that name a registered plugin component -> their registry (trainer.plugins)."""


def registered_names(manager: PluginManager) -> dict[str, list[str]]:
    """Registry -> sorted registered names of the run's manager, for the registries
    PLUGIN_KEYS uses."""
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


def check_config(config: Config, registries: Mapping[str, Iterable[str]]) -> list[str]:
    """Every value problem of CONFIG: trainer.config.validate's, then plugin names unknown
    to REGISTRIES (registered_names of the run's manager)."""
    return validate(config) + plugin_problems(config, registries)
