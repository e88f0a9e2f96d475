"""The loop's logging pieces: the progress bar when bars are off, and where a logged step goes."""

from __future__ import annotations

import logging

import pytest

from bamkd.runtime.progress import step_bar
from bamkd.steplog import eta, show

RECORD = {
    "epoch": 0.5,
    "examples_per_s": 12.0,
    "seconds_per_step": 100.0,
    "loss": {"a": 0.25, "b": 1.5},
}


def test_a_disabled_bar_takes_every_call_and_the_step_goes_to_the_log(monkeypatch, caplog):
    monkeypatch.setenv("BAMKD_PROGRESS", "0")
    bar = step_bar(10, 2, desc="train")
    assert bar.disable
    bar.update(1)
    with caplog.at_level(logging.INFO, logger="bamkd.steplog"):
        show(bar, RECORD, 0.8, 3, 10)
    bar.close()
    # 7 steps left at 100 s a step: 11.7 minutes.
    assert "step 3/10 epoch 0.50 loss a=0.2500 b=1.5000 ex/s 12.0 eta 12m" in caplog.text


def test_an_enabled_bar_shows_the_step_and_keeps_it_out_of_the_log(monkeypatch, caplog):
    monkeypatch.setattr("bamkd.runtime.progress.bars_enabled", lambda main=True: True)
    bar = step_bar(10, 2, desc="train")
    assert not bar.disable
    with caplog.at_level(logging.INFO, logger="bamkd.steplog"):
        show(bar, RECORD, 0.8, 3, 10)
    postfix = bar.postfix
    bar.close()
    assert "loss=0.8000" in postfix and "ex_s=12" in postfix
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.4, "59s"), (59.7, "1m"), (3569, "59m"), (3600, "1h00m"), (7530, "2h06m")],
)
def test_eta_reads_as_seconds_minutes_or_hours(seconds, shown):
    assert eta(seconds) == shown
