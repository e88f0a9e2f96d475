"""Size and speed of finished runs: parameters, layers and dev-set inference examples/s.

A smaller student is worth its lost quality only if it is cheaper to run, so the report puts
every model's size and speed beside its scores. Speed is measured once per finished run, by
``bamkd run`` after training (or ``bamkd report --measure-speed`` for older runs), with the same
settings for every run, and stored in the run folder (``speed.json``): reports only read it, so
they stay fast and a report never times anything. Size needs no measurement: the parameter
count comes from the saved weights' header and the layer count from the saved encoder config.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bamkd.errors import BamkdError, ConfigError
from bamkd.runtime.runs import MODEL_DIR
from bamkd.runtime.storage import file_lock, read_json, write_json
from bamkd.student import LAYER_COUNT_KEYS

log = logging.getLogger(__name__)

SPEED_NAME = "speed.json"
"""Written into a finished run's folder by `measure_run`."""


SPEED_LOCK_NAME = ".speed.lock"
"""In an experiment folder: held shared by each sitting while it trains and exclusively by the
one timing inference, so that no timing runs beside training (bamkd.experiments.pipeline)."""


@dataclass
class SpeedSettings:
    """How inference speed is measured: the same for every run of an experiment."""

    measure: bool = True
    """Measure each finished run that has no speed.json yet, after training."""
    batch_size: int = 128
    """Examples per forward pass (length-sorted, dynamically padded, as in evaluation)."""
    repeats: int = 3
    """Timed passes over each dev set after one warm-up pass; the median counts."""
    precision: Literal["no", "bf16", "fp16"] = "no"
    """Inference precision (``no``: fp32), whatever precision the run trained in."""
    threads: int | None = None
    """torch CPU threads while timing; None keeps the process's count (OMP_NUM_THREADS)."""
    limit: int | None = None
    """Time only the first N rows of each dev set (quick checks); None: every row."""

    def __post_init__(self) -> None:
        for key in ("batch_size", "repeats", "threads", "limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"speed.{key}={value} must be 1 or more")


def saved_size(run_dir: str | Path) -> tuple[int, int | None] | None:
    """(parameters, encoder layers) of a run's saved model, or None when it has none.

    Reads the safetensors header (a length and a JSON table of shapes), not the weights.
    """
    folder = Path(run_dir) / MODEL_DIR
    try:
        with open(folder / "bamkd_model.safetensors", "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, struct.error):
        return None
    parameters = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= dim
        parameters += count
    layers = next((config[k] for k in LAYER_COUNT_KEYS if isinstance(config.get(k), int)), None)
    return parameters, layers


def read_speed(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's stored measurement, or None (never measured, or an unreadable file)."""
    path = Path(run_dir) / SPEED_NAME
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except BamkdError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        return None
    values = [data.get("seconds"), data.get("examples")]
    usable = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
    return data if usable else None


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[int]:
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def measure_run(run_dir: str | Path, settings: SpeedSettings) -> dict[str, Any]:
    """Time the run's model on the first dev split of each of its tasks; write speed.json.

    Every task of a multi-task model counts (its examples and time add up), so a multi-task
    student and the single-task teachers it replaces are timed on the same dev examples.
    """
    from bamkd import __version__
    from bamkd.evaluate import LoadedRun, inference_speed

    run_dir = Path(run_dir)
    with _threads(settings.threads) as threads:
        run = LoadedRun(run_dir, mixed_precision=settings.precision)
        tasks: dict[str, dict[str, Any]] = {}
        for task in run.specs:
            speed = inference_speed(
                run,
                task,
                repeats=settings.repeats,
                limit=settings.limit,
                batch_size=settings.batch_size,
            )
            tasks[task] = {
                "split": speed.split,
                "examples": speed.examples,
                "seconds": speed.seconds,
            }
    examples = sum(t["examples"] for t in tasks.values())
    seconds = sum(t["seconds"] for t in tasks.values())
    used = {k: v for k, v in asdict(settings).items() if k != "measure"}
    record: dict[str, Any] = {
        "examples": examples,
        "seconds": seconds,
        "examples_per_second": examples / seconds if seconds > 0 else None,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "layers": run.model.num_layers,
        "tasks": tasks,
        "settings": {
            **used,
            "threads": threads,
            "device": str(run.accelerator.device),
        },
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bamkd_version": __version__,
    }
    write_json(run_dir / SPEED_NAME, record)
    return record


def _measured_with(record: dict[str, Any] | None, settings: SpeedSettings) -> bool:
    """Whether a stored measurement used ``settings`` (threads: the count they resolve to)."""
    if record is None:
        return False
    import torch

    wanted = {k: v for k, v in asdict(settings).items() if k != "measure"}
    if wanted["threads"] is None:
        wanted["threads"] = torch.get_num_threads()
    stored = record.get("settings", {})
    return all(stored.get(k) == v for k, v in wanted.items())


def measure_missing(folders: list[Path], settings: SpeedSettings) -> list[Path]:
    """Measure each finished run folder without a speed.json measured with ``settings``
    (runs from before bamkd measured speed, or measured by an experiment with other settings,
    e.g. reused runs); return those measured.

    A run that cannot be measured (its data moved, say) is logged and skipped: the report shows
    a dash for it, and the training that succeeded is not failed for it.
    """
    from bamkd.runtime.runs import is_finished

    measured = []
    todo = [f for f in folders if is_finished(f) and not _measured_with(read_speed(f), settings)]
    for i, folder in enumerate(todo, 1):
        log.info("[%d/%d] measuring inference speed of %s", i, len(todo), folder)
        try:
            measure_run(folder, settings)
        except Exception as exc:  # noqa: BLE001 - training succeeded; a speed is never worth failing it
            log.warning("no inference speed for %s: %s", folder, exc)
            continue
        measured.append(folder)
    return measured


def measure_when_idle(experiment_dir: Path, folders: list[Path], settings: SpeedSettings) -> bool:
    """`measure_missing` holding the experiment's speed lock exclusively; False, measuring
    nothing, while a sitting of the experiment trains or another measures (timing inference
    beside training measures the load)."""
    with file_lock(Path(experiment_dir) / SPEED_LOCK_NAME, wait=False) as alone:
        if alone:
            measure_missing(folders, settings)
        return alone
