"""search/tree.py: tree files checked field by field (each error names file:line and node), hand and
built trees round-trip through JSON, and the tree's own path queries."""

import json
import math

import pytest

from journey.search.tree import Tree
from tests.helpers import hand_tree, small_tree


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
    for tree in (small_tree(), hand_tree()):
        row = json.loads(json.dumps(tree.to_json()))
        assert Tree.from_json(row).to_json() == tree.to_json()


def test_clean_correct_leaves_is_a_tree_method():
    tree = hand_tree()
    assert tree.correct_leaves() == tree.clean_correct_leaves() == [8]
    tree.node(4)["verdict"] = "incorrect"  # the right answer now sits below a step judged wrong
    assert tree.correct_leaves() == [8] and tree.clean_correct_leaves() == []


def test_an_infinite_score_in_a_file_is_refused():
    row = good_row()
    row["nodes"][1]["score"] = math.inf
    with pytest.raises(ValueError, match="'score' must be a number in \\[0, 1\\]"):
        Tree.from_json(row)
