"""GLUE from the hub's layout (data.glue_source=parquet, and =hub with the hub faked from local
files: no network) gives the examples, ids, labels and trained dev metrics of the TSV folder.

The hub copy is written here from the TSV files, as the hub's nyu-mll/glue repository stores it:
<root>/<config>/<split>-00000-of-00001.parquet, text columns named as there, `label` as ClassLabel
ids in the hub's label order (-1 in test splits), `idx` counting rows from 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bamkd.cli import main
from bamkd.tasks import GLUE_TASKS, TaskSpec, glue_task, read_split

datasets = pytest.importorskip("datasets", reason="the [datasets] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the [datasets] extra is not installed")

SHARED_GLUE = Path(__file__).resolve().parents[3] / "shared" / "glue"

# The hub's ClassLabel names per configuration (None: a float32 score), written out here rather
# than taken from bamkd, so a wrong mapping in bamkd cannot hide behind the same table.
HUB_LABELS: dict[str, list[str] | None] = {
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "stsb": None,
    "mnli": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
    "ax": ["entailment", "neutral", "contradiction"],
}
HUB_TEXTS = {
    "cola": ["sentence"],
    "sst2": ["sentence"],
    "mrpc": ["sentence1", "sentence2"],
    "stsb": ["sentence1", "sentence2"],
    "qqp": ["question1", "question2"],
    "mnli": ["premise", "hypothesis"],
    "qnli": ["question", "sentence"],
    "rte": ["sentence1", "sentence2"],
    "wnli": ["sentence1", "sentence2"],
    "ax": ["premise", "hypothesis"],
}
HUB_SPLITS = {
    "train": "train",
    "dev": "validation",
    "test": "test",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
    "test_matched": "test_matched",
    "test_mismatched": "test_mismatched",
}
# TSV train/dev files bamkd keys by 1-based row number (no id column); the hub's idx is 0-based.
NUMBERED = {"cola", "sst2", "mrpc"}


def _hub_file(root: Path, name: str, split: str) -> Path:
    return root / name / f"{HUB_SPLITS[split]}-00000-of-00001.parquet"


def write_hub_copy(glue_dir: Path, root: Path, names: list[str], limit: int | None = None) -> None:
    """The hub's Parquet layout of `names` from the TSV files in `glue_dir` (first `limit` rows)."""
    from datasets import ClassLabel, Dataset, Features, Value

    for name in names:
        spec = GLUE_TASKS[name]
        hub_names = HUB_LABELS[name]
        for split in spec.splits:
            examples = read_split(spec, split, glue_dir, limit=limit)
            labelled = split not in spec.test_splits
            texts = HUB_TEXTS[name]
            rows: dict[str, list] = {texts[0]: [ex.text_a for ex in examples]}
            if len(texts) == 2:
                rows[texts[1]] = [ex.text_b for ex in examples]
            if hub_names is None:
                rows["label"] = [float(ex.label) if labelled else -1.0 for ex in examples]
            else:
                labels = []
                for ex in examples:
                    if not labelled:
                        labels.append(-1)
                        continue
                    label = spec.label_names[int(ex.label)]
                    labels.append(hub_names.index(label) if label in hub_names else int(label))
                rows["label"] = labels
            keys = [ex.id.rsplit(":", 1)[1] for ex in examples]
            if name in NUMBERED and labelled:
                rows["idx"] = [int(k) - 1 for k in keys]
            elif name == "qqp" and labelled:
                rows["idx"] = list(range(len(examples)))  # the hub numbers rows; no pair ids
            else:
                rows["idx"] = [int(k) for k in keys]
            label_feature = Value("float32") if hub_names is None else ClassLabel(names=hub_names)
            features = Features(
                {
                    **{t: Value("string") for t in texts},
                    "label": label_feature,
                    "idx": Value("int32"),
                }
            )
            path = _hub_file(root, name, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_dict(rows, features=features).to_parquet(str(path))


@pytest.fixture
def fake_hub(monkeypatch):
    """`datasets.load_dataset` answered from a local hub copy, as the hub would answer it."""
    from datasets import Dataset

    calls: list[tuple[str, str, str]] = []
    state: dict[str, Path] = {}

    def load_dataset(path, name=None, split=None, **kwargs):
        assert path == "nyu-mll/glue" and not kwargs
        calls.append((path, name, split))
        file = state["root"] / name / f"{split}-00000-of-00001.parquet"
        if not file.is_file():
            raise ValueError(f'Unknown split "{split}". Should be one of [...].')
        return Dataset(pq.read_table(file))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    from bamkd.tasks import tables

    monkeypatch.setattr(tables, "_HUB", {})
    return state, calls


def _same(a: TaskSpec, b: TaskSpec, split: str, data_a, data_b, *, ids: bool = True) -> int:
    got, want = read_split(b, split, data_b), read_split(a, split, data_a)
    assert len(got) == len(want) > 0, split
    for g, w in zip(got, want):
        assert (g.text_a, g.text_b, g.label) == (w.text_a, w.text_b, w.label), (g, w)
        if ids:
            assert g.id == w.id
    return len(got)


def test_every_glue_task_reads_alike_from_tsv_parquet_and_hub(glue_fixture_dir, tmp_path, fake_hub):
    state, calls = fake_hub
    names = list(GLUE_TASKS)
    write_hub_copy(glue_fixture_dir, tmp_path, names)
    state["root"] = tmp_path
    for name in names:
        tsv = GLUE_TASKS[name]
        for source in ("parquet", "hub"):
            spec = glue_task(name, source)
            assert spec.label_names == tsv.label_names and spec.metrics == tsv.metrics
            for split in tsv.splits:
                # QQP: the TSV keys train/dev rows by pair id, which the hub drops.
                ids = not (name == "qqp" and split in ("train", "dev"))
                _same(tsv, spec, split, glue_fixture_dir, tmp_path, ids=ids)
    assert ("nyu-mll/glue", "mnli", "validation_mismatched") in calls


def test_glue_source_errors_are_one_line(glue_fixture_dir, tmp_path, capsys):
    base = ["train", "--config", "tiny", "data.tasks=[rte]", "data.glue_source=parquet"]
    # The TSV folder is not the hub's layout: the missing Parquet pattern is named.
    assert main([*base, f"data.glue_dir={glue_fixture_dir}", f"output_dir={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{glue_fixture_dir}/rte/train-*.parquet: no Parquet file found" in err[0]
    assert "data.glue_dir" in err[0]
    assert main([*base, f"output_dir={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Set data.glue_dir" in err[0], err
    assert main([*base[:-1], "data.glue_source=csv", f"output_dir={tmp_path / 'c'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.glue_source" in err[0], err
    assert not any(tmp_path.iterdir())


def _train(out: Path, *extra: str) -> dict:
    args = [
        "train",
        "--config",
        "tiny",
        "data.tasks=[mrpc,rte]",
        "data.train_limit=24",
        "data.eval_limit=32",
        "data.max_seq_length=32",
        "train.epochs=1",
        f"output_dir={out}",
        *extra,
    ]
    assert main(args) == 0
    return json.loads((out / "dev_metrics.json").read_text())


@pytest.mark.glue
@pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason=f"real GLUE files absent ({SHARED_GLUE})")
def test_real_glue_from_the_hub_layout_trains_to_the_tsv_metrics(tmp_path, fake_hub, capsys):
    """MRPC and RTE (first 200 rows per split) from a hub-layout copy of ../shared/glue: the same
    examples and ids, and a trained run's dev metrics equal the TSV run's."""
    state, _ = fake_hub
    hub = tmp_path / "hub"
    write_hub_copy(SHARED_GLUE, hub, ["mrpc", "rte"], limit=200)
    state["root"] = hub
    for name in ("mrpc", "rte"):
        for split in GLUE_TASKS[name].splits:
            want = read_split(GLUE_TASKS[name], split, SHARED_GLUE, limit=200)
            assert len(want) == 200
            for source in ("parquet", "hub"):
                assert read_split(glue_task(name, source), split, hub) == want, (name, source)
    tsv = _train(tmp_path / "tsv", f"data.glue_dir={SHARED_GLUE}")
    parquet = _train(tmp_path / "parquet", f"data.glue_dir={hub}", "data.glue_source=parquet")
    from_hub = _train(tmp_path / "hub-run", "data.glue_source=hub")
    assert set(tsv) == {"mrpc", "rte"} and set(tsv["mrpc"]) == {"f1", "accuracy"}
    for task in tsv:
        assert parquet[task] == pytest.approx(tsv[task], abs=1e-9), task
        assert from_hub[task] == pytest.approx(tsv[task], abs=1e-9), task
    # Manifests: Parquet files hashed, hub splits by their datasets fingerprint.
    data = json.loads((tmp_path / "parquet" / "run_manifest.json").read_text())["data"]
    assert data["rte/dev"]["path"] == str(hub / "rte" / "validation-*.parquet")
    assert data["rte/dev"]["sha256"] == _sha256(_hub_file(hub, "rte", "dev"))
    data = json.loads((tmp_path / "hub-run" / "run_manifest.json").read_text())["data"]
    assert data["mrpc/train"]["path"] == "hub:nyu-mll/glue/mrpc:train"
    assert data["mrpc/train"]["sha256"].startswith("hub:")
    capsys.readouterr()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.glue
@pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason=f"real GLUE files absent ({SHARED_GLUE})")
def test_real_stsb_scores_from_the_hub_layout_are_the_tsv_scores_at_float32(tmp_path):
    """All of STS-B train and dev: ids and texts equal; scores equal as float32 (the hub's type),
    the type bamkd trains and scores on, and exactly equal but for a few long decimals."""
    import numpy as np

    write_hub_copy(SHARED_GLUE, tmp_path, ["stsb"])
    for split, rows in (("train", 5749), ("dev", 1500)):
        want = read_split(GLUE_TASKS["stsb"], split, SHARED_GLUE)
        got = read_split(glue_task("stsb", "parquet"), split, tmp_path)
        assert len(got) == len(want) == rows
        assert [(g.id, g.text_a, g.text_b) for g in got] == [
            (w.id, w.text_a, w.text_b) for w in want
        ]
        g32 = np.array([g.label for g in got], dtype=np.float32)
        w32 = np.array([w.label for w in want], dtype=np.float32)
        assert (g32 == w32).all()
        differ = sum(g.label != w.label for g, w in zip(got, want))
        assert differ == {"train": 14, "dev": 1}[split]
