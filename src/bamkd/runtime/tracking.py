"""Metric logging: always a JSONL file in the run folder, optionally accelerate's trackers.

TensorBoard, Weights & Biases and MLflow are opt-in (``--track tensorboard``...) through
accelerate's tracker integration; nothing is sent anywhere unless asked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

METRICS_NAME = "metrics.jsonl"


class MetricLog:
    """Append-only JSONL metrics, one object per line, each with its optimiser step."""

    def __init__(
        self, run_dir: Path, accelerator: Accelerator | None = None, enabled: bool = True
    ) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.accelerator = accelerator
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after ``step`` so a resumed log equals an unbroken one."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by the kill; everything before it is good
            if record.get("step", 0) > step:
                break
            kept.append(line)
        from bamkd.runtime.storage import write_text

        write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        record = {"step": step, **record}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_finite(record)) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            flat = {k: v for k, v in _flatten(record).items() if isinstance(v, (int, float))}
            self.accelerator.log(flat, step=step)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "/"))
        else:
            flat[key] = v
    return flat


def _finite(value: Any) -> Any:
    """JSON has no NaN: write non-finite floats as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
