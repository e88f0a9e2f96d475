"""Stop a training run cleanly when asked: SIGTERM or Ctrl-C becomes a checkpoint and an exit.

Cluster schedulers preempt a job with SIGTERM and kill it a grace period later; a person stops a
run with Ctrl-C. Either way, without this, everything since the last periodic checkpoint is lost.
While the training loop runs, both signals only raise a flag: the loop finishes the step it is
in, writes a checkpoint and raises :class:`TrainingStopped`, whose message says how to continue.
With several processes they agree on the flag every step, so all stop after the same step even
when the signal reached one of them first. A second Ctrl-C stops at once, as an impatient user
expects (the run then resumes from its last periodic checkpoint).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from bamkd.errors import BamkdError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(BamkdError):
    """A run stopped on request after writing a checkpoint; the exit status follows the shell's
    convention for a process ended by a signal (128 + its number)."""

    def __init__(self, signum: int, step: int, total_steps: int, checkpoint: Path) -> None:
        self.signum, self.step, self.total_steps = signum, step, total_steps
        self.checkpoint = checkpoint
        self.exit_status = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step} of {total_steps}; "
            f"checkpoint written to {checkpoint}. Continue with the same command and --resume "
            "(bamkd run continues by itself)."
        )


class StopRequests:
    """While entered (in the main thread), SIGTERM and SIGINT set ``signum`` instead of killing.

    Elsewhere (a worker thread cannot install handlers) it never requests a stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without the checkpoint
        if self.signum is None:
            log.warning(
                "received %s: finishing this step, then writing a checkpoint and stopping "
                "(Ctrl-C again stops at once)",
                signal.Signals(signum).name,
            )
        self.signum = signum
