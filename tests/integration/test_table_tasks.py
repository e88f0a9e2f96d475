"""User tasks from Parquet files and `save_to_disk` folders, built here (no network): the same
examples as the TSV files they were written from, training on them, fingerprints that catch a
changed table, ClassLabel names, `bamkd tasks` and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from bamkd.cli import main
from bamkd.errors import BamkdError, DataError
from bamkd.tasks import TaskSpec, load_task_yaml, read_split

datasets = pytest.importorskip("datasets", reason="the [datasets] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the [datasets] extra is not installed")

# The demo suite's three shapes: single-sentence classification, pair classification (symmetric),
# single-sentence regression.
SHAPES = ("demo_sentiment", "demo_agreement", "demo_rating")
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _features(spec: TaskSpec, class_names: list[str] | None):
    from datasets import ClassLabel, Features, Value

    label = ClassLabel(names=class_names) if class_names else Value("float32")
    columns = {str(c): Value("string") for c in spec.text_columns}
    return Features({"uid": Value("string"), **columns, "label": label})


def _rows(spec: TaskSpec, split: str, class_names: list[str] | None) -> dict[str, list]:
    """One split of a TSV task as table columns; test labels -1 as GLUE stores them."""
    examples = read_split(spec, split)
    columns = [str(c) for c in spec.text_columns]
    rows: dict[str, list] = {"uid": [ex.id.rsplit(":", 1)[1] for ex in examples]}
    rows[columns[0]] = [ex.text_a for ex in examples]
    if len(columns) == 2:
        rows[columns[1]] = [ex.text_b for ex in examples]
    if class_names:
        rows["label"] = [
            -1 if ex.label is None else class_names.index(spec.label_names[int(ex.label)])
            for ex in examples
        ]
    else:
        rows["label"] = [-1.0 if ex.label is None else float(ex.label) for ex in examples]
    return rows


def _dataset(spec: TaskSpec, split: str, class_names: list[str] | None):
    from datasets import Dataset

    rows = _rows(spec, split, class_names)
    return Dataset.from_dict(rows, features=_features(spec, class_names))


def _write_task_yaml(path: Path, spec: TaskSpec, name: str, **source) -> Path:
    doc = {
        "name": name,
        **source,
        "text_columns": [str(c) for c in spec.text_columns],
        "label_column": "label",
        "id_column": "uid",
        "metrics": list(spec.metrics),
        "symmetric": spec.symmetric,
    }
    if spec.kind == "regression":
        doc["regression_range"] = list(spec.regression_range)
    elif source["format"] == "parquet":
        doc["label_names"] = list(spec.label_names)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tables(demo_suite, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per demo task: its TSV task file, a Parquet task file and a save_to_disk task file.

    Parquet stores the class labels as ClassLabel ids in the reverse of the task's label order
    and its task files list label_names in the task's order: ids must map by name. The
    save_to_disk task files give no label_names: they come from the ClassLabel feature.
    """
    from datasets import DatasetDict

    root = tmp_path_factory.mktemp("tables")
    out: dict[str, dict[str, Path]] = {}
    for task in SHAPES:
        spec = load_task_yaml(demo_suite[task])
        names = list(spec.label_names) if spec.kind == "classification" else None
        reverse = names[::-1] if names else None

        parts = {HUB_SPLITS[s]: _dataset(spec, s, reverse) for s in spec.splits}
        pq_dir = root / "parquet" / task
        pq_dir.mkdir(parents=True)
        files = {}
        for split, hub in HUB_SPLITS.items():
            # train in two shards (a glob), the others one file each
            if split == "train":
                half = len(parts[hub]) // 2
                parts[hub].select(range(half)).to_parquet(str(pq_dir / "train-00000.parquet"))
                parts[hub].select(range(half, len(parts[hub]))).to_parquet(
                    str(pq_dir / "train-00001.parquet")
                )
                files[split] = f"{task}/train-*.parquet"
            else:
                parts[hub].to_parquet(str(pq_dir / f"{hub}.parquet"))
                files[split] = f"{task}/{hub}.parquet"
        disk = DatasetDict({HUB_SPLITS[s]: _dataset(spec, s, names) for s in spec.splits})
        disk.save_to_disk(str(root / "disk" / task))
        short = task.removeprefix("demo_")
        out[task] = {
            "tsv": Path(demo_suite[task]),
            "parquet": _write_task_yaml(
                root / "parquet" / f"{short}.yaml",
                spec,
                f"pq_{short}",
                format="parquet",
                files=files,
            ),
            "disk": _write_task_yaml(
                root / f"disk_{short}.yaml",
                spec,
                f"disk_{short}",
                format="disk",
                dataset=f"disk/{task}",
                splits=dict(HUB_SPLITS),
            ),
        }
    return out


def _content(spec: TaskSpec, split: str) -> list[tuple]:
    """Examples without the task name, which differs between the task files."""
    return [
        (ex.id.split(":", 1)[1], ex.text_a, ex.text_b, ex.label) for ex in read_split(spec, split)
    ]


@pytest.mark.parametrize("task", SHAPES)
@pytest.mark.parametrize("source", ["parquet", "disk"])
def test_tables_give_the_examples_and_ids_of_the_tsv_file(tables, task, source):
    tsv = load_task_yaml(tables[task]["tsv"])
    table = load_task_yaml(tables[task][source])
    assert table.format == source
    # Parquet: label_names as the task file lists them, ClassLabel ids reversed (mapped by
    # name); save_to_disk: label_names read from the ClassLabel feature.
    assert table.kind == tsv.kind
    assert table.label_names == tsv.label_names
    for split in tsv.splits:
        got, want = _content(table, split), _content(tsv, split)
        assert len(got) == len(want) > 0
        for (gid, ga, gb, glabel), (wid, wa, wb, wlabel) in zip(got, want):
            assert (gid, ga, gb) == (wid, wa, wb)
            if wlabel is None:
                assert glabel is None
            else:
                assert glabel == wlabel


def _train(files: list[Path], out: Path) -> dict[str, dict[str, float]]:
    names = [load_task_yaml(f).name for f in files]
    args = [
        "train",
        "--config",
        "tiny",
        f"data.task_files=[{','.join(str(f) for f in files)}]",
        f"data.tasks=[{','.join(names)}]",
        "data.train_limit=48",
        "data.eval_limit=24",
        "train.epochs=1",
        f"output_dir={out}",
    ]
    assert main(args) == 0
    assert json.loads((out / "trainer_state.json").read_text())["finished"] is True
    return json.loads((out / "dev_metrics.json").read_text())


def test_training_on_parquet_and_save_to_disk_tasks(tables, tmp_path, capsys):
    """The three shapes as one multi-task run from TSV files, from Parquet files and from
    save_to_disk folders: the same rows, ids and labels give the same trained model's metrics."""
    runs = {
        source: _train([tables[t][source] for t in SHAPES], tmp_path / source)
        for source in ("tsv", "parquet", "disk")
    }
    assert list(runs["parquet"]) == ["pq_sentiment", "pq_agreement", "pq_rating"]
    assert set(runs["disk"]["disk_rating"]) == {"pearson", "spearman"}
    assert set(runs["parquet"]["pq_agreement"]) == {"f1", "accuracy"}
    for source in ("parquet", "disk"):
        for (task, want), got in zip(runs["tsv"].items(), runs[source].values()):
            assert got == pytest.approx(want, abs=1e-9), (source, task)
    # The run manifest fingerprints every table: Parquet shards and save_to_disk split folders.
    for source, prefix in (("parquet", "pq"), ("disk", "disk")):
        data = json.loads((tmp_path / source / "run_manifest.json").read_text())["data"]
        for short in ("sentiment", "agreement", "rating"):
            for split in ("train", "dev"):
                entry = data[f"{prefix}_{short}/{split}"]
                assert len(entry["sha256"]) == 64 and entry["bytes"] > 0, (prefix, short, split)
        if source == "parquet":
            assert data["pq_sentiment/train"]["path"].endswith("demo_sentiment/train-*.parquet")
        else:
            assert data["disk_sentiment/dev"]["path"].endswith("disk/demo_sentiment/validation")
    capsys.readouterr()
    # `bamkd evaluate` reads the save_to_disk tables again and gets the same metrics.
    assert main(["evaluate", str(tmp_path / "disk"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for task, values in runs["disk"].items():
        assert again[task] == pytest.approx(values, abs=1e-6)


def _rewrite_first_text(parquet_file: Path) -> None:
    table = pq.read_table(parquet_file)
    columns = table.to_pydict()
    columns["sentence"][0] = columns["sentence"][0] + " indeed"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pydict(columns, schema=table.schema), parquet_file)


def test_a_changed_table_refuses_stale_teacher_outputs(tables, tmp_path, capsys):
    """Teacher outputs are keyed by example id and content: an edited Parquet row is caught."""
    import shutil

    task_dir = tmp_path / "task"
    shutil.copytree(tables["demo_sentiment"]["parquet"].parent, task_dir)
    task_file = task_dir / "sentiment.yaml"
    common = [
        f"data.task_files=[{task_file}]",
        "data.tasks=[pq_sentiment]",
        "data.train_limit=16",
        "data.eval_limit=8",
        "train.epochs=1",
    ]
    teacher = tmp_path / "teacher"
    assert main(["train", "--config", "tiny", *common, f"output_dir={teacher}"]) == 0
    assert main(["teach", str(teacher)]) == 0
    student = ["train", "--config", "tiny", *common, f"distill.teachers.pq_sentiment=[{teacher}]"]
    # Unchanged data: the teacher's outputs are accepted.
    assert main([*student, f"output_dir={tmp_path / 'ok'}"]) == 0
    capsys.readouterr()
    _rewrite_first_text(task_dir / "demo_sentiment" / "train-00000.parquet")
    assert main([*student, f"output_dir={tmp_path / 'stale'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since the teacher" in err[0], err


def test_a_changed_table_is_tokenized_again(tables, tmp_path):
    """The token cache is keyed by the tables' file hashes, so an edit is never served stale."""
    import shutil

    from bamkd.data import load_encoded
    from bamkd.model import load_tokenizer

    task_dir = tmp_path / "task"
    shutil.copytree(tables["demo_sentiment"]["parquet"].parent, task_dir)
    spec = load_task_yaml(task_dir / "sentiment.yaml")
    tok = load_tokenizer("bamkd-tiny")
    cache = tmp_path / "cache"
    before = load_encoded(spec, "train", tok, 32, data_dir=None, cache_dir=cache)
    again = load_encoded(spec, "train", tok, 32, data_dir=None, cache_dir=cache)
    assert len(list((cache / "tokens").iterdir())) == 1
    assert (again.input_ids == before.input_ids).all()
    _rewrite_first_text(task_dir / "demo_sentiment" / "train-00000.parquet")
    after = load_encoded(spec, "train", tok, 32, data_dir=None, cache_dir=cache)
    assert len(list((cache / "tokens").iterdir())) == 2
    assert after.content_hash[0] != before.content_hash[0]
    assert (after.content_hash[1:] == before.content_hash[1:]).all()


def _table_task(tmp_path: Path, rows: dict, names: list[str] | None, **keys) -> Path:
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features(
        {
            "text": Value("string"),
            "label": ClassLabel(names=names) if names else Value("int64"),
        }
    )
    Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    doc = {
        "name": "mine",
        "format": "parquet",
        "files": {"train": "train.parquet"},
        "text_columns": ["text"],
        "label_column": "label",
        **keys,
    }
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_classlabel_ids_map_by_name_to_the_task_labels(tmp_path):
    # The task lists the labels in another order than the ClassLabel feature.
    path = _table_task(
        tmp_path,
        {"text": ["a", "b", "c"], "label": [0, 1, 0]},
        ["neg", "pos"],
        label_names=["pos", "neg"],
    )
    examples = read_split(load_task_yaml(path), "train")
    assert [ex.label for ex in examples] == [1, 0, 1]
    assert [ex.id for ex in examples] == ["mine:train:1", "mine:train:2", "mine:train:3"]


def test_plain_integer_labels_match_label_names_as_text(tmp_path):
    path = _table_task(
        tmp_path, {"text": ["a", "b"], "label": [1, 0]}, None, label_names=["0", "1"]
    )
    assert [ex.label for ex in read_split(load_task_yaml(path), "train")] == [1, 0]


def test_label_minus_one_in_a_labelled_split_is_refused_with_its_row(tmp_path):
    path = _table_task(tmp_path, {"text": ["a", "b"], "label": [0, -1]}, ["neg", "pos"])
    with pytest.raises(DataError) as err:
        read_split(load_task_yaml(path), "train")
    assert str(err.value).startswith(f"{tmp_path / 'train.parquet'} (row 2): label -1")
    assert "no label" in str(err.value)


def test_a_missing_column_is_named_with_the_columns_there(tmp_path):
    path = _table_task(
        tmp_path, {"text": ["a"], "label": [0]}, ["neg", "pos"], text_columns=["sentence"]
    )
    with pytest.raises(DataError, match=r"has no column 'sentence'; its columns are 'text'"):
        read_split(load_task_yaml(path), "train")


def test_bad_cells_are_named_with_their_row(tmp_path):
    import pyarrow as pa

    def task(columns: dict) -> TaskSpec:
        pq.write_table(pa.table(columns), tmp_path / "train.parquet")
        path = tmp_path / "t.yaml"
        path.write_text(
            "name: t\nformat: parquet\nfiles: {train: train.parquet}\ntext_columns: [text]\n"
            "label_column: label\nid_column: key\nlabel_names: [a, b]\n"
        )
        return load_task_yaml(path)

    where = f"{tmp_path / 'train.parquet'} (row 2)"
    cases = [
        ({"text": ["x", "y"], "label": ["a", "c"], "key": [1, 2]}, "unknown label 'c'"),
        ({"text": ["x", ""], "label": ["a", "b"], "key": [1, 2]}, "empty text in column 'text'"),
        ({"text": ["x", "y"], "label": ["a", "b"], "key": [7, 7]}, "id '7' in column 'key'"),
        ({"text": ["x", "y"], "label": ["a", None], "key": [1, 2]}, "no label in column"),
        ({"text": [1, 2], "label": ["a", "b"], "key": [1, 2]}, None),
    ]
    for columns, message in cases:
        with pytest.raises(DataError) as err:
            read_split(task(columns), "train")
        if message is None:  # a number where text belongs: the first row already
            assert "(row 1): column 'text' must hold text, found int" in str(err.value)
        else:
            assert str(err.value).startswith(f"{where}: {message}"), str(err.value)


def test_a_single_dataset_folder_is_refused_with_the_fix(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"text": ["a"], "label": [0]}).save_to_disk(str(tmp_path / "one"))
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nformat: disk\ndataset: one\nsplits: {train: train}\ntext_columns: [text]\n"
        "label_column: label\nlabel_names: ['0', '1']\n"
    )
    with pytest.raises(DataError, match=r"holds one Dataset, not a DatasetDict.*DatasetDict\("):
        read_split(load_task_yaml(path), "train")


def test_a_hub_task_loads_its_splits_with_load_dataset(tables, tmp_path, monkeypatch):
    """The hub path without a network: `datasets` answered from the save_to_disk copy. The
    task file names only the id, configuration and split names; label_names come from the
    dataset builder's ClassLabel feature."""
    from types import SimpleNamespace

    from bamkd.data import split_fingerprint
    from bamkd.tasks import tables as table_module
    from bamkd.tasks.tables import table_location

    disk = tables["demo_agreement"]["disk"].parent / "disk" / "demo_agreement"
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        assert (path, name) == ("someone/agreement", "plain") and not kwargs
        return datasets.load_from_disk(str(disk / split))

    def load_dataset_builder(path, name=None, **kwargs):
        features = datasets.load_from_disk(str(disk / "train")).features
        return SimpleNamespace(info=SimpleNamespace(features=features))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    monkeypatch.setattr(table_module, "_HUB", {})
    path = tmp_path / "hub_agreement.yaml"
    path.write_text(
        "name: hub_agreement\nformat: hub\ndataset: someone/agreement\nconfig: plain\n"
        "splits: {train: train, dev: validation, test: test}\n"
        "text_columns: [sentence1, sentence2]\nlabel_column: label\nid_column: uid\n"
        "metrics: [f1, accuracy]\nsymmetric: true\n"
    )
    hub = load_task_yaml(path)
    tsv = load_task_yaml(tables["demo_agreement"]["tsv"])
    assert hub.label_names == tsv.label_names and hub.dataset_config == "plain"
    for split in tsv.splits:
        assert _content(hub, split) == _content(tsv, split)
    assert table_location(hub, "dev") == "hub:someone/agreement/plain:validation"
    fingerprint = split_fingerprint(hub, "train", None)
    assert (
        fingerprint
        == "hub:" + table_module._HUB[("someone/agreement", "plain", "train")]._fingerprint
    )
    # Each split is loaded once per process, however often it is read or fingerprinted.
    assert sorted(calls) == [
        ("someone/agreement", "plain", s) for s in ("test", "train", "validation")
    ]


def test_without_classlabel_the_task_must_give_label_names(tmp_path):
    path = _table_task(tmp_path, {"text": ["a"], "label": [0]}, None)
    with pytest.raises(BamkdError, match="a ClassLabel label column supplies label_names"):
        load_task_yaml(path)


def test_dataset_formats_take_splits_not_files(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nformat: disk\ndataset: ds\nfiles: {train: a}\ntext_columns: [text]\n"
        "label_column: label\nlabel_names: [a, b]\n"
    )
    with pytest.raises(BamkdError, match=r"key 'files': does not apply to format disk; use splits"):
        load_task_yaml(path)


def test_a_missing_split_of_a_save_to_disk_folder_lists_the_splits(tables, tmp_path):
    doc = yaml.safe_load(tables["demo_rating"]["disk"].read_text())
    doc["splits"]["dev"] = "valid"
    doc["dataset"] = str(tables["demo_rating"]["disk"].parent / doc["dataset"])
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        DataError, match=r"no split 'valid' \(splits: 'train', 'validation', 'test'\)"
    ):
        read_split(load_task_yaml(path), "dev")


def test_without_the_extra_one_line_says_what_to_install(tables, monkeypatch):
    spec = load_task_yaml(tables["demo_rating"]["parquet"])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if absent
    with pytest.raises(DataError) as err:
        read_split(spec, "train")
    assert str(err.value) == (
        "reading Parquet files needs pyarrow, which is not installed; run: "
        "pip install 'bamkd[datasets]'"
    )
    disk = load_task_yaml(tables["demo_rating"]["disk"])
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(
        DataError, match=r"needs the Hugging Face datasets package.*bamkd\[datasets\]"
    ):
        read_split(disk, "train")


def test_bamkd_tasks_lists_the_builtin_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "mrpc" in lines and "f1, accuracy" in lines["mrpc"] and lines["mrpc"].endswith("yes")
    assert "#1 String, #2 String | sentence1, sentence2" in lines["mrpc"]
    assert "regression" in lines["stsb"] and "score in [0, 5]" in lines["stsb"]
    assert "contradiction, entailment, neutral" in lines["mnli"]
    assert "premise, hypothesis" in lines["mnli"] and lines["qqp"].endswith("no")


def test_bamkd_tasks_check_reports_a_table_task(tables, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = Path(__import__("os").environ["BAMKD_CACHE"]) / "tokens"
    before = sorted(cache.iterdir()) if cache.is_dir() else []
    assert (
        main(["tasks", "check", str(tables["demo_agreement"]["parquet"]), "--examples", "2"]) == 0
    )
    out = capsys.readouterr().out
    spec = load_task_yaml(tables["demo_agreement"]["parquet"])
    assert "task pq_agreement (classification, sentence pair, symmetric)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for split in ("train", "dev", "test"):
        assert rows[split][1] == f"{len(read_split(spec, split)):,}"
    train = read_split(spec, "train")
    first = spec.label_names[0]
    count = sum(ex.label == 0 for ex in train)
    assert f"{first} {count} (" in out
    assert "none (test split)" in out and "[CLS]" in out and "pq_agreement:train:0" in out
    assert out.rstrip().endswith("ok: the task file and its data are valid.")
    # Nothing written: no token cache entry, nothing in the working folder.
    assert (sorted(cache.iterdir()) if cache.is_dir() else []) == before
    assert list(tmp_path.iterdir()) == []


def test_bamkd_tasks_check_counts_truncated_rows(tables, capsys):
    path = str(tables["demo_agreement"]["disk"])
    assert main(["tasks", "check", path, "--max-seq-length", "8", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert rows["train"].split()[1] == "5" and "5 (100.0%)" in rows["train"]
    assert "rows over 8 tokens are truncated" in out


def test_bamkd_tasks_check_bad_file_is_one_line_and_exit_2(tables, tmp_path, capsys):
    doc = yaml.safe_load(tables["demo_sentiment"]["parquet"].read_text())
    doc["files"]["dev"] = str(tmp_path / "missing-*.parquet")
    doc["files"]["train"] = str(tables["demo_sentiment"]["parquet"].parent / doc["files"]["train"])
    doc["files"]["test"] = str(tables["demo_sentiment"]["parquet"].parent / doc["files"]["test"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["tasks", "check", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'missing-*.parquet'}: ")
    assert "files.dev" in err[0] and str(path) in err[0]
    path.write_text("name: x\nformat: parquet\nfiles: {train: a.parquet}\n")
    assert main(["tasks", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: missing required key 'text_columns'."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
