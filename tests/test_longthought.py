"""derive-longthought: a hand-worked journey, properties over real trees, the CLI, and TRL on the files."""

import json
import random

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.longthought.paths import Event, format_errors, journey, preference_leaves, shortcut
from journey.longthought.render import (
    CONCISE_TEMPLATES,
    count_reflection_words,
    render,
    uncapitalize,
)
from journey.models.registry import build_prm
from journey.search.build import SearchConfig, TreeBuilder, build_trees
from journey.search.tree import Tree
from journey.tasks import get_task

runner = CliRunner()


def hand_tree() -> Tree:
    """(2 + 3) * 4 - 5 = 15; ten nodes, at most one wrong child per correct-path node.

    0 root
    ├─1 2 + 3 = 5  ✓                 ├─2 3 * 4 = 12  ✗ pruned (order)     └─3 "2 + 3 =" invalid
    │ ├─4 5 * 4 = 20  ✓               └─5 5 * 4 = 24  ✗ pruned
    │ │ ├─6 20 - 5 = 15  ✓            └─7 20 - 5 = 16  ✗
    │ │ │ └─8 The answer is 15.  ✓        └─9 The answer is 16.  ✗ (wrong answer)
    """
    t = Tree({"id": "h1", "question": "(2 + 3) * 4 - 5", "answer": "15"})

    def add(parent, text, ok, reason, **kw):
        verdict = {True: "correct", False: "incorrect", None: "invalid"}[ok]
        return t.add_child(parent, text=text, score=1.0 if ok else 0.0, verdict=verdict,
                           reason=reason, terminal=False, logprob=-1.0, **kw)

    add(0, "2 + 3 = 5", True, "2 + 3 = 5 is right.")
    add(0, "3 * 4 = 12", False, "3 * 4 cannot be computed yet in (2 + 3) * 4 - 5; 2 + 3 comes first.", pruned=True)
    add(0, "2 + 3 =", None, "The step was cut off after 48 tokens.")
    add(1, "5 * 4 = 20", True, "5 * 4 = 20 is right.")
    add(1, "5 * 4 = 24", False, "5 * 4 is 20, not 24.", pruned=True)
    add(4, "20 - 5 = 15", True, "20 - 5 = 15 is right.")
    add(4, "20 - 5 = 16", False, "20 - 5 is 15, not 16.")
    t.node(add(6, "The answer is 15.", True, "The answer 15 follows from the steps."))\
        .update(terminal=True, answer="15", correct=True)
    t.node(add(7, "The answer is 16.", False, "It builds on an earlier mistake: 20 - 5 is 15, not 16."))\
        .update(terminal=True, answer="16", correct=False)
    return t


HAND_JOURNEY = """3 * 4 = 12
Wait, 3 * 4 cannot be computed yet in (2 + 3) * 4 - 5; 2 + 3 comes first.
Back to the start.
2 + 3 = 5
5 * 4 = 24
Wait, 5 * 4 is 20, not 24.
Back to step 1: "2 + 3 = 5".
5 * 4 = 20
20 - 5 = 16
Wait, 20 - 5 is 15, not 16.
Back to step 2: "5 * 4 = 20".
20 - 5 = 15
The answer is 15."""


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
    from journey.stages.derive import derive_all

    from journey.config import DeriveConfig

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
