"""The experiment variants, one registry: each variant's name, label, description and plan.

Everything that lists variants reads `VARIANTS`: an experiment's ``variants`` and ``--only`` are
checked against it, the report takes its row labels and row order from it (registry order), and
the README's variants table is generated from it (`markdown_table`, kept current by a test).
Adding a variant is one entry here: a plan function that adds its runs through the `Planner`'s
building blocks (`bamkd.experiments.pipeline`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bamkd.experiments.pipeline import Planner


@dataclass(frozen=True)
class Variant:
    """One model the paper (or a study of ours) compares."""

    name: str
    """The name an experiment's ``variants`` uses; run ids start with it."""
    label: str
    """The row label in the report's tables."""
    what: str
    """One line for the README and error messages."""
    plan: Callable[[Planner, int], None]
    """Adds this variant's runs of one experiment seed (shared runs, e.g. teachers, once)."""
    pairs: bool = False
    """A task-combination variant: needs ``pairs_target``, reported in its own table."""
    sized: bool = False
    """A smaller-student variant: one run per seed and per entry of the experiment's
    ``student_sizes`` (run ids ``<name>/<size>/seed<n>``), one report row per size."""


def _single(p: Planner, seed: int) -> None:
    for task in p.exp.tasks:
        p.single(task, seed)


def _multi(p: Planner, seed: int) -> None:
    p.multi(seed)


def _single_single(p: Planner, seed: int) -> None:
    for task in p.exp.tasks:
        p.student(
            f"single_single/{task}/seed{seed}",
            "single_single",
            [task],
            seed,
            {task: p.single(task, seed)},
            p.exp.single,
        )


def _multi_multi(p: Planner, seed: int) -> None:
    teacher = p.multi(seed)
    tasks = p.exp.tasks
    p.student(
        f"multi_multi/seed{seed}",
        "multi_multi",
        tasks,
        seed,
        {t: teacher for t in tasks},
        p.exp.multi,
    )


def _bam(p: Planner, seed: int) -> None:
    p.bam(seed)


def _bam_rounds(p: Planner, seed: int) -> None:
    first = p.bam(seed)
    singles = {
        t: p.student(
            f"bam_rounds/round2_single/{t}/seed{seed}",
            "bam_rounds_single",
            [t],
            seed,
            {t: first},
            p.exp.single,
        )
        for t in p.exp.tasks
    }
    p.student(f"bam_rounds/seed{seed}", "bam_rounds", p.exp.tasks, seed, singles, p.exp.multi)


def _finetuned(source: Callable[[Planner, int], str], name: str) -> Callable[[Planner, int], None]:
    """A multi-task model (``source``'s run) fine-tuned further on each task alone."""

    def plan(p: Planner, seed: int) -> None:
        run = source(p, seed)
        for task in p.exp.tasks:
            p.finetune(run, name, task, seed)

    return plan


def _bam_with(name: str, extra: dict | None = None, **kwargs) -> Callable[[Planner, int], None]:
    """BAM with one departure from its settings (``extra``: run config sections)."""

    def plan(p: Planner, seed: int) -> None:
        p.bam(seed, run_id=f"{name}/seed{seed}", variant=name, extra=extra, **kwargs)

    return plan


def _pairs(kind: str) -> Callable[[Planner, int], None]:
    """The target task trained with each other task, as Multi or as BAM."""

    def plan(p: Planner, seed: int) -> None:
        target = p.exp.pairs_target
        assert target is not None  # Experiment checks pairs_target for pairs variants
        for partner in p.exp.tasks:
            if partner == target:
                continue
            tasks = [target, partner]
            run_id = f"pairs_{kind}/{target}+{partner}/seed{seed}"
            if kind == "multi":
                p.add(run_id, "pairs_multi", tasks, seed, p.exp.multi)
            else:
                p.bam(seed, tasks=tasks, run_id=run_id, variant="pairs_bam")

    return plan


def _small(kind: str) -> Callable[[Planner, int], None]:
    """A smaller multi-task student per entry of ``student_sizes``: gold labels only (Multi) or
    distilled from the full-size single-task teachers (BAM)."""

    def plan(p: Planner, seed: int) -> None:
        for size, model in p.exp.student_sizes.items():
            run_id = f"{kind}_small/{size}/seed{seed}"
            extra = {"model": dict(model)}
            if kind == "multi":
                p.add(run_id, "multi_small", p.exp.tasks, seed, p.exp.multi, extra, size=size)
            else:
                p.bam(seed, run_id=run_id, variant="bam_small", extra=extra, size=size)

    return plan


_ALL = (
    Variant("single", "Single", "one model per task, gold labels", _single),
    Variant("multi", "Multi", "one multi-task model, gold labels", _multi),
    Variant(
        "single_single",
        "Single->Single",
        "born-again single-task models (a task's single model teaches a fresh one)",
        _single_single,
    ),
    Variant(
        "multi_multi",
        "Multi->Multi",
        "a Multi model teaches a fresh multi-task model",
        _multi_multi,
    ),
    Variant(
        "bam",
        "Single->Multi (BAM)",
        "single-task teachers → multi-task student with teacher annealing",
        _bam,
    ),
    Variant(
        "bam_rounds",
        "Single->Multi->Single->Multi",
        "BAM teaches single-task models, which teach a new multi-task student",
        _bam_rounds,
    ),
    Variant(
        "multi_ft",
        "Multi + fine-tune",
        "Multi fine-tuned further on each task",
        _finetuned(lambda p, seed: p.multi(seed), "multi_ft"),
    ),
    Variant(
        "bam_ft",
        "BAM + fine-tune",
        "BAM fine-tuned further on each task",
        _finetuned(lambda p, seed: p.bam(seed), "bam_ft"),
    ),
    # The paper's ablations.
    Variant(
        "bam_no_anneal",
        "BAM, no teacher annealing",
        "ablation: constant teacher weight `distill.weight` instead of annealing",
        _bam_with("bam_no_anneal", {"distill": {"schedule": "constant"}}),
    ),
    Variant(
        "bam_no_layerwise",
        "BAM, no layer-wise LR",
        "ablation: no layer-wise learning rates",
        _bam_with("bam_no_layerwise", {"train": {"layerwise_decay": 1.0}}),
    ),
    Variant(
        "bam_no_weighting",
        "BAM, no task weighting",
        "ablation: no task weighting (plain concatenation)",
        _bam_with("bam_no_weighting", {"train": {"task_weighting": "concat"}}),
    ),
    # One departure each from the faithful configuration (BENCHMARKS.md, the faithful study).
    Variant(
        "bam_grouped",
        "BAM, length-grouped batches",
        "BAM on length-grouped batches (tasks sorted into length buckets)",
        _bam_with("bam_grouped", {"data": {"length_grouped": True, "packing": False}}),
    ),
    Variant(
        "bam_loaded_multiples",
        "BAM, multiples from loaded sizes",
        "BAM with size^0.75 multiples from the loaded sizes",
        _bam_with("bam_loaded_multiples", {"train": {"task_weighting": "bam"}}),
    ),
    Variant(
        "bam_sigmoid_head",
        "BAM, sigmoid STS-B head",
        "BAM with a sigmoid regression head (the paper's text)",
        _bam_with("bam_sigmoid_head", {"model": {"regression_head": "sigmoid"}}),
    ),
    Variant(
        "bam_linear_head",
        "BAM, linear STS-B head",
        "BAM with a linear regression head (the authors' code)",
        _bam_with("bam_linear_head", {"model": {"regression_head": "linear"}}),
    ),
    Variant(
        "bam_same_seed",
        "BAM, student seed = teacher seed",
        "BAM whose student trains on its teachers' seed",
        _bam_with("bam_same_seed", seed_offset=0),
    ),
    # Beyond the paper: a multi-task student smaller than its teachers.
    Variant(
        "multi_small",
        "Multi small",
        "Multi with a smaller encoder, one per `student_sizes` entry (e.g. a layer subset)",
        _small("multi"),
        sized=True,
    ),
    Variant(
        "bam_small",
        "BAM small",
        "BAM into a smaller student, one per `student_sizes` entry; full-size teachers",
        _small("bam"),
        sized=True,
    ),
    Variant(
        "pairs_multi",
        "Multi on the pair",
        "Multi on `pairs_target` paired with each other task",
        _pairs("multi"),
        pairs=True,
    ),
    Variant(
        "pairs_bam",
        "BAM on the pair",
        "BAM on `pairs_target` paired with each other task",
        _pairs("bam"),
        pairs=True,
    ),
)

VARIANTS: dict[str, Variant] = {v.name: v for v in _ALL}
"""Every variant by name, in the order of the report's results table."""

TABLE_ORDER: list[str] = [v.name for v in _ALL if not v.pairs]
"""Rows of the results table; the pairs variants have a table of their own."""


def variant_label(name: str) -> str:
    """A variant's row label; the name itself for a run-level name such as bam_rounds_single."""
    return VARIANTS[name].label if name in VARIANTS else name


def is_sized(name: str) -> bool:
    """Whether runs of this variant come in the experiment's ``student_sizes``."""
    return name in VARIANTS and VARIANTS[name].sized


def row_key(variant: str, size: str | None) -> str:
    """The report row of a run: its variant, or ``variant/size`` for a smaller student."""
    return f"{variant}/{size}" if size else variant


def row_label(key: str) -> str:
    """A report row's label: the variant's label, then the size in brackets (``BAM small (l3)``)."""
    variant, _, size = key.partition("/")
    return f"{variant_label(variant)} ({size})" if size else variant_label(variant)


def is_pairs(name: str) -> bool:
    """Whether runs of this variant train a target task with one partner task."""
    return name in VARIANTS and VARIANTS[name].pairs


def markdown_table() -> str:
    """The README's variants table (tests/unit/test_registries.py keeps the README current)."""
    rows = ["| variant | what |", "| --- | --- |"]
    rows += [f"| `{v.name}` | {v.what} |" for v in _ALL]
    return "\n".join(rows)
