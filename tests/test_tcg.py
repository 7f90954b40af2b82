"""The test-case generator: mutants made with `ast`, input parsing, reference outputs in the
sandbox, outputs-mode grading (the model's expected outputs against the sandboxed reference),
mutation scores, and `journey gen-tests` end to end on the embedded code policy."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.stages.tcg import (
    generated_tests,
    graded_tests,
    mutants,
    mutation_scores,
    parse_input,
    summarize,
)
from journey.tasks.code import CodeConfig, CodeTask, parse_test_line, render_tests

runner = CliRunner()


def test_mutants_hand_worked():
    code = "def f(x):\n    return [v for v in x if v > 3][:2]"
    got = mutants(code)
    assert "def f(x):\n    return [v for v in x if v < 3][:2]" in got  # operator flipped
    assert "def f(x):\n    return [v for v in x if v > 4][:2]" in got  # constant shifted
    assert "def f(x):\n    return [v for v in x if v > 3][2:]" in got  # slice changed
    assert code not in got and len(got) == len(set(got))
    assert mutants("def f(x):\n    return sorted(x, reverse=True)") == ["def f(x):\n    return sorted(x, reverse=False)"]
    assert mutants("def f(x) oops") == []
    assert len(mutants(code, limit=2)) == 2


@pytest.mark.parametrize("text,want", [
    ("[[1, 2]]", [[1, 2]]), (" [3] ", [3]), ("[[1, 2", None), ("7", None), ("", None),
    # dropped, never a crash: 3000 deep, just past MAX_DEPTH, a 5000-digit int, a lone surrogate
    ("[" * 3000 + "]" * 3000, None), ("[" * 101 + "]" * 101, None), ("[" + "9" * 5000 + "]", None),
    ('["\\ud800"]', None),
])
def test_parse_input(text, want):
    assert parse_input(text) == want


def test_reference_gives_outputs_and_mutation_scores():
    task = CodeTask(CodeConfig(workers=2))
    p = {"id": "p", "entry_point": "f", "solution": "def f(x):\n    return [v for v in x if v > 3]",
         "tests": [{"input": [[1, 5]], "output": [5]}]}
    proposals = [["[[4, 3, 9]]", "[[4, 3, 9]]", "not json", "[7]", "[[0]]"]]  # a repeat, junk, a crash
    gen = generated_tests(task, [p], proposals)[0]
    assert gen["proposed"] == 5 and gen["parsed"] == 3
    assert gen["tests"] == [{"input": [[4, 3, 9]], "output": [4, 9]}, {"input": [[0]], "output": []}]
    scores = mutation_scores(task, [p], {"generated": [gen["tests"]], "given": [p["tests"]]}, limit=20)
    # mutants: v < 3, v > 4, v > 2; the generated tests kill all three, the given test only v < 3
    # (v > 4 and v > 2 still give [5] on [1, 5])
    assert scores == {"generated": [(3, 3)], "given": [(1, 3)]}


def test_gen_tests_cli(tmp_path):
    problems = CodeTask().generate(3, seed=2)
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(p.to_row()) + "\n" for p in problems))
    out = tmp_path / "t.jsonl"
    r = runner.invoke(app, ["gen-tests", "--problems", str(src), "--out", str(out), "--n", "4", "--mutants", "5",
                            "--max-new-tokens", "12", "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "mutation score: generated tests" in r.output and "over killable" in r.output
    for line in out.read_text().splitlines():
        row = json.loads(line)
        assert row["tests"] and json.loads(row["answer"])["tests"] == row["tests"]
        assert row["tcg"]["kept"] == len(row["tests"]) <= 4
    (tmp_path / "nosol.jsonl").write_text(json.dumps({"id": "a", "entry_point": "f", "tests": [{"input": [1], "output": 1}]}) + "\n")
    bad = runner.invoke(app, ["gen-tests", "--problems", str(tmp_path / "nosol.jsonl"), "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 1 and "has no reference 'solution'" in bad.output


def test_a_deep_reference_gets_no_mutants_and_no_crash():
    assert mutants("def f(x):\n    return x" + " + 1" * 300) == []  # too deep for deepcopy / unparse
    assert len(mutants("def f(x):\n    return x" + " + 1" * 5)) == 15  # shallow: 5 operators, 5 constants twice


def test_a_malformed_proposal_is_dropped_and_counted():
    task = CodeTask(CodeConfig(workers=1))
    p = {"id": "p", "entry_point": "f", "solution": "def f(x):\n    return x", "tests": [{"input": [1], "output": 1}]}
    gen = generated_tests(task, [p], [["[" * 3000 + "]" * 3000, "[2]"]])[0]
    assert (gen["proposed"], gen["parsed"], gen["tests"]) == (2, 1, [{"input": [2], "output": 2}])


def test_equivalent_mutants_are_found_by_random_inputs():
    from journey.stages.tcg import killable_scores, mutant_kills, probe_tests

    task = CodeTask(CodeConfig(workers=2))
    # inputs are 0..20: of the mutants v > 25, v < 26 and v < 24, only v > 25 ever differs
    p = {"id": "p", "entry_point": "f", "solution": "def f(x):\n    return [v for v in x if v < 25]",
         "tests": [{"input": [[1, 5]], "output": [1, 5]}]}
    probes = probe_tests(task, [p], 30, seed=0)
    assert probes[0][0] == {"input": [[]], "output": []} and len(probes[0]) > 10
    kills = mutant_kills(task, [p], {"given": [p["tests"]], "probe": probes}, limit=20)
    assert sorted(kills["probe"][0]) == [False, False, True]
    assert killable_scores(kills) == {"likely_equivalent": 2, "killable": 1, "killable_score_given": 1.0,
                                      "killable_score_probe": 1.0}
    assert probe_tests(task, [p], 0, seed=0) == [[]]  # skipped
    two_args = {**p, "tests": [{"input": [[1], 2], "output": [1]}]}
    assert probe_tests(task, [two_args], 30, seed=0) == [[]]  # random inputs do not fit it


@pytest.mark.parametrize("line,want", [
    ("[[3, 1]] -> 4", {"input": [[3, 1]], "output": 4}),
    ("  [[]] -> []  ", {"input": [[]], "output": []}),
    ('["a -> b"] -> "c"', {"input": ["a -> b"], "output": "c"}),  # the arrow inside a string
    ("[[3, 1]] -> ", None), ("[[3, 1]] 4", None), ("7 -> 4", None), ("[[3, 1] -> 4", None), ("", None),
])
def test_parse_test_line(line, want):
    assert parse_test_line(line) == want


def test_render_tests_round_trip():
    tests = [{"input": [[3, 1]], "output": 4}, {"input": [[], 2], "output": [0.5, "x"]}]
    assert render_tests(tests) == '[[3, 1]] -> 4\n[[], 2] -> [0.5, "x"]'
    assert [parse_test_line(ln) for ln in render_tests(tests).splitlines()] == tests


def test_outputs_mode_grades_expected_outputs_against_the_reference():
    task = CodeTask(CodeConfig(workers=2))
    p = {"id": "p", "entry_point": "f", "solution": "def f(x):\n    return sum(v for v in x if v > 3)",
         "tests": [{"input": [[1, 5]], "output": 5}]}
    completions = [["[[4, 3, 9]] -> 13\n[[4, 3, 9]] -> 13\n[[1, 5]] -> 6",  # right, a repeat, wrong (it is 5)
                    "junk\n\n[[1, 2]] -> 0\n[7] -> 0\n[[8]] -> "]]  # junk, right, crashes f, cut off
    gen = graded_tests(task, [p], completions)[0]
    # lines: 3 + 4 written (the empty one not counted); parsed: 13, 6, 0, [7]; junk and the cut one fail
    assert (gen["proposed"], gen["parsed"], gen["repeats"]) == (7, 4, 1)
    assert gen["tests"] == [{"input": [[4, 3, 9]], "output": 13}, {"input": [[1, 2]], "output": 0}]
    s = summarize([gen], {"generated": [(1, 2)]}, written=1)
    assert (s["kept"], s["parse_failures"]) == (2, 2)
    assert s["reference_passes"] == 2 / 7 and s["reference_passes_parsed"] == 2 / 4
    assert s["mutation_score_generated"] == 0.5 and s["reference_passes_se"] == 0.0  # one problem: no s.e.


def test_gen_tests_outputs_mode_cli(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(p.to_row()) + "\n" for p in CodeTask().generate(1, seed=2)))
    out = tmp_path / "t.jsonl"
    r = runner.invoke(app, ["gen-tests", "--mode", "outputs", "--problems", str(src), "--out", str(out),
                            "--n", "2", "--max-new-tokens", "30", "--equivalence-inputs", "0"])
    assert r.exit_code == 0, r.output
    # the untrained embedded policy does not write the format: every line it writes fails to parse
    assert "tests proposed / parsed / kept" in r.output and "parse failures / repeats" in r.output
    assert out.exists()
    bad = runner.invoke(app, ["gen-tests", "--mode", "both", "--problems", str(src), "--out", str(out)])
    assert bad.exit_code != 0 and "--mode" in bad.output
