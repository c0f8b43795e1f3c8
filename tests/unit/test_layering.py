"""The dependency arrows: sentry <- judge <- trainer/plugins <- studio, and no import cycles.

Every import statement of every module under the five packages is read with ast, at module
level and inside functions alike (a lazy import is still a dependency), and resolved to the
module it loads. Layers may import their own layer and those below it, never above; benchmarks
are not checked (they may import anything). A second test runs `hark --help` and
`hark mine --help` in an interpreter where Flask cannot be imported, as after
`pip install "hark-wakeword[train]"`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sentry

REPO_ROOT = Path(sentry.__file__).resolve().parents[1]
PACKAGES = ("sentry", "judge", "trainer", "plugins", "studio")
LAYER = {"sentry": 0, "judge": 1, "trainer": 2, "plugins": 2, "studio": 3}
"""A module may import modules of its own layer or a lower one."""
NO_TORCH = {"sentry", "judge"}
TORCH = {"torch", "torchaudio"}

STUDIO_HOOK = ("trainer.cli", "studio.server")
"""The one arrow from trainer to studio: `hark studio`, imported inside the function that
adds the command, so `hark` starts without Flask (trainer/cli.py, add_optional_commands)."""

ALLOWED: set[tuple[str, str]] = set()
"""Known edges against the layering; none."""

KNOWN_CYCLES: list[set[str]] = []
"""Known cycles (a cycle within one of them counts as known): none."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that `import name` loads (its longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


class Import:
    """One import statement's arrow. lazy: inside a function; typing_only: under
    `if TYPE_CHECKING:`, which never runs (a layering arrow still, but never a cycle)."""

    def __init__(self, source: str, target: str, line: int, lazy: bool,
                 typing_only: bool = False) -> None:
        self.source, self.target, self.line, self.lazy = source, target, line, lazy
        self.typing_only = typing_only

    def __repr__(self) -> str:
        where = "function-level" if self.lazy else "module-level"
        return f"{self.source}:{self.line} -> {self.target} ({where})"


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(module: str, path: Path) -> list[Import]:
    """Every import in the file; target is our module it loads or the top-level name of a
    third-party one."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, _resolve(alias.name) or alias.name.split(".")[0],
                                        child.lineno, lazy, typing_only))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                for alias in child.names:
                    # `from pkg import name` loads pkg.name when that is a module of ours
                    target = _resolve(f"{stem}.{alias.name}") if f"{stem}.{alias.name}" in MODULES \
                        else _resolve(stem)
                    found.append(Import(module, target or stem.split(".")[0], child.lineno, lazy,
                                        typing_only))
            if _is_type_checking(child):  # its else branch (if any) does run
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), inner, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), inner, typing_only)
            else:
                visit(child, inner, typing_only)

    visit(tree, False, False)
    return [i for i in found if i.target != module and i.target != "__future__"]


def _builtin_plugins() -> list[Import]:
    """The manager imports the built-in plugins by name (DEFAULT_PLUGINS in trainer/plugins.py,
    through importlib, which ast does not see): arrows all the same."""
    path = MODULES["trainer.plugins"]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_PLUGINS"
                                                for t in node.targets):
            return [Import("trainer.plugins", f"plugins.{name}", node.lineno, True)
                    for name in ast.literal_eval(node.value)]
    raise AssertionError("trainer/plugins.py no longer defines DEFAULT_PLUGINS; teach this test "
                         "how the built-in plugins are loaded now")


def _graph() -> list[Import]:
    return [edge for module, path in MODULES.items() for edge in _imports(module, path)] \
        + _builtin_plugins()


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_graph_is_read():
    """Guards the test itself: a parser that found nothing would pass everything."""
    edges = _graph()
    assert len(MODULES) > 50
    pairs = {(e.source, e.target) for e in edges}
    assert ("sentry.detector", "sentry.manifest") in pairs  # a relative module-level import
    assert ("studio.panels.cascade", "sentry.judge_client") in pairs  # a function-level one
    assert ("plugins.augment_reverb", "torch") in pairs  # third-party names are kept
    assert ("trainer.plugins", "plugins.architectures") in pairs  # the built-ins, by name


def test_arrows_point_down_the_layers():
    wrong = []
    for edge in _graph():
        src, dst = _top(edge.source), _top(edge.target)
        if (edge.source, edge.target) in ALLOWED:
            continue
        if src in NO_TORCH and dst in TORCH:
            wrong.append(f"{edge}: {src} never imports torch")
        elif dst in LAYER and LAYER[dst] > LAYER[src]:
            if (edge.source, edge.target) == STUDIO_HOOK and edge.lazy:
                continue
            wrong.append(f"{edge}: {src} must not import {dst}")
    assert wrong == []


def test_the_studio_hook_is_the_only_lazy_arrow_up():
    """The studio joins `hark` through one function-level import, and only the CLI does it."""
    hooks = [e for e in _graph() if _top(e.source) == "trainer" and _top(e.target) == "studio"]
    assert [(e.source, e.target, e.lazy) for e in hooks] == [(*STUDIO_HOOK, True)]


def _cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in edges:
        if edge.target in MODULES and not edge.typing_only:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_cycle_finder_finds_a_cycle():
    edges = [Import("sentry.audio", "sentry.detector", 1, True),
             Import("sentry.detector", "sentry.audio", 1, False)]
    assert _cycles(edges) == [["sentry.audio", "sentry.detector"]]


def test_no_import_cycles():
    """A package __init__ importing its own submodules is not a cycle unless a submodule
    imports the package back (`from .. import x` resolving to the __init__)."""
    assert [c for c in _cycles(_graph()) if not any(set(c) <= known for known in KNOWN_CYCLES)] == []


def test_the_det_plot_takes_plain_data():
    """trainer.det_plot draws plain curves (DetCurve) and imports nothing of trainer.evaluate,
    which imports it: the evaluate <-> det_plot circle is gone, not hidden under TYPE_CHECKING."""
    assert [e for e in _graph() if (e.source, e.target) == ("trainer.det_plot", "trainer.evaluate")] == []
    assert [e for e in _graph() if (e.source, e.target) == ("trainer.evaluate", "trainer.det_plot")]


# Flask and waitress made unimportable, as in a venv with only `[train]` installed.
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class _NoFlask(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("flask", "waitress", "werkzeug"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: the studio "
                                          "extra is not installed)", name=name)
            return None

    sys.meta_path.insert(0, _NoFlask())
""")


def _hark_without_flask(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    code = "from trainer.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)


def test_hark_starts_without_flask(tmp_path):
    probe = _hark_without_flask(tmp_path, "--help")
    assert probe.returncode == 0, probe.stderr
    assert "Usage:" in probe.stdout and "mine" in probe.stdout and "studio" in probe.stdout
    mine = _hark_without_flask(tmp_path, "mine", "--help")
    assert mine.returncode == 0, mine.stderr
    assert "--model" in mine.stdout


def test_hark_studio_without_flask_says_how_to_install(tmp_path):
    done = _hark_without_flask(tmp_path, "studio", "--port", "0")
    assert done.returncode == 1
    assert 'pip install "hark-wakeword[studio]"' in done.stderr
    assert "Traceback" not in done.stderr


def test_the_blocker_blocks(tmp_path):
    """Guards the two tests above: Flask really is unimportable in that interpreter."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "import flask"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode != 0 and "blocked" in done.stderr


def test_hark_mine_does_not_load_the_studio_even_where_flask_is_installed(tmp_path):
    code = textwrap.dedent("""
        import sys
        from trainer.cli import main
        try:
            main(["mine", "--help"])
        except SystemExit:
            pass
        print(sorted({m.split(".")[0] for m in sys.modules} & {"flask", "waitress", "studio"}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
