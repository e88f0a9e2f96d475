"""The layout of a run folder and the few facts read back from one.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``checkpoints/``,
``model/`` (final weights, tokenizer, task specs), ``trainer_state.json`` and
``dev_metrics.json``. ``trainer_state.json`` with ``finished: true`` is written last, so its
presence means the run is complete.
"""

from __future__ import annotations

from pathlib import Path

from bamkd.config import DataConfig, RunConfig, from_dict, load_yaml
from bamkd.errors import BamkdError
from bamkd.runtime.storage import read_json
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
