"""The math task: \\boxed{} extraction, bounded math-verify checks, plain numbers and base-n
numerals, curation with a count per rule, and threads."""

import random
import threading
import time
from pathlib import Path

import pytest

from journey.models.registry import build_prm
from journey.tasks import get_task
from journey.tasks.base import Problem
from journey.tasks.math import (
    CURATION_RULES,
    MathChecker,
    MathTask,
    Verdict,
    check,
    checker,
    curate,
    curation_reason,
    last_boxed,
    plain_verdict,
)

task = get_task("math")


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so the answer is \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{x^{2} + 1}", "x^{2} + 1"),
        ("The answer is $\\boxed 5$.", "5"),  # MATH writes \boxed without braces
        ("so \\boxed 12.", "12"),
        ("\\boxed -3$", "-3"),
        ("\\fbox{7}", "7"),
        ("\\boxed{3} first, \\fbox{4} last", "4"),
        ("\\boxed {2}", "2"),
        ("\\boxedx{9}", None),  # not the command
        ("no box here", None),
        ("\\boxed{unclosed", None),
        ("\\boxed{1} and a bare \\boxed", None),
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
        # base-n numerals keep their base (math-verify alone says 52_8 == 52_9)
        ("52_8", "52_9", False),
        ("52_8", "52_{8}", True),
        ("52_8", "52", True),
        ("1011_2", "11", False),
        ("A3_{16}", "a3_{16}", True),
        # decimals: two finite values must be equal (math-verify rounds both to 6 places)
        ("0.0000672", ".000067", False),
        ("0.1234567", "0.1234568", False),
        ("0", "0.0000004", False),
        ("72", "72.0", True),
        ("1000", "1,000", True),
        ("-3", "-3.00", True),
        # a decimal for a value with no finite decimal: >= 6 significant digits, within one unit
        ("\\frac{1}{3}", "0.333333", True),
        ("\\frac{1}{6}", "0.166667", True),
        ("\\frac{1}{6}", "0.166666", True),
        ("\\frac{1}{3}", "0.3333", False),
        ("\\frac{2}{3}", "0.666", False),
    ],
)
def test_check_answer(gold, predicted, same):
    assert task.check_answer(predicted, gold) is same


@pytest.mark.parametrize(
    "gold, predicted, verdict",
    [
        ("72", "72", Verdict(True)),
        ("$72$", "72.", Verdict(True)),
        ("3/4", "\\frac{3}{4}", Verdict(True)),
        ("\\dfrac{3}{4}", "0.75", Verdict(True)),
        ("72", "", Verdict(False, "empty answer")),
        ("72", "-72", Verdict(False, "different number")),
        ("52_8", "52_9", Verdict(False, "different base-n numeral")),
        ("6\\sqrt{2}", "\\sqrt{72}", None),  # needs math-verify
        ("x", "7", None),
        ("52_8", "(52)_8", None),
    ],
)
def test_plain_answers_need_no_math_verify(gold, predicted, verdict):
    assert plain_verdict(gold, predicted) == verdict


def test_no_answer_is_wrong():
    assert not task.check_answer(None, "5")
    assert task.extract_answer("We get 5.\n\nSo the answer is \\boxed{5}.") == "5"
    assert task.is_terminal("So \\boxed{5}.") and task.is_terminal("So \\fbox{5}.")
    assert not task.is_terminal("We get 5.")


def test_check_answer_off_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(task.check_answer("0.5", "\\frac{1}{2}")))
    t.start()
    t.join()
    assert out == [True]


def test_a_check_that_hangs_is_killed_counted_wrong_and_the_next_one_works():
    checker = MathChecker(timeout=1.0)
    try:
        for where in ("main", "thread"):  # math-verify's own timeouts only work in the main thread
            out = []
            started = time.perf_counter()
            run = lambda out=out: out.append(checker.verify("5", "9^{9^{9^{9}}}"))  # noqa: E731
            if where == "main":
                run()
            else:
                t = threading.Thread(target=run)
                t.start()
                t.join()
            assert out == [Verdict(False, "timed out after 1 s")], where
            assert time.perf_counter() - started < 8, where
        assert checker.verify("6\\sqrt{2}", "\\sqrt{72}") == Verdict(True)
        assert checker.starts == 3  # one worker per timeout, and one for the next check
    finally:
        checker.close()


def test_a_wrong_answer_says_why():
    assert task.answer_verdict("\\sqrt{71}", "6\\sqrt{2}") == Verdict(False, "math-verify: not equal")
    assert check("\\frac{1}{2}", "0.5").ok


def test_checks_from_many_threads_take_turns():
    pairs = [(f"\\frac{{{i}}}{{{i + 1}}}", f"\\frac{{{2 * i}}}{{{2 * i + 2}}}") for i in range(1, 9)]
    pairs += [("6\\sqrt{2}", "\\sqrt{72}"), ("6\\sqrt{2}", "\\sqrt{71}")]
    results = {}
    threads = [threading.Thread(target=lambda i=i, g=g, p=p: results.update({i: task.check_answer(p, g)}))
               for i, (g, p) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(pairs))] == [True] * 9 + [False]


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"question": "What is 1 + 1?", "answer": "2"}, None),
        ({"question": "Prove that there are infinitely many primes.", "answer": "QED"}, "proof"),
        ({"question": "Show that $n^2 + n$ is even.", "answer": "even"}, "proof"),
        ({"question": "In the diagram, what is angle ABC?", "answer": "30"}, "figure"),
        ({"question": "As shown, the square has side 3. Its area?", "answer": "9"}, "figure"),
        ({"question": "What is the area of the figure?", "answer": "9"}, "figure"),
        ({"question": "[asy] draw((0,0)--(1,1)); [/asy] Find x.", "answer": "1"}, "figure"),
        ({"question": "The triangle shown below has sides 3, 4, 5. Its area?", "answer": "6"}, "figure"),
        ({"question": "The region pictured has area?", "answer": "4"}, "figure"),
        ({"question": "What is the best color?", "answer": ""}, "no answer"),
        ({"question": "Name it.", "answer": "@@@"}, "unparseable answer"),
        # MATH and MATH-500 rows: `problem`, and an answer or a \boxed{} in the solution
        ({"problem": "What is $2^3$?", "solution": "$2^3 = \\boxed{8}$."}, None),
        ({"problem": "What is $2^3$?", "solution": "It is 8."}, "no answer"),
        ({"problem": "Prove it.", "solution": "$\\boxed{1}$"}, "proof"),
        ({"problem": "What is $\\frac{1}{2}$ of 4?", "answer": "2", "solution": "..."}, None),
    ],
)
def test_curation_rules(row, reason):
    assert curation_reason(row) == reason


def test_curate_counts_every_rule():
    rows = [
        {"id": "a", "question": "What is 1 + 1?", "answer": "2"},
        {"id": "b", "question": "Prove that there are infinitely many primes.", "answer": "QED"},
        {"id": "c", "question": "In the diagram, what is angle ABC?", "answer": "30"},
        {"id": "d", "question": "What is the best color?", "answer": ""},
        {"id": "e", "problem": "What is $3^2$?", "solution": "So $\\boxed 9$."},
        {"id": "f", "question": "Name it.", "answer": "@@@"},
    ]
    kept, dropped = curate(rows)
    assert [r["id"] for r in kept] == ["a", "e"]
    assert dropped == {"proof": 1, "figure": 1, "no answer": 1, "unparseable answer": 1}
    assert list(dropped) == list(CURATION_RULES)


def test_shipped_problems_and_prompt():
    problems = task.generate(25, seed=0)
    assert problems == task.generate(25, seed=0) and len({p.meta["source"] for p in problems[:20]}) == 20
    assert curate([p.to_row() for p in problems])[1] == dict.fromkeys(CURATION_RULES, 0)
    assert task.messages("Q")[0]["role"] == "system" and task.step_delimiter == "\n\n"


def test_verifier_prm_refuses_a_task_without_an_exact_check():
    with pytest.raises(ValueError, match="task 'math' has none"):
        build_prm("verifier", task)


def typical_answers(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (gold, predicted) pairs shaped like MATH-500 answers: 55% integers, 15% fractions, 10%
    surds, 5% decimals, 5% tuples, 5% multiples of pi, 5% polynomials; 70% of them right."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        k, a, b = rng.randrange(100), rng.randrange(1, 500), rng.randrange(2, 60)
        right = rng.random() < 0.7
        c = a if right else a + 1
        if k < 55:
            out.append((str(a), str(c)))
        elif k < 70:
            out.append((f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{c}}}{{{b}}}"))
        elif k < 80:
            out.append((f"{a}\\sqrt{{{b}}}", f"{c}\\sqrt{{{b}}}"))
        elif k < 85:
            out.append((f"{a}.{b}", f"{c}.{b}"))
        elif k < 90:
            out.append((f"({a}, {b})", f"({c}, {b})"))
        elif k < 95:
            out.append((f"{a}\\pi", f"{c}\\pi"))
        else:
            out.append((f"x^2 + {a}x", f"x(x + {c})"))
    return out


@pytest.mark.slow
def test_cost_of_checking_1000_typical_answers():
    """Before: math-verify in process (main thread, its signal timeouts), as this task did.
    After: `check` (plain numbers in process, the rest through the worker). Both start cold.
    Run: .venv/bin/python -m pytest -q -s -m slow tests/test_math.py -k cost"""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def before(g, p):
        gp, pp = parse(f"\\boxed{{{g}}}"), parse(f"\\boxed{{{p}}}")
        return bool(gp) and bool(pp) and verify(gp, pp)

    def after(g, p):
        return check(g, p).ok

    def timed(fn, pairs):
        started = time.perf_counter()
        return [fn(g, p) for g, p in pairs], time.perf_counter() - started

    check("x", "x + 1")  # start the worker (about half a second, once per process)
    pairs = typical_answers(1000, seed=0)
    (old, t_old), (new, t_new) = timed(before, pairs), timed(after, pairs)
    # Only the answers that reach math-verify, fresh strings for both (math-verify caches parses):
    hard = [(g, p) for g, p in typical_answers(3000, seed=1) if plain_verdict(g, p) is None][:300]
    (old_h, t_old_h), (new_h, t_new_h) = timed(before, hard), timed(after, hard)
    started = time.perf_counter()
    for _ in range(200):
        checker().ask({"op": "parse", "answer": "@"})
    trip = (time.perf_counter() - started) / 200
    print(f"\n1,000 typical answers: before {t_old:.2f} s, after {t_new:.2f} s; "
          f"{len(hard)} that need math-verify: before {t_old_h:.2f} s, after {t_new_h:.2f} s; "
          f"a round trip to the worker: {1000 * trip:.2f} ms")
    assert old == new and old_h == new_h  # the same verdicts


@pytest.mark.parametrize(
    "text, formats, answer",
    [
        ("so \\boxed{\\frac{1}{2}}.", ("boxed", "hash", "says"), "\\frac{1}{2}"),
        ("48 / 2 = 24\n#### 1,000", ("boxed", "hash", "says"), "1,000"),
        ("So the answer is 20.", ("boxed", "hash", "says"), "20"),
        ("The final answer is: $\\frac{1}{2}$.", ("boxed", "hash", "says"), "\\frac{1}{2}"),
        ("The answer is 3.5 km. Done", ("boxed", "hash", "says"), "3.5 km"),
        ("#### 90\nThe answer is 4.", ("boxed", "hash", "says"), "90"),  # the first format found wins
        ("#### 90\nThe answer is 4.", ("says", "hash"), "4"),
        ("\\boxed{3} #### 4", ("hash",), "4"),
        ("So the answer is 20.", ("boxed",), None),  # only \boxed{}, as before
        ("no answer here", ("boxed", "hash", "says"), None),
    ],
)
def test_answer_formats_in_order(text, formats, answer):
    task = MathTask(formats)
    assert task.extract_answer(text) == answer
    assert task.is_terminal(text) == (answer is not None)


def test_answer_formats_flag_is_checked():
    from journey.config import EvalConfig

    cfg = EvalConfig(model="embedded", problems=Path("p.jsonl"), task="math", answer_formats="hash, says")
    assert cfg.answer_order() == ("hash", "says")
    for bad in ("boxed,latex", "", "hash,hash"):
        with pytest.raises(ValueError, match="^--answer-formats takes a comma-separated order of boxed, hash, says"):
            EvalConfig(model="embedded", problems=Path("p.jsonl"), task="math", answer_formats=bad)
    assert get_task("math", answers=("says",)).extract_answer("#### 4") is None


def test_eval_counts_the_answers_it_could_read():
    """SmolLM2 writes "#### N": read with the default formats, missed with boxed only (and said so)."""
    from journey.models.base import Proposal
    from journey.stages.evaluate import score

    problems = [Problem("a", "1 + 2", "3"), Problem("b", "2 * 3", "6")]
    greedy = [Proposal("1 + 2 = 3\n\n#### 3", 9, -1.0, "eos"), Proposal("2 * 3 = 5", 5, -1.0, "eos")]
    m, _ = score(MathTask(), problems, greedy, None)
    assert (m["accuracy"], m["answers_extracted"]) == (0.5, 0.5)
    m, _ = score(MathTask(("boxed",)), problems, greedy, None)
    assert (m["accuracy"], m["answers_extracted"]) == (0.0, 0.0)
