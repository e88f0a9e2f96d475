"""Records from text: the one reader of CSV, TSV and JSONL lines, and the registry of formats.

Task files (`bamkd.tasks.readers`) and prediction inputs (`bamkd predict`, `bamkd.outputs.predict`)
read the same formats with the same rules: universal newlines only (a U+2028 inside a sentence
does not split a row), tabs split TSV fields with quotes kept literal (GLUE text has stray
quotes), CSV follows the csv module with quoted line breaks, JSONL holds one object per line.
`RECORD_FORMATS` lists the formats once; the CLI's ``--format`` choices, format detection, the
task files' ``format`` key and the README are read from or tested against it.

Problems in a record raise `RecordError` (line, problem, fix); each caller turns it into its
own one-line `DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RecordFormat:
    """A text format of rows."""

    name: str
    suffixes: tuple[str, ...]
    """File name endings read as this format when none is named."""
    what: str
    """One line for the README and ``--help``."""
    separator: str | None = None
    """How messages name the field separator ("tab", "comma"); None for JSONL."""
    width_fix: str = ""
    """How to fix a row whose field count differs from the others'."""


RECORD_FORMATS: dict[str, RecordFormat] = {
    f.name: f
    for f in (
        RecordFormat(
            "csv",
            (".csv",),
            "comma-separated, RFC 4180 quoting (quoted fields may hold commas and line breaks)",
            "comma",
            "Put double quotes around fields that contain commas, quotes or line breaks.",
        ),
        RecordFormat(
            "tsv",
            (".tsv", ".tab"),
            "tab-separated, quotes kept as text (the GLUE files' layout)",
            "tab",
            "Separate fields with single tabs; text cannot contain tabs.",
        ),
        RecordFormat("jsonl", (".jsonl", ".json", ".ndjson"), "one JSON object per line"),
    )
}
"""Every record format by name: the task files' file formats and `bamkd predict`'s inputs."""

_CSV_QUOTING_FIX = (
    "Put double quotes around fields that contain commas, quotes or line breaks, and double any "
    "quote inside them."
)


class RecordError(Exception):
    """A malformed record: where (1-based line), what is wrong, and how to fix it."""

    def __init__(self, line: int | None, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.line, self.problem, self.fix = line, problem, fix


def detect_format(name: str | None, text: str) -> str:
    """The format of a file from its name's suffix, else from its first non-blank line."""
    if name:
        suffix = Path(name).suffix.lower()
        for fmt in RECORD_FORMATS.values():
            if suffix in fmt.suffixes:
                return fmt.name
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    # A header without tabs or commas names one column: read it as TSV, so commas in the text
    # stay text (a file of plain lines under a "sentence" header just works).
    return "csv" if "," in first and "\t" not in first else "tsv"


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its break) of a string, with the line breaks a file
    opened in text mode has (\\n, \\r\\n, \\r), so the numbers match an editor's."""
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        yield number, line[:-1] if line.endswith("\n") else line


def delimited_records(lines: Iterable[tuple[int, str]], fmt: str) -> Iterator[tuple[int, list]]:
    """(first line number, fields) of each non-empty record of CSV or TSV ``lines``.

    Raises:
        RecordError: a CSV record the csv module cannot parse.
    """
    if fmt == "tsv":
        # Splitting on tabs is exactly csv.reader with QUOTE_NONE and a tab delimiter, minus the
        # csv module's field limit, and it keeps one record per line so line numbers are exact.
        for number, line in lines:
            if line:
                yield number, line.split("\t")
        return
    # The csv module keeps quoted line breaks, so a record may span lines; line_num tells where
    # each one ends.
    reader = csv.reader(line + "\n" for _, line in lines)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise RecordError(
                start, f"cannot parse this CSV line ({e})", _CSV_QUOTING_FIX
            ) from None
        if fields:
            yield start, fields
        start = reader.line_num + 1


def check_width(line: int, fields: list[str], width: int, fmt: str, like: str = "") -> None:
    """Refuse a CSV/TSV record whose field count is not ``width`` (``like``: what sets it)."""
    if len(fields) == width:
        return
    hint = ""
    if any("\n" in f for f in fields):
        hint = f" (a quoted field runs on from line {line}: is a quote unclosed?)"
    spec = RECORD_FORMATS[fmt]
    raise RecordError(
        line,
        f"expected {width} {spec.separator}-separated columns{like}, found {len(fields)}{hint}",
        spec.width_fix,
    )


def json_objects(lines: Iterable[tuple[int, str]], fix: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of JSONL ``lines``.

    Raises:
        RecordError: a line that is not valid JSON, or not an object (``fix`` says the shape).
    """
    for number, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                number, f"not valid JSON ({e.msg} at column {e.colno})", fix
            ) from None
        except (ValueError, RecursionError) as e:
            # e.g. an integer with thousands of digits, or absurdly deep nesting
            raise RecordError(number, f"not valid JSON ({e})", fix) from None
        if not isinstance(obj, dict):
            raise RecordError(number, f"expected a JSON object, found {json_type(obj)}", fix)
        yield number, obj


def json_type(value: Any) -> str:
    """How messages name a JSON value's type."""
    names: dict[type, str] = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


@contextlib.contextmanager
def no_csv_field_limit() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit while reading: long texts are truncated later,
    by the tokenizer. The limit is process-wide, so the old value is put back afterwards."""
    old = csv.field_size_limit(2**31 - 1)  # the largest value a C long holds on every platform
    try:
        yield
    finally:
        csv.field_size_limit(old)


def markdown_list() -> str:
    """The README's list of formats (tests/unit/test_registries.py keeps the README current)."""
    return "\n".join(
        f"- `{f.name}` ({', '.join(f'`{s}`' for s in f.suffixes)}): {f.what}"
        for f in RECORD_FORMATS.values()
    )
