"""Inference on finished runs: teacher predictions, dev evaluation and GLUE submissions.

Each function loads a run's final model and its resolved config, so the data are read and
tokenized exactly as in training (same tasks, data folders, max length, doubling).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bamkd.data import load_encoded, padding_settings, tokenizer_fingerprint
from bamkd.devices import make_accelerator
from bamkd.errors import BamkdError
from bamkd.evaluate import evaluate, predict_outputs, to_predictions
from bamkd.model import WEIGHTS_NAME, MultiTaskModel, load_tokenizer, model_folder
from bamkd.runs import DEV_METRICS_NAME, load_run_config
from bamkd.storage import write_json
from bamkd.submission import SubmissionReport, write_submission
from bamkd.tasks import GLUE_TASKS, TaskSpec, glue_task, read_split
from bamkd.teachers import write_teacher_predictions

log = logging.getLogger(__name__)


class LoadedRun:
    """A finished run's model, tokenizer, config and task specs, ready for inference."""

    def __init__(self, run_dir: str | Path, accelerator=None, mixed_precision: str | None = None):
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


def _weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    with open(folder / WEIGHTS_NAME, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def teach(run_dir: str | Path, tasks: Sequence[str] | None = None, accelerator=None) -> list[Path]:
    """Write the run's predictions on its own training sets (swapped copies included).

    In-sample predictions, as in the paper (no cross-validation). One file per task.
    """
    run = LoadedRun(run_dir, accelerator)
    names = list(tasks) if tasks else list(run.specs)
    unknown = [n for n in names if n not in run.specs]
    if unknown:
        raise BamkdError(
            f"run {run_dir} has no head for task '{unknown[0]}' (it has: {', '.join(run.specs)})"
        )
    manifest = {
        "teacher_run": str(Path(run_dir).resolve()),
        "checkpoint": str(run.folder / WEIGHTS_NAME),
        "weights_sha256": _weights_digest(run.folder),
        "tokenizer": tokenizer_fingerprint(run.tokenizer),
        "max_length": run.cfg.data.max_seq_length,
    }
    written = []
    for name in names:
        spec = run.specs[name]
        started = time.perf_counter()
        enc = run.encode(
            spec,
            "train",
            limit=run.cfg.data.train_limit,
            double=spec.symmetric and run.cfg.data.double_unordered,
        )
        out = run.outputs(enc, name, desc=f"teach {name}")
        if run.accelerator.is_main_process:
            # Wall time of this task's predictions, kept so reports can add up compute.
            timed = {**manifest, "seconds": round(time.perf_counter() - started, 3)}
            written.append(write_teacher_predictions(Path(run_dir), enc, out, spec.kind, timed))
        run.accelerator.wait_for_everyone()
    return written


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


def submit(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    glue_dir: str | None = None,
    wnli_policy: str = "majority",
) -> SubmissionReport:
    """GLUE test-set submission from one or several runs (each task from the first run with it).

    AX is predicted with the MNLI head when a run has one. The WNLI majority class is read from
    its training file.
    """
    predictions: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, dict[str, list[str]]] = {}
    specs: dict[str, TaskSpec] = {}
    data_dir = glue_dir
    glue: Callable[[str], TaskSpec] | None = None
    for run_dir in runs:
        run = LoadedRun(run_dir)
        data_dir = data_dir or run.cfg.data.glue_dir
        if glue is None:  # GLUE tasks a run lacks (AX, WNLI) come from the first run's source
            d = run.cfg.data
            glue = functools.partial(glue_task, source=d.glue_source, dataset=d.glue_dataset)
        wanted = [n for n in run.specs if n not in predictions]
        if "mnli" in run.specs and "ax" not in predictions:
            wanted.append("ax")
        for name in wanted:
            spec = run.specs.get(name) or glue(name)
            head = spec.head_task or name
            predictions[name], ids[name], specs[name] = {}, {}, spec
            for split in spec.test_splits:
                try:
                    enc = (
                        run.encode(spec, split)
                        if data_dir == run.cfg.data.glue_dir
                        else load_encoded(
                            spec,
                            split,
                            run.tokenizer,
                            run.cfg.data.max_seq_length,
                            data_dir=data_dir,
                            cache_dir=run.cfg.data.cache_dir,
                        )
                    )
                except BamkdError as exc:
                    log.warning("no test predictions for %s/%s: %s", name, split, exc)
                    continue
                out = run.outputs(enc, head, desc=f"test {name}/{split}")
                predictions[name][split] = to_predictions(spec, out)
                ids[name][split] = enc.ids
            if not predictions[name]:
                del predictions[name], ids[name], specs[name]
    majority = None
    if wnli_policy == "majority":
        wnli = glue("wnli") if glue is not None else GLUE_TASKS["wnli"]
        try:
            labels = [ex.label for ex in read_split(wnli, "train", data_dir)]
            majority = int(np.bincount(np.array(labels, dtype=np.int64)).argmax())
            specs.setdefault("wnli", wnli)
            if "wnli" not in ids:
                test = read_split(wnli, "test", data_dir)
                ids["wnli"] = {"test": [ex.id for ex in test]}
                predictions["wnli"] = {"test": np.full(len(test), majority)}
        except BamkdError as exc:
            log.warning("WNLI majority class unavailable (%s); WNLI is left out", exc)
            wnli_policy = "skip"
    return write_submission(
        predictions,
        specs,
        Path(out_dir),
        wnli_policy=wnli_policy,
        wnli_majority_label=majority,
        example_ids=ids,
    )
