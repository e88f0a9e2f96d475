"""Exception types for problems a user can fix.

Anything raised as a `BamkdError` is the user's to fix (a bad file, a bad setting), so the CLI
prints its message alone, without a traceback. Bugs stay ordinary exceptions with tracebacks.
Both concrete types also derive from `ValueError`, so callers that already catch `ValueError`
keep working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BamkdError", "ConfigError", "DataError", "excerpt", "excerpt_list"]

EXCERPT_CHARS = 40
"""Longest quote of user data (a value, a column name, a row id) in an error message."""
EXCERPT_ITEMS = 16
"""Most items of a user-supplied list (a file's column names) quoted in one message: every
column of a real GLUE header (MNLI dev has 15), at most about 800 characters in all."""


class BamkdError(Exception):
    """Base for errors a user can fix; the CLI prints str(e) without a traceback."""


class DataError(BamkdError, ValueError):
    """Bad or missing input data. Message names the file (and line) and the fix."""


class ConfigError(BamkdError, ValueError):
    """Bad configuration. Message names the key and the fix."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so a 10 MB cell stays a short quote.

    The value is cut before ``repr`` (which could otherwise build a huge string first) and the
    cut is marked with ``...`` and the full length.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(value) if isinstance(value, str) else text
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def excerpt_list(values: Iterable[object], limit: int = EXCERPT_ITEMS) -> str:
    """The first ``limit`` values as short excerpts, comma-separated, with a count of the rest."""
    shown: list[str] = []
    rest = 0
    for value in values:
        if len(shown) < limit:
            shown.append(excerpt(value))
        else:
            rest += 1
    return ", ".join(shown) + (f" and {rest:,} more" if rest else "")
