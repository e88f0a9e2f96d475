"""Smaller students end to end: a layer-subset student trains on packed batches with fast
dropout, resumes exactly, exports and predicts like any run; a student whose tokenizer differs
from its teacher's learns from the teacher's outputs, which are keyed by example id."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import bamkd
from bamkd.cli import main
from bamkd.config import build_config
from bamkd.data import tokenizer_fingerprint
from bamkd.errors import BamkdError, ConfigError
from bamkd.evaluate import inference_speed
from bamkd.fast_dropout import FastDropout
from bamkd.model import MultiTaskModel, load_tokenizer
from bamkd.runtime.stop import TrainingStopped
from bamkd.teachers import read_teacher_predictions
from bamkd.tiny import build_tiny_encoder
from bamkd.train import fit, setup, train

TASKS = ["demo_sentiment", "demo_agreement", "demo_rating"]
TEXTS = ["the film was good and the music was great", "a dull , boring story", "yes"]


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "four", layers=4, seed=1)


def _overrides(demo_suite, out: Path, encoder: Path | str, *extra: str) -> list[str]:
    return [
        f"data.task_files=[{','.join(demo_suite[t] for t in TASKS)}]",
        f"data.tasks=[{','.join(TASKS)}]",
        f"model.name_or_path={encoder}",
        "data.train_limit=24",
        "data.eval_limit=8",
        "train.epochs=1",
        "train.batch_size=8",
        "train.log_every=1",
        f"output_dir={out}",
        *extra,
    ]


@pytest.fixture(scope="module")
def small_run(demo_suite, four_layers, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "run"
    cfg = build_config("tiny", _overrides(demo_suite, out, four_layers, "model.keep_layers=[1,3]"))
    ctx = setup(cfg)
    try:
        # The smaller encoder takes packed rows and the fast CPU dropout like the full one.
        assert ctx.packing is not None
        assert any(isinstance(m, FastDropout) for m in ctx.raw_model.modules())
        assert ctx.raw_model.encoder.config._attn_implementation == "bamkd_fast_dropout"
        fit(ctx)
    finally:
        ctx.lock.release()
    return out


def test_subset_student_saves_a_plain_two_layer_encoder(small_run):
    config = json.loads((small_run / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["model_type"] == "bert"
    model = MultiTaskModel.from_pretrained(small_run)
    assert model.num_layers == 2
    assert json.loads((small_run / "dev_metrics.json").read_text()).keys() == set(TASKS)


@torch.no_grad()
def test_subset_student_exports_to_plain_transformers_with_the_same_logits(small_run, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "export"
    assert main(["export", str(small_run), "--out", str(out)]) == 0
    model = MultiTaskModel.from_pretrained(small_run).eval()
    tokenizer = load_tokenizer(str(small_run / "model"))
    hf = AutoModelForSequenceClassification.from_pretrained(out / "demo_sentiment").eval()
    assert hf.config.num_hidden_layers == 2 and len(hf.bert.encoder.layer) == 2
    batch = AutoTokenizer.from_pretrained(out / "demo_sentiment")(
        TEXTS, padding=True, truncation=True, return_tensors="pt"
    )
    ours = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    want = model.heads["demo_sentiment"](
        model.encode(ours["input_ids"], ours["attention_mask"], ours["token_type_ids"])
    )
    torch.testing.assert_close(hf(**batch).logits, want, rtol=0, atol=1e-5)
    # The exported multi-task folder loads back with the smaller encoder too.
    assert MultiTaskModel.from_pretrained(out / "multitask").num_layers == 2


def test_subset_student_predicts_from_the_cli(small_run, tmp_path, capsys):
    source = tmp_path / "in.tsv"
    source.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS)))
    assert (
        main(["predict", str(small_run), "--task", "demo_sentiment", "--input", str(source)]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = bamkd.load(small_run).predict("demo_sentiment", TEXTS)
    assert [r["label"] for r in rows] == [p["label"] for p in want]
    assert [r["score"] for r in rows] == pytest.approx([p["score"] for p in want], rel=1e-6)


def test_subset_student_resumes_to_identical_weights(
    demo_suite, four_layers, tmp_path, monkeypatch
):
    extra = ("model.keep_every=2", "train.checkpoint_every=2", "train.epochs=2")
    reference = tmp_path / "reference"
    train(build_config("tiny", _overrides(demo_suite, reference, four_layers, *extra)))

    out = tmp_path / "run"
    original = MultiTaskModel.forward
    calls = [0]

    def stop_in_step_five(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # as a scheduler's SIGTERM would, in the middle of a step
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiTaskModel, "forward", stop_in_step_five)
    with pytest.raises(TrainingStopped):
        train(build_config("tiny", _overrides(demo_suite, out, four_layers, *extra)))
    monkeypatch.setattr(MultiTaskModel, "forward", original)
    assert not (out / "model").exists()

    # Resumed from a command line that forgot the layer choice: the saved config wins, so the
    # resumed run builds the same two-layer student (a four-layer one would not load at all).
    train(build_config("tiny", _overrides(demo_suite, out, four_layers, *extra[1:])), resume=True)
    expected = load_file(str(reference / "model" / "bamkd_model.safetensors"))
    got = load_file(str(out / "model" / "bamkd_model.safetensors"))
    assert expected.keys() == got.keys()
    assert not any(k.startswith("encoder.encoder.layer.2.") for k in got)
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


def test_layer_errors_stop_a_run_before_it_creates_anything(demo_suite, four_layers, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--config", "tiny", *_overrides(demo_suite, out, four_layers)]
    assert main([*args, "model.keep_layers=[0,7]"]) == 2
    assert main([*args, "model.keep_layers=[1,1]"]) == 2
    assert not out.exists()


@pytest.fixture(scope="module")
def teacher_run(tiny_run) -> Path:
    return tiny_run  # bamkd-tiny: 2 layers, a word-level vocabulary


def test_student_with_another_tokenizer_learns_from_teacher_outputs_by_id(
    demo_suite, teacher_run, tmp_path_factory
):
    # A character-level tokenizer: other ids, other lengths, another vocabulary size.
    encoder = build_tiny_encoder(tmp_path_factory.mktemp("enc") / "chars", words=[], layers=3)
    teacher_tok = load_tokenizer(str(teacher_run / "model"))
    student_tok = load_tokenizer(str(encoder))
    assert teacher_tok.vocab_size != student_tok.vocab_size
    assert teacher_tok("the film")["input_ids"] != student_tok("the film")["input_ids"]

    out = tmp_path_factory.mktemp("student") / "run"
    teachers = ",".join(f"{t}: [{teacher_run}]" for t in TASKS)
    cfg = build_config(
        "tiny",
        _overrides(
            demo_suite,
            out,
            encoder,
            "model.keep_layers=[0,2]",
            f"distill.teachers={{{teachers}}}",
        ),
    )
    ctx = setup(cfg)
    try:
        # The targets are the teacher's own outputs, matched to the student's rows by example id.
        store = ctx.store
        assert store.teacher is not None
        start = 0
        for part in store.parts:
            teacher = read_teacher_predictions(teacher_run, part.task)
            assert teacher.manifest["tokenizer"] != tokenizer_fingerprint(student_tok)
            index = {id_: i for i, id_ in enumerate(teacher.ids)}
            rows = teacher.outputs[[index[i] for i in part.ids]]
            got = store.teacher[start : start + len(part)]
            if ctx.specs[part.task].kind == "classification":
                probs = torch.softmax(torch.from_numpy(rows), -1).numpy()
                np.testing.assert_allclose(got[:, : rows.shape[1]], probs, atol=1e-6)
            else:
                np.testing.assert_allclose(got[:, 0], rows[:, 0], atol=1e-6)
            start += len(part)
        fit(ctx)
    finally:
        ctx.lock.release()
    assert MultiTaskModel.from_pretrained(out).num_layers == 2


def test_a_teacher_with_other_labels_is_refused_before_the_student_starts(
    demo_suite, teacher_run, tmp_path
):
    # The same task file with its two labels in the other order: column 0 of the teacher's
    # logits would be taught as the other class.
    task_file = Path(demo_suite["demo_sentiment"])
    spec = yaml.safe_load(task_file.read_text())
    spec["label_names"] = list(reversed(spec["label_names"]))
    spec["files"] = {k: str(task_file.parent / v) for k, v in spec["files"].items()}
    flipped = tmp_path / "demo_sentiment.yaml"
    flipped.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="has labels"):
        train(
            build_config(
                "tiny",
                [
                    f"data.task_files=[{flipped}]",
                    "data.tasks=[demo_sentiment]",
                    f"distill.teachers={{demo_sentiment: [{teacher_run}]}}",
                    f"output_dir={out}",
                ],
            )
        )
    assert not out.exists()


def test_inference_speed_counts_the_dev_examples_of_the_smaller_model(small_run):
    speed = inference_speed(small_run, "demo_agreement", repeats=2)
    assert (speed.split, speed.examples, speed.layers, speed.repeats) == ("dev", 8, 2, 2)
    assert speed.device == "cpu" and speed.seconds > 0
    assert speed.examples_per_second == pytest.approx(8 / speed.seconds)
    assert inference_speed(small_run, "demo_rating", repeats=1, limit=3).examples == 3
    with pytest.raises(BamkdError, match="no head for task 'nope'"):
        inference_speed(small_run, "nope")
