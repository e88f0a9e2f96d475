"""`bamkd export`: per-task folders that plain transformers runs, and a multi-task folder bamkd
loads back, all giving the multi-task model's predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bamkd.cli import main
from bamkd.errors import BamkdError
from bamkd.model import WEIGHTS_NAME, MultiTaskModel, load_encoder, load_tokenizer
from bamkd.outputs.export import EXPORT_NAME, export_run
from bamkd.outputs.predict import Predictor
from bamkd.tasks import TaskSpec

TASKS = ["demo_sentiment", "demo_agreement", "demo_rating"]
SINGLE = ["the film was good and the music was great", "a dull , boring story", "yes"]
PAIRS = [
    ("the film was good", "the movie was great"),
    ("the story was bad", "a nice story with fun people"),
]


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "export"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    return out


@torch.no_grad()
def _multitask_logits(model: MultiTaskModel, tokenizer, task: str, inputs) -> torch.Tensor:
    """The multi-task model's raw head output (before any sigmoid), in eval mode."""
    first = [x if isinstance(x, str) else x[0] for x in inputs]
    second = None if isinstance(inputs[0], str) else [x[1] for x in inputs]
    batch = tokenizer(first, second, padding=True, truncation=True, return_tensors="pt")
    pooled = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    return model.heads[task](pooled)


def test_export_writes_the_documented_layout(exported):
    assert (exported / EXPORT_NAME).is_file() and (exported / "README.md").is_file()
    for name in ("bamkd_model.safetensors", "bamkd.json", "config.json", "tokenizer.json"):
        assert (exported / "multitask" / name).is_file(), name
    manifest = json.loads((exported / EXPORT_NAME).read_text())
    assert list(manifest["tasks"]) == TASKS and manifest["skipped"] is None
    assert manifest["max_seq_length"] == 64
    for task in TASKS:
        for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
            assert (exported / task / name).is_file(), f"{task}/{name}"
        config = json.loads((exported / task / "config.json").read_text())
        assert config["architectures"] == ["BertForSequenceClassification"]
        assert "auto_map" not in config  # no custom code: plain transformers classes only
        assert config["bamkd"]["task"] == task


def test_per_task_folders_run_in_plain_transformers_with_the_same_logits(run_dir, exported):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = MultiTaskModel.from_pretrained(run_dir).eval()
    tokenizer = load_tokenizer(str(run_dir / "model"))
    predictor = Predictor.from_pretrained(run_dir)
    for task in TASKS:
        spec = model.tasks_by_name[task]
        inputs = PAIRS if spec.is_pair else SINGLE
        hf = AutoModelForSequenceClassification.from_pretrained(exported / task).eval()
        hf_tok = AutoTokenizer.from_pretrained(exported / task)
        assert type(hf).__name__ == "BertForSequenceClassification"
        assert hf_tok.model_max_length == 64  # the run's max_seq_length
        first = [x if isinstance(x, str) else x[0] for x in inputs]
        second = [x[1] for x in inputs] if spec.is_pair else None
        batch = hf_tok(first, second, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits = hf(**batch).logits
        expected = _multitask_logits(model, tokenizer, task, inputs)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        assert logits.abs().max() > 0  # a real head, not zeros

        predictions = predictor.predict(task, inputs)
        if spec.kind == "classification":
            assert hf.config.num_labels == len(spec.label_names)
            assert hf.config.id2label == dict(enumerate(spec.label_names))
            assert hf.config.label2id == {n: i for i, n in enumerate(spec.label_names)}
            assert hf.config.problem_type == "single_label_classification"
            labels = [hf.config.id2label[i] for i in logits.argmax(-1).tolist()]
            assert labels == [p["label"] for p in predictions]
            probs = logits.softmax(-1)
            for row, p in zip(probs.tolist(), predictions):
                assert row == pytest.approx(list(p["probabilities"].values()), abs=1e-5)
        else:
            assert hf.config.num_labels == 1 and hf.config.problem_type == "regression"
            entry = hf.config.bamkd
            assert entry["regression_head"] == "sigmoid"
            lo, hi = entry["regression_range"]
            # The documented formula turns the plain HF logit into bamkd's score.
            scores = (logits[:, 0].sigmoid() * (hi - lo) + lo).tolist()
            assert scores == pytest.approx([p["score"] for p in predictions], abs=1e-5)
            assert "sigmoid(logits[0]) * (5 - 0) + 0" in entry["prediction"]
            assert "sigmoid()" in (exported / task / "README.md").read_text()


def test_multitask_folder_loads_back_with_the_same_weights_and_predictions(run_dir, exported):
    original = MultiTaskModel.from_pretrained(run_dir)
    loaded = MultiTaskModel.from_pretrained(exported / "multitask")
    assert loaded.task_names == original.task_names
    assert [t.to_dict() for t in loaded.tasks] == [t.to_dict() for t in original.tasks]
    ours, theirs = original.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # The exported tokenizer carries the run's max_seq_length, so predictions match exactly.
    from_run = Predictor.from_pretrained(run_dir).predict_all(SINGLE)
    from_export = Predictor.from_pretrained(exported / "multitask")
    assert from_export.max_length == 64
    assert from_export.predict_all(SINGLE) == from_run


def _save_untrained(folder: Path, pooling: str, demo_suite) -> None:
    from bamkd.tasks import load_task_yaml

    spec: TaskSpec = load_task_yaml(demo_suite["demo_sentiment"])
    model = MultiTaskModel(load_encoder("bamkd-tiny"), [spec], pooling=pooling)
    model.save_pretrained(folder, load_tokenizer("bamkd-tiny"))


def test_cls_pooling_is_refused_per_task_but_the_multitask_folder_is_written(
    demo_suite, tmp_path, capsys
):
    _save_untrained(tmp_path / "model", "cls", demo_suite)
    out = tmp_path / "export"
    with pytest.raises(BamkdError, match="model.pooling=cls") as info:
        export_run(tmp_path / "model", out)
    assert "multitask-only" in str(info.value)
    assert (out / "multitask" / WEIGHTS_NAME).is_file()
    assert not (out / "demo_sentiment").exists()
    assert json.loads((out / EXPORT_NAME).read_text())["tasks"] == {}

    # The CLI says the same in one line, and --multitask-only exports without complaint.
    code = main(["export", str(tmp_path / "model"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "pooler" in err
    assert "Traceback" not in err
    assert main(["export", str(tmp_path / "model"), "--out", str(out), "--multitask-only"]) == 0


def test_export_never_replaces_a_folder_that_is_not_an_export(demo_suite, tmp_path):
    _save_untrained(tmp_path / "model", "pooler", demo_suite)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(BamkdError, match="holds no earlier export"):
        export_run(tmp_path / "model", busy)
    assert (busy / "notes.txt").read_text() == "keep me"
    with pytest.raises(BamkdError, match="no head for task 'nope'"):
        export_run(tmp_path / "model", tmp_path / "new", tasks=["nope"])
    assert not (tmp_path / "new").exists()
