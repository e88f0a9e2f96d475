"""Measuring bamkd training: a quiet config, a timed ``fit`` through its step hooks, token counts
and the FLOP formula. Also the small statistics the scripts report (median, half-range)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import sync

from bamkd.callbacks import Callback


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> float | None:
    """Half the range (max - min) / 2, a robust spread for a handful of repeats."""
    values = [v for v in values if v is not None]
    return (max(values) - min(values)) / 2 if len(values) > 1 else None


def encoder_facts(config) -> dict[str, int]:
    """Layer count L, hidden size h, feed-forward size ff of a BERT-like config."""
    return {
        "layers": int(config.num_hidden_layers),
        "hidden": int(config.hidden_size),
        "ff": int(config.intermediate_size),
    }


def forward_flops(lengths, facts: dict[str, int], num_outputs: int = 2) -> float:
    """Forward FLOPs of a BERT encoder + pooler + head on sequences of the given lengths.

    Per sequence of length s (a multiply-add counts 2 FLOPs):
      layers:    L * [2*s*(4*h*h + 2*h*ff)]   (Q, K, V, output projections; two FFN matmuls)
      attention: L * [4*s*s*h]                (Q K^T and A V)
      pooler + head: 2*h*h + 2*h*C            (once per sequence, on [CLS])
    Embedding lookups, LayerNorm, softmax, GELU and biases are left out (memory-bound, < 2%).
    """
    L, h, ff = facts["layers"], facts["hidden"], facts["ff"]
    total = 0.0
    for s in lengths:
        s = float(s)
        total += L * (2 * s * (4 * h * h + 2 * h * ff) + 4 * s * s * h)
        total += 2 * h * h + 2 * h * num_outputs
    return total


def train_flops(lengths, facts: dict[str, int], num_outputs: int = 2) -> float:
    """Training FLOPs = 3 x forward (backward costs about twice the forward)."""
    return 3.0 * forward_flops(lengths, facts, num_outputs)


def bamkd_config(
    tasks: Sequence[str],
    run_dir: str | Path,
    *,
    glue_dir: str | Path,
    precision: str,
    cache_dir: str | Path | None = None,
    extra: Sequence[str] = (),
):
    """The ``minilm`` preset on ``tasks`` with the given precision, quiet, no checkpoints."""
    from bamkd.config import build_config

    overrides = [
        f"data.glue_dir={glue_dir}",
        f"data.tasks=[{','.join(tasks)}]",
        # Quoted: YAML 1.1 reads a bare no as false.
        f"train.mixed_precision='{'no' if precision == 'fp32' else precision}'",
        "train.progress=false",
        "train.checkpoint_every=0",
        f"output_dir={run_dir}",
    ]
    if cache_dir:
        overrides.append(f"data.cache_dir={cache_dir}")
    return build_config("minilm", [*overrides, *extra])


def token_counts(lengths_per_batch) -> dict[str, int]:
    """Rows, real tokens and padded tokens (rows x longest) over a list of length arrays."""
    rows = real = padded = 0
    for lens in lengths_per_batch:
        rows += len(lens)
        real += int(sum(lens))
        padded += len(lens) * int(max(lens))
    return {"rows": rows, "real_tokens": real, "padded_tokens": padded}


def _jsonl_rate(run_dir: Path, rows_per_step: Sequence[int], first: int = 0) -> float | None:
    """Examples/s over the timed steps from the run's own metrics.jsonl windows.

    Each record's ``examples_per_s`` covers the steps since the previous logged step; the rows
    of those steps are known from the batch plan. ``rows_per_step[i]`` is step ``first + i``.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    seconds = examples = 0.0
    last_step = first
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rate = rec.get("examples_per_s")
        if not isinstance(rate, (int, float)) or rate <= 0 or rec["step"] <= first:
            continue
        rows = sum(rows_per_step[last_step - first : rec["step"] - first])
        last_step = rec["step"]
        seconds += rows / rate
        examples += rows
    return examples / seconds if seconds else None


class StepClock(Callback):
    """Step hooks that time the loop: wall time at the end of every step (after a device sync),
    the step's phase times as the loop measured them, its rows, and this process's CPU time."""

    def __init__(self) -> None:
        self.start = float("nan")
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.rows: list = []

    def on_fit_start(self, ctx) -> None:
        sync()
        self.start = time.perf_counter()

    def on_step_end(self, ctx, end) -> None:
        sync()
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())
        self.phases.append(dict(end.seconds))
        self.rows.append(end.rows)

    def step_seconds(self) -> list[float]:
        edges = [self.start, *self.times]
        return [b - a for a, b in zip(edges, edges[1:])]

    def phase_seconds(self) -> dict[str, float]:
        """Seconds spent in each of the loop's phases, summed over the timed steps."""
        totals: dict[str, float] = {}
        for step in self.phases:
            for phase, seconds in step.items():
                totals[phase] = totals.get(phase, 0.0) + seconds
        return totals


def bamkd_timed_fit(
    ctx, steps: int | None, *, callbacks: Sequence[Callback] = ()
) -> tuple[dict[str, Any], StepClock]:
    """Run ``bamkd.train.fit`` on ``ctx`` up to step ``steps`` (None: to the end of the run).

    Stopping before the planned end skips the final save and dev evaluation, so the timing
    covers the training loop only; the learning-rate schedule stays planned over the whole
    run, which changes the numbers trained but not the cost of a step. ``fit`` may be called
    again on the same ``ctx`` to time further steps. Returns loop wall time, per-step times
    and token counts of the steps this call ran, and the clock with every step's details.
    """
    from bamkd.train import fit

    if steps is not None and steps > ctx.total_steps:
        raise ValueError(
            f"{steps} steps asked for but the run plans {ctx.total_steps}; raise train.epochs"
        )
    first = ctx.state.step
    clock = StepClock()
    metrics = fit(ctx, max_steps=steps, callbacks=[clock, *callbacks])
    lengths = [ctx.store.lengths[rows] for rows in clock.rows]
    step_s = clock.step_seconds()
    counts = token_counts(lengths)
    loop_s = clock.times[-1] - clock.start if clock.times else float("nan")
    result = {
        "steps": len(step_s),
        "loop_s": loop_s,
        "step_seconds": step_s,
        "batch_lengths": [[int(x) for x in lens] for lens in lengths],
        **counts,
        "examples_per_s": counts["rows"] / loop_s,
        "dev_metrics": metrics or None,
        "metrics_jsonl_examples_per_s": _jsonl_rate(ctx.run_dir, [len(x) for x in lengths], first),
    }
    return result, clock
