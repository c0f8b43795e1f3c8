"""The distribution's name and version, read from the installed package's metadata.

The import packages (sentry, judge, trainer, plugins, studio) ship in one distribution, so
`hark --version`, `hark-sentry --version` and `hark-judge --version` print the same number:
the one pip installed, never a second copy typed into the code.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "hark-wakeword"
"""The name on PyPI (`pip install "hark-wakeword[sentry]"`): "hark" itself is taken."""

UNKNOWN_VERSION = "0+unknown"
"""What a source checkout that was never pip-installed reports (a valid PEP 440 version)."""


def package_version() -> str:
    """The installed distribution's version, or UNKNOWN_VERSION when it is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION
