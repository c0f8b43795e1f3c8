"""The sentry runs where torch and scipy are not installed, and never imports them."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sentry

SENTRY_DIR = Path(sentry.__file__).resolve().parent
REPO_ROOT = SENTRY_DIR.parent
FORBIDDEN = ("torch", "torchaudio", "scipy")
SUBPROCESS_TIMEOUT_S = 60

# Runs in a fresh interpreter in which the forbidden packages cannot be imported at
# all, as on an edge device; prints what it saw as one JSON line at the end.
SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    FORBIDDEN = {forbidden!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"{{name}} is not installed on this device")
            return None

    sys.meta_path.insert(0, Block())

    import sentry
    from sentry.cli import main

    try:
        main(["scan", {wav!r}, "--model", {model!r}, "--json"])
    except SystemExit as exit:
        code = exit.code
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    print(json.dumps({{"exit": code, "leaked": leaked, "version": sentry.__version__}}))
""")


def test_scan_works_with_torch_and_scipy_unimportable(model_dir, burst_wav):
    script = SCRIPT.format(forbidden=FORBIDDEN, wav=str(burst_wav), model=str(model_dir))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=SUBPROCESS_TIMEOUT_S,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    *detections, report = proc.stdout.strip().splitlines()
    result = json.loads(report)
    assert result == {"exit": 0, "leaked": [], "version": sentry.__version__}
    assert len(detections) == 1
    assert abs(json.loads(detections[0])["time_s"] - 1.0) <= 0.1
    assert "torch" not in proc.stderr


def test_no_sentry_module_imports_torch_or_scipy():
    """Also catches imports on code paths the scan above does not take."""
    offenders = []
    for path in sorted(SENTRY_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
