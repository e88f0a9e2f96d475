"""GLUE submission writer: file format, label strings, STS-B scores, WNLI policy, report, zip."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bamkd.errors import ConfigError, DataError
from bamkd.outputs.submission import GLUE_SUBMISSION_NAMES, SubmissionReport, write_submission

MNLI_LABELS = ("contradiction", "entailment", "neutral")
NLI2_LABELS = ("entailment", "not_entailment")
BINARY = ("0", "1")


@dataclass(frozen=True)
class Spec:
    """The TaskSpec attributes the submission writer reads (a stand-in for bamkd.tasks)."""

    name: str
    kind: str
    label_names: tuple[str, ...]
    submission_names: Mapping[str, str]
    regression_range: tuple[float, float] = (0.0, 1.0)
    test_splits: tuple[str, ...] = ("test",)
    head_task: str | None = None
    metrics: tuple[str, ...] = field(default=("accuracy",))


def _classification(name: str, stem: str, labels: tuple[str, ...] = BINARY) -> Spec:
    return Spec(name, "classification", labels, {"test": stem})


SPECS: dict[str, Spec] = {
    "cola": _classification("cola", "CoLA"),
    "sst2": _classification("sst2", "SST-2"),
    "mrpc": _classification("mrpc", "MRPC"),
    "stsb": Spec("stsb", "regression", (), {"test": "STS-B"}, regression_range=(0.0, 5.0)),
    "qqp": _classification("qqp", "QQP"),
    "mnli": Spec(
        "mnli",
        "classification",
        MNLI_LABELS,
        {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"},
        test_splits=("test_matched", "test_mismatched"),
    ),
    "qnli": _classification("qnli", "QNLI", NLI2_LABELS),
    "rte": _classification("rte", "RTE", NLI2_LABELS),
    "wnli": _classification("wnli", "WNLI"),
    "ax": Spec("ax", "classification", MNLI_LABELS, {"test": "AX"}, head_task="mnli"),
}


def _ids(task: str, split: str, indices: list[int]) -> list[str]:
    return [f"{task}:{split}:{i}" for i in indices]


def _rows(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "file must end with a newline"
    return [line.split("\t") for line in lines[:-1]]


def _full_glue() -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, list[str]]]]:
    predictions: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, dict[str, list[str]]] = {}
    for task, spec in SPECS.items():
        predictions[task] = {}
        ids[task] = {}
        for split in spec.test_splits:
            if spec.kind == "regression":
                predictions[task][split] = np.array([1.0, 2.0, 3.0])
            else:
                predictions[task][split] = np.array([0, 1, 0])
            ids[task][split] = _ids(task, split, [0, 1, 2])
    return predictions, ids


def test_rows_are_index_sorted_label_strings(tmp_path: Path) -> None:
    # Ids arrive in loader order, not index order; the file is sorted by the GLUE index, and the
    # index is compared as a number (10 after 2).
    report = write_submission(
        {"rte": {"test": np.array([1, 0, 0])}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"rte": {"test": _ids("rte", "test", [10, 2, 0])}},
    )
    assert report.written == ["RTE.tsv"]
    assert _rows(tmp_path / "RTE.tsv") == [
        ["index", "prediction"],
        ["0", "entailment"],
        ["2", "entailment"],
        ["10", "not_entailment"],
    ]


def test_binary_tasks_write_zero_and_one(tmp_path: Path) -> None:
    write_submission(
        {"cola": {"test": np.array([1, 0])}, "qqp": {"test": np.array([0, 1])}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"cola": {"test": ["cola:test:0", "cola:test:1"]}, "qqp": {"test": ["0", "1"]}},
    )
    assert _rows(tmp_path / "CoLA.tsv")[1:] == [["0", "1"], ["1", "0"]]
    assert _rows(tmp_path / "QQP.tsv")[1:] == [["0", "0"], ["1", "1"]]


def test_stsb_scores_are_clipped_and_three_decimals(tmp_path: Path) -> None:
    scores = np.array([-0.2, 5.3, 2.34567, 4.0])
    write_submission(
        {"stsb": {"test": scores}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"stsb": {"test": _ids("stsb", "test", [0, 1, 2, 3])}},
    )
    assert [row[1] for row in _rows(tmp_path / "STS-B.tsv")[1:]] == [
        "0.000",
        "5.000",
        "2.346",
        "4.000",
    ]


def test_mnli_and_ax_file_names_and_labels(tmp_path: Path) -> None:
    predictions = {
        "mnli": {"test_matched": np.array([0, 1, 2]), "test_mismatched": np.array([2, 2])},
        "ax": {"test": np.array([1])},
    }
    ids = {
        "mnli": {
            "test_matched": _ids("mnli", "test_matched", [0, 1, 2]),
            "test_mismatched": _ids("mnli", "test_mismatched", [0, 1]),
        },
        "ax": {"test": _ids("ax", "test", [0])},
    }
    report = write_submission(predictions, SPECS, tmp_path, wnli_policy="skip", example_ids=ids)
    assert report.written == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]
    assert [r[1] for r in _rows(tmp_path / "MNLI-m.tsv")[1:]] == list(MNLI_LABELS)
    assert [r[1] for r in _rows(tmp_path / "MNLI-mm.tsv")[1:]] == ["neutral", "neutral"]
    assert _rows(tmp_path / "AX.tsv") == [["index", "prediction"], ["0", "entailment"]]


def test_missing_files_are_reported_not_invented(tmp_path: Path) -> None:
    report = write_submission(
        {"rte": {"test": np.array([0])}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"rte": {"test": ["rte:test:0"]}},
    )
    expected_missing = [f"{stem}.tsv" for stem in GLUE_SUBMISSION_NAMES if stem != "RTE"]
    assert report.missing == expected_missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RTE.tsv", "submission.zip"]
    summary = report.summary()
    assert "1 of 11" in summary
    assert "WNLI.tsv" in summary and "CoLA.tsv" in summary


def test_full_glue_set_has_nothing_missing(tmp_path: Path) -> None:
    predictions, ids = _full_glue()
    report = write_submission(predictions, SPECS, tmp_path, wnli_majority_label=1, example_ids=ids)
    assert report.missing == []
    assert report.written == [f"{stem}.tsv" for stem in GLUE_SUBMISSION_NAMES]
    assert "11 of 11" in report.summary()


def test_zip_holds_written_files_at_root(tmp_path: Path) -> None:
    predictions, ids = _full_glue()
    out = tmp_path / "nested" / "out"
    (tmp_path / "nested").mkdir()
    report = write_submission(predictions, SPECS, out, wnli_majority_label=0, example_ids=ids)
    assert report.archive == out / "submission.zip"
    with zipfile.ZipFile(report.archive) as bundle:
        assert bundle.testzip() is None
        assert sorted(bundle.namelist()) == sorted(report.written)
        for name in report.written:
            assert bundle.read(name).decode("utf-8") == (out / name).read_text(encoding="utf-8")
    # Atomic writes leave no temporary files behind.
    assert not list(out.glob("*.tmp"))


def test_zip_excludes_stale_tsv_from_earlier_runs(tmp_path: Path) -> None:
    (tmp_path / "CoLA.tsv").write_text("index\tprediction\n0\t1\n", encoding="utf-8")
    report = write_submission(
        {"rte": {"test": np.array([0])}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"rte": {"test": ["rte:test:0"]}},
    )
    with zipfile.ZipFile(report.archive) as bundle:
        assert bundle.namelist() == ["RTE.tsv"]
    assert "CoLA.tsv" in report.missing


def test_rewriting_replaces_previous_files(tmp_path: Path) -> None:
    ids = {"rte": {"test": ["rte:test:0"]}}
    write_submission(
        {"rte": {"test": np.array([0])}}, SPECS, tmp_path, wnli_policy="skip", example_ids=ids
    )
    write_submission(
        {"rte": {"test": np.array([1])}}, SPECS, tmp_path, wnli_policy="skip", example_ids=ids
    )
    assert _rows(tmp_path / "RTE.tsv")[1] == ["0", "not_entailment"]


# --- WNLI policy -----------------------------------------------------------------------------


def test_wnli_majority_ignores_model_predictions(tmp_path: Path) -> None:
    ids = {"wnli": {"test": _ids("wnli", "test", [2, 0, 1])}}
    report = write_submission(
        {"wnli": {"test": np.array([1, 1, 1])}},
        SPECS,
        tmp_path,
        wnli_majority_label=0,
        example_ids=ids,
    )
    assert report.written == ["WNLI.tsv"]
    assert _rows(tmp_path / "WNLI.tsv")[1:] == [["0", "0"], ["1", "0"], ["2", "0"]]
    assert any("majority" in note for note in report.notes)


def test_wnli_majority_needs_only_ids(tmp_path: Path) -> None:
    # The model never has to predict WNLI for the default policy.
    report = write_submission(
        {"rte": {"test": np.array([0])}},
        SPECS,
        tmp_path,
        wnli_majority_label=1,
        example_ids={"rte": {"test": ["rte:test:0"]}, "wnli": {"test": ["wnli:test:0"]}},
    )
    assert report.written == ["RTE.tsv", "WNLI.tsv"]
    assert _rows(tmp_path / "WNLI.tsv")[1:] == [["0", "1"]]


def test_wnli_majority_without_label_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wnli_majority_label"):
        write_submission(
            {"wnli": {"test": np.array([1])}},
            SPECS,
            tmp_path,
            example_ids={"wnli": {"test": ["wnli:test:0"]}},
        )


def test_wnli_model_policy_uses_predictions(tmp_path: Path) -> None:
    write_submission(
        {"wnli": {"test": np.array([1, 0])}},
        SPECS,
        tmp_path,
        wnli_policy="model",
        wnli_majority_label=0,
        example_ids={"wnli": {"test": ["wnli:test:0", "wnli:test:1"]}},
    )
    assert _rows(tmp_path / "WNLI.tsv")[1:] == [["0", "1"], ["1", "0"]]


def test_wnli_skip_reports_it_missing(tmp_path: Path) -> None:
    report = write_submission(
        {"wnli": {"test": np.array([1])}, "rte": {"test": np.array([0])}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"wnli": {"test": ["wnli:test:0"]}, "rte": {"test": ["rte:test:0"]}},
    )
    assert "WNLI.tsv" in report.missing
    assert not (tmp_path / "WNLI.tsv").exists()


# --- invalid input ---------------------------------------------------------------------------


def _write_rte(tmp_path: Path, preds: np.ndarray, ids: list[str]) -> SubmissionReport:
    return write_submission(
        {"rte": {"test": preds}},
        SPECS,
        tmp_path,
        wnli_policy="skip",
        example_ids={"rte": {"test": ids}},
    )


@pytest.mark.parametrize(
    ("preds", "ids", "match"),
    [
        (np.array([0, 1]), ["rte:test:0"], "2 predictions but 1"),
        (np.array([0, 2]), ["rte:test:0", "rte:test:1"], "outside"),
        (np.array([0, -1]), ["rte:test:0", "rte:test:1"], "outside"),
        (np.array([0.5, 1.0]), ["rte:test:0", "rte:test:1"], "class indices"),
        (np.zeros((2, 2)), ["rte:test:0", "rte:test:1"], "1-D"),
        (np.array([0, 1]), ["rte:test:0", "rte:test:x"], "integer GLUE index"),
        (np.array([0, 1]), ["rte:test:3", "rte:test:3"], "repeat"),
    ],
)
def test_bad_predictions_raise_and_write_nothing(
    tmp_path: Path, preds: np.ndarray, ids: list[str], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        _write_rte(tmp_path, preds, ids)
    assert not list(tmp_path.iterdir())


def test_non_finite_regression_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="NaN"):
        write_submission(
            {"stsb": {"test": np.array([1.0, np.nan])}},
            SPECS,
            tmp_path,
            wnli_policy="skip",
            example_ids={"stsb": {"test": ["stsb:test:0", "stsb:test:1"]}},
        )


def test_unknown_policy_split_and_task(tmp_path: Path) -> None:
    ids = {"rte": {"test": ["rte:test:0"], "dev": ["rte:dev:0"]}}
    with pytest.raises(ConfigError, match="wnli_policy"):
        write_submission({}, SPECS, tmp_path, wnli_policy="drop", example_ids={})
    with pytest.raises(DataError, match="no submission file"):
        write_submission(
            {"rte": {"dev": np.array([0])}}, SPECS, tmp_path, wnli_policy="skip", example_ids=ids
        )
    with pytest.raises(ConfigError, match="no task spec"):
        write_submission(
            {"boolq": {"test": np.array([0])}},
            SPECS,
            tmp_path,
            wnli_policy="skip",
            example_ids={"boolq": {"test": ["boolq:test:0"]}},
        )
    with pytest.raises(DataError, match="no example ids"):
        write_submission(
            {"rte": {"test": np.array([0])}}, SPECS, tmp_path, wnli_policy="skip", example_ids={}
        )


def test_nothing_to_write_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no predictions"):
        write_submission({}, SPECS, tmp_path, wnli_policy="skip", example_ids={})


def test_two_tasks_on_one_file_raise(tmp_path: Path) -> None:
    specs = {**SPECS, "rte2": _classification("rte2", "RTE", NLI2_LABELS)}
    with pytest.raises(ConfigError, match="same submission file"):
        write_submission(
            {"rte": {"test": np.array([0])}, "rte2": {"test": np.array([0])}},
            specs,
            tmp_path,
            wnli_policy="skip",
            example_ids={"rte": {"test": ["0"]}, "rte2": {"test": ["0"]}},
        )
