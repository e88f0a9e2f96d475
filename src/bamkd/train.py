"""Training: ``setup(cfg)`` builds everything a run needs; ``fit(ctx)`` runs the loop.

One loop serves every variant of the paper. Single-task, multi-task and distilled runs differ
only in their task list and in whether a row has a teacher target; the loss for each row is
``lambda * gold + (1 - lambda) * teacher`` with lambda = 1 where there is no teacher
(losses.py). Accelerate supplies the device, mixed precision and the process group; batches are
planned globally (``BatchPlan.rows_at``) and each process takes its share, so one process and
several train the same model on the same global batches.

Driving a run from code::

    with setup(cfg) as ctx:  # leaving the block releases the run folder's lock
        metrics = fit(ctx, max_steps=100, callbacks=[MyCallback()])

``fit`` stops early when ``max_steps`` is reached or a callback asks (bamkd.callbacks); the run
is then left where it stopped (``save(ctx)`` makes it resumable) and ``fit`` returns ``{}``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bamkd.callbacks import Callback, StepEnd, Stopwatch
from bamkd.config import (
    DistillConfig,
    RunConfig,
    TaskDistill,
    check_seq_length_fits,
    from_dict,
    load_yaml,
    settings_diff,
)
from bamkd.data import (
    Encoded,
    ExampleStore,
    load_encoded,
    load_training_split,
    padding_settings,
)
from bamkd.errors import BamkdError, ConfigError
from bamkd.evaluate import evaluate
from bamkd.fast_dropout import install_fast_dropout
from bamkd.losses import TaskTraining, batch_loss, gold_weights, loss_scale
from bamkd.model import (
    MultiTaskModel,
    check_encoder_layers,
    check_model_source,
    init_from,
    load_encoder,
    load_tokenizer,
)
from bamkd.optim import BertAdamW, lr_at, param_groups, set_lr
from bamkd.packing import first_position, packing_support
from bamkd.runtime import checkpoint as ckpt
from bamkd.runtime.devices import make_accelerator
from bamkd.runtime.heap import set_mmap_threshold
from bamkd.runtime.manifest import run_data_files, write_run_manifest
from bamkd.runtime.progress import step_bar
from bamkd.runtime.runs import (
    CONFIG_NAME,
    DEV_METRICS_NAME,
    MODEL_DIR,
    STATE_NAME,
    is_finished,
    task_specs,
)
from bamkd.runtime.stop import StopRequests, TrainingStopped
from bamkd.runtime.storage import (
    RunLock,
    check_output_folder,
    read_json,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from bamkd.runtime.tracking import MetricLog
from bamkd.sampling import BatchPlan, make_task_weighting, shard, split_micro
from bamkd.steplog import LogWindow, show
from bamkd.tasks import TaskSpec, check_split_file
from bamkd.teachers import check_teacher_tasks, read_teacher_predictions, teacher_targets

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

__all__ = [
    "Context",
    "NonFiniteLossError",
    "check_run_inputs",
    "finish",
    "fit",
    "save",
    "setup",
    "train",
]


class NonFiniteLossError(BamkdError):
    """The loss became NaN or infinite and the run is configured to stop."""


@dataclass
class Context:
    """Everything ``fit`` uses; built by ``setup``. A context manager: leaving it releases the
    run folder's lock (``close``)."""

    cfg: RunConfig
    run_dir: Path
    accelerator: Accelerator
    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module
    raw_model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    specs: dict[str, TaskSpec]
    tasks: list[TaskTraining]
    store: ExampleStore
    plan: BatchPlan
    eval_sets: dict[str, dict[str, Encoded]]
    total_steps: int
    state: ckpt.TrainerState
    metric_log: MetricLog
    packing: int | None = None
    """First position id of packed rows, or None when batches are padded."""
    lock: RunLock | None = None

    def close(self) -> None:
        """Release the run folder's lock (held by the main process); safe to call twice."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------


def _accelerator(cfg: RunConfig, trackers: list[str] | None = None) -> Accelerator:
    from accelerate.utils import DistributedDataParallelKwargs

    # Heads always run, but the pooler is unused with cls/mean pooling.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.model.pooling != "pooler")
    return make_accelerator(
        cfg.train.mixed_precision,
        kwargs_handlers=[ddp],
        log_with=trackers or None,
        project_dir=cfg.output_dir,
    )


class RunFinished(BamkdError):
    """The run to resume is finished (another process finished it while this one waited)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"{run_dir} is finished; its model is in {run_dir / MODEL_DIR}")


def _check_run_folder(run_dir: Path, cfg: RunConfig, resume: bool) -> RunConfig:
    """Refuse to overwrite a run; on resume return the saved config (it wins, with warnings).

    Runs under the run's lock, so a run another process finished after ``train`` looked is
    seen here (RunFinished) instead of being trained again.
    """
    if resume and is_finished(run_dir):
        raise RunFinished(run_dir)
    saved_path = run_dir / CONFIG_NAME
    has_work = saved_path.is_file() and (
        ckpt.list_checkpoints(run_dir) or (run_dir / STATE_NAME).is_file()
    )
    if not resume:
        if has_work:
            raise BamkdError(
                f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
                "output_dir"
            )
        return cfg
    if not saved_path.is_file():
        return cfg
    saved = from_dict(RunConfig, load_yaml(saved_path))
    for key, (old, new) in settings_diff(saved.to_dict(), cfg.to_dict()).items():
        log.warning("resume: %s differs (saved %r, given %r); the saved value wins", key, old, new)
    return saved


def _load_data(
    cfg: RunConfig,
    specs: dict[str, TaskSpec],
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
) -> tuple[list[Encoded], dict[str, dict[str, Encoded]]]:
    """Each task's training rows, and its evaluation splits by name."""
    d = cfg.data
    train_parts: list[Encoded] = []
    eval_sets: dict[str, dict[str, Encoded]] = {}
    # The main process tokenizes first and fills the cache; the others then read it.
    with accelerator.main_process_first():
        for name, spec in specs.items():
            train_parts.append(load_training_split(spec, d, tokenizer))
            eval_sets[name] = {
                split: load_encoded(
                    spec,
                    split,
                    tokenizer,
                    d.max_seq_length,
                    data_dir=d.glue_dir,
                    limit=d.eval_limit,
                    cache_dir=d.cache_dir,
                )
                for split in spec.eval_splits
            }
    for part in train_parts:
        if len(part) == 0:
            raise BamkdError(f"task '{part.task}' has no training examples")
        if np.isnan(part.labels).any():
            raise BamkdError(f"task '{part.task}': training split has unlabelled rows")
    return train_parts, eval_sets


def _teacher_arrays(
    cfg: RunConfig, specs: dict[str, TaskSpec], parts: list[Encoded], accelerator: Accelerator
) -> list[np.ndarray | None]:
    """Per task: teacher targets aligned with its training rows, or None (teacher task names
    were checked by `check_run_inputs`)."""
    dist = cfg.distill
    check_teacher_tasks(dist.teachers, specs)  # again: a pipeline may have trained them since
    arrays: list[np.ndarray | None] = []
    for part in parts:
        runs = dist.teachers.get(part.task)
        if not runs:
            arrays.append(None)
            continue
        spec = specs[part.task]
        temperature = _distill_for(dist, part.task).temperature
        outputs = []
        for run in runs:
            _ensure_teacher_predictions(Path(run), part.task, accelerator)
            outputs.append(read_teacher_predictions(Path(run), part.task))
        arrays.append(
            teacher_targets(
                part, outputs, spec.kind, dist.teacher_weights.get(part.task), temperature
            )
        )
    return arrays


def _ensure_teacher_predictions(run: Path, task: str, accelerator: Accelerator) -> None:
    """Write a finished teacher's training-set predictions if they are not there yet."""
    from bamkd.teachers import predictions_path

    if predictions_path(run, task).is_file():
        return
    if not is_finished(run):
        raise BamkdError(
            f"teacher run {run} is not finished (no {STATE_NAME} with finished: true); "
            "train it first"
        )
    from bamkd.teach import teach

    log.info("teacher %s has no predictions for %s yet; writing them", run, task)
    teach(run, tasks=[task], accelerator=accelerator)


def check_run_inputs(
    cfg: RunConfig, *, tokenizers: dict[tuple[str, bool], Any] | None = None
) -> tuple[dict[str, TaskSpec], Any]:
    """Check what a run reads, before it creates anything; return its task specs and tokenizer.

    The output folder must be writable, every task known and trainable, its data files present,
    the model folder usable (safetensors weights, no unasked-for remote code), every teacher's
    task in ``data.tasks`` and ``data.max_seq_length`` long enough for this tokenizer (shorter,
    the tokenizer would silently not truncate at all). ``tokenizers``
    memoises loaded tokenizers by (location, trust_remote_code) across calls (``bamkd run``
    checks every planned run).

    Raises:
        BamkdError: naming the key, file or folder and the fix.
    """
    m, d = cfg.model, cfg.data
    check_output_folder(cfg.output_dir, "output_dir")
    specs = task_specs(d)
    for name, spec in specs.items():
        if spec.head_task is not None:
            raise ConfigError(
                f"task '{name}' has no head of its own (it is predicted with the "
                f"'{spec.head_task}' head); remove it from data.tasks"
            )
        for split in ("train", *spec.eval_splits):
            check_split_file(spec, split, d.glue_dir)
    unknown = sorted(set(cfg.distill.teachers) - set(specs))
    if unknown:
        raise ConfigError(
            f"distill.teachers names task '{unknown[0]}', which is not in data.tasks "
            f"({', '.join(specs)})"
        )
    check_teacher_tasks(cfg.distill.teachers, specs)
    check_model_source(m.name_or_path, m.trust_remote_code, "model.name_or_path")
    check_encoder_layers(m.name_or_path, m.keep_layers, m.keep_every, m.trust_remote_code)
    source = m.tokenizer or m.name_or_path
    key = (source, m.trust_remote_code)
    cache = tokenizers if tokenizers is not None else {}
    if key not in cache:
        cache[key] = load_tokenizer(source, m.trust_remote_code)
    tokenizer = cache[key]
    check_seq_length_fits(
        d.max_seq_length,
        tokenizer.num_special_tokens_to_add(pair=False),
        tokenizer.num_special_tokens_to_add(pair=True),
        has_pairs=any(spec.is_pair for spec in specs.values()),
    )
    return specs, tokenizer


def _remove_leftovers(run_dir: Path, announce: bool) -> None:
    """Delete temporary files and folders of writes a kill interrupted (the lock is held).

    Each can be as large as the weights plus the optimiser state. ``announce``: say so at INFO
    level (a resumed or finishing run, where a kill is the likely cause), else at DEBUG."""
    removed = remove_stale_temporaries(run_dir)
    if removed:
        log.log(
            logging.INFO if announce else logging.DEBUG,
            "%s: removed %d leftover temporary file(s) or folder(s) of interrupted writes: %s",
            run_dir,
            len(removed),
            ", ".join(str(p.relative_to(run_dir)) for p in removed),
        )


def setup(cfg: RunConfig, *, resume: bool = False, trackers: list[str] | None = None) -> Context:
    """Build the model, data, optimizer and state for a run (resuming it when asked).

    The returned context holds the run folder's lock; use it in a ``with`` block (or call
    ``ctx.close()``) to release it. If setup fails, the lock is released before the error.
    """
    run_dir = Path(cfg.output_dir)
    # Everything a user can get wrong is checked before the run folder exists (issue 15).
    given = cfg
    specs, tokenizer = check_run_inputs(cfg)
    accelerator = _accelerator(cfg, trackers)
    lock = RunLock(run_dir).acquire() if accelerator.is_main_process else None
    try:
        cfg = _check_run_folder(run_dir, cfg, resume)
        if cfg is not given:  # resuming: the saved config wins, so check what it names
            specs, tokenizer = check_run_inputs(cfg)
        _start_run_folder(run_dir, cfg, accelerator, resume)
        model = _build_model(cfg, specs, accelerator)
        store, plan, tasks, eval_sets = _build_tasks(cfg, specs, tokenizer, accelerator)
        packing = _packing(cfg, model.encoder)
        total_steps = plan.total_steps(cfg.train.epochs)
        optimizer = _build_optimizer(cfg, model)
        state, metric_log = _restore(run_dir, model, optimizer, total_steps, accelerator, resume)
        model, optimizer = accelerator.prepare(model, optimizer)
        if trackers:
            accelerator.init_trackers(run_dir.name, config=_flat_config(cfg))
        return Context(
            cfg=cfg,
            run_dir=run_dir,
            accelerator=accelerator,
            tokenizer=tokenizer,
            model=model,
            raw_model=accelerator.unwrap_model(model),
            optimizer=optimizer,
            specs=specs,
            tasks=tasks,
            store=store,
            plan=plan,
            eval_sets=eval_sets,
            total_steps=total_steps,
            state=state,
            metric_log=metric_log,
            packing=packing,
            lock=lock,
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _start_run_folder(
    run_dir: Path, cfg: RunConfig, accelerator: Accelerator, resume: bool
) -> None:
    """Clear leftovers of interrupted writes, then record the config and the data it reads."""
    if accelerator.is_main_process:
        _remove_leftovers(run_dir, announce=resume)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text(run_dir / CONFIG_NAME, cfg.to_yaml())
        write_run_manifest(run_dir, cfg, run_data_files(cfg))


def _build_model(
    cfg: RunConfig, specs: dict[str, TaskSpec], accelerator: Accelerator
) -> MultiTaskModel:
    """The shared encoder with one head per task, seeded, on the CPU settings asked for."""
    from accelerate.utils import set_seed

    m = cfg.model
    encoder = load_encoder(
        m.name_or_path,
        m.trust_remote_code,
        m.encoder_dropout,
        keep_layers=m.keep_layers,
        keep_every=m.keep_every,
    )
    # Seed after loading, so head initialisation and dropout never depend on what loading did.
    set_seed(cfg.train.seed)
    model = MultiTaskModel(
        encoder,
        list(specs.values()),
        pooling=m.pooling,
        dropout=m.dropout,
        regression_head=m.regression_head,
    )
    if m.init_from:
        init_from(model, m.init_from)
    if cfg.train.fast_dropout and accelerator.device.type == "cpu":
        install_fast_dropout(model)
    if accelerator.device.type == "cpu":
        set_mmap_threshold(cfg.train.malloc_mmap_threshold_mib)
    return model


def _build_tasks(
    cfg: RunConfig,
    specs: dict[str, TaskSpec],
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
) -> tuple[ExampleStore, BatchPlan, list[TaskTraining], dict[str, dict[str, Encoded]]]:
    """Training rows with their teacher targets, the batch plan, each task's loss settings and
    the evaluation sets."""
    t = cfg.train
    parts, eval_sets = _load_data(cfg, specs, tokenizer, accelerator)
    teacher = _teacher_arrays(cfg, specs, parts, accelerator)
    sizes = {p.task: len(p) for p in parts}
    try:
        weighting = make_task_weighting(
            t.task_weighting, sizes, t.weighting_exponent, t.sampling_temperature, t.task_multiples
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    pad_id, use_types = padding_settings(tokenizer)
    max_out = max(s.num_outputs for s in specs.values())
    store = ExampleStore(parts, list(specs), pad_id, use_types, teacher, max_out)
    plan = BatchPlan(sizes, weighting, t.batch_size, t.seed, store.lengths, cfg.data.length_grouped)
    tasks = []
    for part, arr in zip(parts, teacher):
        distill = _distill_for(cfg.distill, part.task)
        tasks.append(
            TaskTraining(
                spec=specs[part.task],
                loss_weight=weighting.loss_weights[part.task],
                has_teacher=arr is not None,
                schedule=distill.schedule,
                weight=distill.weight,
            )
        )
    return store, plan, tasks, eval_sets


@dataclass(frozen=True)
class _TaskDistillSettings:
    """One task's distillation settings, its ``distill.per_task`` overrides applied."""

    schedule: str
    weight: float
    temperature: float


def _distill_for(distill: DistillConfig, task: str) -> _TaskDistillSettings:
    """The distillation settings of ``task``: its ``distill.per_task`` entries where given,
    the run-wide ones elsewhere."""
    override = distill.per_task.get(task) or TaskDistill()
    return _TaskDistillSettings(
        schedule=override.schedule or distill.schedule,
        weight=distill.weight if override.weight is None else override.weight,
        temperature=override.temperature or distill.temperature,
    )


def _build_optimizer(cfg: RunConfig, model: MultiTaskModel) -> BertAdamW:
    """BERT's AdamW over layer-wise learning-rate groups (optim.py)."""
    t = cfg.train
    groups = param_groups(
        model.encoder.named_parameters(),
        [(f"heads.{n}", p) for n, p in model.heads.named_parameters()],
        model.num_layers,
        t.layerwise_decay,
        t.weight_decay,
    )
    return BertAdamW(
        groups,
        lr=t.lr,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_eps,
        bias_correction=t.bias_correction,
    )


def _restore(
    run_dir: Path,
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    accelerator: Accelerator,
    resume: bool,
) -> tuple[ckpt.TrainerState, MetricLog]:
    """A fresh state and metric log, or, on resume, those of the newest checkpoint with the
    model, optimizer and (same process layout) RNG states loaded from it."""
    state = ckpt.TrainerState(total_steps=total_steps, world_size=accelerator.num_processes)
    metric_log = MetricLog(run_dir, accelerator, enabled=accelerator.is_main_process)
    if not resume:
        if accelerator.is_main_process and metric_log.path.exists():
            metric_log.path.unlink()
        return state, metric_log
    found = ckpt.latest_checkpoint(run_dir, accelerator.process_index)
    if found is not None:
        model.load_state_dict(found.model)
        optimizer.load_state_dict(found.optimizer)
        if found.state.total_steps != total_steps:
            raise BamkdError(
                f"checkpoint {found.folder} was made for {found.state.total_steps} steps "
                f"but this run plans {total_steps}; the data or batch size changed"
            )
        state = found.state
        if found.rng is not None and found.state.world_size == accelerator.num_processes:
            ckpt.set_rng_state(found.rng)
        else:
            log.warning("resume: no RNG state for this process layout; dropout differs")
        log.info("resuming %s from step %d of %d", run_dir, state.step, total_steps)
    metric_log.truncate_after(state.step)
    return state, metric_log


def _packing(cfg: RunConfig, encoder: torch.nn.Module) -> int | None:
    """The first position id for packed training rows, or None to pad (with the reason said).

    Length-grouped batches are padded: they hold similar lengths already, and padded they
    train faster than packed on CPUs (BENCHMARKS.md, packed batches)."""
    if not cfg.data.packing or cfg.data.length_grouped:
        return None
    reason = packing_support(encoder)
    if reason is not None:
        log.warning("data.packing: %s; training on padded batches instead", reason)
        return None
    config = getattr(encoder, "config", None)
    return first_position(getattr(config, "model_type", ""), config)


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments of MultiTaskModel.forward that ``batch`` holds (padded or packed)."""
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "segments",
    "example_starts",
)


def _flat_config(cfg: RunConfig) -> dict:
    flat = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float, str, bool)):
                    flat[f"{section}.{k}"] = v
    return flat


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def fit(
    ctx: Context, *, max_steps: int | None = None, callbacks: Sequence[Callback] = ()
) -> dict[str, dict[str, float]]:
    """Train from ``ctx.state.step`` to the end, then save and evaluate. Returns dev metrics.

    Args:
        ctx: from ``setup``.
        max_steps: stop once ``ctx.state.step`` reaches this many steps (the learning-rate and
            lambda schedules stay planned over the whole run, ``ctx.total_steps``).
        callbacks: hooks called around every step (bamkd.callbacks); one may stop training.

    Returns:
        The dev metrics when the run reached its end; ``{}`` when ``max_steps`` or a callback
        stopped it earlier (nothing more is written then: ``save(ctx)`` makes it resumable,
        another ``fit(ctx)`` continues it).

    SIGTERM or Ctrl-C during training writes a checkpoint after the current step and raises
    :class:`TrainingStopped` (bamkd.runtime.stop).
    """
    end = ctx.total_steps if max_steps is None else min(max_steps, ctx.total_steps)
    with StopRequests() as stop:
        _train_steps(ctx, stop, end, callbacks)
    if ctx.state.step < ctx.total_steps:
        return {}
    return finish(ctx)


def _train_steps(ctx: Context, stop: StopRequests, end: int, callbacks: Sequence[Callback]) -> None:
    """One optimizer step per global batch, from ``ctx.state.step`` up to step ``end``."""
    cfg, acc, t = ctx.cfg, ctx.accelerator, ctx.cfg.train
    model, optimizer, plan = ctx.model, ctx.optimizer, ctx.plan
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = t.max_grad_norm if t.max_grad_norm > 0 else math.inf
    window = LogWindow([info.spec.name for info in ctx.tasks])
    run_start = time.perf_counter() - ctx.state.elapsed_seconds
    bar = step_bar(
        ctx.total_steps, ctx.state.step, desc="train", main=acc.is_main_process and t.progress
    )
    model.train()
    for callback in callbacks:
        callback.on_fit_start(ctx)

    for step in range(ctx.state.step, end):
        watch = Stopwatch()
        rows = plan.rows_at(step)
        local = shard(rows, acc.process_index, acc.num_processes)
        scale = loss_scale(t.loss_reduction, acc.num_processes, len(rows), len(local))
        if len(local) == 0:  # a stand-in row joins the collectives; scale 0 makes it count nothing
            local = rows[:1]
        lam = gold_weights(ctx.tasks, step, ctx.total_steps, cfg.distill.step_at)
        lr = lr_at(step, ctx.total_steps, t.lr, t.warmup_fraction)
        set_lr(optimizer, lr)

        sums, counts = _forward_backward(ctx, local, lam, scale, window, watch)
        grad_norm = float(acc.clip_grad_norm_(params, max_norm))
        watch.lap("clip")
        if _update_is_finite(ctx, step, grad_norm, sums):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        watch.lap("optimizer")

        ctx.state.step = step + 1
        ctx.state.examples_seen += len(rows)
        window.add_step(sums, counts, len(rows))
        bar.update(1)
        record = None
        if ctx.state.step % t.log_every == 0 or ctx.state.step == ctx.total_steps:
            record = _log_window(ctx, window, bar, lr, grad_norm, lam)
        done = StepEnd(ctx.state.step, rows, watch.seconds, lr, grad_norm, record)
        asked = [bool(callback.on_step_end(ctx, done)) for callback in callbacks]
        at_epoch_end = ctx.state.step % plan.batches_per_epoch == 0
        if t.eval_every_epoch and at_epoch_end and ctx.state.step < ctx.total_steps:
            _evaluate_and_log(ctx, "eval")
        if ctx.state.step == ctx.total_steps:
            break  # the final save comes next; a stop asked for now is served by finishing
        signum, callback_stop = _stop_agreed(acc, stop, any(asked))
        if signum or (t.checkpoint_every and ctx.state.step % t.checkpoint_every == 0):
            ctx.state.elapsed_seconds = time.perf_counter() - run_start
            save(ctx)
        if signum:
            bar.close()
            _raise_stopped(ctx, signum)
        if callback_stop:
            break

    bar.close()
    ctx.state.elapsed_seconds = time.perf_counter() - run_start
    for callback in callbacks:
        callback.on_fit_end(ctx)


def _forward_backward(
    ctx: Context,
    rows: np.ndarray,
    lam: torch.Tensor,
    scale: float,
    window: LogWindow,
    watch: Stopwatch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward over this process's ``rows``, in ``train.grad_accumulation``
    micro-batches; gradients are synchronised across processes on the last one only.
    Returns the per-task loss sums and row counts (zero for a stand-in row, ``scale`` 0)."""
    acc, model = ctx.accelerator, ctx.model
    sums, counts = torch.zeros(len(ctx.tasks)), torch.zeros(len(ctx.tasks))
    micro = micro_batches(ctx, rows)
    for j, host in enumerate(micro):
        batch = {k: v.to(acc.device) for k, v in host.items()}
        watch.lap("data")
        sync = contextlib.nullcontext() if j == len(micro) - 1 else acc.no_sync(model)
        with sync:
            with acc.autocast():
                outputs = model(**model_inputs(batch))
            loss, micro_sums, micro_counts = batch_loss(outputs, batch, ctx.tasks, lam)
            watch.lap("forward")
            acc.backward(loss * scale)
            watch.lap("backward")
        if scale:
            window.add_batch(host)
            sums += micro_sums
            counts += micro_counts
    return sums, counts


def micro_batches(ctx: Context, rows: np.ndarray) -> list[dict[str, torch.Tensor]]:
    """Host tensors of each micro-batch: one padded batch, or a few packed ones (one per row
    width), per ``train.grad_accumulation`` split of ``rows``."""
    cfg, store = ctx.cfg, ctx.store
    return [
        host
        for part in split_micro(rows, cfg.train.grad_accumulation)
        for host in (
            [store.batch(part)]
            if ctx.packing is None
            else store.packed_batches(part, cfg.data.max_seq_length, ctx.packing)
        )
    ]


def _update_is_finite(ctx: Context, step: int, grad_norm: float, sums: torch.Tensor) -> bool:
    """Whether this step's update may be applied. A non-finite loss or gradient norm stops the
    run (``train.on_nonfinite=stop``) or skips the update (``skip``) with a warning.

    Under fp16 the grad scaler expects overflowing gradients now and then and skips those steps
    itself; only a non-finite loss is a fault there."""
    t = ctx.cfg.train
    bad_grads = not math.isfinite(grad_norm) and t.mixed_precision != "fp16"
    if not bad_grads and torch.isfinite(sums).all():
        return True
    names = [info.spec.name for info in ctx.tasks]
    bad = [n for n, s in zip(names, sums) if not torch.isfinite(s)] or names
    if t.on_nonfinite == "stop":
        last = ckpt.list_checkpoints(ctx.run_dir)
        raise NonFiniteLossError(
            f"loss became non-finite at step {step} (task {', '.join(bad)}); no weights "
            f"were written over good ones. Last good checkpoint: "
            f"{last[-1] if last else 'none'}. Lower train.lr, check the data, or set "
            "train.on_nonfinite=skip to skip such steps."
        )
    log.warning("skipping step %d: non-finite loss (task %s)", step, ", ".join(bad))
    return False


def _log_window(
    ctx: Context, window: LogWindow, bar: Any, lr: float, grad_norm: float, lam: torch.Tensor
) -> dict[str, Any]:
    """Write the window since the last logged step to metrics.jsonl and the bar (or log), then
    start a new window. Every process calls this at the same steps (the loss is all-reduced)."""
    epoch = round(ctx.state.step / ctx.plan.batches_per_epoch, 4)
    record, mean_loss = window.record(
        ctx.accelerator, epoch=epoch, lr=lr, grad_norm=grad_norm, lam=lam
    )
    ctx.metric_log.log(record, ctx.state.step)
    show(bar, record, mean_loss, ctx.state.step, ctx.total_steps)
    window.reset()
    return record


def _stop_agreed(acc: Accelerator, stop: StopRequests, asked: bool) -> tuple[int, bool]:
    """The signal that asked this or any other process to stop (0: none), and whether a
    callback of any process asked to stop. Every process calls this after every step, so all
    stop after the same one: one small all-reduce per step, at a point where the step has
    already synchronised (the gradient norm is read back)."""
    if acc.num_processes == 1:
        return stop.signum or 0, asked
    flags = torch.tensor([float(stop.signum or 0), float(asked)], device=acc.device)
    signum, any_asked = acc.reduce(flags, "max").tolist()
    return int(signum), bool(any_asked)


def _raise_stopped(ctx: Context, signum: int) -> None:
    folder = ckpt.checkpoint_dir(ctx.run_dir, ctx.state.step)
    raise TrainingStopped(signum, ctx.state.step, ctx.total_steps, folder)


def _evaluate_and_log(ctx: Context, key: str) -> dict[str, dict[str, float]]:
    metrics = evaluate(
        ctx.raw_model,  # evaluate unwraps a prepared model anyway
        ctx.eval_sets,
        ctx.specs,
        pad_id=ctx.store.pad_id,
        use_token_types=ctx.store.use_token_types,
        batch_size=ctx.cfg.train.eval_batch_size,
        accelerator=ctx.accelerator,
    )
    ctx.model.train()
    ctx.metric_log.log({key: metrics}, ctx.state.step)
    return metrics


def save(ctx: Context) -> None:
    """Write a resumable checkpoint (all processes' RNG states, main process writes)."""
    acc = ctx.accelerator
    rng = ckpt.rng_state()
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        states = gather_object([{k: v.tolist() for k, v in rng.items()}])
        rng_states = [{k: torch.tensor(v, dtype=torch.uint8) for k, v in s.items()} for s in states]
    else:
        rng_states = [rng]
    if acc.is_main_process:
        folder = ckpt.checkpoint_dir(ctx.run_dir, ctx.state.step)
        ckpt.save_checkpoint(
            folder, ctx.raw_model.state_dict(), ctx.optimizer.state_dict(), ctx.state, rng_states
        )
        ckpt.prune_checkpoints(ctx.run_dir, ctx.cfg.train.keep_checkpoints)
    acc.wait_for_everyone()


def finish(ctx: Context) -> dict[str, dict[str, float]]:
    """Save the final model, evaluate on dev, write dev metrics, then mark the run finished."""
    acc = ctx.accelerator
    if acc.is_main_process:
        ctx.raw_model.save_pretrained(ctx.run_dir / MODEL_DIR, ctx.tokenizer)
    acc.wait_for_everyone()
    metrics = _evaluate_and_log(ctx, "dev")
    if acc.is_main_process:
        write_json(ctx.run_dir / DEV_METRICS_NAME, metrics)
        ctx.state.finished = True
        write_json(ctx.run_dir / STATE_NAME, ctx.state.__dict__)
        _remove_leftovers(ctx.run_dir, announce=True)
    acc.wait_for_everyone()
    # Trackers only: accelerate's end_training would also destroy the process group, which the
    # next run of a `bamkd run` sitting under torchrun needs (the CLI leaves it at the end).
    for tracker in acc.trackers:
        tracker.finish()
    return metrics


def train(
    cfg: RunConfig, *, resume: bool = False, trackers: list[str] | None = None
) -> dict[str, dict[str, float]]:
    """Run (or resume, or return the result of) one training run."""
    run_dir = Path(cfg.output_dir)
    if not (resume and is_finished(run_dir)):
        try:
            with setup(cfg, resume=resume, trackers=trackers) as ctx:
                return fit(ctx)
        except RunFinished:
            pass  # finished by another process while this one took the lock
    log.info("%s is already finished", run_dir)
    return read_json(run_dir / DEV_METRICS_NAME)
