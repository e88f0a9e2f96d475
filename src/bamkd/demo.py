"""A small synthetic task suite the package generates itself, for the embedded demo and tests.

Four tasks in the shapes GLUE has (single sentence, symmetric pair, regression, a small pair
task), written as user-task YAML + TSV files, so the demo exercises exactly the code paths real
data does. All four hinge on one shared skill, the polarity of opinion words, the way GLUE tasks
share language understanding: the small task (demo_contrast, like RTE) has too little data
alone and gains from the others. Labels carry some noise, so teachers are good, not perfect.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bamkd.runtime.storage import write_text

POSITIVE = "good great nice best love enjoy fun happy fine".split()
NEGATIVE = "bad terrible awful worst hate boring dull sad poor".split()
FILLER = """
the film movie story plot actor music book food place service staff room day night man
woman child people dog cat car house city world time year team game work play
""".split()
VERBS = "said told asked went came made took gave found saw knew thought wanted looked".split()
FLIP = {**dict(zip(POSITIVE, NEGATIVE)), **dict(zip(NEGATIVE, POSITIVE))}
"""Each opinion word and its opposite."""
DEMO_WORDS = sorted(set(POSITIVE + NEGATIVE + FILLER + VERBS))


def _sentence(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(FILLER + VERBS) for _ in range(n)]


def _polar_sentence(rng: random.Random, sign: int | None = None) -> tuple[str, int]:
    """A sentence with one to three opinion words; returns it and its polarity sign."""
    words = _sentence(rng, rng.randint(4, 8))
    score = 0
    for _ in range(rng.randint(1, 3)):
        positive = rng.random() < 0.5
        score += 1 if positive else -1
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
    if score == 0:  # break ties with one more opinion word
        positive = rng.random() < 0.5 if sign is None else sign > 0
        score += 1 if positive else -1
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
    if sign is not None and (score > 0) != (sign > 0):
        words = [FLIP.get(w, w) for w in words]
        score = -score
    return " ".join(words), 1 if score > 0 else -1


def _sentiment(rng: random.Random) -> tuple[list[str], str]:
    text, sign = _polar_sentence(rng)
    return [text], "positive" if sign > 0 else "negative"


def _agreement(rng: random.Random) -> tuple[list[str], str]:
    a, sign_a = _polar_sentence(rng)
    b, sign_b = _polar_sentence(rng)
    return [a, b], "1" if sign_a == sign_b else "0"


def _rating(rng: random.Random) -> tuple[list[str], str]:
    words = _sentence(rng, rng.randint(4, 8))
    positives = rng.randint(0, 3)
    negatives = rng.randint(0, 3)
    for pool, count in ((POSITIVE, positives), (NEGATIVE, negatives)):
        for _ in range(count):
            words.insert(rng.randrange(len(words) + 1), rng.choice(pool))
    score = min(5.0, max(0.0, 2.5 + 0.9 * (positives - negatives) + rng.gauss(0, 0.3)))
    return [" ".join(words)], f"{score:.2f}"


def _contrast(rng: random.Random) -> tuple[list[str], str]:
    a, sign_a = _polar_sentence(rng)
    b, sign_b = _polar_sentence(rng, sign_a if rng.random() < 0.5 else -sign_a)
    return [a, b], "entailment" if sign_a == sign_b else "not_entailment"


@dataclass(frozen=True)
class DemoTask:
    """One demo task: how its rows are made, how many per split, and its task-file fields."""

    make: Callable[[random.Random], tuple[list[str], str]]
    sizes: tuple[int, int, int]
    """Rows of train, dev and test."""
    text_columns: list[str]
    metrics: list[str]
    symmetric: bool
    label_names: list[str] | None = None
    """Class names; None for the regression task."""
    regression_range: list[float] | None = None


TASKS = {
    "demo_sentiment": DemoTask(
        make=_sentiment,
        sizes=(800, 200, 100),
        text_columns=["sentence"],
        label_names=["negative", "positive"],
        metrics=["accuracy"],
        symmetric=False,
    ),
    "demo_agreement": DemoTask(
        make=_agreement,
        sizes=(500, 200, 100),
        text_columns=["sentence1", "sentence2"],
        label_names=["0", "1"],
        metrics=["f1", "accuracy"],
        symmetric=True,
    ),
    "demo_rating": DemoTask(
        make=_rating,
        sizes=(500, 200, 100),
        text_columns=["sentence"],
        regression_range=[0.0, 5.0],
        metrics=["pearson", "spearman"],
        symmetric=False,
    ),
    "demo_contrast": DemoTask(
        make=_contrast,
        sizes=(120, 200, 100),
        text_columns=["sentence1", "sentence2"],
        label_names=["entailment", "not_entailment"],
        metrics=["accuracy"],
        symmetric=False,
    ),
}

NOISE = 0.08
"""Share of training and dev labels flipped, so no model is perfect."""


def write_demo_suite(folder: str | Path, seed: int = 0) -> list[Path]:
    """Write the four demo tasks (TSV data + task YAML) to ``folder``; returns the YAML paths."""
    folder = Path(folder)
    yamls = []
    for t_index, (name, task) in enumerate(TASKS.items()):
        rng = random.Random(seed * 1000 + t_index)
        files = {}
        for split, size in zip(("train", "dev", "test"), task.sizes):
            cols = ["id", *task.text_columns] + (["label"] if split != "test" else [])
            lines = ["\t".join(cols)]
            for i in range(size):
                texts, label = task.make(rng)
                if task.label_names is not None and split != "test" and rng.random() < NOISE:
                    label = rng.choice(task.label_names)
                row = [str(i), *texts] + ([label] if split != "test" else [])
                lines.append("\t".join(row))
            path = folder / name / f"{split}.tsv"
            write_text(path, "\n".join(lines) + "\n")
            files[split] = f"{name}/{split}.tsv"
        spec: dict[str, object] = {
            "name": name,
            "format": "tsv",
            "files": files,
            "text_columns": task.text_columns,
            "label_column": "label",
            "id_column": "id",
            "metrics": task.metrics,
            "symmetric": task.symmetric,
        }
        if task.label_names is not None:
            spec["label_names"] = task.label_names
        else:
            spec["regression_range"] = task.regression_range
        yaml_path = folder / f"{name}.yaml"
        write_text(yaml_path, yaml.safe_dump(spec, sort_keys=False))
        yamls.append(yaml_path)
    return yamls
