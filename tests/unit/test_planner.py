"""The experiment plan: fresh student seeds, the ablation variants and their settings."""

from __future__ import annotations

from bamkd.pipeline import STUDENT_SEED_OFFSET, Experiment, Planner


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
