"""Import the problem files people already have into problems.jsonl rows (`journey problems --from`).

    journey problems --from MATH-500/test.jsonl --format math --out math500.jsonl
    journey problems --from gsm8k/test.jsonl --format gsm8k --out gsm8k.jsonl
    journey problems --from mine.jsonl --format jsonl --question-key prompt --answer-key target --out p.jsonl

Formats: what a source row must hold -> the problems row (`id`, `question`, `answer`, extras).

- `math` (MATH, MATH-500): `problem`, and `answer` or a `solution` with a final `\\boxed{}`
  -> question = problem; answer = `answer`, else the last \\boxed{} of the solution; id =
  `unique_id` when there is one. `solution`, `level`, `subject`/`type` are kept.
- `gsm8k`: `question`, and `answer` ending in `#### N` -> answer = N (thousands commas
  dropped: `1,000` -> `1000`); the worked solution before `####` is kept as `solution`.
- `mbpp` (original or sanitized): `text` or `prompt`, `code`, `test_list` -> question = the
  task with its tests ("Your code should pass these tests:", as the MBPP paper prompts);
  answer = `code`; `tests` (the asserts), `entry_point` (the function the tests call),
  `test_setup` (`test_setup_code` or `test_imports`), `challenge_tests` when present.
- `humaneval`: `prompt`, `canonical_solution`, `test`, `entry_point` -> question = the prompt
  (signature and docstring, as given); answer = prompt + canonical_solution;
  `tests` = [test + `check(entry_point)`], `entry_point`.
- `countdown` (TinyZero style): `nums` (integers), `target` (an integer) -> question in
  TinyZero's words ("Using the numbers [..], create an equation that equals T. ..."); answer
  = the target; `nums` and `target` kept as integers.
- `jsonl`: any rows, with `--question-key` / `--answer-key` (default `question` / `answer`);
  numeric answers become strings.

Code answers (mbpp, humaneval) are the reference program, whole: a row is self-contained, a
test-case generator needs the reference to compute expected outputs (DESIGN §8), and the
`tests` decide correctness, never a string match. There is no `code` or `countdown` task yet;
these rows are faithful to their source so that one can use them unchanged.

Every row gets an `id`: the source's own (`id`, `unique_id`, `task_id`) or
`FORMAT-STEM-NNNNN` (the row's number in the file). Source keys that are not mapped are kept
as extra keys (a name we use ourselves gets a `source_` prefix). Files: JSON Lines (`.jsonl`,
`.jsonl.gz`), a JSON array (`.json`) or Parquet (`.parquet`, as the Hugging Face Hub stores
datasets). A row that cannot be mapped is refused with its place (`file:line`, or `file: row N`
in Parquet and JSON arrays) and what is missing; nothing is written.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from journey.runtime.io import DataError, check_readable_file, json_object_line, read_jsonl
from journey.tasks.math import last_boxed

COUNTDOWN_QUESTION = ("Using the numbers {nums}, create an equation that equals {target}. You can "
                      "use basic arithmetic operations (+, -, *, /) and each number can only be used once.")
MBPP_TESTS_HEADER = "Your code should pass these tests:"
OURS = ("id", "question", "answer")

Mapper = Callable[[dict, str, dict], dict]  # (source row, where, options) -> problems row


# ---------------------------------------------------------------- reading any file


def read_source_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield (place, row) for every row of a JSONL, JSONL.gz, JSON-array or Parquet file."""
    path = check_readable_file(path, "--from")
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from _parquet_rows(path)
    elif name.endswith(".gz"):
        yield from _gzip_rows(path)
    elif name.endswith(".json") and _starts_with(path, b"["):
        yield from _array_rows(path)
    else:
        for lineno, row in read_jsonl(path):
            yield f"{path}:{lineno}", row


def _starts_with(path: Path, char: bytes) -> bool:
    with path.open("rb") as fh:
        return fh.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == char


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 (pyarrow raises many kinds for a bad file)
        raise DataError(f"--from {path}: not a readable Parquet file ({type(err).__name__})") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield f"{path}: row {i}", row


def _array_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"--from {path}: not valid JSON ({err})") from None
    except RecursionError:
        raise DataError(f"--from {path}: not valid JSON (nested too deeply)") from None
    if not isinstance(items, list):
        raise DataError(f"--from {path}: expected a JSON array of objects, got {type(items).__name__}")
    for i, row in enumerate(items, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: item {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: item {i}", row


def _gzip_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        with gzip.open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
    except (OSError, EOFError) as err:
        raise DataError(f"--from {path}: not a readable gzip file ({err})") from None
    for lineno, raw in enumerate(lines, 1):
        row = json_object_line(raw, path, lineno)
        if row is not None:
            yield f"{path}:{lineno}", row


# ---------------------------------------------------------------- fields


def text_field(row: dict, where: str, *keys: str) -> str:
    """The first of `keys` present in `row`, as a non-empty string; DataError naming `where`."""
    for key in keys:
        if key in row and row[key] is not None:
            value = row[key]
            if not isinstance(value, str):
                raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise DataError(f"{where}: {key!r} is empty")
            return value
    raise DataError(f"{where}: no {' or '.join(map(repr, keys))} field")


def answer_text(value, where: str, key: str) -> str:
    """An answer as a string: strings as they are, integers and floats written out."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    shown = json.dumps(value, default=repr)[:40]  # NaN (a missing value) is no answer
    raise DataError(f"{where}: {key!r} must be a non-empty string or a number, got {shown}")


def integer(value, where: str, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise DataError(f"{where}: {key!r} must be an integer, got {json.dumps(value)[:40]}")


def string_list(row: dict, where: str, key: str, required: bool = True) -> list[str]:
    value = row.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (required and not value):
        raise DataError(f"{where}: {key!r} must be a non-empty list of strings")
    return value


def source_id(row: dict, *keys: str) -> str | None:
    """The row's own id from the first of `keys` it has (a string or an integer), else None."""
    for key in keys:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def extras(row: dict, consumed: set[str]) -> dict:
    """The source keys not mapped, kept as they are; our own names get a `source_` prefix."""
    return {(f"source_{k}" if k in OURS else k): v for k, v in row.items() if k not in consumed}


NUMBER_WITH_COMMAS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


# ---------------------------------------------------------------- one mapper per format


def from_math(row: dict, where: str, opts: dict) -> dict:
    question = text_field(row, where, "problem", "question")
    answer = row.get("answer")
    if isinstance(answer, str | int | float) and not isinstance(answer, bool) and str(answer).strip():
        answer = answer_text(answer, where, "answer")
    else:
        solution = row.get("solution")
        answer = last_boxed(solution) if isinstance(solution, str) else None
        if not answer:
            raise DataError(f"{where}: no answer: neither an 'answer' nor a \\boxed{{}} in 'solution'")
    pid = source_id(row, "id", "unique_id")
    return {"id": pid, "question": question, "answer": answer,
            **extras(row, {"id", "unique_id", "problem", "question", "answer"})}


def from_gsm8k(row: dict, where: str, opts: dict) -> dict:
    question = text_field(row, where, "question")
    full = text_field(row, where, "answer")
    solution, marker, final = full.rpartition("####")
    final = final.strip()
    if not marker or not final:
        raise DataError(f"{where}: 'answer' has no final '#### N' (GSM8K writes the answer after ####)")
    if NUMBER_WITH_COMMAS.fullmatch(final):
        final = final.replace(",", "")
    return {"id": source_id(row, "id"), "question": question, "answer": final,
            "solution": solution.strip(), **extras(row, {"id", "question", "answer"})}


def function_called(code: str, tests: list[str]) -> str | None:
    """The function of `code` that the tests call: the first `def NAME` whose `NAME(` a test holds."""
    for name in re.findall(r"^def\s+(\w+)\s*\(", code, re.MULTILINE):
        if any(re.search(rf"\b{re.escape(name)}\s*\(", t) for t in tests):
            return name
    return None


def from_mbpp(row: dict, where: str, opts: dict) -> dict:
    task = text_field(row, where, "text", "prompt")
    code = text_field(row, where, "code")
    tests = string_list(row, where, "test_list")
    entry = function_called(code, tests)
    if entry is None:
        raise DataError(f"{where}: no function of 'code' is called by 'test_list'")
    setup = row.get("test_setup_code") or "\n".join(string_list(row, where, "test_imports", required=False))
    out = {"id": f"mbpp-{source_id(row, 'task_id')}" if source_id(row, "task_id") else source_id(row, "id"),
           "question": f"{task.strip()}\n\n{MBPP_TESTS_HEADER}\n" + "\n".join(tests),
           "answer": code, "tests": tests, "entry_point": entry, "test_setup": setup}
    challenge = string_list(row, where, "challenge_test_list", required=False)
    if challenge:
        out["challenge_tests"] = challenge
    consumed = {"id", "task_id", "text", "prompt", "code", "test_list", "test_setup_code",
                "test_imports", "challenge_test_list"}
    return {**out, **extras(row, consumed)}


def from_humaneval(row: dict, where: str, opts: dict) -> dict:
    prompt = text_field(row, where, "prompt")
    body = row.get("canonical_solution")
    if not isinstance(body, str) or not body.strip():
        raise DataError(f"{where}: 'canonical_solution' must be a non-empty string")
    test, entry = text_field(row, where, "test"), text_field(row, where, "entry_point").strip()
    if not re.search(rf"^def\s+{re.escape(entry)}\s*\(", prompt, re.MULTILINE):
        raise DataError(f"{where}: the prompt defines no function {entry!r} (its 'entry_point')")
    return {"id": source_id(row, "task_id", "id"), "question": prompt, "answer": prompt + body,
            "tests": [f"{test.rstrip()}\n\n\ncheck({entry})\n"], "entry_point": entry,
            **extras(row, {"id", "task_id", "prompt", "canonical_solution", "test", "entry_point"})}


def from_countdown(row: dict, where: str, opts: dict) -> dict:
    if "nums" not in row or "target" not in row:
        raise DataError(f"{where}: a Countdown row needs 'nums' and 'target'")
    nums = row["nums"]
    if not isinstance(nums, list) or not nums:
        raise DataError(f"{where}: 'nums' must be a non-empty list of integers")
    nums = [integer(v, where, "nums") for v in nums]
    target = integer(row["target"], where, "target")
    return {"id": source_id(row, "id"), "question": COUNTDOWN_QUESTION.format(nums=nums, target=target),
            "answer": str(target), **extras(row, {"id", "nums", "target"}), "nums": nums, "target": target}


def from_jsonl(row: dict, where: str, opts: dict) -> dict:
    qkey, akey = opts["question_key"], opts["answer_key"]
    question = text_field(row, where, qkey)
    if akey not in row:
        raise DataError(f"{where}: no {akey!r} field (pass --answer-key to name another)")
    answer = answer_text(row[akey], where, akey)
    return {"id": source_id(row, "id"), "question": question, "answer": answer,
            **extras(row, {"id", qkey, akey})}


FORMATS: dict[str, Mapper] = {
    "math": from_math,
    "gsm8k": from_gsm8k,
    "mbpp": from_mbpp,
    "humaneval": from_humaneval,
    "countdown": from_countdown,
    "jsonl": from_jsonl,
}


def check_json_columns(row: dict, where: str) -> None:
    """DataError naming the first column whose value JSON cannot hold as it is (bytes, a
    timestamp, NaN or infinity): every column must round-trip through problems.jsonl."""
    for key, value in row.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            why = "NaN or infinity" if isinstance(err, ValueError) else str(err)
            raise DataError(f"{where}: column {key!r} holds a value JSON cannot keep ({why}: "
                            f"{repr(value)[:40]}); drop or convert the column") from None
        except RecursionError:
            raise DataError(f"{where}: column {key!r} is nested too deeply") from None


def import_problems(path: Path, fmt: str, question_key: str = "question",
                    answer_key: str = "answer") -> list[dict]:
    """problems.jsonl rows from the file at `path` in format `fmt` (see the module docstring);
    DataError naming the place of the first row that cannot be mapped, or of a repeated id."""
    if fmt not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "jsonl" and (question_key, answer_key) != ("question", "answer"):
        raise DataError("--question-key and --answer-key are for --format jsonl only")
    path = Path(path)
    stem = path.name.split(".")[0] or "rows"
    opts = {"question_key": question_key, "answer_key": answer_key}
    rows, seen = [], {}
    for n, (where, source) in enumerate(read_source_rows(path), 1):
        row = FORMATS[fmt](source, where, opts)
        row["id"] = row["id"] or f"{fmt}-{stem}-{n:05d}"
        check_json_columns(row, where)
        if row["id"] in seen:
            raise DataError(f"{where}: duplicate id {row['id']!r} (first at {seen[row['id']]})")
        seen[row["id"]] = where
        rows.append(row)
    if not rows:
        raise DataError(f"--from {path}: no rows in the file")
    return rows
