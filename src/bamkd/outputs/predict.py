"""Inference on new text: the `Predictor` API and the input and output files of `bamkd predict`.

A `Predictor` holds a trained multi-task model and its tokenizer. ``predict(task, inputs)`` runs
one task's head through the same length-sorted inference path as evaluation
(`bamkd.evaluate.predict_outputs`); ``predict_all(inputs)`` runs every head on one encoder pass.
Each prediction is a dict:

- classification: ``label`` (the predicted label name), ``score`` (its probability) and
  ``probabilities`` ({label name: probability}, softmax of the head's logits);
- regression: ``score``, the value on the task's own scale (0-5 for STS-B), and ``label``, the
  same value written as text, so every prediction has a string label.

Input files for `bamkd predict` are TSV, CSV (both with a header line) or JSONL, with the text
columns named as in `SINGLE_COLUMNS` or `PAIR_COLUMNS` (or the task's own text columns) and an
optional id column (`ID_COLUMNS`) that is passed through to the output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bamkd.data import ExampleStore, encode_examples, padding_settings
from bamkd.errors import BamkdError, DataError, excerpt_list
from bamkd.evaluate import predict_outputs
from bamkd.model import MultiTaskModel, load_tokenizer, model_folder
from bamkd.runtime.progress import progress_bar
from bamkd.runtime.runs import CONFIG_NAME, MODEL_DIR, load_run_config
from bamkd.tasks import Example, TaskSpec
from bamkd.tasks.records import (
    RECORD_FORMATS,
    RecordError,
    check_width,
    delimited_records,
    detect_format,
    json_objects,
    no_csv_field_limit,
    text_lines,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

__all__ = [
    "ID_COLUMNS",
    "PAIR_COLUMNS",
    "SINGLE_COLUMNS",
    "InputTable",
    "Predictor",
    "format_predictions",
    "read_inputs",
]

SINGLE_COLUMNS: tuple[str, ...] = ("sentence", "text", "text_a")
"""Column names (or JSON keys) read as the text of a single-sentence input, first match wins."""
PAIR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sentence1", "sentence2"),
    ("text_a", "text_b"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("#1 String", "#2 String"),
)
"""Column pairs read as the two texts of a sentence-pair input, first match wins."""
ID_COLUMNS: tuple[str, ...] = ("id", "idx", "index")
"""An id column passed through to the output; rows are numbered from 1 without one."""

DEFAULT_BATCH_SIZE = 64
OUTPUT_FORMATS = ("jsonl", "tsv")

Inputs = Sequence[str] | Sequence[tuple[str, str]] | Sequence[Sequence[str]]


class Predictor:
    """A trained multi-task model ready for predictions on new text.

    Example::

        from bamkd import Predictor
        p = Predictor.from_pretrained("runs/bam")          # a run folder or a model folder
        p.predict("sst2", ["a gripping film", "dull and long"])
        p.predict("mrpc", [("He said hi.", "He greeted us.")])
        p.predict_all(["a gripping film"])                  # every single-sentence head
    """

    def __init__(
        self,
        model: MultiTaskModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise BamkdError(f"batch size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = batch_size
        self.pad_id, self.use_token_types = padding_settings(tokenizer)
        self.specs: dict[str, TaskSpec] = {t.name: t for t in model.tasks}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """Load a run folder, its ``model/`` folder, or an exported ``multitask/`` folder.

        Args:
            path: the folder.
            device: where to run ("cpu", "cuda", ...); the GPU when there is one by default.
            batch_size: rows per forward pass.
            max_length: token limit per input; by default the run's ``data.max_seq_length``
                when the run's config is at hand, else the tokenizer's ``model_max_length``
                (exported folders carry the run's value there), else the encoder's
                position limit.
            trust_remote_code: allow model code from the hub (only for such encoders).
        """
        folder = model_folder(path)
        model = MultiTaskModel.from_pretrained(folder, trust_remote_code)
        tokenizer = load_tokenizer(str(folder), trust_remote_code)
        if max_length is None:
            max_length = default_max_length(folder, model, tokenizer)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        return cls(model, tokenizer, max_length=max_length, batch_size=batch_size)

    @property
    def tasks(self) -> list[str]:
        """The tasks this model has a head for, in training order."""
        return list(self.specs)

    def spec(self, task: str) -> TaskSpec:
        """The spec of one of the model's tasks; a clear error names the ones it has."""
        if task not in self.specs:
            raise BamkdError(
                f"this model has no head for task {task!r}; its tasks are: {', '.join(self.specs)}"
            )
        return self.specs[task]

    def predict(
        self, task: str, inputs: Inputs | str, *, batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        """One prediction dict per input (see the module docstring), in input order.

        Args:
            task: the task whose head predicts.
            inputs: texts for a single-sentence task, ``(first, second)`` pairs for a pair task.
            batch_size: rows per forward pass (default: the predictor's); rows are sorted by
                length first so batches carry little padding.
        """
        spec = self.spec(task)
        examples = to_examples(inputs, pair=spec.is_pair, what=f"task {task!r}")
        enc = encode_examples(examples, self.tokenizer, self.max_length, task, "predict")
        outputs = predict_outputs(
            self.model,
            enc,
            task,
            pad_id=self.pad_id,
            use_token_types=self.use_token_types,
            batch_size=batch_size or self.batch_size,
            desc=f"predict {task}",
        )
        return to_records(spec, outputs)

    @torch.no_grad()
    def predict_all(
        self,
        inputs: Inputs | str,
        *,
        tasks: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Predictions of several heads from one encoder pass per batch: ``{task: [...]}``.

        Args:
            inputs: texts, or ``(first, second)`` pairs.
            tasks: the heads to run; by default every head whose task takes this input shape
                (single sentences or pairs), since a pair head given one sentence, or the
                reverse, predicts nothing meaningful.
            batch_size: rows per forward pass (default: the predictor's).
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        if len(inputs) == 0:
            raise BamkdError("nothing to predict: the input is empty")
        pair = not isinstance(inputs[0], str)
        if tasks is None:
            names = [n for n, s in self.specs.items() if s.is_pair == pair]
            if not names:
                shape = "sentence pairs" if pair else "single sentences"
                raise BamkdError(
                    f"no head of this model takes {shape}; its tasks are: "
                    + ", ".join(
                        f"{n} ({'pairs' if s.is_pair else 'single'})" for n, s in self.specs.items()
                    )
                )
        else:
            names = list(tasks)
            for name in names:
                if self.spec(name).is_pair != pair:
                    wants = "sentence pairs" if self.specs[name].is_pair else "single sentences"
                    raise BamkdError(f"task {name!r} takes {wants}; predict it separately")
        examples = to_examples(inputs, pair=pair, what="these heads")
        enc = encode_examples(examples, self.tokenizer, self.max_length, "all", "predict")
        store = ExampleStore([enc], ["all"], self.pad_id, self.use_token_types)
        order = np.argsort(-store.lengths, kind="stable")
        size = batch_size or self.batch_size
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for start in progress_bar(range(0, len(order), size), desc="predict", unit="batch"):
            batch = store.batch(order[start : start + size])
            pooled = model.encode(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
            )
            heads = model.head_outputs(pooled)
            for name in names:
                chunks[name].append(heads[name].float().cpu())
        if was_training:
            model.train()
        results = {}
        for name in names:
            values = torch.cat(chunks[name]).numpy()
            ordered = np.empty_like(values)
            ordered[order] = values
            results[name] = to_records(self.specs[name], ordered)
        return results


def default_max_length(
    folder: Path, model: MultiTaskModel, tokenizer: PreTrainedTokenizerBase
) -> int:
    """The run's max_seq_length if its config is at hand, else the tokenizer's or encoder's."""
    # The run's config sits next to its model/ folder (given as the run or as run/model).
    run_dir = folder.parent if folder.name == MODEL_DIR else None
    if run_dir is not None and (run_dir / CONFIG_NAME).is_file():
        try:
            return load_run_config(run_dir).data.max_seq_length
        except BamkdError as exc:
            log.warning("cannot read %s (%s); using the tokenizer's limit", run_dir, exc)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit <= 100_000:
        return limit
    return int(getattr(model.encoder.config, "max_position_embeddings", 512))


def to_examples(inputs: Inputs | str, *, pair: bool, what: str) -> list[Example]:
    """Check the input shape against the task and wrap each input as an `Example`."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if len(inputs) == 0:
        raise BamkdError("nothing to predict: the input is empty")
    examples = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if pair:
                raise BamkdError(
                    f"{what} takes sentence pairs, but input {i + 1} is a single text; "
                    "give (first, second) pairs"
                )
            examples.append(Example(id=str(i), text_a=item, text_b=None, label=None))
        elif (
            isinstance(item, Sequence) and len(item) == 2 and all(isinstance(t, str) for t in item)
        ):
            if not pair:
                raise BamkdError(
                    f"{what} takes single sentences, but input {i + 1} is a pair; give plain texts"
                )
            examples.append(Example(id=str(i), text_a=item[0], text_b=item[1], label=None))
        else:
            raise BamkdError(
                f"input {i + 1} is {type(item).__name__} {item!r:.60}; give a text or a pair "
                "of two texts"
            )
    return examples


def to_records(spec: TaskSpec, outputs: np.ndarray) -> list[dict[str, Any]]:
    """Head outputs (logits [n, C] or [0, 1] scores [n]) as prediction dicts."""
    if spec.kind == "classification":
        logits = outputs.astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        records = []
        for row in probs:
            best = int(row.argmax())
            records.append(
                {
                    "label": spec.label_names[best],
                    "score": float(row[best]),
                    "probabilities": {n: float(p) for n, p in zip(spec.label_names, row)},
                }
            )
        return records
    values = [spec.unscale(float(v)) for v in np.asarray(outputs).reshape(-1)]
    return [{"label": _number(v), "score": v} for v in values]


def _number(value: float) -> str:
    return format(value, ".6g")


# ------------------------------------------------------------------------------------------------
# Input and output files of `bamkd predict`
# ------------------------------------------------------------------------------------------------


@dataclass
class InputTable:
    """Rows read from an input file: ids (passed through) and one or two texts per row."""

    source: str
    columns: tuple[str, ...]
    """The text columns used: one, or two for sentence pairs."""
    ids: list[Any]
    texts: list[str] | list[tuple[str, str]]

    @property
    def is_pair(self) -> bool:
        return len(self.columns) == 2


def read_inputs(
    text: str,
    *,
    source: str,
    fmt: str | None = None,
    pair: bool | None = None,
    task: TaskSpec | None = None,
) -> InputTable:
    """Parse the text of an input file.

    Args:
        text: the whole file.
        source: its name for error messages (a path, or "standard input").
        fmt: a name from `RECORD_FORMATS` (csv, tsv, jsonl); detected from ``source`` and the
            content when None.
        pair: whether sentence pairs are wanted (True), single sentences (False) or either
            (None: pairs when the file has a pair of text columns).
        task: the task, whose own text column names are accepted too, and named in errors.

    Raises:
        DataError: naming the file (and line): empty input, missing columns, wrong shape.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    fmt = fmt or detect_format(None if source == "standard input" else source, text)
    if fmt not in RECORD_FORMATS:
        known = ", ".join(RECORD_FORMATS)
        raise DataError(f"{source}: unknown input format {fmt!r}; use one of {known}")
    if not text.strip():
        raise DataError(f"{source}: the input is empty; give a header line and rows to predict")
    rows = _rows(text, source, fmt)
    names, first_line = rows[0][1], rows[0][0]
    columns = resolve_columns(list(names), pair=pair, task=task, source=source, fmt=fmt)
    id_col = next((c for c in ID_COLUMNS if c in names), None)
    ids: list[Any] = []
    texts: list[Any] = []
    for number, record in rows[1:]:
        values = []
        for col in columns:
            if col not in record:
                raise DataError(f"{source}:{number}: no key {col!r} (the first row has it)")
            value = record[col]
            if not isinstance(value, str):
                raise DataError(
                    f"{source}:{number}: {col!r} must hold a text, found {type(value).__name__}"
                )
            if not value.strip():
                raise DataError(f"{source}:{number}: empty text in column {col!r}")
            values.append(value)
        texts.append(values[0] if len(values) == 1 else (values[0], values[1]))
        ids.append(record.get(id_col, len(ids) + 1) if id_col else len(ids) + 1)
    if not texts:
        where = f"after the header on line {first_line}" if fmt != "jsonl" else ""
        raise DataError(f"{source}: no rows to predict {where}".rstrip())
    return InputTable(source, tuple(columns), ids, texts)


def _rows(text: str, source: str, fmt: str) -> list[tuple[int, Any]]:
    """[(line, header names or the first object's keys), (line, {column: value}), ...]."""
    lines = text_lines(text)
    out: list[tuple[int, Any]] = []
    try:
        if fmt == "jsonl":
            out = list(
                json_objects(lines, 'Each line must hold one JSON object like {"sentence": "..."}.')
            )
            return [(out[0][0], list(out[0][1])), *out] if out else []
        header: list[str] | None = None
        with no_csv_field_limit():
            for number, fields in delimited_records(lines, fmt):
                if not any(f.strip() for f in fields):
                    continue  # a blank line between rows
                if header is None:
                    header = [f.strip() for f in fields]
                    out.append((number, header))
                    continue
                check_width(number, fields, len(header), fmt, " like the header")
                out.append((number, dict(zip(header, fields))))
    except RecordError as e:
        raise DataError(f"{source}:{e.line}: {e.problem}. {e.fix}") from None
    return out


def resolve_columns(
    names: list[str],
    *,
    pair: bool | None,
    task: TaskSpec | None,
    source: str,
    fmt: str = "tsv",
) -> tuple[str, ...]:
    """The text columns to read, or a `DataError` naming the file, found and expected columns."""
    own = tuple(c for c in (task.text_columns if task else ()) if isinstance(c, str))
    pairs = ([own] if len(own) == 2 else []) + [p for p in PAIR_COLUMNS if p != own]
    singles = ([own[0]] if len(own) == 1 else []) + [s for s in SINGLE_COLUMNS if s not in own]
    found_pair = next((p for p in pairs if p[0] in names and p[1] in names), None)
    found_single = next((s for s in singles if s in names), None)
    what = "keys" if fmt == "jsonl" else "columns"
    name = repr(task.name) if task else "this"
    shown = excerpt_list(names) or "none"
    for_task = f" for task {task.name!r}" if task else ""
    if pair is not False and found_pair:
        return found_pair
    if pair is not True and found_single:
        return (found_single,)
    if pair and found_single:
        raise DataError(
            f"{source}: task {name} takes sentence pairs, but the input "
            f"has single sentences (column {found_single!r}); give two text {what}, e.g. "
            f"'sentence1' and 'sentence2'"
        )
    if pair is False and found_pair:
        raise DataError(
            f"{source}: task {name} takes single sentences, but the "
            f"input has sentence pairs ({found_pair[0]!r}, {found_pair[1]!r}); give one text "
            f"{what[:-1]} named 'sentence'"
        )
    expected_pairs = ", ".join(f"{a!r}+{b!r}" for a, b in pairs)
    expected_single = ", ".join(repr(s) for s in singles)
    if pair is True:
        expected = f"a pair of {expected_pairs}"
    elif pair is False:
        expected = f"one of {expected_single}"
    else:
        expected = f"one of {expected_single}, or a pair of {expected_pairs}"
    raise DataError(f"{source}: no text {what}{for_task}; found {shown}; expected {expected}")


def format_predictions(
    ids: Sequence[Any],
    predictions: Sequence[dict[str, Any]] | Mapping[str, Sequence[dict[str, Any]]],
    fmt: str = "jsonl",
) -> str:
    """Predictions as JSONL or TSV text, one line per input row.

    One task (a list of prediction dicts): JSONL objects ``{"id", "label", "score",
    "probabilities"}`` (no probabilities for regression), or TSV columns id, label, score.
    Several tasks (``{task: [...]}``, from ``predict_all``): JSONL objects ``{"id", "tasks":
    {task: {...}}}``, or TSV columns id, ``<task>.label``, ``<task>.score``, ...
    """
    if fmt not in OUTPUT_FORMATS:
        raise BamkdError(f"unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}")
    many = isinstance(predictions, Mapping)
    # One task is written like several with a single unnamed task.
    by_task: Mapping[str, Sequence[dict[str, Any]]] = (
        predictions if isinstance(predictions, Mapping) else {"": predictions}
    )
    lines: list[str] = []
    if fmt == "jsonl":
        for i, row_id in enumerate(ids):
            if many:
                obj = {"id": row_id, "tasks": {t: p[i] for t, p in by_task.items()}}
            else:
                obj = {"id": row_id, **by_task[""][i]}
            lines.append(json.dumps(obj, ensure_ascii=False))
        return "".join(f"{line}\n" for line in lines)
    fields = ("label", "score")
    header = ["id", *(f"{t}.{k}" if many else k for t in by_task for k in fields)]
    lines.append("\t".join(header))
    for i, row_id in enumerate(ids):
        cells = [str(row_id)]
        for preds in by_task.values():
            cells += [str(preds[i]["label"]), _number(preds[i]["score"])]
        lines.append("\t".join(_cell(c) for c in cells))
    return "".join(f"{line}\n" for line in lines)


def _cell(value: str) -> str:
    """A TSV cell cannot hold tabs or line breaks."""
    return " ".join(value.replace("\t", " ").splitlines())
