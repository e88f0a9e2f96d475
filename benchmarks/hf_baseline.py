"""The Hugging Face ``Trainer`` baseline, configured like the official ``run_glue.py`` example
and instrumented like bamkd's loop (step times, real and padded tokens of every batch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness import sync


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
