"""Exception types for problems a user can fix.

Anything raised as a `BamkdError` is the user's to fix (a bad file, a bad setting), so the CLI
prints its message alone, without a traceback. Bugs stay ordinary exceptions with tracebacks.
Both concrete types also derive from `ValueError`, so callers that already catch `ValueError`
keep working.
"""

from __future__ import annotations

__all__ = ["BamkdError", "ConfigError", "DataError"]


class BamkdError(Exception):
    """Base for errors a user can fix; the CLI prints str(e) without a traceback."""


class DataError(BamkdError, ValueError):
    """Bad or missing input data. Message names the file (and line) and the fix."""


class ConfigError(BamkdError, ValueError):
    """Bad configuration. Message names the key and the fix."""
