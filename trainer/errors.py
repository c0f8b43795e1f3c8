"""The trainer's one exception base."""


class TrainerError(Exception):
    """A problem the user can fix: bad phrase, unreadable audio, missing engine, bad dataset folder.

    The message says what was wrong, names the file when there is one, and says how to fix it.
    """
