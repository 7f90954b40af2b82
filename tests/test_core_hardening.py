"""Hardening of the core: no import circles, exact data checks, no float noise in structure,
and traces that never teach a right answer as a mistake or a statistic as a reflection."""

import ast
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from journey.longthought.paths import Event, journey, preference_leaves, shortcut, trial_walk
from journey.longthought.render import (
    CONCISE_TEMPLATES,
    DEFAULT_TEMPLATES,
    Templates,
    render,
    render_with_spans,
)
from journey.models.base import Policy, Proposal
from journey.models.prm import PRM, StepScore
from journey.models.registry import (
    BACKENDS,
    PRM_EXPLAINS,
    PRMS,
    build_prm,
    load_policy,
    prm_explains,
)
from journey.search.build import (
    SearchConfig,
    TreeBuilder,
    build_trees,
    merge_duplicates,
    select_top_k,
)
from journey.search.tree import Tree
from journey.tasks import get_task
from journey.tasks.base import Problem
from tests.test_longthought import HAND_JOURNEY
from tests.test_longthought import hand_tree as journey_tree
from tests.test_search import hand_tree as small_tree

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "journey" / "models"

# ---------------------------------------------------------------- 1. registry, no import circles


@pytest.mark.parametrize("module", ["base", "transformers_policy", "prm", "judge", "model_prms", "openai_policy", "vllm_policy", "tests_prm",
                                    "registry"])
def test_each_models_module_imports_first_in_a_fresh_process(module):
    result = subprocess.run([sys.executable, "-c", f"import journey.models.{module}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize(
    "base, implementations",
    [("base", {"transformers_policy", "openai_policy", "vllm_policy", "registry", "prm", "judge", "model_prms"}),
     ("prm", {"judge", "model_prms", "registry"})],
)
def test_base_modules_import_none_of_their_implementations(base, implementations):
    imported = imported_modules(MODELS / f"{base}.py")
    assert not {f"journey.models.{m}" for m in implementations} & imported, imported
    import journey.models.base as base_module
    import journey.models.prm as prm

    names = vars({"base": base_module, "prm": prm}[base])
    assert not {"load_policy", "BACKENDS", "build_prm", "PRMS"} & names.keys()


def test_registry_tables_cost_no_heavy_import():
    code = ("import sys, journey.models.registry as r; "
            "assert r.prm_explains('rollout') is False and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "name, explains",
    [("verifier", True), ("judge", True), ("rollout", False), ("token", False), ("qwen", False),
     ("trained", False), (None, True), ("some-future-prm", False)],
)
def test_which_prms_explain(name, explains):
    assert prm_explains(name) is explains


def test_registry_tables_and_errors():
    assert list(BACKENDS) == ["transformers", "openai", "vllm"]
    assert list(PRMS) == list(PRM_EXPLAINS) == ["verifier", "rollout", "token", "qwen", "judge", "trained", "tests"]
    with pytest.raises(ValueError, match="--backend must be one of transformers, openai, vllm, got 'x'"):
        load_policy("embedded", "\n", None, backend="x")
    with pytest.raises(ValueError, match="unknown PRM 'x'; known PRMs: verifier, rollout, token, qwen, judge, trained, tests"):
        build_prm("x", get_task("arith"))
    with pytest.raises(ValueError, match="the rollout PRM needs a policy"):
        build_prm("rollout", get_task("arith"))
    with pytest.raises(ValueError, match="--prm judge needs --prm-model or a policy"):
        build_prm("judge", get_task("arith"))


# ---------------------------------------------------------------- 2. merging duplicates


def P(text, finish="stop", logprob=-1.0):
    return Proposal(text, tokens=len(text), logprob=logprob, finish=finish)


@pytest.mark.parametrize(
    "finishes, merged",
    [(["eos", "stop"], "stop"), (["stop", "eos"], "stop"), (["length", "eos"], "eos"),
     (["length", "length", "stop"], "stop"), (["eos", "eos"], "eos"), (["length"], "length")],
)
def test_merged_child_keeps_the_most_continuing_finish(finishes, merged):
    [(p, count)] = merge_duplicates([P("3 * 4 = 12", f, logprob=-i) for i, f in enumerate(finishes)])
    assert (p.text, p.finish, p.logprob, count) == ("3 * 4 = 12", merged, 0, len(finishes))


class FixedPolicy(Policy):
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
    policy = FixedPolicy([P("3 * 4 = 12", "eos"), P("3 * 4 = 12", "stop")])
    builder = TreeBuilder(task, policy, build_prm("verifier", task), SearchConfig(width=2, depth=2, top_k=1))
    flight = builder.start(Problem("p", "2 + 3 * 4", "14"))
    builder.advance([flight])
    node = flight.tree.node(1)
    assert (node["count"], node["finish"], node["terminal"], node["verdict"]) == (2, "stop", False, "correct")
    assert flight.frontier == [1]  # the branch lives on


# ---------------------------------------------------------------- 3. ranking without log-probs


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

    def score(self, questions, paths, answers=None):
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
    policy = FixedPolicy([P("3 * 4 = 12"), P("2 + 3 = 5")])
    builder = TreeBuilder(task, policy, ScriptedPRM(scores), SearchConfig(width=2, depth=2, top_k=1))
    with pytest.raises(ValueError, match=message):
        list(build_trees([Problem("p", "2 + 3 * 4", "14")], builder))


def test_builder_refuses_a_policy_that_returns_too_few_candidates():
    task = get_task("arith")
    builder = TreeBuilder(task, FixedPolicy([P("3 * 4 = 12")]), build_prm("verifier", task),
                          SearchConfig(width=2, depth=2, top_k=1))
    with pytest.raises(ValueError, match="the policy returned \\[1\\] candidates for 1 prefixes, not 2 each"):
        list(build_trees([Problem("p", "2 + 3 * 4", "14")], builder))


# ---------------------------------------------------------------- 4. tree files


def good_row() -> dict:
    """small_tree: 0 root; 1 '3 * 4 = 12' -> 3 '2 + 12 = 14' -> 4 final (14, right); 2 wrong."""
    return json.loads(json.dumps(small_tree().to_json()))


def set_node(i, key, value):
    return lambda row: row["nodes"][i].__setitem__(key, value)


def add_under(parent, **fields):
    def mutate(row):
        node = {**row["nodes"][2], "id": len(row["nodes"]), "parent": parent,
                "depth": row["nodes"][parent]["depth"] + 1, **fields}
        row["nodes"].append(node)
    return mutate


W = "trees.jsonl:3"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (set_node(4, "terminal", "yes"), f"{W}: node 4: 'terminal' must be true or false, got 'yes'"),
        (set_node(2, "pruned", 1), "node 2: 'pruned' must be true or false, got 1"),
        (set_node(1, "score", "high"), "node 1: 'score' must be a number in [0, 1] or null, got 'high'"),
        (set_node(1, "score", 1.5), "node 1: 'score' must be a number in [0, 1] or null, got 1.5"),
        (set_node(1, "score", float("nan")), "node 1: 'score' must be a number in [0, 1] or null, got nan"),
        (set_node(1, "score", True), "node 1: 'score' must be a number in [0, 1] or null, got True"),
        (set_node(1, "text", 5), "node 1: 'text' must be a string, got 5"),
        (set_node(1, "count", 0), "node 1: 'count' must be an integer >= 1, got 0"),
        (set_node(1, "count", 2.0), "node 1: 'count' must be an integer >= 1, got 2.0"),
        (set_node(1, "verdict", "maybe"), "node 1: 'verdict' must be one of root, correct, incorrect, invalid, got 'maybe'"),
        (set_node(1, "verdict", None), "node 1: 'verdict' must be one of root, correct, incorrect, invalid, got None"),
        (set_node(2, "verdict", "root"), "node 2: 'verdict' root is only for node 0"),
        (set_node(3, "depth", 3), "node 3: 'depth' must be 2 (its parent's + 1), got 3"),
        (set_node(3, "depth", "2"), "node 3: 'depth' must be 2 (its parent's + 1), got '2'"),
        (set_node(4, "correct", "no"), "node 4: 'correct' must be true, false or null, got 'no'"),
        (set_node(4, "correct", None), "node 4: 'correct' must be true or false on a final step, got None"),
        (set_node(1, "finish", "later"), "node 1: 'finish' must be one of stop, eos, length or null, got 'later'"),
        (set_node(1, "tokens", True), "node 1: 'tokens' must be an integer >= 0, got True"),
        (set_node(1, "tokens", -1), "node 1: 'tokens' must be an integer >= 0, got -1"),
        (set_node(1, "tokens", None), "node 1: 'tokens' must be an integer >= 0, got None"),
        (set_node(1, "logprob", "x"), "node 1: 'logprob' must be a number or null, got 'x'"),
        (set_node(1, "logprob", False), "node 1: 'logprob' must be a number or null, got False"),
        (set_node(1, "reason", 3), "node 1: 'reason' must be a string or null, got 3"),
        (set_node(4, "answer", 14), "node 4: 'answer' must be a string or null, got 14"),
        (set_node(2, "id", 7), "node 2: 'id' must be 2 (its place in the list), got 7"),
        (set_node(2, "id", True), "node 2: 'id' must be 2 (its place in the list), got True"),
        (set_node(3, "parent", 3), "node 3: 'parent' must be the id of an earlier node, got 3"),
        (set_node(3, "parent", 9), "node 3: 'parent' must be the id of an earlier node, got 9"),
        (set_node(3, "parent", None), "node 3: 'parent' must be the id of an earlier node, got None"),
        (set_node(0, "verdict", "correct"), "node 0: the root's 'verdict' must be 'root', got 'correct'"),
        (set_node(0, "parent", 0), "node 0: the root's 'parent' must be null, got 0"),
        (set_node(0, "depth", 1), "node 0: the root's 'depth' must be 0, got 1"),
        (lambda row: row["nodes"][2].pop("verdict"), "node 2: missing fields ['verdict']"),
        (set_node(2, "q", 1.5), "node 2: 'q' must be a number in [0, 1] or null, got 1.5"),
        (set_node(2, "visits", -1), "node 2: 'visits' must be an integer >= 0 or null, got -1"),
        (lambda row: row.update(format="journey.tree/v1"), "node 0: unknown fields ['visits', 'q']"),
        (lambda row: row["nodes"].__setitem__(2, [1, 2]), "node 2: expected an object, got [1, 2]"),
        (add_under(4), "node 5: its parent 4 is a final or invalid step and cannot have children"),
        (lambda row: (set_node(2, "verdict", "invalid")(row), add_under(2)(row)),
         "node 5: its parent 2 is a final or invalid step"),
        (lambda row: row["problem"].__setitem__("id", 5), f"{W}: problem: 'id' must be a string, got 5"),
        (lambda row: row["problem"].pop("question"), "problem: 'question' must be a string, got nothing"),
        (lambda row: row["problem"].__setitem__("answer", 14), "problem: 'answer' must be a string, got 14"),
        (lambda row: row.__setitem__("problem", "p1"), "'problem' must be an object, got 'p1'"),
        (lambda row: row.__setitem__("costs", []), "'costs' must be an object, got []"),
        (lambda row: row.__setitem__("run", {"config": {"prm": 3}}), "'run.config' must be an object with a string 'prm'"),
        (lambda row: row.__setitem__("nodes", []), "needs a non-empty node list"),
    ],
)
def test_from_json_rejects_malformed_fields(mutate, message):
    row = good_row()
    Tree.from_json(row, where=W)  # the unmutated row loads
    mutate(row)
    with pytest.raises(ValueError) as err:
        Tree.from_json(row, where=W)
    assert message in str(err.value) and str(err.value).startswith(f"{W}: ")


def test_hand_and_built_trees_load_after_a_json_round_trip():
    for tree in (small_tree(), journey_tree()):
        row = json.loads(json.dumps(tree.to_json()))
        assert Tree.from_json(row).to_json() == tree.to_json()


def test_clean_correct_leaves_is_a_tree_method():
    tree = journey_tree()
    assert tree.correct_leaves() == tree.clean_correct_leaves() == [8]
    tree.node(4)["verdict"] = "incorrect"  # the right answer now sits below a step judged wrong
    assert tree.correct_leaves() == [8] and tree.clean_correct_leaves() == []


# ---------------------------------------------------------------- 5. DPO rejects real wrong answers only


def test_preference_pairs_never_reject_invalid_steps_or_answerless_endings():
    tree = journey_tree()  # node 3 is invalid (cut off); node 9 a wrong answer
    ended = tree.add_child(6, text="20 - 5 = 15 so", score=0.0, verdict="incorrect", reason="x",
                           terminal=True, answer=None, correct=False, finish="eos")
    empty = tree.add_child(4, text="", score=0.0, verdict="invalid", reason="The step is empty.")
    for seed in range(10):
        pairs = preference_leaves(tree, max_pairs=10, rng=random.Random(seed))
        assert pairs == [(8, 9)]
        assert not {3, ended, empty} & {r for _, r in pairs}


# ---------------------------------------------------------------- 6. no right answer taught as a mistake


def test_a_right_answer_judged_wrong_is_never_a_trials_mistake():
    tree = journey_tree()
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
    tree = journey_tree()
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
    tree = journey_tree()
    events, _ = journey(tree, shortcut(tree), max_trials=2, trial_prob=1.0, rng=random.Random(0))
    assert render(events, tree, random.Random(0), templates=CONCISE_TEMPLATES, explains=explains(tree)) == HAND_JOURNEY


def test_an_empty_reason_is_a_doubt_even_when_the_prm_explains():
    tree = journey_tree()
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


# ---------------------------------------------------------------- 7. backtracks name the state


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


def test_an_infinite_score_in_a_file_is_refused():
    row = good_row()
    row["nodes"][1]["score"] = math.inf
    with pytest.raises(ValueError, match="'score' must be a number in \\[0, 1\\]"):
        Tree.from_json(row)
