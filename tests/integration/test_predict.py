"""`bamkd predict` and the `Predictor` API: documented output on files and standard input,
every head on one encoder pass, and one-line errors for inputs a user can fix."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import bamkd
from bamkd.cli import main
from bamkd.errors import BamkdError
from bamkd.outputs.predict import Predictor, read_inputs

TASKS = ["demo_sentiment", "demo_agreement", "demo_rating"]
TEXTS = ["the film was good and the music was great", "a dull , boring story", "yes"]


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return bamkd.load(run_dir)


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _check_classification(rows: list[dict], labels: tuple[str, ...]) -> None:
    for row in rows:
        assert set(row) == {"id", "label", "score", "probabilities"}
        probs = row["probabilities"]
        assert list(probs) == list(labels)
        assert sum(probs.values()) == pytest.approx(1.0)
        assert row["label"] == max(probs, key=probs.get)  # the label is the argmax
        assert row["score"] == probs[row["label"]]


def test_predict_jsonl_file_gives_the_documented_jsonl(run_dir, predictor, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "sentence": t, "extra": 1} for i, t in enumerate(TEXTS)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["predict", str(run_dir), "--task", "demo_sentiment", "--input", str(source)])
    assert code == 0
    out = _jsonl(capsys.readouterr().out)
    assert [r["id"] for r in out] == ["r0", "r1", "r2"]  # ids passed through, input order kept
    _check_classification(out, ("negative", "positive"))
    api = predictor.predict("demo_sentiment", TEXTS)
    assert [{k: v for k, v in r.items() if k != "id"} for r in out] == api


def test_predict_standard_input_regression_and_tsv_output(
    run_dir, predictor, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{t}\n" for t in ["text", *TEXTS])))
    code = main(["predict", str(run_dir), "--task", "demo_rating", "--input", "-"])
    assert code == 0
    out = _jsonl(capsys.readouterr().out)
    assert [r["id"] for r in out] == [1, 2, 3]  # no id column: rows numbered from 1
    for row in out:
        assert set(row) == {"id", "label", "score"}
        assert 0.0 <= row["score"] <= 5.0  # the task's own scale, not [0, 1]
        assert float(row["label"]) == pytest.approx(row["score"], rel=1e-5)
    assert [r["score"] for r in out] == [
        p["score"] for p in predictor.predict("demo_rating", TEXTS)
    ]

    # Sentence pairs from CSV on standard input, written as TSV to a file.
    csv_text = 'id,sentence1,sentence2\na,the film was good,"a great film, really"\nb,bad,good\n'
    monkeypatch.setattr("sys.stdin", io.StringIO(csv_text))
    target = tmp_path / "out.tsv"
    argv = ["predict", str(run_dir), "--task", "demo_agreement", "--input", "-"]
    assert main([*argv, "--format", "csv", "--output", str(target)]) == 0
    lines = [line.split("\t") for line in target.read_text().splitlines()]
    assert lines[0] == ["id", "label", "score"] and [r[0] for r in lines[1:]] == ["a", "b"]
    api = predictor.predict(
        "demo_agreement", [("the film was good", "a great film, really"), ("bad", "good")]
    )
    assert [r[1] for r in lines[1:]] == [p["label"] for p in api]
    assert [float(r[2]) for r in lines[1:]] == pytest.approx([p["score"] for p in api], rel=1e-5)


def test_all_heads_runs_every_matching_head_on_one_pass(run_dir, predictor, tmp_path, capsys):
    source = tmp_path / "in.tsv"
    source.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS)))
    assert main(["predict", str(run_dir), "--all-heads", "--input", str(source)]) == 0
    out = _jsonl(capsys.readouterr().out)
    assert [r["id"] for r in out] == ["0", "1", "2"]
    # Single sentences: the two single-sentence heads, not the pair head.
    assert all(set(r["tasks"]) == {"demo_sentiment", "demo_rating"} for r in out)
    _check_classification(
        [{"id": r["id"], **r["tasks"]["demo_sentiment"]} for r in out], ("negative", "positive")
    )
    # One shared encoder pass gives what one head at a time gives.
    together = predictor.predict_all(TEXTS)
    alone = predictor.predict("demo_sentiment", TEXTS)
    assert [p["label"] for p in together["demo_sentiment"]] == [p["label"] for p in alone]
    assert [p["score"] for p in together["demo_sentiment"]] == pytest.approx(
        [p["score"] for p in alone], abs=1e-6
    )
    rating = [p["score"] for p in predictor.predict("demo_rating", TEXTS)]
    assert [p["score"] for p in together["demo_rating"]] == pytest.approx(rating, abs=1e-6)
    assert list(predictor.predict_all([("a", "b")])) == ["demo_agreement"]

    assert main(["predict", str(run_dir), "--all-heads", "--input", str(source),
                 "--output-format", "tsv"]) == 0  # fmt: skip
    header = capsys.readouterr().out.splitlines()[0].split("\t")
    expected = ["id", "demo_sentiment.label", "demo_sentiment.score"]
    assert header == [*expected, "demo_rating.label", "demo_rating.score"]


@pytest.mark.parametrize(
    ("argv", "stdin", "messages"),
    [
        (
            ["--task", "nope"],
            "sentence\ngood\n",
            ["no head for task 'nope'", "demo_sentiment, demo_agreement, demo_rating"],
        ),
        (
            ["--task", "demo_sentiment", "--format", "tsv"],
            "id\tbody\n1\tgood\n",
            [
                "standard input: no text columns for task 'demo_sentiment'",
                "found 'id', 'body'",
                "expected one of 'sentence', 'text', 'text_a'",
            ],
        ),
        (
            ["--task", "demo_agreement"],
            '{"sentence": "the film was good"}\n',
            ["task 'demo_agreement' takes sentence pairs", "'sentence1' and 'sentence2'"],
        ),
        (["--task", "demo_sentiment"], "", ["standard input: the input is empty"]),
        (["--task", "demo_sentiment", "--format", "tsv"], "sentence\n\n", ["no rows to predict"]),
        (
            ["--task", "demo_sentiment", "--format", "tsv"],
            "sentence\tid\ngood\n",
            ["standard input:2: expected 2 tab-separated columns"],
        ),
        (["--task", "demo_sentiment", "--all-heads"], "sentence\ngood\n", ["not both"]),
    ],
)
def test_input_errors_end_with_one_clear_line(run_dir, capsys, monkeypatch, argv, stdin, messages):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["predict", str(run_dir), "--input", "-", *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for message in messages:
        assert message in last


def test_missing_columns_name_the_file(tmp_path):
    path = tmp_path / "in.csv"
    with pytest.raises(BamkdError, match=rf"{path.name}: no text columns; found 'a', 'b'"):
        read_inputs("a,b\nx,y\n", source=str(path))


def test_api_checks_the_input_shape(predictor):
    with pytest.raises(BamkdError, match="takes sentence pairs"):
        predictor.predict("demo_agreement", ["only one sentence"])
    with pytest.raises(BamkdError, match="takes single sentences"):
        predictor.predict("demo_sentiment", [("a", "b")])
    with pytest.raises(BamkdError, match="the input is empty"):
        predictor.predict("demo_sentiment", [])
    with pytest.raises(BamkdError, match="its tasks are: demo_sentiment"):
        predictor.predict("nope", ["x"])
    # A bare string is one input, not a list of characters.
    assert len(predictor.predict("demo_sentiment", "good")) == 1
