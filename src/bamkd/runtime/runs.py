"""The layout of a run folder and the few facts read back from one.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``checkpoints/``,
``model/`` (final weights, tokenizer, task specs), ``trainer_state.json`` and
``dev_metrics.json``. ``trainer_state.json`` with ``finished: true`` is written last, so its
presence means the run is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bamkd.config import DataConfig, RunConfig, from_dict, load_yaml
from bamkd.errors import BamkdError
from bamkd.runtime.storage import RunLock, read_json
from bamkd.runtime.tracking import METRICS_NAME
from bamkd.tasks import GLUE_TASKS, TaskSpec, get_task, glue_task, load_task_yaml

CONFIG_NAME = "config.yaml"
STATE_NAME = "trainer_state.json"
DEV_METRICS_NAME = "dev_metrics.json"
MODEL_DIR = "model"
PLAN_NAME = "plan.json"
"""Written by ``bamkd run`` at the top of an experiment folder; ``bamkd report`` reads it."""


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run was started with."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise BamkdError(f"{run_dir} is not a bamkd run folder (no {CONFIG_NAME})")
    return from_dict(RunConfig, load_yaml(path))


def is_finished(run_dir: str | Path) -> bool:
    path = Path(run_dir) / STATE_NAME
    if not path.is_file():
        return False
    try:
        return bool(read_json(path).get("finished"))
    except BamkdError:
        return False


def training_seconds(run_dir: str | Path) -> float:
    """Wall time of the run's training loop, summed over resumed sittings (0 if unknown)."""
    try:
        return float(read_json(Path(run_dir) / STATE_NAME).get("elapsed_seconds", 0.0))
    except BamkdError:
        return 0.0


@dataclass(frozen=True)
class RunProgress:
    """How far an unfinished run has come, read from its folder without loading anything."""

    checkpoint_step: int | None
    """Step of its newest checkpoint (None: none yet); a resumed run continues from there."""
    total_steps: int | None
    """Steps the run plans (known once it has a checkpoint)."""
    logged_step: int | None
    """Last step in its metrics log. While it trains, newer than the checkpoint; from a
    stopped sitting, possibly past it (a resume truncates the log back to the checkpoint)."""
    holder: str | None
    """Process id training it now, or None."""
    log_is_current: bool = False
    """Whether the log was written since the holder took the run (this sitting)."""

    @property
    def reached(self) -> int | None:
        """The last step the run has reached: its log's while this sitting writes it, else its
        checkpoint's (lines a stopped sitting logged past the checkpoint are cut on resume)."""
        logged = self.logged_step if self.holder is not None and self.log_is_current else None
        if logged is not None and logged >= (self.checkpoint_step or 0):
            return logged
        return self.checkpoint_step


def run_progress(run_dir: str | Path) -> RunProgress:
    """Where an unfinished run stands: its newest readable checkpoint (the one a resume would
    load), its last logged step, and whether a process holds it (`RunLock.holder`)."""
    from bamkd.runtime.checkpoint import list_checkpoints  # torch: only when asked

    run_dir = Path(run_dir)
    checkpoint_step = total_steps = None
    for folder in reversed(list_checkpoints(run_dir)):
        try:
            state = read_json(folder / STATE_NAME)
            checkpoint_step, total_steps = int(state["step"]), int(state["total_steps"])
            break
        except (BamkdError, KeyError, TypeError, ValueError):
            continue
    log = run_dir / METRICS_NAME
    try:
        current = log.stat().st_mtime >= (run_dir / RunLock.FILE_NAME).stat().st_mtime
    except OSError:
        current = False
    return RunProgress(
        checkpoint_step, total_steps, _last_logged_step(log), RunLock.holder(run_dir), current
    )


def _last_logged_step(path: Path) -> int | None:
    """The step of a metrics log's last complete record (reads only the file's tail)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def task_specs(data: DataConfig) -> dict[str, TaskSpec]:
    """The specs of ``data.tasks``, user tasks from ``data.task_files`` included, in order."""
    user = {spec.name: spec for spec in (load_task_yaml(p) for p in data.task_files)}
    specs = [get_task(name, user_tasks=user) for name in data.tasks]
    if data.glue_source != "tsv":
        specs = [
            glue_task(s.name, data.glue_source, data.glue_dataset) if s.name in GLUE_TASKS else s
            for s in specs
        ]
    return {spec.name: spec for spec in specs}
