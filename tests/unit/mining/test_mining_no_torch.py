"""The scan path starts fast: `hark mine` runs to completion with torch made unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchaudio", "scipy"):
                raise ImportError(name + " is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    from trainer.cli import main
    try:
        main(["mine", {session!r}, "--model", {model!r}, {audio!r}, "--no-progress"])
    except SystemExit as exit:
        sys.exit(exit.code)
""")


def test_mine_never_imports_torch(tone_model, audio_folder, tmp_path):
    script = SCRIPT.format(session=str(tmp_path / "s.json"), model=str(tone_model),
                           audio=str(audio_folder))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "complete: 3/3 files done" in done.stdout
