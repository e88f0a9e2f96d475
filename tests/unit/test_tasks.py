"""Task specs and readers on the shipped fixtures: the GLUE table, lookups, ids, labels, user tasks.

The fixtures in tests/fixtures/glue use the exact column layouts of the real GLUE files (headers,
header-less CoLA, MRPC's BOM, MNLI's extra columns), so passing here means the readers handle
those layouts; tests/integration/test_real_glue.py checks the real files where they are staged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from bamkd.errors import BamkdError, ConfigError, DataError
from bamkd.tasks import (
    GLUE_TASKS,
    Example,
    TaskSpec,
    get_task,
    has_labels,
    load_task_yaml,
    read_split,
    split_path,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Assembled by conftest.py from tests/fixtures/glue and tests/fixtures/ax_rows.tsv.
GLUE_DIR = Path(os.environ["BAMKD_TEST_GLUE_FIXTURES"])
CUSTOM_DIR = FIXTURES / "custom"

ALL_GLUE_SPLITS = [(name, split) for name, spec in GLUE_TASKS.items() for split in spec.splits]


# ----- the GLUE table -----------------------------------------------------------------------


def test_glue_table_has_the_ten_tasks_in_glue_order() -> None:
    assert list(GLUE_TASKS) == [
        "cola",
        "sst2",
        "mrpc",
        "stsb",
        "qqp",
        "mnli",
        "qnli",
        "rte",
        "wnli",
        "ax",
    ]
    for name, spec in GLUE_TASKS.items():
        assert spec.name == name
        assert spec.format == "glue"


@pytest.mark.parametrize(
    ("name", "labels", "metrics", "display"),
    [
        ("cola", ("0", "1"), ("mcc",), "CoLA"),
        ("sst2", ("0", "1"), ("accuracy",), "SST-2"),
        ("mrpc", ("0", "1"), ("f1", "accuracy"), "MRPC"),
        ("stsb", (), ("pearson", "spearman"), "STS-B"),
        ("qqp", ("0", "1"), ("f1", "accuracy"), "QQP"),
        ("mnli", ("contradiction", "entailment", "neutral"), ("accuracy",), "MNLI"),
        ("qnli", ("entailment", "not_entailment"), ("accuracy",), "QNLI"),
        ("rte", ("entailment", "not_entailment"), ("accuracy",), "RTE"),
        ("wnli", ("0", "1"), ("accuracy",), "WNLI"),
        ("ax", ("contradiction", "entailment", "neutral"), ("accuracy",), "AX"),
    ],
)
def test_glue_labels_metrics_and_names(
    name: str, labels: tuple[str, ...], metrics: tuple[str, ...], display: str
) -> None:
    spec = GLUE_TASKS[name]
    assert spec.label_names == labels
    assert spec.metrics == metrics
    assert spec.display_name == display
    assert spec.kind == ("regression" if name == "stsb" else "classification")
    assert spec.num_outputs == (1 if name == "stsb" else len(labels))


def test_glue_pair_and_symmetry_flags() -> None:
    pairs = {n for n, s in GLUE_TASKS.items() if s.is_pair}
    assert pairs == {"mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"}
    # BAM_SPEC.md: sentence-order doubling for MRPC and STS-B, not QQP.
    assert {n for n, s in GLUE_TASKS.items() if s.symmetric} == {"mrpc", "stsb"}


def test_glue_splits_and_submission_names() -> None:
    assert dict(GLUE_TASKS["mrpc"].splits) == {
        "train": "MRPC/train.tsv",
        "dev": "MRPC/dev.tsv",
        "test": "MRPC/test.tsv",
    }
    mnli = GLUE_TASKS["mnli"]
    assert list(mnli.splits) == [
        "train",
        "dev_matched",
        "dev_mismatched",
        "test_matched",
        "test_mismatched",
    ]
    assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
    assert mnli.test_splits == ("test_matched", "test_mismatched")
    assert dict(mnli.submission_names) == {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}
    stems = {n: s.submission_names.get("test") for n, s in GLUE_TASKS.items() if n != "mnli"}
    assert stems == {
        "cola": "CoLA",
        "sst2": "SST-2",
        "mrpc": "MRPC",
        "stsb": "STS-B",
        "qqp": "QQP",
        "qnli": "QNLI",
        "rte": "RTE",
        "wnli": "WNLI",
        "ax": "AX",
    }


def test_ax_is_test_only_and_uses_the_mnli_head() -> None:
    ax = GLUE_TASKS["ax"]
    assert dict(ax.splits) == {"test": "diagnostic/diagnostic.tsv"}
    assert ax.eval_splits == ()
    assert ax.test_splits == ("test",)
    assert ax.head_task == "mnli"
    assert ax.label_names == GLUE_TASKS["mnli"].label_names
    assert not has_labels(ax, "test")
    assert all(s.head_task is None for n, s in GLUE_TASKS.items() if n != "ax")


def test_stsb_scaling_is_score_over_five_and_inverts() -> None:
    stsb = GLUE_TASKS["stsb"]
    assert stsb.regression_range == (0.0, 5.0)
    assert stsb.scale_label(3.8) == pytest.approx(0.76)
    assert stsb.unscale(0.76) == pytest.approx(3.8)
    with pytest.raises(ValueError, match="classification task; it has no scale"):
        GLUE_TASKS["cola"].scale_label(1.0)


def test_specs_are_hashable_and_frozen() -> None:
    assert len(set(GLUE_TASKS.values())) == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        GLUE_TASKS["cola"].name = "x"  # type: ignore[misc]


# ----- get_task -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("sst2", "sst2"),
        ("SST_2", "sst2"),
        ("STS-B", "stsb"),
        ("sts-b", "stsb"),
        ("stsb", "stsb"),
        ("MNLI", "mnli"),
        ("CoLA", "cola"),
        ("cola", "cola"),
        (" QQP ", "qqp"),
        ("AX", "ax"),
        ("diagnostic", "ax"),
        ("WNLI", "wnli"),
    ],
)
def test_get_task_accepts_glue_spellings(alias: str, name: str) -> None:
    assert get_task(alias) is GLUE_TASKS[name]


def test_get_task_unknown_name_lists_known_tasks() -> None:
    with pytest.raises(ConfigError) as err:
        get_task("sst3")
    assert str(err.value) == (
        "unknown task 'sst3'. Known tasks: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, "
        "ax. GLUE names may be spelled as in the GLUE download, in any case ('SST-2', 'sts-b'); "
        "define other tasks in a task YAML file."
    )
    assert isinstance(err.value, BamkdError) and isinstance(err.value, ValueError)


def test_get_task_finds_user_tasks_and_lists_them_when_unknown() -> None:
    rating = load_task_yaml(CUSTOM_DIR / "rating.yaml")
    assert get_task("Rating", user_tasks={"rating": rating}) is rating
    with pytest.raises(ConfigError) as err:
        get_task("ratings", user_tasks={"rating": rating})
    assert "; user tasks: rating. " in str(err.value)


def test_get_task_rejects_user_task_named_like_glue() -> None:
    fake = dataclasses.replace(GLUE_TASKS["rte"], name="sst_2")
    with pytest.raises(ConfigError) as err:
        get_task("rte", user_tasks={"sst_2": fake})
    assert str(err.value) == (
        "user task 'sst_2' has the name of GLUE task 'sst2'; rename it in its task YAML."
    )


# ----- reading every fixture split ----------------------------------------------------------


@pytest.mark.parametrize(("name", "split"), ALL_GLUE_SPLITS)
def test_every_glue_fixture_split_reads(name: str, split: str) -> None:
    spec = GLUE_TASKS[name]
    examples = read_split(spec, split, GLUE_DIR)
    labelled = has_labels(spec, split)
    assert labelled == (split not in spec.test_splits)
    assert 6 <= len(examples) <= 24
    ids = [e.id for e in examples]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"{name}:{split}:") for i in ids)
    for e in examples:
        assert isinstance(e, Example)
        assert e.text_a.strip()
        assert (e.text_b is not None) == spec.is_pair
        if not labelled:
            assert e.label is None
        elif spec.kind == "classification":
            assert isinstance(e.label, int) and 0 <= e.label < spec.num_outputs
        else:
            assert isinstance(e.label, float) and 0.0 <= e.label <= 5.0
    if labelled and spec.kind == "classification":
        counts = Counter(e.label for e in examples)
        assert all(counts[i] >= 2 for i in range(spec.num_outputs)), counts


def test_ids_are_stable_across_reads() -> None:
    for name, split in ALL_GLUE_SPLITS:
        spec = GLUE_TASKS[name]
        assert read_split(spec, split, GLUE_DIR) == read_split(spec, split, str(GLUE_DIR))


@pytest.mark.parametrize(
    ("name", "split", "first_ids"),
    [
        # No id column: 1-based data row numbers (header excluded).
        ("cola", "train", ["cola:train:1", "cola:train:2", "cola:train:3"]),
        ("sst2", "dev", ["sst2:dev:1", "sst2:dev:2", "sst2:dev:3"]),
        ("mrpc", "train", ["mrpc:train:1", "mrpc:train:2", "mrpc:train:3"]),
        # The file's own index / id column.
        ("cola", "test", ["cola:test:0", "cola:test:1", "cola:test:2"]),
        ("mrpc", "test", ["mrpc:test:0", "mrpc:test:1", "mrpc:test:2"]),
        ("qqp", "train", ["qqp:train:133273", "qqp:train:402555", "qqp:train:360472"]),
        ("mnli", "dev_mismatched", [f"mnli:dev_mismatched:{i}" for i in range(3)]),
        ("ax", "test", ["ax:test:0", "ax:test:1", "ax:test:2"]),
    ],
)
def test_id_keys(name: str, split: str, first_ids: list[str]) -> None:
    examples = read_split(GLUE_TASKS[name], split, GLUE_DIR)
    assert [e.id for e in examples[:3]] == first_ids


@pytest.mark.parametrize(
    ("name", "split", "row", "label"),
    [
        ("cola", "train", 0, 1),
        ("cola", "train", 1, 0),
        ("sst2", "train", 1, 0),
        ("mrpc", "train", 0, 1),
        ("mrpc", "train", 1, 0),
        ("qqp", "dev", 1, 1),
        ("mnli", "train", 0, 2),  # neutral
        ("mnli", "train", 1, 1),  # entailment
        ("mnli", "train", 5, 0),  # contradiction
        ("mnli", "dev_matched", 1, 0),
        ("qnli", "dev", 0, 0),  # entailment
        ("qnli", "dev", 1, 1),  # not_entailment
        ("rte", "train", 0, 1),
        ("rte", "train", 1, 0),
        ("wnli", "dev", 0, 0),
        ("stsb", "train", 1, 3.8),
        ("stsb", "dev", 1, 4.75),
    ],
)
def test_labels_map_to_class_indices_or_raw_scores(
    name: str, split: str, row: int, label: float
) -> None:
    assert read_split(GLUE_TASKS[name], split, GLUE_DIR)[row].label == label


def test_texts_are_read_verbatim_from_their_columns() -> None:
    mrpc = read_split(GLUE_TASKS["mrpc"], "train", GLUE_DIR)[0]
    assert mrpc.text_a.startswith('The mayor said the bridge would reopen in March , "')
    assert mrpc.text_b == "The bridge will reopen in March if the weather allows , the mayor said ."
    sst = read_split(GLUE_TASKS["sst2"], "train", GLUE_DIR)[0]
    assert sst.text_a == "a bright , clever and tender little film . "  # trailing space kept
    mnli = read_split(GLUE_TASKS["mnli"], "dev_matched", GLUE_DIR)[0]
    assert mnli.text_a == "The new parking rules seem fair enough"
    assert mnli.text_b == "Everyone in town supports the new parking rules"


def test_mnli_reads_both_dev_and_both_test_splits() -> None:
    mnli = GLUE_TASKS["mnli"]
    matched = read_split(mnli, "dev_matched", GLUE_DIR)
    mismatched = read_split(mnli, "dev_mismatched", GLUE_DIR)
    assert len(matched) == len(mismatched) == 9
    assert {e.id for e in matched}.isdisjoint(e.id for e in mismatched)
    assert matched[0].text_a != mismatched[0].text_a
    for split in mnli.test_splits:
        assert all(e.label is None for e in read_split(mnli, split, GLUE_DIR))


def test_ax_has_no_labels_and_no_train_split() -> None:
    ax = GLUE_TASKS["ax"]
    examples = read_split(ax, "test", GLUE_DIR)
    assert len(examples) == 8 and all(e.label is None for e in examples)
    with pytest.raises(ConfigError) as err:
        read_split(ax, "train", GLUE_DIR)
    assert str(err.value) == "task 'ax' has no split 'train'; its splits are: test."


def test_limit_keeps_the_first_rows() -> None:
    spec = GLUE_TASKS["rte"]
    full = read_split(spec, "train", GLUE_DIR)
    assert read_split(spec, "train", GLUE_DIR, limit=5) == full[:5]
    assert read_split(spec, "train", GLUE_DIR, limit=1000) == full
    with pytest.raises(ConfigError) as err:
        read_split(spec, "train", GLUE_DIR, limit=0)
    assert str(err.value) == "limit must be a positive number of examples or None, got 0."


def test_split_path_follows_the_glue_layout() -> None:
    assert split_path(GLUE_TASKS["mnli"], "dev_matched", GLUE_DIR) == (
        GLUE_DIR / "MNLI" / "dev_matched.tsv"
    )
    assert split_path(GLUE_TASKS["ax"], "test", GLUE_DIR) == GLUE_DIR / "diagnostic/diagnostic.tsv"


def test_glue_task_without_data_dir() -> None:
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["mrpc"], "train")
    assert str(err.value) == (
        "task MRPC is a GLUE task and needs a data folder: expected <data_dir>/MRPC/train.tsv, "
        "the standard GLUE download layout. Pass data_dir (data.glue_dir in a run config)."
    )


# ----- user tasks from YAML -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_user_pair_classification_task(fmt: str) -> None:
    spec = load_task_yaml(CUSTOM_DIR / f"paraphrase_{fmt}.yaml")
    assert spec.name == f"paraphrase_{fmt}"
    assert spec.format == fmt
    assert spec.kind == "classification" and spec.label_names == ("different", "same")
    assert spec.metrics == ("f1", "accuracy")
    assert spec.is_pair and spec.symmetric
    assert spec.eval_splits == ("dev",) and spec.test_splits == ("test",)
    assert spec.source == str((CUSTOM_DIR / f"paraphrase_{fmt}.yaml").resolve())
    for split, path in spec.splits.items():
        assert Path(path).is_absolute()
        assert path == str((CUSTOM_DIR / "paraphrase" / f"{split}.{fmt}").resolve())
    train = read_split(spec, "train")
    assert len(train) == 12
    assert train[2] == Example(
        id=f"paraphrase_{fmt}:train:p03",
        text_a="Where can I buy fresh bread, early in the morning?",
        text_b="Which bakeries open early?",
        label=1,
    )
    assert train[3].text_a == 'What does "al dente" mean?'
    assert Counter(e.label for e in train) == {0: 6, 1: 6}
    test = read_split(spec, "test")
    assert [e.id for e in test][:2] == [f"paraphrase_{fmt}:test:t01", f"paraphrase_{fmt}:test:t02"]
    assert all(e.label is None for e in test)


def test_user_task_formats_agree() -> None:
    def content(fmt: str, split: str) -> list[tuple[object, ...]]:
        spec = load_task_yaml(CUSTOM_DIR / f"paraphrase_{fmt}.yaml")
        return [
            (e.id.split(":", 2)[2], e.text_a, e.text_b, e.label) for e in read_split(spec, split)
        ]

    for split in ("train", "dev", "test"):
        assert content("csv", split) == content("tsv", split) == content("jsonl", split)


def test_user_regression_single_sentence_task() -> None:
    spec = load_task_yaml(CUSTOM_DIR / "rating.yaml")
    assert spec.kind == "regression" and spec.num_outputs == 1
    assert spec.regression_range == (1.0, 10.0)
    assert spec.metrics == ("pearson", "spearman")  # the regression default
    assert not spec.is_pair and not spec.symmetric
    train = read_split(spec, "train")
    assert [e.label for e in train[:3]] == [9.5, 6.0, 2.0]  # raw, unscaled
    assert [e.id for e in train[:2]] == ["rating:train:1", "rating:train:2"]  # row numbers
    assert all(e.text_b is None for e in train)
    assert spec.scale_label(9.5) == pytest.approx(8.5 / 9)
    assert spec.unscale(spec.scale_label(2.0)) == pytest.approx(2.0)
    assert all(e.label is None for e in read_split(spec, "test"))


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE_YAML = """\
name: mine
format: csv
files: {train: train.csv}
text_columns: [text]
label_column: label
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE_YAML + "labels: [a, b]\n",
            "{path}: unknown key 'labels'. Did you mean 'label_names'? Allowed keys: name, "
            "format, files, text_columns, label_column, id_column, header, label_names, "
            "regression_range, metrics, symmetric, display_name, dataset, config, splits.",
        ),
        ("name: mine\nformat: csv\n", "{path}: missing required key 'files'."),
        (
            BASE_YAML,
            "{path}: give exactly one of 'label_names' (a classification task) or "
            "'regression_range' (a regression task).",
        ),
        (
            BASE_YAML + "label_names: [a, b]\nregression_range: [0, 1]\n",
            "{path}: give exactly one of 'label_names' (a classification task) or "
            "'regression_range' (a regression task).",
        ),
        (
            BASE_YAML + "label_names: [no, yes]\n",
            "{path}: key 'label_names': a label was read as the YAML boolean false; quote labels "
            'such as yes, no, on, off, true, false, e.g. ["no", "yes"].',
        ),
        (
            BASE_YAML.replace("mine", "SST-2") + "label_names: [a, b]\n",
            "{path}: key 'name': 'SST-2' is not allowed; use lower-case letters, digits and "
            "underscores, starting with a letter (e.g. 'my_task').",
        ),
        (
            BASE_YAML.replace("mine", "sts_b") + "label_names: [a, b]\n",
            "{path}: key 'name': 'sts_b' is a GLUE task name; choose another name.",
        ),
        (
            BASE_YAML.replace("csv", "xlsx") + "label_names: [a, b]\n",
            "{path}: key 'format': must be one of csv, tsv, jsonl, parquet, disk, hub, got 'xlsx'.",
        ),
        (
            BASE_YAML + "label_names: [a, b]\nheader: false\n",
            "{path}: key 'text_columns': with header: false, columns are 0-based numbers, "
            "got 'text'.",
        ),
        (
            BASE_YAML.replace("csv", "jsonl") + "label_names: [a, b]\nheader: true\n",
            "{path}: key 'header': only applies to csv and tsv files; remove it for jsonl.",
        ),
        (
            BASE_YAML + "regression_range: [0, 5]\nmetrics: [accuracy]\n",
            "{path}: key 'metrics': 'accuracy' does not apply to a regression task; choose "
            "from pearson, spearman.",
        ),
        (
            BASE_YAML + "label_names: [a, b]\nsymmetric: true\n",
            "{path}: key 'symmetric': only applies to sentence-pair tasks (two text_columns).",
        ),
        (
            BASE_YAML.replace("[text]", "[a, b, c]") + "label_names: [a, b]\n",
            "{path}: key 'text_columns': must list one column (single sentence) or two "
            "(sentence pair), got ['a', 'b', 'c'].",
        ),
        (
            BASE_YAML + "label_names: [a, a]\n",
            "{path}: task 'mine': label_names has duplicates: ['a', 'a'].",
        ),
        (
            BASE_YAML + "regression_range: [5, 0]\n",
            "{path}: task 'mine': regression_range must be two finite numbers with lo < hi, "
            "got [5.0, 0.0].",
        ),
        (
            "name: mine\nfiles: {train: a\nformat: csv\n",
            "{path}:3: not valid YAML (expected ',' or '}}', but got ':').",
        ),
        (
            "- a\n- b\n",
            "{path}: a task file must be a YAML mapping with keys such as name, format, files.",
        ),
    ],
)
def test_task_yaml_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_task_yaml(path)
    assert str(err.value) == message.format(path=path)


def test_task_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_task_yaml(tmp_path / "nope.yaml")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}: task file not found."


def test_task_yaml_accepts_numeric_labels_and_headerless_columns(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "name: nums\nformat: tsv\nheader: false\nfiles: {train: t.tsv, test: u.tsv}\n"
        "text_columns: [1]\nlabel_column: 0\nlabel_names: [0, 1]\n",
    )
    (tmp_path / "t.tsv").write_text("1\tgood\n0\tbad\n", encoding="utf-8")
    (tmp_path / "u.tsv").write_text("\tunknown\n", encoding="utf-8")
    spec = load_task_yaml(path)
    assert spec.label_names == ("0", "1")
    assert spec.eval_splits == ()  # no dev split: nothing to evaluate
    assert [(e.text_a, e.label) for e in read_split(spec, "train")] == [("good", 1), ("bad", 0)]
    assert read_split(spec, "test")[0] == Example("nums:test:1", "unknown", None, None)


# ----- to_dict / from_dict ------------------------------------------------------------------


def _all_specs() -> list[TaskSpec]:
    yamls = ["paraphrase_csv", "paraphrase_tsv", "paraphrase_jsonl", "rating"]
    return [*GLUE_TASKS.values(), *(load_task_yaml(CUSTOM_DIR / f"{y}.yaml") for y in yamls)]


@pytest.mark.parametrize("spec", _all_specs(), ids=lambda s: s.name)
def test_to_dict_from_dict_round_trip_through_json(spec: TaskSpec) -> None:
    d = spec.to_dict()
    again = TaskSpec.from_dict(json.loads(json.dumps(d)))
    assert again == spec
    assert again.to_dict() == d
    assert isinstance(again.label_names, tuple) and isinstance(again.text_columns, tuple)


def test_from_dict_rejects_unknown_keys() -> None:
    d = GLUE_TASKS["rte"].to_dict() | {"temperature": 2.0}
    with pytest.raises(ConfigError, match=r"unknown keys \['temperature'\]"):
        TaskSpec.from_dict(d)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "r", "kind": "regression"},
            "task 'r': metric 'accuracy' does not apply to a regression task; choose from "
            "['pearson', 'spearman'].",
        ),
        (
            {"name": "c", "kind": "classification", "label_names": ("only",)},
            "task 'c': label_names must list at least two labels, got ['only'].",
        ),
        (
            {"name": "c", "kind": "classify", "label_names": ("a", "b")},
            "task 'c': kind must be 'classification' or 'regression', got 'classify'.",
        ),
        (
            {
                "name": "c",
                "kind": "classification",
                "label_names": ("a", "b"),
                "splits": {"train": "t.tsv"},
            },
            "task 'c': eval_splits names ['dev'], which are not in splits ['train'].",
        ),
        (
            {
                "name": "c",
                "kind": "classification",
                "label_names": ("a", "b"),
                "format": "jsonl",
                "text_columns": ("t",),
                "header": False,
            },
            "task 'c': header=False only applies to csv and tsv files.",
        ),
        (
            {
                "name": "c",
                "kind": "classification",
                "label_names": ("a", "b"),
                "format": "tsv",
                "text_columns": ("t",),
                "header": False,
            },
            "task 'c': with header=False, columns are 0-based numbers, got 't'.",
        ),
        (
            {
                "name": "c",
                "kind": "classification",
                "label_names": ("a", "b"),
                "format": "csv",
                "text_columns": ("t",),
                "is_pair": True,
            },
            "task 'c': is_pair=True but text_columns has 1 column(s).",
        ),
        (
            {
                "name": "c",
                "kind": "classification",
                "label_names": ("a", "b"),
                "format": "csv",
                "text_columns": ("t",),
                "splits": {"train": "/x.csv"},
                "eval_splits": (),
                "test_splits": (),
            },
            "task 'c': label_column is required because splits ['train'] carry labels.",
        ),
        (
            {"name": "Bad Name", "kind": "classification", "label_names": ("a", "b")},
            "task name 'Bad Name' is not allowed: use lower-case letters, digits and "
            "underscores, starting with a letter (e.g. 'my_task').",
        ),
    ],
)
def test_taskspec_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TaskSpec(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_a_minimal_spec_needs_only_name_kind_and_labels() -> None:
    spec = TaskSpec(name="toy", kind="classification", label_names=("a", "b", "c"))
    assert spec.num_outputs == 3 and spec.splits == {} and spec.display_name == ""
    reg = TaskSpec(name="toy_reg", kind="regression", metrics=("pearson",))
    assert reg.num_outputs == 1 and reg.scale_label(2.5) == 0.5


def test_hand_built_user_spec_with_relative_paths_reads_from_data_dir(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"t": "hello", "y": "b"}\n', encoding="utf-8")
    spec = TaskSpec(
        name="hand",
        kind="classification",
        label_names=("a", "b"),
        splits={"train": "train.jsonl"},
        eval_splits=(),
        test_splits=(),
        format="jsonl",
        text_columns=("t",),
        label_column="y",
    )
    assert split_path(spec, "train", tmp_path) == tmp_path / "train.jsonl"
    assert read_split(spec, "train", tmp_path) == [Example("hand:train:1", "hello", None, 1)]
