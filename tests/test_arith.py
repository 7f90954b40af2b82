"""The arith task: verifier verdicts and reasons, parsing, the solver, the generator."""

import json

import pytest

from journey.tasks import get_task
from journey.tasks.arith import ArithConfig, check_steps, evaluate, parse, render, solve

Q = "(23 + 19) * 3 - 41"


@pytest.mark.parametrize(
    "previous, step, ok, reason",
    [
        ([], "23 + 19 = 42", True, "23 + 19 = 42 is right."),
        (["23 + 19 = 42"], "42 * 3 = 126", True, "42 * 3 = 126 is right."),
        # arithmetic slip
        (["23 + 19 = 42"], "42 * 3 = 116", False, "42 * 3 is 126, not 116."),
        # illegal order: the subtraction before the product
        (["23 + 19 = 42"], "3 - 41 = -38", False, "3 - 41 cannot be computed yet in 42 * 3 - 41; 42 * 3 comes first."),
        # parentheses first
        ([], "19 * 3 = 57", False, "19 * 3 does not appear in (23 + 19) * 3 - 41."),
        # an operation that is not in the expression at all
        ([], "23 + 18 = 41", False, "23 + 18 does not appear in (23 + 19) * 3 - 41."),
        # malformed text never raises
        ([], "23 plus 19 is 42", False, 'Expected a step like "23 + 19 = 42" or "The answer is 85.", got "23 plus 19 is 42".'),
        ([], "", False, 'Expected a step like "23 + 19 = 42" or "The answer is 85.", got "an empty line".'),
        ([], "1" * 40 + " + 1 = 2", False, "The step is too long to be a reduction."),
        # final line with a wrong answer, and one given too early
        (["23 + 19 = 42", "42 * 3 = 126", "126 - 41 = 85"], "The answer is 84.", False, "The steps give 85, not 84."),
        (["23 + 19 = 42", "42 * 3 = 126", "126 - 41 = 85"], "The answer is 85.", True, "The answer 85 follows from the steps."),
        (["23 + 19 = 42"], "The answer is 85.", False, "It is too early to answer: 42 * 3 - 41 is not fully computed."),
        # a step after an unusable step
        (["hello"], "23 + 19 = 42", False, "Step 2 follows a step that could not be applied."),
        # after a slip, the next step is judged against what was written (claimed value)
        (["23 + 19 = 43"], "43 * 3 = 129", True, "43 * 3 = 129 is right."),
    ],
)
def test_verify_step(previous, step, ok, reason):
    check = get_task("arith").verify_step(Q, previous, step)
    assert (check.ok, check.reason) == (ok, reason)


def test_either_product_may_come_first():
    checks = check_steps("2 * 3 + 4 * 5", ["4 * 5 = 20", "2 * 3 = 6", "6 + 20 = 26", "The answer is 26."])
    assert all(c.ok for c in checks)


def test_inexact_division_is_wrong():
    assert check_steps("7 / 2 + 1", ["7 / 2 = 3"])[0].reason == "7 / 2 is not a whole number."


@pytest.mark.parametrize(
    "text, value",
    [("(23 + 19) * 3 - 41", 85), ("50 - (3 + 4)", 43), ("2 * 3 + 4 * 5", 26), ("8 / 4 / 2", 1), ("7", 7)],
)
def test_parse_render_round_trip(text, value):
    tree = parse(text)
    assert render(tree) == text
    assert evaluate(tree) == value


@pytest.mark.parametrize("bad", ["(1 + 2", "1 +", "1 $ 2", "1 2", ""])
def test_parse_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_solve_canonical_order():
    assert solve(Q) == ["23 + 19 = 42", "42 * 3 = 126", "126 - 41 = 85", "The answer is 85."]
    assert solve("2 * 3 + 4 * 5") == ["2 * 3 = 6", "4 * 5 = 20", "6 + 20 = 26", "The answer is 26."]


def test_generator_is_deterministic_and_solutions_verify():
    task = get_task("arith")
    a, b = task.generate(50, seed=7), task.generate(50, seed=7)
    assert a == b
    assert a != task.generate(50, seed=8)
    for p in a:
        steps = solve(p.question)
        assert all(c.ok for c in check_steps(p.question, steps)), p.question
        assert task.check_answer(task.extract_answer("\n".join(steps)), p.answer)
        assert 2 <= p.meta["ops"] <= 4 and 0 <= int(p.answer) <= 999


def test_generator_knobs():
    from journey.tasks.arith import ArithTask

    task = ArithTask(ArithConfig(min_ops=1, max_ops=1, max_operand=9))
    assert [p.id for p in task.generate(2, 7)] == ["arith-ops1-1-operand9-7-00000", "arith-ops1-1-operand9-7-00001"]
    assert ArithTask().generate(1, 7)[0].id == "arith-7-00000"  # the default knobs: ids as before
    for p in task.generate(30, seed=0):
        assert p.meta["ops"] == 1
    with pytest.raises(ValueError, match="min_ops"):
        ArithConfig(min_ops=3, max_ops=2)


@pytest.mark.parametrize("ops, low, high", [("1", 1, 1), ("2-3", 2, 3), (" 4 - 4 ", 4, 4), ("12", 12, 12)])
def test_problems_ops_sets_the_generators_range(tmp_path, ops, low, high):
    from journey.config import ProblemsConfig
    from journey.stages.problems import run_problems

    out = tmp_path / "p.jsonl"
    run_problems(ProblemsConfig(out=out, n=12, ops=ops))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and {r["ops"] for r in rows} <= set(range(low, high + 1))
    assert all(len(solve(r["question"])) == r["ops"] + 1 for r in rows)
    assert all(r["id"].startswith(f"arith-ops{low}-{high}-") for r in rows)  # never the default range's ids


@pytest.mark.parametrize("values, error", [
    ({"ops": "0"}, "--ops must be N or MIN-MAX"), ({"ops": "3-2"}, "--ops must be"), ({"ops": "13"}, "<= 12"),
    ({"ops": "2-"}, "--ops must be"), ({"ops": "two"}, "--ops must be"),
    ({"ops": "2", "task": "math"}, "--ops is for generated arith"),
    ({"ops": "2", "n": None, "source": "x.jsonl", "format": "math"}, "--ops is for generated arith"),
])
def test_problems_ops_refused(tmp_path, values, error):
    from journey.config import ProblemsConfig

    with pytest.raises(ValueError, match=error):
        ProblemsConfig(out=tmp_path / "p.jsonl", **{"n": 3, **values})


@pytest.mark.parametrize(
    "text, answer",
    [
        ("1 + 2 = 3\nThe answer is 3.", "3"),
        ("The answer is 4.\nWait, that is wrong.\nThe answer is 5.", "5"),
        ("no answer here", None),
        ("The answer is -2.", "-2"),
    ],
)
def test_extract_answer(text, answer):
    assert get_task("arith").extract_answer(text) == answer


def test_check_answer():
    task = get_task("arith")
    assert task.check_answer("85", "85") and not task.check_answer("84", "85")
    assert not task.check_answer(None, "85") and not task.check_answer("x", "85")
