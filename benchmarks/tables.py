"""Markdown tables: the renderer every script prints with, and a command that prints each
benchmark's tables again from its committed JSON result file.

    python benchmarks/tables.py benchmarks/results/speed_vs_trainer.json [more.json ...]
    python benchmarks/tables.py --all     # every result file BENCHMARKS.md quotes
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub-markdown table (readable in a terminal, pasteable into BENCHMARKS.md)."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Each benchmark's tables, from its result file (the columns BENCHMARKS.md shows)
# --------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 0) -> str | None:
    return None if value is None else f"{100 * value:.{digits}f}%"


def _times(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}×"


def speed_vs_trainer_tables(payload: dict[str, Any]) -> list[str]:
    """Section 1: examples/s, real tokens/s, padding and peak RSS by system; bamkd's ratios;
    dev metrics after equal epochs when the file has them."""
    out = []
    if payload.get("summary"):
        rows = [
            [
                s["task"],
                s["precision"],
                s["system"],
                s["examples_per_s_median"],
                s["real_tokens_per_s_median"],
                _pct(s["padding_overhead"]),
                s["peak_rss_mib_median"],
            ]
            for s in payload["summary"]
        ]
        headers = ["task", "precision", "system", "examples/s", "real tokens/s", "padding"]
        out.append(table(rows, [*headers, "peak RSS MiB"]))
        ratios = [
            [
                r["task"],
                r["precision"],
                _times(r["bamkd_over_default"]),
                _times(r["bamkd_over_best"]),
            ]
            for r in payload.get("ratios", [])
        ]
        out.append(table(ratios, ["task", "precision", "bamkd / default", "bamkd / best"]))
    if payload.get("accuracy_runs"):
        rows = []
        for r in payload["accuracy_runs"]:
            dev = r.get("dev_metrics") or {}
            scores = ", ".join(f"{k} {100 * v:.1f}" for k, v in sorted(dev.items()))
            rows.append(
                [
                    r["system"],
                    f"{r['task']} {scores}",
                    f"{r['loop_s']:.1f} s",
                    r["examples_per_s"],
                    f"{r['padded_tokens']:,}",
                ]
            )
        out.append(
            table(rows, ["system", "dev scores", "training loop", "examples/s", "padded tokens"])
        )
    return out


def allocator_tables(payload: dict[str, Any]) -> list[str]:
    """The allocator study: median examples/s and peak RSS per setting, against glibc's default."""
    rows, base = [], {}
    for s in payload["summary"]:
        key = (s["task"], s["precision"])
        base.setdefault(key, s)
        b = base[key]
        rows.append(
            [
                s["task"],
                s["precision"],
                s["setting"],
                s["examples_per_s_median"],
                _times(s["examples_per_s_median"] / b["examples_per_s_median"]),
                s["peak_rss_mib_median"],
                _times(s["peak_rss_mib_median"] / b["peak_rss_mib_median"]),
            ]
        )
    headers = ["task", "precision", "setting", "examples/s", "vs first", "peak RSS MiB"]
    return [table(rows, [*headers, "vs first"])]


def mfu_tables(payload: dict[str, Any]) -> list[str]:
    """Section 2: matmul peak, step time, examples/s, model TFLOP/s, MFU and HFU per precision;
    the phase split of the profile when there is one."""
    rows = []
    for r in payload["results"]:
        dt = "bf16" if r["precision"] == "bf16" else "fp32"
        rows.append(
            [
                r["precision"],
                r["matmul_best_tflops"][dt],
                r["median_step_s"],
                r["examples_per_s_steady"],
                r["achieved_model_tflops"],
                _pct(r["mfu"], 1),
                _pct(r["hfu"], 1),
            ]
        )
    headers = ["precision", "matmul peak TFLOP/s", "median step s", "examples/s"]
    out = [table(rows, [*headers, "model TFLOP/s", "MFU", "HFU"])]
    phases = [
        [r["precision"], phase, _pct(share, 1)]
        for r in payload["results"]
        if r.get("profile")
        for phase, share in r["profile"]["phase_share_of_wall"].items()
    ]
    if phases:
        out.append(table(phases, ["precision", "phase", "share of wall time"]))
    return out


def packing_tables(payload: dict[str, Any]) -> list[str]:
    """Section 6: per setting and layout, work per CPU-second, padding and task mixture."""
    rows = [
        [
            p["setting"],
            p["layout"],
            p["real_tokens_per_cpu_s"],
            p["examples_per_cpu_s"],
            _pct(p["padding_epoch"], 1),
            p["largest_task_share"],
            _pct(p["batches_without_rte"]),
            f"{p['peak_rss_mib']:,.0f} MiB",
        ]
        for p in payload["points"]
    ]
    headers = ["setting", "layout", "real tokens / CPU-s", "examples / CPU-s", "padding (epoch)"]
    return [table(rows, [*headers, "largest task share", "batches without RTE", "peak RSS"])]


def _mean_step_s(point: dict[str, Any]) -> float:
    """Mean step time after the skipped steps. (Older files' ``epoch_s_est_steps`` used the
    median, which understates length-grouped runs; BENCHMARKS.md quotes the mean.)"""
    steps = point["step_seconds"][point["skipped_steps"] :]
    return sum(steps) / len(steps)


def scaling_tables(payload: dict[str, Any]) -> list[str]:
    """Section 5: time per epoch and peak RSS by task count and by max length; teacher cost."""
    out = []
    if payload.get("by_tasks"):
        rows = [
            [
                "+".join(p["tasks"]),
                f"{p['epoch_rows']:,}",
                p["steps_per_epoch"],
                f"{p['epoch_real_tokens']:,}",
                _mean_step_s(p),
                _mean_step_s(p) * p["steps_per_epoch"] / 60,
                f"{p['peak_rss_mib']:,.0f}",
            ]
            for p in payload["by_tasks"]
        ]
        headers = ["tasks", "rows/epoch", "steps/epoch", "real tokens/epoch", "mean s/step"]
        out.append(table(rows, [*headers, "min/epoch", "peak RSS MiB"]))
    if payload.get("by_length"):
        rows = [
            [
                p["max_length"],
                _pct(p["truncated_fraction"], 1),
                p["mean_row_tokens"],
                _pct(p["epoch_padded_tokens"] / p["epoch_real_tokens"] - 1, 1),
                _mean_step_s(p),
                _mean_step_s(p) * p["steps_per_epoch"] / 60,
                f"{p['peak_rss_mib']:,.0f}",
            ]
            for p in payload["by_length"]
        ]
        headers = ["max length", "rows truncated", "mean tokens/row", "padding", "mean s/step"]
        out.append(table(rows, [*headers, "min/epoch", "peak RSS MiB"]))
    if payload.get("teachers"):
        rows = [
            [
                "+".join(p["tasks"]),
                f"{p.get('predict_full_rows', 0):,}",
                p["predict_full_s_est"] / 60 if p.get("predict_full_s_est") else None,
                p["predict_full_rows"] / p["predict_full_s_est"]
                if p.get("predict_full_s_est")
                else None,
            ]
            for p in payload["teachers"]
        ]
        out.append(table(rows, ["teacher", "train rows", "predict (min)", "predict examples/s"]))
    return out


def teacher_speed_tables(payload: dict[str, Any]) -> list[str]:
    """Section 3: examples/s of writing teacher predictions, by system, with speed-ups."""
    rows = [
        [
            s["precision"],
            s["system"],
            s["examples_per_s_median"],
            _pct(s["padding_overhead"]),
            s["peak_rss_mib_median"],
            _times(s.get("speedup_vs_trainer_default")),
            _times(s.get("speedup_vs_trainer_dynamic")),
        ]
        for s in payload["summary"]
    ]
    headers = ["precision", "system", "examples/s", "padding", "peak RSS MiB"]
    return [table(rows, [*headers, "× Trainer (pad 128)", "× Trainer (dynamic)"])]


def task_gradient_tables(payload: dict[str, Any]) -> list[str]:
    """task_gradients.py: per state and task, the medians over the measured batches."""
    import numpy as np

    rows = []
    for res in payload["results"]:
        state = f"{Path(res['state']).name} (step {res['step']})"
        for task in res["batches"][0]:
            got = [b[task] for b in res["batches"] if b[task]["rows"]]
            rows.append(
                [
                    state,
                    task,
                    f"{np.mean([b[task]['rows'] for b in res['batches']]):.1f}",
                    f"{res['loss_weights'][task]:.3f}",
                    f"{np.median([g['norm'] for g in got]):.2f}",
                    f"{np.median([g['norm'] / g['rows'] for g in got]):.3f}",
                    f"{np.median([g['cosine_with_batch'] for g in got]):.2f}",
                ]
            )
    headers = ["state", "task", "rows/batch", "loss weight", "encoder grad norm", "per row"]
    return [table(rows, [*headers, "cosine with batch"])]


def sittings_tables(payload: dict[str, Any]) -> list[str]:
    """sittings.py: one sitting with every core against sittings that share the cores."""
    rows = [
        [
            p["layout"],
            p["repeat"],
            f"{p['wall_s']:.1f}",
            p["examples"],
            f"{p['examples_per_wall_s']:.1f}",
            ", ".join(f"{r['loop_examples_per_s']:.1f}" for r in p["runs"]),
            " / ".join(map(str, p["runs_trained_per_sitting"])),
        ]
        for p in payload["layouts"]
    ]
    headers = ["layout", "repeat", "wall s", "examples", "examples/s of wall time"]
    return [table(rows, [*headers, "each run's loop examples/s", "runs per sitting"])]


def tables_for(payload: dict[str, Any]) -> list[str]:
    """The tables of one result file, recognised by what it holds."""
    if "ratios" in payload or "accuracy_runs" in payload:
        return speed_vs_trainer_tables(payload)
    if "points" in payload:
        return packing_tables(payload)
    if "layouts" in payload:
        return sittings_tables(payload)
    if "by_tasks" in payload:
        return scaling_tables(payload)
    if "results" in payload and payload["results"] and "mfu" in payload["results"][0]:
        return mfu_tables(payload)
    if "summary" in payload and payload["summary"] and "setting" in payload["summary"][0]:
        return allocator_tables(payload)
    if "results" in payload and payload["results"] and "batches" in payload["results"][0]:
        return task_gradient_tables(payload)
    if "teacher_run" in payload:
        return teacher_speed_tables(payload)
    raise ValueError("not a result file of a known benchmark")


QUOTED = (
    "speed_vs_trainer.json",
    "allocator.json",
    "speed_vs_trainer_accuracy.json",
    "speed_vs_trainer_accuracy_best_seed0.json",
    "speed_vs_trainer_accuracy_seed1.json",
    "speed_vs_trainer_accuracy_best_seed1.json",
    "mfu.json",
    "teacher_speed.json",
    "scaling_tasks.json",
    "scaling_lengths.json",
    "scaling.json",
    "packing.json",
    "packing_alone.json",
    "task_gradients_multi.json",
    "sittings.json",
    "task_gradients_bam.json",
)
"""The result files BENCHMARKS.md quotes, in its order."""


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("files", nargs="*", help="result files (JSON)")
    p.add_argument("--all", action="store_true", help="every result file BENCHMARKS.md quotes")
    args = p.parse_args(argv)
    results = Path(__file__).resolve().parent / "results"
    files = [Path(f) for f in args.files] + ([results / n for n in QUOTED] if args.all else [])
    if not files:
        p.error("name result files or pass --all")
    for path in files:
        payload = json.loads(path.read_text())
        print(f"## {path.name}\n\n`{payload.get('command', '')}` ({payload.get('date_utc', '')})\n")
        for block in tables_for(payload):
            print(block + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
