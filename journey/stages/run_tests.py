"""Score programs against their problems' tests in the sandbox: `journey run-tests`.

    journey run-tests --problems problems.jsonl --solutions solutions.jsonl --out results.jsonl

`--solutions` rows are `{"id": problem id, "code": "..."}` from any model (a ```python fence
around the code is fine). Each solution runs in ONE sandboxed process with all its problem's
tests (`journey.tasks.sandbox`), many at once; the host compares outputs with the expected ones.
One result row per solution, in the solutions' order:

    {"id", "compiles", "pass_rate", "reward", "tests": [{"verdict": "pass" | "wrong" | "error"
     | "timeout" | "memory", "input", "expected", "got"?, "error"?}]}

reward = a * compiles + (1 - a) * pass_rate (`--code-alpha`, 0.5 as o1-Coder).

The `tests` PRM that builds code trees grades the same way (`journey.models.tests_prm`).
"""

from __future__ import annotations

import json
from pathlib import Path

from journey.runtime.io import (
    DataError,
    check_output,
    output_lock,
    read_jsonl,
    write_jsonl_atomic,
)
from journey.tasks.code import CodeTask, Grade, check_tests, gold_spec, parse_gold

FORMAT = "journey.test_results/v1"


def load_code_problems(path: Path) -> dict[str, dict]:
    """Code problems by id: `id`, `entry_point` and `tests` (or a JSON test spec in `answer`);
    `question` and `solution` kept when present. DataError naming file:line otherwise."""
    problems: dict[str, dict] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        pid = row.get("id")
        if not isinstance(pid, str) or not pid.strip():
            raise DataError(f"{where}: 'id' must be a non-empty string")
        if pid in problems:
            raise DataError(f"{where}: duplicate id {pid!r}")
        try:
            if "tests" in row:
                entry, tests = check_tests(row.get("entry_point"), row["tests"])
            else:
                entry, tests = parse_gold(row.get("answer"))
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
        problems[pid] = {**row, "entry_point": entry, "tests": tests}
    if not problems:
        raise DataError(f"{path}: no problems in the file")
    return problems


def load_solutions(path: Path, problems: dict[str, dict]) -> list[dict]:
    """`{"id", "code"}` rows; DataError naming file:line for a bad row or an unknown id."""
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(row.get("id"), str) or not isinstance(row.get("code"), str):
            raise DataError(f"{where}: a solution row is {{\"id\": problem id, \"code\": \"...\"}}")
        if row["id"] not in problems:
            raise DataError(f"{where}: no problem {row['id']!r} in the problems file")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no solutions in the file")
    return rows


def program_of(code: str) -> str:
    """The program in a solution: the last fenced block if there is one, else the text as is."""
    return CodeTask().extract_answer(code) or code


def result_row(pid: str, g: Grade) -> dict:
    return {"id": pid, "compiles": g.compiles, "pass_rate": round(g.pass_rate, 6),
            "reward": round(g.reward, 6), "tests": g.verdicts}


def run_tests(cfg) -> dict:
    """Score every solution (see module docstring); write `cfg.out`; return a summary."""
    from journey.tasks.code import CodeConfig

    problems = load_code_problems(cfg.problems)
    solutions = load_solutions(cfg.solutions, problems)
    check_output(cfg.out, inputs={"--problems": cfg.problems, "--solutions": cfg.solutions})
    task = CodeTask(CodeConfig(alpha=cfg.code_alpha, unsafe_no_sandbox=cfg.unsafe_no_sandbox, workers=cfg.workers))
    with output_lock(cfg.out):
        if cfg.out.exists() and not cfg.overwrite:
            raise DataError(f"--out {cfg.out}: the file exists; pass --overwrite to replace it")
        golds = [gold_spec(problems[s["id"]]["entry_point"], problems[s["id"]]["tests"]) for s in solutions]
        grades = task.grade_answers([program_of(s["code"]) for s in solutions], golds)
        rows = [result_row(s["id"], g) for s, g in zip(solutions, grades)]
        write_jsonl_atomic(cfg.out, rows)
    n = len(rows)
    return {"solutions": n, "compiles": sum(r["compiles"] for r in rows) / n,
            "pass_rate": sum(r["pass_rate"] for r in rows) / n, "all_pass": sum(g.correct for g in grades) / n,
            "reward": sum(r["reward"] for r in rows) / n}


def summary_json(summary: dict) -> str:
    return json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
