"""One exception type for every user-facing error.

Anything a user can get wrong (an unknown model or solver, bits out of range, a missing dataset, NaN activations)
raises :class:`RoundlabError` with a single line that says what was wrong and, where it applies, where roundlab
looked. The CLI prints that line and exits with status 2 instead of showing a traceback.
"""


class RoundlabError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`RoundlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise RoundlabError(message)
