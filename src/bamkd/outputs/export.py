"""Export a trained run for shipping: one multi-task folder and one Hugging Face folder per task.

``export_run(run, out)`` writes, atomically (the whole ``out`` folder appears at once):

- ``out/multitask/``: the multi-task model in bamkd's own format (as ``<run>/model``), which
  `MultiTaskModel.from_pretrained` and `bamkd.Predictor` load back;
- ``out/<task>/``: per task a standard ``AutoModelForSequenceClassification`` folder (the shared
  encoder plus that task's head, ``id2label``/``label2id``, ``problem_type``, the tokenizer and a
  README) that plain ``transformers`` loads and runs without bamkd;
- ``out/bamkd_export.json`` (what was exported from where) and ``out/README.md``.

A bamkd head is dropout + one linear layer on the encoder's pooled output (BERT's pooler), which
is exactly what ``BertForSequenceClassification`` and its kin compute, so the encoder weights move
under the class's base-model prefix (``bert.``) and the head becomes ``classifier.``. Every
per-task folder is checked before it is written: the Hugging Face model must reproduce the
multi-task model's logits on sample inputs. Models pooled with ``cls`` or ``mean``, or encoders
whose classification class does not classify from the pooler, have no standard equivalent; their
per-task export is refused with the reason (the multi-task folder is still written).

Regression heads: plain Hugging Face has no sigmoid and no output scale, so the exported config
carries a ``bamkd`` entry, and the README the formula, that turns the logit into bamkd's score:
``sigmoid(logit) * (hi - lo) + lo`` (or ``logit * (hi - lo) + lo`` for a linear head).
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bamkd import __version__
from bamkd.errors import BamkdError
from bamkd.model import MultiTaskModel, load_tokenizer, model_folder
from bamkd.outputs.predict import default_max_length
from bamkd.runtime.runs import CONFIG_NAME, MODEL_DIR, load_run_config
from bamkd.runtime.storage import atomic_dir, write_json, write_text
from bamkd.tasks import TaskSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MULTITASK_DIR = "multitask"
EXPORT_NAME = "bamkd_export.json"
# Inputs on which each per-task folder must reproduce the multi-task model's logits.
_CHECK_TEXTS = (
    ("the film was good and the music was great", "a good film with great music"),
    ("a long , dull story", "the story was not long"),
    ("yes", "no"),
)
_CHECK_TOLERANCE = 1e-4


class ExportUnsupported(BamkdError):
    """This model has no standard Hugging Face equivalent; the message says why."""


@dataclass
class ExportResult:
    """Where an export went, and why per-task folders are missing if they are."""

    folder: Path
    multitask: Path
    tasks: dict[str, Path] = field(default_factory=dict)
    skipped: str | None = None

    def summary(self) -> str:
        lines = [f"multi-task model: {self.multitask}"]
        lines += [f"{name}: {path}" for name, path in self.tasks.items()]
        if self.skipped:
            lines.append(f"no per-task folders: {self.skipped}")
        return "\n".join(lines)


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    per_task: bool = True,
    tasks: Sequence[str] | None = None,
) -> ExportResult:
    """Export a run (or a model folder) to ``out``; see the module docstring for the layout.

    Args:
        run: a finished run folder, its ``model/`` folder, or an exported ``multitask/`` folder.
        out: the export folder; created, or replaced if it holds an earlier export.
        per_task: also write the per-task Hugging Face folders.
        tasks: only these tasks get a per-task folder (default: every head).

    Raises:
        BamkdError: ``out`` holds something other than an export; an unknown task; or (after
            writing the multi-task folder) the model has no per-task Hugging Face equivalent.
    """
    source = Path(run)
    folder = model_folder(source)
    run_dir = folder.parent if folder.name == MODEL_DIR else None
    cfg = load_run_config(run_dir) if run_dir and (run_dir / CONFIG_NAME).is_file() else None
    trust = bool(cfg and cfg.model.trust_remote_code)
    model = MultiTaskModel.from_pretrained(folder, trust)
    tokenizer = load_tokenizer(str(folder), trust)
    max_length = default_max_length(folder, model, tokenizer)
    # Saved with the tokenizer, so `truncation=True` cuts inputs where training did.
    tokenizer.model_max_length = max_length

    out = Path(out)
    _check_target(out)
    names = list(tasks) if tasks is not None else model.task_names
    unknown = [n for n in names if n not in model.tasks_by_name]
    if unknown:
        raise BamkdError(
            f"{source} has no head for task {unknown[0]!r}; its tasks are: "
            f"{', '.join(model.task_names)}"
        )
    if per_task and MULTITASK_DIR in names:
        raise BamkdError(
            f"a task named {MULTITASK_DIR!r} would overwrite the multi-task folder; "
            "export with per_task=False (--multitask-only)"
        )

    result = ExportResult(folder=out, multitask=out / MULTITASK_DIR)
    manifest: dict = {
        "bamkd_version": __version__,
        "source": str(folder.resolve()),
        "max_seq_length": max_length,
        "multitask": MULTITASK_DIR,
        "tasks": {},
        "skipped": None,
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp / MULTITASK_DIR, tokenizer)
        if per_task:
            try:
                for name in names:
                    hf = hf_classifier(model, name, source=str(folder.resolve()))
                    check_same_logits(model, hf, tokenizer, name)
                    save_hf_classifier(hf, tokenizer, model.tasks_by_name[name], tmp / name)
                    manifest["tasks"][name] = {
                        "folder": name,
                        "architecture": type(hf).__name__,
                        "kind": model.tasks_by_name[name].kind,
                    }
                    result.tasks[name] = out / name
                    del hf
            except ExportUnsupported as exc:
                for name in result.tasks:
                    shutil.rmtree(tmp / name, ignore_errors=True)
                result.tasks.clear()
                manifest["tasks"] = {}
                result.skipped = manifest["skipped"] = str(exc)
        else:
            result.skipped = manifest["skipped"] = "not asked for (multi-task folder only)"
        write_json(tmp / EXPORT_NAME, manifest)
        write_text(tmp / "README.md", _export_readme(manifest))
    if per_task and result.skipped:
        raise BamkdError(
            f"no per-task Hugging Face folders: {result.skipped}. The multi-task folder was "
            f"written to {result.multitask}; export with --multitask-only to ask for it alone"
        )
    return result


def _check_target(out: Path) -> None:
    """Never replace a folder that is not an earlier export (a run folder, a home folder...)."""
    if out.exists() and not out.is_dir():
        raise BamkdError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_NAME).is_file():
        raise BamkdError(
            f"{out} is not empty and holds no earlier export ({EXPORT_NAME}); choose a new "
            "or empty folder for --out"
        )


def hf_classifier(model: MultiTaskModel, task: str, *, source: str = ""):
    """A Hugging Face ``AutoModelForSequenceClassification`` holding the encoder and one head.

    Raises:
        ExportUnsupported: the model's pooling or the encoder's classification class differ
            from "pooled output + dropout + one linear layer".
    """
    from transformers import AutoModelForSequenceClassification

    spec = model.tasks_by_name[task]
    if model.pooling != "pooler":
        raise ExportUnsupported(
            f"this model pools with model.pooling={model.pooling}, but the Hugging Face "
            "ForSequenceClassification classes classify from the encoder's pooler output, so "
            "no standard class reproduces its predictions (train with model.pooling=pooler)"
        )
    config = hf_config(model, spec, source=source)
    try:
        hf = AutoModelForSequenceClassification.from_config(config)
    except ValueError as exc:
        raise ExportUnsupported(
            f"transformers has no AutoModelForSequenceClassification for "
            f"{type(config).__name__} ({exc})"
        ) from None
    cls = type(hf).__name__
    prefix = hf.base_model_prefix
    target = hf.state_dict()
    base_keys = [k for k in target if k.startswith(f"{prefix}.")]
    head_keys = sorted(k for k in target if not k.startswith(f"{prefix}."))
    has_pooler = any(k.startswith(f"{prefix}.pooler.") for k in base_keys)
    if head_keys != ["classifier.bias", "classifier.weight"] or not has_pooler:
        raise ExportUnsupported(
            f"{cls} classifies through {', '.join(head_keys) or 'no head weights'}"
            f"{'' if has_pooler else ' without the pooler'}, not through the pooled output and "
            "one linear layer as bamkd's heads do, so it cannot hold this model's heads"
        )
    ours = model.state_dict()
    filled: dict[str, torch.Tensor] = {}
    for key, value in target.items():
        if key in base_keys:
            src = f"encoder.{key[len(prefix) + 1 :]}"
        else:
            src = f"heads.{task}.{key.split('.', 1)[1]}"
        if src not in ours or ours[src].shape != value.shape:
            raise ExportUnsupported(
                f"{cls} weight {key} {tuple(value.shape)} has no counterpart in the multi-task "
                f"model ({src}: {tuple(ours[src].shape) if src in ours else 'missing'})"
            )
        filled[key] = ours[src].detach().to("cpu", torch.float32).clone()
    unused = [
        k
        for k in ours
        if k.startswith("encoder.")
        and not k.endswith("position_ids")
        and f"{prefix}.{k[len('encoder.') :]}" not in filled
    ]
    if unused:
        raise ExportUnsupported(f"{cls} has no place for the encoder weight {unused[0]}")
    assert set(filled) == set(target), "every weight of the Hugging Face model is filled"
    hf.load_state_dict(filled, strict=True)
    return hf.eval()


def hf_config(model: MultiTaskModel, spec: TaskSpec, *, source: str = ""):
    """The encoder's config with the labels, problem type and bamkd's scoring rule of one task."""
    config: Any = copy.deepcopy(model.encoder.config)
    if spec.kind == "classification":
        names = list(spec.label_names)
        config.problem_type = "single_label_classification"
    else:
        names = ["score"]
        config.problem_type = "regression"
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.classifier_dropout = model.dropout_p
    config.bamkd = bamkd_entry(model, spec, source)
    return config


def bamkd_entry(model: MultiTaskModel, spec: TaskSpec, source: str) -> dict:
    """The ``bamkd`` entry of an exported config.json: where it came from and how to score."""
    entry: dict = {
        "bamkd_version": __version__,
        "source": source,
        "task": spec.name,
        "display_name": spec.display_name or spec.name,
        "kind": spec.kind,
        "is_pair": spec.is_pair,
        "metrics": list(spec.metrics),
    }
    if spec.kind == "classification":
        entry["prediction"] = "label = id2label[argmax(logits)], probabilities = softmax(logits)"
    else:
        lo, hi = spec.regression_range
        entry["regression_head"] = model.regression_head
        entry["regression_range"] = [lo, hi]
        squash = "sigmoid(logits[0])" if model.regression_head == "sigmoid" else "logits[0]"
        entry["prediction"] = f"score = {squash} * ({hi:g} - {lo:g}) + {lo:g}"
    return entry


@torch.no_grad()
def check_same_logits(
    model: MultiTaskModel, hf: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, task: str
) -> float:
    """The largest logit difference on sample inputs; raises when it is not float noise."""
    spec = model.tasks_by_name[task]
    first = [a for a, _ in _CHECK_TEXTS]
    second = [b for _, b in _CHECK_TEXTS] if spec.is_pair else None
    batch = tokenizer(first, second, padding=True, truncation=True, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.eval()
    ours = model.heads[task](
        model.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    )
    if was_training:
        model.train()
    theirs = hf.to(device)(**batch).logits
    diff = float((ours.float() - theirs.float()).abs().max())
    if not diff <= _CHECK_TOLERANCE * max(1.0, float(ours.abs().max())):
        raise ExportUnsupported(
            f"{type(hf).__name__} does not reproduce the multi-task model's logits for task "
            f"{task!r} (largest difference {diff:.3g}); its forward pass differs from bamkd's"
        )
    hf.to("cpu")
    return diff


def save_hf_classifier(
    hf: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: TaskSpec, folder: Path
) -> None:
    """Weights, config, tokenizer and a README for one task's Hugging Face folder."""
    hf.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_text(folder / "README.md", _task_readme(spec, type(hf).__name__, hf.config.bamkd))


def _task_readme(spec: TaskSpec, cls: str, entry: dict) -> str:
    name = spec.display_name or spec.name
    call = "tok(first_sentences, second_sentences" if spec.is_pair else "tok(sentences"
    if spec.kind == "classification":
        labels = ", ".join(f"{i}: {n}" for i, n in enumerate(spec.label_names))
        reading = (
            f"Labels (`config.id2label`): {labels}.\n\n"
            "```python\n"
            "probabilities = logits.softmax(-1)\n"
            "labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]\n"
            "```\n"
        )
    else:
        lo, hi = spec.regression_range
        squash = (
            "logits[:, 0].sigmoid()" if entry["regression_head"] == "sigmoid" else ("logits[:, 0]")
        )
        reading = (
            "A regression task. Plain `transformers` returns the raw logit; bamkd's score, on "
            f"the task's own scale [{lo:g}, {hi:g}], is\n\n"
            "```python\n"
            f"scores = {squash} * ({hi:g} - {lo:g}) + {lo:g}\n"
            "```\n\n"
            "(also recorded as `bamkd.prediction` in `config.json`).\n"
        )
    return (
        f"# {name}: exported from bamkd\n\n"
        f"A Hugging Face `{cls}` for task `{spec.name}` ({spec.kind}"
        f"{', sentence pairs' if spec.is_pair else ''}): the shared encoder of a bamkd multi-task "
        f"model and this task's head, from `{entry['source']}`. It loads and runs with plain "
        "`transformers`, no bamkd needed:\n\n"
        "```python\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        "tok = AutoTokenizer.from_pretrained(FOLDER)\n"
        "model = AutoModelForSequenceClassification.from_pretrained(FOLDER).eval()\n"
        f'batch = {call}, truncation=True, padding=True, return_tensors="pt")\n'
        "logits = model(**batch).logits\n"
        "```\n\n"
        f"{reading}\n"
        "The tokenizer's `model_max_length` is the run's `data.max_seq_length`, so "
        "`truncation=True` cuts inputs where training did.\n"
    )


def _export_readme(manifest: dict) -> str:
    lines = [
        "# bamkd export",
        "",
        f"Exported by bamkd {manifest['bamkd_version']} from `{manifest['source']}`.",
        "",
        f"- `{manifest['multitask']}/`: the multi-task model (every head). Load it with "
        "`bamkd.Predictor.from_pretrained(folder)` or `bamkd.load(folder)`.",
    ]
    for name, info in manifest["tasks"].items():
        lines.append(
            f"- `{info['folder']}/`: task `{name}` as a plain Hugging Face "
            f"`{info['architecture']}` (`AutoModelForSequenceClassification.from_pretrained`); "
            "see its README.md."
        )
    if manifest["skipped"]:
        lines.append(f"- No per-task folders: {manifest['skipped']}.")
    return "\n".join(lines) + "\n"
