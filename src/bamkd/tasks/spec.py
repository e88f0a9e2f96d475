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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from bamkd.errors import ConfigError, excerpt

__all__ = [
    "CLASSIFICATION_METRICS",
    "GLUE_TASKS",
    "METRICS",
    "REGRESSION_METRICS",
    "TaskKind",
    "TaskSpec",
    "get_task",
    "load_task_yaml",
]

TaskKind = Literal["classification", "regression"]
Column = str | int  # a column name (files with a header, JSONL keys) or a 0-based index

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1", "mcc")
REGRESSION_METRICS: tuple[str, ...] = ("pearson", "spearman")
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS
# "glue" means: read with the fixed GLUE layouts in readers.py; the others come from task YAMLs.
FORMATS = ("glue", "csv", "tsv", "jsonl")
USER_FORMATS = ("csv", "tsv", "jsonl")

# Task and split names end up inside example ids ("task:split:key") and file names, so they are
# kept to a safe alphabet.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


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

    def __post_init__(self) -> None:
        # Coerce containers so specs built from JSON or YAML (lists) equal the built-in ones
        # (tuples), and so a caller's dict is not shared with the spec.
        set_ = object.__setattr__
        set_(self, "label_names", tuple(self.label_names))
        set_(self, "metrics", tuple(self.metrics))
        set_(self, "eval_splits", tuple(self.eval_splits))
        set_(self, "test_splits", tuple(self.test_splits))
        set_(self, "text_columns", tuple(self.text_columns))
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
            raise ConfigError(
                f"task name {self.name!r} is not allowed: use lower-case letters, digits and "
                f"underscores, starting with a letter (e.g. 'my_task')."
            )
        if self.kind not in ("classification", "regression"):
            raise ConfigError(
                f"{where}: kind must be 'classification' or 'regression', got {self.kind!r}."
            )
        if self.kind == "classification":
            if len(self.label_names) < 2:
                raise ConfigError(
                    f"{where}: label_names must list at least two labels, "
                    f"got {list(self.label_names)}."
                )
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
                raise ConfigError(
                    f"{where}: metric {metric!r} does not apply to a {self.kind} task; "
                    f"choose from {list(allowed)}."
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
            raise ConfigError(
                f"{where}: text_columns must name one column (single sentence) or two "
                f"(sentence pair), got {list(self.text_columns)}."
            )
        if self.is_pair != (len(self.text_columns) == 2):
            raise ConfigError(
                f"{where}: is_pair={self.is_pair} but text_columns has "
                f"{len(self.text_columns)} column(s)."
            )
        labelled = [s for s in self.splits if s not in self.test_splits]
        if labelled and self.label_column is None:
            raise ConfigError(
                f"{where}: label_column is required because splits {labelled} carry labels."
            )
        if self.format == "jsonl" and not self.header:
            raise ConfigError(f"{where}: header=False only applies to csv and tsv files.")
        by_index = not self.header
        for col in [*self.text_columns, self.label_column, self.id_column]:
            if col is None:
                continue
            if by_index and (isinstance(col, bool) or not isinstance(col, int) or col < 0):
                raise ConfigError(
                    f"{where}: with header=False, columns are 0-based numbers, got {col!r}."
                )
            if not by_index and (not isinstance(col, str) or not col):
                raise ConfigError(
                    f"{where}: columns must be names (header columns or JSON keys), got {col!r}."
                )

    @property
    def num_outputs(self) -> int:
        """Width of the task's head: one logit per class, or one scalar for regression."""
        return len(self.label_names) if self.kind == "classification" else 1

    def scale_label(self, y: float) -> float:
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
)


def load_task_yaml(path: str | Path) -> TaskSpec:
    """Read a user-defined task from a YAML file.

    Example file (paths are relative to the YAML file)::

        name: paraphrase
        format: csv                 # csv | tsv | jsonl
        files: {train: data/train.csv, dev: data/dev.csv, test: data/test.csv}
        text_columns: [question1, question2]   # one column, or two for sentence pairs
        label_column: label
        id_column: id               # optional; rows are numbered otherwise
        header: true                # csv/tsv; false -> columns are 0-based numbers
        label_names: [different, same]         # classification, in class-index order
        # regression_range: [0, 5]  # instead of label_names, for a regression task
        metrics: [f1, accuracy]     # optional
        symmetric: true             # optional, pair tasks: train on both sentence orders

    Split "train" is trained on, "test" is unlabelled (predicted only), and every other split
    is a labelled evaluation split.

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    path = Path(path)
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

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: key {excerpt(key)}: {problem}")

    for key in doc:
        if key not in _YAML_KEYS:
            close = difflib.get_close_matches(str(key), _YAML_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}: unknown key {excerpt(key)}.{hint} Allowed keys: {', '.join(_YAML_KEYS)}."
            )
    for key in ("name", "format", "files", "text_columns"):
        if key not in doc:
            raise ConfigError(f"{path}: missing required key {excerpt(key)}.")

    name = doc["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail(
            "name",
            f"{excerpt(name)} is not allowed; use lower-case letters, digits and underscores, "
            f"starting with a letter (e.g. 'my_task').",
        )
    if _normalise(name) in _GLUE_ALIASES:
        raise fail("name", f"{excerpt(name)} is a GLUE task name; choose another name.")

    fmt = doc["format"]
    if fmt not in USER_FORMATS:
        raise fail("format", f"must be one of {', '.join(USER_FORMATS)}, got {excerpt(fmt)}.")

    header = doc.get("header", True)
    if not isinstance(header, bool):
        raise fail("header", f"must be true or false, got {excerpt(header)}.")
    if fmt == "jsonl" and "header" in doc:
        raise fail("header", "only applies to csv and tsv files; remove it for jsonl.")

    files = doc["files"]
    if not isinstance(files, dict) or not files:
        raise fail("files", "must map split names to files, e.g. {train: train.csv}.")
    splits: dict[str, str] = {}
    for split, file in files.items():
        if not isinstance(split, str) or not _NAME_RE.match(split):
            raise fail(
                "files",
                f"split name {excerpt(split)} is not allowed; use lower-case letters, digits and "
                f"underscores (train, dev, test, ...).",
            )
        if not isinstance(file, str) or not file:
            raise fail("files", f"files.{split} must be a file path, got {excerpt(file)}.")
        # Relative paths are relative to the YAML file, so a task folder can move as a whole.
        splits[split] = str((path.parent / file).resolve())

    by_index = fmt != "jsonl" and not header

    def column(key: str, value: Any) -> Column:
        if by_index:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise fail(
                    key,
                    f"with header: false, columns are 0-based numbers, got {excerpt(value)}.",
                )
        elif not isinstance(value, str) or not value:
            what = "JSON key" if fmt == "jsonl" else "column name from the header"
            raise fail(key, f"must be a {what}, got {excerpt(value)}.")
        return value

    text_columns = doc["text_columns"]
    if not isinstance(text_columns, list) or len(text_columns) not in (1, 2):
        raise fail(
            "text_columns",
            "must list one column (single sentence) or two (sentence pair), got "
            f"{excerpt(text_columns)}.",
        )
    texts = tuple(column("text_columns", c) for c in text_columns)
    label_column = doc.get("label_column")
    if label_column is not None:
        label_column = column("label_column", label_column)
    elif any(s != "test" for s in splits):
        raise ConfigError(f"{path}: missing required key 'label_column'.")
    id_column = doc.get("id_column")
    if id_column is not None:
        id_column = column("id_column", id_column)

    has_labels, has_range = "label_names" in doc, "regression_range" in doc
    if has_labels == has_range:
        raise ConfigError(
            f"{path}: give exactly one of 'label_names' (a classification task) or "
            f"'regression_range' (a regression task)."
        )
    label_names: tuple[str, ...] = ()
    regression_range: tuple[float, float] = (0.0, 5.0)
    if has_labels:
        kind: TaskKind = "classification"
        raw = doc["label_names"]
        if not isinstance(raw, list) or len(raw) < 2:
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
        label_names = tuple(names)
    else:
        kind = "regression"
        raw = doc["regression_range"]
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw)
        ):
            raise fail("regression_range", f"must be two numbers [lo, hi], got {excerpt(raw)}.")
        regression_range = (float(raw[0]), float(raw[1]))

    metrics = doc.get(
        "metrics", ["accuracy"] if kind == "classification" else ["pearson", "spearman"]
    )
    allowed = CLASSIFICATION_METRICS if kind == "classification" else REGRESSION_METRICS
    if not isinstance(metrics, list) or not metrics:
        raise fail("metrics", f"must be a list of metric names from {', '.join(allowed)}.")
    for metric in metrics:
        if metric not in allowed:
            raise fail(
                "metrics",
                f"{excerpt(metric)} does not apply to a {kind} task; choose from "
                f"{', '.join(allowed)}.",
            )

    symmetric = doc.get("symmetric", False)
    if not isinstance(symmetric, bool):
        raise fail("symmetric", f"must be true or false, got {excerpt(symmetric)}.")
    if symmetric and len(texts) != 2:
        raise fail("symmetric", "only applies to sentence-pair tasks (two text_columns).")

    display_name = doc.get("display_name", name)
    if not isinstance(display_name, str) or not display_name:
        raise fail("display_name", f"must be a non-empty string, got {excerpt(display_name)}.")

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
            label_column=label_column,
            id_column=id_column,
            header=header,
            source=str(path.resolve()),
        )
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
