"""The one exception type users see: a single actionable line, never a traceback."""


class TfsrError(Exception):
    """A user mistake or bad input. The CLI prints its message as one line and exits non-zero."""
