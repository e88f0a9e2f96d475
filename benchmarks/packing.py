#!/usr/bin/env python
"""What mixed-task batches cost: padded, length-grouped and packed batches side by side.

The paper trains on batches drawn from the mixture of all tasks. Padded to their longest member
such batches waste most of their compute (CoLA's sentences padded to RTE's pairs); grouping by
length avoids the padding but sorts tasks into length buckets; packing (bamkd.packing) keeps the
mixture without the padding. For each layout, in a fresh process per measurement:

- multi-task: the study's five tasks (CoLA, SST-2 on its first 8,551 rows, MRPC, STS-B, RTE),
  the reference multiples, batch 128, lr 1e-4; ``--multi-steps`` steps of epoch 0;
- single-task: MRPC, batch 32, lr 5e-5; ``--single-steps`` steps.

Reported: examples/s and real tokens/s over the measured steps (the first ``--skip`` left out),
the same per CPU-second of the process (with ``--threads 1`` a measure of each layout's work that
holds while other programs share the machine),
padding share (token positions computed that hold no token), peak resident memory, and for the
multi-task batches the mean share of the most common task in a batch and the share of batches
without any RTE row. Each layout's whole-epoch padding share comes from its batch plan.

Example (both settings, bf16, one thread per worker, about 25 minutes):
    python benchmarks/packing.py --multi-steps 33 --single-steps 63 --threads 1
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

LAYOUTS = {
    "padded mixed": ["data.length_grouped=false", "data.packing=false"],
    "grouped": ["data.length_grouped=true", "data.packing=false"],
    "packed mixed": ["data.length_grouped=false", "data.packing=true"],
}

SETTINGS = {
    "multi": {
        "tasks": ["cola", "sst2", "mrpc", "stsb", "rte"],
        "extra": [
            "train.batch_size=128",
            "train.lr=1e-4",
            "train.task_weighting=reference",
            "data.train_limit=8551",
        ],
    },
    "single": {"tasks": ["mrpc"], "extra": ["train.batch_size=32", "train.lr=5e-5"]},
}


def rows_per_batch(ctx, rows) -> tuple[int, int]:
    """(real tokens, token positions computed) of one global batch under ctx's layout."""
    lens = ctx.store.lengths[rows]
    if ctx.packing is None:
        return int(lens.sum()), len(lens) * int(lens.max())
    from bamkd.packing import pack_layout, row_tiers

    slots = 0
    for width, members in row_tiers(lens, ctx.cfg.data.max_seq_length):
        layout = pack_layout(lens[members], width)
        slots += layout.rows * layout.width
    return int(lens.sum()), slots


def point_worker(spec: dict) -> dict:
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])

    from bamkd.train import setup

    run_dir = Path(tempfile.mkdtemp(prefix="bamkd-pack-", dir=spec["work_dir"]))
    setting = SETTINGS[spec["setting"]]
    cfg = measure.bamkd_config(
        setting["tasks"],
        run_dir,
        glue_dir=spec["glue_dir"],
        precision=spec["precision"],
        cache_dir=Path(spec["work_dir"]) / "token-cache",
        extra=[*setting["extra"], *LAYOUTS[spec["layout"]], "train.log_every=1000000"],
    )
    with setup(cfg) as ctx:
        plan = ctx.plan
        epoch = plan.epoch_batches(0)
        real, slots = map(sum, zip(*(rows_per_batch(ctx, rows) for rows in epoch)))
        task_of = [plan.task_index(rows) for rows in epoch]
        largest = [np.bincount(t).max() / len(t) for t in task_of]
        rte = ctx.specs and list(ctx.specs).index("rte") if "rte" in ctx.specs else None
        steps = spec["steps"]
        measured = epoch[spec["skip"] : steps]
        res, clock = measure.bamkd_timed_fit(ctx, steps)
        step_s = res["step_seconds"][spec["skip"] :]
        m_real, m_slots = map(sum, zip(*(rows_per_batch(ctx, rows) for rows in measured)))
        seconds = sum(step_s)
        skip = spec["skip"]
        # CPU seconds of this process over the measured steps: with one thread this measures the
        # work of each layout even while other programs share the machine (wall time does not).
        cpu = clock.cpu_times
        cpu_s = cpu[steps - 1] - cpu[skip - 1] if skip else float("nan")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "setting": spec["setting"],
        "layout": spec["layout"],
        "packed": ctx.packing is not None,
        "steps_per_epoch": plan.batches_per_epoch,
        "multiples": dict(plan.weighting.multiples),
        "measured_steps": len(step_s),
        "seconds": seconds,
        "examples_per_s": sum(len(r) for r in measured) / seconds,
        "cpu_seconds": cpu_s,
        "examples_per_cpu_s": sum(len(r) for r in measured) / cpu_s,
        "real_tokens_per_cpu_s": m_real / cpu_s,
        "threads": torch.get_num_threads(),
        "real_tokens_per_s": m_real / seconds,
        "padding_measured": 1 - m_real / m_slots,
        "padding_epoch": 1 - real / slots,
        "largest_task_share": float(np.mean(largest)),
        "batches_without_rte": (
            None if rte is None else float(np.mean([not (t == rte).any() for t in task_of]))
        ),
        "epoch_s_est": seconds / len(step_s) * plan.batches_per_epoch,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", default="multi,single")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--multi-steps", type=int, default=40)
    p.add_argument("--single-steps", type=int, default=60)
    p.add_argument("--skip", type=int, default=3, help="first steps left out (at least 1)")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per worker (0: torch's default)"
    )
    p.add_argument("--repeats", type=int, default=1, help="rounds over all layouts (interleaved)")
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/packing.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bamkd-packing-"))
    work.mkdir(parents=True, exist_ok=True)
    payload = {**result_files.header(), "settings": vars(args), "points": []}
    started = time.perf_counter()
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        steps = args.multi_steps if setting == "multi" else args.single_steps
        # Interleave the layouts round by round, so a slow phase of the machine hits all alike.
        for repeat in range(args.repeats):
            for layout in layouts:
                spec = {
                    "kind": "point",
                    "setting": setting,
                    "layout": layout,
                    "precision": args.precision,
                    "glue_dir": args.glue_dir,
                    "work_dir": str(work),
                    "steps": steps,
                    "skip": args.skip,
                    "threads": args.threads,
                }
                point = harness.run_worker(__file__, spec)
                point["repeat"] = repeat
                payload["points"].append(point)
                print(
                    f"{setting:6} {layout:13} {point['examples_per_s']:7.1f} ex/s "
                    f"{point['examples_per_cpu_s']:7.1f} ex/cpu-s "
                    f"{point['real_tokens_per_s']:8.0f} tok/s padding "
                    f"{point['padding_epoch']:.2f} peak {point['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
                result_files.write_json(args.out, payload)
    payload["wall_s"] = time.perf_counter() - started
    rows = []
    for p in payload["points"]:
        rows.append(
            [
                p["setting"],
                p["layout"],
                p["repeat"],
                p["examples_per_s"],
                p["examples_per_cpu_s"],
                p["real_tokens_per_s"],
                p["real_tokens_per_cpu_s"],
                p["padding_epoch"],
                p["largest_task_share"],
                p["batches_without_rte"],
                p["peak_rss_mib"],
            ]
        )
    print(
        tables.table(
            rows,
            [
                "setting",
                "layout",
                "repeat",
                "ex/s",
                "ex/cpu-s",
                "real tok/s",
                "real tok/cpu-s",
                "padding (epoch)",
                "largest task share",
                "no-RTE batches",
                "peak MiB",
            ],
        )
    )
    result_files.write_json(args.out, payload, announce=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    harness.entry(main, {"point": point_worker})
