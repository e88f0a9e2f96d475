"""Reports a person reads: the paper-style results table, significance tests and plots.

For an experiment: variant x task table of dev scores (median over seeds, spread), the paper's
average, Mann-Whitney U tests of BAM against Single and Multi, the task-combination table, every
model's size, training time and inference speed beside its quality, a per-task comparison plot
and training curves (lambda, learning rate, per-task losses). For a single run: its training
curves and dev metrics. Everything is written atomically as CSV, markdown and PNG. A smaller
student has one row per size (``BAM small (l3)``): rows are keyed by
`bamkd.experiments.variants.row_key`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bamkd.errors import BamkdError
from bamkd.experiments.speed import (
    SpeedSettings,
    measure_missing,
    measure_when_idle,
    read_speed,
    saved_size,
)
from bamkd.experiments.stats import mann_whitney, smallest_p_value, summarize
from bamkd.experiments.variants import (
    TABLE_ORDER,
    VARIANTS,
    is_pairs,
    row_key,
    row_label,
    variant_label,
)
from bamkd.metrics import task_score
from bamkd.runtime.manifest import MANIFEST_NAME
from bamkd.runtime.runs import DEV_METRICS_NAME, PLAN_NAME, is_finished, training_seconds
from bamkd.runtime.storage import atomic_path, read_json, write_text
from bamkd.runtime.tracking import read_metrics

log = logging.getLogger(__name__)

EXCLUDED_FROM_AVERAGE = ("wnli", "ax")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


# --------------------------------------------------------------------------------------------
# Collecting scores
# --------------------------------------------------------------------------------------------


def collect_scores(runs: Sequence[Any]) -> dict[str, dict[str, dict[int, float]]]:
    """scores[row][task][seed] = task score (fraction) from each finished run's dev metrics.

    ``runs`` are planned runs (id, variant, tasks, seed, folder, optionally size); the row is
    the variant, or ``variant/size`` for a smaller student (`bamkd.experiments.variants.row_key`).
    """
    scores: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for run, row, column, task_metrics in _finished_scores(runs):
        scores[row][column][run.seed] = task_score(task_metrics)
    return scores


def _finished_scores(runs: Sequence[Any]) -> Iterator[tuple[Any, str, str, dict[str, float]]]:
    """(run, report row, table column, the task's dev metrics) for every finished run's tasks.

    A pairs run counts for its target task alone, in the column ``target+partner``.
    """
    for run in runs:
        if not is_finished(run.folder):
            continue
        metrics = read_json(Path(run.folder) / DEV_METRICS_NAME)
        if is_pairs(run.variant):
            target, partner = run.tasks[0], run.tasks[1]
            if target in metrics:
                yield run, run.variant, f"{target}+{partner}", metrics[target]
            continue
        for task in run.tasks:
            if task in metrics:
                yield run, _row(run), task, metrics[task]


RUN_SCORE_COLUMNS = (
    "run",
    "row",
    "seed",
    "task",
    "score",
    "metrics",
    "training_minutes",
    "git_commit",
)


def write_run_scores(runs: Sequence[Any], path: Path) -> None:
    """One row per finished run and table cell: the numbers the score and p-value tables use.

    Run folders are large and live outside git; this file is small enough to commit beside a
    study's write-up, so its medians and p-values can be recomputed after the runs are gone.
    """
    rows: list[list[Any]] = [list(RUN_SCORE_COLUMNS)]
    per_run: dict[str, tuple[float, str]] = {}  # a multi-task run's folder is read once
    for run, row, column, task_metrics in _finished_scores(runs):
        if run.id not in per_run:
            minutes = round(training_seconds(run.folder) / 60, 2)
            per_run[run.id] = (minutes, _git_commit(Path(run.folder)))
        minutes, commit = per_run[run.id]
        rows.append(
            [
                run.id,
                row,
                run.seed,
                column,
                task_score(task_metrics),
                json.dumps(task_metrics, sort_keys=True),
                minutes,
                commit,
            ]
        )
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    write_text(path, buf.getvalue())


def _git_commit(run_dir: Path) -> str:
    """The commit the run's manifest recorded ('' when it has none or cannot be read)."""
    try:
        manifest = read_json(run_dir / MANIFEST_NAME)
    except BamkdError:
        return ""
    return str(manifest.get("git_commit") or "") if isinstance(manifest, dict) else ""


def _row(run: Any) -> str:
    # plan.json files written before smaller students have no size
    return row_key(run.variant, getattr(run, "size", None))


def table_rows(keys: Sequence[str], sizes: Sequence[str] = ()) -> list[str]:
    """The results-table rows among ``keys``: registry order, each variant's sizes in the
    experiment's order (``sizes``), rows of variants outside the table left out."""
    sizes = list(sizes)

    def rank(key: str) -> tuple[int, int, str]:
        variant, _, size = key.partition("/")
        return (
            TABLE_ORDER.index(variant),
            sizes.index(size) if size in sizes else len(sizes),
            size,
        )

    return sorted((k for k in keys if k.partition("/")[0] in TABLE_ORDER), key=rank)


def seed_averages(per_task: dict[str, dict[int, float]], tasks: Sequence[str]) -> dict[int, float]:
    """The paper's Avg per seed: plain mean over tasks (WNLI excluded), complete seeds only."""
    counted = [t for t in tasks if t not in EXCLUDED_FROM_AVERAGE]
    seeds = set.intersection(*(set(per_task.get(t, {})) for t in counted)) if counted else set()
    return {s: statistics.fmean(per_task[t][s] for t in counted) for s in sorted(seeds)}


def _cell(values: Sequence[float]) -> str:
    if not values:
        return ""
    s = summarize(values)
    return f"{100 * s.median:.1f}" + (f" ±{100 * s.std:.1f}" if s.n > 1 else "")


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# Experiment report
# --------------------------------------------------------------------------------------------


def write_experiment_report(exp: Any, runs: Sequence[Any]) -> list[str]:
    """Write results.csv, runs.csv, results.md, scores.png and training.png; return the markdown."""
    out = Path(exp.output_dir) / "report"
    scores = collect_scores(runs)
    tasks = list(exp.tasks)
    sizes = list(getattr(exp, "student_sizes", []) or [])
    variants = table_rows(list(scores), sizes)
    averages = {v: seed_averages(scores[v], tasks) for v in variants}

    header = ["Model", "seeds", "Avg", *tasks]
    lines = [
        f"## {exp.name}: dev scores (median over seeds ± std, x100)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    rows_csv: list[list[Any]] = [
        ["variant", "task", "n", "median", "mean", "std", "min", "max", "seeds"]
    ]
    for v in variants:
        seeds = {seed for by_seed in scores[v].values() for seed in by_seed}
        # Avg counts complete seeds only; a seed still training some tasks is said apart.
        partial = len(seeds) - len(averages[v])
        count = f"{len(averages[v])}" + (f" (+{partial} partial)" if partial else "")
        cells = [row_label(v), count, _cell(list(averages[v].values()))]
        cells += [_cell(list(scores[v].get(t, {}).values())) for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
        for task, by_seed in [("avg", averages[v]), *[(t, scores[v].get(t, {})) for t in tasks]]:
            if by_seed:
                s = summarize(list(by_seed.values()))
                rows_csv.append(
                    [
                        v,
                        task,
                        s.n,
                        s.median,
                        s.mean,
                        s.std,
                        s.min,
                        s.max,
                        " ".join(map(str, by_seed)),
                    ]
                )
    lines.append("")
    lines += _significance(scores, averages, tasks)
    lines += _pairs_table(exp, scores)
    lines += _size_speed_table(runs, averages, sizes)
    lines += _epoch_table(runs, tasks, sizes)
    lines += _exposure_table(runs, tasks, sizes)
    lines += _compute_table(runs)
    buf = io.StringIO()
    csv.writer(buf).writerows(rows_csv)
    write_text(out / "results.csv", buf.getvalue())
    write_run_scores(runs, out / "runs.csv")
    if variants:
        _plot_scores(scores, averages, tasks, variants, out / "scores.png")
        lines.append(f"Plots: {out / 'scores.png'}, {out / 'training.png'}")
    _plot_training_runs(runs, out / "training.png")
    write_text(out / "results.md", "\n".join(lines) + "\n")
    return lines


def _p_value_floors(pairs, averages) -> list[str]:
    # Few seeds bound how small a rank test's p can get (3 vs 3: 0.05); saying so keeps a reader
    # from taking p = 0.05 for a weak result or 0.1 for a failed one.
    floors = []
    for first, other, label in pairs:
        sizes = (len(averages[first]), len(averages[other]))
        if min(sizes) >= 2:
            floor = smallest_p_value(*sizes)
            floors.append(f"{label} {floor:.3f} ({sizes[0]} vs {sizes[1]} seeds)")
    if not floors:
        return []
    return [
        "The smallest p these seed counts allow (every seed of one model above every seed of the "
        "other): " + "; ".join(floors) + ".",
        "",
    ]


def _significance(scores, averages, tasks) -> list[str]:
    # BAM against Single and Multi (the paper), and each smaller BAM student against the Multi
    # student of its size: does distillation help at that size?
    pairs = [("bam", other, f"BAM vs {variant_label(other)}") for other in ("single", "multi")]
    pairs += [
        (key, f"multi_small/{key.partition('/')[2]}", f"{row_label(key)} vs Multi small")
        for key in scores
        if key.startswith("bam_small/")
    ]
    pairs = [(a, b, label) for a, b, label in pairs if a in scores and b in scores]
    if not pairs:
        return []
    lines = [
        "Mann-Whitney U, one-sided (BAM greater), p-values:",
        "",
        "| Comparison | Avg | " + " | ".join(tasks) + " |",
        "|" + "---|" * (len(tasks) + 2),
    ]
    for first, other, label in pairs:
        cells = [
            label,
            _p(mann_whitney(list(averages[first].values()), list(averages[other].values()))),
        ]
        for t in tasks:
            cells.append(
                _p(
                    mann_whitney(
                        list(scores[first].get(t, {}).values()),
                        list(scores[other].get(t, {}).values()),
                    )
                )
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += _p_value_floors(pairs, averages)
    if "bam" in scores and "single" in scores:
        wins = [
            t
            for t in tasks
            if scores["bam"].get(t)
            and scores["single"].get(t)
            and statistics.median(scores["bam"][t].values())
            > statistics.median(scores["single"][t].values())
        ]
        lines.append(
            f"The BAM student beats its single-task teachers (median) on {len(wins)} of "
            f"{len(tasks)} tasks: {', '.join(wins) or 'none'}."
        )
        lines.append("")
    return lines


def _pairs_table(exp, scores) -> list[str]:
    kinds = [k for k in VARIANTS if is_pairs(k) and k in scores]
    target = getattr(exp, "pairs_target", None)
    if not kinds or target is None:
        return []
    lines = [
        f"Task combinations: {target} dev score when trained with one other task",
        "",
        "| Partner | " + " | ".join(variant_label(k) for k in kinds) + " |",
        "|" + "---|" * (len(kinds) + 1),
    ]
    if target in scores.get("single", {}):
        lines.append(f"| (alone: Single) | {_cell(list(scores['single'][target].values()))} |")
    partners = sorted({key.split("+", 1)[1] for k in kinds for key in scores[k]})
    for partner in partners:
        cells = [_cell(list(scores[k].get(f"{target}+{partner}", {}).values())) for k in kinds]
        lines.append(f"| {partner} | " + " | ".join(cells) + " |")
    for k in ("multi", "bam"):
        if target in scores.get(k, {}):
            lines.append(
                f"| (all tasks: {variant_label(k)}) | {_cell(list(scores[k][target].values()))} |"
            )
    lines.append("")
    return lines


@dataclass
class _Cost:
    """One report row's size, training time and speed (one seed's runs added up, median over
    seeds), beside its average score."""

    models: int
    layers: list[int]
    parameters: float | None
    minutes: float
    speed: float | None
    quality: float | None


def _size_speed_table(
    runs: Sequence[Any], averages: dict[str, dict[int, float]], sizes: Sequence[str]
) -> list[str]:
    """Quality beside cost, per row: what serving every task takes (models, layers, parameters),
    what training took, and dev examples/s from the runs' stored measurements
    (bamkd.experiments.speed).

    Per seed, a row's runs add up (Single: one model per task); only seeds whose planned runs
    all finished count, and the table shows the median over them. A seed with an unmeasured run
    has no speed, and a row without a measured seed shows a dash; nothing is timed here. Each
    smaller BAM student gets one plain sentence: the share of its teachers' score it keeps and
    how much faster it is.
    """
    by_row = _finished_seeds(runs)
    rows = table_rows(list(by_row), sizes)
    if not rows:
        return []
    costs: dict[str, _Cost] = {}
    settings: list[dict] = []
    for key in rows:
        costs[key], measured_with = _row_cost(list(by_row[key].values()), averages.get(key, {}))
        settings += measured_with
    teachers = costs.get("single")

    def share(cost: _Cost) -> str | None:
        if teachers and teachers.quality and cost.quality is not None:
            return f"{100 * cost.quality / teachers.quality:.1f}%"
        return None

    def faster(cost: _Cost) -> str | None:
        if teachers and teachers.speed and cost.speed is not None:
            return f"{cost.speed / teachers.speed:.2f}x"
        return None

    lines = [
        "Size and speed: what serving every task takes (models, encoder layers, parameters), "
        "training time and dev-set inference speed; per seed the row's runs add up, median over "
        "seeds. Share and speed-up are against the single-task models (the teachers):",
        "",
        "| Model | models | layers | parameters | training min | dev examples/s | Avg | "
        "share of Single Avg | speed-up over Single |",
        "|" + "---|" * 9,
    ]
    for key, cost in costs.items():
        cells = [
            row_label(key),
            str(cost.models),
            "/".join(map(str, cost.layers)) or "-",
            _count(cost.parameters),
            f"{cost.minutes:.1f}",
            f"{cost.speed:.1f}" if cost.speed is not None else "-",
            f"{100 * cost.quality:.1f}" if cost.quality is not None else "-",
            (share(cost) if key != "single" else None) or "-",
            (faster(cost) if key != "single" else None) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        _speed_settings_note(settings, unmeasured=any(c.speed is None for c in costs.values()))
    )
    lines.append("")
    for key, cost in costs.items():
        if teachers is None or not key.startswith("bam_small/") or share(cost) is None:
            continue
        speed = (
            f" and predicts {faster(cost)} as many dev examples per second"
            if faster(cost)
            else " (speed not measured)"
        )
        lines.append(
            f"{row_label(key)} keeps {share(cost)} of its single-task teachers' average dev score"
            f"{speed}, with {_count(cost.parameters)} parameters in one "
            f"{'/'.join(map(str, cost.layers))}-layer model against {_count(teachers.parameters)} "
            f"in {teachers.models} models of {'/'.join(map(str, teachers.layers))} layers."
        )
        lines.append("")
    return lines


def _finished_seeds(runs: Sequence[Any]) -> dict[str, dict[int, list[Any]]]:
    """Report row -> seed -> its runs, for the seeds whose planned runs all finished (as the
    scores count them): a Single seed with three of five teachers would understate its cost
    and overstate its speed. Rows without such a seed are left out; pairs have a table of
    their own."""
    planned: dict[str, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if not is_pairs(run.variant):
            planned[_row(run)][run.seed].append(run)
    return {
        key: complete
        for key, seeds in planned.items()
        if (
            complete := {
                seed: rs for seed, rs in seeds.items() if all(is_finished(r.folder) for r in rs)
            }
        )
    }


def _row_cost(seeds: list[list[Any]], averages: dict[int, float]) -> tuple[_Cost, list[dict]]:
    """A row's cost, median over its seeds (each seed's runs add up), and the settings its
    speeds were measured with. A seed's speed needs every one of its runs measured."""
    saved = [[saved_size(r.folder) for r in seed_runs] for seed_runs in seeds]
    params = [sum(s[0] for s in seed if s) for seed in saved if all(seed)]
    per_seed = []
    settings: list[dict] = []
    for seed_runs in seeds:
        measured = [m for m in (read_speed(r.folder) for r in seed_runs) if m is not None]
        if len(measured) == len(seed_runs):
            examples = sum(m["examples"] for m in measured)
            per_seed.append(examples / sum(m["seconds"] for m in measured))
            settings += [m.get("settings", {}) for m in measured]
    quality = list(averages.values())
    cost = _Cost(
        models=max(map(len, seeds)),
        layers=sorted({s[1] for seed in saved for s in seed if s and s[1]}),
        parameters=statistics.median(params) if params else None,
        minutes=statistics.median(
            sum(training_seconds(r.folder) for r in seed_runs) / 60 for seed_runs in seeds
        ),
        speed=statistics.median(per_seed) if per_seed else None,
        quality=statistics.median(quality) if quality else None,
    )
    return cost, settings


def _count(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _speed_settings_note(settings: list[dict], unmeasured: bool) -> str:
    """How the speeds were measured, in one line (said once when every run used the same)."""
    distinct = {tuple(sorted(s.items())) for s in settings}
    parts = []
    if len(distinct) == 1:
        s = settings[0]
        precision = "fp32" if s.get("precision") == "no" else s.get("precision")
        rows = f"the first {s['limit']} rows of " if s.get("limit") else ""
        parts.append(
            f"Inference speed: {rows}the first dev split of each task, batch size "
            f"{s.get('batch_size')} (length-sorted, padded per batch), {precision}, "
            f"{s.get('threads')} thread(s) on {s.get('device')}, median of {s.get('repeats')} "
            "timed passes after a warm-up, tokenization excluded."
        )
    elif distinct:
        parts.append(
            f"Inference speed was measured with {len(distinct)} different settings (see each "
            "run's speed.json); the speeds do not compare."
        )
    if unmeasured:
        parts.append(
            "-: not measured (runs finished before bamkd measured speed; `bamkd report "
            "--measure-speed` measures them)."
        )
    parts.append(
        "Training time is the run's own loop: a BAM student's excludes its teachers' training "
        "(the Single row) and their predictions (the compute table)."
    )
    return " ".join(parts)


def epoch_scores(run_dir: Path) -> dict[str, dict[float, float]]:
    """Task -> {epoch: dev score} of a finished run: its evaluations after every epoch
    (``train.eval_every_epoch``, from the metrics log) and its final scores (dev_metrics.json)
    at the run's last epoch. Empty for a run without per-epoch evaluations.

    Epochs come from the steps: the log's training records give steps per epoch, so a run of
    fractional epochs puts its final scores under, e.g., 2.5.
    """
    records = read_metrics(run_dir)
    evals = [(r["step"], r["eval"]) for r in records if "eval" in r]
    trained = [r for r in records if "loss" in r and r.get("epoch")]
    final_path = run_dir / DEV_METRICS_NAME
    if not evals or not trained or not final_path.is_file():
        return {}
    steps_per_epoch = trained[-1]["step"] / trained[-1]["epoch"]
    last_step = max(r["step"] for r in records if "step" in r)
    points = [*evals, (last_step, read_json(final_path))]
    curves: dict[str, dict[float, float]] = defaultdict(dict)
    for step, scores in points:
        epoch = round(step / steps_per_epoch, 2)
        for task, metrics in scores.items():
            curves[task][epoch] = task_score(metrics)
    return dict(curves)


def _epoch_table(runs: Sequence[Any], tasks: Sequence[str], sizes: Sequence[str]) -> list[str]:
    """Dev score after each epoch, median over the seeds whose runs evaluated every epoch: when
    each task peaks (a task that peaks early and falls is over-trained by the schedule)."""
    curves: dict[str, dict[str, list[dict[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for key, seeds in _finished_seeds(runs).items():
        for seed_runs in seeds.values():
            for run in seed_runs:
                for task, by_epoch in epoch_scores(Path(run.folder)).items():
                    curves[key][task].append(by_epoch)
    rows = table_rows(list(curves), sizes)
    if not rows:
        return []
    epochs = sorted({e for key in rows for seeds in curves[key].values() for c in seeds for e in c})
    lines = [
        "Dev score after each epoch (median over the seeds that evaluated every epoch, x100; "
        "a run's last column is its final evaluation):",
        "",
        "| Model | task | seeds | " + " | ".join(f"{e:g}" for e in epochs) + " |",
        "|" + "---|" * (len(epochs) + 3),
    ]
    for key in rows:
        for task in [t for t in tasks if t in curves[key]]:
            per_seed = curves[key][task]
            cells = []
            for e in epochs:
                at = [c[e] for c in per_seed if e in c]
                cells.append(f"{100 * statistics.median(at):.1f}" if at else "-")
            lines.append(
                f"| {row_label(key)} | {task} | {len(per_seed)} | " + " | ".join(cells) + " |"
            )
    lines.append("")
    return lines


def _exposure_table(runs: Sequence[Any], tasks: Sequence[str], sizes: Sequence[str]) -> list[str]:
    """Passes over each task's data and steps that see it, per variant (its first seed's runs).

    Computed from each run's saved config and batch plan (bamkd.experiments.exposure); a run
    whose data or tokenizer cannot be read here is left out with a note, never failing the
    report.
    """
    from bamkd.config import RunConfig, from_dict, load_yaml
    from bamkd.experiments.exposure import task_exposure
    from bamkd.runtime.runs import CONFIG_NAME

    cells: dict[str, dict[str, str]] = defaultdict(dict)
    first_seed: dict[str, int] = {}
    skipped = 0
    for run in sorted(runs, key=lambda r: r.seed):
        if is_pairs(run.variant) or not is_finished(run.folder):
            continue
        row = _row(run)
        if first_seed.setdefault(row, run.seed) != run.seed:
            continue
        try:
            cfg = from_dict(RunConfig, load_yaml(Path(run.folder) / CONFIG_NAME))
            exposure = task_exposure(cfg)
        except Exception as exc:  # noqa: BLE001 - a report never fails on one run
            log.warning("report: no task exposure for %s (%s)", run.folder, exc)
            skipped += 1
            continue
        for task, e in exposure.items():
            cells[row][task] = (
                f"{e.passes:.0f} ({e.copies_per_epoch}x) / {e.steps_with_task} of {e.steps}"
            )
    if not cells:
        return []
    lines = [
        "Task exposure: passes over each task's training rows (copies per epoch) / optimiser "
        "steps whose batch holds the task, of all steps (first seed of each variant):",
        "",
        "| Model | " + " | ".join(tasks) + " |",
        "|" + "---|" * (len(tasks) + 1),
    ]
    for v in table_rows(list(cells), sizes):
        lines.append(f"| {row_label(v)} | " + " | ".join(cells[v].get(t, "") for t in tasks) + " |")
    if skipped:
        lines.append(f"({skipped} runs left out: their data or tokenizer could not be read)")
    lines.append("")
    return lines


def _compute_table(runs: Sequence[Any]) -> list[str]:
    """Training and teacher-prediction wall time of the finished runs, per variant."""
    from bamkd.teachers import prediction_seconds  # imports torch; reports need it only here

    per_variant: dict[str, list[float]] = defaultdict(list)
    teach_s, untimed = 0.0, 0
    for run in runs:
        if not is_finished(run.folder):
            continue
        per_variant[run.variant].append(training_seconds(run.folder))
        seconds, missing = prediction_seconds(Path(run.folder))
        teach_s += seconds
        untimed += missing
    if not per_variant:
        return []
    lines = [
        "Compute (wall time of the training loops of finished runs, summed over sittings):",
        "",
        "| Variant | runs | minutes |",
        "|---|---|---|",
    ]
    order = [v for v in TABLE_ORDER if v in per_variant]
    order += sorted(v for v in per_variant if v not in order)
    for v in order:
        lines.append(
            f"| {variant_label(v)} | {len(per_variant[v])} | {sum(per_variant[v]) / 60:.1f} |"
        )
    note = f" ({untimed} older files without a recorded time not counted)" if untimed else ""
    lines.append(f"| teacher predictions{note} | | {teach_s / 60:.1f} |")
    total = sum(sum(v) for v in per_variant.values()) + teach_s
    count = sum(map(len, per_variant.values()))
    lines.append(f"| **total** | {count} | **{total / 60:.1f}** ({total / 3600:.2f} h) |")
    lines.append("")
    return lines


def _plot_scores(scores, averages, tasks, variants, path: Path) -> None:
    plt = _plt()
    import numpy as np

    groups = ["Avg", *tasks]
    # Wide enough for the bars, but no wider than a screen (the full study has 10+ variants).
    width_in = min(16, max(6, 1.3 * len(groups) * max(1, len(variants)) / 2))
    fig, ax = plt.subplots(figsize=(width_in, 4.5))
    width = 0.8 / len(variants)
    x = np.arange(len(groups))
    for i, v in enumerate(variants):
        series = [list(averages[v].values())] + [list(scores[v].get(t, {}).values()) for t in tasks]
        med = [100 * statistics.median(s) if s else np.nan for s in series]
        lo = [m - 100 * min(s) if s else 0 for m, s in zip(med, series)]
        hi = [100 * max(s) - m if s else 0 for m, s in zip(med, series)]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            med,
            width,
            yerr=[lo, hi],
            capsize=2,
            label=row_label(v),
        )
    ax.set_xticks(x, groups)
    ax.set_ylabel("dev score (median, bars: min-max over seeds)")
    finite = [100 * val for v in variants for s in scores[v].values() for val in s.values()]
    if finite:
        ax.set_ylim(max(0, min(finite) - 10), min(100, max(finite) + 5))
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    _save_figure(fig, path)


def _plot_training_runs(runs: Sequence[Any], path: Path) -> None:
    """Training curves of the first seed's multi-task runs (BAM and Multi)."""
    chosen = []
    for variant in ("bam", "multi"):
        for run in runs:
            if run.variant == variant and is_finished(run.folder):
                chosen.append((variant_label(variant), Path(run.folder)))
                break
    if chosen:
        plot_training(chosen, path)


def plot_training(runs: Sequence[tuple[str, Path]], path: Path) -> None:
    """Per run: losses per task, lambda per task and learning rate, dev metrics over steps."""
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 3, figsize=(14, 3.4 * len(runs)), squeeze=False)
    for row, (label, folder) in zip(axes, runs):
        records = read_metrics(folder)
        train = [r for r in records if "loss" in r]
        steps = [r["step"] for r in train]
        for task in sorted({t for r in train for t in r["loss"]}):
            pts = [(r["step"], r["loss"][task]) for r in train if task in r["loss"]]
            row[0].plot(*zip(*pts), label=task, lw=1)
        row[0].set_title(f"{label}: training loss per task")
        row[0].set_xlabel("step")
        row[0].legend(fontsize=7)
        for task in sorted({t for r in train for t in r.get("lambda", {})}):
            row[1].plot(steps, [r["lambda"].get(task) for r in train], label=f"λ {task}", lw=1)
        row[1].set_ylim(-0.05, 1.05)
        row[1].set_xlabel("step")
        row[1].set_title("gold weight λ (left) and learning rate (right)")
        lr_axis = row[1].twinx()
        lr_axis.plot(steps, [r["lr"] for r in train], color="black", ls="--", lw=1, label="lr")
        lr_axis.set_ylabel("learning rate")
        row[1].legend(fontsize=7, loc="center left")
        # (step, {task: metrics}) of each evaluation: periodic ("eval") or the final one ("dev")
        evals = [
            (r["step"], r.get("eval") or r.get("dev") or {})
            for r in records
            if "eval" in r or "dev" in r
        ]
        for task in sorted({t for _, scores in evals for t in scores}):
            pts = [
                (step, 100 * task_score(scores[task])) for step, scores in evals if task in scores
            ]
            row[2].plot(*zip(*pts), marker="o", label=task, lw=1)
        row[2].set_title("dev score over evaluations")
        row[2].set_xlabel("step")
        if evals:
            row[2].legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# `bamkd report PATH`
# --------------------------------------------------------------------------------------------


def report_path(path: Path, *, measure_speed: bool = False) -> list[str]:
    """Report on an experiment folder (has plan.json, written by ``bamkd run``) or a run folder.

    ``measure_speed`` first measures the inference speed of every finished run without a stored
    measurement (runs from before bamkd measured it), with the experiment's speed settings.
    """
    plan_file = path / PLAN_NAME
    if plan_file.is_file():
        from types import SimpleNamespace

        plan = read_json(plan_file)
        exp = SimpleNamespace(**plan["experiment"])
        runs = [SimpleNamespace(**r) for r in plan["runs"]]
        if measure_speed:
            settings = getattr(exp, "speed", None) or {}
            folders = [Path(r.folder) for r in runs]
            if not measure_when_idle(path, folders, SpeedSettings(**settings)):
                raise BamkdError(
                    f"a bamkd run sitting of {path} is training or measuring, and timing "
                    "inference beside it would measure its load; run --measure-speed when it "
                    "has finished"
                )
        return write_experiment_report(exp, runs)
    if (path / DEV_METRICS_NAME).is_file() or (path / "metrics.jsonl").is_file():
        if measure_speed:
            measure_missing([path], SpeedSettings())
        return write_run_report(path)
    raise BamkdError(f"{path} is neither an experiment folder (plan.json) nor a run folder")


def write_run_report(run_dir: Path) -> list[str]:
    """training.png and report.md for one run."""
    label = "/".join(run_dir.resolve().parts[-3:])  # e.g. single/mrpc/seed0
    plot_training([(label, run_dir)], run_dir / "training.png")
    lines = [f"## Run {run_dir}", ""]
    if (run_dir / DEV_METRICS_NAME).is_file():
        metrics = read_json(run_dir / DEV_METRICS_NAME)
        lines += ["| Task | Metrics | Score |", "|---|---|---|"]
        for task, values in metrics.items():
            text = ", ".join(f"{k} {100 * v:.2f}" for k, v in values.items())
            lines.append(f"| {task} | {text} | {100 * task_score(values):.2f} |")
    lines += ["", f"Plot: {run_dir / 'training.png'}"]
    write_text(run_dir / "report.md", "\n".join(lines) + "\n")
    return lines
