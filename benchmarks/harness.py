"""How every benchmark runs a measurement: in a fresh Python process, on a recorded machine.

Not part of the library. Each measurement runs in its own process (so the peak resident memory
it reports belongs to that measurement alone) through ``run_worker``; the child calls back into
the script with ``--worker SPEC.json`` and writes its result as JSON (``worker_main``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = REPO.parent / "shared" / "glue"

# Quiet, offline children: no hub, no telemetry, no tokenizer fork warnings, no bars.
CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "BAMKD_PROGRESS": "0",
    "PYTHONWARNINGS": "ignore",
}


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import accelerate
    import torch
    import transformers

    import bamkd

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "bamkd": getattr(bamkd, "__version__", "unknown"),
        "git_commit": _git_commit(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty-src" if dirty.stdout.strip() else "")


# --------------------------------------------------------------------------------------------
# Fresh-process workers
# --------------------------------------------------------------------------------------------


def peak_rss_mib() -> float | None:
    """This process's resident-set high-water mark (VmHWM), MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(
    script: str | Path,
    spec: dict[str, Any],
    *,
    timeout: float | None = None,
    quiet: bool = True,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script --worker SPEC --result OUT`` in a fresh process; return its JSON result.

    The child's own peak RSS (``peak_rss_mib``, read inside it) is in the result; the parent adds
    ``child_maxrss_mib`` from ``wait4`` (the same high-water mark, measured by the kernel) and
    ``process_wall_s`` (start to exit, model loading included). ``env`` adds to the child's
    environment.
    """
    with tempfile.TemporaryDirectory(prefix="bamkd-bench-") as tmp:
        spec_path, out_path, log_path = (Path(tmp) / n for n in ("spec.json", "out.json", "log"))
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, **CHILD_ENV, **(env or {})}
        cmd = [sys.executable, str(script), "--worker", str(spec_path), "--result", str(out_path)]
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            deadline = None if timeout is None else start + timeout
            status, usage = 0, None
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out_path.is_file():
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"worker {spec.get('kind')} failed (exit {proc.returncode}):\n{tail}"
            )
        if not quiet:
            print(log_path.read_text(errors="replace"))
        result = json.loads(out_path.read_text())
    result["child_maxrss_mib"] = usage.ru_maxrss / 1024 if usage is not None else None
    result["process_wall_s"] = wall
    return result


def worker_main(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Entry point of a child: ``--worker SPEC --result OUT``."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    argv = sys.argv
    spec = json.loads(Path(argv[argv.index("--worker") + 1]).read_text())
    out = Path(argv[argv.index("--result") + 1])
    result = handlers[spec["kind"]](spec)
    result["peak_rss_mib"] = peak_rss_mib()
    if _cuda():
        import torch

        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out.write_text(json.dumps(result, default=json_default))


def is_worker() -> bool:
    return "--worker" in sys.argv


def entry(
    main: Callable[[], int], handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]
) -> None:
    """A benchmark script's ``__main__``: a child (``--worker``) runs its handler, else ``main``."""
    if is_worker():
        worker_main(handlers)
    else:
        sys.exit(main())


def finish(out: str | Path, work: Path, keep: bool) -> None:
    """Say where the results went; remove the scratch folder unless the user named it."""
    print(f"\nresults written to {out}")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def sync() -> None:
    if _cuda():
        import torch

        torch.cuda.synchronize()


def json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)
