"""The plugin manager: registration, validation, registries, blocking, discovery, CLI."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plugins.augment_noise import NoiseMix, measured_snr_db
from plugins.snr_schedule import snr_range
from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from trainer import hookimpl
from trainer.cli import main
from trainer.config import AugmentConfig, ModelConfig
from trainer.errors import TrainerError
from trainer.plugins import (BLOCK_ENV, DEFAULT_PLUGINS, DISABLE_AUTOLOAD_ENV, ESSENTIAL_PLUGINS,
                             AugmentContext, AugmentState, PluginManager)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")  # tests opt in to entry points explicitly


def _speech_like(batch: int, seed: int) -> torch.Tensor:
    """Seeded tone bursts with different levels: a stand-in for speech windows."""
    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    rows = [rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * rng.uniform(150, 900) * t) *
            (np.abs(np.sin(2 * np.pi * 2 * t)) > 0.3) for _ in range(batch)]
    return torch.tensor(np.array(rows), dtype=torch.float32)


class Recorder:
    """An inline plugin: registers an augmentation and records lifecycle events."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    @hookimpl
    def register_augmentations(self, register):
        register("invert", lambda config, context: Invert())

    @hookimpl
    def on_epoch_start(self, epoch, total_epochs):
        self.events.append(("start", epoch, total_epochs))


class Invert:
    stage = "waveform"

    def __call__(self, pcm, labels, generator):
        return -pcm


def test_inline_plugin_registers_and_unregisters_on_a_fresh_manager():
    manager = PluginManager(autoload=False)
    plugin = Recorder()
    manager.register(plugin, "recorder")
    assert manager.registry("augmentations")["invert"][1] == "recorder"
    state = AugmentState(AugmentConfig(), (0.0, 25.0))
    manager.epoch_start(2, 5, state)
    assert plugin.events == [("start", 2, 5)]
    augmenter = manager.build_augmenter(AugmentConfig(chain=("invert",)), AugmentContext(state))
    pcm = _speech_like(3, 0)
    torch.testing.assert_close(augmenter.waveform(pcm, torch.ones(3), torch.Generator()), -pcm)
    manager.unregister(plugin)
    assert "invert" not in manager.registry("augmentations")
    manager.epoch_start(3, 5, state)
    assert len(plugin.events) == 1


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_augmentation(self, register):  # missing "s"
            pass

    manager = PluginManager(autoload=False)
    with pytest.raises(TrainerError, match="register_augmentation"):
        manager.register(Typo(), "typo")
    assert manager.pm.get_plugin("typo") is None


def test_wrong_hook_signature_fails_loudly():
    class Wrong:
        @hookimpl
        def on_batch_end(self, step, loss, extra):
            pass

    with pytest.raises(TrainerError, match="extra"):
        PluginManager(autoload=False).register(Wrong(), "wrong")


def test_duplicate_names_are_errors_naming_both_plugins():
    class Again:
        @hookimpl
        def register_augmentations(self, register):
            register("gain", lambda config, context: Invert())

    manager = PluginManager(autoload=False)
    manager.register(Again(), "again")
    with pytest.raises(TrainerError, match=r"'gain'.*augment_basic.*again"):
        manager.registry("augmentations")


def test_unknown_names_are_errors_naming_them():
    manager = PluginManager(autoload=False)
    context = AugmentContext(AugmentState(AugmentConfig(), (0.0, 25.0)))
    with pytest.raises(TrainerError, match="augment.chain: unknown augmentation 'reverbb'"):
        manager.build_augmenter(AugmentConfig(chain=("gain", "reverbb")), context)
    with pytest.raises(TrainerError, match="model.architecture: unknown architecture 'mlp'"):
        manager.build_model(ModelConfig(architecture="mlp"))


def test_blocking_by_env_var(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "augment_noise, specaugment")
    manager = PluginManager(autoload=False)
    names = [info.name for info in manager.plugins()]
    assert names == [n for n in DEFAULT_PLUGINS if n not in ("augment_noise", "specaugment")]
    assert "noise" not in manager.registry("augmentations")
    assert "gain" in manager.registry("augmentations")


def test_blocking_every_optional_plugin_leaves_only_the_architectures(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, ",".join(n for n in DEFAULT_PLUGINS if n not in ESSENTIAL_PLUGINS))
    manager = PluginManager(autoload=False)
    assert [i.name for i in manager.plugins()] == list(ESSENTIAL_PLUGINS)
    assert manager.registry("augmentations") == {}
    with pytest.raises(TrainerError, match="are its plugins blocked"):
        manager.build_augmenter(AugmentConfig(), AugmentContext(AugmentState(AugmentConfig(), (0, 1))))
    assert manager.build_augmenter(AugmentConfig(chain=()), AugmentContext(
        AugmentState(AugmentConfig(), (0, 1)))).steps == []
    assert isinstance(manager.build_model(ModelConfig()), torch.nn.Module)


def test_blocking_an_unknown_plugin_name_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "augment_nosie")
    with pytest.raises(TrainerError, match="no plugin named 'augment_nosie'"):
        PluginManager(autoload=False)
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1 and "augment_nosie" in result.output and "Traceback" not in result.output


def test_essential_plugins_cannot_be_blocked(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "architectures")
    with pytest.raises(TrainerError, match="'architectures' is essential"):
        PluginManager(autoload=False)


@pytest.mark.parametrize("source", ["background", "colored"])
@pytest.mark.parametrize("target", [-5.0, 0.0, 12.5, 30.0])
def test_noise_is_mixed_at_the_exact_target_snr(source, target):
    rng = np.random.default_rng(3)
    background = [rng.standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1,
                  np.resize(rng.standard_normal(800).astype(np.float32), 4000)]  # shorter than a window
    config = AugmentConfig(noise_probability=1.0, noise_source=source)
    state = AugmentState(config, (target, target))
    clean = _speech_like(16, 1)
    mixed = NoiseMix(config, AugmentContext(state, background))(clean, torch.ones(16),
                                                                torch.Generator().manual_seed(0))
    assert not torch.equal(mixed, clean)
    np.testing.assert_allclose(measured_snr_db(clean, mixed).numpy(), target, atol=0.1)


def test_noise_mixing_is_seeded():
    config = AugmentConfig(noise_probability=0.5, noise_source="colored")
    step = NoiseMix(config, AugmentContext(AugmentState(config, (0.0, 10.0))))
    clean = _speech_like(8, 2)
    a = step(clean, torch.ones(8), torch.Generator().manual_seed(7))
    b = step(clean, torch.ones(8), torch.Generator().manual_seed(7))
    c = step(clean, torch.ones(8), torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_empty_background_folder_with_noise_is_a_clear_error():
    config = AugmentConfig()
    with pytest.raises(TrainerError, match="background/ folder is empty"):
        PluginManager(autoload=False).build_augmenter(
            config, AugmentContext(AugmentState(config, config.snr_db), background=[]))


@pytest.mark.parametrize("kind", ["linear", "cosine", "step"])
def test_snr_schedule_hook_moves_the_range_the_noise_step_applies(kind):
    """Through the manager's epoch-start hook, measured on the mixed audio."""
    config = AugmentConfig(noise_probability=1.0, noise_source="colored", snr_schedule=kind,
                           snr_start_db=(20.0, 30.0), snr_end_db=(0.0, 5.0))
    manager = PluginManager(autoload=False)
    state = AugmentState(config, config.snr_db)
    augmenter = manager.build_augmenter(AugmentConfig(**{**config.__dict__, "chain": ("noise",)}),
                                        AugmentContext(state))
    clean = _speech_like(32, 4) * 0.3  # quiet enough that the chain's peak limiter never acts
    medians = []
    for epoch in range(5):
        manager.epoch_start(epoch, 5, state)
        mixed = augmenter.waveform(clean, torch.ones(32), torch.Generator().manual_seed(epoch))
        snr = measured_snr_db(clean, mixed)
        medians.append(float(snr.median()))
        assert snr.min() >= state.snr_db[0] - 0.1 and snr.max() <= state.snr_db[1] + 0.1
    assert medians[0] > 20.0 and medians[-1] < 5.0
    assert all(b <= a + 1e-6 for a, b in zip(medians, medians[1:])) or kind == "step"
    assert snr_range(config, 0, 5) == (20.0, 30.0) and snr_range(config, 4, 5) == (0.0, 5.0)


def test_hark_plugins_help_and_listing(monkeypatch):
    result = CliRunner().invoke(main, ["plugins", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "augment_noise 0.1.0" in result.output or "augment_noise " in result.output
    assert "augmentations: noise" in result.output and "architectures: conformer, crnn, tcresnet" in result.output
    assert "distillers: kd" in result.output
    monkeypatch.setenv(BLOCK_ENV, "augment_noise")
    result = CliRunner().invoke(main, ["plugins"])
    assert "augment_noise" not in result.output and "augment_basic" in result.output


DIST_PLUGIN = '''
from trainer import hookimpl


class Flip:
    stage = "waveform"

    def __init__(self, config, context):
        pass

    def __call__(self, pcm, labels, generator):
        return pcm.flip(1)


@hookimpl
def register_augmentations(register):
    register("reverse", Flip)
'''


def install_throwaway_plugin(site, monkeypatch, module: str = "hark_throwaway_plugin") -> None:
    """A distribution with a hark.plugins entry point, installed as a dist-info in a site dir."""
    (site / f"{module}.py").write_text(textwrap.dedent(DIST_PLUGIN))
    info = site / "hark_throwaway-3.1.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hark-throwaway\nVersion: 3.1.4\n")
    (info / "entry_points.txt").write_text(f"[hark.plugins]\nthrowaway = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_entry_point_plugin_is_discovered_blockable_and_switchable(tmp_path, monkeypatch):
    install_throwaway_plugin(tmp_path, monkeypatch)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    manager = PluginManager()
    assert manager.registry("augmentations")["reverse"][1] == "throwaway"
    info = {i.name: i for i in manager.plugins()}["throwaway"]
    assert info.version == "3.1.4" and info.registers == {"augmentations": ["reverse"]}
    result = CliRunner().invoke(main, ["plugins"])
    assert "throwaway 3.1.4" in result.output and "augmentations: reverse" in result.output
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "reverse" not in PluginManager().registry("augmentations")
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    monkeypatch.setenv(BLOCK_ENV, "throwaway")
    assert "reverse" not in PluginManager().registry("augmentations")


def _imported_modules(path) -> set[str]:
    """Absolute names of the modules a source file imports (relative imports resolved)."""
    import ast
    from pathlib import Path

    from trainer.plugins import BUILTIN_PACKAGE
    root = Path(__import__(BUILTIN_PACKAGE).__file__).resolve().parents[1]
    package = list(path.resolve().relative_to(root).parts[:-1])  # what `from .` means in PATH
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_nothing_the_manager_loads_imports_the_manager():
    """The built-in plugins, the teachers and the models import the contract (hookspecs), never
    trainer.plugins: the manager imports them, so the arrow runs one way (no cycle)."""
    import importlib
    from pathlib import Path

    import trainer.hookspecs
    import trainer.models
    import trainer.teachers
    files = [Path(importlib.import_module(f"plugins.{name}").__file__) for name in DEFAULT_PLUGINS]
    files += [Path(trainer.teachers.__file__), Path(trainer.hookspecs.__file__)]
    files += sorted(Path(trainer.models.__file__).parent.glob("*.py"))
    offenders = {f"{f.parent.name}/{f.name}": sorted(m for m in _imported_modules(f) if m.startswith("trainer.plugins"))
                 for f in files}
    assert {name: found for name, found in offenders.items() if found} == {}
    distill = Path(importlib.import_module("plugins.distill").__file__)
    assert "trainer.hookspecs.DistillBatch" in _imported_modules(distill)  # the parser sees imports
