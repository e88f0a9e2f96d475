"""Experiments: plan every run of the paper's variants, run what is missing, report.

An experiment YAML names tasks, seeds, variants and the settings of single-task and multi-task
runs. The plan is a list of runs with their dependencies (teachers before students); finished
runs are skipped and unfinished ones resume from their last checkpoint, so a stopped experiment
continues where it stopped. Teacher predictions are written on demand by the students' setup.
Runs of chosen variants can be reused from another experiment folder (``reuse_from``: hours of
teachers trained once), when they were trained with the settings this experiment would use.
After training, each finished run's inference speed is measured once (bamkd.experiments.speed).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bamkd.config import (
    ModelConfig,
    RunConfig,
    from_dict,
    load_yaml,
    merge_sections,
    resolve_paths,
    settings_diff,
)
from bamkd.errors import BamkdError, ConfigError, excerpt
from bamkd.experiments.speed import (
    SPEED_LOCK_NAME,
    SpeedSettings,
    measure_missing,
    measure_when_idle,
)
from bamkd.experiments.variants import VARIANTS, is_pairs, is_sized
from bamkd.runtime.runs import CONFIG_NAME, PLAN_NAME, is_finished, run_progress
from bamkd.runtime.stop import TrainingStopped
from bamkd.runtime.storage import RunInUse, RunLock, file_lock, write_text

log = logging.getLogger(__name__)

STUDENT_SEED_OFFSET = 1000
"""Born-again students are fresh models: a student's train.seed is the largest seed of its
teachers plus this, so its head initialisation, batch order and dropout differ from every
teacher's (a student of students adds it again). Runs without teachers use the experiment seed;
reports group all runs by the experiment seed."""


@dataclass
class Experiment:
    """What an experiment YAML holds."""

    name: str = "experiment"
    output_dir: str = "experiments/experiment"
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    variants: list[str] = field(default_factory=lambda: ["single", "multi", "bam"])
    base: dict[str, Any] = field(default_factory=dict)
    """RunConfig sections shared by every run (model, data, train, distill)."""
    single: dict[str, Any] = field(default_factory=dict)
    """Overrides for single-task runs (teachers and single-task students)."""
    multi: dict[str, Any] = field(default_factory=dict)
    """Overrides for multi-task runs."""
    finetune: dict[str, Any] = field(default_factory=dict)
    """Overrides for single-task fine-tuning after Multi or BAM (on top of ``single``)."""
    pairs_target: str | None = None
    """Target task of the task-combination study (pairs_multi, pairs_bam)."""
    submit: list[str] = field(default_factory=list)
    """Variants whose first-seed models write a GLUE test submission."""
    wnli_policy: str = "majority"
    student_seed_offset: int = STUDENT_SEED_OFFSET
    """A distilled student trains with its teachers' seed plus this (0: the same seed)."""
    student_sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Smaller students (multi_small, bam_small): size name -> model settings, e.g.
    ``{l3: {keep_every: 2}, l2: {keep_layers: [2, 5]}}`` (bamkd.student) or another encoder
    (``{name_or_path: ...}``). Run ids are ``bam_small/<size>/seed<n>``."""
    reuse_from: str | None = None
    """Another experiment folder whose finished runs of the ``reuse`` variants this experiment
    takes instead of training them (same run id, same settings, else an error)."""
    reuse: list[str] = field(default_factory=lambda: ["single"])
    """Variants whose runs come from ``reuse_from`` (default: the Single runs, the teachers)."""
    speed: SpeedSettings = field(default_factory=SpeedSettings)
    """How each finished run's inference speed is measured after training
    (bamkd.experiments.speed)."""
    source: str | None = None

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(
                f"unknown variant '{unknown[0]}'; known variants: {', '.join(VARIANTS)}"
            )
        if not self.tasks:
            raise ConfigError("experiment 'tasks' is empty")
        if not self.seeds:
            raise ConfigError("experiment 'seeds' is empty")
        if any(is_pairs(v) for v in self.variants):
            if self.pairs_target is None:
                raise ConfigError("pairs_* variants need 'pairs_target', e.g. pairs_target: rte")
            if self.pairs_target not in self.tasks:
                raise ConfigError(f"pairs_target '{self.pairs_target}' is not in tasks")
        bad = [v for v in self.submit if v not in self.variants]
        if bad:
            raise ConfigError(f"submit names variant '{bad[0]}', which is not in variants")
        self._check_sizes()
        unknown = [v for v in self.reuse if v not in VARIANTS]
        if unknown:
            raise ConfigError(
                f"reuse names '{unknown[0]}', which is not a variant; known: {', '.join(VARIANTS)}"
            )

    def _check_sizes(self) -> None:
        sized = [v for v in self.variants if is_sized(v)]
        if sized and not self.student_sizes:
            raise ConfigError(
                f"variant {sized[0]} needs 'student_sizes', a size name for each smaller "
                "student and its model settings, e.g. student_sizes: {l3: {keep_every: 2}}"
            )
        known = {f.name for f in fields(ModelConfig)}
        for size, model in self.student_sizes.items():
            if not _SIZE_NAME.fullmatch(size):
                raise ConfigError(
                    f"student_sizes: {excerpt(size)} is not a usable size name (it becomes part "
                    "of run ids and folders): letters, digits, '_', '-' and '.', e.g. l3"
                )
            if not model:
                raise ConfigError(
                    f"student_sizes.{size} is empty; give its model settings, e.g. "
                    "{keep_every: 2} or {keep_layers: [2, 5]}"
                )
            bad = sorted(set(model) - known)
            if bad:
                raise ConfigError(
                    f"student_sizes.{size}.{bad[0]} is not a model setting; known: "
                    f"{', '.join(sorted(known))}"
                )


_SIZE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


RUN_SECTIONS = ("model", "data", "train", "distill")
"""The sections of a run config; in an experiment they sit under base/single/multi/finetune."""


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read an experiment YAML; relative paths resolve against its folder."""
    from bamkd.config import apply_overrides

    path = Path(path)
    data = load_yaml(path)
    for text in overrides or []:
        section = text.split("=", 1)[0].split(".", 1)[0].strip()
        if section in RUN_SECTIONS:  # a run setting given as if to `bamkd train`
            shown = text if len(text) <= 80 else f"{text[:80]}..."
            raise ConfigError(
                f"override '{shown}': an experiment's run settings live under base, single, "
                f"multi or finetune; write base.{shown} for every run"
            )
    if overrides:
        apply_overrides(data, overrides)
    base_dir = path.resolve().parent
    for key in ("base", "single", "multi", "finetune"):
        if isinstance(data.get(key), dict):
            resolve_paths(data[key], base_dir)
    sizes = data.get("student_sizes")
    if isinstance(sizes, dict):  # another encoder's folder, relative to this file
        for model in sizes.values():
            if isinstance(model, dict):
                resolve_paths({"model": model}, base_dir)
    out = Path(str(data.get("output_dir", f"experiments/{data.get('name', path.stem)}")))
    data["output_dir"] = str(out if out.is_absolute() else (base_dir / out).resolve())
    if isinstance(data.get("reuse_from"), str):
        reused = Path(data["reuse_from"]).expanduser()
        # Resolved as output_dir is, so links do not make the same runs' paths differ.
        data["reuse_from"] = str((reused if reused.is_absolute() else base_dir / reused).resolve())
    data.setdefault("name", path.stem)
    data["source"] = str(path.resolve())
    return from_dict(Experiment, data, "experiment")


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    """One training run of the experiment."""

    id: str
    variant: str
    tasks: list[str]
    seed: int
    config: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    size: str | None = None
    """The ``student_sizes`` entry of a smaller student (its report row); None otherwise."""
    reused_from: str | None = None
    """The experiment folder this run is taken from (``reuse_from``); None: trained here."""

    @property
    def folder(self) -> Path:
        return Path(self.config["output_dir"])


class Planner:
    """Builds the run list of an experiment, sharing runs between variants (e.g. teachers)."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.root = Path(exp.output_dir) / "runs"
        self.runs: dict[str, PlannedRun] = {}

    def add(
        self,
        run_id: str,
        variant: str,
        tasks: list[str],
        seed: int,
        role: dict,
        extra: dict | None = None,
        deps: list[str] | None = None,
        size: str | None = None,
    ) -> str:
        if run_id not in self.runs:
            config = merge_sections(self.exp.base, role, extra or {})
            config.setdefault("data", {})["tasks"] = list(tasks)
            # A student's own seed (Planner.student) wins over the experiment seed.
            own_seed = (extra or {}).get("train", {}).get("seed", seed)
            config.setdefault("train", {})["seed"] = own_seed
            reused_from = self.exp.reuse_from if variant in self.exp.reuse else None
            root = Path(reused_from) / "runs" if reused_from else self.root
            config["output_dir"] = str(root / run_id)
            self.runs[run_id] = PlannedRun(
                run_id, variant, list(tasks), seed, config, deps or [], size, reused_from
            )
        return run_id

    # Building blocks ---------------------------------------------------------------------

    def single(self, task: str, seed: int) -> str:
        return self.add(f"single/{task}/seed{seed}", "single", [task], seed, self.exp.single)

    def multi(
        self,
        seed: int,
        tasks: list[str] | None = None,
        variant: str = "multi",
        prefix: str = "multi",
    ) -> str:
        return self.add(
            f"{prefix}/seed{seed}", variant, tasks or self.exp.tasks, seed, self.exp.multi
        )

    def student(
        self,
        run_id: str,
        variant: str,
        tasks: list[str],
        seed: int,
        teachers: dict[str, str],
        role: dict,
        extra: dict | None = None,
        seed_offset: int | None = None,
        size: str | None = None,
    ) -> str:
        """A distilled run; it trains on its teachers' largest seed plus ``seed_offset``
        (default: the experiment's ``student_seed_offset``)."""
        distill = {"teachers": {t: [str(self.runs[teachers[t]].folder)] for t in tasks}}
        teacher_seed = max(self.runs[r].config["train"]["seed"] for r in teachers.values())
        offset = self.exp.student_seed_offset if seed_offset is None else seed_offset
        fresh = {"train": {"seed": teacher_seed + offset}}
        return self.add(
            run_id,
            variant,
            tasks,
            seed,
            role,
            merge_sections({"distill": distill}, extra or {}, fresh),
            sorted(set(teachers.values())),
            size,
        )

    def bam(
        self,
        seed: int,
        tasks: list[str] | None = None,
        run_id: str | None = None,
        variant: str = "bam",
        extra: dict | None = None,
        seed_offset: int | None = None,
        size: str | None = None,
    ) -> str:
        tasks = tasks or self.exp.tasks
        teachers = {t: self.single(t, seed) for t in tasks}
        return self.student(
            run_id or f"bam/seed{seed}",
            variant,
            tasks,
            seed,
            teachers,
            self.exp.multi,
            extra,
            seed_offset,
            size,
        )

    def finetune(self, source: str, variant: str, task: str, seed: int) -> str:
        role = merge_sections(self.exp.single, self.exp.finetune)
        extra = {"model": {"init_from": str(self.runs[source].folder)}}
        return self.add(
            f"{variant}/{task}/seed{seed}", variant, [task], seed, role, extra, [source]
        )

    def plan(self) -> list[PlannedRun]:
        """Every run of the experiment's variants and seeds, in dependency order."""
        for seed in self.exp.seeds:
            for variant in self.exp.variants:
                VARIANTS[variant].plan(self, seed)
        return self.ordered()

    def ordered(self) -> list[PlannedRun]:
        """Runs in an order where every run comes after its dependencies."""
        done: set[str] = set()
        order: list[PlannedRun] = []

        def visit(run_id: str) -> None:
            if run_id in done:
                return
            done.add(run_id)
            for dep in self.runs[run_id].deps:
                visit(dep)
            order.append(self.runs[run_id])

        for run_id in self.runs:
            visit(run_id)
        return order


def plan_experiment(exp: Experiment) -> list[PlannedRun]:
    """All runs of ``exp`` in dependency order, each config validated before anything runs."""
    runs = Planner(exp).plan()
    for run in runs:
        try:
            from_dict(RunConfig, copy.deepcopy(run.config))
        except ConfigError as exc:
            raise ConfigError(f"experiment run {run.id}: {exc}") from None
    return runs


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """What ``run_experiment`` did and where the report is."""

    experiment: Experiment
    runs: list[PlannedRun]
    trained: list[str]
    skipped: list[str]
    seconds: float
    report_lines: list[str] = field(default_factory=list)
    by_others: list[str] = field(default_factory=list)
    """Runs other sittings finished while this one ran."""
    in_progress: dict[str, str] = field(default_factory=dict)
    """Runs other sittings were still training when this one ended: run id -> process id."""

    def summary(self) -> str:
        counts = [f"{len(self.trained)} trained now", f"{len(self.skipped)} already finished"]
        if self.by_others:
            counts.append(f"{len(self.by_others)} finished by other sittings")
        if self.in_progress:
            counts.append(f"{len(self.in_progress)} still training in other sittings")
        lines = [
            f"experiment {self.experiment.name}: {len(self.runs)} runs ({', '.join(counts)}) "
            f"in {self.seconds / 60:.1f} min",
            *self.report_lines,
        ]
        return "\n".join(lines)


PLAN_LOCK_NAME = ".plan.lock"
"""Held in the experiment folder while a sitting merges its runs into plan.json."""

POLL_SECONDS = 30.0
"""How often a sitting waiting for another sitting's run looks again."""


def run_experiment(
    exp: Experiment,
    *,
    only: list[str] | None = None,
    dry_run: bool = False,
    poll_seconds: float = POLL_SECONDS,
) -> ExperimentResult:
    """Train every planned run that is not finished, then write the report and submissions.

    Several sittings of one experiment (``bamkd run`` started again in another terminal, on
    another GPU, or with one CPU thread each) share its runs: each trains the runs no other
    sitting holds, and waits for a teacher another sitting is training before its students.
    """
    start = time.perf_counter()
    planned = plan_experiment(exp)
    runs = _only(planned, only, exp) if only else planned
    root = Path(exp.output_dir)
    if dry_run:
        done = [r.id for r in runs if is_finished(r.folder)]
        return ExperimentResult(exp, runs, [], done, 0.0, ["plan:", *map(_plan_line, runs)])
    _check_reused(exp, runs)
    _check_inputs(exp, runs)  # nothing is created before every run's inputs are known to be usable
    root.mkdir(parents=True, exist_ok=True)
    _write_plan(root, exp, runs)  # before training: a stopped sitting still leaves its plan
    skipped = [r.id for r in runs if is_finished(r.folder)]  # reused runs are all finished
    with _training_sitting(root):
        trained, in_progress = _train_unfinished(runs, poll_seconds)
    by_others = [
        r.id
        for r in runs
        if r.id not in skipped and r.id not in trained and r.id not in in_progress
    ]
    if exp.speed.measure:
        _measure_speed(root, exp, planned)
    from bamkd.experiments.report import report_path

    report_lines = report_path(root)
    if exp.submit:
        report_lines += _write_submissions(exp, planned)
    return ExperimentResult(
        exp,
        runs,
        trained,
        skipped,
        time.perf_counter() - start,
        report_lines,
        by_others,
        in_progress,
    )


def _train_unfinished(
    runs: list[PlannedRun], poll_seconds: float
) -> tuple[list[str], dict[str, str]]:
    """Train the unfinished runs in plan order (teachers first), sharing them with any other
    sitting of the experiment; return the runs trained here, and the runs other sittings are
    still training (run id -> process id).

    A run another process holds is passed over; a run whose teachers are unfinished waits for
    them. Passes repeat until nothing is left to train here: after a pass that trained
    something (a held run may have been released meanwhile, by a sitting stopped with
    SIGTERM), or while a run waits for another sitting's teacher (polled every
    ``poll_seconds``). Runs only other sittings hold are left to them.
    """
    from bamkd.train import train

    shared = _one_process_sitting()
    index = {r.id: r for r in runs}
    position = {r.id: i for i, r in enumerate(runs, 1)}
    trained: list[str] = []
    told: dict[str, str] = {}  # run id -> the last reason logged for not training it

    def tell(run_id: str, reason: str) -> None:
        if told.get(run_id) != reason:  # once per reason: a waiting sitting polls
            if not told:
                _warn_if_threads_collide()
            log.info("%s: %s", run_id, reason)
            told[run_id] = reason

    while True:
        trained_in_pass = False
        held: dict[str, str] = {}
        waiting = False
        for run in runs:
            # The holder before the finished state: a sitting writes the state before it lets
            # go of the lock, so a run free here and unfinished below is not being finished.
            holder = RunLock.holder(run.folder) if shared else None
            if is_finished(run.folder):
                continue
            if holder is None:
                pending = [d for d in run.deps if not is_finished(index[d].folder)]
                if pending:
                    by = [f"{d} (process {held[d]})" if d in held else d for d in pending]
                    tell(run.id, f"waiting for {', '.join(by)} to finish")
                    waiting = True
                    continue
                log.info("[%d/%d] training %s", position[run.id], len(runs), run.id)
                holder = _train_run(train, run, shared)
                if holder is None:
                    trained.append(run.id)
                    trained_in_pass = True
                    continue
            held[run.id] = holder
            tell(run.id, f"process {holder} is training it")
        if trained_in_pass:
            continue  # at once: a teacher trained here may have freed a waiting student
        if not waiting:
            return trained, held
        _wait(poll_seconds)


def _one_process_sitting() -> bool:
    """Whether this sitting is one process, and so may share the experiment with others.

    The processes of one torchrun or accelerate sitting train each run together (and time
    inference together) and must take the same decisions, but only the main process holds a
    run's lock, so the others would see it held. Such a sitting trains every unfinished run in
    order and measures speed, as one process does without other sittings.
    """
    from accelerate.utils import get_int_from_env

    # torchrun and accelerate set WORLD_SIZE; MPI launchers (accelerate's multi-CPU) the others.
    size = get_int_from_env(
        ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1
    )
    return size == 1


def _wait(seconds: float) -> None:
    """Sleep between passes of a sitting waiting for another's run (tests replace it)."""
    time.sleep(seconds)


def _train_run(train: Any, run: PlannedRun, shared: bool) -> str | None:
    """Train (or resume) one run; None when it finished, or (``shared``) the process id of
    another sitting that took it first."""
    cfg = from_dict(RunConfig, copy.deepcopy(run.config))
    try:
        train(cfg, resume=True)
    except TrainingStopped:
        raise  # not a failure: its message names the checkpoint (in the run's folder)
    except RunInUse as exc:
        if shared:
            return exc.holder
        raise BamkdError(f"run {run.id}: {exc}") from None
    except BamkdError as exc:
        raise BamkdError(
            f"run {run.id} failed: {exc} (fix the cause and run the same command again; "
            "finished runs are kept and this one resumes from its last checkpoint)"
        ) from None
    return None


def _warn_if_threads_collide() -> None:
    """Two CPU sittings that each use every core slow each other down far more than they
    gain (benchmarks/sittings.py); say so, with the fix."""
    import torch

    if torch.cuda.is_available():
        return
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    if 2 * threads > cores:
        log.warning(
            "another sitting trains this experiment beside this one, which uses %d CPU threads "
            "of %d cores: start each sitting with OMP_NUM_THREADS=%d (cores / sittings) or "
            "they slow each other down (and set speed.threads, or the last sitting times "
            "inference with its share)",
            threads,
            cores,
            max(1, cores // 2),
        )


@contextlib.contextmanager
def _training_sitting(root: Path) -> Iterator[None]:
    """Hold the experiment's speed lock shared while this sitting trains (or waits to), so
    that no sitting times inference meanwhile: timing beside training measures the load."""
    if not _one_process_sitting():
        yield  # its processes measure together, after training together
        return
    with file_lock(root / SPEED_LOCK_NAME, shared=True, wait=False) as free:
        if free:
            yield
            return
    log.info("another sitting is measuring inference speed; waiting for it to finish")
    with file_lock(root / SPEED_LOCK_NAME, shared=True, wait=True):
        yield


def _measure_speed(root: Path, exp: Experiment, planned: list[PlannedRun]) -> None:
    """Measure the inference speed of the experiment's finished runs, unless another sitting
    is still training (the last sitting to finish measures)."""
    folders = [r.folder for r in planned]
    if not _one_process_sitting():
        measure_missing(folders, exp.speed)  # every process takes part in each timed pass
        return
    # After all training, so no run waits for it. Every finished run of the experiment
    # without a measurement: this sitting's, those other sittings left to the last one, older
    # and reused runs (their folders get a speed.json).
    if not measure_when_idle(root, folders, exp.speed):
        log.info(
            "inference speed not measured now: another sitting of this experiment is "
            "training or measuring (the last sitting to finish measures every run; or run "
            "the same command again later)"
        )


def _only(runs: list[PlannedRun], only: list[str], exp: Experiment) -> list[PlannedRun]:
    """The runs of the variants in ``only`` and the runs they depend on (their teachers).

    Raises:
        ConfigError: a name that is not a variant, or not one of this experiment's.
    """
    for name in only:
        if name not in VARIANTS:
            raise ConfigError(
                f"--only: unknown variant {excerpt(name)}; known variants: {', '.join(VARIANTS)}"
            )
        if name not in exp.variants:
            raise ConfigError(
                f"--only: variant '{name}' is not in this experiment's variants "
                f"({', '.join(exp.variants)}); add it to 'variants' in {exp.source or 'the YAML'}"
            )
    index = {r.id: r for r in runs}
    needed: set[str] = set()

    def need(run_id: str) -> None:
        if run_id not in needed:
            needed.add(run_id)
            for dep in index[run_id].deps:
                need(dep)

    for run in runs:
        if run.variant in only:
            need(run.id)
    return [r for r in runs if r.id in needed]


def _plan_line(run: PlannedRun) -> str:
    """One dry-run line: done, running (a process holds the run), todo, or (for a reused run
    that is not there) missing; an unfinished run says where it stands."""
    finished = is_finished(run.folder)
    if run.reused_from is not None:
        return f"{'done' if finished else 'missing'}  {run.id}  (reused from {run.reused_from})"
    if finished:
        return f"done  {run.id}"
    at = run_progress(run.folder)
    of = f" of {at.total_steps}" if at.total_steps else ""
    if at.holder is not None:
        where = f": step {at.reached}{of}" if at.reached is not None else ""
        return f"running  {run.id}  (process {at.holder}{where})"
    if at.checkpoint_step is not None:
        return f"todo  {run.id}  (resumes from its checkpoint at step {at.checkpoint_step}{of})"
    return f"todo  {run.id}"


REUSE_IGNORED = (
    "output_dir",
    "data.cache_dir",
    "train.log_every",
    "train.progress",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every_epoch",
    "train.malloc_mmap_threshold_mib",
)
"""Settings a reused run may differ in: where it is written, how often it logs, saves and
evaluates on the way, how memory is mapped. None of them changes the trained model."""


def _check_reused(exp: Experiment, runs: list[PlannedRun]) -> None:
    """Every reused run is finished in ``reuse_from`` and was trained with this experiment's
    settings for it (REUSE_IGNORED aside), else a ConfigError saying which and how to fix it."""
    reused = [r for r in runs if r.reused_from is not None]
    if not reused:
        return
    source = Path(reused[0].reused_from or "")
    if not source.is_dir():
        raise ConfigError(
            f"reuse_from: {source} does not exist; name the folder of the experiment whose "
            f"{', '.join(exp.reuse)} runs this one reuses (its output_dir), or leave reuse_from "
            "out to train them here"
        )
    missing = [r.id for r in reused if not is_finished(r.folder)]
    if missing:
        shown = ", ".join(missing[:4]) + (
            f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        )
        raise ConfigError(
            f"reuse_from: {len(missing)} runs to reuse are not finished in {source}: {shown}; "
            f"train them in that experiment first (bamkd run <its YAML> --only "
            f"{' '.join(exp.reuse)}), or leave reuse_from out to train them here"
        )
    for run in reused:
        try:
            saved = from_dict(RunConfig, load_yaml(run.folder / CONFIG_NAME)).to_dict()
        except BamkdError as exc:
            raise ConfigError(f"reuse_from: cannot read run {run.id}'s config: {exc}") from None
        wanted = from_dict(RunConfig, copy.deepcopy(run.config)).to_dict()
        diff = {k: v for k, v in settings_diff(saved, wanted).items() if k not in REUSE_IGNORED}
        if diff:
            shown = "; ".join(
                f"{k}={there!r} there, {here!r} here" for k, (there, here) in diff.items()
            )
            raise ConfigError(
                f"reuse_from: run {run.id} in {source} was trained with other settings than "
                f"this experiment gives it ({shown}); make the settings match, or leave "
                "reuse_from out to train it here"
            )


def _check_inputs(exp: Experiment, runs: list[PlannedRun]) -> None:
    """Check the experiment folder and every unfinished run's inputs (tasks, data files, model
    folder, max_seq_length for the tokenizer) before the experiment folder is created."""
    from bamkd.runtime.storage import check_output_folder
    from bamkd.train import check_run_inputs

    try:
        check_output_folder(exp.output_dir, "output_dir")
    except BamkdError as exc:
        raise BamkdError(f"{exp.source or 'experiment'}: {exc}") from None
    tokenizers: dict = {}  # one tokenizer load for all runs that share it
    for run in runs:
        if is_finished(run.folder):
            continue
        try:
            check_run_inputs(from_dict(RunConfig, copy.deepcopy(run.config)), tokenizers=tokenizers)
        except BamkdError as exc:
            raise type(exc)(f"experiment run {run.id}: {exc}") from None


def _write_plan(root: Path, exp: Experiment, runs: list[PlannedRun]) -> None:
    """Record this sitting's runs in plan.json, keeping the runs earlier sittings planned.

    A long study is run in pieces (``--only``, ``seeds=[0]`` for the smaller studies), and the
    report reads plan.json, so a sitting that planned fewer runs must not drop the others.
    """
    from bamkd.runtime.storage import read_json, write_json

    entries = [
        {
            "id": r.id,
            "variant": r.variant,
            "tasks": r.tasks,
            "seed": r.seed,
            "deps": r.deps,
            "folder": str(r.folder),
            "size": r.size,
            "reused_from": r.reused_from,
        }
        for r in runs
    ]
    summary: dict[str, Any] = {
        "name": exp.name,
        "output_dir": exp.output_dir,
        "tasks": list(exp.tasks),
        "seeds": list(exp.seeds),
        "variants": list(exp.variants),
        "pairs_target": exp.pairs_target,
        "student_sizes": list(exp.student_sizes),
        "speed": asdict(exp.speed),
    }
    path = root / PLAN_NAME
    # Sittings started together would otherwise each drop the runs only the other planned.
    with file_lock(root / PLAN_LOCK_NAME, wait=True):
        if path.is_file():
            earlier = read_json(path)
            planned_now = {e["id"] for e in entries}
            kept = [e for e in earlier.get("runs", []) if e.get("id") not in planned_now]
            if kept:
                log.info("plan.json: keeping %d runs planned by earlier sittings", len(kept))
            entries += kept
            before = earlier.get("experiment", {})
            summary["tasks"] += [t for t in before.get("tasks", []) if t not in summary["tasks"]]
            summary["seeds"] = sorted(set(summary["seeds"]) | set(before.get("seeds", [])))
            summary["variants"] += [
                v for v in before.get("variants", []) if v not in summary["variants"]
            ]
            summary["pairs_target"] = summary["pairs_target"] or before.get("pairs_target")
            summary["student_sizes"] += [
                s for s in before.get("student_sizes", []) if s not in summary["student_sizes"]
            ]
        write_json(path, {"experiment": summary, "source": exp.source, "runs": entries})


def _write_submissions(exp: Experiment, runs: list[PlannedRun]) -> list[str]:
    """Write each ``submit`` variant's GLUE submission from its first-seed runs.

    A submission that cannot be written yet (its runs are not trained, e.g. after ``--only
    multi``, or the test files are missing) is a warning line, not a failure: the training this
    command did succeeded.
    """
    from bamkd.outputs.submission import submit

    lines = []
    seed = exp.seeds[0]
    for variant in exp.submit:
        chosen = [r for r in runs if r.variant == variant and r.seed == seed]
        unfinished = [r.id for r in chosen if not is_finished(r.folder)]
        out = Path(exp.output_dir) / "submission" / variant
        if not chosen or unfinished:
            why = (
                f"run {unfinished[0]} is not trained yet; run this command without --only, or "
                f"with --only {variant}"
                if unfinished
                else f"no {variant} run of seed {seed} is planned"
            )
            lines.append(_submission_warning(variant, why))
            continue
        # The WNLI majority class and the test files come from the runs' own GLUE folder.
        glue_dir = chosen[0].config.get("data", {}).get("glue_dir")
        try:
            report = submit(
                [str(r.folder) for r in chosen], out, glue_dir=glue_dir, wnli_policy=exp.wnli_policy
            )
        except BamkdError as exc:
            lines.append(_submission_warning(variant, str(exc)))
            continue
        lines += [f"submission ({variant}, seed {seed}):", report.summary()]
    return lines


def _submission_warning(variant: str, why: str) -> str:
    line = f"warning: submission ({variant}) not written: {why}"
    log.warning("%s", line.removeprefix("warning: "))
    return line


# --------------------------------------------------------------------------------------------
# The embedded demo
# --------------------------------------------------------------------------------------------


def demo_experiment(out: Path, quick: bool = False) -> Experiment:
    """The built-in experiment: the synthetic suite, a tiny encoder, Single/Multi/BAM."""
    from bamkd.demo import TASKS, write_demo_suite

    out = out.resolve()
    task_files = [str(p) for p in write_demo_suite(out / "data")]
    base = {
        "model": {"name_or_path": "bamkd-tiny"},
        "data": {"task_files": task_files, "max_seq_length": 64},
        "train": {"log_every": 10, "eval_batch_size": 100, "eval_every_epoch": True},
    }
    single = {"train": {"epochs": 2 if quick else 6, "batch_size": 16, "lr": 1e-3}}
    multi = {"train": {"epochs": 2 if quick else 6, "batch_size": 32, "lr": 1e-3}}
    exp = Experiment(
        name="demo",
        output_dir=str(out),
        tasks=list(TASKS),
        seeds=[0] if quick else [0, 1, 2],
        variants=["single", "multi", "bam"],
        base=base,
        single=single,
        multi=multi,
    )
    # The same experiment as a file, so it can be rerun or edited: bamkd run <out>/experiment.yaml
    settings = {k: v for k, v in asdict(exp).items() if k != "source"}
    write_text(out / "experiment.yaml", yaml.safe_dump(settings, sort_keys=False))
    return exp
