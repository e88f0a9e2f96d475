"""Readers against hostile input: every broken file ends in one DataError with an exact message.

The corpus below writes broken files to tmp_path and asserts the full message, because the
message is the product here: it must name the file and line, say what is wrong and how to fix it.
The hypothesis tests check that well-formed GLUE-layout files round-trip exactly, and that no
input whatsoever makes a reader raise anything but DataError.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bamkd.errors import DataError
from bamkd.tasks import GLUE_TASKS, Example, TaskSpec, load_task_yaml, read_split

RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
STSB_HEADER = (
    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
)
STSB_ROW = "0\tmain-news\theadlines\t2013\t0001\tnone\tnone\tA cat sleeps.\tA cat naps.\t"
QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
MNLI_DEV_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\t"
    "label5\tgold_label\n"
)
GLUE_FIX = "Use the unmodified {display} file from the GLUE download (<data_dir>/{rel})."


@dataclass(frozen=True)
class GlueCase:
    """A broken GLUE file: task, split, file bytes, expected message ({path} = the file)."""

    id: str
    task: str
    split: str
    content: bytes
    message: str


GLUE_CASES = [
    GlueCase(
        "wrong-column-count",
        "rte",
        "train",
        (
            RTE_HEADER + "0\tA dog runs.\tAn animal runs.\tentailment\n1\tA dog runs.\tentailment\n"
        ).encode(),
        "{path}:3: expected 4 tab-separated columns, found 3. Separate fields with single tabs; "
        "text cannot contain tabs.",
    ),
    GlueCase(
        "tab-inside-text",
        "rte",
        "dev",
        (RTE_HEADER + "0\tA dog\truns.\tAn animal runs.\tentailment\n").encode(),
        "{path}:2: expected 4 tab-separated columns, found 5. Separate fields with single tabs; "
        "text cannot contain tabs.",
    ),
    GlueCase(
        "unknown-label",
        "rte",
        "train",
        (RTE_HEADER + "0\tA dog runs.\tAn animal runs.\tmaybe\n").encode(),
        "{path}:2: unknown label 'maybe' in column 'label'; RTE labels are 'entailment', "
        "'not_entailment'. Correct the label on this line.",
    ),
    GlueCase(
        "unknown-label-headerless-cola",
        "cola",
        "train",
        b"gj04\t1\t\tThe dog ran.\ngj04\t2\t*\tDog the ran.\n",
        "{path}:2: unknown label '2' in column 1 (0-based); CoLA labels are '0', '1'. Correct "
        "the label on this line.",
    ),
    GlueCase(
        "headerless-cola-missing-column",
        "cola",
        "dev",
        b"gj04\t1\tThe dog ran.\n",
        "{path}:1: expected 4 tab-separated columns, found 3. Separate fields with single tabs; "
        "text cannot contain tabs.",
    ),
    GlueCase(
        "empty-text",
        "rte",
        "train",
        (RTE_HEADER + "0\tA dog runs.\t  \tentailment\n").encode(),
        "{path}:2: empty text in column 'sentence2'. Every example needs text: fill it in or "
        "delete the line.",
    ),
    GlueCase(
        "empty-text-headerless",
        "cola",
        "train",
        b"gj04\t1\t\t\n",
        "{path}:1: empty text in column 3 (0-based). Every example needs text: fill it in or "
        "delete the line.",
    ),
    GlueCase(
        "invalid-utf8",
        "rte",
        "train",
        RTE_HEADER.encode() + b"0\tA dog runs.\tAn animal runs.\tentailment\n"
        b"1\tCaf\xe9 au lait.\tA drink.\tentailment\n",
        "{path}:3: not valid UTF-8 (byte 0xe9 at byte 6 of the line). Save the file with UTF-8 "
        "encoding.",
    ),
    GlueCase(
        "invalid-utf8-crlf-line-count",
        "sst2",
        "train",
        b"sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n\xff\t1\r\n",
        "{path}:4: not valid UTF-8 (byte 0xff at byte 1 of the line). Save the file with UTF-8 "
        "encoding.",
    ),
    GlueCase(
        "truncated-utf8-at-end",
        "sst2",
        "dev",
        b"sentence\tlabel\ngood\t1\nna\xc3",
        "{path}:3: not valid UTF-8 (byte 0xc3 at byte 3 of the line). Save the file with UTF-8 "
        "encoding.",
    ),
    GlueCase(
        "empty-split-header-only",
        "rte",
        "dev",
        RTE_HEADER.encode(),
        "{path}: no examples after the header line. " + GLUE_FIX,
    ),
    GlueCase(
        "empty-file",
        "rte",
        "test",
        b"",
        "{path}: the file is empty. " + GLUE_FIX,
    ),
    GlueCase(
        "empty-headerless-file",
        "cola",
        "train",
        b"\n\n",
        "{path}: the file is empty. " + GLUE_FIX,
    ),
    GlueCase(
        "missing-header-column",
        "mnli",
        "dev_matched",
        (
            MNLI_DEV_HEADER.replace("gold_label", "gold")
            + "0\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tA man sleeps.\tA man rests."
            "\tentailment\tentailment\tentailment\tentailment\tentailment\tentailment\n"
        ).encode(),
        "{path}:1: the header has no column 'gold_label'; its columns are 'index', 'promptID', "
        "'pairID', 'genre', 'sentence1_binary_parse', 'sentence2_binary_parse', "
        "'sentence1_parse', 'sentence2_parse', 'sentence1', 'sentence2', 'label1', 'label2', "
        "'label3', 'label4', 'label5', 'gold'. " + GLUE_FIX,
    ),
    GlueCase(
        "headerless-file-where-header-expected",
        "qnli",
        "dev",
        b"0\tWho?\tHim.\tentailment\n",
        "{path}:1: the header has no column 'question'; its columns are '0', 'Who?', 'Him.', "
        "'entailment'. " + GLUE_FIX,
    ),
    GlueCase(
        "non-numeric-score",
        "stsb",
        "train",
        (STSB_HEADER + STSB_ROW + "high\n").encode(),
        "{path}:2: label 'high' in column 'score' is not a number. STS-B labels are numbers in "
        "[0, 5], e.g. 2.5.",
    ),
    GlueCase(
        "nan-score",
        "stsb",
        "dev",
        (STSB_HEADER + STSB_ROW + "NaN\n").encode(),
        "{path}:2: label 'NaN' in column 'score' is not a finite number. STS-B labels are "
        "numbers in [0, 5], e.g. 2.5.",
    ),
    GlueCase(
        "score-out-of-range",
        "stsb",
        "train",
        (STSB_HEADER + STSB_ROW + "5.2\n").encode(),
        "{path}:2: label '5.2' in column 'score' is outside the range [0, 5]. Correct the value.",
    ),
    GlueCase(
        "duplicate-id",
        "qqp",
        "train",
        (
            QQP_HEADER + "7\t1\t2\tWhy?\tHow?\t0\n8\t3\t4\tWho?\tWhom?\t1\n7\t5\t6\tA?\tB?\t0\n"
        ).encode(),
        "{path}:4: id '7' in column 'id' repeats the id on line 2. Ids must be unique within a "
        "file; fix the id.",
    ),
    GlueCase(
        "empty-id",
        "qqp",
        "dev",
        (QQP_HEADER + " \t1\t2\tWhy?\tHow?\t0\n").encode(),
        "{path}:2: empty id in column 'id'. Every row needs a unique id.",
    ),
]


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", GLUE_CASES, ids=lambda c: c.id)
def test_broken_glue_file(tmp_path: Path, case: GlueCase) -> None:
    spec = GLUE_TASKS[case.task]
    rel = spec.splits[case.split]
    path = _write(tmp_path / rel, case.content)
    with pytest.raises(DataError) as err:
        read_split(spec, case.split, tmp_path)
    expected = case.message.format(path=path, display=spec.display_name, rel=rel)
    assert str(err.value) == expected


def test_missing_glue_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["qnli"], "train", tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'QNLI/train.tsv'}: file not found. Task QNLI reads its train split from "
        f"<data_dir>/QNLI/train.tsv, the standard GLUE download layout (data_dir is {tmp_path}); "
        f"download GLUE there or fix data_dir (data.glue_dir)."
    )


def test_missing_glue_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["mrpc"], "train", tmp_path / "glue_data")
    assert str(err.value) == (
        f"{tmp_path / 'glue_data'}: GLUE data folder not found. Expected "
        f"<data_dir>/MRPC/train.tsv, the standard GLUE download layout; set data_dir "
        f"(data.glue_dir) to the folder that holds MRPC/."
    )


def test_glue_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "RTE" / "train.tsv").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["rte"], "train", tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'RTE/train.tsv'}: is a folder, not a file. "
        + GLUE_FIX.format(display="RTE", rel="RTE/train.tsv")
    )


# ----- user tasks ---------------------------------------------------------------------------


def _user_task(tmp_path: Path, yaml_text: str, files: dict[str, bytes]) -> TaskSpec:
    for name, content in files.items():
        _write(tmp_path / name, content)
    (tmp_path / "task.yaml").write_text(yaml_text, encoding="utf-8")
    return load_task_yaml(tmp_path / "task.yaml")


def _yaml(fmt: str, extra: str = "") -> str:
    return (
        f"name: pairs\nformat: {fmt}\nfiles: {{train: train.{fmt}}}\n"
        f"text_columns: [a, b]\nlabel_column: y\nlabel_names: [neg, pos]\n{extra}"
    )


JSONL_FIX = 'Each line must hold one JSON object like {{"a": ..., "b": ..., "y": ...}}.'
USER_CASES = [
    (
        "csv-unknown-label",
        _yaml("csv"),
        b"a,b,y\nfine,good,pos\nok,meh,neutral\n",
        "{path}:3: unknown label 'neutral' in column 'y'; pairs labels are 'neg', 'pos'. Correct "
        "the label on this line, or add it to label_names in {yaml}.",
    ),
    (
        "csv-wrong-column-count",
        _yaml("csv"),
        b"a,b,y\nfine,good,pos\nok, yes,meh,neg\n",
        "{path}:3: expected 3 comma-separated columns, found 4. Put double quotes around fields "
        "that contain commas, quotes or line breaks.",
    ),
    (
        "csv-unclosed-quote",
        _yaml("csv"),
        b'a,b,y\nfine,good,pos\n"ok,meh,neg\nx,y,pos\n',
        "{path}:3: expected 3 comma-separated columns, found 1 (a quoted field runs on from "
        "line 3: is a quote unclosed?). Put double quotes around fields that contain commas, "
        "quotes or line breaks.",
    ),
    (
        "csv-missing-header-column",
        _yaml("csv"),
        b"a,text_b,y\nfine,good,pos\n",
        "{path}:1: the header has no column 'b'; its columns are 'a', 'text_b', 'y'. Set "
        "text_columns in {yaml} to match the file.",
    ),
    (
        "csv-header-only",
        _yaml("csv"),
        b"a,b,y\r\n",
        "{path}: no examples after the header line. Fix the file, or change files.train in {yaml}.",
    ),
    (
        "csv-empty-text",
        _yaml("csv"),
        b'a,b,y\nfine,"",pos\n',
        "{path}:2: empty text in column 'b'. Every example needs text: fill it in or delete the "
        "line.",
    ),
    (
        "csv-duplicate-id",
        _yaml("csv", "id_column: id\n"),
        b"id,a,b,y\nx1,fine,good,pos\nx1,bad,awful,neg\n",
        "{path}:3: id 'x1' in column 'id' repeats the id on line 2. Ids must be unique within a "
        "file; fix the id or drop id_column to number rows instead.",
    ),
    (
        "tsv-headerless-column-out-of-range",
        "name: single\nformat: tsv\nheader: false\nfiles: {train: train.tsv}\n"
        "text_columns: [2]\nlabel_column: 0\nlabel_names: [neg, pos]\n",
        b"pos\tgood\n",
        "{path}:1: the task reads column 2 (0-based) but this line has only 2 columns. Set "
        "text_columns in {yaml} to match the file.",
    ),
    (
        "tsv-regression-not-a-number",
        "name: score\nformat: tsv\nfiles: {train: train.tsv}\ntext_columns: [text]\n"
        "label_column: stars\nregression_range: [1, 5]\n",
        b"text\tstars\ngreat\t5\nawful\tone\n",
        "{path}:3: label 'one' in column 'stars' is not a number. score labels are numbers in "
        "[1, 5], e.g. 3.",
    ),
    (
        "tsv-regression-out-of-range",
        "name: score\nformat: tsv\nfiles: {train: train.tsv}\ntext_columns: [text]\n"
        "label_column: stars\nregression_range: [1, 5]\n",
        b"text\tstars\ngreat\t5\nawful\t0\n",
        "{path}:3: label '0' in column 'stars' is outside the range [1, 5]. Correct the value, "
        "or widen regression_range in {yaml}.",
    ),
    (
        "jsonl-not-an-object",
        _yaml("jsonl"),
        b'{"a": "fine", "b": "good", "y": "pos"}\n["fine", "good", "pos"]\n',
        "{path}:2: expected a JSON object, found a list. " + JSONL_FIX,
    ),
    (
        "jsonl-invalid-json",
        _yaml("jsonl"),
        b'{"a": "fine", "b": "good", "y": "pos"}\n{"a": "fine", "b": "good" "y": "pos"}\n',
        "{path}:2: not valid JSON (Expecting ',' delimiter at column 27). " + JSONL_FIX,
    ),
    (
        "jsonl-missing-key",
        _yaml("jsonl"),
        b'\n{"a": "fine", "y": "pos"}\n',
        "{path}:2: the JSON object has no key 'b'. " + JSONL_FIX,
    ),
    (
        "jsonl-text-not-a-string",
        _yaml("jsonl"),
        b'{"a": "fine", "b": 42, "y": "pos"}\n',
        "{path}:1: key 'b' must hold a string, found a number. Write the text as a JSON string.",
    ),
    (
        "jsonl-label-not-a-string",
        _yaml("jsonl"),
        b'{"a": "fine", "b": "good", "y": null}\n',
        "{path}:1: key 'y' must hold a label, one of 'neg', 'pos'; found null. Write the label "
        "as one of these strings.",
    ),
    (
        "jsonl-unknown-label",
        _yaml("jsonl"),
        b'{"a": "fine", "b": "good", "y": "POS"}\n',
        "{path}:1: unknown label 'POS' in column 'y'; pairs labels are 'neg', 'pos'. Correct the "
        "label on this line, or add it to label_names in {yaml}.",
    ),
    (
        "jsonl-only-blank-lines",
        _yaml("jsonl"),
        b"\n  \n\n",
        "{path}: the file has no examples. Fix the file, or change files.train in {yaml}.",
    ),
    (
        "jsonl-invalid-utf8",
        _yaml("jsonl"),
        b'{"a": "fine", "b": "good", "y": "pos"}\n{"a": "\x80", "b": "good", "y": "pos"}\n',
        "{path}:2: not valid UTF-8 (byte 0x80 at byte 8 of the line). Save the file with UTF-8 "
        "encoding.",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "content", "message"), [c[1:] for c in USER_CASES], ids=[c[0] for c in USER_CASES]
)
def test_broken_user_file(tmp_path: Path, yaml_text: str, content: bytes, message: str) -> None:
    spec = _user_task(tmp_path, yaml_text, {})
    path = _write(Path(spec.splits["train"]), content)
    with pytest.raises(DataError) as err:
        read_split(spec, "train")
    assert str(err.value) == message.format(path=path, yaml=spec.source)


def test_missing_user_file(tmp_path: Path) -> None:
    spec = _user_task(tmp_path, _yaml("csv"), {})
    with pytest.raises(DataError) as err:
        read_split(spec, "train")
    assert str(err.value) == (
        f"{tmp_path / 'train.csv'}: file not found. Task 'pairs' reads its train split from this "
        f"file; fix files.train in {tmp_path / 'task.yaml'}."
    )


def test_jsonl_huge_integer_is_a_data_error(tmp_path: Path) -> None:
    # Python refuses int conversions over 4300 digits; the reader must still answer DataError.
    spec = _user_task(tmp_path, _yaml("jsonl", "id_column: id\n"), {})
    _write(Path(spec.splits["train"]), b'{"id": ' + b"9" * 5000 + b', "a": "x"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:1: not valid JSON \("):
        read_split(spec, "train")


# ----- user data is quoted only in short excerpts ------------------------------------------

HUGE = "x" * 10_000_000  # a 10 MB cell or header: the message must stay one short line
MESSAGE_LIMIT = 1_500


def _bounded(message: str, *needles: str) -> None:
    assert len(message) < MESSAGE_LIMIT and "\n" not in message
    for needle in needles:
        assert needle in message


def test_a_huge_header_is_quoted_in_a_short_excerpt(tmp_path: Path) -> None:
    columns = [f"{HUGE[:1_000]}{i}" for i in range(5_000)] + [HUGE]
    path = _write(tmp_path / "RTE/train.tsv", ("\t".join(columns) + "\n0\ta\n").encode())
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["rte"], "train", tmp_path)
    _bounded(str(err.value), f"{path}:1: the header has no column 'sentence1'", "and 4,985 more")


@pytest.mark.parametrize(
    ("yaml_extra", "content", "needle"),
    [
        ("", b"a,b,y\nfine,good," + HUGE.encode() + b"\n", "unknown label 'xxxx"),
        ("id_column: id\n", f"id,a,b,y\n{HUGE},p,q,pos\n{HUGE},p,q,pos\n".encode(), "id 'xxx"),
    ],
    ids=["label", "repeated-id"],
)
def test_huge_cells_are_quoted_in_short_excerpts(
    tmp_path: Path, yaml_extra: str, content: bytes, needle: str
) -> None:
    spec = _user_task(tmp_path, _yaml("csv", yaml_extra), {"train.csv": content})
    with pytest.raises(DataError) as err:
        read_split(spec, "train")
    _bounded(str(err.value), needle, "10,000,000 characters", "train.csv:")


def test_a_huge_regression_label_is_quoted_in_a_short_excerpt(tmp_path: Path) -> None:
    row = STSB_ROW + "9" * 1_000_000 + "\n"
    path = _write(tmp_path / "STS-B/train.tsv", (STSB_HEADER + row).encode())
    with pytest.raises(DataError) as err:
        read_split(GLUE_TASKS["stsb"], "train", tmp_path)
    _bounded(str(err.value), f"{path}:2: label '999", "1,000,000 characters")


def test_a_huge_value_in_a_task_yaml_is_quoted_in_a_short_excerpt(tmp_path: Path) -> None:
    from bamkd.errors import ConfigError

    long = HUGE[:100_000]  # YAML parses slowly; 100 kB shows the bound as well
    (tmp_path / "task.yaml").write_text(_yaml("csv").replace("format: csv", f"format: {long}"))
    with pytest.raises(ConfigError) as err:
        load_task_yaml(tmp_path / "task.yaml")
    _bounded(str(err.value), "key 'format'", "100,000 characters")


# ----- hostile but valid input --------------------------------------------------------------


def test_stray_quotes_are_literal_in_glue_tsv(tmp_path: Path) -> None:
    _write(
        tmp_path / "RTE/train.tsv",
        (
            RTE_HEADER + '0\t"He said " the witness\tIt\'s "quoted\tentailment\n'
            '1\t""\t"\tnot_entailment\n'
        ).encode(),
    )
    examples = read_split(GLUE_TASKS["rte"], "train", tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ('"He said " the witness', "It's \"quoted", 0),
        ('""', '"', 1),
    ]


def test_crlf_cr_bom_and_missing_final_newline_read_alike(tmp_path: Path) -> None:
    rows = ["gj04\t1\t\tThe dog ran.", "gj04\t0\t*\tDog the ran."]
    variants = {
        "lf": "\n".join(rows) + "\n",
        "crlf": "\r\n".join(rows) + "\r\n",
        "cr": "\r".join(rows) + "\r",
        "no-final-newline": "\n".join(rows),
        "trailing-blank-lines": "\n".join(rows) + "\n\n\n",
    }
    results = []
    for name, text in variants.items():
        for bom in (b"", b"\xef\xbb\xbf"):
            data_dir = tmp_path / f"{name}{len(bom)}"
            _write(data_dir / "CoLA/train.tsv", bom + text.encode())
            results.append(read_split(GLUE_TASKS["cola"], "train", data_dir))
    assert results[0] == [
        Example("cola:train:1", "The dog ran.", None, 1),
        Example("cola:train:2", "Dog the ran.", None, 0),
    ]
    assert all(r == results[0] for r in results)


def test_unicode_line_separators_inside_text_do_not_split_rows(tmp_path: Path) -> None:
    text = "one\u2028two\x0bthree\x0cfour\x1cfive\x85six"
    _write(tmp_path / "SST-2/dev.tsv", f"sentence\tlabel\n{text}\t1\n".encode())
    assert read_split(GLUE_TASKS["sst2"], "dev", tmp_path) == [Example("sst2:dev:1", text, None, 1)]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_very_long_text_is_fine(tmp_path: Path, fmt: str) -> None:
    # Far over the csv module's default 128 KiB field limit; truncation happens in tokenization.
    long = "word " * 200_000
    rows = [{"a": long, "b": "short", "y": "pos"}]
    if fmt == "jsonl":
        content = json.dumps(rows[0]) + "\n"
    else:
        sep = "\t" if fmt == "tsv" else ","
        content = f"a{sep}b{sep}y\n{long}{sep}short{sep}pos\n"
    spec = _user_task(tmp_path, _yaml(fmt), {f"train.{fmt}": content.encode()})
    assert read_split(spec, "train") == [Example("pairs:train:1", long, "short", 1)]


def test_csv_quoting_is_honoured(tmp_path: Path) -> None:
    content = b'a,b,y\n"one, two","say ""hi""\nthere",pos\nplain,it\'s "raw",neg\n'
    spec = _user_task(tmp_path, _yaml("csv"), {"train.csv": content})
    examples = read_split(spec, "train")
    assert [(e.id, e.text_a, e.text_b, e.label) for e in examples] == [
        ("pairs:train:1", "one, two", 'say "hi"\nthere', 1),
        ("pairs:train:2", "plain", 'it\'s "raw"', 0),
    ]


def test_errors_after_a_multiline_csv_record_report_the_right_line(tmp_path: Path) -> None:
    content = b'a,b,y\n"multi\nline\ntext",b,pos\nx,y,bad\n'
    spec = _user_task(tmp_path, _yaml("csv"), {"train.csv": content})
    with pytest.raises(DataError, match=r"train\.csv:5: unknown label 'bad'"):
        read_split(spec, "train")


# ----- properties ---------------------------------------------------------------------------

# Any text a GLUE cell can hold: no tab or line break (universal newlines: \n, \r), not blank.
cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    rows=st.lists(
        st.tuples(cell, cell, st.sampled_from(["entailment", "not_entailment"])),
        min_size=1,
        max_size=8,
    ),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
)
def test_glue_tsv_round_trip(
    rows: list[tuple[str, str, str]], newline: str, final_newline: bool
) -> None:
    spec = GLUE_TASKS["rte"]
    lines = ["index\tsentence1\tsentence2\tlabel"]
    lines += [f"{i}\t{a}\t{b}\t{label}" for i, (a, b, label) in enumerate(rows)]
    text = newline.join(lines) + (newline if final_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp) / "RTE/train.tsv", text.encode("utf-8"))
        got = read_split(spec, "train", tmp)
    assert got == [
        Example(f"rte:train:{i}", a, b, spec.label_names.index(label))
        for i, (a, b, label) in enumerate(rows)
    ]


@settings(max_examples=100, deadline=None, database=None)
@given(
    rows=st.lists(st.tuples(cell, st.sampled_from(["0", "1"])), min_size=1, max_size=8),
    bom=st.booleans(),
)
def test_headerless_cola_round_trip(rows: list[tuple[str, str]], bom: bool) -> None:
    text = "".join(f"src\t{label}\t\t{sentence}\n" for sentence, label in rows)
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp) / "CoLA/train.tsv", (b"\xef\xbb\xbf" if bom else b"") + text.encode())
        got = read_split(GLUE_TASKS["cola"], "train", tmp)
    assert got == [
        Example(f"cola:train:{n}", sentence, None, int(label))
        for n, (sentence, label) in enumerate(rows, start=1)
    ]


# Garbage built from the characters that matter to the parsers, plus arbitrary bytes.
hostile_text = st.lists(
    st.sampled_from(
        list('\t\n\r ",{}[]:0123456789.-eE')
        + [
            "entailment",
            "not_entailment",
            "pos",
            "neg",
            "index",
            "sentence1",
            "sentence2",
            "label",
            "a",
            "b",
            "y",
            "\ufeff",
            "\x00",
            "\u2028",
            "NaN",
            "é",
            '"a"',
            '"b"',
            '"y"',
        ]
    ),
    max_size=80,
).map("".join)
garbage = st.one_of(
    st.binary(max_size=300), hostile_text.map(lambda s: s.encode("utf-8", "surrogatepass"))
)
# (kind, task or format, split, a valid header to put in front of the garbage half the time)
READERS = [
    ("glue", "rte", "train", RTE_HEADER),
    ("glue", "cola", "train", ""),
    ("glue", "stsb", "train", STSB_HEADER),
    ("glue", "ax", "test", "index\tsentence1\tsentence2\n"),
    ("user", "csv", "train", "a,b,y\n"),
    ("user", "tsv", "train", "a\tb\ty\n"),
    ("user", "jsonl", "train", '{"a": "x", "b": "y", "y": "pos"}\n'),
]


@pytest.fixture(scope="module")
def garbage_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TaskSpec]:
    root = tmp_path_factory.mktemp("garbage")
    specs = {}
    for fmt in ("csv", "tsv", "jsonl"):
        folder = root / fmt
        folder.mkdir()
        specs[fmt] = _user_task(folder, _yaml(fmt, "id_column: a\n"), {})
    return specs


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=garbage, which=st.sampled_from(READERS), with_header=st.booleans())
def test_garbage_raises_only_data_error(
    garbage_specs: dict[str, TaskSpec],
    data: bytes,
    which: tuple[str, str, str, str],
    with_header: bool,
) -> None:
    kind, name, split, header = which
    if with_header:
        data = header.encode() + data
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "glue":
            spec = GLUE_TASKS[name]
            _write(Path(tmp) / spec.splits[split], data)
            data_dir: str | None = tmp
        else:
            spec = garbage_specs[name]
            _write(Path(spec.splits[split]), data)
            data_dir = None
        try:
            examples = read_split(spec, split, data_dir)
        except DataError as e:
            # Every message names the file it is about.
            assert str(e).startswith(str(Path(data_dir or "/") / spec.splits[split]))
            event(f"{name}: DataError")
        else:
            assert examples and all(isinstance(e, Example) for e in examples)
            event(f"{name}: read")
