"""Task exposure: passes and steps per task, from a run's config and batch plan."""

from __future__ import annotations

import pytest

from bamkd.config import build_config
from bamkd.experiments.exposure import task_exposure


@pytest.mark.parametrize("grouped", [False, True])
def test_passes_are_copies_times_epochs_and_steps_count_batches_with_the_task(
    demo_suite, tmp_path, grouped
):
    tasks = ["demo_sentiment", "demo_agreement"]
    cfg = build_config(
        "tiny",
        [
            f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
            f"data.tasks=[{','.join(tasks)}]",
            "data.train_limit=40",
            f"data.length_grouped={str(grouped).lower()}",
            "train.batch_size=8",
            "train.epochs=3",
            "train.task_multiples={demo_agreement: 4}",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    exposure = task_exposure(cfg)
    sentiment, agreement = exposure["demo_sentiment"], exposure["demo_agreement"]
    assert (sentiment.copies_per_epoch, agreement.copies_per_epoch) == (1, 4)
    # Every copy of every row is trained on exactly once per epoch.
    assert sentiment.passes == pytest.approx(3.0)
    assert agreement.passes == pytest.approx(12.0)
    # demo_agreement is a symmetric pair task, doubled by sentence swapping: 80 rows.
    assert (sentiment.rows, agreement.rows) == (40, 80)
    # 40 + 4 * 80 = 360 rows per epoch in batches of 8: 45 steps an epoch, 135 in all.
    assert sentiment.steps == agreement.steps == 135
    # No task can be in more batches than exist; the larger share is in more of them.
    assert agreement.steps_with_task <= 135 and sentiment.steps_with_task <= 135
    assert agreement.steps_with_task > sentiment.steps_with_task
