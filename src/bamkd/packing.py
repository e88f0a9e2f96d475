"""Padding-free batches: several examples share one row, each attending only to itself.

A mixed multi-task batch padded to its longest member wastes most of its compute (CoLA's
11-token sentences padded to RTE's 128). Packing places examples back to back in rows of at
most ``capacity`` tokens (first-fit decreasing) and gives the encoder what keeps every example
separate: a block-diagonal attention mask, position ids (and token types) that restart at each
example, and the position of each example's first token, from which the pooler and heads read.
The logits equal those of the padded batch (tests/unit/test_packing.py). Attention over a row
costs row_width^2 whatever it holds, so a batch is packed in tiers of rows 128, 64 and 32 tokens
wide, one forward pass each (``row_tiers``); the step's gradient is their sum, as for one padded
batch. Measured on the study's mixed batches (MiniLM, bf16, one core, CPU time per real token):
one tier of 128 0.626 ms, tiers down to 64 0.559, to 32 0.552, to 16 0.590 (the fourth pass
costs more than it saves). Plain length buckets (each example in the narrowest row that fits,
packed apart) lose: two examples of 40 tokens cannot share a row of 64, and the padding (15-29%)
costs more than the attention saved.

Which encoders can take packed input is a property of their embedding code: they must accept
``position_ids`` and a ready 4D attention mask. ``packing_support`` says so for an encoder, or
why not, so a run can fall back to padding with one message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PACKABLE_MODEL_TYPES = {"bert": 0, "electra": 0, "roberta": None, "xlm-roberta": None}
"""Encoder families whose embeddings take explicit position ids and whose attention takes a 4D
mask, with the first position id (None: the config's pad_token_id + 1, as RoBERTa counts)."""


def first_fit_decreasing(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Bins of example indices whose lengths sum to at most ``capacity``, longest first.

    Deterministic (a stable sort), so every process and every resume packs a batch the same
    way. First-fit decreasing uses at most 11/9 of the optimal number of rows plus one.
    """
    if len(lengths) and int(lengths.max()) > capacity:
        raise ValueError(f"an example of {int(lengths.max())} tokens exceeds the row of {capacity}")
    order = np.argsort(-lengths, kind="stable")
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = int(lengths[i])
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(int(i))
                room[b] -= n
                break
        else:
            bins.append([int(i)])
            room.append(capacity - n)
    return bins


def row_tiers(
    lengths: np.ndarray, capacity: int, narrowest: int = 32
) -> list[tuple[int, np.ndarray]]:
    """Split a batch into (row width, example indices) tiers: capacity, capacity/2, ...

    Attention over a packed row costs width^2 whatever the row holds, so short examples are
    cheaper in narrow rows. But narrow rows alone pack badly (two examples of 40 tokens cannot
    share a row of 64). So each tier is built around the examples only it can hold (longer than
    the next tier's width), one to a row, and the rest of every such row is filled, first fit,
    with the longest remaining examples that fit; what is left goes down a tier. The narrowest
    tier packs everything left. Each tier is one forward pass; together they usually cost about
    as many token positions as one wide pass and less attention. Where they would cost more
    (mid-length examples that fill narrow rows badly: a single-task MRPC batch pads 13% in
    tiers, 2% in one), the batch stays one tier of ``capacity``.
    """
    tiers = _anchored_tiers(lengths, capacity, narrowest)
    if [w for w, _ in tiers] != [capacity]:
        tiered = sum(_positions(lengths[m], w) for w, m in tiers)
        if tiered > TIER_PADDING_ALLOWANCE * _positions(lengths, capacity):
            return [(capacity, np.arange(len(lengths), dtype=np.int64))]
    return tiers


TIER_PADDING_ALLOWANCE = 1.02
"""Tiers are used when they compute at most this many times the token positions of one tier."""


def _positions(lengths: np.ndarray, width: int) -> int:
    layout = pack_layout(lengths, width)
    return layout.rows * layout.width


def _anchored_tiers(
    lengths: np.ndarray, capacity: int, narrowest: int
) -> list[tuple[int, np.ndarray]]:
    widths = [capacity]
    while widths[-1] // 2 >= narrowest:
        widths.append(widths[-1] // 2)
    remaining = [int(i) for i in np.argsort(-lengths, kind="stable")]
    tiers: list[tuple[int, np.ndarray]] = []
    for k, width in enumerate(widths):
        if not remaining:
            break
        if k == len(widths) - 1:
            tiers.append((width, np.array(sorted(remaining), dtype=np.int64)))
            break
        anchors = [i for i in remaining if lengths[i] > widths[k + 1]]
        if not anchors:
            continue
        room = [width - int(lengths[i]) for i in anchors]
        members = list(anchors)
        left = []
        for i in remaining[len(anchors) :]:  # remaining is longest first: anchors lead it
            n = int(lengths[i])
            for r, free in enumerate(room):
                if n <= free:
                    room[r] -= n
                    members.append(i)
                    break
            else:
                left.append(i)
        tiers.append((width, np.array(sorted(members), dtype=np.int64)))
        remaining = left
    return tiers


@dataclass(frozen=True)
class PackedLayout:
    """Where each example of a batch sits in the packed rows."""

    row: np.ndarray  # int64 [n]: row of example i
    start: np.ndarray  # int64 [n]: column of its first token
    rows: int
    width: int


def pack_layout(lengths: np.ndarray, capacity: int) -> PackedLayout:
    """Place examples of ``lengths`` into rows; the width is the fullest row (not capacity)."""
    bins = first_fit_decreasing(lengths, capacity)
    row = np.empty(len(lengths), dtype=np.int64)
    start = np.empty(len(lengths), dtype=np.int64)
    width = 0
    for r, members in enumerate(bins):
        col = 0
        for i in members:
            row[i], start[i] = r, col
            col += int(lengths[i])
        width = max(width, col)
    return PackedLayout(row, start, len(bins), width)


def block_diagonal_mask(segments: torch.Tensor) -> torch.Tensor:
    """[R, 1, W, W] boolean mask (True: attend) from per-token example ids (-1: padding).

    Padding positions attend to themselves only, so no softmax row is empty (an all-masked
    row gives NaN in some kernels); nothing reads their outputs.
    """
    same = segments[:, :, None] == segments[:, None, :]
    pad = segments < 0
    eye = torch.eye(segments.shape[1], dtype=torch.bool, device=segments.device)
    same = torch.where(pad[:, :, None], eye, same & ~pad[:, None, :])
    return same[:, None]


def first_position(model_type: str, config) -> int | None:
    """The position id of a sequence's first token for a packable family, else None."""
    if model_type not in PACKABLE_MODEL_TYPES:
        return None
    offset = PACKABLE_MODEL_TYPES[model_type]
    if offset is None:
        offset = int(getattr(config, "pad_token_id", 0) or 0) + 1
    return offset


def packing_support(encoder: nn.Module) -> str | None:
    """None when ``encoder`` can take packed rows, else the reason it cannot."""
    config = getattr(encoder, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKABLE_MODEL_TYPES:
        known = ", ".join(sorted(PACKABLE_MODEL_TYPES))
        return f"packed batches are implemented for {known} encoders, not {model_type!r}"
    attention = getattr(config, "_attn_implementation", None)
    if attention not in (None, "eager", "sdpa", "bamkd_fast_dropout"):
        return f"attention implementation {attention!r} does not take a block-diagonal mask"
    return None
