"""Typed run configuration: presets, overrides, key and type checks, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bamkd.config import (
    PRESET_DIR,
    RunConfig,
    TaskDistill,
    build_config,
    from_dict,
    parse_override,
)
from bamkd.errors import ConfigError

PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def test_builtin_presets_exist() -> None:
    assert {"tiny", "single_task", "multi_task", "minilm"} <= set(PRESETS)


def test_tiny_with_overrides() -> None:
    cfg = build_config("tiny", ["data.tasks=[mrpc, rte]", "train.lr=1e-4", "train.epochs=3"])
    assert isinstance(cfg, RunConfig)
    assert cfg.data.tasks == ["mrpc", "rte"]
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3.0 and isinstance(cfg.train.epochs, float)
    # Values from the preset survive where not overridden.
    assert cfg.train.batch_size == 16
    assert cfg.model.name_or_path == "bamkd-tiny"  # a builtin name, not resolved as a path


@pytest.mark.parametrize("preset", PRESETS)
def test_every_builtin_preset_loads(preset: str) -> None:
    cfg = build_config(preset, ["data.tasks=[mrpc]"])
    assert cfg.data.tasks == ["mrpc"]


def test_paper_presets_hold_the_paper_defaults() -> None:
    # BAM_SPEC.md: multi-task lr 1e-4, batch 128, 6 epochs; single-task lr 5e-5, batch 32, 3.
    multi = build_config("multi_task", ["data.tasks=[mrpc]"]).train
    single = build_config("single_task", ["data.tasks=[mrpc]"]).train
    assert (multi.lr, multi.batch_size, multi.epochs) == (1e-4, 128, 6.0)
    assert (single.lr, single.batch_size, single.epochs) == (5e-5, 32, 3.0)
    for t in (multi, single):
        assert (t.adam_beta1, t.adam_beta2, t.adam_eps) == (0.9, 0.999, 1e-6)
        assert (t.weight_decay, t.warmup_fraction, t.layerwise_decay) == (0.01, 0.1, 0.9)
        assert t.bias_correction is False and t.max_grad_norm == 1.0
        assert t.weighting_exponent == 0.75 and t.loss_reduction == "sum"


def test_unknown_preset_names_the_builtins() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        build_config("no_such_preset_xyz", ["data.tasks=[mrpc]"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lrr=1", "train.lrr"),
        ("model.poolng=cls", "model.poolng"),
        ("foo=1", "foo"),
        ("distill.per_task.mrpc.wieght=0.3", "distill.per_task.mrpc.wieght"),
    ],
)
def test_unknown_keys_are_rejected_with_the_dotted_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        build_config("tiny", ["data.tasks=[mrpc]", override])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.seed=1.5", "train.seed"),
        ("model.pooling=max", "model.pooling"),
        ("train.bias_correction=maybe", "train.bias_correction"),
        ("data.tasks=mrpc", "data.tasks"),
        ("train.batch_size=[1, 2]", "train.batch_size"),
        ("train.lr=true", "train.lr"),
    ],
)
def test_wrong_types_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config("tiny", ["data.tasks=[mrpc]", override])


def test_integral_float_is_accepted_as_int() -> None:
    assert build_config("tiny", ["data.tasks=[mrpc]", "train.seed=3.0"]).train.seed == 3


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("train.lr=1e-4", 1e-4),
        ("train.lr=1.0e-4", 1e-4),
        ("train.seed=7", 7),
        ("data.tasks=[a, b]", ["a", "b"]),
        ("train.progress=true", True),
        ("train.progress=false", False),
        ("model.tokenizer=", None),
        ("model.name_or_path=bert-base-uncased", "bert-base-uncased"),
        ("output_dir=runs/a=b", "runs/a=b"),  # only the first '=' splits
    ],
)
def test_override_values_parse(text: str, value: object) -> None:
    key, parsed = parse_override(text)
    assert parsed == value
    assert type(parsed) is type(value)
    assert key == text.split("=", 1)[0].split(".")


@pytest.mark.parametrize("text", ["train.lr", "=3"])
def test_malformed_overrides(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(text)


def test_preset_paths_resolve_against_the_preset_folder(tmp_path: Path, monkeypatch) -> None:
    preset = tmp_path / "presets" / "mine.yaml"
    preset.parent.mkdir()
    preset.write_text(
        "model:\n  name_or_path: bert-base-uncased\n"
        "data:\n  tasks: [mrpc]\n  glue_dir: data\n  task_files: [tasks/a.yaml]\n"
        "output_dir: runs/x\n",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = build_config(str(preset))
    base = preset.parent.resolve()
    assert cfg.data.glue_dir == str(base / "data")
    assert cfg.data.task_files == [str(base / "tasks" / "a.yaml")]
    assert cfg.output_dir == str(base / "runs" / "x")
    assert cfg.model.name_or_path == "bert-base-uncased"  # a hub id stays as written


def test_maybe_path_keys_resolve_only_when_they_look_like_paths(tmp_path: Path) -> None:
    (tmp_path / "my_model").mkdir()
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "model:\n  name_or_path: ./enc\n  tokenizer: my_model\ndata:\n  tasks: [mrpc]\n",
        encoding="utf-8",
    )
    cfg = build_config(preset)
    assert cfg.model.name_or_path == str((tmp_path / "enc").resolve())  # starts with '.'
    assert cfg.model.tokenizer == str((tmp_path / "my_model").resolve())  # exists there


def test_override_paths_resolve_against_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = build_config("tiny", ["data.tasks=[mrpc]", "data.glue_dir=glue", "output_dir=/abs/run"])
    assert cfg.data.glue_dir == str((tmp_path / "glue").resolve())
    assert cfg.output_dir == "/abs/run"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.batch_size=10", "train.grad_accumulation=3"], "train.batch_size"),
        (["train.warmup_fraction=1.5"], "train.warmup_fraction"),
        (["train.warmup_fraction=-0.1"], "train.warmup_fraction"),
        (["data.tasks=[]"], "data.tasks"),
        (["train.epochs=0"], "train.epochs"),
        (["train.layerwise_decay=1.5"], "train.layerwise_decay"),
        (["distill.weight=2"], "distill.weight"),
        (
            ["distill.teachers={mrpc: [a]}", "distill.teacher_weights={mrpc: [0.5, 0.5]}"],
            "distill.teacher_weights.mrpc",
        ),
    ],
)
def test_cross_field_checks(overrides: list[str], key: str) -> None:
    base = ["data.tasks=[mrpc]"]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config("tiny", base + overrides)


def test_no_tasks_at_all_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"data\.tasks is empty"):
        build_config("tiny")


def test_to_yaml_round_trips() -> None:
    cfg = build_config(
        "tiny",
        [
            "data.tasks=[mrpc, stsb]",
            "train.lr=3e-5",
            "distill.teachers={mrpc: [/t/a, /t/b], stsb: [/t/c]}",
            "distill.teacher_weights={mrpc: [0.25, 0.75]}",
            "distill.per_task={stsb: {schedule: constant, weight: 0.3}}",
            "model.tokenizer=/tok",
        ],
    )
    assert cfg.distill.per_task["stsb"] == TaskDistill(schedule="constant", weight=0.3)
    again = from_dict(RunConfig, yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert again.to_yaml() == cfg.to_yaml()


def test_default_run_config_round_trips() -> None:
    cfg = RunConfig(data=from_dict(RunConfig, {"data": {"tasks": ["rte"]}}).data)
    assert from_dict(RunConfig, yaml.safe_load(cfg.to_yaml())) == cfg
