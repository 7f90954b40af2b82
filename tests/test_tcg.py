"""The test-case generator: mutants made with `ast`, input parsing, reference outputs in the
sandbox, mutation scores, and `journey gen-tests` end to end on the embedded code policy."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.stages.tcg import generated_tests, mutants, mutation_scores, parse_input
from journey.tasks.code import CodeConfig, CodeTask

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
