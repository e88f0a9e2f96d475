"""Driving training from code: ``with setup(cfg) as ctx: fit(ctx, max_steps=..., callbacks=...)``.

A tiny two-task run (16 examples per task, batch 8: 4 steps per epoch, 8 in all). The checks:
``max_steps`` and a callback stop the loop after the asked step and leave nothing finished;
``fit`` called again continues to the very weights of an uninterrupted run; the hooks see every
step with its rows and phase times; the rows the loop hands to the example store at step k are
``BatchPlan.rows_at(k)``; and leaving ``setup``'s block releases the run folder's lock, also
when the block raises.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bamkd.callbacks import PHASES, Callback, StepEnd
from bamkd.config import build_config
from bamkd.errors import BamkdError
from bamkd.runtime.storage import RunLock
from bamkd.train import fit, setup


def _config(demo_suite, out, *extra):
    tasks = ["demo_sentiment", "demo_rating"]
    return build_config(
        "tiny",
        [
            f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
            f"data.tasks=[{','.join(tasks)}]",
            "data.train_limit=16",
            "data.eval_limit=8",
            "train.epochs=2",
            "train.batch_size=8",
            "train.checkpoint_every=0",
            "train.log_every=2",
            f"output_dir={out}",
            *extra,
        ],
    )


class Recorder(Callback):
    """Keeps what the hooks saw; asks to stop after step ``stop_at`` (None: never)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.started_at: list[int] = []
        self.ended: list[StepEnd] = []
        self.finished = 0

    def on_fit_start(self, ctx) -> None:
        self.started_at.append(ctx.state.step)

    def on_step_end(self, ctx, end: StepEnd) -> bool:
        self.ended.append(end)
        return end.step == self.stop_at

    def on_fit_end(self, ctx) -> None:
        self.finished += 1


def _weights(ctx) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ctx.raw_model.state_dict().items()}


def test_max_steps_stops_there_and_a_second_fit_ends_with_the_uninterrupted_weights(
    demo_suite, tmp_path
):
    with setup(_config(demo_suite, tmp_path / "whole")) as ctx:
        assert ctx.total_steps == 8
        assert set(fit(ctx)) == {"demo_sentiment", "demo_rating"}
        whole = _weights(ctx)

    out = tmp_path / "split"
    with setup(_config(demo_suite, out)) as ctx:
        assert fit(ctx, max_steps=3) == {}
        assert ctx.state.step == 3 and not ctx.state.finished
        # Nothing of a finished run is written when fit stops early.
        assert not (out / "model").exists() and not (out / "dev_metrics.json").exists()
        metrics = fit(ctx)
        assert ctx.state.step == 8 and ctx.state.finished
        assert set(metrics) == {"demo_sentiment", "demo_rating"}
        split = _weights(ctx)
    assert (out / "model").is_dir()
    assert whole.keys() == split.keys()
    assert [k for k in whole if not torch.equal(whole[k], split[k])] == []


@pytest.mark.parametrize(
    "settings",
    [[], ["train.mixed_precision=bf16", "train.fast_dropout=false"]],
    ids=["fp32-fast-dropout", "bf16-torch-dropout"],
)
def test_evaluating_after_every_epoch_changes_no_trained_weight(demo_suite, tmp_path, settings):
    # A study may turn train.eval_every_epoch on between seeds: it must cost time, not results.
    with setup(_config(demo_suite, tmp_path / "quiet", *settings)) as ctx:
        fit(ctx)
        quiet = _weights(ctx)
    out = tmp_path / "evaluated"
    with setup(_config(demo_suite, out, "train.eval_every_epoch=true", *settings)) as ctx:
        fit(ctx)
        evaluated = _weights(ctx)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval" in r] == [4]  # after epoch 1 of 2
    assert [k for k in quiet if not torch.equal(quiet[k], evaluated[k])] == []


def test_a_callback_sees_every_step_and_can_stop_early(demo_suite, tmp_path):
    out = tmp_path / "run"
    recorder = Recorder(stop_at=5)
    with setup(_config(demo_suite, out)) as ctx:
        assert fit(ctx, callbacks=[recorder]) == {}
        assert ctx.state.step == 5 and not ctx.state.finished
        plan = ctx.plan
    assert not (out / "model").exists()
    assert recorder.started_at == [0] and recorder.finished == 1
    assert [e.step for e in recorder.ended] == [1, 2, 3, 4, 5]
    # Steps 0..4: batches 0..3 of epoch 0, then batch 0 of epoch 1.
    epochs = [plan.epoch_batches(0), plan.epoch_batches(1)]
    expected = [epochs[0][0], epochs[0][1], epochs[0][2], epochs[0][3], epochs[1][0]]
    for end, rows in zip(recorder.ended, expected):
        assert np.array_equal(end.rows, rows)
        assert set(end.seconds) == set(PHASES)
        assert all(s >= 0 for s in end.seconds.values()) and sum(end.seconds.values()) > 0
        assert end.lr > 0 and end.grad_norm > 0
    # log_every=2: steps 2 and 4 logged, and the hook got the record metrics.jsonl holds.
    logged = [e.step for e in recorder.ended if e.metrics is not None]
    assert logged == [2, 4]
    record = recorder.ended[1].metrics
    assert set(record["loss"]) == {"demo_sentiment", "demo_rating"}
    written = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert written[0] == {"step": 2, **record}


def test_the_store_receives_the_plans_rows_at_each_step(demo_suite, tmp_path):
    # Two micro-batches per step and a second epoch: what the loop consumes at step k, gathered
    # from every micro-batch it asks the store for, is BatchPlan.rows_at(k).
    consumed: list[np.ndarray] = []
    cfg = _config(demo_suite, tmp_path / "run", "train.grad_accumulation=2")
    with setup(cfg) as ctx:
        for method in ("batch", "packed_batches"):  # padded or packed, whichever the run uses
            inner = getattr(ctx.store, method)

            def record_rows(rows, *args, _inner=inner, **kwargs):
                consumed.append(np.asarray(rows).copy())
                return _inner(rows, *args, **kwargs)

            setattr(ctx.store, method, record_rows)
        steps = Recorder()
        fit(ctx, max_steps=6, callbacks=[steps])
        plan = ctx.plan
    assert len(consumed) == 12
    for k in range(6):
        got = np.concatenate(consumed[2 * k : 2 * k + 2])
        assert np.array_equal(got, plan.rows_at(k)), k
        assert np.array_equal(steps.ended[k].rows, plan.rows_at(k))


def test_leaving_setups_block_releases_the_lock_also_on_an_exception(demo_suite, tmp_path):
    out = tmp_path / "run"
    with setup(_config(demo_suite, out)) as ctx:
        assert ctx.lock is not None
        with pytest.raises(BamkdError, match="in use"):
            RunLock(out).acquire()
    RunLock(out).acquire().release()

    other = _config(demo_suite, tmp_path / "other")
    with pytest.raises(RuntimeError, match="inside the block"), setup(other):
        raise RuntimeError("inside the block")
    RunLock(tmp_path / "other").acquire().release()
