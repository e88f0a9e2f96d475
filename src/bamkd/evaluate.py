"""One inference path for every use: dev metrics, test predictions and teacher outputs.

Rows are sorted by length so batches carry little padding, run without gradients (under the
run's mixed precision), sharded across processes and gathered back into the original order,
with no row counted twice.

A finished run is evaluated through `LoadedRun`, which loads its final model with its resolved
config, so the data are read and tokenized exactly as in training (same tasks, data folders,
max length, doubling): `evaluate_run` recomputes its dev metrics and `inference_speed` times its
predictions. `bamkd.teach` and `bamkd.outputs.submission` predict through the same class.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bamkd.data import Encoded, ExampleStore, load_encoded, padding_settings
from bamkd.errors import BamkdError
from bamkd.metrics import evaluate_task_metrics
from bamkd.model import MultiTaskModel, load_tokenizer, model_folder
from bamkd.runtime.devices import make_accelerator
from bamkd.runtime.progress import progress_bar
from bamkd.runtime.runs import DEV_METRICS_NAME, load_run_config
from bamkd.runtime.storage import write_json
from bamkd.tasks import TaskSpec

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_outputs(
    model: MultiTaskModel,
    enc: Encoded,
    head: str,
    *,
    pad_id: int,
    use_token_types: bool,
    batch_size: int = 128,
    accelerator: Accelerator | None = None,
    desc: str | None = None,
) -> np.ndarray:
    """Raw head outputs for every row of ``enc``: logits [n, C] or [0, 1] scores [n].

    With an accelerator of several processes each process predicts a strided share of the
    length-sorted rows and the shares are gathered; every process gets the full result.
    """
    raw = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = raw.training
    raw.eval()
    store = ExampleStore([enc], [enc.task], pad_id, use_token_types)
    order = np.argsort(-store.lengths, kind="stable")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = order[rank::world]
    per_rank = math.ceil(len(order) / world)
    device = next(raw.parameters()).device
    outputs: list[torch.Tensor] = []
    batches = range(0, len(mine), batch_size)
    for start in progress_bar(batches, desc=desc, unit="batch", main=rank == 0):
        batch = store.batch(mine[start : start + batch_size])
        inputs = {
            k: batch[k].to(device)
            for k in ("input_ids", "attention_mask", "token_type_ids")
            if k in batch
        }
        ctx = (
            accelerator.autocast()
            if accelerator is not None
            else torch.autocast("cpu", enabled=False)
        )
        with ctx:
            out = raw(**inputs)[head]
        outputs.append(out.float().cpu())
    width = raw.tasks_by_name[head].num_outputs  # the head's width
    result = torch.cat(outputs) if outputs else torch.zeros(0, width)
    if result.ndim == 1:
        result = result[:, None]
    if world > 1:
        assert accelerator is not None  # several processes come only with an accelerator
        # Pad every share to the same length so the all-gather is a plain tensor gather, and
        # carry the row indices along to put each output back in its place exactly once.
        padded = torch.zeros(per_rank, result.shape[1])
        padded[: len(result)] = result
        index = torch.full((per_rank,), -1, dtype=torch.long)
        index[: len(mine)] = torch.from_numpy(mine)
        all_out = accelerator.gather(padded.to(accelerator.device)).cpu()
        all_idx = accelerator.gather(index.to(accelerator.device)).cpu()
        keep = all_idx >= 0
        result = torch.zeros(len(order), result.shape[1])
        result[all_idx[keep]] = all_out[keep]
        values = result.numpy()
    else:
        values = np.empty((len(order), result.shape[1]), dtype=np.float32)
        values[mine] = result.numpy()
    if was_training:
        raw.train()
    return values[:, 0] if raw.tasks_by_name[head].kind == "regression" else values


def to_predictions(spec: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """Class indices, or regression scores back on the task's own scale (x5 for STS-B)."""
    if spec.kind == "classification":
        return outputs.argmax(-1)
    return np.array([spec.unscale(float(v)) for v in outputs], dtype=np.float64)


def evaluate(
    model: MultiTaskModel,
    eval_sets: Mapping[str, Mapping[str, Encoded]],
    specs: Mapping[str, TaskSpec],
    *,
    pad_id: int,
    use_token_types: bool,
    batch_size: int = 128,
    accelerator: Accelerator | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per task on its evaluation splits: ``{task: {metric: value}}``."""
    results: dict[str, dict[str, float]] = {}
    for task, splits in eval_sets.items():
        spec = specs[task]
        head = spec.head_task or task
        preds, labels = {}, {}
        for split, enc in splits.items():
            out = predict_outputs(
                model,
                enc,
                head,
                pad_id=pad_id,
                use_token_types=use_token_types,
                batch_size=batch_size,
                accelerator=accelerator,
                desc=f"eval {task}/{split}",
            )
            preds[split] = to_predictions(spec, out)
            labels[split] = enc.labels.astype(
                np.int64 if spec.kind == "classification" else np.float64
            )
        results[task] = evaluate_task_metrics(spec, preds, labels)
    return results


class LoadedRun:
    """A finished run's model, tokenizer, config and task specs, ready for inference."""

    def __init__(
        self,
        run_dir: str | Path,
        accelerator: Accelerator | None = None,
        mixed_precision: str | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.cfg = load_run_config(self.run_dir)
        self.folder = model_folder(self.run_dir)
        self.model = MultiTaskModel.from_pretrained(self.folder, self.cfg.model.trust_remote_code)
        self.tokenizer = load_tokenizer(str(self.folder))
        self.accelerator = accelerator or make_accelerator(
            mixed_precision or self.cfg.train.mixed_precision
        )
        self.model.to(self.accelerator.device)
        self.specs = {t.name: t for t in self.model.tasks}
        self.pad_id, self.use_types = padding_settings(self.tokenizer)

    def encode(self, spec: TaskSpec, split: str, *, limit: int | None = None, double: bool = False):
        d = self.cfg.data
        return load_encoded(
            spec,
            split,
            self.tokenizer,
            d.max_seq_length,
            data_dir=d.glue_dir,
            limit=limit,
            double=double,
            cache_dir=d.cache_dir,
        )

    def outputs(self, enc, head: str, desc: str) -> np.ndarray:
        return predict_outputs(
            self.model,
            enc,
            head,
            pad_id=self.pad_id,
            use_token_types=self.use_types,
            batch_size=self.cfg.train.eval_batch_size,
            accelerator=self.accelerator,
            desc=desc,
        )


def evaluate_run(run_dir: str | Path, write: bool = True) -> dict[str, dict[str, float]]:
    """Dev metrics of a finished run, recomputed from its saved model."""
    run = LoadedRun(run_dir)
    eval_sets = {
        name: {
            split: run.encode(spec, split, limit=run.cfg.data.eval_limit)
            for split in spec.eval_splits
        }
        for name, spec in run.specs.items()
    }
    metrics = evaluate(
        run.model,
        eval_sets,
        run.specs,
        pad_id=run.pad_id,
        use_token_types=run.use_types,
        batch_size=run.cfg.train.eval_batch_size,
        accelerator=run.accelerator,
    )
    if write and run.accelerator.is_main_process:
        write_json(Path(run_dir) / DEV_METRICS_NAME, metrics)
    return metrics


@dataclass(frozen=True)
class InferenceSpeed:
    """How fast a run's model predicts one split: the median of timed passes, warm-up excluded."""

    task: str
    split: str
    examples: int
    seconds: float
    """Median wall time of one pass over the split (tokenization excluded: the cache is filled
    before timing)."""
    repeats: int
    batch_size: int
    layers: int
    device: str

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("inf")


def inference_speed(
    run_dir: str | Path | LoadedRun,
    task: str,
    *,
    split: str | None = None,
    repeats: int = 3,
    limit: int | None = None,
    batch_size: int | None = None,
    mixed_precision: str | None = None,
) -> InferenceSpeed:
    """Examples per second of a finished run's model on one task's dev split (or ``split``).

    Predicts as evaluation and teacher prediction do (``predict_outputs``: length-sorted
    batches of ``train.eval_batch_size``, dynamic padding, no gradients), once to warm up and
    then ``repeats`` timed passes, so a smaller student and its teachers compare on equal terms.
    ``limit`` keeps the first rows only (quick checks); the default is the run's
    ``data.eval_limit``. A `LoadedRun` (already on its device) is timed as it is, so several
    tasks of one model need one load; ``mixed_precision`` applies only to a folder.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be 1 or more")
    run = (
        run_dir
        if isinstance(run_dir, LoadedRun)
        else LoadedRun(run_dir, mixed_precision=mixed_precision)
    )
    spec = run.specs.get(task)
    if spec is None:
        raise BamkdError(
            f"run {run.run_dir} has no head for task '{task}' (it has: {', '.join(run.specs)})"
        )
    split = split or spec.eval_splits[0]
    enc = run.encode(spec, split, limit=limit if limit is not None else run.cfg.data.eval_limit)
    size = batch_size or run.cfg.train.eval_batch_size

    def one_pass() -> float:
        started = time.perf_counter()
        predict_outputs(
            run.model,
            enc,
            task,
            pad_id=run.pad_id,
            use_token_types=run.use_types,
            batch_size=size,
            accelerator=run.accelerator,
        )
        return time.perf_counter() - started

    one_pass()  # warm-up: first-call allocations and kernel selection stay out of the timing
    seconds = statistics.median(one_pass() for _ in range(repeats))
    return InferenceSpeed(
        task=task,
        split=split,
        examples=len(enc),
        seconds=seconds,
        repeats=repeats,
        batch_size=size,
        layers=run.model.num_layers,
        device=str(run.accelerator.device),
    )
