"""Helpers shared by the benchmark scripts: machine facts, fresh-subprocess workers, bamkd and
Hugging Face Trainer runs instrumented the same way, tables and JSON output.

Not part of the library. Every benchmark runs each measurement in a fresh Python process (so the
peak resident memory it reports belongs to that measurement alone) through ``run_worker``; the
child calls back into the script with ``--worker SPEC.json`` and writes its result as JSON.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = REPO.parent / "shared" / "glue"

# Quiet, offline children: no hub, no telemetry, no tokenizer fork warnings, no bars.
CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "BAMKD_PROGRESS": "0",
    "PYTHONWARNINGS": "ignore",
}


# --------------------------------------------------------------------------------------------
# Machine facts and output
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import accelerate
    import torch
    import transformers

    import bamkd

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "bamkd": getattr(bamkd, "__version__", "unknown"),
        "git_commit": _git_commit(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty-src" if dirty.stdout.strip() else "")


def header(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The common head of every results file: command line, UTC date, machine."""
    return {
        "command": " ".join([Path(sys.executable).name, *(argv or sys.argv)]),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_json(path: str | Path, payload: dict[str, Any], *, announce: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    if announce:
        print(f"\nresults written to {path}")


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


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


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> float | None:
    """Half the range (max - min) / 2, a robust spread for a handful of repeats."""
    values = [v for v in values if v is not None]
    return (max(values) - min(values)) / 2 if len(values) > 1 else None


# --------------------------------------------------------------------------------------------
# Fresh-process workers
# --------------------------------------------------------------------------------------------


def peak_rss_mib() -> float | None:
    """This process's resident-set high-water mark (VmHWM), MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(
    script: str | Path,
    spec: dict[str, Any],
    *,
    timeout: float | None = None,
    quiet: bool = True,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script --worker SPEC --result OUT`` in a fresh process; return its JSON result.

    The child's own peak RSS (``peak_rss_mib``, read inside it) is in the result; the parent adds
    ``child_maxrss_mib`` from ``wait4`` (the same high-water mark, measured by the kernel) and
    ``process_wall_s`` (start to exit, model loading included). ``env`` adds to the child's
    environment.
    """
    with tempfile.TemporaryDirectory(prefix="bamkd-bench-") as tmp:
        spec_path, out_path, log_path = (Path(tmp) / n for n in ("spec.json", "out.json", "log"))
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, **CHILD_ENV, **(env or {})}
        cmd = [sys.executable, str(script), "--worker", str(spec_path), "--result", str(out_path)]
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            deadline = None if timeout is None else start + timeout
            status, usage = 0, None
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out_path.is_file():
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"worker {spec.get('kind')} failed (exit {proc.returncode}):\n{tail}"
            )
        if not quiet:
            print(log_path.read_text(errors="replace"))
        result = json.loads(out_path.read_text())
    result["child_maxrss_mib"] = usage.ru_maxrss / 1024 if usage is not None else None
    result["process_wall_s"] = wall
    return result


def worker_main(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Entry point of a child: ``--worker SPEC --result OUT``."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    argv = sys.argv
    spec = json.loads(Path(argv[argv.index("--worker") + 1]).read_text())
    out = Path(argv[argv.index("--result") + 1])
    result = handlers[spec["kind"]](spec)
    result["peak_rss_mib"] = peak_rss_mib()
    if _cuda():
        import torch

        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out.write_text(json.dumps(result, default=_json_default))


def is_worker() -> bool:
    return "--worker" in sys.argv


# --------------------------------------------------------------------------------------------
# Timing and FLOPs
# --------------------------------------------------------------------------------------------


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def sync() -> None:
    if _cuda():
        import torch

        torch.cuda.synchronize()


def encoder_facts(config) -> dict[str, int]:
    """Layer count L, hidden size h, feed-forward size ff of a BERT-like config."""
    return {
        "layers": int(config.num_hidden_layers),
        "hidden": int(config.hidden_size),
        "ff": int(config.intermediate_size),
    }


def forward_flops(lengths, facts: dict[str, int], num_outputs: int = 2) -> float:
    """Forward FLOPs of a BERT encoder + pooler + head on sequences of the given lengths.

    Per sequence of length s (a multiply-add counts 2 FLOPs):
      layers:    L * [2*s*(4*h*h + 2*h*ff)]   (Q, K, V, output projections; two FFN matmuls)
      attention: L * [4*s*s*h]                (Q K^T and A V)
      pooler + head: 2*h*h + 2*h*C            (once per sequence, on [CLS])
    Embedding lookups, LayerNorm, softmax, GELU and biases are left out (memory-bound, < 2%).
    """
    L, h, ff = facts["layers"], facts["hidden"], facts["ff"]
    total = 0.0
    for s in lengths:
        s = float(s)
        total += L * (2 * s * (4 * h * h + 2 * h * ff) + 4 * s * s * h)
        total += 2 * h * h + 2 * h * num_outputs
    return total


def train_flops(lengths, facts: dict[str, int], num_outputs: int = 2) -> float:
    """Training FLOPs = 3 x forward (backward costs about twice the forward)."""
    return 3.0 * forward_flops(lengths, facts, num_outputs)


# --------------------------------------------------------------------------------------------
# bamkd, instrumented
# --------------------------------------------------------------------------------------------


def bamkd_config(
    tasks: Sequence[str],
    run_dir: str | Path,
    *,
    glue_dir: str | Path,
    precision: str,
    cache_dir: str | Path | None = None,
    extra: Sequence[str] = (),
):
    """The ``minilm`` preset on ``tasks`` with the given precision, quiet, no checkpoints."""
    from bamkd.config import build_config

    overrides = [
        f"data.glue_dir={glue_dir}",
        f"data.tasks=[{','.join(tasks)}]",
        # Quoted: YAML 1.1 reads a bare no as false.
        f"train.mixed_precision='{'no' if precision == 'fp32' else precision}'",
        "train.progress=false",
        "train.checkpoint_every=0",
        f"output_dir={run_dir}",
    ]
    if cache_dir:
        overrides.append(f"data.cache_dir={cache_dir}")
    return build_config("minilm", [*overrides, *extra])


class StepClock:
    """Wall time at the end of every optimizer step (wraps ``optimizer.step``)."""

    def __init__(self, optimizer) -> None:
        self.times: list[float] = []
        self.start = time.perf_counter()
        inner = optimizer.step

        def step(*args, **kwargs):
            out = inner(*args, **kwargs)
            sync()
            self.times.append(time.perf_counter())
            return out

        optimizer.step = step

    def reset(self) -> None:
        sync()
        self.start = time.perf_counter()
        self.times = []

    def step_seconds(self) -> list[float]:
        edges = [self.start, *self.times]
        return [b - a for a, b in zip(edges, edges[1:])]


def bamkd_batches(ctx, steps: int) -> list:
    """The global batches (row-index arrays) the loop of ``ctx`` visits in its first ``steps``."""
    plan, out, cache = ctx.plan, [], {}
    for step in range(steps):
        epoch, index = divmod(step, plan.batches_per_epoch)
        if epoch not in cache:
            cache = {epoch: plan.epoch_batches(epoch)}
        out.append(cache[epoch][index])
    return out


def token_counts(lengths_per_batch) -> dict[str, int]:
    """Rows, real tokens and padded tokens (rows x longest) over a list of length arrays."""
    rows = real = padded = 0
    for lens in lengths_per_batch:
        rows += len(lens)
        real += int(sum(lens))
        padded += len(lens) * int(max(lens))
    return {"rows": rows, "real_tokens": real, "padded_tokens": padded}


def bamkd_timed_fit(ctx, steps: int | None, *, keep_finish: bool = False) -> dict[str, Any]:
    """Run ``bamkd.train.fit`` on ``ctx`` for ``steps`` optimizer steps (None: as planned).

    With a step count the run's schedule (warmup + decay, lambda) is planned over exactly
    ``steps``. Unless ``keep_finish``, the final save + dev evaluation is skipped: the timing
    covers the training loop only. Returns loop wall time, per-step times and token counts.
    """
    import bamkd.train as bt

    if steps is not None:
        ctx.total_steps = steps
        ctx.state.total_steps = steps
    total = ctx.total_steps
    batches = bamkd_batches(ctx, total)
    lengths = [ctx.store.lengths[rows] for rows in batches]
    clock = StepClock(ctx.optimizer)
    original_finish = bt.finish
    if not keep_finish:

        def no_finish(c):
            c.accelerator.end_training()
            return {}

        bt.finish = no_finish
    try:
        clock.reset()
        metrics = bt.fit(ctx)
    finally:
        bt.finish = original_finish
        if ctx.lock is not None:
            ctx.lock.release()
    step_s = clock.step_seconds()
    counts = token_counts(lengths)
    loop_s = clock.times[-1] - clock.start if clock.times else float("nan")
    return {
        "steps": len(step_s),
        "loop_s": loop_s,
        "step_seconds": step_s,
        "batch_lengths": [[int(x) for x in lens] for lens in lengths],
        **counts,
        "examples_per_s": counts["rows"] / loop_s,
        "dev_metrics": metrics or None,
        "metrics_jsonl_examples_per_s": _jsonl_rate(ctx.run_dir, [len(x) for x in lengths]),
    }


def _jsonl_rate(run_dir: Path, rows_per_step: Sequence[int]) -> float | None:
    """Examples/s over the whole loop from the run's own metrics.jsonl windows.

    Each record's ``examples_per_s`` covers the steps since the previous logged step; the rows
    of those steps are known from the batch plan.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    seconds = examples = 0.0
    last_step = 0
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rate = rec.get("examples_per_s")
        if not isinstance(rate, (int, float)) or rate <= 0:
            continue
        rows = sum(rows_per_step[last_step : rec["step"]])
        last_step = rec["step"]
        seconds += rows / rate
        examples += rows
    return examples / seconds if seconds else None


# --------------------------------------------------------------------------------------------
# The Hugging Face Trainer, configured like the official run_glue.py example
# --------------------------------------------------------------------------------------------


def minilm_path() -> str:
    from bamkd.model import resolve_model_path

    return resolve_model_path("minilm")


def hf_features(spec, examples, tokenizer, max_length: int, pad_to_max: bool) -> list[dict]:
    """run_glue.py's preprocessing: ``tokenizer(a, b, padding, max_length, truncation=True)``."""
    texts_a = [ex.text_a for ex in examples]
    texts_b = [ex.text_b for ex in examples] if spec.is_pair else None
    enc = tokenizer(
        texts_a,
        texts_b,
        padding="max_length" if pad_to_max else False,
        max_length=max_length,
        truncation=True,
    )
    feats = []
    for i, ex in enumerate(examples):
        row = {k: enc[k][i] for k in enc}
        if ex.label is not None:
            row["labels"] = float(ex.label) if spec.kind == "regression" else int(ex.label)
        feats.append(row)
    return feats


class CountingCollator:
    """Wraps a data collator and records the real length and padded width of every batch."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batch_lengths: list[list[int]] = []
        self.widths: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch["attention_mask"]
        self.batch_lengths.append([int(x) for x in mask.sum(-1).tolist()])
        self.widths.append(int(mask.shape[-1]))
        return batch

    def reset(self) -> None:
        self.batch_lengths, self.widths = [], []

    def counts(self) -> dict[str, int]:
        rows = sum(len(b) for b in self.batch_lengths)
        real = sum(sum(b) for b in self.batch_lengths)
        padded = sum(len(b) * w for b, w in zip(self.batch_lengths, self.widths))
        return {"rows": rows, "real_tokens": real, "padded_tokens": padded}


def hf_training_args(
    out_dir: str | Path,
    *,
    variant: str,
    precision: str,
    steps: int | None = None,
    epochs: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 5e-5,
    eval_batch_size: int = 128,
):
    """TrainingArguments kept offline and quiet; ``variant`` 'best' adds length grouping."""
    import torch
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir),
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": eval_batch_size,
        "learning_rate": lr,
        "weight_decay": 0.01,  # bamkd's value (run_glue's default is 0.0; no effect on speed)
        "lr_scheduler_type": "linear",
        "warmup_steps": 0.1,  # a float < 1 is a fraction of the steps in transformers 5
        "max_grad_norm": 1.0,
        "bf16": precision == "bf16",
        "use_cpu": not torch.cuda.is_available(),
        "report_to": "none",
        "push_to_hub": False,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "seed": seed,
        "train_sampling_strategy": "group_by_length" if variant == "best" else "random",
    }
    if steps is not None:
        kwargs["max_steps"] = steps
    else:
        kwargs["num_train_epochs"] = epochs
    return TrainingArguments(**kwargs)


def hf_trainer(spec, model, tokenizer, args, train_features, variant: str):
    """A Trainer with run_glue's collator for ``variant`` (default: padded; best: dynamic)."""
    from transformers import (
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        default_data_collator,
    )

    collator = CountingCollator(
        default_data_collator if variant == "default" else DataCollatorWithPadding(tokenizer)
    )

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.begin = self.end = None
            self.times: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            sync()
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            self.times.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kw):
            sync()
            self.end = time.perf_counter()

    clock = Clock()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_features,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    return trainer, collator, clock


def hf_model(spec, path: str | None = None):
    """AutoModelForSequenceClassification on MiniLM: BERT pooler -> dropout -> linear, as bamkd."""
    from transformers import AutoModelForSequenceClassification

    num_labels = 1 if spec.kind == "regression" else len(spec.label_names)
    return AutoModelForSequenceClassification.from_pretrained(
        path or minilm_path(), num_labels=num_labels
    )


def hf_dev_metrics(trainer, spec, dev_features, dev_examples) -> dict[str, float]:
    """Dev metrics of a trained Trainer, computed with bamkd's own metric code."""
    import numpy as np

    from bamkd.metrics import evaluate_task_metrics

    # With group_by_length the Trainer also length-groups its *evaluation* sampler
    # (Trainer._get_eval_sampler), so predict() returns rows in a shuffled order. Evaluate
    # in dataset order, or every metric compares predictions with the wrong labels.
    strategy = trainer.args.train_sampling_strategy
    trainer.args.train_sampling_strategy = "random"
    try:
        out = trainer.predict(dev_features)
    finally:
        trainer.args.train_sampling_strategy = strategy
    logits = out.predictions
    if spec.kind == "classification":
        preds = np.asarray(logits).argmax(-1)
        labels = np.array([int(ex.label) for ex in dev_examples])
    else:
        preds = np.asarray(logits).reshape(-1).astype(np.float64)
        labels = np.array([float(ex.label) for ex in dev_examples])
    split = spec.eval_splits[0]
    return evaluate_task_metrics(spec, {split: preds}, {split: labels})
