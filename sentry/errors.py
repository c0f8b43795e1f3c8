"""The sentry's one exception base."""


class SentryError(Exception):
    """A problem the user can fix: bad model folder, unreadable audio, bad settings."""
