#!/usr/bin/env python
"""Distance to the hardware limit: model FLOPs per second of bamkd training vs measured matmul peak.

For each precision, in one fresh process:

1. Matrix-multiply throughput of this machine, measured before AND after training (so drift
   from other load shows): ``torch.matmul`` of two N x N matrices (``--matmul-sizes``, default
   1024 and 2048), in the run's dtype, best of several repetitions after a warm-up
   (TFLOP/s = 2 N^3 / time); and a "model-shaped" GEMM, the feed-forward matmul of a median
   batch ([batch * width, h] x [h, ff]), the best this model's own shapes reach. The peak used
   for the ratio is the best of all of these for the run's dtype.
2. bamkd training of MiniLM on MRPC (the ``minilm`` preset: batch 32, length-grouped dynamic
   padding, max length 128, sentence-order doubling on unless ``--no-double``) for ``--steps``
   optimizer steps, timing every step.
3. FLOPs per step counted from the real token counts of that step's batch. For a BERT encoder
   with L layers, hidden size h, feed-forward size ff and C head outputs, one sequence of s
   tokens costs in the forward pass (a multiply-add = 2 FLOPs):

       forward(s) = sum over layers [ 2*s*(4*h*h + 2*h*ff) ]   # Q, K, V, O and the two FFN matmuls
                  + sum over layers [ 4*s*s*h ]                 # Q K^T and A V
                  + 2*h*h + 2*h*C                               # pooler and head, once per sequence
       training(s) = 3 * forward(s)                             # backward ~ 2x forward

   Embeddings, LayerNorm, softmax, GELU, biases and the optimizer are left out. "Model FLOPs"
   use each row's real length s (useful work, the MFU convention); "hardware FLOPs" use the
   padded batch width (what the kernels actually compute).

Reported per precision: median step time, achieved model TFLOP/s (steady state: the first
``--skip`` steps excluded), MFU = that / best measured matmul TFLOP/s of the same dtype, and HFU
(padded tokens). ``--profile`` then (a) runs ``--profile-steps`` more steps, without the
profiler, and splits their wall time into the loop's phases (batch assembly, forward, backward,
gradient clipping, optimizer step: the times ``fit`` hands its step hooks; on a GPU only times up
to the clip are exact), and (b) ``--profile-steps`` more under
``torch.profiler``, printing the top operators by self CPU time and their share by class
(matmul, elementwise, copies/casts, ...), to show what keeps the ratio low.

Example (full size):
    python benchmarks/mfu.py --precision fp32,bf16 --steps 40 --profile \
        --out benchmarks/results/mfu.json
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
# Matmul peak
# --------------------------------------------------------------------------------------------


def matmul_tflops(m: int, k: int, n: int, dtype: str, reps: int, warmup: int = 2) -> dict:
    """Best and median TFLOP/s of ``torch.matmul`` of [m, k] x [k, n] in ``dtype``."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(m, k, device=device).to(dt)
    b = torch.randn(k, n, device=device).to(dt)
    for _ in range(warmup):
        torch.matmul(a, b)
    harness.sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        harness.sync()
        times.append(time.perf_counter() - t0)
    flops = 2.0 * m * k * n
    return {
        "shape": [m, k, n],
        "dtype": dtype,
        "reps": reps,
        "best_tflops": flops / min(times) / 1e12,
        "median_tflops": flops / measure.median(times) / 1e12,
    }


# --------------------------------------------------------------------------------------------
# Worker: matmul peak + timed bamkd training (+ profile) for one precision
# --------------------------------------------------------------------------------------------


def categorise(name: str) -> str:
    """Rough operator classes. On CPU the optimizer's foreach ops decompose into per-tensor
    add_/mul_/sqrt/div calls, so "elementwise" mixes model and optimizer work; the phase table
    (the loop's own phase times, bamkd.callbacks.PHASES) separates them.
    """
    n = name.lower()
    if "attention" in n or "softmax" in n:
        return "attention"
    if any(k in n for k in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "matmul")):
        return "matmul"
    if any(k in n for k in ("copy_", "aten::to", "_to_copy", "clone", "contiguous")):
        return "copies/casts"
    if "bernoulli" in n or "dropout" in n:
        return "dropout"
    if any(k in n for k in ("layer_norm", "gelu", "tanh")):
        return "norm/activation"
    if any(k in n for k in ("add", "mul", "div", "sqrt", "lerp", "addcmul", "where", "_foreach")):
        return "elementwise"
    if any(k in n for k in ("sum", "norm", "mean", "max")):
        return "reductions"
    return "other"


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    from bamkd.train import setup

    precision = spec["precision"]
    dtype = "bf16" if precision == "bf16" else "fp32"
    reps = spec["matmul_reps"]

    def square(dt: str) -> list[dict]:
        return [matmul_tflops(n, n, n, dt, reps) for n in spec["matmul_sizes"]]

    # Only the run's own dtype: on a CPU that emulates bf16, its peaks alone take many minutes.
    dtypes = (dtype,)
    # Measured before and after training, so drift (other load, clock changes) shows.
    square_before = {dt: square(dt) for dt in dtypes}

    run_dir = Path(tempfile.mkdtemp(prefix="bamkd-mfu-", dir=spec["work_dir"]))
    extra = [
        f"train.batch_size={spec['batch_size']}",
        f"data.max_seq_length={spec['max_length']}",
        f"data.double_unordered={'true' if spec['double'] else 'false'}",
        "train.log_every=1000000",
    ]
    cfg = measure.bamkd_config(
        [spec["task"]],
        run_dir,
        glue_dir=spec["glue_dir"],
        precision=precision,
        cache_dir=Path(spec["work_dir"]) / "token-cache",
        extra=extra,
    )
    with setup(cfg) as ctx:
        enc_cfg = ctx.raw_model.encoder.config
        facts = measure.encoder_facts(enc_cfg)
        num_outputs = sum(t.spec.num_outputs for t in ctx.tasks)
        steps = spec["steps"]
        res, _ = measure.bamkd_timed_fit(ctx, steps)

        # Model-shaped GEMMs: the FFN up-projection of a median-sized batch.
        widths = [max(b) for b in res["batch_lengths"]]
        tokens = spec["batch_size"] * int(np.median(widths))
        shaped = {
            dt: matmul_tflops(tokens, facts["hidden"], facts["ff"], dt, max(reps, 20))
            for dt in dtypes
        }
        square_after = {dt: square(dt) for dt in dtypes}
        best_square = {
            dt: max(r["best_tflops"] for r in square_before[dt] + square_after[dt]) for dt in dtypes
        }
        best = {dt: max(best_square[dt], shaped[dt]["best_tflops"]) for dt in dtypes}

        skip = min(spec["skip"], max(0, steps - 1))
        step_s = res["step_seconds"]
        model_f = [measure.train_flops(b, facts, num_outputs) for b in res["batch_lengths"]]
        hw_f = [
            measure.train_flops([max(b)] * len(b), facts, num_outputs) for b in res["batch_lengths"]
        ]
        steady = slice(skip, None)
        t_steady = sum(step_s[steady])
        achieved = sum(model_f[steady]) / t_steady / 1e12
        achieved_hw = sum(hw_f[steady]) / t_steady / 1e12
        out = {
            "precision": precision,
            "encoder": facts,
            "num_head_outputs": num_outputs,
            "params": sum(p.numel() for p in ctx.raw_model.parameters()),
            "attn_implementation": getattr(enc_cfg, "_attn_implementation", None),
            "matmul_square_before": square_before,
            "matmul_square_after": square_after,
            "matmul_model_shaped": shaped,
            "matmul_best_square_tflops": best_square,
            "matmul_best_tflops": best,
            "steps": steps,
            "skipped_steps": skip,
            "step_seconds": step_s,
            "batch_lengths": res["batch_lengths"],
            "median_step_s": measure.median(step_s[steady]),
            "examples_per_s_steady": sum(len(b) for b in res["batch_lengths"][steady]) / t_steady,
            "model_tflop_per_step_mean": sum(model_f) / len(model_f) / 1e12,
            "achieved_model_tflops": achieved,
            "achieved_hardware_tflops": achieved_hw,
            "mfu": achieved / best[dtype],
            "hfu": achieved_hw / best[dtype],
            "mfu_vs_square": achieved / best_square[dtype],
            "mfu_vs_model_shaped": achieved / shaped[dtype]["best_tflops"],
            "padding_overhead": res["padded_tokens"] / res["real_tokens"] - 1,
        }

        if spec["profile"]:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(ProfilerActivity.CUDA)
            # Pass 1, no profiler: wall-clock share of each phase, as the loop times them.
            t0 = time.perf_counter()
            _, clock = measure.bamkd_timed_fit(ctx, steps + spec["profile_steps"])
            wall = time.perf_counter() - t0
            phase_share = {k: v / wall for k, v in clock.phase_seconds().items()}
            phase_share["other (lr, logging, hooks)"] = max(0.0, 1 - sum(phase_share.values()))
            # Pass 2, under the profiler: which operators take the time.
            with profile(activities=activities, record_shapes=False) as prof:
                measure.bamkd_timed_fit(ctx, steps + 2 * spec["profile_steps"])
            rows = []
            for e in prof.key_averages():
                rows.append(
                    {
                        "name": e.key,
                        "self_cpu_ms": e.self_cpu_time_total / 1e3,
                        "cpu_total_ms": e.cpu_time_total / 1e3,
                        "count": e.count,
                        "category": categorise(e.key),
                    }
                )
            rows.sort(key=lambda r: -r["self_cpu_ms"])
            total = sum(r["self_cpu_ms"] for r in rows) or 1.0
            cats: dict[str, float] = {}
            for r in rows:
                cats[r["category"]] = cats.get(r["category"], 0.0) + r["self_cpu_ms"]
            out["profile"] = {
                "steps": spec["profile_steps"],
                "phase_pass_wall_s": wall,
                "phase_share_of_wall": phase_share,
                "total_self_cpu_ms": total,
                "by_category_share": {
                    k: v / total for k, v in sorted(cats.items(), key=lambda x: -x[1])
                },
                "top_ops": rows[: spec["profile_top"]],
            }
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="mrpc")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--steps", type=int, default=40, help="timed optimizer steps")
    p.add_argument("--skip", type=int, default=3, help="first steps left out of the steady state")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--no-double", action="store_true", help="no MRPC sentence-order doubling (default: on)"
    )
    p.add_argument("--matmul-sizes", default="1024,2048", help="square matmul sizes N")
    p.add_argument("--matmul-reps", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="profile a few more steps")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--work-dir", default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--out", default="benchmarks/results/mfu.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bamkd-mfu-"))
    work.mkdir(parents=True, exist_ok=True)
    payload = {**result_files.header(), "settings": vars(args), "results": []}
    started = time.perf_counter()
    for precision in precisions:
        print(f"{precision}: matmul peak + {args.steps} bamkd steps ...", flush=True)
        spec = {
            "kind": "mfu",
            "precision": precision,
            "task": args.task,
            "steps": args.steps,
            "skip": args.skip,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "double": not args.no_double,
            "matmul_sizes": [int(x) for x in args.matmul_sizes.split(",") if x.strip()],
            "matmul_reps": args.matmul_reps,
            "profile": args.profile,
            "profile_steps": args.profile_steps,
            "profile_top": args.profile_top,
            "glue_dir": args.glue_dir,
            "work_dir": str(work),
        }
        payload["results"].append(harness.run_worker(__file__, spec, timeout=args.timeout))
        payload["total_wall_s"] = time.perf_counter() - started
        result_files.write_json(args.out, payload)

    m = payload["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']}, {m['torch_threads']} "
        f"threads; MiniLM on {args.task}, batch {args.batch_size}, {args.steps} steps "
        f"(first {args.skip} excluded)\n"
    )
    rows = []
    for r in payload["results"]:
        dt = "bf16" if r["precision"] == "bf16" else "fp32"
        rows.append(
            [
                r["precision"],
                r["matmul_best_square_tflops"][dt],
                r["matmul_model_shaped"][dt]["best_tflops"],
                r["median_step_s"],
                r["examples_per_s_steady"],
                r["achieved_model_tflops"],
                r["achieved_hardware_tflops"],
                f"{100 * r['mfu']:.1f}%",
                f"{100 * r['hfu']:.1f}%",
            ]
        )
    print(
        tables.table(
            rows,
            [
                "precision",
                "square matmul TFLOP/s",
                "model-shaped GEMM TFLOP/s",
                "median step s",
                "examples/s",
                "model TFLOP/s",
                "hardware TFLOP/s",
                "MFU",
                "HFU",
            ],
        )
    )
    print(
        "\nMFU = model TFLOP/s (real tokens) / best measured matmul TFLOP/s of the same dtype "
        "(square or model-shaped); HFU counts padded tokens. Matmul detail (best TFLOP/s):"
    )
    for r in payload["results"]:
        for dt in r["matmul_square_before"]:
            before = ", ".join(
                f"{x['shape'][0]}²: {x['best_tflops']:.3f}" for x in r["matmul_square_before"][dt]
            )
            after = ", ".join(
                f"{x['shape'][0]}²: {x['best_tflops']:.3f}" for x in r["matmul_square_after"][dt]
            )
            sh = r["matmul_model_shaped"][dt]
            print(
                f"  [{r['precision']} run] {dt}: before {before}; after {after}; "
                f"model-shaped {sh['shape']}: {sh['best_tflops']:.3f}"
            )
    for r in payload["results"]:
        prof = r.get("profile")
        if not prof:
            continue
        print(f"\nprofile, {r['precision']}, {prof['steps']} steps")
        print(
            "  phases, share of wall time (no profiler): "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["phase_share_of_wall"].items())
        )
        print(f"  operator classes, share of self CPU time ({prof['steps']} more steps, profiled):")
        print("  " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["by_category_share"].items()))
        print(
            tables.table(
                [
                    [o["name"][:60], o["category"], o["self_cpu_ms"], o["count"]]
                    for o in prof["top_ops"]
                ],
                ["op", "category", "self CPU ms", "calls"],
            )
        )
    harness.finish(args.out, work, keep=bool(args.work_dir))
    return 0


if __name__ == "__main__":
    harness.entry(main, {"mfu": worker})
