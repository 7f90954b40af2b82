"""stages/build_tree.py: resume (duplicate trees dropped, changed or foreign problems refused), a full
disk, a question longer than the context, and solved trees counted as derive counts them."""

import json

import pytest

from tests.helpers import GOOD_PROBLEM, fill, lines, run, write_problems, write_rows


def problem_rows(n=3, seed=5):
    from journey.tasks import get_task

    return [p.to_row() for p in get_task("arith").generate(n, seed)]


# ---------------------------------------------------------------- duplicates and stale rows


def test_resume_drops_duplicate_trees_and_says_so(tmp_path, caplog):
    problems = write_problems(tmp_path / "p.jsonl", n=3)
    out = tmp_path / "t.jsonl"
    args = ["build-tree", "--problems", problems, "--out", out, "--depth", 2]
    assert run(*args).exit_code == 0
    doubled = out.read_text().splitlines()
    out.write_text("\n".join(doubled + doubled) + "\n")
    result = run(*args)
    assert result.exit_code == 0 and "3 already done" in result.output
    assert "dropped 3 duplicate row(s)" in caplog.text
    assert len(lines(out)) == 3  # rewritten without the duplicates


@pytest.mark.parametrize("change", ["question", "answer"])
def test_resume_refuses_a_changed_problem(tmp_path, change):
    rows = problem_rows(3)
    problems = write_rows(tmp_path / "p.jsonl", rows)
    out = tmp_path / "t.jsonl"
    args = ["build-tree", "--problems", problems, "--out", out, "--depth", 2]
    assert run(*args).exit_code == 0
    before = out.read_text()
    rows[1][change] = "(1 + 2) * 3" if change == "question" else "999"
    write_rows(problems, rows)
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert f"t.jsonl:2: problem {rows[1]['id']!r} has changed" in result.output
    assert out.read_text() == before
    assert run(*args, "--overwrite").exit_code == 0


def test_resume_refuses_trees_of_other_problems(tmp_path):
    out = tmp_path / "t.jsonl"
    first = write_rows(tmp_path / "p.jsonl", problem_rows(2, seed=1))
    assert run("build-tree", "--problems", first, "--out", out, "--depth", 2).exit_code == 0
    other = write_rows(tmp_path / "q.jsonl", [{**r, "id": "other-" + r["id"]} for r in problem_rows(2, seed=1)])
    result = run("build-tree", "--problems", other, "--out", out, "--depth", 2)
    assert result.exit_code == 1 and "is not in" in result.output and "q.jsonl" in result.output


# ---------------------------------------------------------------- full disk, long questions


def test_build_tree_on_a_full_disk_names_the_file_and_resumes(tmp_path, tiny_disk):
    problems = write_problems(tmp_path / "p.jsonl", n=6)
    out = tiny_disk / "t.jsonl"
    fill(tiny_disk, leave=6000)
    result = run("build-tree", "--problems", problems, "--out", out, "--depth", 3)
    assert result.exit_code == 1, result.output
    assert f"{out}: cannot write (no space left on the device)" in result.output
    kept = out.read_text() if out.exists() else ""  # a journal that kept no tree is removed
    assert kept == "" or kept.endswith("\n")  # no half line
    (tiny_disk / "filler").unlink()
    assert run("build-tree", "--problems", problems, "--out", out, "--depth", 3).exit_code == 0
    whole = tmp_path / "whole.jsonl"
    assert run("build-tree", "--problems", problems, "--out", whole, "--depth", 3).exit_code == 0
    assert len(lines(out)) == 6 and {r["problem"]["id"] for r in lines(out)} == {r["problem"]["id"] for r in lines(whole)}


def test_question_longer_than_the_context_is_refused_up_front(tmp_path):
    rows = [GOOD_PROBLEM, {"id": "long", "question": "1 + " * 300_000 + "1", "answer": "300001"}]
    problems = write_rows(tmp_path / "p.jsonl", rows)
    for command in (["build-tree"], ["eval", "--model", "embedded"]):
        out = tmp_path / "out.jsonl"
        result = run(*command, "--problems", problems, "--out", out)
        assert result.exit_code == 1, result.output
        assert "p.jsonl:2" in result.output and "context" in result.output and "4,096" in result.output
        assert not out.exists()


# ---------------------------------------------------------------- one definition, one source


def test_build_tree_and_derive_count_correct_paths_the_same_way(tmp_path):
    import re

    problems = write_problems(tmp_path / "p.jsonl", n=6, seed=12)
    trees = tmp_path / "t.jsonl"
    built = run("build-tree", "--problems", problems, "--out", trees, "--depth", 8)
    derived = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d")
    solved = int(re.search(r"trees with a correct path\s*│\s*(\d+) / 6", built.output).group(1))
    used = json.loads((tmp_path / "d" / "derive.json").read_text())["stats"]["used"]
    assert solved == used, (built.output, derived.output)
    assert "w·K·D: 64" in built.output  # 4 * 2 * 8, beside the exhaustive count
