"""Task splits stored as column tables: Parquet files, `save_to_disk` folders, hub datasets.

Parquet is read with pyarrow, a `save_to_disk` folder with `datasets.load_from_disk` and a hub
dataset with `datasets.load_dataset` (users with a network; nothing here reaches the hub unless a
task says `format: hub`). Both packages are the optional `[datasets]` extra; without them the
first read says what to install. Rows become `Example`s through the same checks and the same
stable ids as CSV/TSV/JSONL rows (readers.py): the id column's value, else the 1-based row number.

Labels are read as the hub stores them: a ClassLabel id maps to the label of the same name, else
to the label of the same number ("0", "1"); -1 (GLUE's test sets) means "no label" and is refused
in a labelled split. A table's fingerprint, which keys the token cache and the run manifest, is
the SHA-256 of its files (Parquet, the split's `save_to_disk` folder) or the hub dataset's own
`datasets` fingerprint, so a changed table is never served from an old cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bamkd.errors import DataError, excerpt, excerpt_list
from bamkd.runtime.storage import file_digest
from bamkd.tasks.readers import Example, _layout, _Reader, has_labels, split_path
from bamkd.tasks.spec import TaskSpec

__all__ = [
    "INSTALL_HINT",
    "check_table",
    "class_label_names",
    "digest_files",
    "hub_fingerprint",
    "location_files",
    "parquet_files",
    "read_table_split",
    "table_fingerprint",
    "table_location",
]

INSTALL_HINT = "pip install 'bamkd[datasets]'"

# Hub datasets loaded in this process, by (id, config, split): loading one twice (fingerprint,
# then rows) would cost a second pass over its Arrow files.
_HUB: dict[tuple[str, str | None, str], Any] = {}


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading Parquet files needs pyarrow, which is not installed; run: {INSTALL_HINT}"
        ) from None
    return pq


def _datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{what} needs the Hugging Face datasets package, which is not installed; run: "
            f"{INSTALL_HINT}"
        ) from None
    return datasets


def parquet_files(pattern: str | Path) -> list[Path]:
    """The Parquet files `pattern` names: one file, every *.parquet in a folder, or a glob."""
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.parquet"))
    if glob.has_magic(str(path)):
        return sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    return []


def table_location(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> str:
    """How messages and manifests name a split: its Parquet pattern, its `save_to_disk` split
    folder, or "hub:<id>[/<config>]:<split>"."""
    if spec.format == "hub":
        config = f"/{spec.dataset_config}" if spec.dataset_config else ""
        return f"hub:{spec.dataset}{config}:{spec.splits[split]}"
    return str(split_path(spec, split, data_dir))


class _TableReader(_Reader):
    """`_Reader`'s row checks and messages, with rows numbered from 1 instead of file lines."""

    def error(self, line: int | None, problem: str, fix: str) -> DataError:
        where = f"{self.path} (row {line})" if line is not None else f"{self.path}"
        return DataError(f"{where}: {problem}. {fix}")

    def fix_file(self) -> str:
        if self.spec.source.startswith("data.glue_source"):
            if self.spec.format == "hub":
                return "Check data.glue_dataset, the network or the datasets cache."
            return (
                "Point data.glue_dir at a copy of the hub's GLUE repository "
                "(<glue_dir>/<config>/<split>-*.parquet, e.g. mrpc/train-00000-of-00001.parquet)."
            )
        key = "splits" if self.spec.format in ("disk", "hub") else "files"
        return f"Fix the data, or change {key}.{self.split} in {self.spec.source or 'the task'}."

    def fix_setting(self, key: str) -> str:
        return f"Set {key} in {self.spec.source or 'the task'} to match the table's columns."

    def missing(self) -> DataError:
        if self.spec.format == "parquet":
            return DataError(
                f"{self.path}: no Parquet file found. Task {self.spec.name!r} reads its "
                f"{self.split} split from it (a file, a folder of *.parquet files or a glob). "
                f"{self.fix_file()}"
            )
        return DataError(
            f"{self.spec.dataset}: save_to_disk folder not found. Task {self.spec.name!r} reads "
            f"its {self.split} split from it; fix dataset in {self.spec.source or 'the task'}."
        )

    def check_columns(self, present: list[str]) -> None:
        for key, col in self.wanted():
            if col not in present:
                raise self.error(
                    None,
                    f"the table has no column {col!r}; its columns are {excerpt_list(present)}",
                    self.fix_setting(key),
                )


def _reader(spec: TaskSpec, split: str, data_dir: str | Path | None) -> _TableReader:
    location = Path(table_location(spec, split, data_dir))
    return _TableReader(spec, split, location, _layout(spec, has_labels(spec, split)), data_dir)


def _disk_split_folder(reader: _TableReader) -> Path:
    spec, split = reader.spec, reader.split
    root = Path(spec.dataset)
    if not root.is_dir():
        raise reader.missing()
    name = spec.splits[split]
    if (root / "state.json").is_file():
        raise DataError(
            f"{root}: holds one Dataset, not a DatasetDict with splits. Save it as "
            f"DatasetDict({{'{name}': dataset}}).save_to_disk(folder), or point dataset at the "
            "folder that holds the splits."
        )
    folder = root / name
    if not (folder / "state.json").is_file():
        found = []
        with_dict = root / "dataset_dict.json"
        if with_dict.is_file():
            try:
                found = list(json.loads(with_dict.read_text(encoding="utf-8"))["splits"])
            except (OSError, ValueError, KeyError, TypeError):
                found = []
        found = found or sorted(p.name for p in root.iterdir() if (p / "state.json").is_file())
        raise DataError(
            f"{root}: the dataset has no split {name!r} (splits: {excerpt_list(found)}). Fix "
            f"splits.{split} in {spec.source or 'the task'}."
        )
    return folder


def _load_dataset(reader: _TableReader):
    """The `datasets.Dataset` of a disk or hub split (hub splits are kept for this process)."""
    spec = reader.spec
    name = spec.splits[reader.split]
    if spec.format == "disk":
        folder = _disk_split_folder(reader)
        ds = _datasets(f"reading the save_to_disk folder {spec.dataset}")
        try:
            return ds.load_from_disk(str(folder))
        except Exception as exc:  # a damaged folder: name it, never a traceback
            raise DataError(
                f"{folder}: cannot load this save_to_disk split ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Write it again with "
                "save_to_disk."
            ) from None
    key = (spec.dataset, spec.dataset_config, name)
    if key not in _HUB:
        ds = _datasets(f"the hub dataset {spec.dataset}")
        try:
            _HUB[key] = ds.load_dataset(spec.dataset, spec.dataset_config, split=name)
        except Exception as exc:  # no network, unknown id, config or split: one line
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DataError(
                f"{reader.path}: cannot load the hub dataset ({type(exc).__name__}: "
                f"{excerpt(first, 300)}). Check dataset, config and splits.{reader.split} in "
                f"{spec.source or 'the task'}, and the network (or HF_HUB_OFFLINE with a filled "
                "cache)."
            ) from None
    return _HUB[key]


def _class_names(feature: Any) -> list[str] | None:
    """ClassLabel names from a `datasets` feature or its JSON form; None for other features."""
    if isinstance(feature, dict):
        if feature.get("_type") == "ClassLabel" and isinstance(feature.get("names"), list):
            return [str(n) for n in feature["names"]]
        return None
    names = getattr(feature, "names", None)
    if type(feature).__name__ == "ClassLabel" and isinstance(names, list):
        return [str(n) for n in names]
    return None


def _parquet_features(file: Path) -> dict[str, Any]:
    """The `datasets` features stored in a Parquet file's schema metadata ({} when none)."""
    pq = _pyarrow_parquet()
    meta = pq.read_schema(file).metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def class_label_names(
    fmt: str, where: str, column: str, *, dataset: str = "", config: str | None = None
) -> list[str] | None:
    """The ClassLabel names of `column` in one split of a table, or None if it has none.

    `where` is the split's Parquet pattern (format "parquet") or the dataset's split name.
    """
    if fmt == "parquet":
        files = parquet_files(where)
        return _class_names(_parquet_features(files[0]).get(column)) if files else None
    if fmt == "disk":
        info = Path(dataset) / where / "dataset_info.json"
        try:
            features = json.loads(info.read_text(encoding="utf-8")).get("features") or {}
        except (OSError, ValueError, AttributeError):
            return None
        return _class_names(features.get(column)) if isinstance(features, dict) else None
    ds = _datasets(f"the hub dataset {dataset}")
    try:
        features = ds.load_dataset_builder(dataset, config).info.features or {}
    except Exception as exc:
        raise DataError(
            f"hub:{dataset}: cannot read the dataset's features ({type(exc).__name__}); give "
            "label_names in the task file, or check the id, config and network."
        ) from None
    return _class_names(features.get(column))


def check_table(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> str:
    """Check a table split exists and has the task's columns, without reading rows (hub splits:
    only that `datasets` is installed). Returns the split's location."""
    reader = _reader(spec, split, data_dir)
    if spec.format == "parquet":
        files = parquet_files(reader.path)
        if not files:
            raise reader.missing()
        pq = _pyarrow_parquet()
        for file in files:
            file_reader = _TableReader(spec, split, file, reader.layout, data_dir)
            try:
                names = list(pq.read_schema(file).names)
            except Exception as exc:
                raise file_reader.error(
                    None, f"not a readable Parquet file ({type(exc).__name__})", reader.fix_file()
                ) from None
            file_reader.check_columns(names)
    elif spec.format == "disk":
        folder = _disk_split_folder(reader)
        try:
            info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
            names = list(info["features"])
        except (OSError, ValueError, KeyError, TypeError):
            names = []
        if names:
            reader.check_columns(names)
    else:
        _datasets(f"the hub dataset {spec.dataset}")
    return str(reader.path)


def location_files(location: str | Path) -> list[Path]:
    """The files whose bytes make up a split: a file, a `save_to_disk` split folder (all its
    files), a folder of Parquet files, or a glob. Empty when nothing is there."""
    path = Path(location)
    if path.is_dir() and (path / "state.json").is_file():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return parquet_files(path)


def digest_files(files: list[Path]) -> str:
    """SHA-256 of one file, or of the names and SHA-256s of several (one split's shards)."""
    if len(files) == 1:
        return file_digest(files[0])
    root = Path(*Path(files[0]).parts[:-1])
    h = hashlib.sha256()
    for file in files:
        name = file.relative_to(root) if file.is_relative_to(root) else file.name
        h.update(f"{name}\0{file_digest(file)}\0".encode())
    return h.hexdigest()


def hub_fingerprint(location: str) -> str | None:
    """The `datasets` fingerprint of a hub split loaded in this process ("hub:<id>:<split>")."""
    for (dataset, config, name), ds in _HUB.items():
        cfg = f"/{config}" if config else ""
        if location == f"hub:{dataset}{cfg}:{name}":
            return "hub:" + str(ds._fingerprint)
    return None


def table_fingerprint(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> str:
    """SHA-256 of the split's files (Parquet files; a save_to_disk split folder), or a hub
    dataset's `datasets` fingerprint. Raises DataError when the split cannot be found."""
    reader = _reader(spec, split, data_dir)
    if spec.format == "hub":
        return "hub:" + str(_load_dataset(reader)._fingerprint)
    if spec.format == "disk":
        _disk_split_folder(reader)  # a missing folder or split, named
    files = location_files(reader.path)
    if not files:
        raise reader.missing()
    return digest_files(files)


def _read_columns(reader: _TableReader, columns: list[str], limit: int | None):
    """(column -> values, ClassLabel names of the label column or None)."""
    spec = reader.spec
    label = reader.layout.label_column
    if spec.format == "parquet":
        files = parquet_files(reader.path)
        if not files:
            raise reader.missing()
        pq = _pyarrow_parquet()
        data: dict[str, list[Any]] = {c: [] for c in columns}
        for file in files:
            file_reader = _TableReader(spec, reader.split, file, reader.layout, reader.data_dir)
            try:
                schema = pq.read_schema(file)
                file_reader.check_columns(list(schema.names))
                table = pq.read_table(file, columns=columns)
            except DataError:
                raise
            except Exception as exc:
                raise file_reader.error(
                    None, f"not a readable Parquet file ({type(exc).__name__})", reader.fix_file()
                ) from None
            for column, values in table.to_pydict().items():
                data[column].extend(values)
            if limit is not None and len(data[columns[0]]) >= limit:
                break
        names = None
        if label is not None:
            names = _class_names(_parquet_features(files[0]).get(str(label)))
        return data, names
    ds = _load_dataset(reader)
    reader.check_columns(list(ds.column_names))
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    names = _class_names(ds.features.get(str(label))) if label is not None else None
    return ds.select_columns(columns).to_dict(), names


def read_table_split(
    spec: TaskSpec, split: str, data_dir: str | Path | None = None, *, limit: int | None = None
) -> list[Example]:
    """Read one split of a Parquet, `save_to_disk` or hub task into Examples, in table order."""
    reader = _reader(spec, split, data_dir)
    layout = reader.layout
    columns = list(dict.fromkeys(str(c) for _, c in reader.wanted()))
    data, class_names = _read_columns(reader, columns, limit)
    n = len(data[columns[0]]) if columns else 0
    if limit is not None:
        n = min(n, limit)
    numbered = split in spec.numbered_splits
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for i in range(n):
        row = i + 1
        texts = [_text(reader, row, str(c), data[str(c)][i]) for c in layout.text_columns]
        label = None
        if layout.label_column is not None:
            label = _label(reader, row, data[str(layout.label_column)][i], class_names)
        key = None
        if layout.id_column is not None:
            key = _key(reader, row, data[str(layout.id_column)][i], numbered)
        examples.append(reader.example(row, row, texts, label, key, seen))
    if not examples:
        raise reader.error(None, "the table has no rows", reader.fix_file())
    return examples


def _text(reader: _TableReader, row: int, column: str, value: Any) -> str:
    if value is None:
        return ""  # reader.example names the empty text
    if not isinstance(value, str):
        raise reader.error(
            row,
            f"column {column!r} must hold text, found {type(value).__name__} {excerpt(value)}",
            reader.fix_setting("text_columns"),
        )
    return value


def _key(reader: _TableReader, row: int, value: Any, numbered: bool) -> str:
    if value is None:
        return ""  # reader.example names the empty id
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise reader.error(
            row,
            f"id column {reader.layout.id_column!r} must hold integers or strings, found "
            f"{type(value).__name__}",
            reader.fix_setting("id_column"),
        )
    if numbered:
        # The TSV files of these GLUE splits number rows from 1; the hub's idx counts from 0.
        return str(int(value) + 1)
    return str(value)


def _label(reader: _TableReader, row: int, value: Any, class_names: list[str] | None) -> str:
    """The label as the text `_Reader.parse_label` matches against label_names."""
    spec = reader.spec
    column = reader.layout.label_column
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise reader.error(
            row,
            f"no label in column {column!r}",
            "Every row of a labelled split needs a label; fill it in or drop the row.",
        )
    if isinstance(value, bool):
        raise reader.error(
            row,
            f"label {value} in column {column!r} is a boolean",
            "Store labels as ClassLabel ids, integers, strings or (regression) numbers.",
        )
    if isinstance(value, str):
        return value
    if not isinstance(value, int | float):
        raise reader.error(
            row,
            f"label in column {column!r} is a {type(value).__name__}",
            "Store labels as ClassLabel ids, integers, strings or (regression) numbers.",
        )
    if spec.kind == "regression":
        # A float32 column (the hub's STS-B) holds 3.7999999523 for the file's 3.8: write such
        # values at float32 precision, so the example equals the one read from text.
        single = np.float32(value)
        return str(single) if float(single) == float(value) else repr(float(value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == -1:
        raise reader.error(
            row,
            f"label -1 in column {column!r} means 'no label' (GLUE stores its test sets so)",
            f"Split {reader.split!r} is trained or evaluated on, so it needs gold labels; list "
            "unlabelled data as the task's test split.",
        )
    if isinstance(value, int) and class_names and 0 <= value < len(class_names):
        name = class_names[value]
        if name in spec.label_names:
            return name
    return str(value)
