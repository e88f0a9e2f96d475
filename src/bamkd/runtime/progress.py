"""Progress bars that show rate and time left in a terminal and stay quiet everywhere else.

Bars are drawn only by the main process and only when stderr is a terminal (and BAMKD_PROGRESS
is not 0), so logs of CI, batch jobs and multi-process runs hold the periodic log lines alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bars_enabled(main: bool = True) -> bool:
    return main and os.environ.get("BAMKD_PROGRESS", "1") != "0" and sys.stderr.isatty()


def progress_bar(
    iterable: Iterable[T],
    *,
    desc: str | None = None,
    unit: str = "it",
    main: bool = True,
    total: int | None = None,
    initial: int = 0,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when bars are enabled, else return it unchanged."""
    if not bars_enabled(main):
        return iter(iterable)
    return iter(
        tqdm(
            iterable,
            desc=desc,
            unit=unit,
            total=total,
            initial=initial,
            dynamic_ncols=True,
            leave=False,
        )
    )


def step_bar(total: int, initial: int, *, desc: str, main: bool = True) -> tqdm:
    """A manually updated bar (``bar.update(1)``); a disabled one (every call a no-op,
    ``bar.disable`` true) when bars are off, so callers need no checks."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=not bars_enabled(main),
    )
