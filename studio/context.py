"""What every panel shares, in a module of its own: the panels and core_api import it, and
studio/__init__ (create_app) imports them, so none of them imports the package back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app

from . import security
from .files import FileRoots
from .jobs import JobManager

if TYPE_CHECKING:  # built on first use: starting the studio does not load torch
    from trainer.plugins import PluginManager

EXTENSION = "hark_studio"
"""The key of the Studio in app.extensions."""


@dataclass
class Studio:
    """What every panel shares: the workspace folders, the job manager, the browsable roots."""

    workspace: Path
    jobs: JobManager
    files: FileRoots
    token: str | None = None
    csrf_token: str = field(default_factory=security.new_csrf_token)
    """Per launch; state-changing requests echo it in the X-Hark-Csrf header (studio.security)."""
    hosts: security.HostPolicy = field(default_factory=security.HostPolicy)
    _plugins: PluginManager | None = field(default=None, repr=False)
    _plugins_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plugins(self) -> PluginManager:
        """The studio's one trainer PluginManager, built on first use (it imports torch and
        every plugin) and handed to every config check; a TrainerError while they cannot load."""
        with self._plugins_lock:
            if self._plugins is None:
                from trainer.plugins import PluginManager
                self._plugins = PluginManager()
            return self._plugins

    def folder(self, name: str) -> Path:
        """WORKSPACE/<name> (data, runs, configs, sessions, uploads), created on first use."""
        path = self.workspace / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_studio() -> Studio:
    return current_app.extensions[EXTENSION]
