"""Tree expansion: the pure pieces by hand, then real lockstep builds on the embedded model."""

import json

import pytest

from journey.models.base import Policy, Proposal
from journey.models.prm import PRM, StepScore
from journey.models.registry import build_prm
from journey.search.build import (
    SearchConfig,
    TreeBuilder,
    build_trees,
    merge_duplicates,
    node_seed,
    select_top_k,
)
from journey.search.tree import FORMAT, Tree, check_invariants
from journey.tasks import get_task
from journey.tasks.base import Problem
from tests.helpers import small_tree


def P(text, logprob=-1.0):
    return Proposal(text, tokens=len(text), logprob=logprob, finish="stop")


def test_merge_duplicates_counts_and_keeps_first():
    merged = merge_duplicates([P("a", -1), P("b", -2), P(" a", -3)])
    assert [(p.text, p.logprob, c) for p, c in merged] == [("a", -1, 2), ("b", -2, 1)]


def test_select_top_k_ranks_score_then_count_then_id_never_logprob():
    nodes = [
        {"id": 1, "score": 0.0, "count": 3, "logprob": -0.1},
        {"id": 2, "score": 1.0, "count": 1, "logprob": -5.0},
        {"id": 3, "score": 1.0, "count": 2, "logprob": -9.0},
        {"id": 4, "score": 1.0, "count": 1, "logprob": -1.0},
        {"id": 5, "score": 1.0, "count": 1, "logprob": -1.0},
    ]
    # 3 has the most samples; 2, 4, 5 tie on score and count, so the lowest id goes first.
    assert select_top_k(nodes, 2) == ([3, 2], [4, 5, 1])
    assert select_top_k(nodes, 5)[1] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [({"width": 0}, "--width"), ({"depth": -1}, "--depth"), ({"top_k": 0}, "--top-k"),
     ({"expand": "always"}, "--expand must be one of never, wrong")],
)
def test_search_config_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_exhaustive_bound_matches_paper_formula():
    assert SearchConfig(width=3, depth=10, top_k=1).exhaustive_expansions() == (3**10 - 1) // 2
    assert SearchConfig(width=1, depth=4, top_k=1).exhaustive_expansions() == 4


def test_node_seed_is_stable():
    assert node_seed(0, "a", 1) == node_seed(0, "a", 1)
    assert len({node_seed(0, "a", 1), node_seed(1, "a", 1), node_seed(0, "b", 1), node_seed(0, "a", 2)}) == 4


def test_tree_paths_and_round_trip():
    tree = small_tree()
    assert tree.steps(4) == ["3 * 4 = 12", "2 + 12 = 14", "The answer is 14."]
    assert tree.correct_leaves() == [4]
    row = json.loads(json.dumps(tree.to_json()))
    assert row["format"] == FORMAT
    again = Tree.from_json(row)
    assert again.to_json() == tree.to_json()
    check_invariants(again, depth=3, top_k=1)


def test_from_json_rejects_other_formats_and_bad_nodes():
    row = small_tree().to_json()
    with pytest.raises(ValueError, match=r"expected format 'journey.tree/v2' \(or 'journey.tree/v1'\), got 'x/v0'"):
        Tree.from_json({**row, "format": "x/v0"}, where="f.jsonl:3")
    bad = json.loads(json.dumps(row))
    del bad["nodes"][2]["verdict"]
    with pytest.raises(ValueError, match=r"f.jsonl:3: node 2: missing fields \['verdict'\]"):
        Tree.from_json(bad, where="f.jsonl:3")


def test_invariants_catch_a_pruned_node_with_children():
    tree = small_tree()
    tree.node(1)["pruned"] = True
    with pytest.raises(AssertionError, match="pruned/terminal/invalid but has children"):
        check_invariants(tree, depth=3, top_k=1)


# ---------------------------------------------------------------- --expand and K > w (issue 25)


class FixedPolicy:
    """Proposes `steps` (cycled to n) after every prefix; `calls` counts the prefixes expanded."""

    def __init__(self, steps):
        self.steps, self.calls = steps, 0

    def propose(self, prefixes, n):
        self.calls += len(prefixes)
        return [[P(self.steps[i % len(self.steps)]) for i in range(n)] for _ in prefixes]


def fixed_tree(steps, **cfg) -> tuple[Tree, FixedPolicy]:
    from journey.tasks.base import Problem

    task, policy = get_task("arith"), FixedPolicy(steps)
    builder = TreeBuilder(task, policy, build_prm("verifier", task), SearchConfig(**{"seed": 0, **cfg}))
    [tree] = build_trees([Problem("e", "1 + 2 * 3 * 4", "25")], builder)
    return tree, policy


@pytest.mark.parametrize("expand, expanded", [("never", [0, 1]), ("wrong", [0, 1, 2])])
def test_expand_never_keeps_only_correct_steps(expand, expanded):
    """Root -> "2 * 3 = 6" (right) and "2 * 3 = 5" (wrong), K = 2: `never` (Part 1, the default)
    expands the right one only and marks the wrong one pruned; `wrong` lets it fill the 2nd slot."""
    tree, policy = fixed_tree(["2 * 3 = 6", "2 * 3 = 5"], width=2, depth=2, top_k=2, expand=expand)
    assert [tree.node(n)["verdict"] for n in (1, 2)] == ["correct", "incorrect"]
    assert [n["id"] for n in tree.nodes() if tree.children(n["id"])] == expanded
    assert tree.node(2)["pruned"] is (expand == "never")
    assert policy.calls == len(expanded)
    check_invariants(tree, depth=2, top_k=2)


def test_top_k_may_exceed_width():
    """w = 2, K = 3: depth 1 has 2 children (both kept); depth 2 has 4 candidates, 3 kept."""
    tree, _ = fixed_tree(["2 * 3 = 6", "6 * 4 = 24"], width=2, depth=3, top_k=3, expand="wrong")
    by_depth = {d: [n for n in tree.nodes() if n["depth"] == d] for d in (1, 2)}
    assert len(by_depth[1]) == 2 and not any(n["pruned"] for n in by_depth[1])
    assert len(by_depth[2]) == 4 and sum(not n["pruned"] for n in by_depth[2]) == 3
    check_invariants(tree, depth=3, top_k=3)


def test_default_expand_is_the_papers():
    assert SearchConfig().expand == "never"


# ---------------------------------------------------------------- real builds


def build(policy, problems, cfg: SearchConfig, in_flight: int) -> list[dict]:
    task = get_task("arith")
    builder = TreeBuilder(task, policy, build_prm("verifier", task), cfg)
    return [t.to_json() for t in build_trees(problems, builder, trees_in_flight=in_flight)]


def content(rows):
    """Trees without timings and float log-probs (padding changes them in the last digits)."""
    out = {}
    for r in rows:
        nodes = [{k: v for k, v in n.items() if k != "logprob"} for n in r["nodes"]]
        out[r["problem"]["id"]] = nodes
    return out


def test_build_trees_on_embedded_model(policy, arith_problems):
    cfg = SearchConfig(width=3, depth=6, top_k=2, seed=0)
    rows = build(policy, arith_problems, cfg, in_flight=8)
    assert sorted(r["problem"]["id"] for r in rows) == sorted(p.id for p in arith_problems)
    for r in rows:
        tree = Tree.from_json(r)
        check_invariants(tree, depth=6, top_k=2)
        for n in tree.nodes()[1:]:
            assert n["verdict"] in ("correct", "incorrect", "invalid") and n["reason"]
        assert r["costs"]["steps_generated"] >= len(r["nodes"]) - 1
    # The embedded policy is imperfect on purpose: trees hold right and wrong steps.
    verdicts = [n["verdict"] for r in rows for n in r["nodes"][1:]]
    assert "correct" in verdicts and "incorrect" in verdicts
    assert any(Tree.from_json(r).correct_leaves() for r in rows)


def test_lockstep_equals_one_tree_at_a_time(policy, arith_problems):
    cfg = SearchConfig(width=3, depth=5, top_k=2, seed=3)
    together = build(policy, arith_problems[:4], cfg, in_flight=4)
    alone = build(policy, arith_problems[:4], cfg, in_flight=1)
    assert content(together) == content(alone)
    assert content(together) != content(build(policy, arith_problems[:4], SearchConfig(3, 5, 2, seed=4), 4))


# ---------------------------------------------------------------- duplicates, ranking, what the builder refuses


def proposal(text, finish="stop", logprob=-1.0):
    return Proposal(text, tokens=len(text), logprob=logprob, finish=finish)


@pytest.mark.parametrize(
    "finishes, merged",
    [(["eos", "stop"], "stop"), (["stop", "eos"], "stop"), (["length", "eos"], "eos"),
     (["length", "length", "stop"], "stop"), (["eos", "eos"], "eos"), (["length"], "length")],
)
def test_merged_child_keeps_the_most_continuing_finish(finishes, merged):
    [(p, count)] = merge_duplicates([proposal("3 * 4 = 12", f, logprob=-i) for i, f in enumerate(finishes)])
    assert (p.text, p.finish, p.logprob, count) == ("3 * 4 = 12", merged, 0, len(finishes))


class SameProposals(Policy):
    """Proposes the same candidates for every prefix (a stand-in for sampling)."""

    delimiter = "\n"

    def __init__(self, proposals):
        self.proposals = proposals

    def propose(self, prefixes, n):
        return [list(self.proposals[:n]) for _ in prefixes]

    def complete(self, prefixes, n, max_new_tokens):
        raise NotImplementedError


def test_a_step_some_sample_continued_after_is_not_an_ending():
    task = get_task("arith")
    policy = SameProposals([proposal("3 * 4 = 12", "eos"), proposal("3 * 4 = 12", "stop")])
    builder = TreeBuilder(task, policy, build_prm("verifier", task), SearchConfig(width=2, depth=2, top_k=1))
    flight = builder.start(Problem("p", "2 + 3 * 4", "14"))
    builder.advance([flight])
    node = flight.tree.node(1)
    assert (node["count"], node["finish"], node["terminal"], node["verdict"]) == (2, "stop", False, "correct")
    assert flight.frontier == [1]  # the branch lives on


def test_logprob_noise_never_decides_top_k():
    a = {"id": 4, "score": 1.0, "count": 1, "logprob": -1.00001}
    b = {"id": 5, "score": 1.0, "count": 1, "logprob": -1.0}
    assert select_top_k([a, b], 1) == ([4], [5])
    assert select_top_k([b, a], 1) == ([4], [5])
    assert select_top_k([{**a, "logprob": -1.0}, {**b, "logprob": -1.00001}], 1) == ([4], [5])


class ScriptedPRM(PRM):
    name = "scripted"

    def __init__(self, scores):
        self.scores = scores

    def score(self, questions, paths, answers=None, ended=None):
        return self.scores[: len(paths)]


@pytest.mark.parametrize(
    "scores, message",
    [([StepScore(1.0, True, "ok")], "returned 1 scores for 2 steps"),
     ([StepScore(float("nan"), False, "?"), StepScore(1.0, True, "ok")], "a score must be in \\[0, 1\\]"),
     ([StepScore(1.5, True, "ok"), StepScore(1.0, True, "ok")], "a score must be in \\[0, 1\\]"),
     ([StepScore(1.0, True, None), StepScore(1.0, True, "ok")], "with a reason")],
)
def test_builder_refuses_bad_prm_output(scores, message):
    task = get_task("arith")
    policy = SameProposals([proposal("3 * 4 = 12"), proposal("2 + 3 = 5")])
    builder = TreeBuilder(task, policy, ScriptedPRM(scores), SearchConfig(width=2, depth=2, top_k=1))
    with pytest.raises(ValueError, match=message):
        list(build_trees([Problem("p", "2 + 3 * 4", "14")], builder))


def test_builder_refuses_a_policy_that_returns_too_few_candidates():
    task = get_task("arith")
    builder = TreeBuilder(task, SameProposals([proposal("3 * 4 = 12")]), build_prm("verifier", task),
                          SearchConfig(width=2, depth=2, top_k=1))
    with pytest.raises(ValueError, match="the policy returned \\[1\\] candidates for 1 prefixes, not 2 each"):
        list(build_trees([Problem("p", "2 + 3 * 4", "14")], builder))


def test_trees_are_the_same_when_every_row_sorts_the_whole_vocabulary(policy, arith_problems, monkeypatch):
    """The sampler looks for the nucleus among its top candidates; sorting every row whole (as
    it once did, `candidates = 1`: no nucleus fits in one token) builds the very same trees."""
    from journey.models.transformers_policy import SeededSampler

    cfg = SearchConfig(width=3, depth=5, top_k=2, seed=5)
    fast = [r["nodes"] for r in build(policy, arith_problems[:4], cfg, in_flight=4)]
    monkeypatch.setattr(SeededSampler, "candidates", 1)
    assert [r["nodes"] for r in build(policy, arith_problems[:4], cfg, in_flight=4)] == fast
