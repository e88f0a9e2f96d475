"""Task specifications as data: one frozen `TaskSpec` per task.

Everything the rest of bamkd needs to know about a task (its label set, metrics, split files,
whether sentence order may be swapped, GLUE submission names) lives in one row of `GLUE_TASKS`
or in a user's task YAML file. Other modules read these fields instead of branching on task
names, so adding a task never means editing the training code.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from bamkd.errors import ConfigError, excerpt
from bamkd.tasks.records import RECORD_FORMATS

if TYPE_CHECKING:  # torch only for the types: task tables load without it
    import torch

__all__ = [
    "CLASSIFICATION_METRICS",
    "GLUE_TASKS",
    "METRICS",
    "REGRESSION_METRICS",
    "TaskKind",
    "TaskSpec",
    "get_task",
    "glue_task",
    "load_task_yaml",
]

TaskKind = Literal["classification", "regression"]
Column = str | int  # a column name (files with a header, JSONL keys) or a 0-based index
Value = TypeVar("Value", float, "torch.Tensor")
"""A regression value or a tensor of them (the loss scales a batch's labels at once)."""

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1", "mcc")
REGRESSION_METRICS: tuple[str, ...] = ("pearson", "spearman")
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS
# "glue" means: read with the fixed GLUE layouts in readers.py; the others come from task YAMLs
# (or, for GLUE tasks, from data.glue_source: see `glue_task`).
FILE_FORMATS = tuple(RECORD_FORMATS)  # csv, tsv, jsonl: files read line by line
# Column tables read through pyarrow / Hugging Face `datasets` (the optional [datasets] extra):
# Parquet files, a folder written by `save_to_disk`, or a dataset on the Hugging Face hub.
TABLE_FORMATS = ("parquet", "disk", "hub")
USER_FORMATS = FILE_FORMATS + TABLE_FORMATS
FORMATS = ("glue", *USER_FORMATS)

# Task and split names end up inside example ids ("task:split:key") and file names, so they are
# kept to a safe alphabet.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

_TEXT_COLUMNS_SHAPE = "must list one column (single sentence) or two (sentence pair)"


class SpecError(ConfigError):
    """A `TaskSpec` that breaks a rule, also said the way a task file names it.

    ``in_file`` is the same problem as `load_task_yaml` reports it after the file's path, by the
    file's key (``key 'metrics': ...``), so a task file's errors come from the spec's one set of
    checks yet read in the file's terms.
    """

    def __init__(self, message: str, in_file: str) -> None:
        super().__init__(message)
        self.in_file = in_file


@dataclass(frozen=True)
class TaskSpec:
    """Everything bamkd knows about one task. Frozen: specs are shared, never edited.

    The fields after `is_pair` describe how to read a user task's files; GLUE tasks keep their
    defaults because readers.py knows the GLUE layouts.
    """

    name: str
    """Lower-case key used everywhere ("cola", "sst2", ...; user tasks: their YAML `name`)."""
    kind: TaskKind
    """"classification" (softmax over `label_names`) or "regression" (one scalar)."""
    label_names: tuple[str, ...] = ()
    """Classification only: the label strings found in the files, in class-index order."""
    regression_range: tuple[float, float] = (0.0, 5.0)
    """Regression only: gold values lie in [lo, hi] and are scaled to [0, 1] for training."""
    metrics: tuple[str, ...] = ("accuracy",)
    """Metric names from METRICS; the first one is the task's headline number."""
    symmetric: bool = False
    """Pair tasks whose label does not depend on sentence order: the training set is doubled with
    the sentences swapped (BAM_SPEC.md, "Sentence-order doubling"). MRPC and STS-B, not QQP."""
    splits: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Split name -> file path: relative to the GLUE data folder for GLUE tasks, absolute for
    user tasks. Treat as read-only."""
    eval_splits: tuple[str, ...] = ("dev",)
    """Labelled splits that are evaluated (MNLI: matched and mismatched dev)."""
    test_splits: tuple[str, ...] = ("test",)
    """Unlabelled splits that get predictions (and GLUE submission files)."""
    submission_names: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Test split -> submission file stem ("CoLA" -> CoLA.tsv; MNLI: "MNLI-m", "MNLI-mm")."""
    head_task: str | None = None
    """Task whose head predicts this one; only AX, which is predicted with the MNLI head."""
    display_name: str = ""
    """Human spelling for reports: "CoLA", "SST-2", ..."""
    is_pair: bool = False
    """Whether examples have two texts."""
    format: str = "glue"
    """File format: "glue" (fixed GLUE layouts) or, for user tasks, "csv", "tsv" or "jsonl"."""
    text_columns: tuple[Column, ...] = ()
    """User tasks: the one or two text columns (names, or 0-based indices when header=False)."""
    label_column: Column | None = None
    """User tasks: the column holding the label (not read for test splits)."""
    id_column: Column | None = None
    """User tasks: a column of unique ids; without one, examples are keyed by row number."""
    header: bool = True
    """User csv/tsv tasks: whether the first line names the columns."""
    source: str = ""
    """Where the spec came from (the task YAML path), quoted in error messages."""
    dataset: str = ""
    """Formats "disk" and "hub": the `save_to_disk` folder or the hub id; `splits` then maps each
    split to the dataset's own split name ("dev" -> "validation")."""
    dataset_config: str | None = None
    """Format "hub": the dataset's configuration name ("mrpc" of nyu-mll/glue), if it has any."""
    numbered_splits: tuple[str, ...] = ()
    """Splits keyed by 1-based row number even though `id_column` is set. GLUE from Parquet or
    the hub only: the TSV files of CoLA, SST-2 and MRPC number their train/dev rows while the
    hub's `idx` counts from 0, so both sources give the same example ids."""

    def __post_init__(self) -> None:
        # Coerce containers so specs built from JSON or YAML (lists) equal the built-in ones
        # (tuples), and so a caller's dict is not shared with the spec.
        set_ = object.__setattr__
        set_(self, "label_names", tuple(self.label_names))
        set_(self, "metrics", tuple(self.metrics))
        set_(self, "eval_splits", tuple(self.eval_splits))
        set_(self, "test_splits", tuple(self.test_splits))
        set_(self, "text_columns", tuple(self.text_columns))
        set_(self, "numbered_splits", tuple(self.numbered_splits))
        set_(self, "splits", dict(self.splits))
        set_(self, "submission_names", dict(self.submission_names))
        if len(self.regression_range) != 2:
            raise ConfigError(
                f"task {self.name!r}: regression_range must be two numbers [lo, hi], "
                f"got {list(self.regression_range)}."
            )
        set_(self, "regression_range", tuple(float(v) for v in self.regression_range))
        self._validate()

    def _validate(self) -> None:
        """Reject specs that would fail later in a confusing place."""
        where = f"task {self.name!r}"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            rule = "use lower-case letters, digits and underscores, starting with a letter"
            raise SpecError(
                f"task name {self.name!r} is not allowed: {rule} (e.g. 'my_task').",
                f"key 'name': {excerpt(self.name)} is not allowed; {rule} (e.g. 'my_task').",
            )
        if self.kind not in ("classification", "regression"):
            raise ConfigError(
                f"{where}: kind must be 'classification' or 'regression', got {self.kind!r}."
            )
        if self.kind == "classification":
            if len(self.label_names) < 2:
                got = f"must list at least two labels, got {list(self.label_names)}."
                raise SpecError(f"{where}: label_names {got}", f"key 'label_names': {got}")
            if len(set(self.label_names)) != len(self.label_names):
                raise ConfigError(f"{where}: label_names has duplicates: {list(self.label_names)}.")
            if any(not isinstance(n, str) or not n.strip() for n in self.label_names):
                raise ConfigError(
                    f"{where}: label_names must be non-empty strings, got {list(self.label_names)}."
                )
            allowed = CLASSIFICATION_METRICS
        else:
            if self.label_names:
                raise ConfigError(
                    f"{where}: a regression task has no label_names, got "
                    f"{list(self.label_names)}; drop them or make the task a classification."
                )
            allowed = REGRESSION_METRICS
        lo, hi = self.regression_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(
                f"{where}: regression_range must be two finite numbers with lo < hi, "
                f"got {list(self.regression_range)}."
            )
        if not self.metrics:
            raise ConfigError(f"{where}: metrics is empty; name at least one of {list(allowed)}.")
        for metric in self.metrics:
            if metric not in allowed:
                raise SpecError(
                    f"{where}: metric {metric!r} does not apply to a {self.kind} task; "
                    f"choose from {list(allowed)}.",
                    f"key 'metrics': {excerpt(metric)} does not apply to a {self.kind} task; "
                    f"choose from {', '.join(allowed)}.",
                )
        if self.symmetric and not self.is_pair:
            raise SpecError(
                f"{where}: symmetric=True only applies to sentence-pair tasks (is_pair=True).",
                "key 'symmetric': only applies to sentence-pair tasks (two text_columns).",
            )
        if self.splits:
            for key in ("eval_splits", "test_splits"):
                missing = [s for s in getattr(self, key) if s not in self.splits]
                if missing:
                    raise ConfigError(
                        f"{where}: {key} names {missing}, which are not in splits "
                        f"{list(self.splits)}."
                    )
        extra = [s for s in self.submission_names if s not in self.test_splits]
        if extra:
            raise ConfigError(
                f"{where}: submission_names has {extra}, which are not test_splits "
                f"{list(self.test_splits)}."
            )
        if self.format not in FORMATS:
            raise ConfigError(
                f"{where}: format must be one of {list(FORMATS)}, got {self.format!r}."
            )
        if self.format != "glue":
            self._validate_columns(where)

    def _validate_columns(self, where: str) -> None:
        """User tasks: the column settings must match the format and the pair flag."""
        if len(self.text_columns) not in (1, 2):
            raise SpecError(
                f"{where}: text_columns must name one column (single sentence) or two "
                f"(sentence pair), got {list(self.text_columns)}.",
                f"key 'text_columns': {_TEXT_COLUMNS_SHAPE}, got {list(self.text_columns)}.",
            )
        if self.is_pair != (len(self.text_columns) == 2):
            raise ConfigError(
                f"{where}: is_pair={self.is_pair} but text_columns has "
                f"{len(self.text_columns)} column(s)."
            )
        labelled = [s for s in self.splits if s not in self.test_splits]
        if labelled and self.label_column is None:
            raise SpecError(
                f"{where}: label_column is required because splits {labelled} carry labels.",
                f"missing required key 'label_column' (splits {labelled} carry labels).",
            )
        if self.format in ("jsonl", *TABLE_FORMATS) and not self.header:
            raise ConfigError(f"{where}: header=False only applies to csv and tsv files.")
        if self.format in ("disk", "hub") and not self.dataset:
            raise ConfigError(
                f"{where}: format {self.format!r} needs dataset (a save_to_disk folder or a hub "
                "id)."
            )
        by_index = not self.header
        header_name = "column name from the header"
        what = {"jsonl": "JSON key", "csv": header_name, "tsv": header_name}.get(
            self.format, "column name"
        )
        columns: list[tuple[str, Column | None]] = [("text_columns", c) for c in self.text_columns]
        columns += [("label_column", self.label_column), ("id_column", self.id_column)]
        for key, col in columns:
            if col is None:
                continue
            if by_index and (isinstance(col, bool) or not isinstance(col, int) or col < 0):
                raise SpecError(
                    f"{where}: with header=False, columns are 0-based numbers, got {col!r}.",
                    f"key {key!r}: with header: false, columns are 0-based numbers, "
                    f"got {excerpt(col)}.",
                )
            if not by_index and (not isinstance(col, str) or not col):
                raise SpecError(
                    f"{where}: columns must be names (header columns or JSON keys), got {col!r}.",
                    f"key {key!r}: must be a {what}, got {excerpt(col)}.",
                )

    @property
    def num_outputs(self) -> int:
        """Width of the task's head: one logit per class, or one scalar for regression."""
        return len(self.label_names) if self.kind == "classification" else 1

    def scale_label(self, y: Value) -> Value:
        """Map a raw regression value to the [0, 1] training scale: (y - lo) / (hi - lo)."""
        lo, hi = self._range()
        return (y - lo) / (hi - lo)

    def unscale(self, p: float) -> float:
        """Inverse of `scale_label`: a [0, 1] prediction back to the task's own scale."""
        lo, hi = self._range()
        return lo + p * (hi - lo)

    def _range(self) -> tuple[float, float]:
        if self.kind != "regression":
            raise ValueError(f"task {self.name!r} is a classification task; it has no scale.")
        return self.regression_range

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, dicts, plain scalars); `from_dict` inverts it exactly."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        """Rebuild a spec from `to_dict` output (e.g. a saved model config)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"task spec has unknown keys {unknown}; known keys are {sorted(known)}. "
                f"Was it written by a newer bamkd?"
            )
        for key in ("name", "kind"):
            if key not in d:
                raise ConfigError(f"task spec is missing the key {key!r}.")
        return cls(**dict(d))


def _glue(
    name: str,
    display: str,
    folder: str,
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    *,
    pair: bool,
    symmetric: bool = False,
) -> TaskSpec:
    """One GLUE row with the usual train/dev/test files in `folder`."""
    return TaskSpec(
        name=name,
        kind="classification" if labels else "regression",
        label_names=labels,
        metrics=metrics,
        symmetric=symmetric,
        splits={s: f"{folder}/{s}.tsv" for s in ("train", "dev", "test")},
        submission_names={"test": display},
        display_name=display,
        is_pair=pair,
    )


_BINARY = ("0", "1")
_NLI3 = ("contradiction", "entailment", "neutral")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("cola", "CoLA", "CoLA", _BINARY, ("mcc",), pair=False),
        _glue("sst2", "SST-2", "SST-2", _BINARY, ("accuracy",), pair=False),
        _glue("mrpc", "MRPC", "MRPC", _BINARY, ("f1", "accuracy"), pair=True, symmetric=True),
        _glue("stsb", "STS-B", "STS-B", (), ("pearson", "spearman"), pair=True, symmetric=True),
        _glue("qqp", "QQP", "QQP", _BINARY, ("f1", "accuracy"), pair=True),
        TaskSpec(
            name="mnli",
            kind="classification",
            label_names=_NLI3,
            metrics=("accuracy",),
            splits={
                s: f"MNLI/{s}.tsv"
                for s in (
                    "train",
                    "dev_matched",
                    "dev_mismatched",
                    "test_matched",
                    "test_mismatched",
                )
            },
            eval_splits=("dev_matched", "dev_mismatched"),
            test_splits=("test_matched", "test_mismatched"),
            submission_names={"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"},
            display_name="MNLI",
            is_pair=True,
        ),
        _glue("qnli", "QNLI", "QNLI", _NLI2, ("accuracy",), pair=True),
        _glue("rte", "RTE", "RTE", _NLI2, ("accuracy",), pair=True),
        _glue("wnli", "WNLI", "WNLI", _BINARY, ("accuracy",), pair=True),
        # The diagnostic set has no training data and no head of its own: it is scored by the
        # GLUE server from predictions of the MNLI head.
        TaskSpec(
            name="ax",
            kind="classification",
            label_names=_NLI3,
            metrics=("accuracy",),
            splits={"test": "diagnostic/diagnostic.tsv"},
            eval_splits=(),
            test_splits=("test",),
            submission_names={"test": "AX"},
            head_task="mnli",
            display_name="AX",
            is_pair=True,
        ),
    )
}


def _normalise(name: str) -> str:
    """Fold case and drop '-', '_' and spaces, so 'SST-2', 'sst_2' and 'sst2' meet."""
    return re.sub(r"[\s_\-]", "", name.strip().lower())


_GLUE_ALIASES: dict[str, str] = {
    **{_normalise(s.display_name): s.name for s in GLUE_TASKS.values()},
    **{_normalise(s.name): s.name for s in GLUE_TASKS.values()},
    "diagnostic": "ax",
}


GLUE_SOURCES = ("tsv", "parquet", "hub")
"""Where GLUE tasks are read from (data.glue_source): the GLUE download's TSV folder, a folder of
Parquet files in the hub's nyu-mll/glue layout (<dir>/<config>/<split>-*.parquet), or the hub."""
GLUE_HUB_ID = "nyu-mll/glue"

# The hub's GLUE dataset: task -> (configuration, text columns). Every configuration has an
# `idx` column (0, 1, ... per split) and a `label` column (ClassLabel ids; -1 in test splits).
_GLUE_HUB_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cola": ("cola", ("sentence",)),
    "sst2": ("sst2", ("sentence",)),
    "mrpc": ("mrpc", ("sentence1", "sentence2")),
    "stsb": ("stsb", ("sentence1", "sentence2")),
    "qqp": ("qqp", ("question1", "question2")),
    "mnli": ("mnli", ("premise", "hypothesis")),
    "qnli": ("qnli", ("question", "sentence")),
    "rte": ("rte", ("sentence1", "sentence2")),
    "wnli": ("wnli", ("sentence1", "sentence2")),
    "ax": ("ax", ("premise", "hypothesis")),
}
_GLUE_HUB_SPLITS = {
    "train": "train",
    "dev": "validation",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
    "test": "test",
    "test_matched": "test_matched",
    "test_mismatched": "test_mismatched",
}
# TSV train/dev files without an id column: bamkd numbers their rows from 1 (readers.py).
_GLUE_NUMBERED = {"cola", "sst2", "mrpc"}


def glue_task(name: str, source: str = "tsv", dataset: str = GLUE_HUB_ID) -> TaskSpec:
    """The GLUE task `name` as read from `source` (one of GLUE_SOURCES).

    "parquet" reads `<data_dir>/<config>/<hub split>-*.parquet` (a local copy of the hub's
    nyu-mll/glue repository); "hub" loads `dataset` with Hugging Face `datasets`. Labels, metrics,
    split names and example ids stay those of the TSV layout: a ClassLabel id maps to the label
    of the same name (MNLI, QNLI, RTE) or else to the label of the same number (the 0/1 tasks),
    and ids are `idx` (`idx + 1` where the TSV files number their rows), so dev metrics and
    teacher outputs carry over. Two exceptions: QQP's TSV keys train/dev rows by its pair id,
    which the hub drops, so QQP train/dev ids differ between the sources; and the hub stores
    STS-B scores as float32, so the few TSV scores written with more digits (14 of 5,749 train
    rows, 1 of 1,500 dev rows, e.g. 2.11111111111111) read as their float32 value (2.1111112):
    the same training targets and metrics (bamkd trains on float32), but teacher outputs made
    from one source are refused for those rows from the other.
    """
    spec = GLUE_TASKS[_GLUE_ALIASES.get(_normalise(name), name)]
    if source == "tsv":
        return spec
    if source not in GLUE_SOURCES:
        raise ConfigError(
            f"data.glue_source must be one of {', '.join(GLUE_SOURCES)}, got {excerpt(source)}."
        )
    config, texts = _GLUE_HUB_COLUMNS[spec.name]
    hub_splits = {s: _GLUE_HUB_SPLITS[s] for s in spec.splits}
    if source == "parquet":
        splits = {s: f"{config}/{h}-*.parquet" for s, h in hub_splits.items()}
    else:
        splits = hub_splits
    numbered = ("train", "dev") if spec.name in _GLUE_NUMBERED else ()
    return replace(
        spec,
        splits=splits,
        format=source,
        text_columns=texts,
        label_column="label",
        id_column="idx",
        dataset=dataset if source == "hub" else "",
        dataset_config=config if source == "hub" else None,
        numbered_splits=numbered,
        source=f"data.glue_source={source}",
    )


def get_task(name: str, *, user_tasks: Mapping[str, TaskSpec] | None = None) -> TaskSpec:
    """Look a task up by name: GLUE tasks in any common spelling, then the user's tasks.

    Args:
        name: "SST-2", "sst-2", "sst2", "STS-B", "MNLI", "diagnostic", or a user task's name.
        user_tasks: user-defined tasks by name (from `load_task_yaml`).

    Raises:
        ConfigError: the name is unknown (the message lists the known names), or a user task
            clashes with a GLUE task.
    """
    user = dict(user_tasks or {})
    for key in user:
        if _normalise(key) in _GLUE_ALIASES:
            raise ConfigError(
                f"user task {key!r} has the name of GLUE task "
                f"{_GLUE_ALIASES[_normalise(key)]!r}; rename it in its task YAML."
            )
    key = _normalise(str(name))
    if key in _GLUE_ALIASES:
        return GLUE_TASKS[_GLUE_ALIASES[key]]
    for user_name, spec in user.items():
        if _normalise(user_name) == key:
            return spec
    known = ", ".join(GLUE_TASKS)
    if user:
        known += "; user tasks: " + ", ".join(user)
    raise ConfigError(
        f"unknown task {name!r}. Known tasks: {known}. GLUE names may be spelled as in the "
        f"GLUE download, in any case ('SST-2', 'sts-b'); define other tasks in a task YAML file."
    )


# Keys of a task YAML file. Order matters only for the error message that lists them.
_YAML_KEYS = (
    "name",
    "format",
    "files",
    "text_columns",
    "label_column",
    "id_column",
    "header",
    "label_names",
    "regression_range",
    "metrics",
    "symmetric",
    "display_name",
    "dataset",
    "config",
    "splits",
)


def load_task_yaml(path: str | Path) -> TaskSpec:
    """Read a user-defined task from a YAML file.

    Example file (paths are relative to the YAML file)::

        name: paraphrase
        format: csv                 # csv | tsv | jsonl | parquet | disk | hub
        files: {train: data/train.csv, dev: data/dev.csv, test: data/test.csv}
        text_columns: [question1, question2]   # one column, or two for sentence pairs
        label_column: label
        id_column: id               # optional; rows are numbered otherwise
        header: true                # csv/tsv; false -> columns are 0-based numbers
        label_names: [different, same]         # classification, in class-index order
        # regression_range: [0, 5]  # instead of label_names, for a regression task
        metrics: [f1, accuracy]     # optional
        symmetric: true             # optional, pair tasks: train on both sentence orders

    Tables (the optional [datasets] extra) use the same keys with ``format: parquet`` (files are
    Parquet files, folders or globs), ``format: disk`` (``dataset:`` a `save_to_disk` folder,
    ``splits:`` its split names) or ``format: hub`` (``dataset:`` a hub id, ``config:``,
    ``splits:``). Their label_names may be left out when the label column is a ClassLabel.

    Split "train" is trained on, "test" is unlabelled (predicted only), and every other split
    is a labelled evaluation split.

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    path = Path(path)
    doc = _read_task_document(path)
    _check_task_keys(path, doc)
    fail = _failer(path)
    name = doc["name"]
    # The spelling of a name is a TaskSpec rule, checked when the spec is built; a well-spelt
    # name must not be a GLUE task's too.
    if isinstance(name, str) and _NAME_RE.match(name) and _normalise(name) in _GLUE_ALIASES:
        raise fail("name", f"{excerpt(name)} is a GLUE task name; choose another name.")
    fmt = doc["format"]
    if fmt not in USER_FORMATS:
        raise fail("format", f"must be one of {', '.join(USER_FORMATS)}, got {excerpt(fmt)}.")
    header = doc.get("header", True)
    if not isinstance(header, bool):
        raise fail("header", f"must be true or false, got {excerpt(header)}.")
    if fmt not in ("csv", "tsv") and "header" in doc:
        raise fail("header", f"only applies to csv and tsv files; remove it for {fmt}.")
    source = _task_source(path, doc, fmt)

    # Columns: their count, their kind (names or numbers) and whether a label column is needed
    # are TaskSpec rules, checked when the spec is built below.
    text_columns = doc["text_columns"]
    if not isinstance(text_columns, list):
        raise fail("text_columns", f"{_TEXT_COLUMNS_SHAPE}, got {excerpt(text_columns)}.")
    texts = tuple(text_columns)
    kind, label_names, regression_range = _task_labels(path, doc, fmt, source)
    metrics = doc.get(
        "metrics", ["accuracy"] if kind == "classification" else ["pearson", "spearman"]
    )
    allowed = CLASSIFICATION_METRICS if kind == "classification" else REGRESSION_METRICS
    if not isinstance(metrics, list) or not metrics:  # which ones apply is a TaskSpec rule
        raise fail("metrics", f"must be a list of metric names from {', '.join(allowed)}.")
    symmetric = doc.get("symmetric", False)
    if not isinstance(symmetric, bool):
        raise fail("symmetric", f"must be true or false, got {excerpt(symmetric)}.")
    display_name = doc.get("display_name", name)
    if not isinstance(display_name, str) or not display_name:
        raise fail("display_name", f"must be a non-empty string, got {excerpt(display_name)}.")

    splits = source.splits
    try:
        return TaskSpec(
            name=name,
            kind=kind,
            label_names=label_names,
            regression_range=regression_range,
            metrics=tuple(metrics),
            symmetric=symmetric,
            splits=splits,
            eval_splits=tuple(s for s in splits if s not in ("train", "test")),
            test_splits=("test",) if "test" in splits else (),
            submission_names={"test": display_name} if "test" in splits else {},
            display_name=display_name,
            is_pair=len(texts) == 2,
            format=fmt,
            text_columns=texts,
            label_column=doc.get("label_column"),
            id_column=doc.get("id_column"),
            header=header,
            source=str(path.resolve()),
            dataset=source.dataset,
            dataset_config=source.dataset_config,
        )
    except SpecError as e:
        raise ConfigError(f"{path}: {e.in_file}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _failer(path: Path) -> Callable[[str, str], ConfigError]:
    """The error for a task file's key: ``<file>: key '<key>': <problem>``."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: key {excerpt(key)}: {problem}")

    return fail


def _read_task_document(path: Path) -> dict:
    """The task file's YAML mapping; a ConfigError naming the file (and line) otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: task file not found.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the task file ({e}).") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else f"{path}"
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: not valid YAML ({problem}).") from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{path}: a task file must be a YAML mapping with keys such as name, format, files."
        )
    return doc


def _check_task_keys(path: Path, doc: dict) -> None:
    """No unknown key (with the closest known one suggested), every required key present."""
    for key in doc:
        if key not in _YAML_KEYS:
            close = difflib.get_close_matches(str(key), _YAML_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}: unknown key {excerpt(key)}.{hint} Allowed keys: {', '.join(_YAML_KEYS)}."
            )
    # Files for file formats, splits for datasets; the wrong one of the two is named later.
    listing = "splits" if doc.get("format") in ("disk", "hub") else "files"
    for key in ("name", "format", listing, "text_columns"):
        if key not in doc and not (key == listing and {"files", "splits"} & set(doc)):
            raise ConfigError(f"{path}: missing required key {excerpt(key)}.")


@dataclass(frozen=True)
class _TaskSource:
    """Where a task file's rows come from: a path (or dataset split name) per split."""

    splits: dict[str, str]
    dataset: str = ""
    dataset_config: str | None = None


def _task_source(path: Path, doc: dict, fmt: str) -> _TaskSource:
    """The splits of a task file: paths for file formats (csv, tsv, jsonl, parquet), relative
    to the file; split names of a dataset for disk and hub, with the dataset (and config)."""
    fail = _failer(path)
    by_dataset = fmt in ("disk", "hub")
    list_key, wrong_key = ("splits", "files") if by_dataset else ("files", "splits")
    if wrong_key in doc:
        raise fail(
            wrong_key,
            f"does not apply to format {fmt}; use {list_key}: "
            + (
                "{train: train, dev: validation} (the dataset's split names)."
                if by_dataset
                else "{train: train." + ("parquet" if fmt == "parquet" else fmt) + "}."
            ),
        )
    for key in ("dataset", "config"):
        if key in doc and not by_dataset:
            raise fail(key, f"only applies to formats disk and hub; remove it for {fmt}.")
    if "config" in doc and fmt != "hub":
        raise fail("config", "only applies to format hub (a dataset configuration name).")
    if list_key not in doc:
        raise ConfigError(f"{path}: missing required key {excerpt(list_key)}.")
    files = doc[list_key]
    if not isinstance(files, dict) or not files:
        example = "{train: train, dev: validation}" if by_dataset else "{train: train.csv}"
        raise fail(list_key, f"must map split names to {list_key}, e.g. {example}.")
    splits: dict[str, str] = {}
    for split, file in files.items():
        if not isinstance(split, str) or not _NAME_RE.match(split):
            raise fail(
                list_key,
                f"split name {excerpt(split)} is not allowed; use lower-case letters, digits and "
                f"underscores (train, dev, test, ...).",
            )
        if not isinstance(file, str) or not file:
            what = "the dataset's split name" if by_dataset else "a file path"
            raise fail(list_key, f"{list_key}.{split} must be {what}, got {excerpt(file)}.")
        # Relative paths are relative to the YAML file, so a task folder can move as a whole.
        splits[split] = file if by_dataset else str((path.parent / file).resolve())
    if not by_dataset:
        return _TaskSource(splits)
    given = doc.get("dataset")
    if not isinstance(given, str) or not given:
        what = "a save_to_disk folder" if fmt == "disk" else "a hub id such as 'imdb'"
        raise fail("dataset", f"format {fmt} needs dataset: {what}, got {excerpt(given)}.")
    dataset_config = doc.get("config")
    if dataset_config is not None and (not isinstance(dataset_config, str) or not dataset_config):
        raise fail(
            "config", f"must be the dataset's configuration name, got {excerpt(dataset_config)}."
        )
    dataset = str((path.parent / given).resolve()) if fmt == "disk" else given
    return _TaskSource(splits, dataset, dataset_config)


def _task_labels(
    path: Path, doc: dict, fmt: str, source: _TaskSource
) -> tuple[TaskKind, tuple[str, ...], tuple[float, float]]:
    """The task's kind with its label names (classification) or value range (regression).

    A table's ClassLabel label column names its classes when the file gives neither.
    """
    fail = _failer(path)
    label_column = doc.get("label_column")
    has_labels, has_range = "label_names" in doc, "regression_range" in doc
    inferred: list[str] | None = None
    if not has_labels and not has_range and fmt in TABLE_FORMATS and label_column is not None:
        from bamkd.tasks.tables import class_label_names

        labelled = [s for s in source.splits if s != "test"]
        if labelled:
            split = "train" if "train" in source.splits else labelled[0]
            inferred = class_label_names(
                fmt,
                source.splits[split],
                str(label_column),
                dataset=source.dataset,
                config=source.dataset_config,
            )
        if inferred is not None:
            doc = {**doc, "label_names": inferred}
            has_labels = True
    if has_labels == has_range:
        raise ConfigError(
            f"{path}: give exactly one of 'label_names' (a classification task) or "
            f"'regression_range' (a regression task)"
            + (
                "; a ClassLabel label column supplies label_names by itself, this one has none."
                if fmt in TABLE_FORMATS and not has_labels
                else "."
            )
        )
    if not has_labels:
        raw = doc["regression_range"]
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw)
        ):
            raise fail("regression_range", f"must be two numbers [lo, hi], got {excerpt(raw)}.")
        return "regression", (), (float(raw[0]), float(raw[1]))
    raw = doc["label_names"]
    if not isinstance(raw, list):  # how many is a TaskSpec rule
        raise fail("label_names", f"must list at least two labels, got {excerpt(raw)}.")
    names = []
    for value in raw:
        # YAML reads yes/no/true/false as booleans; str(True) would silently become "True".
        if isinstance(value, bool):
            raise fail(
                "label_names",
                f"a label was read as the YAML boolean {str(value).lower()}; quote labels "
                f'such as yes, no, on, off, true, false, e.g. ["no", "yes"].',
            )
        if not isinstance(value, str | int):
            raise fail("label_names", f"labels must be strings, got {excerpt(value)}.")
        names.append(str(value))
    return "classification", tuple(names), (0.0, 5.0)
