"""`bamkd tasks`: the built-in task table, and a check of a user task file without training.

`check_task_file` reads every split of a task the way a run does (the same readers, the same
tokenizer call), and reports rows per split, the label distribution, a few tokenized examples and
token lengths against `max_seq_length`. It writes nothing: no token cache, no run folder. Any
problem a run would hit in its data is raised here as the same one-line error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bamkd.config import check_seq_length_fits
from bamkd.data import encode_examples
from bamkd.model import load_tokenizer
from bamkd.tasks import GLUE_TASKS, TaskSpec, has_labels, load_task_yaml, read_split
from bamkd.tasks.readers import _GLUE_LAYOUTS
from bamkd.tasks.spec import _GLUE_HUB_COLUMNS
from bamkd.tasks.tables import table_location

__all__ = ["builtin_tasks_table", "check_task_file"]


def _table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _labels(spec: TaskSpec) -> str:
    if spec.kind == "regression":
        lo, hi = spec.regression_range
        return f"score in [{lo:g}, {hi:g}]"
    return ", ".join(spec.label_names)


def builtin_tasks_table() -> str:
    """One line per built-in (GLUE) task: name, kind, labels, metrics, text columns, symmetric."""
    rows = [["task", "name", "kind", "labels", "metrics", "text columns: TSV | hub", "symmetric"]]
    for spec in GLUE_TASKS.values():
        labelled, test = _GLUE_LAYOUTS[spec.name]
        tsv = (labelled or test).text_columns
        tsv_text = ", ".join(str(c) if isinstance(c, str) else f"#{c}" for c in tsv)
        hub = ", ".join(_GLUE_HUB_COLUMNS[spec.name][1])
        kind = spec.kind + (" (pair)" if spec.is_pair else "")
        if spec.head_task:
            kind += f", {spec.head_task} head"
        rows.append(
            [
                spec.name,
                spec.display_name,
                kind,
                _labels(spec),
                ", ".join(spec.metrics),
                f"{tsv_text} | {hub}",
                "yes" if spec.symmetric else "no",
            ]
        )
    note = (
        "Splits: train, dev, test (MNLI: dev_matched, dev_mismatched, test_matched, "
        "test_mismatched; AX: test only). '#3' is a 0-based column of a file without a header.\n"
        "GLUE from the TSV download (data.glue_dir), from the hub's Parquet layout "
        "(data.glue_source=parquet) or the hub (data.glue_source=hub). Your own tasks: a task "
        "YAML file (README, 'Your own tasks'); check one with: bamkd tasks check FILE.yaml"
    )
    return _table(rows) + "\n\n" + note


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def check_task_file(
    path: str | Path,
    *,
    model: str = "bamkd-tiny",
    max_seq_length: int = 128,
    examples: int = 3,
    limit: int | None = None,
) -> str:
    """Validate a task YAML file and all its data; return a report (rows, labels, lengths).

    Args:
        path: the task YAML file.
        model: tokenizer to measure lengths with (a folder, 'minilm', 'bamkd-tiny' or a hub id).
        max_seq_length: the token limit the run will use (data.max_seq_length).
        examples: tokenized examples shown per split.
        limit: read only the first `limit` rows of each split (None: all).

    Raises:
        BamkdError: the first problem in the file or its data, naming file, key or row.
    """
    spec = load_task_yaml(path)
    tokenizer = load_tokenizer(model)
    check_seq_length_fits(
        max_seq_length,
        tokenizer.num_special_tokens_to_add(pair=False),
        tokenizer.num_special_tokens_to_add(pair=True),
        has_pairs=spec.is_pair,
    )
    shape = "sentence pair" if spec.is_pair else "single sentence"
    out = [
        f"task {spec.name} ({spec.kind}, {shape}{', symmetric' if spec.symmetric else ''}) "
        f"from {path}",
        f"format {spec.format}; labels: {_labels(spec)}; metrics: {', '.join(spec.metrics)}",
        f"tokenizer {model}, max_seq_length {max_seq_length}"
        + (
            " (bamkd-tiny, the test encoder, spells most words letter by letter: give --model "
            "with the encoder you train for real lengths)"
            if model == "bamkd-tiny"
            else ""
        ),
        "",
    ]
    rows = [["split", "rows", "labels", "tokens: median / p95 / max", "truncated", "source"]]
    shown: list[str] = []
    for split in spec.splits:
        data = read_split(spec, split, limit=limit)
        enc = encode_examples(data, tokenizer, max_seq_length, spec.name, split)
        lengths = _untruncated_lengths(spec, data, tokenizer)
        truncated = int((lengths > max_seq_length).sum())
        rows.append(
            [
                split,
                f"{len(data):,}",
                _label_summary(spec, split, data),
                f"{int(np.median(lengths))} / {int(np.percentile(lengths, 95))} / "
                f"{int(lengths.max())}",
                f"{truncated:,} ({_percent(truncated, len(data))})",
                table_location(spec, split),
            ]
        )
        shown += [
            _example_line(spec, data[i], enc, i, tokenizer) for i in range(min(examples, len(data)))
        ]
    out.append(_table(rows))
    out += ["", "examples (as the model sees them):", *shown]
    if any(r[4].split()[0] != "0" for r in rows[1:]):
        out.append(
            f"\nrows over {max_seq_length} tokens are truncated (pairs longest-first); raise "
            "data.max_seq_length to keep them whole."
        )
    out.append("\nok: the task file and its data are valid.")
    return "\n".join(out)


def _untruncated_lengths(spec: TaskSpec, data: list, tokenizer: Any) -> np.ndarray:
    """Each row's token count before truncation: tokenized again without a limit (a check,
    not a hot path)."""
    full = tokenizer(
        [ex.text_a for ex in data],
        [ex.text_b or "" for ex in data] if spec.is_pair else None,
        truncation=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]
    return np.array([len(r) for r in full])


def _label_summary(spec: TaskSpec, split: str, data: list) -> str:
    """Class counts (classification) or the value range (regression) of a split's labels."""
    if not has_labels(spec, split):
        return "none (test split)"
    if spec.kind == "classification":
        counts = Counter(int(ex.label) for ex in data if ex.label is not None)
        return ", ".join(
            f"{name} {counts.get(i, 0)} ({_percent(counts.get(i, 0), len(data))})"
            for i, name in enumerate(spec.label_names)
        )
    values = np.array([float(ex.label) for ex in data if ex.label is not None])
    return f"mean {values.mean():.3g}, min {values.min():.3g}, max {values.max():.3g}"


def _example_line(spec: TaskSpec, ex: Any, enc: Any, i: int, tokenizer: Any) -> str:
    """One example as the model sees it: id, label, token count and tokens (cut at 160 chars)."""
    row = enc.input_ids[enc.offsets[i] : enc.offsets[i + 1]]
    tokens = tokenizer.convert_ids_to_tokens([int(t) for t in row])
    if ex.label is None:
        label = "-"
    elif spec.kind == "classification":
        label = spec.label_names[int(ex.label)]
    else:
        label = f"{float(ex.label):g}"
    text = " ".join(tokens)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"  {ex.id}  label {label}  {len(row)} tokens: {text}"
