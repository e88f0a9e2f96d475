"""What the training loop logs every ``train.log_every`` steps, kept out of the loop itself.

A ``LogWindow`` gathers per-task loss sums and throughput between two logged steps; at a logged
step it sums the loss over all processes and turns the window into one ``metrics.jsonl`` record.
``show`` puts that record on the progress bar, or in the log when bars are off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)


def real_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens of the examples in a padded or packed batch, padding excluded."""
    if "segments" in batch:
        return int((batch["segments"] >= 0).sum())
    return int(batch["attention_mask"].sum())


class LogWindow:
    """Per-task loss sums, examples and tokens since the last logged step."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = tasks
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.tasks))
        self.counts = torch.zeros(len(self.tasks))
        self.examples = 0
        self.steps = 0
        self.tokens = 0  # real tokens this process computed
        self.slots = 0  # token positions this process computed, padding included
        self.start = time.perf_counter()

    def add_batch(self, host: Mapping[str, torch.Tensor]) -> None:
        """Count the tokens of one micro-batch this process trained on."""
        self.tokens += real_tokens(host)
        self.slots += host["input_ids"].numel()

    def add_step(self, sums: torch.Tensor, counts: torch.Tensor, examples: int) -> None:
        """Add one step's per-task loss sums and row counts, and its global batch size."""
        self.sums += sums
        self.counts += counts
        self.examples += examples
        self.steps += 1

    def record(
        self,
        accelerator: Accelerator,
        *,
        epoch: float,
        lr: float,
        grad_norm: float,
        lam: torch.Tensor,
    ) -> tuple[dict[str, Any], float]:
        """The window as a metrics record, and its mean loss over every task and process.

        Every process must call this at the same step: the loss sums are all-reduced.
        """
        stacked = torch.stack([self.sums, self.counts]).to(accelerator.device)
        totals = accelerator.reduce(stacked, "sum").cpu()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        record = {
            "epoch": epoch,
            "lr": lr,
            "grad_norm": grad_norm,
            "examples_per_s": self.examples / elapsed,
            "seconds_per_step": elapsed / max(self.steps, 1),
            # This process's share; the padding share is of the positions it computed.
            "tokens_per_s": self.tokens / elapsed,
            "padding": 1.0 - self.tokens / max(self.slots, 1),
            "loss": {n: float(s / c) for n, s, c in zip(self.tasks, *totals) if c > 0},
            "lambda": {n: float(v) for n, v in zip(self.tasks, lam)},
        }
        mean_loss = float(totals[0].sum() / max(totals[1].sum(), 1))
        return record, mean_loss


def show(bar: Any, record: Mapping[str, Any], mean_loss: float, step: int, total: int) -> None:
    """Put a logged record on the progress bar, or in the log when the bar is disabled."""
    if not bar.disable:
        bar.set_postfix(loss=f"{mean_loss:.4f}", ex_s=f"{record['examples_per_s']:.0f}")
        return
    log.info(
        "step %d/%d epoch %.2f loss %s ex/s %.1f eta %s",
        step,
        total,
        record["epoch"],
        " ".join(f"{k}={v:.4f}" for k, v in record["loss"].items()),
        record["examples_per_s"],
        eta(record["seconds_per_step"] * (total - step)),
    )


def eta(seconds: float) -> str:
    """Time left at the last window's pace: ``45s``, ``12m``, ``2h05m``."""
    if seconds < 59.5:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
