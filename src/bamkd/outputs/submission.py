"""GLUE test-set submission files: one TSV per task and the zip the GLUE server accepts.

The original BAM code had no submission writer (BAM_SPEC.md, "Traps"). The GLUE server expects a
zip whose root holds ``<Task>.tsv`` files with an ``index`` and a ``prediction`` column, the
prediction being the label string for classification and the score for STS-B. This module turns
test-set predictions into exactly that, and reports which of the official files are missing rather
than inventing them. Files are written atomically so an interrupted run never leaves a half file
that looks complete.

`submit` predicts the test sets with finished runs (through `bamkd.evaluate.LoadedRun`) and
writes the files; `write_submission` writes them from predictions made elsewhere.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bamkd.data import load_encoded
from bamkd.errors import BamkdError, ConfigError, DataError
from bamkd.evaluate import LoadedRun, to_predictions
from bamkd.runtime.storage import atomic_path, write_text
from bamkd.tasks import GLUE_TASKS, TaskSpec, glue_task, read_split

logger = logging.getLogger(__name__)

# The full set of files a GLUE submission contains, in the leaderboard's column order.
GLUE_SUBMISSION_NAMES: tuple[str, ...] = (
    "CoLA",
    "SST-2",
    "MRPC",
    "STS-B",
    "QQP",
    "MNLI-m",
    "MNLI-mm",
    "QNLI",
    "RTE",
    "WNLI",
    "AX",
)

WNLI_POLICIES: tuple[str, ...] = ("majority", "model", "skip")
ARCHIVE_NAME = "submission.zip"
_WNLI = "wnli"
_HEADER = "index\tprediction\n"


@dataclass
class SubmissionReport:
    """What ``write_submission`` wrote, and which official GLUE files are still missing."""

    written: list[str]
    """File names written (``"CoLA.tsv"``, ...), official ones first in leaderboard order."""
    missing: list[str]
    """Official GLUE file names that were not written; the server expects all of them."""
    archive: Path
    """The zip holding every written file at its root."""
    notes: list[str] = field(default_factory=list)
    """Remarks a reader should see, such as how WNLI was filled in."""

    def summary(self) -> str:
        """A few plain lines for logs and the experiment report."""
        official = sum(1 for name in self.written if name[: -len(".tsv")] in GLUE_SUBMISSION_NAMES)
        lines = [
            f"GLUE submission: {official} of {len(GLUE_SUBMISSION_NAMES)} official files"
            f" in {self.archive}",
            "written: " + (", ".join(self.written) if self.written else "none"),
            "missing: " + (", ".join(self.missing) if self.missing else "none"),
        ]
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Table:
    """One submission file's content, checked and ready to write."""

    task: str
    stem: str
    indices: list[int]
    values: list[str]


def _parse_indices(task: str, split: str, ids: Sequence[str]) -> list[int]:
    # Example ids look like "mrpc:test:17"; the part after the last ':' is GLUE's `index` column.
    indices: list[int] = []
    for example_id in ids:
        tail = str(example_id).rsplit(":", 1)[-1]
        try:
            indices.append(int(tail))
        except ValueError:
            raise DataError(
                f"{task}/{split}: example id {example_id!r} does not end in an integer GLUE index"
            ) from None
    if len(set(indices)) != len(indices):
        raise DataError(f"{task}/{split}: example ids repeat a GLUE index")
    return indices


def _format_values(task: str, spec: TaskSpec, values: np.ndarray) -> list[str]:
    if values.ndim != 1:
        raise DataError(
            f"{task}: predictions must be 1-D (class indices or scores), got shape {values.shape}"
        )
    if spec.kind == "regression":
        scores = values.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise DataError(f"{task}: regression predictions contain NaN or inf")
        low, high = spec.regression_range
        # GLUE scores STS-B on [0, 5]; a raw head can overshoot, and the range is the contract.
        clipped = np.clip(scores, low, high)
        return [f"{score:.3f}" for score in clipped]

    label_names = tuple(spec.label_names)
    if not label_names:
        raise ConfigError(f"{task}: classification task has no label_names to write")
    is_integral = np.issubdtype(values.dtype, np.integer) or (
        np.issubdtype(values.dtype, np.floating)
        and bool(np.all(np.isfinite(values)))
        and bool(np.all(values == np.round(values)))
    )
    if not is_integral:
        raise DataError(
            f"{task}: classification predictions must be class indices, got dtype {values.dtype}"
            " with non-integer values"
        )
    classes = values.astype(np.int64)
    out_of_range = (classes < 0) | (classes >= len(label_names))
    if np.any(out_of_range):
        bad = sorted(set(classes[out_of_range].tolist()))
        raise DataError(
            f"{task}: class indices {bad} are outside 0..{len(label_names) - 1} ({label_names})"
        )
    return [label_names[index] for index in classes.tolist()]


def _build_table(
    task: str, split: str, spec: TaskSpec, values: np.ndarray, ids: Sequence[str]
) -> _Table:
    submission_names = dict(spec.submission_names)
    if split not in submission_names:
        raise DataError(
            f"{task}: split {split!r} has no submission file; known test splits are"
            f" {sorted(submission_names)}"
        )
    if len(ids) != values.shape[0]:
        raise DataError(f"{task}/{split}: {values.shape[0]} predictions but {len(ids)} example ids")
    indices = _parse_indices(task, split, ids)
    formatted = _format_values(task, spec, values)
    order = sorted(range(len(indices)), key=indices.__getitem__)
    return _Table(
        task=task,
        stem=submission_names[split],
        indices=[indices[i] for i in order],
        values=[formatted[i] for i in order],
    )


def _write_archive(archive: Path, files: Sequence[Path]) -> None:
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in files:
            # The GLUE server reads the files at the archive root, not inside a folder.
            bundle.write(path, arcname=path.name)


def _wnli_majority_table(
    spec: TaskSpec,
    ids: Sequence[str],
    majority_label: int | None,
) -> _Table:
    if majority_label is None:
        raise ConfigError(
            "wnli_policy='majority' needs wnli_majority_label (the most frequent WNLI training"
            " class index); pass it, or choose wnli_policy='model' or 'skip'"
        )
    split = spec.test_splits[0]
    constant = np.full(len(ids), majority_label, dtype=np.int64)
    return _build_table(_WNLI, split, spec, constant, ids)


def write_submission(
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    specs: Mapping[str, TaskSpec],
    out_dir: Path,
    *,
    wnli_policy: str = "majority",
    wnli_majority_label: int | None = None,
    example_ids: Mapping[str, Mapping[str, Sequence[str]]],
) -> SubmissionReport:
    """Write GLUE submission TSVs and ``submission.zip`` from test-set predictions.

    Each file is ``<submission_name>.tsv`` with header ``index<TAB>prediction`` and one row per
    example in ascending index order. Classification rows hold the label string
    (``label_names[class]``: "entailment"/"not_entailment" for RTE and QNLI, "0"/"1" for CoLA,
    SST-2, MRPC, QQP, WNLI); regression rows hold the score clipped to the task's
    ``regression_range`` with 3 decimals. MNLI writes ``MNLI-m.tsv`` and ``MNLI-mm.tsv`` from its
    two test splits; AX is written from ``predictions["ax"]["test"]``, which the pipeline predicts
    with the MNLI head.

    Args:
        predictions: ``predictions[task][test_split]``: class indices (classification) or raw
            scores already in the task's ``regression_range`` units (STS-B × 5).
        specs: Task specs by task name; every task in ``predictions`` needs one.
        out_dir: Folder for the TSVs and the zip; created if needed.
        wnli_policy: "majority" writes the majority training class for every WNLI row (the GLUE
            leaderboard's 65.1 on WNLI; models rarely beat it), "model" writes the model's WNLI
            predictions, "skip" writes no WNLI file (it is then reported missing).
        wnli_majority_label: Class index of the most frequent WNLI training label; required when
            the policy is "majority" and WNLI ids are given.
        example_ids: ``example_ids[task][test_split]``: ids aligned with the predictions, such as
            ``"mrpc:test:17"``; the part after the last ':' is GLUE's ``index`` value. Under the
            "majority" policy, WNLI rows come from ``example_ids["wnli"]`` alone.

    Returns:
        A ``SubmissionReport`` naming the files written, the official files missing (never
        invented), and the archive.

    Raises:
        ConfigError: An unknown WNLI policy, a task without a spec, a missing majority label, or
            two tasks writing the same file.
        DataError: Predictions and ids that do not line up, ids without an integer index,
            predictions that are not valid class indices, or non-finite scores.
    """
    if wnli_policy not in WNLI_POLICIES:
        raise ConfigError(f"wnli_policy must be one of {WNLI_POLICIES}, got {wnli_policy!r}")
    # Build and check every table before writing anything, so a bad task leaves no partial set.
    tables = _model_tables(predictions, specs, example_ids, skip_wnli=wnli_policy != "model")
    notes: list[str] = []
    if wnli_policy == "majority":
        table, note = _wnli_majority(specs, example_ids, wnli_majority_label)
        tables += [table] if table is not None else []
        notes += [note] if note else []
    elif wnli_policy == "skip":
        notes.append("WNLI skipped (wnli_policy='skip')")
    stems = [table.stem for table in tables]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise ConfigError(f"several predictions map to the same submission file(s): {duplicates}")
    if not tables:
        raise DataError("no predictions to write: every GLUE submission file would be missing")

    paths = _write_tables(sorted(tables, key=_leaderboard_order), Path(out_dir))
    archive = Path(out_dir) / ARCHIVE_NAME
    _write_archive(archive, paths)
    missing = [f"{stem}.tsv" for stem in GLUE_SUBMISSION_NAMES if stem not in stems]
    if missing:
        logger.warning("GLUE submission is missing %s", ", ".join(missing))
    return SubmissionReport(
        written=[path.name for path in paths], missing=missing, archive=archive, notes=notes
    )


def _model_tables(
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    specs: Mapping[str, TaskSpec],
    example_ids: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    skip_wnli: bool,
) -> list[_Table]:
    """One checked table per task and test split of the model's predictions."""
    tables: list[_Table] = []
    for task, by_split in predictions.items():
        if task == _WNLI and skip_wnli:
            continue
        if task not in specs:
            raise ConfigError(f"no task spec for {task!r}; known specs: {sorted(specs)}")
        task_ids = example_ids.get(task, {})
        for split, values in by_split.items():
            if split not in task_ids:
                raise DataError(f"{task}/{split}: predictions given but no example ids")
            tables.append(
                _build_table(task, split, specs[task], np.asarray(values), task_ids[split])
            )
    return tables


def _wnli_majority(
    specs: Mapping[str, TaskSpec],
    example_ids: Mapping[str, Mapping[str, Sequence[str]]],
    majority_label: int | None,
) -> tuple[_Table | None, str | None]:
    """The WNLI table of the majority policy and its note; (None, None) without WNLI ids."""
    wnli_ids = example_ids.get(_WNLI, {})
    if _WNLI not in specs or not wnli_ids:
        logger.warning("WNLI majority policy: no WNLI spec or test ids given; WNLI not written")
        return None, None
    spec = specs[_WNLI]
    split = spec.test_splits[0]
    if split not in wnli_ids:
        raise DataError(f"wnli: no example ids for test split {split!r}")
    table = _wnli_majority_table(spec, wnli_ids[split], majority_label)
    note = (
        f"WNLI.tsv predicts the majority training class {table.values[0]!r} for every row"
        " (wnli_policy='majority')"
        if table.values
        else "WNLI.tsv is empty: no WNLI test ids"
    )
    return table, note


def _leaderboard_order(table: _Table) -> tuple[int, str]:
    """Official files first, in leaderboard order; user tasks after, by name."""
    if table.stem in GLUE_SUBMISSION_NAMES:
        return (GLUE_SUBMISSION_NAMES.index(table.stem), table.stem)
    return (len(GLUE_SUBMISSION_NAMES), table.stem)


def _write_tables(tables: list[_Table], out_dir: Path) -> list[Path]:
    """One ``<stem>.tsv`` per table (atomic writes); warns of other .tsv files left there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for table in tables:
        path = out_dir / f"{table.stem}.tsv"
        rows = "".join(f"{i}\t{v}\n" for i, v in zip(table.indices, table.values, strict=True))
        write_text(path, _HEADER + rows)
        paths.append(path)
        logger.info("wrote %s (%d rows)", path, len(table.indices))
    written_names = {path.name for path in paths}
    stale = sorted(p.name for p in out_dir.glob("*.tsv") if p.name not in written_names)
    if stale:
        # Left over from an earlier run; they stay on disk but are not put in the archive.
        logger.warning("%s holds other .tsv files not in this submission: %s", out_dir, stale)
    return paths


def submit(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    glue_dir: str | None = None,
    wnli_policy: str = "majority",
) -> SubmissionReport:
    """GLUE test-set submission from one or several runs (each task from the first run with it).

    AX is predicted with the MNLI head when a run has one. The WNLI majority class is read from
    its training file.
    """
    predictions: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, dict[str, list[str]]] = {}
    specs: dict[str, TaskSpec] = {}
    data_dir = glue_dir
    glue: Callable[[str], TaskSpec] | None = None
    for run_dir in runs:
        run = LoadedRun(run_dir)
        data_dir = data_dir or run.cfg.data.glue_dir
        if glue is None:  # GLUE tasks a run lacks (AX, WNLI) come from the first run's source
            d = run.cfg.data
            glue = functools.partial(glue_task, source=d.glue_source, dataset=d.glue_dataset)
        wanted = [n for n in run.specs if n not in predictions]
        if "mnli" in run.specs and "ax" not in predictions:
            wanted.append("ax")
        for name in wanted:
            spec = run.specs.get(name) or glue(name)
            head = spec.head_task or name
            predictions[name], ids[name], specs[name] = {}, {}, spec
            for split in spec.test_splits:
                try:
                    enc = (
                        run.encode(spec, split)
                        if data_dir == run.cfg.data.glue_dir
                        else load_encoded(
                            spec,
                            split,
                            run.tokenizer,
                            run.cfg.data.max_seq_length,
                            data_dir=data_dir,
                            cache_dir=run.cfg.data.cache_dir,
                        )
                    )
                except BamkdError as exc:
                    logger.warning("no test predictions for %s/%s: %s", name, split, exc)
                    continue
                out = run.outputs(enc, head, desc=f"test {name}/{split}")
                predictions[name][split] = to_predictions(spec, out)
                ids[name][split] = enc.ids
            if not predictions[name]:
                del predictions[name], ids[name], specs[name]
    majority = None
    if wnli_policy == "majority":
        wnli = glue("wnli") if glue is not None else GLUE_TASKS["wnli"]
        try:
            labels = [ex.label for ex in read_split(wnli, "train", data_dir)]
            majority = int(np.bincount(np.array(labels, dtype=np.int64)).argmax())
            specs.setdefault("wnli", wnli)
            if "wnli" not in ids:
                test = read_split(wnli, "test", data_dir)
                ids["wnli"] = {"test": [ex.id for ex in test]}
                predictions["wnli"] = {"test": np.full(len(test), majority)}
        except BamkdError as exc:
            logger.warning("WNLI majority class unavailable (%s); WNLI is left out", exc)
            wnli_policy = "skip"
    return write_submission(
        predictions,
        specs,
        Path(out_dir),
        wnli_policy=wnli_policy,
        wnli_majority_label=majority,
        example_ids=ids,
    )
