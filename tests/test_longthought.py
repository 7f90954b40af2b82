"""derive-longthought: a hand-worked journey, properties over real trees, the CLI, and TRL on the files."""

import json
import random
import re

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.longthought.paths import (
    Event,
    format_errors,
    journey,
    preference_leaves,
    shortcut,
    trial_walk,
)
from journey.longthought.render import (
    CONCISE_TEMPLATES,
    DEFAULT_TEMPLATES,
    Templates,
    count_reflection_words,
    render,
    render_with_spans,
    uncapitalize,
)
from journey.models.registry import build_prm, prm_explains
from journey.search.build import SearchConfig, TreeBuilder, build_trees
from journey.search.tree import Tree
from journey.tasks import get_task
from tests.helpers import HAND_JOURNEY, hand_tree

runner = CliRunner()


def test_hand_worked_journey():
    tree = hand_tree()
    path = shortcut(tree)
    assert path == [1, 4, 6, 8]
    events, trials = journey(tree, path, max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert trials == [1, 1, 1, 0]
    assert events[:3] == [Event("step", 2), Event("reflect", 2), Event("backtrack", 0)]
    assert render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES) == HAND_JOURNEY


def test_spans_cover_exactly_the_wrong_steps():
    from journey.longthought.render import render_with_spans

    tree = hand_tree()
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    text, spans = render_with_spans(events, tree, random.Random(0), templates=CONCISE_TEMPLATES)
    assert text == HAND_JOURNEY
    assert [text[a:b] for a, b in spans] == ["3 * 4 = 12", "5 * 4 = 24", "20 - 5 = 16"]


@pytest.mark.parametrize("k, p", [(1, 1.0), (3, 0.0)])
def test_no_trials_gives_the_shortcut(k, p):
    tree = hand_tree()
    events, trials = journey(tree, shortcut(tree), max_trials=k, trial_prob=p, rng=random.Random(0))
    assert sum(trials) == 0
    assert render(events, tree, random.Random(0)) == "2 + 3 = 5\n5 * 4 = 20\n20 - 5 = 15\nThe answer is 15."


def test_trial_walks_through_a_right_off_path_step_to_a_wrong_one():
    tree = hand_tree()
    # A second, correct first step whose only child is wrong: the walk follows it to the slip.
    alt = tree.add_child(0, text="2 + 3 = 5", score=1.0, verdict="correct", reason="ok", logprob=-2.0)
    slip = tree.add_child(alt, text="5 * 4 = 21", score=0.0, verdict="incorrect", reason="5 * 4 is 20, not 21.", logprob=-2.0)
    tree.node(2)["verdict"] = "correct"  # no wrong child of the root remains
    events, trials = journey(tree, [1, 4, 6, 8], max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert events[:4] == [Event("step", alt), Event("step", slip), Event("reflect", slip), Event("backtrack", 0)]


def test_shortcut_skips_answers_reached_through_slips():
    tree = hand_tree()
    tree.node(4)["verdict"] = "incorrect"  # the only right answer now sits below a wrong step
    assert shortcut(tree) is None


def malformed_tree() -> Tree:
    """2 + 3 * 4 = 14, where two of the three off-path steps are format errors.

    0 root
    ├─1 3 * 4 = 12  ✓
    │ ├─3 2 + 12 = 14  ✓
    │ │ ├─5 The answer is 14.  ✓
    │ │ └─6 The aiswer is 14.  ✗ (final by eos, no answer: a format error)
    │ └─4 2 + 12 = 15  ✗ (a real slip)
    └─2 3 * 4 is 12  ✗ (not a reduction: a format error)
    """
    t = Tree({"id": "m1", "question": "2 + 3 * 4", "answer": "14"})

    def add(parent, text, ok, reason, **kw):
        return t.add_child(parent, text=text, score=float(ok), reason=reason, logprob=-1.0,
                           verdict="correct" if ok else "incorrect", **kw)

    expected = 'Expected a step like "23 + 19 = 42" or "The answer is 85.", got "{}".'
    add(0, "3 * 4 = 12", True, "3 * 4 = 12 is right.")
    add(0, "3 * 4 is 12", False, expected.format("3 * 4 is 12"))
    add(1, "2 + 12 = 14", True, "2 + 12 = 14 is right.")
    add(1, "2 + 12 = 15", False, "2 + 12 is 14, not 15.")
    add(3, "The answer is 14.", True, "The answer 14 follows from the steps.", terminal=True, answer="14",
        correct=True)
    add(3, "The aiswer is 14.", False, expected.format("The aiswer is 14."), terminal=True, answer=None,
        correct=False, finish="eos")
    return t


def test_format_errors_are_never_a_trial():
    """Defect 1 of issue 25: only the real slip (node 4) becomes a trial; 2 and 6 are dropped."""
    tree, task = malformed_tree(), get_task("arith")
    skip = format_errors(tree, task.well_formed)
    assert skip == {2, 6}
    assert format_errors(tree) == {6}  # without the task's format: only the answer-less final step
    for seed in range(20):
        events, trials = journey(tree, [1, 3, 5], max_trials=3, trial_prob=1.0, rng=random.Random(seed), skip=skip)
        assert trials == [0, 1, 0]
        assert [e.node for e in events if e.kind != "step" or e.node not in (1, 3, 5)] == [4, 4, 1]


def test_derive_counts_and_drops_format_errors(tmp_path):
    from journey.config import DeriveConfig
    from journey.stages.derive import derive_all

    cfg = DeriveConfig(trees=tmp_path / "t.jsonl", out_dir=tmp_path / "d", max_trials=3, trial_prob=1.0,
                       style="concise")
    out, stats = derive_all(cfg, [malformed_tree()], get_task("arith"))
    text = out["sft_journey.jsonl"][0]["messages"][-1]["content"]
    assert "aiswer" not in text and "is 12" not in text and "Expected a step" not in text
    assert text == '3 * 4 = 12\n2 + 12 = 15\nWait, 2 + 12 is 14, not 15.\nBack to step 1: "3 * 4 = 12".\n' \
                   "2 + 12 = 14\nThe answer is 14."
    assert (stats.format_errors, stats.trials) == (2, 1)


@pytest.mark.parametrize("step, ok", [
    ("42 * 3 = 116", True), ("The answer is 20.", True), ("The answer is -3", True),
    ("The aiswer is 20.", False), ("42 * 3 is 126", False), ("Wait, 42 * 3 is 126.", False),
    ("", False), ("1234567890123 + 1 = 1234567890124", False),
])
def test_arith_well_formed(step, ok):
    assert get_task("arith").well_formed(step) is ok


def test_preference_leaves():
    pairs = preference_leaves(hand_tree(), max_pairs=5, rng=random.Random(0))
    assert pairs == [(8, 9)]  # chosen: right answer; rejected: the wrong answer, never invalid step 3
    tree = hand_tree()
    wrong = tree.add_child(6, text="The answer is 14.", score=0.0, verdict="incorrect", reason="x",
                           terminal=True, answer="14", correct=False)
    assert sorted(preference_leaves(tree, max_pairs=5, rng=random.Random(0))) == [(8, 9), (8, wrong)]
    assert len(preference_leaves(tree, max_pairs=1, rng=random.Random(0))) == 1


def test_verbose_style_draws_its_phrasings_from_the_seed():
    tree = hand_tree()
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    a = render(events, tree, random.Random(1))
    assert a == render(events, tree, random.Random(1))
    texts = {render(events, tree, random.Random(s)) for s in range(20)}
    assert len(texts) > 1
    for text in texts:
        lines = text.split("\n")
        assert lines[1].startswith("Wait") and "2 + 3 comes first." in lines[1]
        assert lines[-1] == "The answer is 15." and len(lines) == len(HAND_JOURNEY.split("\n"))


def test_render_helpers():
    assert uncapitalize("The steps give 85, not 84.") == "the steps give 85, not 84."
    assert uncapitalize("42 * 3 is 126.") == "42 * 3 is 126."
    assert count_reflection_words("Wait, no. Alternatively... Wait! Therefore, let me recompute.") == {
        "Wait": 2, "Alternatively": 1, "Let me recompute": 0, "Therefore": 1}


# ---------------------------------------------------------------- real trees


@pytest.fixture(scope="module")
def real_trees(policy):
    task = get_task("arith")
    builder = TreeBuilder(task, policy, build_prm("verifier", task), SearchConfig(4, 8, 2, seed=0, expand="wrong"))
    # expand wrong: the embedded policy's wrong answers mostly follow earlier slips, and these
    # tests want DPO's rejected leaves (with --expand never the tree seldom holds one)
    return list(build_trees(task.generate(16, seed=31), builder, trees_in_flight=16))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_journey_properties_on_real_trees(real_trees, k):
    task = get_task("arith")
    used = 0
    for i, tree in enumerate(real_trees):
        path = shortcut(tree)
        if path is None:
            continue
        used += 1
        events, trials = journey(tree, path, max_trials=k, trial_prob=0.9, rng=random.Random(i))
        assert len(trials) == len(path) and all(t <= k - 1 for t in trials)
        for a, b in zip(events, events[1:]):
            if a.kind == "step" and tree.node(a.node)["verdict"] != "correct":
                assert b.kind == "reflect" and b.node == a.node
        assert [e.node for e in events if e.kind == "step"][-len(path):][-1] == path[-1]
        text = render(events, tree, random.Random(i))
        assert task.check_answer(task.extract_answer(text), tree.problem["answer"])
        if k == 1:
            assert text == task.join_steps(tree.steps(path[-1]))
    assert used >= 3


def write_trees(path, trees):
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in trees))


def test_derive_cli_writes_trl_ready_files(real_trees, tmp_path):
    trees = tmp_path / "trees.jsonl"
    write_trees(trees, real_trees)
    out = tmp_path / "data"
    result = runner.invoke(app, ["derive-longthought", "--trees", str(trees), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "mean trials per journey" in result.output
    journey_rows = [json.loads(line) for line in (out / "sft_journey.jsonl").read_text().splitlines()]
    shortcut_rows = [json.loads(line) for line in (out / "sft_shortcut.jsonl").read_text().splitlines()]
    assert [r["id"] for r in journey_rows] == [r["id"] for r in shortcut_rows]
    assert {r["kind"] for r in journey_rows} == {"journey"}
    assert any(r["trials"] > 0 for r in journey_rows)
    assert all(len(j["messages"][1]["content"]) >= len(s["messages"][1]["content"])
               for j, s in zip(journey_rows, shortcut_rows))
    pairs = [json.loads(line) for line in (out / "dpo_pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] and p["prompt"][0]["role"] == "user" for p in pairs)
    record = json.loads((out / "derive.json").read_text())
    assert record["stats"]["used"] == len(journey_rows)
    # Same seed, same files.
    again = tmp_path / "again"
    runner.invoke(app, ["derive-longthought", "--trees", str(trees), "--out-dir", str(again)])
    assert (again / "sft_journey.jsonl").read_text() == (out / "sft_journey.jsonl").read_text()


@pytest.mark.parametrize(
    "content, args, message",
    [
        ('{"format": "other/v9"}\n', [], "trees.jsonl:1: expected format 'journey.tree/v2' (or 'journey.tree/v1'), got 'other/v9'"),
        ("GOOD\n{not json\n", [], "trees.jsonl:2: not valid JSON"),
        ("GOOD\n", ["--max-trials", "0"], "--max-trials must be >= 1"),
        ("GOOD\n", ["--trial-prob", "1.5"], "--trial-prob must be in [0, 1]"),
        ("GOOD\n", ["--style", "poetic"], "--style must be one of verbose, concise"),
    ],
)
def test_derive_bad_input(tmp_path, content, args, message):
    trees = tmp_path / "trees.jsonl"
    trees.write_text(content.replace("GOOD", json.dumps(hand_tree().to_json())))
    out = tmp_path / "data"
    result = runner.invoke(app, ["derive-longthought", "--trees", str(trees), "--out-dir", str(out), *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists() or not any(out.iterdir())


def test_rewrite_that_loses_the_answer_falls_back_to_the_draft(tmp_path):
    """The embedded policy cannot rewrite prose: every rewrite fails the answer check and is counted."""
    trees = tmp_path / "trees.jsonl"
    write_trees(trees, [hand_tree()])
    out = tmp_path / "data"
    result = runner.invoke(app, ["derive-longthought", "--trees", str(trees), "--out-dir", str(out),
                                 "--rewrite-model", "embedded", "--trial-prob", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "derive.json").read_text())
    assert record["stats"]["rewrite_fallbacks"] == 1
    row = json.loads((out / "sft_journey.jsonl").read_text())
    assert row["messages"][1]["content"].endswith("The answer is 15.") and "Wait" in row["messages"][1]["content"]


# ---------------------------------------------------------------- no right answer taught as a mistake


def test_preference_pairs_never_reject_invalid_steps_or_answerless_endings():
    tree = hand_tree()  # node 3 is invalid (cut off); node 9 a wrong answer
    ended = tree.add_child(6, text="20 - 5 = 15 so", score=0.0, verdict="incorrect", reason="x",
                           terminal=True, answer=None, correct=False, finish="eos")
    empty = tree.add_child(4, text="", score=0.0, verdict="invalid", reason="The step is empty.")
    for seed in range(10):
        pairs = preference_leaves(tree, max_pairs=10, rng=random.Random(seed))
        assert pairs == [(8, 9)]
        assert not {3, ended, empty} & {r for _, r in pairs}


def test_a_right_answer_judged_wrong_is_never_a_trials_mistake():
    tree = hand_tree()
    # A model PRM calls a second right final answer under node 6 wrong.
    judged = tree.add_child(6, text="So the answer is 15.", score=0.1, verdict="incorrect", reason="x",
                            terminal=True, answer="15", correct=True)
    assert trial_walk(tree, judged, random.Random(0)) is None
    for seed in range(20):
        events, _ = journey(tree, shortcut(tree), max_trials=3, trial_prob=1.0, rng=random.Random(seed))
        assert Event("reflect", judged) not in events and Event("step", judged) not in events


ROLLOUT_REASONS = {2: "0 of 4 rollouts from this step reach the right answer.",
                   5: "1 of 4 rollouts from this step reach the right answer.",
                   7: "0 of 4 rollouts from this step reach the right answer."}


def explains(tree: Tree) -> bool:
    """What derive tells the renderer: whether the PRM in the tree's run record explains."""
    return prm_explains(tree.recorded("prm"))


def statistic_tree(prm: str | None) -> tuple[Tree, int]:
    """journey_tree, with a run record naming `prm`, rollout-style reasons, and a wrong final
    answer (14) under node 6 for a trial to end at."""
    tree = hand_tree()
    if prm is not None:
        tree.run = {"config": {"prm": prm}}
    for nid, reason in ROLLOUT_REASONS.items():
        tree.node(nid)["reason"] = reason
    wrong = tree.add_child(6, text="The answer is 14.", score=0.0, verdict="incorrect",
                           reason="The final answer is wrong.", terminal=True, answer="14", correct=False)
    return tree, wrong


DOUBT_JOURNEY = """3 * 4 = 12
Wait, this step looks wrong.
Back to the start.
2 + 3 = 5
5 * 4 = 24
Wait, this step looks wrong.
Back to step 1: "2 + 3 = 5".
5 * 4 = 20
20 - 5 = 16
Wait, this step looks wrong.
Back to step 2: "5 * 4 = 20".
20 - 5 = 15
The answer is 14.
Wait, the answer 14 looks wrong.
Back to step 3: "20 - 5 = 15".
The answer is 15."""


@pytest.mark.parametrize("prm", ["rollout", "token", "qwen"])
def test_a_prm_that_does_not_explain_gets_a_doubt_not_a_statistic(prm):
    tree, wrong = statistic_tree(prm)
    events, trials = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert trials == [1, 1, 1, 1] and Event("reflect", wrong) in events
    assert render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree)) == DOUBT_JOURNEY
    verbose_doubts = set(DEFAULT_TEMPLATES.doubt) | {t.format(answer="14") for t in DEFAULT_TEMPLATES.doubt_answer}
    for seed in range(10):
        text, _ = render_with_spans(events, tree, random.Random(seed), "\n", DEFAULT_TEMPLATES, explains=explains(tree))
        reflections = [line for line in text.split("\n") if line.startswith("Wait")]
        assert len(reflections) == 4 and set(reflections) <= verbose_doubts
        assert "rollouts" not in text and not re.search(r"\d+ of \d+|0\.\d", text)
        assert any("14" in line for line in reflections)  # the wrong answer is named, concretely


@pytest.mark.parametrize("prm", ["verifier", "judge", None])
def test_a_prm_that_explains_is_quoted(prm):
    tree, wrong = statistic_tree(prm)
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    text = render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree))
    assert "Wait, 0 of 4 rollouts from this step reach the right answer." in text
    assert "Wait, the final answer is wrong." in text
    # The untouched hand tree (no run record) still renders the hand-worked trace.
    tree = hand_tree()
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree)) == HAND_JOURNEY


def test_an_empty_reason_is_a_doubt_even_when_the_prm_explains():
    tree = hand_tree()
    tree.node(2)["reason"] = ""  # e.g. a judge reply with a verdict and no reason
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    lines = render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree)).split("\n")
    assert lines[:2] == ["3 * 4 = 12", "Wait, this step looks wrong."]


@pytest.mark.parametrize(
    "field, phrasing, message",
    [("backtrack", 'Back to "{node}".', "uses \\['node'\\]; allowed: anchor, step"),
     ("doubt", "Wait, {reason}", "uses \\['reason'\\]; allowed: none"),
     ("reflect", (), "needs at least one phrasing")],
)
def test_templates_refuse_unknown_placeholders(field, phrasing, message):
    with pytest.raises(ValueError, match=f"^Templates.{field}.*{message}"):
        Templates(**{field: phrasing if isinstance(phrasing, tuple) else (phrasing,)})


# ---------------------------------------------------------------- backtracks name the state


def same_text_tree() -> Tree:
    """2 * 2 * (2 * 2): the shortcut's steps 1 and 2 read the same; each has a wrong sibling.

    0 ├─1 2 * 2 = 4 ✓ ├─2 2 * 2 = 4 ✓ ├─3 4 * 4 = 16 ✓ └─4 The answer is 16. ✓
      │               │               └─6 4 * 4 = 15 ✗
      │               └─5 4 * 2 = 9 ✗
    """
    t = Tree({"id": "same", "question": "2 * 2 * (2 * 2)", "answer": "16"})

    def add(parent, text, ok, **kw):
        return t.add_child(parent, text=text, score=float(ok), verdict="correct" if ok else "incorrect",
                           reason="ok" if ok else f"{text} is wrong.", **kw)

    add(0, "2 * 2 = 4", True)
    add(1, "2 * 2 = 4", True)
    add(2, "4 * 4 = 16", True)
    add(3, "The answer is 16.", True, terminal=True, answer="16", correct=True)
    add(1, "4 * 2 = 9", False)
    add(2, "4 * 4 = 15", False)
    return t


def test_backtracks_to_two_states_with_the_same_text_read_differently():
    tree = same_text_tree()
    events, trials = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert trials == [0, 1, 1, 0]
    assert [e.node for e in events if e.kind == "backtrack"] == [1, 2]
    text = render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree))
    backs = [line for line in text.split("\n") if line.startswith("Back")]
    assert backs == ['Back to step 1: "2 * 2 = 4".', 'Back to step 2: "2 * 2 = 4".']
    for seed in range(10):
        lines = render(events, tree, random.Random(seed), explains=explains(tree)).split("\n")
        first, second = lines[3], lines[7]  # after each wrong step and its reflection
        assert 'step 1 ("2 * 2 = 4")' in first and 'step 2 ("2 * 2 = 4")' in second
