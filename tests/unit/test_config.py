"""Typed run configuration: presets, overrides, key and type checks, path resolution."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

import pytest
import yaml

from bamkd.config import (
    PRESET_DIR,
    DataConfig,
    DistillConfig,
    ModelConfig,
    OneOf,
    RunConfig,
    TaskDistill,
    TrainConfig,
    build_config,
    from_dict,
    parse_override,
)
from bamkd.errors import ConfigError
from bamkd.runtime.devices import resolve_precision

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


# --------------------------------------------------------------------------------------------
# Hostile values (issue 15): every number finite, every bound named, YAML's spellings of words.
# --------------------------------------------------------------------------------------------


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
}


def _fields_of(kind) -> list[tuple[str, object]]:
    """(dotted key, type) of every field of RunConfig's sections whose type satisfies ``kind``.

    Found by walking the dataclasses, so fields added later are covered without editing here.
    """
    found = []
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls, include_extras=True)
        found += [(f"{section}.{f.name}", hints[f.name]) for f in dataclasses.fields(cls)]
    return [(key, tp) for key, tp in found if kind(tp)]


def _is_float(tp: object) -> bool:
    return tp is float or tp == (float | None)


FLOAT_KEYS = [key for key, _ in _fields_of(_is_float)]


def test_the_float_fields_are_found() -> None:
    assert {"train.lr", "train.epochs", "model.dropout", "distill.temperature"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "+.INF"])
def test_every_float_key_refuses_non_finite_numbers(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config("tiny", ["data.tasks=[mrpc]", f"{key}={value}"])
    message = str(err.value)
    assert message.startswith(f"{key}=") and "not a finite number" in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("distill.teacher_weights={mrpc: [.nan]}", "distill.teacher_weights.mrpc[0]"),
        ("distill.per_task={mrpc: {temperature: .inf}}", "distill.per_task.mrpc.temperature"),
        ("distill.per_task={mrpc: {weight: -.inf}}", "distill.per_task.mrpc.weight"),
    ],
)
def test_nested_non_finite_numbers_name_the_full_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{key}=")):
        build_config("tiny", ["data.tasks=[mrpc]", "distill.teachers={mrpc: [a]}", override])


@pytest.mark.parametrize("key", ["train.lr", "train.epochs", "distill.weight"])
def test_non_finite_numbers_set_in_python_are_refused_too(key: str) -> None:
    """Configs built in Python skip YAML coercion; validate() still finds the NaN."""
    cfg = build_config("tiny", ["data.tasks=[mrpc]"])
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, math.nan)
    with pytest.raises(ConfigError, match=re.escape(f"{key}=nan is not a finite number")):
        cfg.validate()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.max_seq_length=0", "data.max_seq_length"),
        ("data.max_seq_length=1", "data.max_seq_length"),
        ("data.max_seq_length=2", "data.max_seq_length"),
        ("data.max_seq_length=100001", "data.max_seq_length"),
        ("data.train_limit=0", "data.train_limit"),
        ("data.train_limit=-1", "data.train_limit"),
        ("data.eval_limit=0", "data.eval_limit"),
        ("data.eval_limit=-5", "data.eval_limit"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.dropout=-0.1", "model.dropout"),
        ("model.encoder_dropout=1.5", "model.encoder_dropout"),
        ("train.adam_beta1=1.0", "train.adam_beta1"),
        ("train.adam_beta2=-0.5", "train.adam_beta2"),
        ("train.adam_eps=0", "train.adam_eps"),
        ("train.weight_decay=-0.01", "train.weight_decay"),
        ("train.max_grad_norm=-1", "train.max_grad_norm"),
        ("train.sampling_temperature=0", "train.sampling_temperature"),
        ("train.eval_batch_size=0", "train.eval_batch_size"),
        ("train.log_every=0", "train.log_every"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints"),
        ("train.checkpoint_every=-1", "train.checkpoint_every"),
        ("train.lr=-1e-4", "train.lr"),
        ("distill.step_at=1.5", "distill.step_at"),
        ("distill.temperature=0", "distill.temperature"),
    ],
)
def test_out_of_range_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config("tiny", ["data.tasks=[mrpc]", override])
    assert str(err.value).startswith(f"{key}=")
    assert "\n" not in str(err.value)


def test_limits_and_shortest_sequence_are_accepted_at_their_bounds() -> None:
    cfg = build_config(
        "tiny",
        ["data.tasks=[mrpc]", "data.train_limit=1", "data.eval_limit=1", "data.max_seq_length=3"],
    )
    assert (cfg.data.train_limit, cfg.data.eval_limit, cfg.data.max_seq_length) == (1, 1, 3)


def test_teacher_weights_must_be_non_negative_with_a_positive_sum() -> None:
    base = ["data.tasks=[mrpc]", "distill.teachers={mrpc: [a, b]}"]
    for weights in ("[-1, 2]", "[0, 0]"):
        with pytest.raises(ConfigError, match=r"distill\.teacher_weights\.mrpc="):
            build_config("tiny", [*base, f"distill.teacher_weights={{mrpc: {weights}}}"])


def _choices(tp: object) -> tuple:
    """The words a field accepts: a Literal's values, or a registry's names (`OneOf`)."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) is Annotated:
        return next((m.names for m in tp.__metadata__ if isinstance(m, OneOf)), ())
    return ()


def _literal_values() -> list[tuple[str, str]]:
    return [(key, value) for key, tp in _fields_of(_choices) for value in _choices(tp)]


LITERAL_VALUES = _literal_values()


def test_the_literal_fields_are_found() -> None:
    assert ("train.mixed_precision", "no") in LITERAL_VALUES
    assert ("model.pooling", "mean") in LITERAL_VALUES
    assert ("distill.schedule", "cosine") in LITERAL_VALUES  # a registry's names (bamkd.schedules)


@pytest.mark.parametrize(("key", "value"), LITERAL_VALUES)
def test_every_documented_word_works_as_written(key: str, value: str, tmp_path: Path) -> None:
    """On the command line and in a YAML file, where YAML 1.1 reads no/off/yes/on as booleans."""
    section, name = key.split(".")
    from_override = build_config("tiny", ["data.tasks=[mrpc]", f"{key}={value}"])
    preset = tmp_path / "preset.yaml"
    # One data section (a second "data:" key would replace the first).
    tail = f"  {name}: {value}\n" if section == "data" else f"{section}:\n  {name}: {value}\n"
    preset.write_text(f"data:\n  tasks: [mrpc]\n{tail}")
    from_file = build_config(preset)
    # `auto` precision is resolved when the config is built (to what this machine runs natively).
    expected = resolve_precision(value) if key == "train.mixed_precision" else value
    assert getattr(getattr(from_override, section), name) == expected
    assert getattr(getattr(from_file, section), name) == expected
    # ... and the saved config.yaml loads back to the same word.
    again = build_config(None, base=yaml.safe_load(from_file.to_yaml()))
    assert getattr(getattr(again, section), name) == expected


@pytest.mark.parametrize("word", ["no", "No", "NO", "off", "false"])
def test_yaml_spellings_of_no_mean_no_mixed_precision(word: str) -> None:
    cfg = build_config("tiny", ["data.tasks=[mrpc]", f"train.mixed_precision={word}"])
    assert cfg.train.mixed_precision == "no"


@pytest.mark.parametrize("override", ["model.pooling=no", "train.mixed_precision=yes"])
def test_a_yaml_boolean_that_is_no_documented_word_is_refused_and_explained(
    override: str,
) -> None:
    with pytest.raises(ConfigError, match=r"YAML's reading of yes/no/on/off\) is not one of"):
        build_config("tiny", ["data.tasks=[mrpc]", override])


def test_long_values_are_quoted_short() -> None:
    with pytest.raises(ConfigError) as err:
        build_config("tiny", ["data.tasks=[mrpc]", f"model.pooling={'x' * 100_000}"])
    assert len(str(err.value)) < 300 and "100,000 characters" in str(err.value)
