"""Issue 17's mechanism eval (`eval --inject-errors`) and derive-longthought's trace-shape knobs."""

import json
import random
from collections import Counter

import pytest

from journey.longthought.paths import Event, journey, trial_walk
from journey.longthought.render import CONCISE_TEMPLATES, render_with_spans
from journey.search.tree import Tree
from journey.stages.inject import backtrack_validity, injection_case, mechanism, metrics_of
from journey.tasks import get_task
from journey.tasks.arith import corrupt_reduction, replay_states
from journey.tasks.base import Problem
from tests.helpers import hand_tree, run, write_problems

ARITH = get_task("arith")
P = Problem("x", "(23 + 19) * 3 - 41", "85")
CASE = {"prefix": ["23 + 19 = 42"], "injected": "42 * 3 = 116", "right_step": "42 * 3 = 126"}


# ---------------------------------------------------------------- the task's hooks


def test_arith_states_and_corrupter_by_hand():
    steps = ["23 + 19 = 42", "42 * 3 = 126", "126 - 41 = 85", "The answer is 85."]
    assert replay_states(P.question, steps) == ["(23 + 19) * 3 - 41", "42 * 3 - 41", "126 - 41", "85", "85"]
    assert replay_states(P.question, ["19 + 23 = 42"]) == ["(23 + 19) * 3 - 41"]  # cannot apply: stops
    for seed in range(20):
        wrong = corrupt_reduction("42 * 3 = 126", random.Random(seed))
        assert wrong.startswith("42 * 3 = ") and wrong != "42 * 3 = 126"
    assert corrupt_reduction("The answer is 85.", random.Random(0)) is None


def test_injection_cases_are_seeded_and_never_the_answer_line():
    problems = ARITH.generate(30, seed=3)
    cases = [injection_case(ARITH, p, seed=0) for p in problems]
    assert cases == [injection_case(ARITH, p, seed=0) for p in problems]
    cuts = Counter()
    for p, c in zip(problems, cases):
        solution = ARITH.solution(p.question)
        k = len(c["prefix"])
        assert c["prefix"] == solution[:k] and c["right_step"] == solution[k] and k < len(solution) - 1
        assert not ARITH.verify_step(p.question, c["prefix"], c["injected"]).ok
        cuts[k] += 1
    assert len(cuts) > 1  # the cut point varies


# ---------------------------------------------------------------- mechanism, by hand

RECOVERS = 'Wait, 42 * 3 is 126, not 116.\nBack to step 1: "23 + 19 = 42".\n42 * 3 = 126\n126 - 41 = 85\nThe answer is 85.'
PLODS_ON = "116 - 41 = 75\nThe answer is 75."


@pytest.mark.parametrize("after_injected, after_clean, expected", [
    (RECOVERS, "126 - 41 = 85\nThe answer is 85.",
     {"recovered": True, "detected": True, "false_alarm": False, "backtracks": 1, "valid_backtracks": 1}),
    (PLODS_ON, "Wait, 42 * 3 is 126.\n126 - 41 = 85\nThe answer is 85.",
     {"recovered": False, "detected": False, "false_alarm": True, "backtracks": 0, "valid_backtracks": 0}),
    ('116 - 41 = 75\nThe answer is 75.\nWait, that is wrong.\nBack to "99 - 41".\nThe answer is 58.', "",
     {"recovered": False, "detected": False, "false_alarm": False, "backtracks": 1, "valid_backtracks": 0}),
    ('Wait, 42 * 3 is 126, not 116.\nBack to "42 * 3 - 41".\n42 * 3 = 126\n126 - 41 = 85\nThe answer is 85.', "",
     {"recovered": True, "detected": True, "false_alarm": False, "backtracks": 1, "valid_backtracks": 1}),
    ("Wait, let me check.\nBack to the start.\n23 + 19 = 42\n42 * 3 = 126\n126 - 41 = 85\nThe answer is 85.", "",
     {"recovered": True, "detected": True, "false_alarm": False, "backtracks": 1, "valid_backtracks": 1}),
])
def test_mechanism_by_hand(after_injected, after_clean, expected):
    got = mechanism(ARITH, P, CASE, after_injected, after_clean)
    assert {k: got[k] for k in expected} == expected


def test_a_backtrack_to_a_step_never_written_is_invalid():
    lines = ["23 + 19 = 42", "42 * 3 = 116", "Wait, no.", 'Back to step 1: "23 + 19 = 24".']
    assert backtrack_validity(ARITH, P.question, lines) == (1, 0)
    lines[-1] = 'Back to step 1: "23 + 19 = 42".'
    assert backtrack_validity(ARITH, P.question, lines) == (1, 1)


# Issue 25 defects 2 and 4: each clause of the definitions in journey.stages.inject's docstring.
INJECTED = ["23 + 19 = 42", "42 * 3 = 116"]  # lines[1] is the injected step
W = "Wait, 42 * 3 is 126, not 116."


@pytest.mark.parametrize("cont, expected", [
    pytest.param(["Back to the start."], (1, 1), id="a-start"),
    pytest.param(["Alternatively, I can begin with a different first step."], (1, 1), id="a-start-verbose"),
    pytest.param([W, 'Back to step 1: "23 + 19 = 42".'], (1, 1), id="b-step-number-right"),
    pytest.param([W, 'Let me go back to step 1 ("23 + 19 = 42") and try again.'], (1, 1), id="b-verbose"),
    pytest.param([W, 'Back to step 2: "23 + 19 = 42".'], (1, 0), id="b-step-number-wrong"),
    pytest.param([W, 'Back to step 1: "23 + 19 = 24".'], (1, 0), id="b-step-never-written"),
    pytest.param([W, 'Back to "23 + 19 = 42".'], (1, 1), id="c-step-text"),
    pytest.param([W, 'Back to "42 * 3 - 41".'], (1, 1), id="d-state"),
    pytest.param([W, 'Back to "(23 + 19) * 3 - 41".'], (1, 1), id="d-the-question"),
    pytest.param([W, 'Back to "99 - 41".'], (1, 0), id="d-state-never-reached"),
    pytest.param([W, 'Back to step 2: "42 * 3 = 116".'], (1, 0), id="e-names-the-injected-step"),
    pytest.param([W, 'Back to "116 - 41".'], (1, 0), id="e-state-only-through-it"),
    pytest.param(["116 - 41 = 75", "Wait", 'Back to "116 - 41".'], (1, 0), id="e-later-state-only-through-it"),
    pytest.param([W, 'Back to "42 * 3 - 41".', "42 * 3 = 126", "126 - 41 = 86", "Wait, 126 - 41 is 85.",
                  'Back to "126 - 41".'], (2, 2), id="replay-survivor-issue-example"),
    pytest.param([W, "Back to the start.", "23 + 19 = 42", "42 * 3 = 126", "Wait, hmm.",
                  'Back to step 2: "42 * 3 = 126".'], (2, 2), id="replay-after-start"),
    pytest.param([W, 'Back to "42 * 3 - 41".', "42 * 3 = 126", "Wait.", 'Back to "116 - 41".'], (2, 1),
                 id="replay-abandoned-state-gone"),
])
def test_backtrack_validity_clauses(cont, expected):
    assert backtrack_validity(ARITH, P.question, INJECTED + cont, injected_at=1) == expected


@pytest.mark.parametrize("after_clean, alarm", [
    pytest.param("126 - 41 = 85\nThe answer is 85.", False, id="no-doubt"),
    pytest.param("Wait, 42 * 3 is 126.\n126 - 41 = 85", True, id="doubt-on-clean-state"),
    pytest.param("126 - 41 = 85\nwait, let me check.", True, id="doubt-after-right-steps-any-case"),
    pytest.param("126 - 41 = 84\nWait, 126 - 41 is 85.\n126 - 41 = 85", False, id="justified-after-own-slip"),
    pytest.param("126 - 41 = 85\nThe answer is 84.\nWait, that is not it.", False, id="justified-after-wrong-answer"),
    pytest.param("126 - 41 = 85\nThat is, let me recompute.", True, id="lowercase-let-me-recompute"),
])
def test_false_alarm_clauses(after_clean, alarm):
    assert mechanism(ARITH, P, CASE, PLODS_ON, after_clean)["false_alarm"] is alarm


@pytest.mark.parametrize("after_injected, detected", [
    pytest.param(W, True, id="first-line"),
    pytest.param("116 - 41 = 75\nWait, that is wrong.", True, id="second-line"),
    pytest.param("116 - 41 = 75\nThe answer is 75.\nWait, that is wrong.", False, id="third-line-too-late"),
    pytest.param('Therefore that step is wrong; let me recompute from step 1 ("23 + 19 = 42").', True,
                 id="verbose-lowercase-let-me-recompute"),
    pytest.param("116 - 41 = 75\nThe answer is 75.", False, id="none"),
])
def test_detection_clauses(after_injected, detected):
    assert mechanism(ARITH, P, CASE, after_injected, "")["detected"] is detected


def test_journal_rows_are_rescored_with_todays_definitions():
    from journey.stages.inject import rescored

    row = {"skipped": False, "id": "x", "question": P.question, "gold": "85", **CASE,
           "after_injected": 'Wait.\nBack to step 2: "42 * 3 = 116".', "after_clean": "",
           "valid_backtracks": 1, "backtracks": 1, "detected": False}
    assert {k: rescored(ARITH, row)[k] for k in ("backtracks", "valid_backtracks", "detected")} == \
        {"backtracks": 1, "valid_backtracks": 0, "detected": True}


def test_metrics_of_by_hand():
    rows = [{"skipped": False, "recovered": True, "detected": True, "false_alarm": False, "backtracks": 2,
             "valid_backtracks": 1, "tokens_injected": 30, "tokens_clean": 10},
            {"skipped": False, "recovered": False, "detected": False, "false_alarm": True, "backtracks": 0,
             "valid_backtracks": 0, "tokens_injected": 10, "tokens_clean": 20},
            {"skipped": True}]
    m = metrics_of(rows)
    assert m["problems"] == 3 and m["injected"] == 2
    assert m["recovery"]["rate"] == 0.5 and m["false_alarm"]["rate"] == 0.5
    assert m["backtrack_validity"] == 0.5 and m["mean_tokens_after_injected"] == 20.0


def test_eval_inject_errors_cli(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=5, seed=6)
    out = tmp_path / "inj.json"
    result = run("eval", "--model", "embedded", "--problems", problems, "--inject-errors", "--out", out)
    assert result.exit_code == 0, result.output
    assert "recovery" in result.output and "false alarms" in result.output
    m = json.loads(out.read_text())
    assert m["injected"] == 5 and 0 <= m["recovery"]["rate"] <= 1 and m["false_alarm"]["se"] >= 0
    rows = [json.loads(line) for line in (tmp_path / "inj.injections.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(r["format"] == "journey.injections/v1" and "after_injected" in r for r in rows)
    again = run("eval", "--model", "embedded", "--problems", problems, "--inject-errors", "--out", out)
    assert again.exit_code == 0 and json.loads(out.read_text())["recovery"] == m["recovery"]  # resumed, same


def test_inject_errors_needs_a_corrupter(tmp_path):
    problems = tmp_path / "m.jsonl"
    problems.write_text(json.dumps({"id": "a", "question": "1+1?", "answer": "2"}) + "\n")
    result = run("eval", "--model", "embedded", "--problems", problems, "--task", "math", "--inject-errors",
                 "--out", tmp_path / "m.json")
    assert result.exit_code == 1 and "task 'math' has no corrupter" in result.output


# ---------------------------------------------------------------- trace-shape knobs


def many_wrong_children() -> Tree:
    """A correct chain a -> answer, with four wrong first steps beside a."""
    t = Tree({"id": "w", "question": "2 * 3", "answer": "6"})
    a = t.add_child(0, text="2 * 3 = 6", verdict="correct", score=1.0)
    for wrong in (5, 7, 8, 9):
        t.add_child(0, text=f"2 * 3 = {wrong}", verdict="incorrect", score=0.0, reason=f"2 * 3 is 6, not {wrong}.")
    t.add_child(a, text="The answer is 6.", verdict="correct", score=1.0, terminal=True, answer="6", correct=True)
    return t


def test_uniform_trial_counts_vary_and_include_zero():
    tree = many_wrong_children()
    counts = Counter(journey(tree, [1, 6], 4, 1.0, random.Random(s), "uniform")[1][0] for s in range(200))
    assert set(counts) == {0, 1, 2, 3}  # K = 4: 0..3 failed trials at the first node
    geometric = Counter(journey(tree, [1, 6], 4, 1.0, random.Random(s))[1][0] for s in range(50))
    assert set(geometric) == {3}  # p = 1: always K - 1, the pattern a model learns to count


def test_dead_end_trials_run_on_to_a_wrong_answer():
    tree = hand_tree()
    # From node 5 ("5 * 4 = 24", wrong, no children) a walk cannot go on: it ends there.
    assert trial_walk(tree, 5, random.Random(0), to_dead_end=True) == [5]
    # From node 7 ("20 - 5 = 16") the walk reaches the wrong answer 9 only with the knob.
    assert trial_walk(tree, 7, random.Random(0)) == [7]
    assert trial_walk(tree, 7, random.Random(0), to_dead_end=True) == [7, 9]


def test_a_dead_end_never_ends_in_a_right_answer():
    t = Tree({"id": "c", "question": "2 * 3 + 1", "answer": "7"})
    w = t.add_child(0, text="2 * 3 = 5", verdict="incorrect", score=0.0)
    x = t.add_child(w, text="5 + 1 = 7", verdict="incorrect", score=0.0)  # two slips that cancel
    t.add_child(x, text="The answer is 7.", verdict="incorrect", score=0.0, terminal=True, answer="7", correct=True)
    assert trial_walk(t, w, random.Random(0), to_dead_end=True) == [w]


def test_backtracks_restate_the_state():
    tree = hand_tree()
    events = [Event("step", 2), Event("reflect", 2), Event("backtrack", 0), Event("step", 1),
              Event("step", 5), Event("reflect", 5), Event("backtrack", 1), Event("step", 4)]
    states = {0: "(2 + 3) * 4 - 5", 1: "5 * 4 - 5"}
    text, _ = render_with_spans(events, tree, random.Random(0), "\n", CONCISE_TEMPLATES, states)
    assert 'Back to "(2 + 3) * 4 - 5".' in text and 'Back to "5 * 4 - 5".' in text


def test_derive_knobs_on_the_cli(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=4, seed=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    result = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", "--max-trials", 3,
                 "--trial-count", "uniform", "--trial-end", "dead-end", "--backtrack", "state", "--style", "concise")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "d" / "sft_journey.jsonl").read_text().splitlines()]
    texts = [r["messages"][1]["content"] for r in rows]
    assert not any("Back to step" in t for t in texts)  # states, not step numbers
    shortcuts = {json.loads(line)["id"]: json.loads(line)["messages"][1]["content"].splitlines()
                 for line in (tmp_path / "d" / "sft_shortcut.jsonl").read_text().splitlines()}
    named = 0
    for row in rows:
        states = replay_states(row["messages"][0]["content"], shortcuts[row["id"]])
        for line in row["messages"][1]["content"].splitlines():
            if line.startswith('Back to "'):
                named += 1
                assert line[len('Back to "'):-2] in states, (line, states)  # a state on the shortcut
    config = json.loads((tmp_path / "d" / "derive.json").read_text())["config"]
    assert config["trial_count"] == "uniform" and config["backtrack"] == "state"


@pytest.mark.parametrize("args, message", [
    (["--trial-count", "poisson"], "--trial-count must be one of geometric, uniform"),
    (["--trial-end", "never"], "--trial-end must be one of first-wrong, dead-end"),
    (["--backtrack", "anchor"], "--backtrack must be one of step, state"),
])
def test_derive_knob_flags_are_checked(tmp_path, args, message):
    trees = tmp_path / "t.jsonl"
    trees.write_text("")
    result = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", *args)
    assert result.exit_code == 1 and message in result.output, result.output
