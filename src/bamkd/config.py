"""Typed run configuration: dataclasses, YAML presets, ``key=value`` overrides and validation.

One ``RunConfig`` describes one training run completely (single-task, multi-task or distilled).
Presets are YAML files with the same sections as the dataclasses; every key is checked, unknown
keys are refused with the key named, and relative paths are resolved against the preset's folder so
that ``bamkd`` works from any working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import yaml

from bamkd.errors import ConfigError, excerpt
from bamkd.runtime.heap import MAX_MMAP_THRESHOLD_MIB
from bamkd.schedules import SCHEDULE_NAMES
from bamkd.student import check_layer_choice


@dataclass(frozen=True)
class OneOf:
    """Marks a ``str`` field whose values come from a registry; checked as a Literal would be."""

    names: tuple[str, ...]


ScheduleName = Annotated[str, OneOf(SCHEDULE_NAMES)]
"""A name from `bamkd.schedules.SCHEDULES`."""


@dataclass
class ModelConfig:
    """The shared encoder and the task heads."""

    name_or_path: str = "bamkd-tiny"
    """Hugging Face hub id, local folder, ``minilm`` (the offline MiniLM package) or
    ``bamkd-tiny`` (a tiny random BERT built locally, for tests and the demo)."""
    tokenizer: str | None = None
    """Tokenizer location when it differs from ``name_or_path``."""
    trust_remote_code: bool = False
    """Allow model code from the hub to run. Off unless asked: it executes downloaded code."""
    pooling: Literal["pooler", "cls", "mean"] = "pooler"
    """Head input: BERT's pretrained pooler (the paper), the raw [CLS] vector, or mean pooling."""
    dropout: float = 0.1
    """Dropout before every task head (BAM_SPEC: 0.1)."""
    encoder_dropout: float | None = None
    """Override the encoder's own dropout rates (hidden and attention); None keeps its config."""
    regression_head: Literal["sigmoid", "linear"] = "sigmoid"
    """The paper's head is linear + sigmoid; the authors' code used a plain linear output."""
    init_from: str | None = None
    """Run folder (or model folder) whose weights start this run: multi-task then single-task
    fine-tuning. Heads of tasks the source lacks start fresh."""
    keep_layers: list[int] | None = None
    """A smaller student: keep only these 0-based encoder layers, in increasing order (``[0, 2,
    4]`` of a 6-layer encoder); the embeddings and the pooler are kept too (bamkd.student).
    The saved model is a plain encoder of that many layers. None keeps them all."""
    keep_every: int | None = None
    """Short form of ``keep_layers``: the top layer and every k-th one below it (6 layers,
    ``keep_every: 2`` keeps 1, 3, 5), one layer in k as DistilBERT's student. None: all."""


@dataclass
class DataConfig:
    """Which tasks to train on and how examples become token ids."""

    tasks: list[str] = field(default_factory=list)
    """Task names: GLUE names (``mrpc``, ``SST-2``…) or names of user tasks from ``task_files``."""
    glue_dir: str | None = None
    """Folder in the standard GLUE layout (``<dir>/MRPC/train.tsv`` …); with
    ``glue_source=parquet`` a copy of the hub's GLUE repository (``<dir>/mrpc/train-*.parquet``)."""
    glue_source: Literal["tsv", "parquet", "hub"] = "tsv"
    """Where GLUE tasks come from: ``tsv`` (the GLUE download in ``glue_dir``), ``parquet`` (the
    hub's nyu-mll/glue Parquet layout in ``glue_dir``) or ``hub`` (``glue_dataset`` through
    Hugging Face ``datasets``, needs a network or a filled cache). The same rows, labels, ids and
    metrics from each (QQP train/dev ids excepted: the hub drops the pair ids the TSV keys them
    by; STS-B scores are the hub's float32 values, see ``bamkd.tasks.glue_task``). ``parquet``
    and ``hub`` need ``pip install 'bamkd[datasets]'``."""
    glue_dataset: str = "nyu-mll/glue"
    """Hub id of the GLUE dataset for ``glue_source=hub``."""
    task_files: list[str] = field(default_factory=list)
    """YAML files describing user-defined tasks."""
    max_seq_length: int = 128
    """Token limit per example; longer pairs are truncated longest-first. It must leave room for
    the special tokens and one text token (per sentence of a pair): 3 or more, 5 for BERT pairs."""
    double_unordered: bool = True
    """Add swapped copies of symmetric pair tasks (MRPC, STS-B) to the training set."""
    packing: bool = True
    """Train mixed (not length-grouped) batches as packed rows: several examples share a row of
    up to max_seq_length tokens, each attending only to itself (bamkd.packing), so a mixed batch
    carries almost no padding. Logits equal the padded path's; encoders that cannot take packed
    input fall back to padding, with a warning. Evaluation and prediction always pad."""
    length_grouped: bool = False
    """Batch examples of similar length together (Hugging Face's group_by_length) so padded
    batches waste little compute. In a multi-task run this sorts tasks into length buckets:
    a batch then holds mostly one task, not the mixture the paper trains on. Packing makes
    mixed batches as cheap without it."""
    train_limit: int | None = None
    """Keep only the first N training rows of each task (quick runs); None keeps all."""
    eval_limit: int | None = None
    """Keep only the first N rows of each evaluation split; None keeps all."""
    cache_dir: str | None = None
    """Where tokenized data is cached; default ``$BAMKD_CACHE`` or ``~/.cache/bamkd``."""


@dataclass
class TrainConfig:
    """Optimisation, schedule, task weighting and bookkeeping."""

    epochs: float = 3.0
    """Passes over the (task-weighted) training data."""
    batch_size: int = 32
    """Global batch size, summed over processes."""
    grad_accumulation: int = 1
    """Split each global batch into this many sequential micro-batches (saves memory)."""
    lr: float = 5e-5
    """Peak learning rate of the task heads; lower layers get it times layerwise_decay powers."""
    warmup_fraction: float = 0.1
    """Linear warmup over this fraction of the steps, then linear decay to 0 (from step 0)."""
    weight_decay: float = 0.01
    """Decoupled weight decay; never on LayerNorm and bias parameters."""
    adam_beta1: float = 0.9
    """Adam's first-moment decay."""
    adam_beta2: float = 0.999
    """Adam's second-moment decay."""
    adam_eps: float = 1e-6
    """Adam's epsilon (BERT's 1e-6)."""
    bias_correction: bool = False
    """Adam bias correction. Off reproduces BERT's and the paper's optimiser."""
    layerwise_decay: float = 0.9
    """Layer-wise learning-rate factor alpha; 1.0 turns it off."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip; 0 turns it off."""
    loss_reduction: Literal["sum", "mean"] = "sum"
    """Sum of per-example losses (the paper's code) or their mean."""
    task_weighting: Literal["bam", "reference", "concat", "proportional"] = "bam"
    """bam: dataset multiples + loss weights so task mass is proportional to |D|^exponent, from
    the sizes loaded; reference: the authors' multiples and loss weights from the full 8-task
    GLUE size table, whatever subset is trained (the paper's exposure on a subset; GLUE tasks
    only); concat: plain concatenation; proportional: sample tasks with probability
    |D|^(1/temperature)."""
    task_multiples: dict[str, int] = field(default_factory=dict)
    """Task name -> copies of its training set per epoch, overriding the weighting's multiple
    (bam and reference); loss weights follow so task mass stays proportional to |D|^exponent."""
    weighting_exponent: float = 0.75
    """e in the |D|^e task weighting (bam and reference); the paper's 0.75."""
    sampling_temperature: float = 1.0
    """T of the proportional weighting: tasks drawn with probability proportional to
    |D|^(1/T)."""
    seed: int = 0
    """Seeds the heads' initialisation, the batch order and dropout."""
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    """``no`` (fp32; YAML's ``false``/``off`` mean the same), ``bf16``, ``fp16``, or ``auto``:
    bf16 where the GPU or CPU computes in it natively (Ampere or later; an x86 CPU with AVX-512
    BF16 or AMX), else fp32.
    ``auto`` is resolved when the config is built, so a run's config.yaml records what it used."""
    fast_dropout: bool = True
    """On CPU, draw dropout masks two per random number (bamkd.fast_dropout); same rates."""
    malloc_mmap_threshold_mib: int = 0
    """On CPU with glibc, give buffers of this many MiB or more their own memory mapping, so
    memory does not grow with each new batch shape (bamkd.runtime.heap). Costs speed (RTE:
    0.6-0.7x the memory at 0.55-0.63x the speed); 0 leaves malloc as it is."""
    eval_batch_size: int = 128
    """Rows per forward pass without gradients: evaluation, teacher predictions, test-set
    predictions for submissions."""
    eval_every_epoch: bool = False
    """Also evaluate on dev after every epoch (the final evaluation always runs)."""
    checkpoint_every: int = 0
    """Save a resumable checkpoint every N optimiser steps (0: none on the way; a stop on
    SIGTERM or Ctrl-C still writes one, and the finished model goes to ``model/``)."""
    keep_checkpoints: int = 2
    """How many step checkpoints to keep; older ones are deleted once a newer one is safe."""
    log_every: int = 10
    """Write a metrics record (and a log line or bar update) every N optimiser steps and at
    the last one."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN or infinite loss stops the run (default) or skips that step."""
    progress: bool = True
    """A progress bar for the step loop (also off with ``BAMKD_PROGRESS=0`` or without a
    terminal; then each logged step is a log line)."""


@dataclass
class TaskDistill:
    """Per-task override of the distillation settings."""

    schedule: ScheduleName | None = None
    """This task's ``distill.schedule``; None keeps the run's."""
    weight: float | None = None
    """This task's ``distill.weight``; None keeps the run's."""
    temperature: float | None = None
    """This task's ``distill.temperature``; None keeps the run's."""


@dataclass
class DistillConfig:
    """Teachers and how their outputs mix with gold labels."""

    teachers: dict[str, list[str]] = field(default_factory=dict)
    """Task name -> teacher run folders (several form an ensemble)."""
    teacher_weights: dict[str, list[float]] = field(default_factory=dict)
    """Task name -> ensemble weights (default: equal)."""
    schedule: ScheduleName = "anneal"
    """How the gold weight lambda moves (`bamkd.schedules`): anneal, lambda = progress (the
    paper); constant, a fixed teacher weight; cosine, lambda = (1 - cos(pi * progress)) / 2;
    step, teacher only until step_at, gold after."""
    weight: float = 0.5
    """Teacher weight w for the constant schedule (1.0 = pure distillation)."""
    step_at: float = 0.5
    """Progress at which the step schedule switches from teacher to gold."""
    temperature: float = 1.0
    """Softmax temperature applied to teacher logits (no T^2 factor, as in the paper)."""
    per_task: dict[str, TaskDistill] = field(default_factory=dict)
    """Task name -> overrides of schedule, weight or temperature for that task alone."""


@dataclass
class RunConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    output_dir: str = "runs/run"
    """Run folder: config, metrics log, checkpoints, final model, dev metrics."""

    def __post_init__(self) -> None:
        if self.train.mixed_precision == "auto":
            from bamkd.runtime.devices import resolve_precision

            self.train.mixed_precision = resolve_precision("auto")  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raises ConfigError naming the key."""
        t, d = self.train, self.data
        if not d.tasks:
            raise ConfigError("data.tasks is empty: name at least one task, e.g. data.tasks=[mrpc]")
        # Configs built in Python skip _coerce, so non-finite numbers are looked for here too.
        _check_finite(self, "")
        _positive("train.epochs", t.epochs)
        _positive("train.batch_size", t.batch_size)
        _positive("train.lr", t.lr)
        _positive("train.grad_accumulation", t.grad_accumulation)
        for task, multiple in t.task_multiples.items():
            _positive(f"train.task_multiples.{task}", multiple)
        _check_seq_length(d.max_seq_length)
        for key, limit in (("data.train_limit", d.train_limit), ("data.eval_limit", d.eval_limit)):
            if limit is not None and limit < 1:
                raise ConfigError(
                    f"{key}={limit} must be a positive number of rows; leave it out (null) to "
                    "keep every row"
                )
        self._check_ranges()
        if t.batch_size % t.grad_accumulation:
            raise ConfigError(
                f"train.batch_size={t.batch_size} is not divisible by "
                f"train.grad_accumulation={t.grad_accumulation}"
            )
        if not 0.0 <= t.warmup_fraction < 1.0:
            raise ConfigError(f"train.warmup_fraction={t.warmup_fraction} must be in [0, 1)")
        if not 0.0 < t.layerwise_decay <= 1.0:
            raise ConfigError(f"train.layerwise_decay={t.layerwise_decay} must be in (0, 1]")
        if not 0 <= t.malloc_mmap_threshold_mib <= MAX_MMAP_THRESHOLD_MIB:
            raise ConfigError(
                f"train.malloc_mmap_threshold_mib={t.malloc_mmap_threshold_mib} must be 0 (off) "
                f"to {MAX_MMAP_THRESHOLD_MIB}, the most glibc accepts"
            )
        if not 0.0 <= self.distill.weight <= 1.0:
            raise ConfigError(f"distill.weight={self.distill.weight} must be in [0, 1]")
        _positive("distill.temperature", self.distill.temperature)
        for task, weights in self.distill.teacher_weights.items():
            n = len(self.distill.teachers.get(task, []))
            if len(weights) != n:
                raise ConfigError(
                    f"distill.teacher_weights.{task} has {len(weights)} weights for {n} teachers"
                )
            if any(w < 0 for w in weights) or not sum(weights) > 0:
                raise ConfigError(
                    f"distill.teacher_weights.{task}={weights} must be non-negative with a "
                    "positive sum"
                )

    def _check_ranges(self) -> None:
        """Bounds of the numeric settings whose meaning breaks outside them (rates, factors)."""
        m, t, dist = self.model, self.train, self.distill
        _in_range("model.dropout", m.dropout, 0.0, 1.0, hi_open=True)
        check_layer_choice(m.keep_layers, m.keep_every)
        if m.encoder_dropout is not None:
            _in_range("model.encoder_dropout", m.encoder_dropout, 0.0, 1.0, hi_open=True)
        _in_range("train.adam_beta1", t.adam_beta1, 0.0, 1.0, hi_open=True)
        _in_range("train.adam_beta2", t.adam_beta2, 0.0, 1.0, hi_open=True)
        _positive("train.adam_eps", t.adam_eps)
        _in_range("train.weight_decay", t.weight_decay, 0.0, None)
        _in_range("train.max_grad_norm", t.max_grad_norm, 0.0, None, hint="0 turns clipping off")
        _positive("train.sampling_temperature", t.sampling_temperature)
        _positive("train.eval_batch_size", t.eval_batch_size)
        _positive("train.log_every", t.log_every)
        _positive("train.keep_checkpoints", t.keep_checkpoints)
        _in_range("train.checkpoint_every", t.checkpoint_every, 0, None, hint="0: final only")
        _in_range("distill.step_at", dist.step_at, 0.0, 1.0)
        for task, override in dist.per_task.items():
            if override.weight is not None:
                _in_range(f"distill.per_task.{task}.weight", override.weight, 0.0, 1.0)
            if override.temperature is not None:
                _positive(f"distill.per_task.{task}.temperature", override.temperature)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}={value} must be positive")


def _in_range(
    key: str,
    value: float,
    lo: float,
    hi: float | None,
    *,
    hi_open: bool = False,
    hint: str = "",
) -> None:
    """Refuse ``value`` outside [lo, hi] (or [lo, hi) with ``hi_open``; no upper bound if None)."""
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if value < lo or above:
        span = f"[{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ConfigError(
            f"{key}={value} must be {'in ' if hi is not None else ''}{span}"
            + (f" ({hint})" if hint else "")
        )


MIN_SEQ_LENGTH = 3
"""The shortest ``data.max_seq_length`` any encoder can use: [CLS], one text token, [SEP].
The tokenizer's own count of special tokens refines this when a run starts (pair tasks need room
for one token of each sentence, 5 for BERT); see `check_seq_length_fits`."""

MAX_SEQ_LENGTH = 100_000


def _check_seq_length(value: int) -> None:
    if not MIN_SEQ_LENGTH <= value <= MAX_SEQ_LENGTH:
        raise ConfigError(
            f"data.max_seq_length={value} must be {MIN_SEQ_LENGTH} to {MAX_SEQ_LENGTH}: it holds "
            "the special tokens ([CLS], [SEP]) and at least one text token; 128 is usual"
        )


def check_seq_length_fits(
    max_seq_length: int, special_single: int, special_pair: int, has_pairs: bool
) -> None:
    """Refuse a ``data.max_seq_length`` that leaves no text token once the tokenizer's special
    tokens are in (one token of each sentence for pair tasks).

    Below that the tokenizer cannot truncate at all and returns rows of any length, so the check
    must come before tokenization.
    """
    need = special_pair + 2 if has_pairs else special_single + 1
    if max_seq_length < need:
        what = "a sentence pair" if has_pairs else "a sentence"
        raise ConfigError(
            f"data.max_seq_length={max_seq_length} is too short for this tokenizer: "
            f"{what} needs at least {need} tokens (its special tokens plus one text token"
            f"{' per sentence' if has_pairs else ''}); set data.max_seq_length={max(need, 128)} "
            "or more"
        )


def _check_finite(node: Any, key: str) -> None:
    """Refuse NaN and infinite numbers anywhere in a config, naming the dotted key."""
    if dataclasses.is_dataclass(node):
        for f in fields(node):
            _check_finite(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, f"{key}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(_not_finite(key, node))


def _not_finite(key: str, value: float) -> str:
    return f"{key}={value} is not a finite number; give an ordinary number such as 1e-4 or 3"


# --------------------------------------------------------------------------------------------
# Building configs from plain data, YAML files and key=value overrides.
# --------------------------------------------------------------------------------------------


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from nested plain data, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls, include_extras=True)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(
            f"unknown config key '{key}'; known keys here: {', '.join(sorted(names))}"
        )
    kwargs = {
        name: _coerce(hints[name], value, f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value or {}, key)
    if origin is Literal:
        return _one_of(value, args, key)
    if origin is Annotated:
        choices = [m.names for m in tp.__metadata__ if isinstance(m, OneOf)]
        return _one_of(value, choices[0], key) if choices else _coerce(args[0], value, key)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {excerpt(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {excerpt(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {excerpt(value)}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {excerpt(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {excerpt(value)}")
        if not math.isfinite(value):  # YAML's .inf and .nan: refused here, with the key
            raise ConfigError(_not_finite(key, value))
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {excerpt(value)}")
        return str(value)
    return value


def _one_of(value: Any, allowed: tuple[Any, ...], key: str) -> Any:
    """``value`` if it is one of ``allowed``, else a ConfigError listing them."""
    value = _yaml_spelling(value, allowed)
    if value not in allowed:
        # YAML reads yes/no/on/off as booleans; say so, or "pooling=False" baffles.
        quoted = (
            f"{value} (YAML's reading of yes/no/on/off)"
            if isinstance(value, bool)
            else excerpt(value)
        )
        raise ConfigError(f"{key}={quoted} is not one of {', '.join(map(repr, allowed))}")
    return value


_YAML_BOOL_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}
"""The words YAML 1.1 (PyYAML) reads as booleans: `mixed_precision: no` arrives as False."""


def _yaml_spelling(value: Any, allowed: tuple[Any, ...]) -> Any:
    """Undo YAML's reading of a documented word as a boolean (``no`` -> False -> ``"no"``).

    Only a word that is one of the field's own values is restored, so ``pooling: no`` is still
    refused; a boolean never maps to two different words because no field lists two of them.
    """
    if isinstance(value, bool):
        words = [w for w in _YAML_BOOL_WORDS[value] if w in allowed]
        if len(words) == 1:
            return words[0]
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value``; the value is parsed as YAML (so 1e-4, true, [a, b] work)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    # YAML 1.1 reads 1e-4 as a string; a number is what people mean (but not words like "inf").
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` in the nested dict ``data`` (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


FORCED_PATH_KEYS = {
    ("model", "init_from"),
    ("data", "glue_dir"),
    ("data", "task_files"),
    ("data", "cache_dir"),
    ("distill", "teachers"),
    ("", "output_dir"),
}
"""Keys that always hold paths: relative values resolve against the preset file's folder."""

MAYBE_PATH_KEYS = {("model", "name_or_path"), ("model", "tokenizer")}
"""Keys that hold a path or a hub id: resolved only when they start with '.' or exist there."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with a message naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of sections, not {type(data).__name__}")
    return data


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the relative path values in ``data`` absolute against ``base`` (in place)."""
    for keys, force in ((FORCED_PATH_KEYS, True), (MAYBE_PATH_KEYS, False)):
        for section, key in keys:
            node = data if not section else data.get(section)
            if isinstance(node, dict) and node.get(key):
                node[key] = _resolve(node[key], base, force)
    return data


def _resolve(value: Any, base: Path, force: bool) -> Any:
    if isinstance(value, list):
        return [_resolve(v, base, force) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, base, force) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if force or value.startswith(".") or (base / path).exists():
        return str((base / path).resolve())
    return value  # a hub id such as "bert-base-uncased", or a builtin name


def build_config(
    preset: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a preset (file path or builtin name), apply overrides, validate.

    Overrides' relative paths resolve against the current directory, preset paths against the
    preset's folder.
    """
    data: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if preset is not None:
        path = find_preset(preset)
        data = merge_sections(data, resolve_paths(load_yaml(path), path.parent))
    if overrides:
        extra = apply_overrides({}, overrides)
        data = merge_sections(data, resolve_paths(extra, Path.cwd()))
    return from_dict(RunConfig, data)


def merge_sections(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Nested config data with each layer's values over the earlier ones', as a new dict.

    Mappings merge key by key, except ``teachers``: a later task -> teachers mapping replaces
    the earlier one whole, so a run never inherits another run's teachers.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "teachers":
                out[key] = merge_sections(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


PRESET_DIR = Path(__file__).parent / "presets"


def find_preset(name: str | Path) -> Path:
    """A preset is a YAML path, or the name of one shipped in ``bamkd/presets``."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    builtin = PRESET_DIR / f"{name}.yaml"
    if builtin.is_file():
        return builtin
    known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    raise ConfigError(f"preset '{name}' is neither a file nor a builtin preset ({known})")


def settings_diff(there: dict, here: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value there, value here) for every setting two config dicts disagree on."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(there) | set(here)):
        a, b = there.get(key), here.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff.update(settings_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            diff[f"{prefix}{key}"] = (a, b)
    return diff
