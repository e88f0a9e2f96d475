"""Hooks for code that drives training: ``fit(ctx, callbacks=[...])`` calls them every step.

Benchmarks, notebooks and tools watch or end a run through these instead of patching the
loop's objects. ``on_step_end`` receives a ``StepEnd``: the step just trained, its global rows,
wall time by phase, and the logged record when the step logged one. Returning True from it asks
the loop to stop after this step (all processes agree; the run is left where it stopped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bamkd.train import Context


PHASES = ("data", "forward", "backward", "clip", "optimizer")
"""The loop's phases, in order: batch assembly and copy to the device, forward and loss,
backward, gradient clipping (it reads the norm back, so on a GPU the work before it is done),
optimizer step. On a GPU kernels run asynchronously, so only times up to ``clip`` are exact."""


class Stopwatch:
    """Wall time by phase: ``lap(phase)`` adds the time since the previous lap to ``phase``."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now


@dataclass
class StepEnd:
    """What one optimizer step did, as ``on_step_end`` sees it."""

    step: int
    """Steps done so far (``ctx.state.step``): 1 after the first step."""
    rows: np.ndarray
    """The step's global batch: concatenated-row indices (``ctx.store.lengths[rows]``...)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of this process by phase (``PHASES``); their sum is the step's time."""
    lr: float = 0.0
    grad_norm: float = 0.0
    metrics: dict[str, Any] | None = None
    """The record written to metrics.jsonl at this step, or None when the step did not log."""


class Callback:
    """Base class of training hooks; override the ones you need (each does nothing here)."""

    def on_fit_start(self, ctx: Context) -> None:
        """Before the first step of this ``fit`` call (``ctx.state.step`` says where it starts)."""

    def on_step_end(self, ctx: Context, end: StepEnd) -> bool | None:
        """After every optimizer step; return True to stop training after this step."""
        return None

    def on_fit_end(self, ctx: Context) -> None:
        """After the last step of this ``fit`` call, before the final save and evaluation.

        Not called when training ends by an exception (SIGTERM's `TrainingStopped`, a
        non-finite loss): clean up in a ``try``/``finally`` around ``fit`` instead.
        """
