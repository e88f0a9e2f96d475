"""One inference path for every use: dev metrics, test predictions and teacher outputs.

Rows are sorted by length so batches carry little padding, run without gradients (under the
run's mixed precision), sharded across processes and gathered back into the original order,
with no row counted twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import torch

from bamkd.data import Encoded, ExampleStore
from bamkd.metrics import evaluate_task_metrics
from bamkd.model import MultiTaskModel
from bamkd.progress import progress_bar
from bamkd.tasks import TaskSpec

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
    accelerator=None,
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
    width = raw.heads[head].out_features
    result = torch.cat(outputs) if outputs else torch.zeros(0, width)
    if result.ndim == 1:
        result = result[:, None]
    if world > 1:
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
    accelerator=None,
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
