"""MCTS (`build-tree --search mcts`): PUCT and backup by hand, then real trees from the embedded policy."""

import json
import sys

import pytest

from journey.models.base import Policy, Proposal
from journey.models.registry import build_prm
from journey.search.build import build_trees
from journey.search.mcts import (
    MCTSBuilder,
    MCTSConfig,
    MCTSFlight,
    backup,
    best_child,
    leaf_value,
    puct,
    visit,
)
from journey.search.tree import Tree
from journey.tasks import get_task
from journey.tasks.base import Problem
from tests.helpers import kill_and_resume, run, tree_content, write_problems


def three_children() -> Tree:
    """A root visited 9 times with children a (count 2, q .5, N 4), b (1, .8, 3), c (1, .2, 1)."""
    tree = Tree({"id": "x", "question": "1 + 2", "answer": "3"})
    tree.node(0).update(visits=9, q=0.5)
    for text, count, q, n in (("a", 2, 0.5, 4), ("b", 1, 0.8, 3), ("c", 1, 0.2, 1)):
        tree.add_child(0, text=text, count=count, q=q, visits=n, verdict="correct", score=q)
    return tree


def test_puct_by_hand():
    tree = three_children()
    # P = counts / 4 = .5, .25, .25; sqrt(N(root)) = 3.
    # c = 1: a .5 + .5*3/5 = .8; b .8 + .25*3/4 = .9875; c .2 + .25*3/2 = .575 -> b
    assert puct(0.5, 0.5, 9, 4, 1.0) == pytest.approx(0.8)
    assert puct(0.8, 0.25, 9, 3, 1.0) == pytest.approx(0.9875)
    assert best_child(tree, 0, [1, 2, 3], 1.0) == 2
    # c = 3: a .5 + 1.8 = 2.3; b .8 + .5625 = 1.3625; c .2 + 1.125 = 1.325 -> a
    assert best_child(tree, 0, [1, 2, 3], 3.0) == 1
    # c = 0: greedy on q -> b; only open candidates count, priors still over all children
    assert best_child(tree, 0, [1, 2, 3], 0.0) == 2
    assert best_child(tree, 0, [1, 3], 0.0) == 1


def test_ties_go_to_the_lower_id():
    tree = Tree({"id": "x", "question": "1 + 2", "answer": "3"})
    tree.node(0).update(visits=4, q=0.5)
    for text in ("a", "b"):
        tree.add_child(0, text=text, count=1, q=0.5, visits=2, verdict="correct", score=0.5)
    assert best_child(tree, 0, [2, 1], 1.0) == 1


def test_backup_by_hand_on_a_four_node_chain():
    tree = Tree({"id": "x", "question": "1 + 2", "answer": "3"})
    f = MCTSFlight(tree)
    tree.node(0).update(visits=0, q=None)
    a = tree.add_child(0, text="a", verdict="correct", score=1.0)
    b = tree.add_child(a, text="b", verdict="correct", score=1.0)
    c = tree.add_child(b, text="c", verdict="correct", score=1.0)
    for nid, v in ((a, 1.0), (b, 0.5), (c, 0.0)):
        visit(f, nid, v)  # each new child starts with N = 1, q = its value
    backup(f, c, 0.25)  # c was expanded; its children's mean value was .25
    got = [(tree.node(n)["visits"], tree.node(n)["q"]) for n in (0, a, b, c)]
    assert got == [(1, 0.25), (2, 0.625), (2, 0.375), (2, 0.125)]
    backup(f, a, 1.0)
    assert [(tree.node(n)["visits"], tree.node(n)["q"]) for n in (0, a)] == [(2, 0.625), (3, 0.75)]
    assert tree.node(c)["visits"] == 2  # below the leaf: untouched


def test_leaf_value_weights_by_sample_count():
    assert leaf_value([1.0, 0.0], [3, 1]) == 0.75
    assert leaf_value([0.5], [4]) == 0.5


# ---------------------------------------------------------------- scripted policy (issue 25)


class ScriptedPolicy(Policy):
    """Proposes, for each prefix (its steps), the next of its scripted lists of steps; once the
    script is spent, the last list again (a re-expansion that adds nothing)."""

    delimiter = "\n"

    def __init__(self, script: dict[tuple[str, ...], list[list[str]]]):
        self.script, self.calls = script, {}

    def propose(self, prefixes, n):
        out = []
        for prefix in prefixes:
            key = tuple(prefix.steps)
            lists = self.script[key]
            i = self.calls[key] = self.calls.get(key, -1) + 1
            steps = lists[min(i, len(lists) - 1)]
            assert len(steps) == n
            out.append([Proposal(t, 4, -1.0, "stop") for t in steps])
        return out

    def complete(self, prefixes, n, max_new_tokens):
        raise NotImplementedError


def scripted_tree(script, **cfg) -> Tree:
    task = get_task("arith")
    config = MCTSConfig(**{"width": 2, "depth": 4, "top_k": 1, "seed": 0, "simulations": 8, **cfg})
    builder = MCTSBuilder(task, ScriptedPolicy(script), build_prm("verifier", task), config, rollout_tokens=1)
    [tree] = build_trees([Problem("s", "1 + 2 * 3", "7")], builder)
    return tree


ROOT, MID = (), ("2 * 3 = 6",)
FINALS = ["The answer is 7.", "The answer is 9."]


def test_a_node_whose_first_children_all_end_still_widens():
    """--max-children 4 with two final first children: the root widens at simulation 2 (today's
    defect: it was closed, and the tree stopped after 1 of 8 simulations)."""
    script = {ROOT: [FINALS, ["2 * 3 = 6", "The answer is 8."]], MID: [["1 + 6 = 7", "1 + 6 = 8"]],
              MID + ("1 + 6 = 7",): [["The answer is 7.", "The answer is 6."]],
              MID + ("1 + 6 = 8",): [["The answer is 8.", "The answer is 5."]]}
    tree = scripted_tree(script, max_children=4)
    assert [tree.node(c)["text"] for c in tree.children(0)] == [*FINALS, "2 * 3 = 6", "The answer is 8."]
    # 1 root; 2 root again (widened at once: both children are final); 3 "2 * 3 = 6"; 4-5 its two
    # children; 6-8 each of those three widens again and only repeats itself (no more widening).
    assert tree.costs["simulations"] == 8 and tree.node(0)["visits"] == 8
    assert scripted_tree(script).costs["simulations"] == 1  # M = w: no widening, the root closes at once


def test_final_steps_and_closed_subtrees_are_never_revisited():
    """Decision: a simulation always expands; the right final answer (q 1) is never selected
    again, so its visits stay 1 while the open branch gets the simulations."""
    script = {ROOT: [["The answer is 7.", "2 * 3 = 6"]], MID: [["1 + 6 = 7", "The answer is 9."]],
              MID + ("1 + 6 = 7",): [["The answer is 7.", "The answer is 70."]]}
    tree = scripted_tree(script)
    final, mid = tree.children(0)
    assert tree.node(final)["visits"] == 1 and tree.node(final)["q"] == 1.0
    assert tree.node(mid)["visits"] == 3  # created, expanded, its child "1 + 6 = 7" expanded
    assert tree.costs["simulations"] == 3 < 8  # then every node is closed: the tree ends early


def test_slips_that_cancel_back_up_their_outcome():
    """Decision: a right answer reached through two slips backs up 1 through the wrong steps."""
    script = {ROOT: [["2 * 3 = 5"]], ("2 * 3 = 5",): [["1 + 5 = 7"]], ("2 * 3 = 5", "1 + 5 = 7"): [["The answer is 7."]]}
    tree = scripted_tree(script, width=1)
    slip1, slip2, final = 1, 2, 3
    assert [tree.node(n)["verdict"] for n in (slip1, slip2)] == ["incorrect", "incorrect"]
    assert tree.node(final)["correct"] is True and tree.node(final)["verdict"] == "incorrect"
    # slip1: created 0, then 0 (slip2 scored 0), then 1 -> q 1/3; slip2: 0, then 1 -> q 1/2
    assert (tree.node(slip1)["q"], tree.node(slip2)["q"]) == (round(1 / 3, 6), 0.5)


# ---------------------------------------------------------------- real trees


class CountingPolicy:
    """The real policy, counting its batched calls (to check lockstep: one call per round)."""

    def __init__(self, inner):
        self.inner, self.propose_calls, self.complete_calls = inner, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def propose(self, prefixes, n):
        self.propose_calls += 1
        return self.inner.propose(prefixes, n)

    def complete(self, prefixes, n, max_new_tokens):
        self.complete_calls += 1
        return self.inner.complete(prefixes, n, max_new_tokens)


@pytest.fixture(scope="module")
def arith():
    return get_task("arith")


def mcts_trees(policy, problems, trees_in_flight=8, **cfg):
    task = get_task("arith")
    config = MCTSConfig(**{"width": 3, "depth": 6, "top_k": 1, "seed": 3, "simulations": 6, **cfg})
    builder = MCTSBuilder(task, policy, build_prm("verifier", task), config)
    return list(build_trees(problems, builder, trees_in_flight))


def test_mcts_is_lockstep_and_respects_the_budget(policy, arith_problems):
    counting = CountingPolicy(policy)
    trees = mcts_trees(counting, arith_problems, simulations=5)
    assert len(trees) == len(arith_problems)
    rounds = max(t.costs["simulations"] for t in trees)
    assert counting.propose_calls == rounds <= 5  # one policy call per round for ALL trees
    for t in trees:
        assert 1 <= t.costs["simulations"] <= 5
        assert t.costs["steps_generated"] <= 5 * 3
        root = t.node(0)
        assert root["visits"] == t.costs["simulations"] and 0 <= root["q"] <= 1
        for n in t.nodes()[1:]:
            assert n["visits"] >= 1 and 0 <= n["q"] <= 1 and n["pruned"] is False
            assert len(t.children(n["id"])) <= 3  # no widening by default: one expansion per node
            assert n["depth"] <= 6


def test_mcts_trees_do_not_depend_on_what_else_is_in_flight(policy, arith_problems):
    one = {t.id: t.to_json() for t in mcts_trees(policy, arith_problems, trees_in_flight=1)}
    many = {t.id: t.to_json() for t in mcts_trees(policy, arith_problems, trees_in_flight=8)}
    strip = lambda row: [{k: v for k, v in n.items() if k != "logprob"} for n in row["nodes"]]  # noqa: E731
    assert {i: strip(r) for i, r in one.items()} == {i: strip(r) for i, r in many.items()}


def test_progressive_widening_stays_under_the_cap(policy, arith_problems):
    trees = mcts_trees(policy, arith_problems[:4], simulations=12, width=2, max_children=5)
    for t in trees:
        assert all(len(t.children(n["id"])) <= 5 for n in t.nodes())
        assert sum(n["count"] for n in t.nodes()[1:]) <= t.costs["steps_generated"]


def test_rollouts_are_one_batched_call_per_round(policy, arith_problems):
    counting = CountingPolicy(policy)
    trees = mcts_trees(counting, arith_problems[:3], simulations=3, rollout="policy")
    assert counting.complete_calls <= counting.propose_calls  # at most one rollout call per round
    assert any(t.costs.get("rollout_tokens", 0) > 0 for t in trees)


# ---------------------------------------------------------------- the command


def test_build_tree_mcts_then_derive_and_show(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=3, seed=4)
    trees = tmp_path / "t.jsonl"
    result = run("build-tree", "--problems", problems, "--out", trees, "--search", "mcts",
                 "--simulations", 8, "--width", 3)
    assert result.exit_code == 0, result.output
    assert "N·w: 24" in result.output
    rows = [json.loads(line) for line in trees.read_text().splitlines()]
    assert all(r["format"] == "journey.tree/v2" and r["run"]["config"]["search"] == "mcts" for r in rows)
    assert all(n["visits"] is not None for r in rows for n in r["nodes"])
    derived = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d")
    assert derived.exit_code == 0, derived.output
    page = tmp_path / "t.html"
    assert run("show", "--trees", trees, "--out", page).exit_code == 0
    html = page.read_text()
    assert '"visits": ' in html and "MCTS visits" in html
    again = run("build-tree", "--problems", problems, "--out", trees, "--search", "mcts",
                "--simulations", 8, "--width", 3, "--c-puct", 2)
    assert again.exit_code == 1 and "different config (c_puct 1.0 -> 2.0)" in again.output


def test_beam_trees_have_null_visits_and_v1_files_still_load(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 3).exit_code == 0
    row = json.loads(trees.read_text().splitlines()[0])
    assert all(n["visits"] is None and n["q"] is None for n in row["nodes"])
    v1 = {**row, "format": "journey.tree/v1",
          "nodes": [{k: v for k, v in n.items() if k not in ("visits", "q")} for n in row["nodes"]]}
    tree = Tree.from_json(v1, where="old.jsonl:1")
    assert tree.node(1)["visits"] is None and len(tree.nodes()) == len(row["nodes"])
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(v1) + "\n")
    assert run("derive-longthought", "--trees", old, "--out-dir", tmp_path / "d").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["--search", "foo"], "--search must be one of beam, mcts, got 'foo'"),
    (["--search", "mcts", "--simulations", "0"], "--simulations must be >= 1, got 0"),
    (["--search", "mcts", "--c-puct", "-1"], "--c-puct must be >= 0, got -1.0"),
    (["--search", "mcts", "--c-puct", "nan"], "--c-puct must be >= 0, got nan"),
    (["--search", "mcts", "--rollout", "oracle"], "--rollout must be one of none, policy, got 'oracle'"),
    (["--search", "mcts", "--width", "3", "--max-children", "2"], "--max-children must be >= 3, got 2"),
])
def test_mcts_bad_flags(tmp_path, args, message):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    out = tmp_path / "t.jsonl"
    result = run("build-tree", "--problems", problems, "--out", out, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


def test_mcts_resumes_after_sigkill(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=8, seed=31)
    cmd = [sys.executable, "-m", "journey.cli", "build-tree", "--problems", str(problems), "--search", "mcts",
           "--simulations", "10", "--width", "3", "--trees-in-flight", "3", "--seed", "2"]
    killed, whole = kill_and_resume(cmd, tmp_path, 8)
    assert tree_content(killed) == tree_content(whole)
