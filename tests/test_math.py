"""The math task: \\boxed{} extraction, math-verify answer checks, curation, and threads."""

import threading

import pytest

from journey.models.registry import build_prm
from journey.tasks import get_task
from journey.tasks.math import curate, last_boxed

task = get_task("math")


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so the answer is \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{x^{2} + 1}", "x^{2} + 1"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    "gold, predicted, same",
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{5}{6}", "\\frac{10}{12}", True),
        ("\\{-2, 2\\}", "\\{2, -2\\}", True),
        ("(0, 1]", "(0, 1]", True),
        ("(0, 1]", "[0, 1]", False),
        ("6\\sqrt{2}", "\\sqrt{72}", True),
        ("x^2 + 2x", "x(x+2)", True),
        ("9\\pi", "9 \\pi", True),
        ("72", "72", True),
        ("72", "71", False),
        ("5", "five apples", False),
    ],
)
def test_check_answer_with_math_verify(gold, predicted, same):
    assert task.check_answer(predicted, gold) is same


def test_no_answer_is_wrong():
    assert not task.check_answer(None, "5")
    assert task.extract_answer("We get 5.\n\nSo the answer is \\boxed{5}.") == "5"
    assert task.is_terminal("So \\boxed{5}.") and not task.is_terminal("We get 5.")


def test_check_answer_off_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(task.check_answer("0.5", "\\frac{1}{2}")))
    t.start()
    t.join()
    assert out == [True]


def test_curate_drops_what_cannot_be_graded():
    rows = [
        {"id": "a", "question": "What is 1 + 1?", "answer": "2"},
        {"id": "b", "question": "Prove that there are infinitely many primes.", "answer": "QED"},
        {"id": "c", "question": "In the diagram, what is angle ABC?", "answer": "30"},
        {"id": "d", "question": "What is the best color?", "answer": ""},
    ]
    kept, dropped = curate(rows)
    assert [r["id"] for r in kept] == ["a"]
    assert dropped == {"proof": 1, "image": 1, "unparseable answer": 1}


def test_shipped_problems_and_prompt():
    problems = task.generate(25, seed=0)
    assert problems == task.generate(25, seed=0) and len({p.meta["source"] for p in problems[:20]}) == 20
    assert curate([p.to_row() for p in problems])[1] == {"proof": 0, "image": 0, "unparseable answer": 0}
    assert task.messages("Q")[0]["role"] == "system" and task.step_delimiter == "\n\n"


def test_verifier_prm_refuses_a_task_without_an_exact_check():
    with pytest.raises(ValueError, match="task 'math' has none"):
        build_prm("verifier", task)
