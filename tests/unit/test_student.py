"""A student cut down to a subset of its encoder's layers: which weights are copied, that the
result is a plain smaller transformers model, and the errors for choices that cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bamkd.config import build_config
from bamkd.errors import ConfigError
from bamkd.model import MultiTaskModel, check_encoder_layers, init_from, load_encoder
from bamkd.student import choose_layers, keep_encoder_layers
from bamkd.tasks import TaskSpec
from bamkd.teachers import check_teacher_tasks
from bamkd.tiny import build_tiny_encoder

SPEC = TaskSpec(name="t", kind="classification", label_names=("no", "yes"))


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "four", layers=4, seed=3)


def _ids(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # one padded row, so the mask is exercised
    return ids, mask


def test_keep_every_counts_down_from_the_top_layer():
    assert choose_layers(None, 2, 6) == [1, 3, 5]
    assert choose_layers(None, 2, 5) == [0, 2, 4]
    assert choose_layers(None, 3, 12) == [2, 5, 8, 11]
    assert choose_layers(None, 1, 3) is None  # every layer: nothing to cut
    assert choose_layers([0, 1, 2], None, 3) is None
    assert choose_layers(None, 9, 4) == [3]
    assert choose_layers([0, 2], None, 4) == [0, 2]
    assert choose_layers(None, None, 4) is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.keep_layers=[]", "keeps no layer"),
        ("model.keep_layers=[0, 2, 2]", "names layer 2 twice"),
        ("model.keep_layers=[2, 0]", "not in increasing order; the layers keep their order"),
        ("model.keep_layers=[-1]", "numbered from 0"),
        ("model.keep_every=0", "must be 1 or more"),
    ],
)
def test_layer_choices_wrong_for_any_encoder_are_refused_by_the_config(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("tiny", ["data.tasks=[mrpc]", override])


def test_both_keys_together_are_refused():
    with pytest.raises(ConfigError, match="both set"):
        build_config("tiny", ["data.tasks=[mrpc]", "model.keep_layers=[0]", "model.keep_every=2"])


def test_an_index_past_the_encoder_names_its_layer_count(four_layers):
    with pytest.raises(ConfigError, match=r"layer 4 does not exist; the encoder has 4 layers"):
        check_encoder_layers(str(four_layers), [0, 4], None)
    assert check_encoder_layers(str(four_layers), [0, 3], None) == [0, 3]
    assert check_encoder_layers(str(four_layers), None, 2) == [1, 3]
    assert check_encoder_layers(str(four_layers), None, None) is None


def test_an_encoder_with_shared_layers_cannot_be_cut(tmp_path):
    from transformers import AlbertConfig

    AlbertConfig(
        vocab_size=50,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="no list of separate layers.*ALBERT shares"):
        check_encoder_layers(str(tmp_path), [0, 2], None)


def test_the_chosen_layers_and_everything_outside_the_layers_are_copied(four_layers):
    source = load_encoder(str(four_layers))
    small = load_encoder(str(four_layers), keep_layers=[0, 3])
    assert type(small) is type(source)
    assert small.config.num_hidden_layers == 2 and len(small.encoder.layer) == 2
    assert source.config.num_hidden_layers == 4  # the source config is not edited
    src, got = source.state_dict(), small.state_dict()
    layer_keys = [k for k in got if k.startswith("encoder.layer.")]
    assert layer_keys, "no layer weights at all"
    for key in layer_keys:
        new = int(key.split(".")[2])
        old = [0, 3][new]
        source_key = key.replace(f"encoder.layer.{new}.", f"encoder.layer.{old}.", 1)
        assert torch.equal(got[key], src[source_key]), key
    for key in (k for k in got if not k.startswith("encoder.layer.")):
        assert torch.equal(got[key], src[key]), key  # embeddings, pooler
    assert {k.split(".")[2] for k in layer_keys} == {"0", "1"}
    # Layers 1 and 2 really are gone: layer 1 of the student is layer 3 of the source.
    w = "encoder.layer.1.output.dense.weight"
    assert not torch.equal(got[w], src[w])
    assert [m.layer_idx for m in small.modules() if hasattr(m, "layer_idx")] == [0, 1]
    assert small.training == source.training


@torch.no_grad()
def test_the_student_computes_the_source_with_only_those_layers(four_layers):
    source = load_encoder(str(four_layers)).eval()
    small = load_encoder(str(four_layers), keep_every=2).eval()  # layers 1 and 3
    ids, mask = _ids(source.config.vocab_size)
    # Reference: the source itself with its layer list cut by hand.
    source.encoder.layer = nn.ModuleList([source.encoder.layer[i] for i in (1, 3)])
    want = source(input_ids=ids, attention_mask=mask)
    got = small(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=0, atol=0)


def _tiny_configs():
    from transformers import (
        BertConfig,
        DistilBertConfig,
        ElectraConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    common = dict(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return [
        BertConfig(**common),
        RobertaConfig(**common),
        XLMRobertaConfig(**common),
        ElectraConfig(embedding_size=16, **common),
        DistilBertConfig(vocab_size=60, dim=32, n_layers=4, n_heads=2, hidden_dim=64),
    ]


@pytest.mark.parametrize("config", _tiny_configs(), ids=lambda c: c.model_type)
@torch.no_grad()
def test_each_family_saves_as_a_plain_smaller_model(config, tmp_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    source = AutoModel.from_config(config).eval()
    small = keep_encoder_layers(source, [1, 2]).eval()
    small.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    key = "n_layers" if config.model_type == "distilbert" else "num_hidden_layers"
    assert saved[key] == 2
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(source)
    ids, mask = _ids(60)
    a = small(input_ids=ids, attention_mask=mask).last_hidden_state
    b = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    whole = source(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(a, whole)  # two layers fewer do change the output


def test_multitask_model_round_trip_keeps_the_smaller_encoder(four_layers, tmp_path):
    model = MultiTaskModel(load_encoder(str(four_layers), keep_layers=[2]), [SPEC]).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m")
    assert loaded.num_layers == 1
    ids, mask = _ids(model.encoder.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask)["t"], model(ids, mask)["t"], rtol=0, atol=0)


def test_init_from_a_run_with_other_layers_is_refused(four_layers, tmp_path):
    whole = MultiTaskModel(load_encoder(str(four_layers)), [SPEC])
    whole.save_pretrained(tmp_path / "whole")
    small = MultiTaskModel(load_encoder(str(four_layers), keep_layers=[1, 3]), [SPEC])
    with pytest.raises(ConfigError, match="its encoder has 4 layers and this one 2"):
        init_from(small, tmp_path / "whole")
    small.save_pretrained(tmp_path / "small")
    other = MultiTaskModel(load_encoder(str(four_layers), keep_layers=[0, 1]), [SPEC])
    init_from(other, tmp_path / "small")  # same depth: the source's weights are taken
    assert torch.equal(
        other.encoder.encoder.layer[1].output.dense.weight,
        small.encoder.encoder.layer[1].output.dense.weight,
    )


def _teacher_run(folder: Path, spec: TaskSpec) -> Path:
    (folder / "model").mkdir(parents=True)
    meta = {"tasks": [spec.to_dict()]}
    (folder / "model" / "bamkd.json").write_text(json.dumps(meta))
    return folder


def test_a_teacher_with_another_label_set_is_refused(tmp_path):
    same = _teacher_run(tmp_path / "same", SPEC)
    check_teacher_tasks({"t": [str(same)]}, {"t": SPEC})
    swapped = TaskSpec(name="t", kind="classification", label_names=("yes", "no"))
    bad = _teacher_run(tmp_path / "bad", swapped)
    with pytest.raises(ConfigError, match=r"has labels \['yes', 'no'\] and the student"):
        check_teacher_tasks({"t": [str(same), str(bad)]}, {"t": SPEC})
    scores = TaskSpec(name="t", kind="regression", metrics=("pearson",))
    other = _teacher_run(tmp_path / "reg", scores)
    with pytest.raises(ConfigError, match="is a regression task and the student's a classif"):
        check_teacher_tasks({"t": [str(other)]}, {"t": SPEC})
    wider = TaskSpec(name="t", kind="regression", metrics=("pearson",), regression_range=(0, 1))
    with pytest.raises(ConfigError, match=r"scales scores from \[0.0, 5.0\]"):
        check_teacher_tasks({"t": [str(other)]}, {"t": wider})
    # A teacher not trained yet (a pipeline's) is left for the check before its outputs are read.
    check_teacher_tasks({"t": [str(tmp_path / "not-yet")]}, {"t": SPEC})
