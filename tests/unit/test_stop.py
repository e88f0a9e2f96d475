"""Stop requests (bamkd.runtime.stop): signals set a flag while training, handlers return after."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bamkd.runtime.stop import StopRequests, TrainingStopped


def test_signals_set_the_flag_and_a_second_ctrl_c_stops_at_once():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequests() as stop:
        assert stop.signum is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # the process is still alive
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_message_says_where_the_checkpoint_is_and_how_to_continue():
    exc = TrainingStopped(signal.SIGTERM, 7, 30, Path("runs/x/checkpoints/step-00000007"))
    assert exc.exit_status == 143
    assert str(exc) == (
        "stopped by SIGTERM after step 7 of 30; checkpoint written to "
        "runs/x/checkpoints/step-00000007. Continue with the same command and --resume "
        "(bamkd run continues by itself)."
    )
