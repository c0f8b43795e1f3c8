"""The Config panel's form, generated from trainer/config.py so no option can be forgotten.

Every dataclass field of ``trainer.config.Config`` becomes one form field with its dotted key,
group, type, default, choices (where the code names them) and help text. The help text is the
field's attribute docstring, read from trainer/config.py's source with ``ast`` (the string
statement right under the field), so the form and the code never disagree.

Choices come from three places, all in the trainer's own code:
- the named tuples trainer/config.py defines (SNR_SCHEDULES, TRAIN_DEVICES, ...);
- the literal tuples its ``validate`` checks with ``x not in ("a", "b")``;
- the plugin registries (architectures, distillers, augmentations) of a PluginManager: the
  studio's own one (``Studio.plugins``, handed in as ``plugins``), never a second one.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import typing
from dataclasses import MISSING, fields, is_dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainer import config as trainer_config
from trainer.config import Config
from trainer.validate import PLUGIN_KEYS

if TYPE_CHECKING:  # the manager loads torch and every plugin: only when choices are asked for
    from trainer.plugins import PluginManager

Plugins = Callable[[], "PluginManager"]
"""Where the run's plugin manager comes from: the studio passes its ``Studio.plugins``;
library callers get ``default_plugins`` (a manager built for the call)."""

GROUPS = (
    ("general", "General", ""),
    ("data", "Data", "data"),
    ("augment", "Augmentation", "augment"),
    ("model", "Model", "model"),
    ("train", "Training", "train"),
    ("trigger", "Trigger", "trigger"),
    ("distill", "Distillation", "distill"),
)
"""(group id, title, attribute of Config holding it; "" for the top-level fields)."""

SECTIONS = {
    "performance": ("train.device", "train.precision", "train.use_compile", "train.gradient_checkpointing"),
    "snr_schedule": ("augment.snr_schedule", "augment.snr_start_db", "augment.snr_end_db"),
    "teachers": ("distill.mode", "distill.teacher_architecture", "distill.teacher_model_path",
                 "distill.secondary_teacher_architecture", "distill.secondary_teacher_model_path"),
}
"""Fields the panel shows up front in their own cards instead of inside their group."""

NAMED_CHOICES = {
    "augment.snr_schedule": "SNR_SCHEDULES",
    "train.device": "TRAIN_DEVICES",
    "train.precision": "PRECISIONS",
    "distill.mode": "DISTILL_MODES",
    "distill.temperature_schedule": "TEMPERATURE_SCHEDULES",
}
"""Keys whose allowed values are a tuple constant of trainer/config.py, by constant name."""

PLUGIN_CHOICES = PLUGIN_KEYS
"""Keys that name a registered plugin component, by registry (trainer.validate, which checks them)."""

OPTIONAL_KEYS = ("distill.teacher_architecture", "distill.secondary_teacher_architecture")
"""Choice fields that may also be empty (no teacher)."""


def _type_name(hint: Any) -> str:
    """The form's widget type: str, int, float, bool, pair (two floats), int_list, str_list."""
    if hint in (str, int, float, bool):
        return hint.__name__
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (int, str, float):
            return f"{args[0].__name__}_list"
        if args == (float, float):
            return "pair"
    raise TypeError(f"config field type {hint} has no form widget; add one to studio/config_schema.py")


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal right under the field)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _dotted(node: ast.AST) -> list[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def literal_choices() -> dict[str, tuple[str, ...]]:
    """Allowed values that trainer/config.py checks inline: ``config.augment.x not in ("a", "b")``
    or ``distill.mode not in DISTILL_MODES`` -> {"augment.x": ("a", "b"), ...}."""
    tree = ast.parse(inspect.getsource(trainer_config))
    found: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn)):
            continue
        parts = _dotted(node.left)
        if parts[:1] == ["config"]:
            parts = parts[1:]
        if len(parts) != 2:
            continue
        target = node.comparators[0]
        if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Constant) for e in target.elts):
            found[".".join(parts)] = tuple(e.value for e in target.elts)
        elif isinstance(target, ast.Name) and isinstance(getattr(trainer_config, target.id, None), tuple):
            found[".".join(parts)] = tuple(getattr(trainer_config, target.id))
    return found


def default_plugins() -> PluginManager:
    from trainer.plugins import PluginManager
    return PluginManager()


def plugin_names(plugins: Plugins = default_plugins) -> dict[str, list[str]]:
    """Registry -> registered names of the manager ``plugins()`` returns; empty registries
    when the plugins cannot load (the form then offers free text and validation reports the
    problem)."""
    from trainer.errors import TrainerError
    from trainer.validate import registered_names
    try:
        return registered_names(plugins())
    except TrainerError:
        return {}


def _field(key: str, group: str, f, hint: Any, doc: str, choices: tuple[str, ...] | list[str] | None,
           section: str | None) -> dict[str, Any]:
    default = f.default if f.default is not MISSING else f.default_factory()
    return {"key": key, "name": f.name, "group": group, "type": _type_name(hint),
            "default": list(default) if isinstance(default, tuple) else default,
            "choices": list(choices) if choices else None, "optional": key in OPTIONAL_KEYS,
            "help": doc, "section": section}


def _class_doc(cls: type) -> str:
    """CLS's own docstring; "" for the signature dataclasses writes when there is none."""
    doc = inspect.getdoc(cls) or ""
    return "" if doc.startswith(cls.__name__ + "(") else doc


def build_schema(plugins: Plugins = default_plugins) -> dict[str, Any]:
    """{"groups": [{id, title, help, fields: [...]}], "sections": {...}, "defaults": {...}},
    with the choices of the registries of the manager ``plugins()`` returns."""
    names = plugin_names(plugins)
    return _schema(tuple(sorted((kind, tuple(found)) for kind, found in names.items())))


@functools.lru_cache(maxsize=4)
def _schema(registries: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    inline = literal_choices()
    plugins = dict(registries)
    section_of = {key: name for name, keys in SECTIONS.items() for key in keys}
    top_hints = typing.get_type_hints(Config)
    groups = []
    for group_id, title, attr in GROUPS:
        cls = top_hints[attr] if attr else Config
        hints = typing.get_type_hints(cls)
        docs = attribute_docs(cls)
        group_fields = []
        for f in fields(cls):
            if is_dataclass(hints[f.name]):
                continue  # a nested group, listed on its own
            key = f"{attr}.{f.name}" if attr else f.name
            choices = None
            if key in NAMED_CHOICES:
                choices = getattr(trainer_config, NAMED_CHOICES[key])
            elif key in inline:
                choices = inline[key]
            elif key in PLUGIN_CHOICES:
                choices = plugins.get(PLUGIN_CHOICES[key])
            group_fields.append(_field(key, group_id, f, hints[f.name], docs.get(f.name, ""), choices,
                                       section_of.get(key)))
        groups.append({"id": group_id, "title": title, "help": _class_doc(cls) if attr else "",
                       "fields": group_fields})
    return {"groups": groups, "sections": {k: list(v) for k, v in SECTIONS.items()},
            "defaults": Config().to_dict()}


def schema_keys() -> set[str]:
    """Every key the form shows (the same whatever the plugins register)."""
    return {f["key"] for group in _schema(())["groups"] for f in group["fields"]}


def config_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Every leaf field of CLS as a dotted key (what the schema must cover)."""
    hints = typing.get_type_hints(cls)
    out = set()
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            out |= config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out
