"""Tasks: what each task is (`TaskSpec`, one row per GLUE task) and how its files are read.

This package is the only place that knows GLUE file layouts and user task files; everything
downstream works with `TaskSpec` fields and `Example`s.
"""

from bamkd.tasks.readers import Example, check_split_file, has_labels, read_split, split_path
from bamkd.tasks.spec import (
    GLUE_TASKS,
    METRICS,
    TaskKind,
    TaskSpec,
    get_task,
    glue_task,
    load_task_yaml,
)

__all__ = [
    "GLUE_TASKS",
    "METRICS",
    "Example",
    "TaskKind",
    "TaskSpec",
    "check_split_file",
    "get_task",
    "glue_task",
    "has_labels",
    "load_task_yaml",
    "read_split",
    "split_path",
]
