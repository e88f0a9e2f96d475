"""Result files: every benchmark writes one JSON file holding its command line, date, machine
and every raw measurement, from which ``tables.py`` prints the markdown tables."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import json_default, machine_info


def header(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The common head of every results file: command line, UTC date, machine."""
    return {
        "command": " ".join([Path(sys.executable).name, *(argv or sys.argv)]),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_json(path: str | Path, payload: dict[str, Any], *, announce: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    tmp.replace(path)
    if announce:
        print(f"\nresults written to {path}")
