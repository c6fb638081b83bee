"""The one exception type users see: a single actionable line, never a traceback."""


class TfsrError(Exception):
    """A user mistake or bad input. The CLI prints its message as one line and exits non-zero."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
