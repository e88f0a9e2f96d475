"""Imports go downward only: bamkd's layers, lowest first, and a check of every import in src.

A module may import from its own layer and the layers below it, never from a layer above: the
plumbing knows nothing of the method, the formulas nothing of training, training nothing of
experiments. Imports inside functions and under ``TYPE_CHECKING`` count too (a back-edge hidden
in a function is still a back-edge). docs/ARCHITECTURE.md explains the layers; a new module
must be placed in one here, or `test_every_module_has_a_layer` fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bamkd"

LAYERS: list[tuple[str, list[str]]] = [
    (
        "plumbing",
        [
            "errors",
            "runtime",
            "runtime.storage",
            "runtime.heap",
            "runtime.stop",
            "runtime.progress",
            "runtime.devices",
            "runtime.tracking",
            "runtime.checkpoint",
        ],
    ),
    ("tasks", ["tasks", "tasks.records", "tasks.spec", "tasks.readers", "tasks.tables"]),
    (
        "formulas",
        [
            "schedules",
            "sampling",
            "packing",
            "losses",
            "optim",
            "metrics",
            "student",
            "fast_dropout",
        ],
    ),
    ("config", ["config", "runtime.runs"]),
    (
        "data and model",
        ["data", "model", "teachers", "tiny", "demo", "taskcheck", "runtime.manifest"],
    ),
    ("finished runs", ["evaluate", "teach"]),
    ("training", ["train", "callbacks", "steplog"]),
    ("outputs", ["outputs", "outputs.predict", "outputs.submission", "outputs.export"]),
    (
        "experiments",
        [
            "experiments",
            "experiments.variants",
            "experiments.pipeline",
            "experiments.report",
            "experiments.stats",
            "experiments.exposure",
            "experiments.speed",
        ],
    ),
    ("interface", ["bamkd", "cli"]),
]
"""bamkd's layers, lowest first; module names relative to the package ("bamkd" is its
``__init__``, the public API)."""

LEVEL = {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}

ROOT_CONSTANTS = {"__version__"}
"""Plain values of the package root that any module may import: Python loads ``bamkd`` before
any of its modules, so they add no dependency (the root's API names are loaded lazily and do)."""


def module_name(path: Path) -> str:
    """``runtime/storage.py`` -> ``runtime.storage``; a package's ``__init__`` -> its name."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "bamkd"


def imported_modules(source: str, importer: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every bamkd import in ``source``, relative imports resolved.

    ``from bamkd.x import y`` counts as ``x.y`` when ``x.y`` is a module with a layer (a
    submodule), else as ``x``; ``from bamkd import Predictor`` counts as ``bamkd``, the root.
    ``is_package``: ``source`` is the ``__init__`` of package ``importer``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                package = [] if importer == "bamkd" else importer.split(".")
                package = package[: len(package) - node.level + is_package]
                base = ".".join(["bamkd", *package, *([base] if base else [])])
            aliases = [a.name for a in node.names]
            if base == "bamkd":
                aliases = [a for a in aliases if a not in ROOT_CONSTANTS]
            names = [(node.lineno, f"{base}.{alias}") for alias in aliases]
            names = [(line, n if _relative(n) in LEVEL else base) for line, n in names]
        else:
            continue
        for line, name in names:
            if name == "bamkd" or name.startswith("bamkd."):
                found.append((line, _relative(name)))
    return found


def _relative(name: str) -> str:
    return name.removeprefix("bamkd.") if name != "bamkd" else "bamkd"


def upward_imports(source: str, importer: str, is_package: bool = False) -> list[str]:
    """Each import of ``source`` that reaches above ``importer``'s layer, said in words."""
    own = LEVEL[importer]
    problems = []
    for line, target in imported_modules(source, importer, is_package):
        while target not in LEVEL and "." in target:  # an attribute path: its module
            target = target.rsplit(".", 1)[0]
        if target not in LEVEL:
            problems.append(f"{importer}:{line} imports bamkd.{target}, which has no layer")
        elif LEVEL[target] > own:
            problems.append(
                f"{importer}:{line} ({LAYERS[own][0]}) imports {target} "
                f"({LAYERS[LEVEL[target]][0]}), a layer above it"
            )
    return problems


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    modules = source_modules()
    assert sorted(set(modules) - set(LEVEL)) == []
    assert sorted(set(LEVEL) - set(modules)) == []  # no stale names in the table
    listed = [m for _, members in LAYERS for m in members]
    assert len(listed) == len(set(listed))  # each module in one layer


def test_imports_go_downward_only() -> None:
    problems = [
        problem
        for name, path in source_modules().items()
        for problem in upward_imports(
            path.read_text(encoding="utf-8"), name, path.name == "__init__.py"
        )
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("runtime.storage", "from bamkd.train import fit\n", ["a layer above"]),
        ("losses", "def f():\n    from bamkd.model import MultiTaskModel\n", ["a layer above"]),
        ("tasks.spec", "if TYPE_CHECKING:\n    import bamkd.config\n", ["a layer above"]),
        ("experiments.report", "from ..outputs import predict\n", []),
        ("data", "from .outputs.predict import Predictor\n", ["a layer above"]),
        ("train", "from bamkd.runtime import checkpoint as ckpt\n", []),
        ("train", "from bamkd.train import Context\n", []),
        ("config", "from bamkd.nowhere import thing\n", ["has no layer"]),
        ("tasks", "from .spec import TaskSpec\nfrom ..train import fit\n", ["a layer above"]),
        ("outputs.export", "from bamkd import __version__\n", []),
        ("outputs.export", "from bamkd import Predictor, __version__\n", ["a layer above"]),
    ],
)
def test_the_check_sees_upward_imports(importer: str, source: str, expected: list[str]) -> None:
    problems = upward_imports(source, importer, is_package=importer in ("tasks", "bamkd"))
    assert len(problems) == len(expected)
    for problem, words in zip(problems, expected):
        assert words in problem
