"""Hark's built-in trainer plugins, registered by ``trainer.plugins.DEFAULT_PLUGINS``."""
