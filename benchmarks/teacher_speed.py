#!/usr/bin/env python
"""Teacher-prediction speed: bamkd against a plain ``Trainer.predict`` on the same data and model.

A teacher run folder is needed. Unless ``--run`` names a finished MiniLM run, the script trains a
throwaway one (MRPC, ``data.train_limit=64``, 1 epoch: the weights do not change the speed) and
then clears ``train_limit`` in that run's ``config.yaml`` so teacher prediction covers the FULL
MRPC training split. The split is predicted as ``bamkd teach`` does: **doubled** (3,668 pairs plus
their 3,668 sentence-swapped copies = 7,336 rows) unless ``--no-double``. The token cache is filled
before any timing, so tokenization is outside every measurement.

Systems, each in a fresh process, alternating for ``--repeats`` rounds, fp32 and bf16:

  bamkd-teach      ``bamkd.teach.teach(run)`` end to end: load the model, read the token cache,
                   predict (length-sorted batches of eval_batch_size=128, dynamic padding), write
                   the safetensors predictions + manifest.
  bamkd-predict    ``bamkd.evaluate.predict_outputs`` on the encoded split: inference only.
  trainer-default  ``Trainer.predict`` with run_glue's default preprocessing (every row padded to
                   128, default data collator), batch 128; inference only.
  trainer-dynamic  ``Trainer.predict`` with ``DataCollatorWithPadding`` (dynamic padding, file
                   order), batch 128; inference only.

The Trainer systems run ``BertForSequenceClassification`` holding exactly the teacher's weights
(encoder -> ``bert.``, the task head -> ``classifier``); in fp32 the script checks that its
logits equal bamkd's on the first 128 rows and reports the largest difference.

Example (full size):
    python benchmarks/teacher_speed.py --precision fp32,bf16 --repeats 3 \
        --out benchmarks/results/teacher_speed.json
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

SYSTEMS = ("bamkd-teach", "bamkd-predict", "trainer-default", "trainer-dynamic")


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def make_run_worker(spec: dict) -> dict:
    """Train a tiny teacher run, clear its train_limit, fill the token cache of the full split."""
    from bamkd.config import from_dict, load_yaml
    from bamkd.evaluate import LoadedRun
    from bamkd.train import train

    run_dir = Path(spec["run_dir"])
    cfg = measure.bamkd_config(
        [spec["task"]],
        run_dir,
        glue_dir=spec["glue_dir"],
        precision="fp32",
        cache_dir=spec["cache_dir"],
        extra=["data.train_limit=64", "train.epochs=1", "data.eval_limit=32"],
    )
    t0 = time.perf_counter()
    train(cfg)
    train_s = time.perf_counter() - t0
    config_path = run_dir / "config.yaml"
    from bamkd.config import RunConfig

    saved = from_dict(RunConfig, load_yaml(config_path))
    saved.data.train_limit = spec.get("limit")  # None: the full split
    saved.data.double_unordered = spec["double"]
    config_path.write_text(saved.to_yaml())
    run = LoadedRun(run_dir, mixed_precision="no")
    enc = _encoded(run, spec["task"], spec["double"])
    return {"run_dir": str(run_dir), "train_s": train_s, "rows": len(enc)}


def _encoded(run, task_name: str, double: bool):
    """The split teach() predicts: the run's train_limit, doubled when the task is symmetric."""
    spec = run.specs[task_name]
    return run.encode(
        spec, "train", limit=run.cfg.data.train_limit, double=spec.symmetric and double
    )


def bamkd_teach_worker(spec: dict) -> dict:
    from accelerate import Accelerator

    from bamkd.teach import teach

    acc = Accelerator(mixed_precision="no" if spec["precision"] == "fp32" else spec["precision"])
    t0 = time.perf_counter()
    written = teach(spec["run_dir"], tasks=[spec["task"]], accelerator=acc)
    seconds = time.perf_counter() - t0
    from safetensors import safe_open

    rows = None
    with safe_open(str(written[0]), "np") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open has keys(), not __iter__)
            rows = f.get_slice(key).get_shape()[0]
            break
    return {"seconds": seconds, "rows": rows, "file": str(written[0])}


def bamkd_predict_worker(spec: dict) -> dict:
    from bamkd.evaluate import LoadedRun

    run = LoadedRun(
        spec["run_dir"], mixed_precision="no" if spec["precision"] == "fp32" else "bf16"
    )
    enc = _encoded(run, spec["task"], spec["double"])
    lengths = enc.lengths
    harness.sync()
    t0 = time.perf_counter()
    run.outputs(enc, spec["task"], desc=None)
    harness.sync()
    seconds = time.perf_counter() - t0
    bs = run.cfg.train.eval_batch_size
    order = sorted(lengths, reverse=True)
    padded = sum(len(order[i : i + bs]) * max(order[i : i + bs]) for i in range(0, len(order), bs))
    return {
        "seconds": seconds,
        "rows": len(enc),
        "real_tokens": int(lengths.sum()),
        "padded_tokens": int(padded),
        "attn_implementation": getattr(run.model.encoder.config, "_attn_implementation", None),
    }


def hf_from_run(run_dir: str, task: str):
    """BertForSequenceClassification holding a bamkd run's encoder and ``task`` head weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from bamkd.model import MultiTaskModel, model_folder

    folder = model_folder(run_dir)
    bam = MultiTaskModel.from_pretrained(folder)
    spec = bam.tasks_by_name[task]
    config = AutoConfig.from_pretrained(folder)
    config.num_labels = spec.num_outputs
    hf = AutoModelForSequenceClassification.from_config(config)
    state = {}
    for k, v in bam.state_dict().items():
        if k.startswith("encoder."):
            state["bert." + k[len("encoder.") :]] = v
        elif k.startswith(f"heads.{task}."):
            state["classifier." + k[len(f"heads.{task}.") :]] = v
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(
            f"weight mapping failed: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    hf.eval()
    return hf, bam


def trainer_worker(spec: dict) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from bamkd.data import load_encoded, swapped
    from bamkd.evaluate import predict_outputs
    from bamkd.model import model_folder
    from bamkd.runtime.runs import load_run_config
    from bamkd.tasks import read_split

    cfg = load_run_config(spec["run_dir"])
    model, bam = hf_from_run(spec["run_dir"], spec["task"])
    task = bam.tasks_by_name[spec["task"]]
    tokenizer = AutoTokenizer.from_pretrained(model_folder(spec["run_dir"]))
    examples = read_split(task, "train", cfg.data.glue_dir, limit=cfg.data.train_limit)
    originals = len(examples)
    if task.symmetric and spec["double"]:
        examples = list(examples) + swapped(examples)
    pad = spec["system"] == "trainer-default"
    feats = hf_baseline.hf_features(task, examples, tokenizer, cfg.data.max_seq_length, pad)
    collator = hf_baseline.CountingCollator(
        default_data_collator if pad else DataCollatorWithPadding(tokenizer)
    )
    out_dir = Path(tempfile.mkdtemp(prefix="hf-predict-", dir=spec["work_dir"]))
    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        bf16=spec["precision"] == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        push_to_hub=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(model=model, args=args, data_collator=collator, processing_class=tokenizer)
    harness.sync()
    t0 = time.perf_counter()
    out = trainer.predict(feats)
    harness.sync()
    seconds = time.perf_counter() - t0
    counts = collator.counts()
    res = {
        "seconds": seconds,
        "rows": len(feats),
        "real_tokens": counts["real_tokens"],
        "padded_tokens": counts["padded_tokens"],
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    if spec["precision"] == "fp32":
        # Same weights, same inputs: the logits must agree with bamkd's.
        n = min(128, originals)  # rows before the swapped copies, in file order
        enc = load_encoded(
            task,
            "train",
            tokenizer,
            cfg.data.max_seq_length,
            data_dir=cfg.data.glue_dir,
            limit=n,
            cache_dir=cfg.data.cache_dir,
        )
        ref = predict_outputs(
            bam,
            enc,
            task.name,
            pad_id=tokenizer.pad_token_id or 0,
            use_token_types="token_type_ids" in tokenizer.model_input_names,
        )
        res["max_abs_logit_diff_vs_bamkd"] = float(
            np.abs(np.asarray(out.predictions)[:n].reshape(ref.shape) - ref).max()
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="mrpc")
    p.add_argument("--run", default=None, help="a finished MiniLM run folder to use as teacher")
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma list: " + ", ".join(SYSTEMS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-double", action="store_true", help="predict the undoubled split")
    p.add_argument("--limit", type=int, default=None, help="first N train rows only (smoke tests)")
    p.add_argument("--glue-dir", default=str(harness.DEFAULT_GLUE))
    p.add_argument("--work-dir", default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--out", default="benchmarks/results/teacher_speed.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bamkd-teach-"))
    work.mkdir(parents=True, exist_ok=True)
    double = not args.no_double
    payload = {**result_files.header(), "settings": vars(args), "runs": []}
    started = time.perf_counter()

    if args.run:
        run_dir = str(Path(args.run).resolve())
        payload["teacher_run"] = {"run_dir": run_dir, "created": False}
        print(f"teacher run: {run_dir} (its own config decides limits and doubling)")
    else:
        run_dir = str(work / "teacher")
        print("training a throwaway MiniLM teacher (64 rows, 1 epoch) ...", flush=True)
        made = harness.run_worker(
            __file__,
            {
                "kind": "make_run",
                "task": args.task,
                "run_dir": run_dir,
                "glue_dir": args.glue_dir,
                "cache_dir": str(work / "token-cache"),
                "double": double,
                "limit": args.limit,
            },
            timeout=args.timeout,
        )
        payload["teacher_run"] = {**made, "created": True}
        print(f"  {made['rows']} rows to predict ({'doubled' if double else 'not doubled'})")

    total = args.repeats * len(precisions) * len(systems)
    done = 0
    for rnd in range(args.repeats):
        for precision in precisions:
            for system in systems:
                done += 1
                print(
                    f"[{done}/{total}] round {rnd + 1} {precision} {system} ...",
                    end=" ",
                    flush=True,
                )
                kind = system if system.startswith("bamkd") else "trainer"
                spec = {
                    "kind": kind,
                    "system": system,
                    "task": args.task,
                    "precision": precision,
                    "run_dir": run_dir,
                    "double": double,
                    "work_dir": str(work),
                }
                res = harness.run_worker(__file__, spec, timeout=args.timeout)
                res.update(system=system, precision=precision, round=rnd)
                res["examples_per_s"] = res["rows"] / res["seconds"]
                payload["runs"].append(res)
                print(
                    f"{res['examples_per_s']:.1f} ex/s ({res['rows']} rows, "
                    f"{res['seconds']:.1f} s), peak RSS {res['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
                payload["total_wall_s"] = time.perf_counter() - started
                result_files.write_json(args.out, payload)

    groups: dict[tuple, list[dict]] = {}
    for r in payload["runs"]:
        groups.setdefault((r["precision"], r["system"]), []).append(r)
    summary = []
    for (precision, system), rs in groups.items():
        summary.append(
            {
                "precision": precision,
                "system": system,
                "n": len(rs),
                "rows": rs[0]["rows"],
                "examples_per_s_median": measure.median([r["examples_per_s"] for r in rs]),
                "examples_per_s_half_range": measure.spread([r["examples_per_s"] for r in rs]),
                "padding_overhead": measure.median(
                    [r["padded_tokens"] / r["real_tokens"] - 1 for r in rs if "real_tokens" in r]
                ),
                "peak_rss_mib_median": measure.median([r["peak_rss_mib"] for r in rs]),
                "max_abs_logit_diff_vs_bamkd": max(
                    (
                        r["max_abs_logit_diff_vs_bamkd"]
                        for r in rs
                        if "max_abs_logit_diff_vs_bamkd" in r
                    ),
                    default=None,
                ),
            }
        )
    by = {(s["precision"], s["system"]): s for s in summary}
    for s in summary:
        base = by.get((s["precision"], "trainer-default"))
        s["speedup_vs_trainer_default"] = (
            s["examples_per_s_median"] / base["examples_per_s_median"] if base else None
        )
        dyn = by.get((s["precision"], "trainer-dynamic"))
        s["speedup_vs_trainer_dynamic"] = (
            s["examples_per_s_median"] / dyn["examples_per_s_median"] if dyn else None
        )
    payload["summary"] = summary
    payload["total_wall_s"] = time.perf_counter() - started
    result_files.write_json(args.out, payload)

    m = payload["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']}, transformers "
        f"{m['transformers']}; {args.task} train split "
        f"({'doubled' if double else 'not doubled'}), {args.repeats} rounds\n"
    )
    print(
        tables.table(
            [
                [
                    s["precision"],
                    s["system"],
                    s["rows"],
                    s["examples_per_s_median"],
                    s["examples_per_s_half_range"],
                    None
                    if s["padding_overhead"] is None
                    else f"{100 * s['padding_overhead']:.0f}%",
                    s["peak_rss_mib_median"],
                    s["speedup_vs_trainer_default"],
                    s["speedup_vs_trainer_dynamic"],
                    s["max_abs_logit_diff_vs_bamkd"],
                ]
                for s in summary
            ],
            [
                "precision",
                "system",
                "rows",
                "examples/s (median)",
                "± half-range",
                "padding",
                "peak RSS MiB",
                "× trainer-default",
                "× trainer-dynamic",
                "max |Δlogit| (fp32)",
            ],
        )
    )
    harness.finish(args.out, work, keep=bool(args.work_dir))
    return 0


if __name__ == "__main__":
    harness.entry(
        main,
        {
            "make_run": make_run_worker,
            "bamkd-teach": bamkd_teach_worker,
            "bamkd-predict": bamkd_predict_worker,
            "trainer": trainer_worker,
        },
    )
