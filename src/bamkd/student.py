"""A smaller student: a pretrained encoder cut down to a chosen subset of its layers.

Distillation usually wants a student cheaper than its teachers. DistilBERT starts its student
from the teacher by keeping one layer in two; ``model.keep_layers`` (explicit 0-based indices) or
``model.keep_every`` (every k-th layer counting down from the top one) do the same here. The
result is a plain transformers model of the same class with ``num_hidden_layers`` (or the
family's own key) set to the new count: the embeddings, the kept layers in order (renumbered
0..k-1) and the pooler are copied, nothing else changes. So the saved config describes the
smaller model exactly, and checkpoints, resume, ``bamkd export`` and ``bamkd predict`` load it
like any other.

Families whose layers sit in one ``ModuleList`` can be cut (BERT, RoBERTa, XLM-R, ELECTRA,
DeBERTa, MPNet: ``encoder.layer``; DistilBERT: ``transformer.layer``). ALBERT shares one set of
weights across its layers, so there is nothing to choose from; it and any other layout are
refused with the reason.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from bamkd.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: config.py imports this module
    from torch import nn

log = logging.getLogger(__name__)

Encoder = TypeVar("Encoder", bound="nn.Module")

LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers", "num_layers", "n_layer")
"""Config attributes that hold the layer count in the common encoder families."""

LAYER_LIST_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")
"""Where the families keep their list of layers (BERT-likes, DistilBERT, others)."""


def layer_count_key(config: Any) -> str:
    """The config attribute holding the layer count; ConfigError if there is none."""
    for key in LAYER_COUNT_KEYS:
        if isinstance(getattr(config, key, None), int):
            return key
    raise ConfigError(
        f"cannot find the layer count in {type(config).__name__}; model.keep_layers and "
        "model.keep_every need an encoder whose config has num_hidden_layers"
    )


def layer_list_path(encoder: nn.Module) -> str | None:
    """Dotted path of the encoder's layer list, or None when it keeps none to choose from."""
    from torch import nn

    count = getattr(encoder.config, layer_count_key(encoder.config))
    for path in LAYER_LIST_PATHS:
        module: Any = encoder
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return path
    return None


def choose_layers(
    keep_layers: Sequence[int] | None, keep_every: int | None, num_layers: int
) -> list[int] | None:
    """The 0-based layer indices a student keeps out of ``num_layers``, or None for all (no
    choice, or one that keeps every layer in order: nothing to cut).

    ``keep_every=k`` keeps the top layer and every k-th one below it (6 layers, k=2: 1, 3, 5),
    so the pooler still reads the layer it was trained on.

    Raises:
        ConfigError: an index outside the encoder's layers, duplicates, an empty or unsorted
            list, ``keep_every`` below 1, or both keys set (config.py refuses the ones that need
            no encoder earlier; this repeats them for callers that skip it).
    """
    check_layer_choice(keep_layers, keep_every)
    if keep_every is not None:
        chosen = sorted(range(num_layers - 1, -1, -keep_every))
        return None if chosen == list(range(num_layers)) else chosen
    if keep_layers is None:
        return None
    bad = [i for i in keep_layers if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(
            f"model.keep_layers={list(keep_layers)}: layer {bad[0]} does not exist; the encoder "
            f"has {num_layers} layers, numbered 0 to {num_layers - 1}"
        )
    return None if list(keep_layers) == list(range(num_layers)) else list(keep_layers)


def check_layer_choice(keep_layers: Sequence[int] | None, keep_every: int | None) -> None:
    """Refuse the layer choices that are wrong whatever the encoder (see ``choose_layers``)."""
    if keep_layers is not None and keep_every is not None:
        raise ConfigError(
            "model.keep_layers and model.keep_every are both set; choose the layers one way"
        )
    if keep_every is not None and keep_every < 1:
        raise ConfigError(f"model.keep_every={keep_every} must be 1 or more (1 keeps every layer)")
    if keep_layers is None:
        return
    shown = list(keep_layers)
    if not shown:
        raise ConfigError(
            "model.keep_layers=[] keeps no layer; list the 0-based layers to keep, e.g. "
            "[0, 2, 4], or leave it out (null) to keep them all"
        )
    if any(i < 0 for i in shown):
        raise ConfigError(f"model.keep_layers={shown}: layers are numbered from 0 upwards")
    duplicates = sorted({i for i in shown if shown.count(i) > 1})
    if duplicates:
        raise ConfigError(
            f"model.keep_layers={shown} names layer {duplicates[0]} twice; each layer can be "
            "kept once"
        )
    if shown != sorted(shown):
        raise ConfigError(
            f"model.keep_layers={shown} is not in increasing order; the layers keep their "
            f"order in the encoder, so write {sorted(shown)}"
        )


def checked_layer_choice(
    encoder: nn.Module, keep_layers: Sequence[int] | None, keep_every: int | None
) -> list[int] | None:
    """The layers a choice keeps of this encoder (None: no choice), or the reason it cannot be
    cut (`bamkd.model.check_encoder_layers` passes a weightless skeleton)."""
    num_layers = getattr(encoder.config, layer_count_key(encoder.config))
    chosen = choose_layers(keep_layers, keep_every, num_layers)
    if chosen is not None and layer_list_path(encoder) is None:
        model_type = getattr(encoder.config, "model_type", "?")
        shared = ""
        if model_type == "albert":
            shared = " (ALBERT shares one layer's weights across all its layers)"
        raise ConfigError(
            f"model.keep_layers/keep_every: the encoder {type(encoder).__name__} (model type "
            f"{model_type!r}) keeps no list of separate layers to choose from{shared}; use a "
            "BERT-like encoder or leave both keys out"
        )
    return chosen


def keep_encoder_layers(encoder: Encoder, keep: Sequence[int]) -> Encoder:
    """A new encoder of the same class holding only layers ``keep`` (in that order).

    The config's layer count is set to ``len(keep)``; every other weight (embeddings, pooler,
    anything outside the layer list) is copied unchanged, layer ``keep[i]`` becomes layer ``i``.
    The result is built from its config, so it is what ``AutoModel.from_pretrained`` makes of
    the folder it is saved to (layers numbered 0..k-1, as attention caches expect). Keeping
    every layer in order returns ``encoder`` itself.
    """
    chosen = checked_layer_choice(encoder, keep, None)
    if chosen is None:
        return encoder  # every layer, in order: nothing to cut
    path = layer_list_path(encoder)
    assert path is not None
    config: Any = copy.deepcopy(encoder.config)
    key = layer_count_key(config)
    num_layers = getattr(config, key)
    setattr(config, key, len(chosen))
    per_layer = getattr(config, "layer_types", None)  # a few newer families list one per layer
    if isinstance(per_layer, list) and len(per_layer) == num_layers:
        config.layer_types = [per_layer[i] for i in chosen]
    # The encoder's own class, so a remote-code encoder needs no second permission here.
    small = type(encoder)(config)
    pattern = re.compile(rf"^{re.escape(path)}\.(\d+)\.")
    new_index = {old: new for new, old in enumerate(chosen)}
    state = {}
    for name, tensor in encoder.state_dict().items():
        match = pattern.match(name)
        if match is None:
            state[name] = tensor
        elif int(match.group(1)) in new_index:
            state[f"{path}.{new_index[int(match.group(1))]}.{name[match.end() :]}"] = tensor
    small.load_state_dict(state, strict=True)
    dtype = next(encoder.parameters()).dtype
    small.to(dtype)
    small.train(encoder.training)
    log.info(
        "encoder cut from %d to %d layers (kept %s)",
        num_layers,
        len(chosen),
        ", ".join(map(str, chosen)),
    )
    return small
