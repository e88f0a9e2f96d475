"""The experiment plan: fresh student seeds, the ablation variants and their settings."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from bamkd.errors import ConfigError
from bamkd.experiments.pipeline import (
    STUDENT_SEED_OFFSET,
    Experiment,
    Planner,
    load_experiment,
    plan_experiment,
)
from bamkd.experiments.variants import VARIANTS


def _plan(variants, seeds=(3,), **extra):
    exp = Experiment(
        tasks=["mrpc", "rte"],
        seeds=list(seeds),
        variants=list(variants),
        output_dir="/tmp/unused",
        multi={"train": {"task_weighting": "reference"}},
        **extra,
    )
    return {run.id: run for run in Planner(exp).plan()}


def _seed(run) -> int:
    return run.config["train"]["seed"]


def test_a_student_trains_with_its_teachers_seed_plus_the_offset():
    runs = _plan(["single", "multi", "bam", "single_single", "multi_multi", "bam_ft"])
    assert _seed(runs["single/mrpc/seed3"]) == 3
    assert _seed(runs["multi/seed3"]) == 3
    assert _seed(runs["bam/seed3"]) == 3 + STUDENT_SEED_OFFSET
    assert _seed(runs["single_single/mrpc/seed3"]) == 3 + STUDENT_SEED_OFFSET
    assert _seed(runs["multi_multi/seed3"]) == 3 + STUDENT_SEED_OFFSET
    # Fine-tuning continues a model; it is not a fresh student.
    assert _seed(runs["bam_ft/rte/seed3"]) == 3
    # Reports group by the experiment seed, whatever seed the run trained with.
    assert runs["bam/seed3"].seed == 3


def test_a_student_of_students_adds_the_offset_again():
    runs = _plan(["bam_rounds"], seeds=[0])
    assert _seed(runs["bam_rounds/round2_single/mrpc/seed0"]) == 2 * STUDENT_SEED_OFFSET
    assert _seed(runs["bam_rounds/seed0"]) == 3 * STUDENT_SEED_OFFSET


def test_same_seed_ablation_and_offset_zero_reuse_the_teachers_seed():
    runs = _plan(["bam", "bam_same_seed"])
    assert _seed(runs["bam_same_seed/seed3"]) == 3
    assert _seed(runs["bam/seed3"]) == 3 + STUDENT_SEED_OFFSET
    runs = _plan(["bam"], student_seed_offset=0)
    assert _seed(runs["bam/seed3"]) == 3


def test_each_ablation_puts_back_one_setting():
    runs = _plan(["bam_grouped", "bam_loaded_multiples", "bam_sigmoid_head", "bam_linear_head"])
    grouped = runs["bam_grouped/seed3"].config
    assert grouped["data"]["length_grouped"] is True and grouped["data"]["packing"] is False
    assert runs["bam_loaded_multiples/seed3"].config["train"]["task_weighting"] == "bam"
    assert runs["bam_sigmoid_head/seed3"].config["model"]["regression_head"] == "sigmoid"
    assert runs["bam_linear_head/seed3"].config["model"]["regression_head"] == "linear"
    # Everything else stays the multi-task setting, teachers included.
    assert grouped["train"]["task_weighting"] == "reference"
    assert set(grouped["distill"]["teachers"]) == {"mrpc", "rte"}


# --------------------------------------------------------------------------------------------
# Every variant's plan: run ids, dependencies, roles and config changes, without training.
# --------------------------------------------------------------------------------------------

ROOT = "/exp/runs"
SIZES = {"l2": {"keep_every": 2}, "l1": {"keep_layers": [1]}}
ROLES = {
    "single": {"train": {"lr": 1e-4}},
    "multi": {"train": {"lr": 2e-4}},
    "finetune": {"train": {"epochs": 1.0}},
}
S = STUDENT_SEED_OFFSET


def _summary(run) -> tuple[str, list[str], dict]:
    """(role, deps, what the run's config adds to its role): teachers and init_from as run ids."""
    config = copy.deepcopy(run.config)
    assert config.pop("output_dir") == f"{ROOT}/{run.id}"
    assert config["data"].pop("tasks") == run.tasks
    train = config["train"]
    role = "finetune" if train.pop("epochs", None) == 1.0 else "single"
    role = "multi" if train.pop("lr") == 2e-4 else role
    changes: dict = {"seed": train.pop("seed")}
    teachers = config.get("distill", {}).pop("teachers", None)
    if teachers is not None:
        changes["teachers"] = {
            t: [p.removeprefix(f"{ROOT}/") for p in v] for t, v in teachers.items()
        }
    init_from = config.get("model", {}).pop("init_from", None)
    if init_from is not None:
        changes["init_from"] = init_from.removeprefix(f"{ROOT}/")
    changes.update({f"{s}.{k}": v for s, section in config.items() for k, v in section.items()})
    return role, run.deps, changes


def _single_runs(*tasks: str) -> dict:
    return {f"single/{t}/seed3": ("single", [], {"seed": 3}) for t in tasks}


def _bam_student(run_id: str, **changes) -> dict:
    teachers = {t: [f"single/{t}/seed3"] for t in ("mrpc", "rte")}
    deps = ["single/mrpc/seed3", "single/rte/seed3"]
    return {
        **_single_runs("mrpc", "rte"),
        run_id: ("multi", deps, {"seed": 3 + S, "teachers": teachers, **changes}),
    }


def _size_changes(size: str) -> dict:
    return {f"model.{k}": v for k, v in SIZES[size].items()}


EXPECTED_PLANS: dict[str, dict[str, tuple[str, list[str], dict]]] = {
    "single": _single_runs("mrpc", "rte"),
    "multi": {"multi/seed3": ("multi", [], {"seed": 3})},
    "single_single": {
        **_single_runs("mrpc", "rte"),
        **{
            f"single_single/{t}/seed3": (
                "single",
                [f"single/{t}/seed3"],
                {"seed": 3 + S, "teachers": {t: [f"single/{t}/seed3"]}},
            )
            for t in ("mrpc", "rte")
        },
    },
    "multi_multi": {
        "multi/seed3": ("multi", [], {"seed": 3}),
        "multi_multi/seed3": (
            "multi",
            ["multi/seed3"],
            {"seed": 3 + S, "teachers": {"mrpc": ["multi/seed3"], "rte": ["multi/seed3"]}},
        ),
    },
    "bam": _bam_student("bam/seed3"),
    "bam_rounds": {
        **_bam_student("bam/seed3"),
        **{
            f"bam_rounds/round2_single/{t}/seed3": (
                "single",
                ["bam/seed3"],
                {"seed": 3 + 2 * S, "teachers": {t: ["bam/seed3"]}},
            )
            for t in ("mrpc", "rte")
        },
        "bam_rounds/seed3": (
            "multi",
            ["bam_rounds/round2_single/mrpc/seed3", "bam_rounds/round2_single/rte/seed3"],
            {
                "seed": 3 + 3 * S,
                "teachers": {t: [f"bam_rounds/round2_single/{t}/seed3"] for t in ("mrpc", "rte")},
            },
        ),
    },
    "multi_ft": {
        "multi/seed3": ("multi", [], {"seed": 3}),
        **{
            f"multi_ft/{t}/seed3": (
                "finetune",
                ["multi/seed3"],
                {"seed": 3, "init_from": "multi/seed3"},
            )
            for t in ("mrpc", "rte")
        },
    },
    "bam_ft": {
        **_bam_student("bam/seed3"),
        **{
            f"bam_ft/{t}/seed3": ("finetune", ["bam/seed3"], {"seed": 3, "init_from": "bam/seed3"})
            for t in ("mrpc", "rte")
        },
    },
    "bam_no_anneal": _bam_student("bam_no_anneal/seed3", **{"distill.schedule": "constant"}),
    "bam_no_layerwise": _bam_student("bam_no_layerwise/seed3", **{"train.layerwise_decay": 1.0}),
    "bam_no_weighting": _bam_student(
        "bam_no_weighting/seed3", **{"train.task_weighting": "concat"}
    ),
    "bam_grouped": _bam_student(
        "bam_grouped/seed3", **{"data.length_grouped": True, "data.packing": False}
    ),
    "bam_loaded_multiples": _bam_student(
        "bam_loaded_multiples/seed3", **{"train.task_weighting": "bam"}
    ),
    "bam_sigmoid_head": _bam_student(
        "bam_sigmoid_head/seed3", **{"model.regression_head": "sigmoid"}
    ),
    "bam_linear_head": _bam_student("bam_linear_head/seed3", **{"model.regression_head": "linear"}),
    "bam_same_seed": {
        **_bam_student("bam_same_seed/seed3"),
        "bam_same_seed/seed3": (
            "multi",
            ["single/mrpc/seed3", "single/rte/seed3"],
            {"seed": 3, "teachers": {t: [f"single/{t}/seed3"] for t in ("mrpc", "rte")}},
        ),
    },
    # One smaller student per student_sizes entry; BAM's teachers are the full-size Single runs.
    "multi_small": {
        f"multi_small/{size}/seed3": ("multi", [], {"seed": 3, **_size_changes(size)})
        for size in SIZES
    },
    "bam_small": {
        **_bam_student("bam_small/l2/seed3", **_size_changes("l2")),
        **_bam_student("bam_small/l1/seed3", **_size_changes("l1")),
    },
    "pairs_multi": {"pairs_multi/rte+mrpc/seed3": ("multi", [], {"seed": 3})},
    "pairs_bam": {
        **_single_runs("rte", "mrpc"),
        "pairs_bam/rte+mrpc/seed3": (
            "multi",
            ["single/mrpc/seed3", "single/rte/seed3"],
            {"seed": 3 + S, "teachers": {t: [f"single/{t}/seed3"] for t in ("rte", "mrpc")}},
        ),
    },
}


def test_every_variant_has_an_expected_plan():
    assert set(EXPECTED_PLANS) == set(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_plan(variant):
    exp = Experiment(
        tasks=["mrpc", "rte"],
        seeds=[3],
        variants=[variant],
        output_dir="/exp",
        pairs_target="rte",
        student_sizes=SIZES,
        **ROLES,
    )
    runs = plan_experiment(exp)  # also builds and validates every run's RunConfig
    assert {run.id: _summary(run) for run in runs} == EXPECTED_PLANS[variant]
    # Only a smaller student has a size (its report row); it is the run id's middle part.
    for run in runs:
        expected_size = (
            run.id.split("/")[1] if VARIANTS[variant].sized and run.variant == variant else None
        )
        assert run.size == expected_size, run.id
    # Dependencies come first, and every run of the variant's own name is in the plan.
    seen: set[str] = set()
    for run in runs:
        assert set(run.deps) <= seen, run.id
        seen.add(run.id)
    assert any(run.variant == variant for run in runs)


# --------------------------------------------------------------------------------------------
# Smaller students: sizes in the experiment's order, checked before anything is planned.
# --------------------------------------------------------------------------------------------


def test_smaller_students_come_in_the_experiments_size_order_after_their_teachers():
    runs = _plan(["multi_small", "bam_small"], seeds=[0, 1], student_sizes=SIZES)
    ids = list(runs)
    assert [i for i in ids if i.startswith("bam_small/")] == [
        "bam_small/l2/seed0",
        "bam_small/l1/seed0",
        "bam_small/l2/seed1",
        "bam_small/l1/seed1",
    ]
    assert runs["bam_small/l1/seed1"].config["model"] == {"keep_layers": [1]}
    assert runs["bam_small/l1/seed1"].deps == ["single/mrpc/seed1", "single/rte/seed1"]
    # The teachers keep the full encoder.
    assert "model" not in runs["single/rte/seed1"].config
    assert runs["multi_small/l2/seed0"].seed == 0 and _seed(runs["multi_small/l2/seed0"]) == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"variants": ["bam_small"]}, "variant bam_small needs 'student_sizes'"),
        (
            {"variants": ["bam_small"], "student_sizes": {"l 3": {"keep_every": 2}}},
            "'l 3' is not a usable size name",
        ),
        (
            {"variants": ["multi_small"], "student_sizes": {"l3": {}}},
            "student_sizes.l3 is empty",
        ),
        (
            {"variants": ["multi_small"], "student_sizes": {"l3": {"keep_evry": 2}}},
            "student_sizes.l3.keep_evry is not a model setting",
        ),
        ({"reuse": ["teachers"]}, "reuse names 'teachers', which is not a variant"),
    ],
)
def test_experiment_settings_of_smaller_students_and_reuse_are_checked(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Experiment(tasks=["rte"], **settings)


def test_reused_runs_are_planned_in_the_other_experiment_and_students_point_there():
    runs = _plan(
        ["single", "multi", "bam_small"],
        student_sizes=SIZES,
        reuse_from="/teachers",
        reuse=["single", "multi"],
    )
    assert runs["single/rte/seed3"].folder == Path("/teachers/runs/single/rte/seed3")
    assert runs["single/rte/seed3"].reused_from == "/teachers"
    assert runs["multi/seed3"].folder == Path("/teachers/runs/multi/seed3")
    student = runs["bam_small/l2/seed3"]
    assert student.reused_from is None and student.folder == Path(
        "/tmp/unused/runs/bam_small/l2/seed3"
    )
    assert student.config["distill"]["teachers"]["rte"] == ["/teachers/runs/single/rte/seed3"]
    # Without reuse_from nothing is reused, whatever `reuse` says.
    runs = _plan(["bam"], reuse=["single"])
    assert runs["single/rte/seed3"].reused_from is None


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_experiment_plans(name):
    assert plan_experiment(load_experiment(CONFIGS / name))


def test_the_small_student_study_reuses_paper_faithful_runs_with_their_own_settings():
    """What small_student.yaml takes from paper_faithful is planned there exactly as here, so
    `bamkd run` finds the settings it checks equal (paths, seeds and teachers included)."""
    small = {r.id: r for r in plan_experiment(load_experiment(CONFIGS / "small_student.yaml"))}
    faithful = load_experiment(CONFIGS / "paper_faithful.yaml")
    there = {r.id: r for r in plan_experiment(faithful)}
    reused = [r for r in small.values() if r.reused_from is not None]
    assert {r.variant for r in reused} == {"single", "multi", "bam"} and len(reused) == 21
    for run in reused:
        assert run.reused_from == faithful.output_dir
        assert run.config == there[run.id].config, run.id
    # The students: paper_faithful's multi-task settings, a cut encoder, 3 and 2 layers.
    student = small["bam_small/l2/seed1"].config
    assert student["model"] == {
        "name_or_path": "minilm",
        "regression_head": "linear",
        "keep_every": 3,
    }
    assert student["train"] == {**there["bam/seed1"].config["train"]}
    assert student["distill"] == there["bam/seed1"].config["distill"]


def test_reuse_from_is_resolved_like_output_dir_also_when_absolute(tmp_path):
    """A link to the reused experiment must name the same runs as the folder itself, or the
    reused BAM runs' teacher paths (written resolved) would differ from the planned ones."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"name: e\ntasks: [mrpc]\nseeds: [0]\nvariants: [single]\nreuse_from: {link}\n"
        "base:\n  model: {name_or_path: bamkd-tiny}\n"
    )
    assert load_experiment(path).reuse_from == str(real)
