"""`journey problems --from FILE --format F`: the files people have become problems rows, or are
refused with file:line; then `journey curate` on the imported rows."""

import gzip
import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.runtime.importers import COUNTDOWN_QUESTION, import_problems
from journey.runtime.io import DataError, load_problems

runner = CliRunner()

# Rows shaped as the real files are (fields and types as the Hugging Face cards list them).
MATH500 = {"problem": "If $x^2 = 16$ and $x > 0$, what is $x$?", "solution": "So $x = \\boxed{4}$.",
           "answer": "4", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"}
MATH_TRAIN = {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
              "solution": "We add: $\\frac{1}{2} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$."}
GSM8K = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                     "clips in May. How many clips did Natalia sell altogether in April and May?",
         "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 "
                   "clips altogether in April and May.\n#### 72"}
MBPP = {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given "
                               "character from the string.",
        "code": "def remove_Occ(s,ch): \r\n    s = s.replace(ch, '', 1)\r\n    return s[::-1].replace(ch, '', 1)[::-1]",
        "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"'],
        "test_setup_code": "", "challenge_test_list": []}
MBPP_SANITIZED = {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 2,
                  "prompt": "Write a function to find the shared elements from the given two lists.",
                  "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
                  "test_imports": [], "test_list": ["assert set(similar_elements((3, 4), (4, 5))) == {4}"]}
HUMANEVAL = {"task_id": "HumanEval/0", "entry_point": "has_close_elements",
             "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                       '    """ Check if any two numbers are closer than threshold. """\n',
             "canonical_solution": "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
                                   " for b in numbers[i + 1:])\n",
             "test": "def check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0], 0.3) == True\n"
                     "    assert candidate([1.0, 2.0], 0.5) == False\n"}
COUNTDOWN = {"target": 24, "nums": [4, 6, 1]}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def imported(tmp_path, fmt, rows, *flags):
    src = write(tmp_path / f"{fmt}.jsonl", rows)
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["problems", "--from", str(src), "--format", fmt, "--out", str(out),
                                 "--overwrite", *flags])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(rows)} problems" in result.output
    return [p.to_row() for p in load_problems(out)]  # what every stage reads


def test_math_rows(tmp_path):
    a, b = imported(tmp_path, "math", [MATH500, MATH_TRAIN])
    assert a == {"id": "test/algebra/1.json", "question": MATH500["problem"], "answer": "4",
                 "solution": MATH500["solution"], "subject": "Algebra", "level": 1}
    assert b["id"] == "math-math-00002" and b["answer"] == "\\frac{3}{4}"  # from the solution's \boxed{}
    assert b["level"] == "Level 1" and b["type"] == "Prealgebra"


def test_gsm8k_rows(tmp_path):
    [row] = imported(tmp_path, "gsm8k", [GSM8K])
    assert row["answer"] == "72" and row["question"] == GSM8K["question"]
    assert row["solution"].endswith("72 clips altogether in April and May.")
    [row] = imported(tmp_path, "gsm8k", [{**GSM8K, "answer": "Add them.\n#### 1,234"}])
    assert row["answer"] == "1234"


def test_code_rows_keep_their_tests(tmp_path):
    m, s = imported(tmp_path, "mbpp", [MBPP, MBPP_SANITIZED])
    assert m["id"] == "mbpp-11" and m["entry_point"] == "remove_Occ" and m["tests"] == MBPP["test_list"]
    assert m["question"].startswith(MBPP["text"]) and MBPP["test_list"][1] in m["question"]
    assert m["answer"] == MBPP["code"] and m["test_setup"] == "" and "challenge_tests" not in m
    assert s["id"] == "mbpp-2" and s["entry_point"] == "similar_elements" and s["source_file"]
    [h] = imported(tmp_path, "humaneval", [HUMANEVAL])
    assert h["id"] == "HumanEval/0" and h["question"] == HUMANEVAL["prompt"]
    assert h["entry_point"] == "has_close_elements"


def test_code_answers_are_programs_that_pass_their_tests(tmp_path):
    for fmt, row in (("mbpp", MBPP), ("mbpp", MBPP_SANITIZED), ("humaneval", HUMANEVAL)):
        [p] = imported(tmp_path, fmt, [row])
        scope = {}
        exec(p["test_setup"] if "test_setup" in p else "", scope)  # our own reference rows, not model code
        exec(p["answer"], scope)
        for test in p["tests"]:
            exec(test, scope)
        broken = p["answer"].replace("return ", "return None and ", 1)
        with pytest.raises((AssertionError, TypeError)):  # the tests catch a wrong program
            scope = {}
            exec(broken, scope)
            for test in p["tests"]:
                exec(test, scope)


def test_countdown_rows(tmp_path):
    [row] = imported(tmp_path, "countdown", [COUNTDOWN])
    assert row["answer"] == "24" and row["nums"] == [4, 6, 1] and row["target"] == 24
    assert row["question"] == COUNTDOWN_QUESTION.format(nums=[4, 6, 1], target=24)


def test_plain_jsonl_with_keys(tmp_path):
    rows = [{"id": 7, "prompt": "2 + 2?", "target": 4, "question": "kept aside"}]
    [row] = imported(tmp_path, "jsonl", rows, "--question-key", "prompt", "--answer-key", "target")
    assert row == {"id": "7", "question": "2 + 2?", "answer": "4", "source_question": "kept aside"}


def test_parquet_gzip_and_json_array(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([MATH500, MATH500 | {"unique_id": "b"}]), tmp_path / "t.parquet")
    assert [r["id"] for r in import_problems(tmp_path / "t.parquet", "math")] == ["test/algebra/1.json", "b"]
    with gzip.open(tmp_path / "h.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(HUMANEVAL) + "\n")
    assert import_problems(tmp_path / "h.jsonl.gz", "humaneval")[0]["id"] == "HumanEval/0"
    (tmp_path / "s.json").write_text(json.dumps([MBPP_SANITIZED]))
    assert import_problems(tmp_path / "s.json", "mbpp")[0]["id"] == "mbpp-2"


BAD = [
    ("math", {"problem": "What is 2 + 2?", "solution": "It is 4."}, ":2: no answer: neither an 'answer' nor a"),
    ("math", {"solution": "\\boxed{4}"}, ":2: no 'problem' or 'question' field"),
    ("gsm8k", {"question": "How many?", "answer": "Three of them."}, ":2: 'answer' has no final '#### N'"),
    ("gsm8k", {"question": "How many?", "answer": 3}, ":2: 'answer' must be a string"),
    ("mbpp", {**MBPP, "test_list": []}, ":2: 'test_list' must be a non-empty list of strings"),
    ("mbpp", {**MBPP, "code": "def other(x):\n    return x"}, ":2: no function of 'code' is called by 'test_list'"),
    ("humaneval", {**HUMANEVAL, "entry_point": "nope"}, ":2: the prompt defines no function 'nope'"),
    ("countdown", {"nums": [1, "2"], "target": 3}, ":2: 'nums' must be an integer"),
    ("countdown", {"nums": [1, 2]}, ":2: a Countdown row needs 'nums' and 'target'"),
    ("jsonl", {"question": "Q?", "answer": True}, ":2: 'answer' must be a non-empty string or a number"),
    ("jsonl", {"question": "Q?"}, ":2: no 'answer' field (pass --answer-key"),
    ("math", MATH500, ":2: duplicate id 'test/algebra/1.json' (first at"),
]


@pytest.mark.parametrize("fmt, row, message", BAD)
def test_rows_that_cannot_be_mapped_are_refused_with_file_and_line(tmp_path, fmt, row, message):
    first = {"math": MATH500, "gsm8k": GSM8K, "mbpp": MBPP, "humaneval": HUMANEVAL, "countdown": COUNTDOWN,
             "jsonl": {"question": "Q?", "answer": "A"}}[fmt]
    src = write(tmp_path / "src.jsonl", [first, row])
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["problems", "--from", str(src), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 1 and f"src.jsonl{message}" in " ".join(result.output.split()), result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--from", "SRC"], "--from needs --format"),
        (["--from", "SRC", "--format", "csv"], "--format must be one of math, gsm8k"),
        (["--from", "SRC", "--format", "math", "--question-key", "q"], "are for --format jsonl only"),
        (["--format", "math"], "go with --from FILE"),
        (["--from", "OUT", "--format", "math"], "is the --from input"),
        (["--from", "missing.jsonl", "--format", "math"], "--from missing.jsonl: no such file"),
    ],
)
def test_bad_flags_name_the_flag(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "SRC", [MATH500])
    write(tmp_path / "OUT", [MATH500])
    result = runner.invoke(app, ["problems", "--out", "OUT", "--overwrite", *flags])
    assert result.exit_code == 1 and message in result.output, result.output


def test_import_refuses_an_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows in the file"):
        import_problems(tmp_path / "e.jsonl", "math")


def test_curate_the_imported_math_rows(tmp_path):
    rows = [MATH500, MATH_TRAIN | {"problem": "Prove that $\\sqrt{2}$ is irrational."},
            MATH_TRAIN | {"problem": "In the figure, what is $x$?"}, MATH_TRAIN]
    src = write(tmp_path / "math.jsonl", rows)
    runner.invoke(app, ["problems", "--from", str(src), "--format", "math", "--out", str(tmp_path / "p.jsonl")])
    result = runner.invoke(app, ["curate", "--problems", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 0, result.output
    assert [p.id for p in load_problems(tmp_path / "c.jsonl")] == ["test/algebra/1.json", "math-math-00004"]
    text = " ".join(result.output.split())
    assert "kept │ 2 / 4" in text and "dropped: proof │ 1" in text and "dropped: figure │ 1" in text
    assert "figure: depends on a figure" in text  # each rule says what it drops
    # the raw MATH file curates as well (problem, solution)
    result = runner.invoke(app, ["curate", "--problems", str(src), "--out", str(tmp_path / "raw.jsonl")])
    assert result.exit_code == 0 and "kept │ 2 / 4" in " ".join(result.output.split()), result.output
