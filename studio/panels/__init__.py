"""The studio's panels, one Flask blueprint per module (registered from studio.PANELS)."""
