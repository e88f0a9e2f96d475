#!/usr/bin/env python
"""One `bamkd run` sitting with every core against several sittings that share the cores.

Several sittings of one experiment share its runs (each trains the runs no other sitting holds),
so a study's independent runs can train side by side. On a CPU this only pays if each sitting
takes its share of the cores (OMP_NUM_THREADS = cores / sittings): small matrices keep two
threads of one process from doing twice the work of one. This script trains the same runs both
ways, in alternation, each in a fresh experiment folder:

- ``1 sitting``: one `bamkd run` with ``--threads`` threads (default: every core);
- ``N sittings``: N `bamkd run` processes started together on the same experiment YAML, each with
  threads / N.

The runs: ``--runs`` seeds of a multi-task run on the study's five tasks (CoLA, SST-2, MRPC, STS-B,
RTE) with the study's multi-task settings (configs/paper_faithful.yaml: packed mixed batches, the
reference multiples, batch 128, bf16), each task cut to its first ``--rows`` rows and one epoch,
then the run's dev evaluation, as a study's sitting does it. Inference speed is not measured.
An untimed warm-up run first tokenizes the tasks into a cache every layout then reads.

Reported per layout: wall time from the first start to the last exit, training examples per
second of wall time (every run's examples over it), each run's own loop examples/s and which
sitting (process) trained it.

Example (about 6 minutes on 2 cores):
    python benchmarks/sittings.py --runs 2 --rows 256 --out results/sittings.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import result_files
import tables
import yaml

TASKS = ["cola", "sst2", "mrpc", "stsb", "rte"]
TRAINED_NOW = re.compile(r"runs \((\d+) trained now")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2, help="independent runs (seeds 0..runs-1)")
    p.add_argument("--rows", type=int, default=256, help="training rows per task (train_limit)")
    p.add_argument("--sittings", type=int, default=2, help="sittings of the shared layout")
    p.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads in all"
    )
    p.add_argument("--repeats", type=int, default=1, help="measurements of each layout")
    p.add_argument("--glue-dir", type=Path, default=harness.DEFAULT_GLUE)
    p.add_argument("--out", default="results/sittings.json")
    args = p.parse_args(argv)
    if args.threads % args.sittings:
        p.error(f"--threads {args.threads} does not split evenly into {args.sittings} sittings")
    if args.runs % args.sittings:
        p.error(f"--runs {args.runs} does not split evenly into {args.sittings} sittings")
    return args


def experiment_yaml(folder: Path, args: argparse.Namespace, runs: int) -> Path:
    """The study's multi-task settings on a cut of each task: ``runs`` seeds of Multi."""
    spec = {
        "name": "sittings",
        "output_dir": str(folder / "out"),
        "tasks": TASKS,
        "seeds": list(range(runs)),
        "variants": ["multi"],
        "base": {
            "model": {"name_or_path": "minilm", "regression_head": "linear"},
            "data": {
                "glue_dir": str(args.glue_dir.resolve()),
                "max_seq_length": 128,
                "train_limit": args.rows,
                "length_grouped": False,
                "packing": True,
            },
            "train": {"mixed_precision": "bf16", "log_every": 10, "checkpoint_every": 0},
        },
        "multi": {
            "train": {
                "epochs": 1,
                "batch_size": 128,
                "lr": 1.0e-4,
                "task_weighting": "reference",
            }
        },
        "speed": {"measure": False},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def measure_layout(
    sittings: int, args: argparse.Namespace, cache: Path, runs: int | None = None
) -> dict[str, Any]:
    """Train the runs with ``sittings`` processes sharing ``args.threads`` threads."""
    threads = args.threads // sittings
    with tempfile.TemporaryDirectory(prefix="bamkd-sittings-") as tmp:
        folder = Path(tmp)
        exp = experiment_yaml(folder, args, runs or args.runs)
        env = {
            **os.environ,
            **harness.CHILD_ENV,
            "OMP_NUM_THREADS": str(threads),
            "BAMKD_CACHE": str(cache),  # tokenized once, by the warm-up, for every layout
        }
        command = [sys.executable, "-m", "bamkd.cli", "run", str(exp)]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(sittings)
        ]
        logs = [p.communicate()[0].decode(errors="replace") for p in procs]
        wall = time.perf_counter() - start
        for proc, log in zip(procs, logs):
            if proc.returncode != 0:
                raise SystemExit(f"a sitting failed (exit {proc.returncode}):\n{log[-3000:]}")
        runs = []
        for state_path in sorted((folder / "out" / "runs").glob("*/seed*/trainer_state.json")):
            state = json.loads(state_path.read_text())
            runs.append(
                {
                    "run": str(state_path.parent.relative_to(folder / "out" / "runs")),
                    "examples": state["examples_seen"],
                    "loop_s": state["elapsed_seconds"],
                    "loop_examples_per_s": state["examples_seen"] / state["elapsed_seconds"],
                }
            )
        # Runs each sitting trained, from its summary line ("... (1 trained now, ...").
        trained_by = [int(m.group(1)) if (m := TRAINED_NOW.search(log)) else 0 for log in logs]
    examples = sum(r["examples"] for r in runs)
    return {
        "layout": f"{sittings} sitting{'s' if sittings > 1 else ''} x {threads} thread(s)",
        "sittings": sittings,
        "threads_per_sitting": threads,
        "wall_s": wall,
        "examples": examples,
        "examples_per_wall_s": examples / wall,
        "runs_trained_per_sitting": trained_by,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payload: dict[str, Any] = {**result_files.header(argv), "settings": vars(args), "layouts": []}
    with tempfile.TemporaryDirectory(prefix="bamkd-sittings-cache-") as cache:
        # Untimed: tokenizes the tasks into the shared cache and reads the model from disk,
        # so the first timed layout pays neither.
        measure_layout(1, args, Path(cache), runs=1)
        for repeat in range(args.repeats):
            for sittings in (1, args.sittings):  # alternating: drift hits both layouts alike
                point = measure_layout(sittings, args, Path(cache))
                point["repeat"] = repeat
                payload["layouts"].append(point)
                print(
                    f"{point['layout']}: {point['wall_s']:.1f} s, "
                    f"{point['examples_per_wall_s']:.1f} examples/s of wall time",
                    flush=True,
                )
                result_files.write_json(args.out, payload)
    print("\n".join(tables.sittings_tables(payload)))
    result_files.write_json(args.out, payload, announce=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
