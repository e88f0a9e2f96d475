"""The readers on the real GLUE files staged beside the repository (shared/glue).

Row counts are the official split sizes and label counts come from shared/glue/SOURCES.md, so a
reader that drops, merges or mislabels a single row fails here. Each task whose folder (or file)
is not staged is skipped with the reason, e.g. MNLI and QQP, which are too large to stage.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bamkd.tasks import GLUE_TASKS, Example, read_split, split_path

pytestmark = pytest.mark.glue

# tests/integration/this_file -> parents[2] is the repository, parents[3] the folder holding it.
GLUE_DIR = Path(__file__).resolve().parents[3] / "shared" / "glue"

ROW_COUNTS = [
    ("cola", "train", 8551),
    ("cola", "dev", 1043),
    ("cola", "test", 1063),
    ("sst2", "train", 67349),
    ("sst2", "dev", 872),
    ("sst2", "test", 1821),
    ("mrpc", "train", 3668),
    ("mrpc", "dev", 408),
    ("mrpc", "test", 1725),
    ("stsb", "train", 5749),
    ("stsb", "dev", 1500),
    ("stsb", "test", 1379),
    ("rte", "train", 2490),
    ("rte", "dev", 277),
    ("rte", "test", 3000),
    ("wnli", "train", 635),
    ("wnli", "dev", 71),
    ("wnli", "test", 146),
    ("qnli", "train", 104743),
    ("qnli", "dev", 5463),
    ("qnli", "test", 5463),
    ("ax", "test", 1104),
]

# Label counts by label string, from SOURCES.md.
LABEL_COUNTS = [
    ("cola", "train", {"1": 6023, "0": 2528}),
    ("sst2", "train", {"1": 37569, "0": 29780}),
    ("mrpc", "train", {"1": 2474, "0": 1194}),
    ("mrpc", "dev", {"1": 279, "0": 129}),
    ("rte", "train", {"entailment": 1249, "not_entailment": 1241}),
    ("wnli", "train", {"0": 323, "1": 312}),
]

_cache: dict[tuple[str, str], list[Example]] = {}


def _read(name: str, split: str) -> list[Example]:
    """Read a staged split once per session, skipping with the reason when it is not staged."""
    spec = GLUE_TASKS[name]
    if not GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE data not staged: {GLUE_DIR} does not exist")
    folder = GLUE_DIR / Path(spec.splits[split]).parts[0]
    if not folder.is_dir():
        pytest.skip(f"{spec.display_name} not staged: {folder} does not exist")
    path = split_path(spec, split, GLUE_DIR)
    if not path.is_file():
        pytest.skip(f"{spec.display_name} {split} not staged: {path} does not exist")
    if (name, split) not in _cache:
        _cache[(name, split)] = read_split(spec, split, GLUE_DIR)
    return _cache[(name, split)]


@pytest.mark.parametrize(("name", "split", "rows"), ROW_COUNTS, ids=lambda v: str(v))
def test_row_counts_and_unique_ids(name: str, split: str, rows: int) -> None:
    examples = _read(name, split)
    assert len(examples) == rows
    assert len({e.id for e in examples}) == rows
    spec = GLUE_TASKS[name]
    labelled = split not in spec.test_splits
    assert all((e.label is not None) == labelled for e in examples)
    assert all((e.text_b is not None) == spec.is_pair for e in examples)


@pytest.mark.parametrize(("name", "split", "counts"), LABEL_COUNTS, ids=lambda v: str(v))
def test_label_distributions(name: str, split: str, counts: dict[str, int]) -> None:
    spec = GLUE_TASKS[name]
    got = Counter(spec.label_names[e.label] for e in _read(name, split))  # type: ignore[index]
    assert got == counts


def test_stsb_scores_stay_in_range() -> None:
    for split in ("train", "dev"):
        scores = [e.label for e in _read("stsb", split)]
        assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
    assert _read("stsb", "train")[1].label == 3.8  # "3.800" in the file


def test_ids_use_the_files_own_keys() -> None:
    # Files with an index column keep it; header-less or index-less files number their rows.
    assert _read("rte", "train")[0].id == "rte:train:0"
    assert _read("sst2", "train")[0].id == "sst2:train:1"
    assert _read("cola", "dev")[-1].id == "cola:dev:1043"  # dev.tsv has no final newline
    assert _read("ax", "test")[-1].id == "ax:test:1103"


def test_stray_quotes_survive() -> None:
    # MRPC's tokenized text has unbalanced quotes; QUOTE_NONE keeps them literal.
    first = _read("mrpc", "train")[0]
    assert first.text_a == (
        'Amrozi accused his brother , whom he called " the witness " , of deliberately '
        "distorting his evidence ."
    )
