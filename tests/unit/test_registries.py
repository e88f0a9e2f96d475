"""Every entry of each registry (variants, schedules, input formats) is wired end to end.

A registry is the one list of an extension point; these tests fail when an entry is added to it
but something that should follow from it does not: a variant without a label or a place in the
results table, a schedule the config refuses or the loss cannot compute, a format the CLI or the
reader does not take, or a README list that no longer matches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from bamkd import schedules
from bamkd.cli import build_parser
from bamkd.config import build_config
from bamkd.errors import ConfigError
from bamkd.experiments import variants
from bamkd.experiments.report import write_experiment_report
from bamkd.losses import gold_weight
from bamkd.outputs.predict import read_inputs
from bamkd.tasks import load_task_yaml, read_split
from bamkd.tasks.records import RECORD_FORMATS, detect_format
from bamkd.tasks.records import markdown_list as formats_markdown
from bamkd.tasks.spec import FILE_FORMATS

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block(name: str) -> str:
    """The text between ``<!-- name: ... -->`` and ``<!-- /name -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}: [^>]*-->\n(.*?)\n<!-- /{name} -->", text, re.S)
    assert match, f"README.md has no generated {name} block"
    return match.group(1)


@pytest.mark.parametrize(
    ("block", "generate"),
    [
        ("variants", variants.markdown_table),
        ("schedules", schedules.markdown_list),
        ("formats", formats_markdown),
    ],
)
def test_readme_lists_are_current(block, generate):
    expected = generate()
    assert _readme_block(block) == expected, (
        f"README.md's {block} list is out of date; replace the block with:\n{expected}"
    )


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------


def test_every_variant_has_a_label_and_a_table_place_or_its_own_table():
    labels = [v.label for v in variants.VARIANTS.values()]
    assert all(labels) and len(set(labels)) == len(labels)
    for name, variant in variants.VARIANTS.items():
        assert variant.name == name and variant.what
        assert (name in variants.TABLE_ORDER) != variant.pairs, name


def test_every_variant_appears_in_the_report_under_its_label(tmp_path):
    """A finished run of every variant gives a row (or a pairs-table column) with its label;
    a smaller student's row adds its size."""
    runs = []
    for name, variant in variants.VARIANTS.items():
        tasks = ["rte", "mrpc"] if variant.pairs else ["rte"]
        folder = tmp_path / name
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"finished": True}))
        (folder / "dev_metrics.json").write_text(json.dumps({"rte": {"accuracy": 0.6}}))
        record = {"step": 1, "loss": {"rte": 0.5}, "lambda": {"rte": 0.1}, "lr": 1e-3}
        (folder / "metrics.jsonl").write_text(json.dumps(record) + "\n")
        size = "l3" if variant.sized else None
        runs.append(
            SimpleNamespace(id=name, variant=name, tasks=tasks, seed=0, folder=folder, size=size)
        )
    exp = SimpleNamespace(
        name="registry", output_dir=str(tmp_path / "exp"), tasks=["rte"], pairs_target="rte"
    )
    lines = write_experiment_report(exp, runs)
    table = [line for line in lines if line.startswith("| ")]
    labels = {
        name: f"{v.label} (l3)" if v.sized else v.label for name, v in variants.VARIANTS.items()
    }
    for name, variant in variants.VARIANTS.items():
        if variant.pairs:
            assert any(line.startswith("| Partner |") and variant.label in line for line in table)
        else:
            assert any(line.startswith(f"| {labels[name]} | 1 |") for line in table), name
    rows = [line.split(" | ")[0][2:] for line in table]
    order = [labels[n] for n in variants.TABLE_ORDER]
    assert [r for r in rows if r in order][: len(order)] == order


def test_the_cli_names_every_variant():
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    flat = " ".join(help_text.split())
    for name in variants.VARIANTS:
        assert name in flat


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_every_schedule_is_accepted_by_the_config_and_gives_lambdas_in_0_1(name):
    cfg = build_config(
        "tiny",
        ["data.tasks=[mrpc]", f"distill.schedule={name}", f"distill.per_task.mrpc.schedule={name}"],
    )
    assert cfg.distill.schedule == name and cfg.distill.per_task["mrpc"].schedule == name
    for weight, step_at in ((0.0, 0.5), (0.5, 0.3), (1.0, 1.0)):
        values = [gold_weight(name, s, 11, weight, step_at) for s in range(11)]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values == [schedules.gold_weight(name, s, 11, weight, step_at) for s in range(11)]


def test_a_name_outside_the_schedules_is_refused_in_one_line():
    known = ", ".join(repr(n) for n in schedules.SCHEDULES)
    with pytest.raises(ConfigError) as err:
        build_config("tiny", ["data.tasks=[mrpc]", "distill.schedule=linear"])
    assert str(err.value) == f"distill.schedule='linear' is not one of {known}"
    with pytest.raises(ValueError, match="unknown distillation schedule 'linear'"):
        schedules.gold_weight("linear", 0, 10)


# --------------------------------------------------------------------------------------------
# Input formats
# --------------------------------------------------------------------------------------------

ROWS = [("1", "a good film"), ("2", "dull, and long")]


def _write(fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps({"id": i, "sentence": t, "label": "1"}) + "\n" for i, t in ROWS)
    if fmt == "csv":
        return "id,sentence,label\n" + "".join(f'{i},"{t}",1\n' for i, t in ROWS)
    sep = {"tsv": "\t"}[fmt]  # a new format needs a writer here
    return sep.join(("id", "sentence", "label")) + "\n" + "".join(f"{i}\t{t}\t1\n" for i, t in ROWS)


@pytest.mark.parametrize("fmt", list(RECORD_FORMATS))
def test_every_format_is_taken_by_the_cli_detected_and_read_for_both_uses(fmt, tmp_path):
    args = build_parser().parse_args(
        ["predict", "run", "--task", "t", "--input", "-", "--format", fmt]
    )
    assert args.format == fmt
    text = _write(fmt)
    for suffix in RECORD_FORMATS[fmt].suffixes:
        assert detect_format(f"in{suffix}", text) == fmt
    assert detect_format(None, text) == fmt
    # Prediction inputs ...
    table = read_inputs(text, source=f"in.{fmt}", fmt=fmt)
    assert (table.ids, table.texts) == ([i for i, _ in ROWS], [t for _, t in ROWS])
    # ... and task files, through the same record reader.
    assert fmt in FILE_FORMATS
    (tmp_path / f"train.{fmt}").write_text(text)
    (tmp_path / "task.yaml").write_text(
        f"name: mine\nformat: {fmt}\nfiles: {{train: train.{fmt}}}\ntext_columns: [sentence]\n"
        "label_column: label\nid_column: id\nlabel_names: ['0', '1']\n"
    )
    examples = read_split(load_task_yaml(tmp_path / "task.yaml"), "train")
    assert [(e.id, e.text_a, e.label) for e in examples] == [
        (f"mine:train:{i}", t, 1) for i, t in ROWS
    ]
