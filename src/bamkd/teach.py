"""Teacher outputs: a finished run's predictions on its own training sets (`bamkd teach`).

A BAM student distills from these. They go through the same inference path as evaluation
(`bamkd.evaluate.LoadedRun`) and are stored by `bamkd.teachers` with a manifest of what produced
them (run, weights digest, tokenizer, max length, seconds); `bamkd.teachers` also reads them back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bamkd.data import tokenizer_fingerprint
from bamkd.errors import BamkdError
from bamkd.evaluate import LoadedRun
from bamkd.model import WEIGHTS_NAME
from bamkd.teachers import write_teacher_predictions

if TYPE_CHECKING:
    from accelerate import Accelerator


def _weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    with open(folder / WEIGHTS_NAME, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def teach(
    run_dir: str | Path, tasks: Sequence[str] | None = None, accelerator: Accelerator | None = None
) -> list[Path]:
    """Write the run's predictions on its own training sets (swapped copies included).

    In-sample predictions, as in the paper (no cross-validation). One file per task.
    """
    run = LoadedRun(run_dir, accelerator)
    names = list(tasks) if tasks else list(run.specs)
    unknown = [n for n in names if n not in run.specs]
    if unknown:
        raise BamkdError(
            f"run {run_dir} has no head for task '{unknown[0]}' (it has: {', '.join(run.specs)})"
        )
    manifest = {
        "teacher_run": str(Path(run_dir).resolve()),
        "checkpoint": str(run.folder / WEIGHTS_NAME),
        "weights_sha256": _weights_digest(run.folder),
        "tokenizer": tokenizer_fingerprint(run.tokenizer),
        "max_length": run.cfg.data.max_seq_length,
    }
    written = []
    for name in names:
        spec = run.specs[name]
        started = time.perf_counter()
        enc = run.encode(
            spec,
            "train",
            limit=run.cfg.data.train_limit,
            double=spec.symmetric and run.cfg.data.double_unordered,
        )
        out = run.outputs(enc, name, desc=f"teach {name}")
        if run.accelerator.is_main_process:
            # Wall time of this task's predictions, kept so reports can add up compute.
            timed = {**manifest, "seconds": round(time.perf_counter() - started, 3)}
            written.append(write_teacher_predictions(Path(run_dir), enc, out, spec.kind, timed))
        run.accelerator.wait_for_everyone()
    return written
