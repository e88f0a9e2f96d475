"""Resumable checkpoints: model, optimizer, RNG states and trainer position, written atomically.

Everything else a run needs to continue exactly (learning rate, lambda, the order of batches) is
a pure function of the step and the seed, so the step is the only position stored. A checkpoint
folder appears under its final name only when complete; a truncated or corrupted one is named
and skipped, never loaded.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bamkd.errors import BamkdError
from bamkd.runtime.storage import atomic_dir

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_NAME = "trainer_state.json"


@dataclass
class TrainerState:
    """Where a run is; saved with every checkpoint and at the end of training."""

    step: int = 0
    total_steps: int = 0
    finished: bool = False
    world_size: int = 1
    elapsed_seconds: float = 0.0
    examples_seen: int = 0


def optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten ``optimizer.state_dict()`` into safetensors tensors plus JSON-able metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    folder: Path,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    trainer_state: TrainerState,
    rng_states: list[dict[str, torch.Tensor]],
) -> None:
    """Write one checkpoint folder atomically (rng_states: one per process)."""
    with atomic_dir(folder) as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
        save_file(weights, str(tmp / "model.safetensors"))
        tensors, meta = optimizer_to_tensors(optimizer_state)
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"meta": json.dumps(meta)})
        for rank, states in enumerate(rng_states):
            save_file(states, str(tmp / f"rng-rank{rank}.safetensors"))
        (tmp / STATE_NAME).write_text(json.dumps(asdict(trainer_state), indent=2) + "\n")


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    folder: Path
    model: dict[str, torch.Tensor]
    optimizer: dict
    state: TrainerState
    rng: dict[str, torch.Tensor] | None


def load_checkpoint(folder: Path, rank: int = 0) -> Checkpoint:
    """Load one checkpoint; raises BamkdError naming the damaged file."""
    from safetensors import safe_open

    files = {n: folder / n for n in ("model.safetensors", "optimizer.safetensors", STATE_NAME)}
    for path in files.values():
        if not path.is_file():
            raise BamkdError(f"checkpoint {folder} is incomplete: {path.name} is missing")
    try:
        state = TrainerState(**json.loads(files[STATE_NAME].read_text()))
        model = load_file(str(files["model.safetensors"]))
        with safe_open(str(files["optimizer.safetensors"]), "pt") as f:
            meta = json.loads((f.metadata() or {})["meta"])
        optimizer = optimizer_from_tensors(load_file(str(files["optimizer.safetensors"])), meta)
        rng_path = folder / f"rng-rank{rank}.safetensors"
        rng = load_file(str(rng_path)) if rng_path.is_file() else None
    except Exception as exc:
        raise BamkdError(f"checkpoint {folder} is corrupted or truncated ({exc})") from None
    return Checkpoint(folder, model, optimizer, state, rng)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path, rank: int = 0) -> Checkpoint | None:
    """The newest checkpoint that loads; damaged ones are reported and skipped."""
    for folder in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(folder, rank)
        except BamkdError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
    return None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (called after a new one is safely written)."""
    folders = list_checkpoints(run_dir)
    for folder in folders[: max(0, len(folders) - keep)]:
        shutil.rmtree(folder, ignore_errors=True)
