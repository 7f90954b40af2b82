"""stages/eval_prm.py: the checks that tell whether a PRM reads the steps, on a hand-built tree
with scripted PRMs (one that reads the steps, one that scores by question and depth alone)."""

import json

import pytest

from journey.config import EvalPRMConfig
from journey.models.base import PRM, StepScore
from journey.runtime.metrics import score_changes, variance_share
from journey.search.tree import Tree
from journey.stages import eval_prm
from journey.stages.eval_prm import counterfactual, first_step_wrong, sibling_swaps, variance_shares

RIGHT = {"2 * 3 = 6", "6 + 4 = 10"}


def hand_tree() -> Tree:
    """root -> 1 "2 * 3 = 6" (right) -> {2 "6 + 4 = 10" (right), 3 "6 + 4 = 11" (wrong)};
    root -> 4 "3 + 4 = 7" (wrong: 2 * 3 comes first)."""
    tree = Tree({"id": "t", "question": "2 * 3 + 4", "answer": "10"},
                run={"config": {"prm": "verifier", "task": "arith"}})
    a = tree.add_child(0, text="2 * 3 = 6", verdict="correct", score=1.0)
    tree.add_child(a, text="6 + 4 = 10", verdict="correct", score=1.0)
    tree.add_child(a, text="6 + 4 = 11", verdict="incorrect", score=0.0)
    tree.add_child(0, text="3 + 4 = 7", verdict="incorrect", score=0.0)
    return tree


class ReadsSteps(PRM):
    """1 when every step of the path is a right one, else 0: it reads the whole path."""

    name = "reads"

    def score(self, questions, paths, answers=None):
        return [StepScore(float(all(s in RIGHT for s in p)), all(s in RIGHT for s in p), "") for p in paths]


class IgnoresSteps(PRM):
    """A score from the depth alone: it never reads a step's text."""

    name = "ignores"

    def score(self, questions, paths, answers=None):
        return [StepScore(0.3 + 0.1 * len(p), 0.3 + 0.1 * len(p) >= 0.5, "") for p in paths]


def items_and_gold():
    tree = hand_tree()
    return [(tree, n) for n in (1, 2, 3, 4)], [True, True, False, False]


def test_variance_share_by_hand():
    assert variance_share([1, 3, 5, 7], ["a", "a", "b", "b"]) == pytest.approx(0.8)  # 16 / 20
    assert variance_share([1, 3, 5, 7], ["a", "b", "a", "b"]) == pytest.approx(0.2)  # means 3, 5: 4 / 20
    assert variance_share([1, 3, 5, 7], ["a", "b", "c", "d"]) == pytest.approx(1.0)  # every group constant
    assert variance_share([2, 2, 2], ["a", "b", "a"]) is None and variance_share([1], ["a"]) is None
    # 0, 0, 1 in group a (mean 1/3), 1 in b: mean 1/2, total 1; between 3 (1/6)^2 + (1/2)^2 = 1/3
    assert variance_share([0, 0, 1, 1], ["a", "a", "a", "b"]) == pytest.approx(1 / 3)


def test_score_changes_by_hand():
    assert score_changes([0.2, 0.5, 0.5], [0.8, 0.5, 0.2]) == {"n": 3, "raised": 0.3333, "lowered": 0.3333,
                                                               "mean_change": 0.1}
    assert score_changes([], []) == {"n": 0, "raised": None, "lowered": None, "mean_change": None}


def test_the_counterfactual_pairs_by_hand():
    items, gold = items_and_gold()
    assert sibling_swaps(items, gold) == [(3, 0), (2, 1)]  # 4 -> its sibling 1; 3 -> its sibling 2
    assert first_step_wrong(items, gold) == [(1, ["3 + 4 = 7", "6 + 4 = 10"])]  # node 2, first step swapped


def test_a_prm_that_reads_the_steps_moves_on_both_counterfactuals():
    items, gold = items_and_gold()
    prm = ReadsSteps()
    scores = [s.score for s in prm.score([""] * 4, [t.steps(n) for t, n in items])]
    assert scores == [1.0, 1.0, 0.0, 0.0]
    cf = counterfactual(prm, items, gold, scores)
    assert cf["sibling_swap"] == {"n": 2, "raised": 1.0, "lowered": 0.0, "mean_change": 1.0}
    assert cf["first_step_wrong"] == {"n": 1, "raised": 0.0, "lowered": 1.0, "mean_change": -1.0}
    # depth explains nothing: each depth holds a 1 and a 0; one tree explains nothing either
    assert variance_shares(items, scores) == {"tree": 0.0, "depth": 0.0, "tree_and_depth": 0.0}


def test_a_prm_that_ignores_the_steps_changes_nothing():
    items, gold = items_and_gold()
    prm = IgnoresSteps()
    scores = [s.score for s in prm.score([""] * 4, [t.steps(n) for t, n in items])]
    cf = counterfactual(prm, items, gold, scores)
    assert cf["sibling_swap"] == {"n": 2, "raised": 0.0, "lowered": 0.0, "mean_change": 0.0}
    assert cf["first_step_wrong"] == {"n": 1, "raised": 0.0, "lowered": 0.0, "mean_change": 0.0}
    assert variance_shares(items, scores)["depth"] == 1.0  # depth is all it reads


def test_eval_prm_reports_the_checks(tmp_path, monkeypatch):
    trees = tmp_path / "t.jsonl"
    trees.write_text(json.dumps(hand_tree().to_json()) + "\n")
    monkeypatch.setattr(eval_prm, "build_prm", lambda *a, **k: IgnoresSteps())
    out = tmp_path / "m.json"
    m = eval_prm.run_eval_prm(EvalPRMConfig(trees=trees, prm="token", out=out))
    assert m["right_steps"] == 2 and m["steps"] == 4  # the verifier agrees with the hand labels
    assert m["counterfactual"]["sibling_swap"]["mean_change"] == 0.0
    assert m["variance_share"]["scores"]["depth"] == 1.0
    # exact labels 1, 1, 0, 0 at depths 1, 2, 2, 1: each depth holds one of each
    assert m["variance_share"]["exact_labels"] == {"tree": 0.0, "depth": 0.0, "tree_and_depth": 0.0}
    assert json.loads(out.read_text())["counterfactual"] == m["counterfactual"]


def test_the_summary_table_shows_the_checks(tmp_path, monkeypatch):
    from tests.helpers import run

    trees = tmp_path / "t.jsonl"
    trees.write_text(json.dumps(hand_tree().to_json()) + "\n")
    monkeypatch.setattr(eval_prm, "build_prm", lambda *a, **k: ReadsSteps())
    result = run("eval-prm", "--trees", trees, "--prm", "token")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "its right sibling │ raised 1.000 of 2, mean +1.0000" in text
    assert "first step made wrong │ lowered 1.000 of 1, mean -1.0000" in text
    assert "tree / depth / both │ 0.000 / 0.000 / 0.000" in text


# --prm rollout (and tests) roll out --model from each step: eval-prm loads it (it was refused).
@pytest.mark.parametrize("args, rolled", [
    (["--prm", "rollout", "--rollouts", "2"], {"model": "embedded", "rollouts": 2, "rollout_tokens": None}),
    (["--prm", "rollout", "--rollouts", "1", "--rollout-tokens", "24"],
     {"model": "embedded", "rollouts": 1, "rollout_tokens": 24}),
])
def test_eval_prm_rolls_out_the_policy(tmp_path, args, rolled):
    from tests.helpers import hand_tree, run

    trees, out = tmp_path / "t.jsonl", tmp_path / "m.json"
    trees.write_text(json.dumps(hand_tree().to_json()) + "\n")
    result = run("eval-prm", "--trees", trees, "--out", out, *args)
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    # hand_tree: 9 steps, one invalid -> 8 scored; 4 of them right by the exact check
    assert m["prm"] == "rollout" and m["steps"] == 8 and m["right_steps"] == 4
    assert {k: m["provenance"]["config"][k] for k in rolled} == rolled


def test_eval_prm_rollout_flags_are_checked(tmp_path):
    from tests.helpers import run

    result = run("eval-prm", "--trees", tmp_path / "t.jsonl", "--prm", "rollout", "--rollouts", "0")
    assert result.exit_code == 1 and "--rollouts must be >= 1, got 0" in result.output
