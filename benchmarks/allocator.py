#!/usr/bin/env python
"""Peak memory and speed of CPU training under different heap allocator settings.

Length-grouped batches change shape every step. With glibc's default malloc, freed activation
buffers stay in the heap in pieces that the next, differently shaped, batch cannot reuse, so the
resident set grows with every new batch width (RTE, MiniLM, fp32: 2.3 GiB after the first
128-wide batch, 2.8 GiB after the second). This script measures bamkd training (the same worker
as ``speed_vs_trainer.py``: MiniLM, batch 32, max length 128) under:

  glibc          the default malloc
  glibc-mmap1m   glibc with a fixed mmap threshold of 1 MiB (``mallopt(M_MMAP_THRESHOLD)``,
                 which bamkd sets itself with ``train.malloc_mmap_threshold_mib``): every buffer
                 of 1 MiB or more is its own mapping, returned to the system when freed
  jemalloc       jemalloc through LD_PRELOAD (Debian: ``apt install libjemalloc2``), skipped when
                 the library is not found

Settings alternate within each round so machine noise cancels; the table gives medians.

    python benchmarks/allocator.py --tasks rte --precision fp32,bf16 --steps 30 --repeats 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import harness
import measure
import result_files
import tables

JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
)


def settings() -> dict[str, dict]:
    """Setting name -> (bamkd overrides, environment of the worker)."""
    out = {
        "glibc": {"extra": ["train.malloc_mmap_threshold_mib=0"], "env": {}},
        "glibc-mmap1m": {"extra": ["train.malloc_mmap_threshold_mib=1"], "env": {}},
    }
    jemalloc = next((p for p in JEMALLOC_PATHS if Path(p).is_file()), None)
    if jemalloc:
        out["jemalloc"] = {
            "extra": ["train.malloc_mmap_threshold_mib=0"],
            "env": {"LD_PRELOAD": jemalloc},
        }
    return out


def bamkd_worker(spec: dict) -> dict:
    import speed_vs_trainer

    return speed_vs_trainer.bamkd_worker(spec)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="rte", help="comma-separated GLUE tasks")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--settings", default=None, help="comma list (default: every one available)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--out", default="benchmarks/results/allocator.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    available = settings()
    names = args.settings.split(",") if args.settings else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        sys.exit(f"unknown or unavailable setting {unknown[0]}; available: {', '.join(available)}")
    payload = {**result_files.header(argv), "settings": vars(args), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bamkd-alloc-") as work:
        for round_ in range(args.repeats):
            for task in args.tasks.split(","):
                for precision in args.precision.split(","):
                    for name in names:
                        spec = {
                            "kind": "bamkd",
                            "task": task,
                            "precision": precision,
                            "batch_size": args.batch_size,
                            "lr": 5e-5,
                            "max_length": args.max_length,
                            "seed": 0,
                            "glue_dir": args.glue_dir,
                            "work_dir": work,
                            "steps": args.steps,
                            "extra": available[name]["extra"],
                        }
                        res = harness.run_worker(__file__, spec, env=available[name]["env"])
                        row = {
                            "setting": name,
                            "task": task,
                            "precision": precision,
                            "round": round_,
                            "examples_per_s": res["examples_per_s"],
                            "peak_rss_mib": res["child_maxrss_mib"],
                            "loop_s": res["loop_s"],
                        }
                        payload["runs"].append(row)
                        print(
                            f"{task} {precision} {name:13s} {row['examples_per_s']:6.1f} ex/s  "
                            f"peak RSS {row['peak_rss_mib']:.0f} MiB",
                            flush=True,
                        )
                        result_files.write_json(args.out, payload)
    rows = []
    summary = []
    for task in args.tasks.split(","):
        for precision in args.precision.split(","):
            base = None
            for name in names:
                rs = [
                    r
                    for r in payload["runs"]
                    if (r["setting"], r["task"], r["precision"]) == (name, task, precision)
                ]
                speed = measure.median([r["examples_per_s"] for r in rs])
                rss = measure.median([r["peak_rss_mib"] for r in rs])
                base = base or (speed, rss)
                summary.append(
                    {
                        "setting": name,
                        "task": task,
                        "precision": precision,
                        "examples_per_s_median": speed,
                        "peak_rss_mib_median": rss,
                    }
                )
                rows.append(
                    [
                        task,
                        precision,
                        name,
                        f"{speed:.1f}",
                        f"{speed / base[0]:.2f}x",
                        f"{rss:.0f}",
                        f"{rss / base[1]:.2f}x",
                    ]
                )
    payload["summary"] = summary
    result_files.write_json(args.out, payload, announce=True)
    print(
        tables.table(
            rows, ["task", "precision", "setting", "ex/s", "vs glibc", "RSS MiB", "vs glibc"]
        )
    )
    return 0


if __name__ == "__main__":
    harness.entry(main, {"bamkd": bamkd_worker})
