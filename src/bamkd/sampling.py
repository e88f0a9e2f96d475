"""Task weighting and the order in which training examples are visited.

The paper trains on task tau with probability proportional to |D_tau|^0.75. The authors' code
realises this with integer dataset copies ("multiples") and per-task loss weights so that each
task's total loss mass is exactly proportional to |D|^0.75 (BAM_SPEC.md, "Task weighting").
``bam_task_weights`` is that algorithm, as a pure function of the sizes actually loaded;
``reference_task_weights`` is the same algorithm on the authors' fixed table of the eight GLUE
training sets, which they used whatever subset they trained. On a subset the two differ: from the
loaded sizes of CoLA, SST-2, MRPC, STS-B and RTE every multiple rounds to 1, while the table keeps
the paper's exposure (CoLA 3, SST-2 2, MRPC 3, STS-B 2, RTE 4 copies per epoch).

The order of one epoch is a pure function of (seed, epoch): resuming at step k only needs k, and
every process of a multi-process run computes the same global batches and takes its own share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskWeighting:
    """How often each task's examples appear per epoch and how much their loss counts."""

    multiples: dict[str, int]
    """Copies of each task's training set in one epoch."""
    loss_weights: dict[str, float]
    """Factor on each example's loss."""
    probabilities: dict[str, float] | None = None
    """For sampled weighting: probability of drawing an example of each task."""


def bam_task_weights(sizes: Mapping[str, int], exponent: float = 0.75) -> TaskWeighting:
    """The authors' multiples + loss weights (BAM_SPEC.md), computed from ``sizes``.

    w_t = s_t^e / sum s^e; target size t_t = w_t * s_max / w_max; multiple m_t =
    round((t_t + 0.01) / s_t); loss weight_t = K * normalise(w_t / (s_t * m_t)).
    The task mass s_t * m_t * weight_t is then proportional to s_t^e.
    """
    _check_sizes(sizes)
    names = list(sizes)
    total = sum(s**exponent for s in sizes.values())
    w = {t: sizes[t] ** exponent / total for t in names}
    largest = max(names, key=lambda t: sizes[t])
    scale = sizes[largest] / w[largest]
    multiples = {t: max(1, round((w[t] * scale + 0.01) / sizes[t])) for t in names}
    raw = {t: w[t] / (sizes[t] * multiples[t]) for t in names}
    norm = sum(raw.values())
    loss_weights = {t: len(names) * raw[t] / norm for t in names}
    return TaskWeighting(multiples, loss_weights)


REFERENCE_GLUE_SIZES: dict[str, int] = {
    "cola": 8551,
    "mnli": 392702,
    "mrpc": 7336,
    "qnli": 108436,
    "qqp": 363869,
    "sst2": 67349,
    "stsb": 11498,
    "rte": 2490,
}
"""Training-set sizes the authors' code hard-codes (MRPC and STS-B after sentence-swap
doubling; QNLI and QQP as in the GLUE release they used)."""


def reference_task_weights(tasks: Sequence[str], exponent: float = 0.75) -> TaskWeighting:
    """The authors' multiples and loss weights for ``tasks``, from the eight-task GLUE table.

    Computed over all eight tasks and then read for ``tasks``, as their code does: a subset
    keeps each task's copies per epoch and per-example loss weight of the full GLUE run.
    """
    unknown = [t for t in tasks if t not in REFERENCE_GLUE_SIZES]
    if unknown:
        raise ValueError(
            f"train.task_weighting=reference covers the eight GLUE training tasks "
            f"({', '.join(REFERENCE_GLUE_SIZES)}), not {unknown[0]!r}; use task_weighting=bam "
            "or give train.task_multiples"
        )
    full = bam_task_weights(REFERENCE_GLUE_SIZES, exponent)
    return TaskWeighting(
        {t: full.multiples[t] for t in tasks}, {t: full.loss_weights[t] for t in tasks}
    )


def with_multiples(
    sizes: Mapping[str, int], multiples: Mapping[str, int], exponent: float = 0.75
) -> TaskWeighting:
    """Given copies per epoch, loss weights that keep each task's mass proportional to s^e.

    Tasks not in ``multiples`` keep the |D|^exponent multiple computed from ``sizes``.
    """
    base = bam_task_weights(sizes, exponent)
    chosen = {t: int(multiples.get(t, base.multiples[t])) for t in sizes}
    w = {t: s**exponent for t, s in sizes.items()}
    raw = {t: w[t] / (sizes[t] * chosen[t]) for t in sizes}
    norm = sum(raw.values())
    return TaskWeighting(chosen, {t: len(sizes) * raw[t] / norm for t in sizes})


def concat_task_weights(sizes: Mapping[str, int]) -> TaskWeighting:
    """Plain concatenation: every example once per epoch, equal loss weights."""
    _check_sizes(sizes)
    return TaskWeighting({t: 1 for t in sizes}, {t: 1.0 for t in sizes})


def proportional_task_weights(sizes: Mapping[str, int], temperature: float = 1.0) -> TaskWeighting:
    """Sample tasks with probability proportional to |D|^(1/temperature) (T=1: by size)."""
    _check_sizes(sizes)
    total = sum(s ** (1.0 / temperature) for s in sizes.values())
    probs = {t: s ** (1.0 / temperature) / total for t, s in sizes.items()}
    return TaskWeighting({t: 1 for t in sizes}, {t: 1.0 for t in sizes}, probs)


def make_task_weighting(
    kind: str,
    sizes: Mapping[str, int],
    exponent: float = 0.75,
    temperature: float = 1.0,
    multiples: Mapping[str, int] | None = None,
) -> TaskWeighting:
    """The weighting ``kind`` for tasks of ``sizes``; ``multiples`` override copies per epoch."""
    extra = sorted(set(multiples or {}) - set(sizes))
    if extra:
        raise ValueError(
            f"train.task_multiples names {extra[0]!r}, which is not trained ({', '.join(sizes)})"
        )
    if multiples and kind not in ("bam", "reference"):
        raise ValueError(f"train.task_multiples needs task_weighting bam or reference, not {kind}")
    if kind == "bam":
        if multiples:
            return with_multiples(sizes, multiples, exponent)
        return bam_task_weights(sizes, exponent)
    if kind == "reference":
        ref = reference_task_weights(list(sizes), exponent)
        if not multiples:
            return ref
        chosen = {**ref.multiples, **multiples}
        return with_multiples(sizes, chosen, exponent)
    if kind == "concat":
        return concat_task_weights(sizes)
    if kind == "proportional":
        return proportional_task_weights(sizes, temperature)
    raise ValueError(f"unknown task weighting {kind!r}")


def _check_sizes(sizes: Mapping[str, int]) -> None:
    if not sizes or any(s <= 0 for s in sizes.values()):
        raise ValueError(f"every task needs at least one training example, got sizes {dict(sizes)}")


class BatchPlan:
    """Deterministic global batches over the concatenated training examples of all tasks.

    Examples are addressed by their row in the concatenation (task blocks in ``sizes`` order).
    ``epoch_batches(e)`` depends only on the seed and ``e``, which is what makes exact resume
    and identical multi-process batches possible without storing any sampler state.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        weighting: TaskWeighting,
        batch_size: int,
        seed: int,
        lengths: np.ndarray | None = None,
        length_grouped: bool = False,
    ) -> None:
        self.tasks = list(sizes)
        self.sizes = [sizes[t] for t in self.tasks]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.weighting = weighting
        self.batch_size = batch_size
        self.seed = seed
        self.lengths = lengths
        self.length_grouped = length_grouped and lengths is not None
        self.epoch_size = sum(s * weighting.multiples[t] for t, s in zip(self.tasks, self.sizes))
        # The last partial batch is kept: with small tasks dropping it would lose whole examples.
        self.batches_per_epoch = math.ceil(self.epoch_size / batch_size)
        self._cached: tuple[int, list[np.ndarray]] | None = None

    def total_steps(self, epochs: float) -> int:
        # Round away float noise first: 1.1 * 100 is 110.00000000000001, which must give 110.
        return max(1, math.ceil(round(epochs * self.batches_per_epoch, 6)))

    def _epoch_rows(self, rng: np.random.Generator) -> np.ndarray:
        if self.weighting.probabilities is not None:
            probs = np.array([self.weighting.probabilities[t] for t in self.tasks])
            task_of = rng.choice(len(self.tasks), size=self.epoch_size, p=probs)
            within = rng.random(self.epoch_size)
            sizes = np.array(self.sizes)
            return self.offsets[task_of] + (within * sizes[task_of]).astype(np.int64)
        rows = [
            np.tile(np.arange(self.offsets[i], self.offsets[i + 1]), self.weighting.multiples[t])
            for i, t in enumerate(self.tasks)
        ]
        return rng.permutation(np.concatenate(rows))

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of one epoch, each an array of concatenated-row indices."""
        rng = np.random.default_rng([self.seed, epoch])
        rows = self._epoch_rows(rng)
        bs = self.batch_size
        if not self.length_grouped:
            return [rows[i : i + bs] for i in range(0, len(rows), bs)]
        assert self.lengths is not None
        # Sort within mega-chunks of 50 batches (as Hugging Face's group_by_length does), then
        # shuffle the batches. Batches hold similar lengths, and so, in a multi-task run, mostly
        # one task: tasks differ in length (CoLA ~11 tokens, RTE ~70), so sorting by length
        # sorts by task. Mixed batches, as the paper trains, need length_grouped off.
        chunk = bs * 50
        batches: list[np.ndarray] = []
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches.extend(part[i : i + bs] for i in range(0, len(part), bs))
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def rows_at(self, step: int) -> np.ndarray:
        """The global batch of optimiser step ``step`` (0-based), as concatenated-row indices.

        Step k is batch ``k % batches_per_epoch`` of epoch ``k // batches_per_epoch``; the last
        epoch's batches are kept, so walking the steps in order computes each epoch once.
        """
        epoch, index = divmod(step, self.batches_per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self.epoch_batches(epoch))
        return self._cached[1][index]

    def task_index(self, rows: np.ndarray) -> np.ndarray:
        """Task index of each concatenated row."""
        return np.searchsorted(self.offsets, rows, side="right") - 1


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of a global batch (strided, so lengths stay balanced)."""
    return batch[rank::world_size]


def split_micro(batch: np.ndarray, parts: int) -> Sequence[np.ndarray]:
    """Split a (local) batch into ``parts`` micro-batches for gradient accumulation."""
    return [p for p in np.array_split(batch, parts) if len(p)]
