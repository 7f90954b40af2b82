"""The `code` task: generated problems, answer extraction, grading in the sandbox, the `tests`
PRM, `run-tests`, and `--model embedded` picking the code policy."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.config import BuildTreeConfig, GenerateConfig
from journey.models.embedded import EMBEDDED_CODE_PATH, resolve_model
from journey.models.prm import StepScore
from journey.models.tests_prm import TestsPRM, plan_score
from journey.tasks import get_task
from journey.tasks.code import CodeConfig, CodeTask, Grade, gold_spec, parse_gold, same_output

runner = CliRunner()


@pytest.fixture(scope="module")
def task() -> CodeTask:
    return CodeTask(CodeConfig(workers=2))


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def test_generate_is_seeded_and_answers_are_test_specs(task):
    a, b = task.generate(5, seed=3), task.generate(5, seed=3)
    assert [p.to_row() for p in a] == [p.to_row() for p in b]
    assert a[0].question.startswith("Write f(x) for a list of integers x:")
    entry, tests = parse_gold(a[0].answer)
    assert entry == "f" and tests == a[0].meta["tests"] and len(tests) == 5


def test_reference_solutions_pass_their_tests_and_wrong_ones_do_not(task):
    problems = task.generate(12, seed=7)
    grades = task.grade_answers([p.meta["solution"] for p in problems], [p.answer for p in problems])
    assert all(g.correct and g.reward == 1.0 for g in grades)
    wrong = task.grade_answers(["def f(x):\n    return 'nope'"], [problems[0].answer])[0]
    assert (wrong.compiles, wrong.pass_rate, wrong.reward, wrong.correct) == (True, 0.0, 0.5, False)


def test_reward_is_alpha_compiles_plus_rest_pass_rate():
    gold = gold_spec("f", [{"input": [k], "output": k} for k in range(5)])
    program = "def f(x):\n    return x if x < 2 else -1"  # passes 2 of 5
    for alpha, want in ((0.5, 0.5 + 0.5 * 0.4), (0.2, 0.2 + 0.8 * 0.4), (1.0, 1.0)):
        t = CodeTask(CodeConfig(alpha=alpha))
        assert t.terminal_value(program, gold, False) == pytest.approx(want)
        assert t.check_answer(program, gold) is False
    assert CodeTask().terminal_value("def f(x) oops", gold, False) == 0.0


@pytest.mark.parametrize("text,want", [
    ("```python\ndef f(x):\n    return x\n```", "def f(x):\n    return x"),
    ("Step 1: sort.\n\n```python\ndef f(x):\n    return sorted(x)\n```", "def f(x):\n    return sorted(x)"),
    ("```\ndef g():\n    pass\n```", "def g():\n    pass"),
    ("```python\ndef f(x):\n    return x", "def f(x):\n    return x"),  # a fence cut off: to the end
    ("Step 1: keep the items > 3.", None),
])
def test_extract_answer(text, want):
    assert CodeTask().extract_answer(text) == want


@pytest.mark.parametrize("got,expected,same", [
    ([1, 2], [1, 2], True), ([1, 2], [2, 1], False), (2.0000001, 2.0, True), (True, 1, False),
    ({"a": [1]}, {"a": [1]}, True), ("1", 1, False), (None, None, True), ([1], [1, 2], False),
    # ints compare exactly, floats only against floats (issue 23: `return 1e9` passed 999999937)
    (1e9, 999999937, False), (2.0, 2, False), (2, 2.0, False), ([1.0, 2], [1, 2], False),
    (10 ** 400, 1e308, False), (1.0, 2 ** 1100, False), (float("nan"), float("nan"), False),
    (10 ** 30 + 1, 10 ** 30, False), (1e-7, 0.0, True),
])
def test_same_output(got, expected, same):
    assert same_output(got, expected) is same


def test_failing_test_reason_quotes_input_expected_got(task):
    gold = gold_spec("f", [{"input": [[3, 1]], "output": [1, 3]}])
    g = task.grade_answers(["def f(x):\n    return x"], [gold])[0]
    assert g.reason() == "f([3, 1]) should be [1, 3], but it returned [3, 1]."
    bad = task.grade_answers(["def f(x):\n    return x[5]"], [gold])[0]
    assert bad.reason() == "f([3, 1]) should be [1, 3], but it raised IndexError: list index out of range."
    assert "does not compile" in task.grade_answers(["def f(x) return"], [gold])[0].reason()


def test_bad_gold_is_a_clear_error():
    with pytest.raises(ValueError, match="must be its test spec as JSON"):
        parse_gold("def f(x):\n    return x")
    with pytest.raises(ValueError, match="test 1 must be"):
        parse_gold(json.dumps({"entry_point": "f", "tests": [{"in": 1}]}))


def test_embedded_means_the_tasks_own_policy(tmp_path):
    assert get_task("code").name == "code"
    cfg = BuildTreeConfig(problems=tmp_path / "p", out=tmp_path / "t", task="code", prm="tests")
    assert cfg.model == "embedded-code" and resolve_model(cfg.model) == str(EMBEDDED_CODE_PATH)
    assert BuildTreeConfig(problems=tmp_path / "p", out=tmp_path / "t").model == "embedded"  # arith unchanged
    assert GenerateConfig(model="embedded", problems=tmp_path / "p", out=tmp_path / "o", task="code").model == "embedded-code"
    assert (EMBEDDED_CODE_PATH / "config.json").is_file()


def test_plan_score_explains_with_the_best_rollouts_failing_test():
    passing = Grade(True, 1.0, 1.0, [])
    failing = Grade(True, 0.0, 0.5, [{"verdict": "wrong", "input": [[2]], "expected": 4, "got": 2}])
    assert plan_score([passing, failing]) == StepScore(0.75, True, "1 of 2 programs written from this plan pass every test.")
    s = plan_score([failing, Grade(False, 0.0, 0.0, [{"verdict": "error", "error": "SyntaxError"}])])
    assert not s.ok and s.score == 0.25
    assert s.reason == "Following this plan, f([2]) should be 4, but it returned 2."


def test_tests_prm_scores_programs_by_their_tests(task):
    from journey.models.transformers_policy import TransformersPolicy

    policy = TransformersPolicy("embedded-code", delimiter="\n\n")
    prm = TestsPRM(task, policy, rollouts=2, max_new_tokens=8)
    p = task.generate(1, seed=11)[0]
    right, wrong = fenced(p.meta["solution"]), fenced("def f(x):\n    return None")
    scores = prm.score([p.question] * 3, [["Step 1: x."], ["Step 1: x.", right], [wrong]], [p.answer] * 3)
    assert scores[1] == StepScore(1.0, True, "The program passes all its tests.")
    assert scores[2].score == 0.5 and not scores[2].ok and "but it returned null" in scores[2].reason
    assert 0 <= scores[0].score <= 1  # a plan step: by 2 rollouts cut at 8 tokens (no program: 0)
    with pytest.raises(ValueError, match="--prm tests is for --task code"):
        TestsPRM(get_task("arith"), policy)


def test_run_tests_cli(tmp_path):
    problems = CodeTask().generate(3, seed=5)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p.to_row()) + "\n" for p in problems))
    sols = [{"id": problems[0].id, "code": fenced(problems[0].meta["solution"])},
            {"id": problems[1].id, "code": "def f(x):\n    while True: pass"},
            {"id": problems[2].id, "code": "def f(x) return"}]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sols))
    out = tmp_path / "r.jsonl"
    args = ["run-tests", "--problems", str(tmp_path / "p.jsonl"), "--solutions", str(tmp_path / "s.jsonl"), "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["compiles"], x["pass_rate"], x["reward"]) for x in rows] == [(True, 1.0, 1.0), (True, 0.0, 0.5), (False, 0.0, 0.0)]
    assert {t["verdict"] for t in rows[1]["tests"]} == {"timeout"}
    assert rows[0]["tests"][0].keys() >= {"verdict", "input", "expected", "got"}
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    (tmp_path / "bad.jsonl").write_text('{"id": "nope", "code": "x"}\n')
    bad = runner.invoke(app, [*args[:3], "--solutions", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 1 and "bad.jsonl:1: no problem 'nope'" in bad.output


def test_journey_on_a_code_tree_reflects_with_the_failing_test(task):
    """A hand-built code tree scored by the tests PRM: the trial is the failing program and
    its reflection quotes the failing test (input, expected, got)."""
    import random

    from journey.longthought.paths import journey, shortcut
    from journey.longthought.render import render
    from journey.search.tree import Tree

    gold = gold_spec("f", [{"input": [[3, 1, 2]], "output": [1, 2, 3]}])
    t = Tree({"id": "c1", "question": "Write f(x) for a list of integers x: sort the list.", "answer": gold},
             run={"config": {"prm": "tests"}})
    prm = TestsPRM(task, policy=None, rollouts=1)  # final steps need no policy
    plan = t.add_child(0, text="Step 1: sort ascending.", score=1.0, verdict="correct", reason="ok")
    for code in ("def f(x):\n    return x[::-1]", "def f(x):\n    return sorted(x)"):
        s = prm.score([t.problem["question"]], [["Step 1: sort ascending.", fenced(code)]], [gold])[0]
        t.add_child(plan, text=fenced(code), terminal=True, answer=code, correct=s.ok, score=s.score,
                    verdict="correct" if s.ok else "incorrect", reason=s.reason)
    path = shortcut(t)
    assert path == [1, 3]
    events, _ = journey(t, path, max_trials=2, trial_prob=1.0, rng=random.Random(0))
    text = render(events, t, random.Random(0), task.step_delimiter)
    assert "f([3, 1, 2]) should be [1, 2, 3], but it returned [2, 1, 3]." in text
    assert task.extract_answer(text) == "def f(x):\n    return sorted(x)"


def test_code_options_reach_the_task_in_every_stage_that_checks(tmp_path):
    from journey.runtime.distributed import ChunkJob
    from journey.tasks import task_of

    common = dict(problems=tmp_path / "p.jsonl", out=tmp_path / "o.jsonl", task="code")
    for cfg in (BuildTreeConfig(**common, code_alpha=0.25, unsafe_no_sandbox=True),
                GenerateConfig(model="embedded", **common, code_alpha=0.25, unsafe_no_sandbox=True)):
        t = task_of(cfg)
        assert isinstance(t, CodeTask) and (t.config.alpha, t.config.unsafe_no_sandbox) == (0.25, True)
    plain = task_of(BuildTreeConfig(**common))
    assert (plain.config.alpha, plain.config.unsafe_no_sandbox) == (0.5, False)
    assert type(task_of(BuildTreeConfig(problems=common["problems"], out=common["out"], code_alpha=0.25))).__name__ == "ArithTask"
    job = ChunkJob("code", lambda t, check: None, lambda *a: [], 1, CodeConfig(alpha=0.75))
    job.start([])
    assert job._task.config.alpha == 0.75


def test_code_alpha_is_part_of_a_code_trees_content_only():
    def content(task, alpha):
        return BuildTreeConfig(problems="p", out="o", task=task, code_alpha=alpha).content()

    assert content("code", 0.5)["code_alpha"] == 0.5 and content("code", 0.5) != content("code", 0.2)
    assert "code_alpha" not in content("arith", 0.5) and content("arith", 0.5) == content("arith", 0.2)


@pytest.mark.parametrize("command", ["build-tree", "eval"])
def test_bad_code_alpha_is_refused_naming_the_flag(tmp_path, command):
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "a", "question": "q", "answer": "1"}) + "\n")
    args = ["--problems", problems, "--out", tmp_path / "o.jsonl", "--task", "code"]
    result = runner.invoke(app, [command, *map(str, args), "--code-alpha", "1.5"])
    if command == "eval":  # eval has no --code-alpha: it never scores partial credit
        assert result.exit_code == 2 and "No such option" in result.output
    else:
        assert result.exit_code == 1 and "--code-alpha must be in [0, 1]" in result.output
    assert not (tmp_path / "o.jsonl").exists()


# ---------------------------------------------------------------- issue 23: one bad row never ends a run

FORGE_DEEP = ("import os, re, sys\ndef f(x):\n    frame, seen = sys._getframe(1), []\n    while frame:\n"
              "        seen += list(frame.f_locals.values())\n        frame = frame.f_back\n"
              "    nonce = next(o for o in seen if isinstance(o, str) and re.fullmatch('[0-9a-f]{32}', o))\n"
              "    deep = '[' * 5000 + ']' * 5000\n"
              "    for row in (deep, '{\"i\": 0, \"status\": \"ok\", \"got\": \"%s\"}' % deep):\n"
              "        for fd in range(3, 20):\n            try:\n"
              "                os.write(fd, ('\\n' + nonce + ' ' + row + '\\n').encode())\n"
              "            except OSError:\n                pass\n    os._exit(0)")
# (solution row id, code, the verdict it must get): each once crashed the whole run, or passed
CRASH_ROWS = [
    ("int", "def f(x):\n    return 1e9", "wrong"),  # a float near an int is not that int
    ("int", "import sys\ndef f(x):\n    sys.set_int_max_str_digits(0)\n    return 10 ** 5000", "error"),
    ("int", "import sys\ndef f(x):\n    sys.setrecursionlimit(100000)\n    v = []\n    for _ in range(20000):\n"
            "        v = [v]\n    return v", "error"),
    ("int", FORGE_DEEP, "error"),
    ("float", "def f(x):\n    return 10 ** 400", "wrong"),
    ("big", "def f(x):\n    return 1.0", "wrong"),
    ("int", "def f(x):\n    return '\\ud800'", "error"),  # returns a lone surrogate: cannot be written out
    ("int", "def f(x):\n    raise ValueError('\\ud800')", "error"),  # and raises one
    ("int", "def f(x):\n    return '\ud800'", "error"),  # its source holds one: compiles = False
    ("int", "def f(x):\n" + "    x is 1\n" * 2000 + "    return 999999937", "pass"),  # 2000 SyntaxWarnings
    ("int", "def f(x):\n    return 999999937", "pass"),
]


def test_no_single_row_ends_a_run(tmp_path, capfd):
    problems = [{"id": "int", "entry_point": "f", "tests": [{"input": [0], "output": 999999937}]},
                {"id": "float", "entry_point": "f", "tests": [{"input": [0], "output": 1.5}]},
                {"id": "big", "entry_point": "f", "tests": [{"input": [0], "output": 2 ** 1100}]}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"id": i, "code": c}) + "\n" for i, c, _ in CRASH_ROWS))
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["run-tests", "--problems", str(tmp_path / "p.jsonl"), "--solutions",
                            str(tmp_path / "s.jsonl"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["tests"][0]["verdict"] for row in rows] == [v for _, _, v in CRASH_ROWS]
    assert "Warning" not in r.output + "".join(capfd.readouterr())  # compiled on the host, quietly


def test_grade_cache_keeps_no_program_apart_from_the_text_none():
    task = CodeTask(CodeConfig(workers=1))
    gold = gold_spec("f", [{"input": [1], "output": 1}])
    assert task.grade_answers(["None"], [gold])[0].compiles is True  # `None` is a valid module
    g = task.grade_answers([None], [gold])[0]
    assert (g.compiles, g.reward) == (False, 0.0)


def test_a_comparison_that_raises_is_that_tests_error():
    from journey.tasks.code import grade
    from journey.tasks.sandbox import Outcome

    deep: list = []
    for _ in range(50_000):  # deeper than the host can compare recursively
        deep = [deep]
    outcome = Outcome(True, None, [{"status": "ok", "got": deep}, {"status": "ok", "got": 1}])
    g = grade(outcome, "f", [{"input": [0], "output": [deep]}, {"input": [1], "output": 1}], 0.5)
    assert [v["verdict"] for v in g.verdicts] == ["error", "pass"]
    assert "cannot be compared (RecursionError)" in g.verdicts[0]["error"]


@pytest.mark.slow  # ~1 min of CPU: sandboxed rollouts (the PRM choice itself: tests/test_cli.py)
def test_build_tree_on_code_with_its_defaults_runs_and_says_which_prm(tmp_path):
    """`journey build-tree --task code --problems P --out T`: no --prm, so the task's own (tests)."""
    problems, out = tmp_path / "p.jsonl", tmp_path / "t.jsonl"
    assert runner.invoke(app, ["problems", "--task", "code", "--n", "1", "--out", str(problems)]).exit_code == 0
    result = runner.invoke(app, ["build-tree", "--task", "code", "--problems", str(problems), "--out", str(out),
                                 "--depth", "3", "-w", "2", "--rollouts", "1"])  # small: the defaults are the point
    assert result.exit_code == 0, result.output
    assert "--prm tests (task code's own" in " ".join(result.output.split())
    assert json.loads(out.read_text().splitlines()[0])["run"]["config"]["prm"] == "tests"
