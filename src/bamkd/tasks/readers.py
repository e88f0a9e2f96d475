"""Readers that turn task files into `Example`s, with errors a user can act on.

GLUE files are read in their exact published layouts (/work/shared/glue/SOURCES.md describes
them); user tasks are read from CSV, TSV or JSONL as their task YAML says. Any problem in a file
becomes one `DataError` that names the file and line, says what is wrong and how to fix it, so a
bad row is found in seconds rather than surfacing as a crash deep inside training.

Each example gets an id, "task:split:key", that is stable across runs and machines: the key is
the file's own id column when it has one, else the 1-based data row number. Teacher predictions
are stored under these ids (BAM_SPEC.md, "Traps in the original").
"""

from __future__ import annotations

import math
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bamkd.errors import ConfigError, DataError, excerpt, excerpt_list
from bamkd.tasks.records import (
    RecordError,
    check_width,
    delimited_records,
    json_objects,
    json_type,
    no_csv_field_limit,
)
from bamkd.tasks.spec import TABLE_FORMATS, Column, TaskSpec

__all__ = ["Example", "check_split_file", "has_labels", "read_split", "split_path"]


@dataclass(frozen=True, slots=True)
class Example:
    """One input of one task, before tokenization."""

    id: str
    """f"{task}:{split}:{key}", unique within a split and stable across runs."""
    text_a: str
    text_b: str | None
    """The second sentence of a pair task; None for single-sentence tasks."""
    label: int | float | None
    """Class index (classification), raw unscaled value (regression), or None (test splits)."""


@dataclass(frozen=True)
class _Layout:
    """Where the fields of one file live."""

    format: str  # "tsv", "csv" or "jsonl"
    header: bool
    text_columns: tuple[Column, ...]
    label_column: Column | None  # None: the file has no labels
    id_column: Column | None  # None: key examples by row number
    width: int | None = None  # fixed column count of a header-less file (CoLA)


def _tsv(texts: tuple[str, ...], label: str | None, id_: str | None) -> _Layout:
    return _Layout("tsv", True, texts, label, id_)


# The GLUE layouts as (labelled train/dev layout, unlabelled test layout). Columns are read by
# header name wherever the file has a header; only CoLA train/dev lack one.
_GLUE_LAYOUTS: dict[str, tuple[_Layout | None, _Layout]] = {
    "cola": (
        # source, label, original label ("*" or empty), sentence
        _Layout("tsv", False, (3,), 1, None, width=4),
        _tsv(("sentence",), None, "index"),
    ),
    "sst2": (_tsv(("sentence",), "label", None), _tsv(("sentence",), None, "index")),
    # MRPC train/dev carry two sentence ids but no single row id, so rows are numbered.
    "mrpc": (
        _tsv(("#1 String", "#2 String"), "Quality", None),
        _tsv(("#1 String", "#2 String"), None, "index"),
    ),
    "stsb": (
        _tsv(("sentence1", "sentence2"), "score", "index"),
        _tsv(("sentence1", "sentence2"), None, "index"),
    ),
    "qqp": (
        _tsv(("question1", "question2"), "is_duplicate", "id"),
        _tsv(("question1", "question2"), None, "id"),
    ),
    # MNLI train has label1 then gold_label, dev has label1..label5 then gold_label: by name.
    "mnli": (
        _tsv(("sentence1", "sentence2"), "gold_label", "index"),
        _tsv(("sentence1", "sentence2"), None, "index"),
    ),
    "qnli": (
        _tsv(("question", "sentence"), "label", "index"),
        _tsv(("question", "sentence"), None, "index"),
    ),
    "rte": (
        _tsv(("sentence1", "sentence2"), "label", "index"),
        _tsv(("sentence1", "sentence2"), None, "index"),
    ),
    "wnli": (
        _tsv(("sentence1", "sentence2"), "label", "index"),
        _tsv(("sentence1", "sentence2"), None, "index"),
    ),
    "ax": (None, _tsv(("sentence1", "sentence2"), None, "index")),
}


def _check_split(spec: TaskSpec, split: str) -> None:
    if split not in spec.splits:
        raise ConfigError(
            f"task {spec.name!r} has no split {split!r}; its splits are: {', '.join(spec.splits)}."
        )


def has_labels(spec: TaskSpec, split: str) -> bool:
    """Whether `split` of `spec` carries gold labels (test splits do not)."""
    _check_split(spec, split)
    return split not in spec.test_splits


def split_path(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> Path:
    """The file that holds `split` of `spec`.

    GLUE paths are relative to `data_dir` (the standard GLUE download layout, e.g.
    <data_dir>/MRPC/train.tsv, or with data.glue_source=parquet the hub's layout,
    <data_dir>/mrpc/train-*.parquet); user task paths are already absolute. Parquet paths may be
    globs or folders; a `save_to_disk` split is its folder; a hub split gets <id>/<split>, a
    name only (bamkd.tasks.tables.table_location names it properly).

    Raises:
        ConfigError: the task has no such split.
        DataError: a GLUE task without `data_dir`, or a `data_dir` that does not exist.
    """
    _check_split(spec, split)
    if spec.format in ("disk", "hub"):
        # A dataset's split: its save_to_disk folder (a hub split has no local path).
        return Path(spec.dataset) / spec.splits[split]
    rel = Path(spec.splits[split])
    if rel.is_absolute():
        return rel
    if spec.format == "parquet" and spec.source.startswith("data.glue_source"):
        # GLUE from a Parquet copy of the hub's repository: <glue_dir>/<config>/<split>-*.parquet
        hint = f"<glue_dir>/{rel.as_posix()}, the layout of the hub's nyu-mll/glue repository"
        if data_dir is None or not Path(data_dir).is_dir():
            where = f"{data_dir}: folder not found" if data_dir is not None else "no folder"
            raise DataError(
                f"{where}; task {_display(spec)} reads {hint}. Set data.glue_dir to the folder "
                f"that holds {rel.parts[0]}/ (data.glue_source=parquet)."
            )
        return Path(data_dir) / rel
    if spec.format != "glue":
        # A user spec built by hand with a relative path: relative to data_dir, else to cwd.
        return Path(data_dir) / rel if data_dir is not None else rel
    layout_hint = f"<data_dir>/{rel.as_posix()}, the standard GLUE download layout"
    if data_dir is None:
        raise DataError(
            f"task {_display(spec)} is a GLUE task and needs a data folder: expected "
            f"{layout_hint}. Pass data_dir (data.glue_dir in a run config)."
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: GLUE data folder not found. Expected {layout_hint}; set data_dir "
            "(data.glue_dir) to "
            f"the folder that holds {rel.parts[0]}/."
        )
    return data_dir / rel


def check_split_file(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> Path:
    """The file of `split`, checked to exist and, where it has one, its header line to name the
    columns the task reads; no row is read. A run calls this before it creates anything. Raises
    the same errors `read_split` would."""
    if spec.format in TABLE_FORMATS:
        from bamkd.tasks.tables import check_table

        return Path(check_table(spec, split, data_dir))
    path = split_path(spec, split, data_dir)
    reader = _Reader(spec, split, path, _layout(spec, has_labels(spec, split)), data_dir)
    if path.is_file():
        reader.check_header()
        return path
    if path.is_dir():
        raise reader.error(None, "is a folder, not a file", reader.fix_file())
    raise reader.missing()


def read_split(
    spec: TaskSpec, split: str, data_dir: str | Path | None = None, *, limit: int | None = None
) -> list[Example]:
    """Read one split of a task into Examples, in file order.

    Args:
        spec: the task.
        split: a key of `spec.splits` ("train", "dev", "dev_matched", "test", ...).
        data_dir: the GLUE data folder (GLUE tasks only).
        limit: keep only the first `limit` examples (quick runs); None keeps all.

    Raises:
        DataError: a missing, unreadable or malformed file; the message names the file and line
            and says how to fix it.
        ConfigError: an unknown split or a bad `limit`.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive number of examples or None, got {limit!r}.")
    if spec.format in TABLE_FORMATS:
        from bamkd.tasks.tables import read_table_split

        return read_table_split(spec, split, data_dir, limit=limit)
    path = split_path(spec, split, data_dir)
    labelled = has_labels(spec, split)
    layout = _layout(spec, labelled)
    return _Reader(spec, split, path, layout, data_dir).read(limit)


def _layout(spec: TaskSpec, labelled: bool) -> _Layout:
    if spec.format == "glue":
        train_layout, test_layout = _GLUE_LAYOUTS[spec.name]
        if not labelled:
            return test_layout
        assert train_layout is not None, f"GLUE task {spec.name} has no labelled layout"
        return train_layout
    return _Layout(
        spec.format,
        spec.header,
        spec.text_columns,
        spec.label_column if labelled else None,
        spec.id_column,
    )


def _display(spec: TaskSpec) -> str:
    return spec.display_name or spec.name


def _column_name(col: Column | None) -> str:
    """How messages refer to a column: by name, or by its 0-based number."""
    return repr(col) if isinstance(col, str) else f"{col} (0-based)"


class _Reader:
    """Reads one file. Holds the context that every error message needs."""

    def __init__(
        self,
        spec: TaskSpec,
        split: str,
        path: Path,
        layout: _Layout,
        data_dir: str | Path | None,
    ) -> None:
        self.spec, self.split, self.path, self.layout = spec, split, path, layout
        self.glue = spec.format == "glue"
        self.data_dir = data_dir

    # ----- messages -------------------------------------------------------------------------

    def error(self, line: int | None, problem: str, fix: str) -> DataError:
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        return DataError(f"{where}: {problem}. {fix}")

    def fix_file(self) -> str:
        """The generic way out when a whole file is wrong."""
        if self.glue:
            return (
                f"Use the unmodified {_display(self.spec)} file from the GLUE download "
                f"(<data_dir>/{self.spec.splits[self.split]})."
            )
        return f"Fix the file, or change files.{self.split} in {self.spec.source or 'the task'}."

    def fix_setting(self, key: str) -> str:
        """How to fix a user task's column setting (GLUE layouts are not settings)."""
        if self.glue:
            return self.fix_file()
        return f"Set {key} in {self.spec.source or 'the task'} to match the file."

    # ----- reading --------------------------------------------------------------------------

    def read(self, limit: int | None) -> list[Example]:
        try:
            if self.layout.format == "jsonl":
                return self.read_jsonl(limit)
            with no_csv_field_limit():  # only the csv path uses the csv module
                return self.read_delimited(limit)
        except UnicodeDecodeError:
            raise self.bad_utf8() from None

    def lines(self) -> Iterator[tuple[int, str]]:
        """(1-based line number, text without its line break), decoded as UTF-8.

        Text mode with newline=None gives universal newlines (\\n, \\r\\n, \\r) and nothing else,
        so characters such as U+2028 inside a sentence do not split a row; utf-8-sig drops a BOM.
        """
        try:
            f = open(self.path, encoding="utf-8-sig", newline=None)  # noqa: SIM115
        except FileNotFoundError:
            raise self.missing() from None
        except IsADirectoryError:
            raise self.error(None, "is a folder, not a file", self.fix_file()) from None
        except OSError as e:
            raise self.error(
                None, f"cannot read the file ({e.strerror})", self.fix_file()
            ) from None
        with f:
            for number, line in enumerate(f, start=1):
                yield number, line[:-1] if line.endswith("\n") else line

    def missing(self) -> DataError:
        if self.glue:
            rel = self.spec.splits[self.split]
            return DataError(
                f"{self.path}: file not found. Task {_display(self.spec)} reads its "
                f"{self.split} split from <data_dir>/{rel}, the standard GLUE download layout "
                f"(data_dir is {self.data_dir}); download GLUE there or fix data_dir "
                "(data.glue_dir)."
            )
        return DataError(
            f"{self.path}: file not found. Task {self.spec.name!r} reads its {self.split} split "
            f"from this file; fix files.{self.split} in {self.spec.source or 'the task'}."
        )

    def bad_utf8(self) -> DataError:
        """Find the first undecodable byte; only runs after decoding failed, so speed is moot."""
        raw = self.path.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        for number, line in enumerate(re.split(rb"\r\n|\r|\n", raw), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return self.error(
                    number,
                    f"not valid UTF-8 (byte 0x{line[e.start]:02x} at byte {e.start + 1} of the "
                    f"line)",
                    "Save the file with UTF-8 encoding.",
                )
        raise AssertionError("decoding failed but every line decodes")  # pragma: no cover

    def records(self) -> Generator[tuple[int, list[str]], None, None]:
        """(first line number, fields) of each non-empty record of a CSV/TSV file."""
        try:
            yield from delimited_records(self.lines(), self.layout.format)
        except RecordError as e:
            raise self.error(e.line, e.problem, e.fix) from None

    def read_delimited(self, limit: int | None) -> list[Example]:
        layout = self.layout
        records = self.records()
        # pos maps each configured column (a name or a number) to its field position.
        pos: dict[Column, int] = {}
        width = layout.width
        if layout.header:
            first = next(records, None)
            if first is None:
                raise self.error(None, "the file is empty", self.fix_file())
            header_line, names = first
            pos = self.resolve_header(header_line, [n.strip() for n in names])
            width = len(names)
        examples: list[Example] = []
        seen: dict[str, int] = {}
        for number, fields in records:
            if not layout.header and not pos:
                # The first row of a header-less file fixes the width (CoLA's is known).
                width = width or len(fields)
                pos = self.check_indices(number, width)
            assert width is not None  # from the header, the layout or the first row
            try:
                check_width(number, fields, width, layout.format)
            except RecordError as e:
                raise self.error(e.line, e.problem, e.fix) from None
            texts = [fields[pos[c]] for c in layout.text_columns]
            label = None if layout.label_column is None else fields[pos[layout.label_column]]
            key = None if layout.id_column is None else fields[pos[layout.id_column]]
            examples.append(self.example(number, len(examples) + 1, texts, label, key, seen))
            if limit is not None and len(examples) >= limit:
                break
        if not examples:
            what = "no examples after the header line" if layout.header else "the file is empty"
            raise self.error(None, what, self.fix_file())
        return examples

    def check_header(self) -> None:
        """Read only the header line (layouts that have one) and check the columns it names."""
        if self.layout.format == "jsonl" or not self.layout.header:
            return
        records = self.records()
        try:
            with no_csv_field_limit():
                first = next(records, None)
        except UnicodeDecodeError:
            raise self.bad_utf8() from None
        finally:
            records.close()
        if first is None:
            raise self.error(None, "the file is empty", self.fix_file())
        line, names = first
        self.resolve_header(line, [n.strip() for n in names])

    def resolve_header(self, line: int, names: list[str]) -> dict[Column, int]:
        index: dict[Column, int] = {}
        for key, col in self.wanted():
            hits = [i for i, n in enumerate(names) if n == col]
            if not hits:
                raise self.error(
                    line,
                    f"the header has no column {col!r}; its columns are {excerpt_list(names)}",
                    self.fix_setting(key),
                )
            if len(hits) > 1:
                raise self.error(
                    line,
                    f"the header names column {col!r} {len(hits)} times",
                    "Give every column a distinct name.",
                )
            index[col] = hits[0]
        return index

    def check_indices(self, line: int, width: int) -> dict[Column, int]:
        """Header-less files: every configured column number must exist."""
        pos: dict[Column, int] = {}
        for key, col in self.wanted():
            assert isinstance(col, int), "header-less layouts use column numbers"
            if col >= width:
                raise self.error(
                    line,
                    f"the task reads column {col} (0-based) but this line has only {width} columns",
                    self.fix_setting(key),
                )
            pos[col] = col
        return pos

    def wanted(self) -> list[tuple[str, Column]]:
        """(setting name, column) for every column the layout reads."""
        layout = self.layout
        out: list[tuple[str, Column]] = [("text_columns", c) for c in layout.text_columns]
        if layout.label_column is not None:
            out.append(("label_column", layout.label_column))
        if layout.id_column is not None:
            out.append(("id_column", layout.id_column))
        return out

    def read_jsonl(self, limit: int | None) -> list[Example]:
        layout = self.layout
        keys = [col for _, col in self.wanted()]
        shape = "{" + ", ".join(f'"{k}": ...' for k in keys) + "}"
        fix = f"Each line must hold one JSON object like {shape}."
        examples: list[Example] = []
        seen: dict[str, int] = {}
        objects = json_objects(self.lines(), fix)
        while True:
            try:
                number, obj = next(objects)
            except StopIteration:
                break
            except RecordError as e:
                raise self.error(e.line, e.problem, e.fix) from None
            for k in keys:
                if k not in obj:
                    raise self.error(number, f"the JSON object has no key {k!r}", fix)
            texts = [self.json_str(number, k, obj[k], "text") for k in layout.text_columns]
            label = None
            if layout.label_column is not None:
                label = self.json_label(number, layout.label_column, obj[layout.label_column])
            key = None
            if layout.id_column is not None:
                key = self.json_str(number, layout.id_column, obj[layout.id_column], "id")
            examples.append(self.example(number, len(examples) + 1, texts, label, key, seen))
            if limit is not None and len(examples) >= limit:
                break
        if not examples:
            raise self.error(None, "the file has no examples", self.fix_file())
        return examples

    def json_str(self, line: int, key: Column, value: Any, what: str) -> str:
        # Ids may be numbers in JSON; texts must be strings.
        if isinstance(value, str):
            return value
        if what == "id" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        want = "a string or an integer" if what == "id" else "a string"
        raise self.error(
            line,
            f"key {key!r} must hold {want}, found {json_type(value)}",
            f"Write the {what} as a JSON string.",
        )

    def json_label(self, line: int, key: Column, value: Any) -> str:
        """JSON labels may be strings or numbers; they are matched as strings."""
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.spec.kind == "classification" and isinstance(value, int):
                return str(value)
            if self.spec.kind == "regression":
                return repr(value)
        if self.spec.kind == "classification":
            allowed = ", ".join(repr(n) for n in self.spec.label_names)
            want, fix = f"one of {allowed}", "Write the label as one of these strings."
        else:
            want, fix = "a number", "Write the label as a JSON number."
        raise self.error(
            line, f"key {key!r} must hold a label, {want}; found {json_type(value)}", fix
        )

    # ----- fields -> Example ----------------------------------------------------------------

    def example(
        self,
        line: int,
        row: int,
        texts: list[str],
        label: str | None,
        key: str | None,
        seen: dict[str, int],
    ) -> Example:
        layout = self.layout
        for col, text in zip(layout.text_columns, texts, strict=True):
            if not text.strip():
                raise self.error(
                    line,
                    f"empty text in column {_column_name(col)}",
                    "Every example needs text: fill it in or delete the line.",
                )
        if key is None:
            key = str(row)
        else:
            key = key.strip()
            if not key:
                raise self.error(
                    line,
                    f"empty id in column {_column_name(layout.id_column)}",
                    "Every row needs a unique id.",
                )
            if key in seen:
                raise self.error(
                    line,
                    f"id {excerpt(key)} in column {_column_name(layout.id_column)} repeats the "
                    f"id on line {seen[key]}",
                    "Ids must be unique within a file; fix the id"
                    + ("." if self.glue else " or drop id_column to number rows instead."),
                )
            seen[key] = line
        value = None if label is None else self.parse_label(line, label)
        return Example(
            id=f"{self.spec.name}:{self.split}:{key}",
            text_a=texts[0],
            text_b=texts[1] if len(texts) > 1 else None,
            label=value,
        )

    def parse_label(self, line: int, raw: str) -> int | float:
        spec = self.spec
        col = _column_name(self.layout.label_column)
        text = raw.strip()
        if spec.kind == "classification":
            try:
                return spec.label_names.index(text)
            except ValueError:
                allowed = ", ".join(repr(n) for n in spec.label_names)
                fix = "Correct the label on this line"
                if not self.glue:
                    fix += f", or add it to label_names in {spec.source or 'the task'}"
                raise self.error(
                    line,
                    f"unknown label {excerpt(raw)} in column {col}; {_display(spec)} labels are "
                    f"{allowed}",
                    fix + ".",
                ) from None
        lo, hi = spec.regression_range
        span = f"[{lo:g}, {hi:g}]"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
            problem = "is not a number"
        else:
            problem = "is not a finite number"
        if not math.isfinite(value):
            raise self.error(
                line,
                f"label {excerpt(raw)} in column {col} {problem}",
                f"{_display(spec)} labels are numbers in {span}, e.g. {(lo + hi) / 2:g}.",
            )
        if not lo <= value <= hi:
            fix = "Correct the value"
            if not self.glue:
                fix += f", or widen regression_range in {spec.source or 'the task'}"
            raise self.error(
                line, f"label {excerpt(raw)} in column {col} is outside the range {span}", fix + "."
            )
        return value
