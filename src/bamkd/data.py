"""From examples to padded tensors: tokenization, the on-disk token cache, and batching.

Tokenized splits are stored as flat arrays (token ids, row offsets, first-segment lengths) in
safetensors files keyed by everything that changes the result (file contents, task spec, split,
tokenizer, max length, limits, doubling), so a second run starts at once and a stale cache is
never used. Batches are padded only to their longest row (dynamic padding), or packed several
examples to a row with no padding at all (bamkd.packing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from bamkd.errors import ConfigError
from bamkd.packing import pack_layout, row_tiers
from bamkd.runtime.progress import progress_bar
from bamkd.runtime.storage import atomic_path, file_digest
from bamkd.tasks import Example, TaskSpec, read_split
from bamkd.tasks.readers import split_path
from bamkd.tasks.spec import TABLE_FORMATS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from bamkd.config import DataConfig

log = logging.getLogger(__name__)

CACHE_VERSION = "1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("BAMKD_CACHE", Path.home() / ".cache" / "bamkd"))


@dataclass
class Encoded:
    """One tokenized split of one task, as flat arrays."""

    task: str
    split: str
    ids: list[str]
    input_ids: np.ndarray  # int32, all rows back to back
    offsets: np.ndarray  # int64 [n + 1]: row i is input_ids[offsets[i]:offsets[i + 1]]
    len_a: np.ndarray  # int32 [n]: tokens of [CLS] a [SEP]; the rest is segment b
    labels: np.ndarray  # float32 [n]: class index or raw regression value; NaN when unlabeled
    content_hash: np.ndarray  # int64 [n]: hash of the texts and label, to detect stale teachers

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def swapped(examples: Sequence[Example]) -> list[Example]:
    """Sentence-order doubling: each pair again with its sentences swapped, under its own id."""
    return [
        Example(id=f"{ex.id}:swap", text_a=ex.text_b or "", text_b=ex.text_a, label=ex.label)
        for ex in examples
    ]


def content_hash(ex: Example) -> int:
    """Stable 63-bit hash of what a teacher saw and what the gold label is."""
    text = f"{ex.text_a}\x1f{ex.text_b}\x1f{ex.label}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def encode_examples(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    task: str,
    split: str,
) -> Encoded:
    """Tokenize ``[CLS] a [SEP] b [SEP]`` with longest-first truncation, in fast batches."""
    texts_a = [ex.text_a for ex in examples]
    has_b = any(ex.text_b is not None for ex in examples)
    texts_b = [ex.text_b or "" for ex in examples] if has_b else None
    ids_rows: list[list[int]] = []
    len_a: list[int] = []
    chunk = 4096
    starts = range(0, len(examples), chunk)
    for start in progress_bar(starts, desc=f"tokenize {task}/{split}", unit="chunk"):
        enc = tokenizer(
            texts_a[start : start + chunk],
            texts_b[start : start + chunk] if texts_b is not None else None,
            truncation="longest_first" if has_b else True,
            max_length=max_length,
            return_token_type_ids=has_b,
            return_attention_mask=False,
        )
        ids_rows.extend(enc["input_ids"])
        if has_b:
            len_a.extend(len(t) - sum(t) for t in enc["token_type_ids"])
        else:
            len_a.extend(len(r) for r in enc["input_ids"])
    lengths = np.array([len(r) for r in ids_rows], dtype=np.int64)
    if len(lengths) and lengths.max() > max_length:
        # A tokenizer that cannot fit its special tokens in max_length silently skips truncation;
        # check_seq_length_fits prevents that for runs, this catches any other caller.
        raise ConfigError(
            f"data.max_seq_length={max_length} was not respected: {task}/{split} has rows of "
            f"{int(lengths.max())} tokens (the tokenizer's special tokens leave no room); "
            "raise data.max_seq_length"
        )
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.fromiter((t for r in ids_rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    labels = np.array(
        [np.nan if ex.label is None else float(ex.label) for ex in examples], dtype=np.float32
    )
    hashes = np.array([content_hash(ex) for ex in examples], dtype=np.int64)
    return Encoded(
        task,
        split,
        [ex.id for ex in examples],
        flat,
        offsets,
        np.array(len_a, dtype=np.int32),
        labels,
        hashes,
    )


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's full definition (vocabulary, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Each call with truncation=True leaves its truncation (and padding) settings in the
        # backend's JSON; they are per-call state, not the tokenizer, so they stay out of the key.
        definition = json.loads(backend.to_str())
        definition.pop("truncation", None)
        definition.pop("padding", None)
        text = json.dumps(definition, sort_keys=True)
    else:
        text = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_fingerprint(spec: TaskSpec, split: str, data_dir: str | Path | None) -> str:
    """What identifies the data of a split: the SHA-256 of its file (or of its Parquet files or
    save_to_disk folder), or a hub dataset's own fingerprint. Keys the token cache."""
    if spec.format in TABLE_FORMATS:
        from bamkd.tasks.tables import table_fingerprint

        return table_fingerprint(spec, split, data_dir)
    source = split_path(spec, split, data_dir)
    return file_digest(source) if source.is_file() else str(source)


def load_encoded(
    spec: TaskSpec,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    data_dir: str | Path | None,
    limit: int | None = None,
    double: bool = False,
    cache_dir: str | Path | None = None,
) -> Encoded:
    """Read, optionally double, tokenize and cache one split; reuse the cache when it is valid."""
    key_parts = {
        "version": CACHE_VERSION,
        "spec": spec.to_dict(),
        "split": split,
        "file": split_fingerprint(spec, split, data_dir),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
        "limit": limit,
        "double": double,
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / "tokens" / f"{spec.name}-{split}-{key}.safetensors"
    if path.is_file():
        try:
            return _read_cache(path, spec.name, split)
        except Exception as exc:  # a truncated or corrupted cache is rebuilt, never trusted
            log.warning("token cache %s is unreadable (%s); rebuilding it", path, exc)
    examples = read_split(spec, split, data_dir, limit=limit)
    if double:
        examples = list(examples) + swapped(examples)
    encoded = encode_examples(examples, tokenizer, max_length, spec.name, split)
    _write_cache(path, encoded)
    return encoded


def load_training_split(
    spec: TaskSpec, data: DataConfig, tokenizer: PreTrainedTokenizerBase
) -> Encoded:
    """A task's training split as a run with ``data`` trains on it (limit, doubling, cache)."""
    return load_encoded(
        spec,
        "train",
        tokenizer,
        data.max_seq_length,
        data_dir=data.glue_dir,
        limit=data.train_limit,
        double=spec.symmetric and data.double_unordered,
        cache_dir=data.cache_dir,
    )


def _write_cache(path: Path, enc: Encoded) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "input_ids": enc.input_ids,
        "offsets": enc.offsets,
        "len_a": enc.len_a,
        "labels": enc.labels,
        "content_hash": enc.content_hash,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ids": json.dumps(enc.ids)})


def _read_cache(path: Path, task: str, split: str) -> Encoded:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        ids = json.loads((f.metadata() or {})["ids"])
    t = load_file(str(path))
    enc = Encoded(
        task, split, ids, t["input_ids"], t["offsets"], t["len_a"], t["labels"], t["content_hash"]
    )
    if len(enc.offsets) != len(ids) + 1 or enc.offsets[-1] != len(enc.input_ids):
        raise ValueError("inconsistent arrays")
    return enc


def padding_settings(tokenizer: PreTrainedTokenizerBase) -> tuple[int, bool]:
    """(pad token id, whether the encoder takes token_type_ids): what `ExampleStore` and the
    evaluation and prediction paths need from a tokenizer. A tokenizer without a pad token pads
    with 0 (its rows are masked out by the attention mask anyway)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_id, "token_type_ids" in tokenizer.model_input_names


class ExampleStore:
    """Several tasks' encoded splits, concatenated, with optional per-row teacher targets.

    Rows are addressed by their index in the concatenation; ``batch(rows)`` pads them into
    tensors. Teacher targets are probabilities (classification, padded with 0 to the widest
    task) or a [0, 1] score (regression), NaN where a row has no teacher.
    """

    def __init__(
        self,
        parts: Sequence[Encoded],
        task_names: Sequence[str],
        pad_id: int,
        use_token_types: bool,
        teacher: Sequence[np.ndarray | None] | None = None,
        max_outputs: int = 1,
    ) -> None:
        self.parts = list(parts)
        self.task_names = list(task_names)
        self.pad_id = pad_id
        self.use_token_types = use_token_types
        self.input_ids = np.concatenate([p.input_ids for p in parts])
        starts = np.cumsum([0] + [len(p.input_ids) for p in parts[:-1]])
        self.offsets = np.concatenate(
            [p.offsets[:-1] + s for p, s in zip(parts, starts)] + [[len(self.input_ids)]]
        ).astype(np.int64)
        self.len_a = np.concatenate([p.len_a for p in parts])
        self.labels = np.concatenate([p.labels for p in parts])
        self.task_ids = np.concatenate(
            [np.full(len(p), self.task_names.index(p.task), dtype=np.int64) for p in parts]
        )
        self.teacher: np.ndarray | None = None
        if teacher is not None and any(t is not None for t in teacher):
            rows = []
            for p, t in zip(parts, teacher):
                block = np.full((len(p), max_outputs), np.nan, dtype=np.float32)
                if t is not None:
                    block[:, : t.shape[1]] = t
                rows.append(block)
            self.teacher = np.concatenate(rows)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Pad ``rows`` to their longest member and return model inputs and targets."""
        lens = self.lengths[rows]
        width = int(lens.max())
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : lens[i]] = self.input_ids[self.offsets[r] : self.offsets[r + 1]]
        positions = np.arange(width)[None, :]
        out = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy((positions < lens[:, None]).astype(np.int64)),
            "labels": torch.from_numpy(self.labels[rows]),
            "task_ids": torch.from_numpy(self.task_ids[rows]),
        }
        if self.use_token_types:
            seg_b = (positions >= self.len_a[rows][:, None]) & (positions < lens[:, None])
            out["token_type_ids"] = torch.from_numpy(seg_b.astype(np.int64))
        if self.teacher is not None:
            out["teacher"] = torch.from_numpy(self.teacher[rows])
        return out

    def packed_batches(
        self, rows: np.ndarray, capacity: int, first_position: int = 0
    ) -> list[dict[str, torch.Tensor]]:
        """``rows`` as packed batches, one per row width (bamkd.packing.row_tiers)."""
        return [
            self.packed_batch(rows[members], width, first_position)
            for width, members in row_tiers(self.lengths[rows], capacity)
        ]

    def packed_batch(
        self, rows: np.ndarray, capacity: int, first_position: int = 0
    ) -> dict[str, torch.Tensor]:
        """``rows`` packed into rows of at most ``capacity`` tokens (bamkd.packing).

        Besides the inputs, ``example_starts`` holds each example's first token as a flat index
        into the [R, W] grid and ``segments`` each token's example (-1: padding). Labels, task
        ids and teacher targets keep the order of ``rows``, as in :meth:`batch`.
        """
        lens = self.lengths[rows]
        layout = pack_layout(lens, capacity)
        ids = np.full((layout.rows, layout.width), self.pad_id, dtype=np.int64)
        positions = np.zeros((layout.rows, layout.width), dtype=np.int64)
        segments = np.full((layout.rows, layout.width), -1, dtype=np.int64)
        types = np.zeros((layout.rows, layout.width), dtype=np.int64)
        for i, r in enumerate(rows):
            row, col, n = layout.row[i], layout.start[i], lens[i]
            ids[row, col : col + n] = self.input_ids[self.offsets[r] : self.offsets[r + 1]]
            positions[row, col : col + n] = np.arange(first_position, first_position + n)
            segments[row, col : col + n] = i
            types[row, col + self.len_a[r] : col + n] = 1
        out = {
            "input_ids": torch.from_numpy(ids),
            "position_ids": torch.from_numpy(positions),
            "segments": torch.from_numpy(segments),
            "example_starts": torch.from_numpy(layout.row * layout.width + layout.start),
            "labels": torch.from_numpy(self.labels[rows]),
            "task_ids": torch.from_numpy(self.task_ids[rows]),
        }
        if self.use_token_types:
            out["token_type_ids"] = torch.from_numpy(types)
        if self.teacher is not None:
            out["teacher"] = torch.from_numpy(self.teacher[rows])
        return out
