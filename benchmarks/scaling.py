#!/usr/bin/env python
"""How bamkd's time per epoch and memory grow with the number of tasks and with max length, and
what teacher predictions cost relative to training.

Every point runs in a fresh process (peak RSS = that process's VmHWM: model, optimizer state,
tokenized data and activations). Time per epoch is extrapolated from ``--steps`` measured
optimizer steps (the first ``--skip`` excluded): seconds per padded token of the measured steps
times the padded tokens of the whole epoch, which is known exactly from the batch plan (and, as a
cross-check, mean step time x steps per epoch; the median understates it, because with
length-grouped batches a few long batches take several times the typical step).

1. Tasks: the multi-task student on the first 1, 2, 3, 4 of ``--tasks`` (default CoLA, MRPC,
   STS-B, RTE), paper multi-task settings (batch 128, |D|^0.75 task weighting with dataset
   multiples, MRPC/STS-B doubled), max length 128.
2. Max length: ``--length-tasks`` (default RTE, the GLUE task with the longest inputs, so the
   limit actually binds) at ``--lengths`` 64, 128, 256, same settings.
3. Teacher cost: per task, a single-task teacher (batch 32, the ``minilm`` preset's single-task
   settings): time per epoch, and the time to predict its whole training split (doubled as
   ``bamkd teach`` does). Reported against the teacher's own run (``--teacher-epochs``) and
   against the 4-task student's run (``--student-epochs``).

Example (full size):
    python benchmarks/scaling.py --steps 10 --out benchmarks/results/scaling.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import harness
import measure
import result_files
import tables

# --------------------------------------------------------------------------------------------
# Worker
# --------------------------------------------------------------------------------------------


def point_worker(spec: dict) -> dict:
    import numpy as np

    from bamkd.data import load_encoded
    from bamkd.evaluate import predict_outputs
    from bamkd.train import setup

    run_dir = Path(tempfile.mkdtemp(prefix="bamkd-scale-", dir=spec["work_dir"]))
    extra = [
        f"train.batch_size={spec['batch_size']}",
        f"train.lr={spec['lr']}",
        f"data.max_seq_length={spec['max_length']}",
        "train.log_every=1000000",
    ]
    cfg = measure.bamkd_config(
        spec["tasks"],
        run_dir,
        glue_dir=spec["glue_dir"],
        precision=spec["precision"],
        cache_dir=Path(spec["work_dir"]) / "token-cache",
        extra=extra,
    )
    t0 = time.perf_counter()
    with setup(cfg) as ctx:
        setup_s = time.perf_counter() - t0
        plan, store = ctx.plan, ctx.store

        # The whole first epoch's token counts, from the plan (no training needed).
        epoch = plan.epoch_batches(0)
        epoch_counts = measure.token_counts([store.lengths[rows] for rows in epoch])
        lengths = store.lengths
        truncated = float(np.mean(lengths >= spec["max_length"]))

        steps = spec["steps"]
        res, _ = measure.bamkd_timed_fit(ctx, steps)
        skip = min(spec["skip"], max(0, steps - 1))
        step_s = res["step_seconds"][skip:]
        batches = res["batch_lengths"][skip:]
        padded = sum(len(b) * max(b) for b in batches)
        s_per_padded_token = sum(step_s) / padded
        out = {
            "tasks": spec["tasks"],
            "max_length": spec["max_length"],
            "batch_size": spec["batch_size"],
            "precision": spec["precision"],
            "setup_s": setup_s,
            "train_rows": {p.task: len(p) for p in store.parts},
            "multiples": dict(plan.weighting.multiples),
            "epoch_rows": int(plan.epoch_size),
            "steps_per_epoch": int(plan.batches_per_epoch),
            "epoch_real_tokens": epoch_counts["real_tokens"],
            "epoch_padded_tokens": epoch_counts["padded_tokens"],
            "mean_row_tokens": float(lengths.mean()),
            "truncated_fraction": truncated,
            "measured_steps": steps,
            "skipped_steps": skip,
            "step_seconds": res["step_seconds"],
            "median_step_s": measure.median(step_s),
            "epoch_s_est_tokens": s_per_padded_token * epoch_counts["padded_tokens"],
            "epoch_s_est_steps": sum(step_s) / len(step_s) * plan.batches_per_epoch,
        }

        if spec.get("predict"):
            # Teacher predictions of this (single-task) model on its whole training split, as
            # teach() would write them: the same encoded split the run trained on (doubled when
            # symmetric).
            part = store.parts[0]
            enc = part
            if spec.get("predict_limit"):
                task = ctx.specs[part.task]
                enc = load_encoded(
                    task,
                    "train",
                    ctx.tokenizer,
                    spec["max_length"],
                    data_dir=spec["glue_dir"],
                    limit=spec["predict_limit"],
                    double=task.symmetric and cfg.data.double_unordered,
                    cache_dir=cfg.data.cache_dir,
                )
            harness.sync()
            t0 = time.perf_counter()
            predict_outputs(
                ctx.model,
                enc,
                part.task,
                pad_id=store.pad_id,
                use_token_types=store.use_token_types,
                batch_size=cfg.train.eval_batch_size,
                accelerator=ctx.accelerator,
            )
            harness.sync()
            seconds = time.perf_counter() - t0
            scale = float(part.lengths.sum()) / float(enc.lengths.sum())
            out.update(
                predict_rows=len(enc),
                predict_measured_s=seconds,
                predict_full_rows=len(part),
                predict_full_s_est=seconds * scale,
            )
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="cola,mrpc,stsb,rte", help="task sweep: prefixes of this")
    p.add_argument("--length-tasks", default="rte", help="tasks of the max-length sweep")
    p.add_argument("--lengths", default="64,128,256")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=10, help="measured optimizer steps per point")
    p.add_argument("--skip", type=int, default=2, help="first steps left out")
    p.add_argument("--batch-size", type=int, default=128, help="student batch (paper: 128)")
    p.add_argument("--lr", type=float, default=1e-4, help="student lr (paper: 1e-4)")
    p.add_argument("--teacher-batch-size", type=int, default=32)
    p.add_argument("--teacher-steps", type=int, default=None, help="default: 2 x --steps")
    p.add_argument("--teacher-epochs", type=float, default=3)
    p.add_argument("--student-epochs", type=float, default=3, help="paper: 6; ours: 3")
    p.add_argument(
        "--predict-limit", type=int, default=0, help="predict the first N rows only (0: all)"
    )
    p.add_argument("--skip-teachers", action="store_true")
    p.add_argument("--skip-lengths", action="store_true")
    p.add_argument("--skip-tasks", action="store_true")
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--work-dir", default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--out", default="benchmarks/results/scaling.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    length_tasks = [t.strip() for t in args.length_tasks.split(",") if t.strip()]
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bamkd-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    payload = {
        **result_files.header(),
        "settings": vars(args),
        "by_tasks": [],
        "by_length": [],
        "teachers": [],
    }
    started = time.perf_counter()
    base = {
        "kind": "point",
        "precision": args.precision,
        "glue_dir": args.glue_dir,
        "work_dir": str(work),
        "skip": args.skip,
    }

    def run(section: str, label: str, **spec) -> dict:
        print(f"{section}: {label} ...", end=" ", flush=True)
        res = harness.run_worker(__file__, {**base, **spec}, timeout=args.timeout)
        payload[section].append(res)
        payload["total_wall_s"] = time.perf_counter() - started
        result_files.write_json(args.out, payload)
        extra = (
            f", predict {res['predict_full_s_est']:.0f} s" if "predict_full_s_est" in res else ""
        )
        print(
            f"{res['median_step_s']:.2f} s/step, ~{res['epoch_s_est_tokens']:.0f} s/epoch, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB{extra}",
            flush=True,
        )
        return res

    student = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    if not args.skip_tasks:
        for k in range(1, len(tasks) + 1):
            run("by_tasks", f"{k} task(s) {tasks[:k]}", tasks=tasks[:k], max_length=128, **student)
    if not args.skip_lengths:
        for n in lengths:
            run(
                "by_length",
                f"{length_tasks} max length {n}",
                tasks=length_tasks,
                max_length=n,
                **student,
            )
    if not args.skip_teachers:
        for t in tasks:
            run(
                "teachers",
                f"teacher {t}",
                tasks=[t],
                max_length=128,
                steps=args.teacher_steps or 2 * args.steps,
                batch_size=args.teacher_batch_size,
                lr=5e-5,
                predict=True,
                predict_limit=args.predict_limit or None,
            )

    m = payload["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']}, {args.precision}; "
        f"{args.steps} measured steps per point (first {args.skip} excluded); epoch times are "
        "extrapolations\n"
    )
    if payload["by_tasks"]:
        print(
            tables.table(
                [
                    [
                        "+".join(r["tasks"]),
                        r["epoch_rows"],
                        r["steps_per_epoch"],
                        r["median_step_s"],
                        r["epoch_s_est_tokens"] / 60,
                        r["epoch_s_est_steps"] / 60,
                        r["peak_rss_mib"],
                    ]
                    for r in payload["by_tasks"]
                ],
                [
                    f"tasks (batch {args.batch_size})",
                    "rows/epoch",
                    "steps/epoch",
                    "s/step",
                    "min/epoch (tokens)",
                    "min/epoch (mean step)",
                    "peak RSS MiB",
                ],
            )
        )
        print()
    if payload["by_length"]:
        print(
            tables.table(
                [
                    [
                        r["max_length"],
                        "+".join(r["tasks"]),
                        f"{100 * r['truncated_fraction']:.1f}%",
                        r["mean_row_tokens"],
                        f"{100 * (r['epoch_padded_tokens'] / r['epoch_real_tokens'] - 1):.1f}%",
                        r["median_step_s"],
                        r["epoch_s_est_tokens"] / 60,
                        r["peak_rss_mib"],
                    ]
                    for r in payload["by_length"]
                ],
                [
                    "max length",
                    "tasks",
                    "rows truncated",
                    "mean tokens/row",
                    "padding overhead",
                    "s/step",
                    "min/epoch",
                    "peak RSS MiB",
                ],
            )
        )
        print()
    if payload["teachers"]:
        rows = []
        total_predict = 0.0
        total_teacher = 0.0
        for r in payload["teachers"]:
            teacher_run = r["epoch_s_est_tokens"] * args.teacher_epochs
            total_predict += r["predict_full_s_est"]
            total_teacher += teacher_run
            rows.append(
                [
                    r["tasks"][0],
                    r["predict_full_rows"],
                    r["epoch_s_est_tokens"] / 60,
                    teacher_run / 60,
                    r["predict_full_s_est"] / 60,
                    r["predict_full_rows"] / r["predict_full_s_est"],
                    r["predict_full_s_est"] / teacher_run,
                ]
            )
        print(
            tables.table(
                rows,
                [
                    "teacher",
                    "train rows",
                    "min/epoch",
                    f"min/run ({args.teacher_epochs:g} ep)",
                    "predict min",
                    "predict ex/s",
                    "predict / teacher run",
                ],
            )
        )
        summary = {
            "teacher_runs_s": total_teacher,
            "teacher_predictions_s": total_predict,
            "predictions_over_teacher_runs": total_predict / total_teacher,
        }
        full = [r for r in payload["by_tasks"] if len(r["tasks"]) == len(tasks)]
        if full:
            student_run = full[0]["epoch_s_est_tokens"] * args.student_epochs
            summary["student_run_s"] = student_run
            summary["predictions_over_student_run"] = total_predict / student_run
            print(
                f"\nall teacher predictions: {total_predict / 60:.1f} min = "
                f"{100 * total_predict / total_teacher:.1f}% of the {len(tasks)} teacher runs "
                f"({total_teacher / 60:.1f} min) and {100 * total_predict / student_run:.1f}% of "
                f"one {args.student_epochs:g}-epoch {len(tasks)}-task student run "
                f"({student_run / 60:.1f} min)"
            )
        payload["teacher_cost_summary"] = summary
        result_files.write_json(args.out, payload)
    harness.finish(args.out, work, keep=bool(args.work_dir))
    return 0


if __name__ == "__main__":
    harness.entry(main, {"point": point_worker})
