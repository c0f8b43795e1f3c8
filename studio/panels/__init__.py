"""The studio's panels, one Flask blueprint per module, registered by create_app through
register_panels (the panels import studio.context, never the studio package itself)."""

from __future__ import annotations

from flask import Flask


def register_panels(app: Flask) -> None:
    """Register every panel's blueprint on `app`, in the order the page shows them."""
    from . import cascade, config, data, evaluate, export, mining, train

    for panel in (data, config, train, evaluate, mining, cascade, export):
        app.register_blueprint(panel.bp)
