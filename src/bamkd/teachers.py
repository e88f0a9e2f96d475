"""Teacher predictions: stored per task as safetensors keyed by example id, with a manifest.

The original code kept teacher outputs in pickles keyed by row index and crashed with a KeyError
when the data or the swapping scheme changed. Here every output row carries the example's stable
id and a hash of its texts and label; before the first step a student checks that each of its
training examples has an output and that the example has not changed since the teacher saw it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from bamkd.data import Encoded
from bamkd.errors import BamkdError, ConfigError, DataError
from bamkd.losses import teacher_probs
from bamkd.runtime.storage import atomic_path, read_json, write_json
from bamkd.tasks import TaskSpec

log = logging.getLogger(__name__)

TEACHER_DIR = "teacher_predictions"
FORMAT_VERSION = 1


def predictions_path(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / TEACHER_DIR / f"{task}.safetensors"


def prediction_seconds(run_dir: Path) -> tuple[float, int]:
    """Wall time spent writing the run's teacher predictions, and how many files lack a time.

    Files written before bamkd recorded the time have no ``seconds`` key; they are counted so a
    report can say its total is a lower bound.
    """
    total, untimed = 0.0, 0
    for path in sorted((Path(run_dir) / TEACHER_DIR).glob("*.json")):
        try:
            seconds = read_json(path).get("seconds")
        except BamkdError:
            seconds = None
        if seconds is None:
            untimed += 1
        else:
            total += float(seconds)
    return total, untimed


def data_fingerprint(enc: Encoded) -> str:
    """Hash of the ids and contents of every example, in order."""
    h = hashlib.sha256()
    h.update(json.dumps(enc.ids).encode())
    h.update(enc.content_hash.tobytes())
    return h.hexdigest()[:32]


def write_teacher_predictions(
    run_dir: Path, enc: Encoded, outputs: np.ndarray, kind: str, manifest: dict
) -> Path:
    """Store ``outputs`` (logits [n, C] or [0,1] scores [n]) for the examples of ``enc``."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if len(outputs) != len(enc):
        raise ValueError(f"{len(outputs)} outputs for {len(enc)} examples")
    info = {
        "format_version": FORMAT_VERSION,
        "task": enc.task,
        "split": enc.split,
        "kind": kind,
        "num_examples": len(enc),
        "data_fingerprint": data_fingerprint(enc),
        **manifest,
    }
    path = predictions_path(run_dir, enc.task)
    with atomic_path(path) as tmp:
        save_file(
            {"outputs": outputs, "content_hash": enc.content_hash},
            str(tmp),
            metadata={"manifest": json.dumps(info), "ids": json.dumps(enc.ids)},
        )
    # A readable copy of the manifest, without the ids, for people and for the pipeline.
    write_json(path.with_suffix(".json"), info)
    return path


@dataclass
class TeacherOutputs:
    """One teacher's stored outputs for one task."""

    path: Path
    manifest: dict
    ids: list[str]
    outputs: np.ndarray
    content_hash: np.ndarray


def read_teacher_predictions(run_dir: Path, task: str) -> TeacherOutputs:
    path = predictions_path(run_dir, task)
    if not path.is_file():
        raise DataError(
            f"no teacher predictions for task '{task}' in {run_dir} ({path} is missing); "
            f"write them with: bamkd teach {run_dir}"
        )
    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        manifest, ids = json.loads(meta["manifest"]), json.loads(meta["ids"])
        tensors = load_file(str(path))
    except Exception as exc:
        raise DataError(
            f"teacher predictions {path} are corrupted or truncated ({exc}); delete the file and "
            f"run: bamkd teach {run_dir}"
        ) from None
    return TeacherOutputs(path, manifest, ids, tensors["outputs"], tensors["content_hash"])


def align_teacher(enc: Encoded, teacher: TeacherOutputs) -> np.ndarray:
    """Teacher outputs in the row order of ``enc``; refuses missing or stale outputs.

    The message says which task, how many ids are missing or changed, an example id, and why.
    """
    index = {id_: i for i, id_ in enumerate(teacher.ids)}
    rows = np.array([index.get(id_, -1) for id_ in enc.ids], dtype=np.int64)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        first = enc.ids[missing[0]]
        hint = (
            " The student doubles symmetric pairs (ids ending ':swap') and the teacher did not;"
            " set the same data.double_unordered for both."
            if first.endswith(":swap")
            else " The teacher predicted on other data (another data.train_limit or data folder)."
        )
        raise DataError(
            f"task '{enc.task}': {len(missing)} of {len(enc)} training examples have no teacher "
            f"output in {teacher.path} (first missing id: {first}).{hint} Re-run "
            f"'bamkd teach' on the teacher run with the student's data."
        )
    stale = np.flatnonzero(teacher.content_hash[rows] != enc.content_hash)
    if len(stale):
        raise DataError(
            f"task '{enc.task}': {len(stale)} of {len(enc)} training examples changed since the "
            f"teacher predicted them (first: {enc.ids[stale[0]]}); the data no longer matches "
            f"{teacher.path}. Re-run 'bamkd teach' on the teacher run."
        )
    return teacher.outputs[rows]


def check_teacher_tasks(
    teachers: Mapping[str, Sequence[str | Path]], specs: Mapping[str, TaskSpec]
) -> None:
    """Refuse teachers whose head means something else than the student's for the same task.

    Teacher outputs are keyed by example id and checked against each example's texts and label,
    never against tokens, so a student may use another encoder and tokenizer than its teachers.
    What must agree is the head: the same kind, the same labels in the same order (column i of a
    teacher's logits is the student's class i) and, for regression, the same gold range (scores
    are on the [0, 1] scale of that range). A teacher run without a saved model yet (one a
    pipeline is still to train) is skipped; the check runs again before its outputs are read.

    Raises:
        ConfigError: naming the task, the teacher run and what differs.
    """
    from bamkd.model import META_NAME, model_folder

    for task, runs in teachers.items():
        student = specs.get(task)
        if student is None:
            continue
        for run in runs:
            try:
                meta = read_json(model_folder(run) / META_NAME)
            except BamkdError:
                continue  # not trained yet
            theirs = next((t for t in meta.get("tasks", []) if t.get("name") == task), None)
            if theirs is None:
                raise ConfigError(
                    f"distill.teachers.{task}: teacher run {run} has no head for task '{task}'; "
                    "name a run that was trained on it"
                )
            try:
                teacher = TaskSpec.from_dict(theirs)
            except (BamkdError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"distill.teachers.{task}: teacher run {run} has an unreadable task "
                    f"definition in {META_NAME} ({exc}); train the teacher again with this bamkd"
                ) from None
            differs = _head_difference(teacher, student)
            if differs:
                raise ConfigError(
                    f"distill.teachers.{task}: teacher run {run} {differs}, so its outputs "
                    "cannot teach this student; train the teacher on the same task definition"
                )


def _head_difference(teacher: TaskSpec, student: TaskSpec) -> str | None:
    if teacher.kind != student.kind:
        return f"is a {teacher.kind} task and the student's a {student.kind} task"
    if teacher.label_names != student.label_names:
        return (
            f"has labels {list(teacher.label_names)} and the student "
            f"{list(student.label_names)} (same labels, same order needed)"
        )
    if teacher.kind == "regression" and teacher.regression_range != student.regression_range:
        return (
            f"scales scores from {list(teacher.regression_range)} and the student from "
            f"{list(student.regression_range)}"
        )
    return None


def teacher_targets(
    enc: Encoded,
    teachers: Sequence[TeacherOutputs],
    kind: str,
    weights: Sequence[float] | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Soft targets for ``enc``: an ensemble averaged in probability space (or score space).

    Classification: sum_k w_k softmax(logits_k / T); regression: sum_k w_k score_k. Weights are
    normalised to sum to 1.
    """
    import torch

    if not teachers:
        raise ValueError("no teachers given")
    w = np.ones(len(teachers)) if weights is None else np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise DataError(f"task '{enc.task}': teacher weights {list(w)} must be >= 0, not all 0")
    w = w / w.sum()
    total = None
    for weight, teacher in zip(w, teachers):
        if teacher.manifest.get("kind") != kind:
            raise DataError(
                f"task '{enc.task}': teacher {teacher.path} holds {teacher.manifest.get('kind')} "
                f"outputs but the task is {kind}"
            )
        out = align_teacher(enc, teacher)
        if kind == "classification":
            out = teacher_probs(torch.from_numpy(out), temperature).numpy()
        total = weight * out if total is None else total + weight * out
    assert total is not None
    return total.astype(np.float32)
