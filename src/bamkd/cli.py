"""The ``bamkd`` command. The only module that reads argv and the environment.

Errors a user can fix (bad config keys, missing files, malformed rows) end with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bamkd import __version__
from bamkd.errors import BamkdError
from bamkd.experiments.variants import VARIANTS
from bamkd.runtime.stop import TrainingStopped
from bamkd.tasks.records import RECORD_FORMATS

log = logging.getLogger("bamkd")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "accelerate", "urllib3", "matplotlib", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    from bamkd.metrics import average_score, task_score

    lines = []
    for task, values in metrics.items():
        parts = " ".join(f"{k}={100 * v:.2f}" for k, v in values.items())
        lines.append(f"  {task:<18} {parts}  (score {100 * task_score(values):.2f})")
    with contextlib.suppress(BamkdError):  # no average when every task is excluded (WNLI)
        lines.append(f"  {'average':<18} {100 * average_score(metrics):.2f}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from bamkd.config import build_config
    from bamkd.train import train

    cfg = build_config(args.config, args.overrides)
    metrics = train(cfg, resume=args.resume, trackers=args.track)
    print(f"run folder: {cfg.output_dir}\ndev metrics:\n{_format_metrics(metrics)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bamkd.evaluate import evaluate_run

    metrics = evaluate_run(args.run)
    print(json.dumps(metrics, indent=2) if args.json else _format_metrics(metrics))
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    from bamkd.teach import teach

    for path in teach(args.run, args.tasks):
        print(f"wrote {path}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from bamkd.outputs.submission import submit
    from bamkd.runtime.storage import check_output_folder

    check_output_folder(args.out, "--out")  # before minutes of predicting
    report = submit(args.runs, args.out, glue_dir=args.glue_dir, wnli_policy=args.wnli)
    print(report.summary())
    return 0


def _split_only(only: list[str] | None, overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """Take back the key=value overrides that ``--only``'s nargs swallowed after its names.

    Variant names never contain "=", so a token with one is an override wherever it stands.
    """
    if only is None:
        return None, overrides
    names = [t for t in only if "=" not in t]
    extra = [t for t in only if "=" in t]
    if not names:
        raise BamkdError("--only needs at least one variant name, e.g. --only single multi")
    return names, [*overrides, *extra]


def cmd_run(args: argparse.Namespace) -> int:
    from bamkd.experiments.pipeline import load_experiment, run_experiment
    from bamkd.runtime.devices import refuse_sharded_launch

    refuse_sharded_launch()  # before the experiment folder and its plan are written

    only, overrides = _split_only(args.only, args.overrides)
    experiment = load_experiment(args.experiment, overrides)
    result = run_experiment(experiment, only=only, dry_run=args.dry_run)
    print(result.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bamkd.experiments.pipeline import demo_experiment, run_experiment
    from bamkd.runtime.storage import check_output_folder

    check_output_folder(args.out, "--out")
    experiment = demo_experiment(Path(args.out), quick=args.quick)
    result = run_experiment(experiment)
    print(result.summary())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bamkd.experiments.report import report_path

    for line in report_path(Path(args.path), measure_speed=args.measure_speed):
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bamkd.outputs.export import export_run
    from bamkd.runtime.storage import check_output_folder

    check_output_folder(args.out, "--out")
    result = export_run(args.run, args.out, per_task=not args.multitask_only, tasks=args.tasks)
    print(result.summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from bamkd.outputs.predict import Predictor, format_predictions, read_inputs
    from bamkd.runtime.storage import write_text

    if bool(args.task) == bool(args.all_heads):
        raise BamkdError("bamkd predict needs --task TASK or --all-heads (every head), not both")
    if args.input == "-":
        text, source = sys.stdin.read(), "standard input"
    else:
        path = Path(args.input)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise BamkdError(f"{path}: input file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BamkdError(f"{path}: cannot read the input ({exc})") from None
        source = str(path)
    kwargs = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    predictor = Predictor.from_pretrained(args.run, **kwargs)
    if args.task:
        spec = predictor.spec(args.task)
        table = read_inputs(text, source=source, fmt=args.format, pair=spec.is_pair, task=spec)
    else:
        table = read_inputs(text, source=source, fmt=args.format)
    predictions: Any = (
        predictor.predict_all(table.texts)
        if args.all_heads
        else predictor.predict(args.task, table.texts)
    )
    out_format = args.output_format or (
        "tsv" if args.output not in (None, "-") and args.output.endswith(".tsv") else "jsonl"
    )
    output = format_predictions(table.ids, predictions, out_format)
    if args.output in (None, "-"):
        sys.stdout.write(output)
        sys.stdout.flush()
    else:
        write_text(args.output, output)
        log.info("wrote %d predictions to %s", len(table.ids), args.output)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from bamkd.taskcheck import builtin_tasks_table, check_task_file

    if args.action is None or args.action == "list":
        if args.files:
            raise BamkdError(
                "bamkd tasks lists the built-in tasks; to check files: bamkd tasks check FILE.yaml"
            )
        print(builtin_tasks_table())
        return 0
    if not args.files:
        raise BamkdError("bamkd tasks check needs a task file: bamkd tasks check FILE.yaml")
    if args.examples < 0 or (args.limit is not None and args.limit < 1):
        raise BamkdError("--examples must be 0 or more and --limit 1 or more")
    for i, file in enumerate(args.files):
        if i:
            print()
        print(
            check_task_file(
                file,
                model=args.model,
                max_seq_length=args.max_seq_length,
                examples=args.examples,
                limit=args.limit,
            )
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bamkd",
        description="BAM! Born-Again Multi-Task Networks: teachers, teacher annealing, students.",
    )
    parser.add_argument("--version", action="version", version=f"bamkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run (single-task, multi-task or distilled)")
    p.add_argument("--config", "-c", required=True, help="preset YAML file or builtin preset name")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir")
    p.add_argument(
        "--track",
        action="append",
        choices=["tensorboard", "wandb", "mlflow"],
        help="also log to this tracker (opt-in; repeatable)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="recompute dev metrics of a finished run")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("teach", help="write a run's predictions on its training sets")
    p.add_argument("run")
    p.add_argument("--tasks", nargs="*", help="only these tasks (default: every head)")
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser(
        "run",
        help="run an experiment: teachers, predictions, students, report",
        description="bamkd run: train every unfinished run of an experiment, then report. "
        "Started again on the same experiment (another terminal or GPU; on CPU give each "
        "sitting OMP_NUM_THREADS=cores/sittings) it shares the runs with the sittings already "
        "running.",
    )
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the experiment")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="VARIANT",
        help=f"only these variants ({', '.join(VARIANTS)}) and the runs they depend on; "
        "key=value overrides may follow",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the whole pipeline on a built-in synthetic suite")
    p.add_argument("--out", default="bamkd-demo", help="experiment folder (default: bamkd-demo)")
    p.add_argument("--quick", action="store_true", help="one seed, fewer epochs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("submit", help="GLUE test-set submission files and zip")
    p.add_argument("runs", nargs="+", help="run folders; each task comes from the first with it")
    p.add_argument("--out", required=True)
    p.add_argument("--glue-dir", default=None, help="GLUE folder (default: the run's)")
    p.add_argument("--wnli", default="majority", choices=["majority", "model", "skip"])
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("report", help="plots and a markdown summary of a run or an experiment")
    p.add_argument("path")
    p.add_argument(
        "--measure-speed",
        action="store_true",
        help="first measure the inference speed of finished runs that have none stored "
        "(runs from before bamkd measured it; writes speed.json into each)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "export",
        help="a multi-task model folder and one Hugging Face classifier folder per task",
    )
    p.add_argument("run", help="run folder (or model folder)")
    p.add_argument("--out", required=True, help="export folder (new, empty or an earlier export)")
    p.add_argument("--tasks", nargs="*", help="per-task folders for these tasks only")
    p.add_argument(
        "--multitask-only", action="store_true", help="write the multi-task folder alone"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="predict labels or scores for new text")
    p.add_argument("run", help="run folder, model folder or exported multitask folder")
    p.add_argument("--task", help="the task whose head predicts")
    p.add_argument(
        "--input",
        required=True,
        help=f"{', '.join(RECORD_FORMATS).upper()} file with a header or keys; - for stdin",
    )
    p.add_argument(
        "--format",
        choices=list(RECORD_FORMATS),
        help="input format (default: from the file name, else the first line): "
        + "; ".join(f"{f.name}: {f.what}" for f in RECORD_FORMATS.values()),
    )
    p.add_argument("--output", default="-", help="output file (default: standard output)")
    p.add_argument(
        "--output-format",
        choices=["jsonl", "tsv"],
        help="default: tsv for a .tsv output file, else jsonl",
    )
    p.add_argument(
        "--all-heads",
        action="store_true",
        help="instead of --task: every head that takes this input shape, on one encoder pass",
    )
    p.add_argument("--batch-size", type=int, default=None, help="rows per forward pass")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "tasks",
        help="list the built-in tasks, or check task files and their data without training",
        description="bamkd tasks: list the built-in tasks. bamkd tasks check FILE.yaml: "
        "validate a task file and its data (rows per split, labels, tokenized examples, lengths).",
    )
    p.add_argument("action", nargs="?", choices=["list", "check"], help="default: list")
    p.add_argument("files", nargs="*", help="task YAML files (check)")
    p.add_argument(
        "--model",
        default="bamkd-tiny",
        help="tokenizer to measure lengths with: the encoder you will train (a folder, 'minilm' "
        "or a hub id); default: the built-in test encoder bamkd-tiny",
    )
    p.add_argument("--max-seq-length", type=int, default=128, help="data.max_seq_length (128)")
    p.add_argument("--examples", type=int, default=3, help="tokenized examples per split (3)")
    p.add_argument("--limit", type=int, default=None, help="read only the first N rows per split")
    p.set_defaults(func=cmd_tasks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return _run_command(args)
    except TrainingStopped as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_status
    except BamkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A disk that fills or a folder that turns read-only mid-run: no earlier check sees it.
        from bamkd.runtime.storage import filesystem_error

        error = filesystem_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (bamkd run resumes by itself)", file=sys.stderr)
        return 130


def _run_command(args: argparse.Namespace) -> int:
    try:
        status = args.func(args)
    except BaseException:
        # The error on its way out is the one to report, not a group that cannot be left
        # cleanly because a peer died.
        with contextlib.suppress(Exception):
            _leave_process_group()
        raise
    _leave_process_group()
    return status


def _leave_process_group() -> None:
    """Destroy the torchrun/accelerate process group once the command is done.

    Once per command, not per run: one `bamkd run` sitting trains many runs in one group.
    """
    torch = sys.modules.get("torch")  # a command that never imported torch joined no group
    if torch is None or not torch.distributed.is_available():
        return
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
