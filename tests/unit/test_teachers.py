"""Teacher predictions are refused when ids are missing or the data changed since prediction."""

from __future__ import annotations

import numpy as np
import pytest

from bamkd.data import encode_examples, swapped
from bamkd.errors import DataError
from bamkd.tasks import Example
from bamkd.teachers import (
    read_teacher_predictions,
    teacher_targets,
    write_teacher_predictions,
)


class _Tok:
    """A stand-in tokenizer: one id per word, [CLS]=1, [SEP]=2."""

    def __call__(self, a, b=None, **_):
        ids, types = [], []
        for i, text in enumerate(a):
            first = [1, *[3 + len(w) for w in text.split()], 2]
            second = [] if b is None else [*[3 + len(w) for w in b[i].split()], 2]
            ids.append(first + second)
            types.append([0] * len(first) + [1] * len(second))
        return {"input_ids": ids, "token_type_ids": types}


def _examples(n=4):
    return [Example(f"t:train:{i}", f"a{i} words", f"b{i} more words", i % 2) for i in range(n)]


def _enc(examples):
    return encode_examples(examples, _Tok(), 32, "t", "train")


def test_round_trip_and_ensemble_in_probability_space(tmp_path):
    enc = _enc(_examples())
    logits_a = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, -1.0]], dtype=np.float32)
    logits_b = np.array([[0.0, np.log(3)], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    write_teacher_predictions(tmp_path / "a", enc, logits_a, "classification", {})
    write_teacher_predictions(tmp_path / "b", enc, logits_b, "classification", {})
    ta = read_teacher_predictions(tmp_path / "a", "t")
    tb = read_teacher_predictions(tmp_path / "b", "t")
    assert ta.ids == enc.ids
    targets = teacher_targets(enc, [ta, tb], "classification", weights=[1, 3])
    # Row 0: softmax(a) = [.5, .5], softmax(b) = [.25, .75]; weights 1/4, 3/4 -> [.3125, .6875].
    np.testing.assert_allclose(targets[0], [0.3125, 0.6875], atol=1e-6)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)


def test_rows_are_matched_by_id_not_position(tmp_path):
    examples = _examples()
    write_teacher_predictions(
        tmp_path, _enc(examples), np.arange(4, dtype=np.float32), "regression", {}
    )
    reordered = _enc(list(reversed(examples)))
    got = teacher_targets(reordered, [read_teacher_predictions(tmp_path, "t")], "regression")
    np.testing.assert_array_equal(got[:, 0], [3, 2, 1, 0])


def test_missing_swapped_copies_are_refused_with_the_reason(tmp_path):
    examples = _examples()
    write_teacher_predictions(tmp_path, _enc(examples), np.zeros((4, 2)), "classification", {})
    student = _enc(examples + swapped(examples))
    with pytest.raises(DataError) as err:
        teacher_targets(student, [read_teacher_predictions(tmp_path, "t")], "classification")
    text = str(err.value)
    assert "task 't': 4 of 8 training examples have no teacher output" in text
    assert "t:train:0:swap" in text and "double_unordered" in text


def test_changed_examples_are_refused(tmp_path):
    examples = _examples()
    write_teacher_predictions(tmp_path, _enc(examples), np.zeros((4, 2)), "classification", {})
    changed = list(examples)
    changed[2] = Example(changed[2].id, "edited text", changed[2].text_b, changed[2].label)
    with pytest.raises(DataError, match=r"1 of 4 training examples changed since the teacher"):
        teacher_targets(_enc(changed), [read_teacher_predictions(tmp_path, "t")], "classification")


def test_wrong_kind_and_missing_file_are_refused(tmp_path):
    enc = _enc(_examples())
    write_teacher_predictions(tmp_path, enc, np.zeros(4), "regression", {})
    with pytest.raises(DataError, match="holds regression outputs but the task is classification"):
        teacher_targets(enc, [read_teacher_predictions(tmp_path, "t")], "classification")
    with pytest.raises(DataError, match="bamkd teach"):
        read_teacher_predictions(tmp_path / "nothing", "t")


def test_truncated_file_is_named(tmp_path):
    enc = _enc(_examples())
    path = write_teacher_predictions(tmp_path, enc, np.zeros((4, 2)), "classification", {})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="corrupted or truncated"):
        read_teacher_predictions(tmp_path, "t")
