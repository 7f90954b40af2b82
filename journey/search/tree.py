"""The reasoning tree: nodes in a networkx DiGraph, and its `journey.tree/v2` JSON form.

Node 0 is the root (the question; no step). Every other node is one reasoning step with:

    id, parent, depth        where it sits (depth 1 is a first step)
    text                     the step, without the delimiter
    score, verdict, reason   the PRM's judgement; verdict is correct | incorrect | invalid
    terminal, answer, correct   a final step, its extracted answer, and whether that is right
    pruned                   scored but not kept for expansion (top-K)
    tokens, logprob, count   generation cost, policy log-prob, how many samples gave this text
    finish                   why generation stopped: stop | eos | length
    visits, q                MCTS: how often the node was on a simulated path, and the mean value
                             backed up through it (null in beam trees)

One line of trees.jsonl is `Tree.to_json()`: {"format", "problem", "nodes", "costs", "run"}.
v2 added `visits` and `q`; v1 files (without them) are still read, the two fields null.
`Tree.from_json` checks the format tag, the problem, and every node field's type and allowed
values (and that ids count up, parents come first, depth is the parent's + 1, nothing hangs
under a final or invalid step), and says what is wrong and where:
"trees.jsonl:3: node 4: 'terminal' must be true or false, got 'yes'".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

FORMAT = "journey.tree/v2"
FORMAT_V1 = "journey.tree/v1"  # still read: its nodes have no `visits` and `q`
NODE_FIELDS_V1 = (
    "id", "parent", "depth", "text", "score", "verdict", "reason", "terminal", "answer",
    "correct", "pruned", "tokens", "logprob", "count", "finish",
)
NODE_FIELDS = (*NODE_FIELDS_V1, "visits", "q")
VERDICTS = ("root", "correct", "incorrect", "invalid")
FINISHES = ("stop", "eos", "length")


@dataclass
class Tree:
    """One problem's tree. `problem` is its problems.jsonl row; `costs` and `run` are records."""

    problem: dict
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    costs: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)

    def __post_init__(self):
        if 0 not in self.graph:
            self.graph.add_node(0, **root_node())

    # ------------------------------------------------------------ building

    def add_child(self, parent: int, **attrs) -> int:
        """Add a step under `parent`; returns its id (ids count up in creation order)."""
        nid = self.graph.number_of_nodes()
        defaults = {"terminal": False, "pruned": False, "tokens": 0, "count": 1}
        node = {f: None for f in NODE_FIELDS} | defaults | attrs
        node.update(id=nid, parent=parent, depth=self.graph.nodes[parent]["depth"] + 1)
        self.graph.add_node(nid, **node)
        self.graph.add_edge(parent, nid)
        return nid

    # ------------------------------------------------------------ reading

    @property
    def id(self) -> str:
        return self.problem["id"]

    def recorded(self, key: str, default=None):
        """`key` of the config in the tree's run record (e.g. "prm", "task"); `default` when absent."""
        config = (self.run or {}).get("config")
        return config.get(key, default) if isinstance(config, dict) else default

    def node(self, nid: int) -> dict:
        return self.graph.nodes[nid]

    def nodes(self) -> list[dict]:
        """All nodes, in id order (root first)."""
        return [self.graph.nodes[i] for i in sorted(self.graph.nodes)]

    def children(self, nid: int) -> list[int]:
        return sorted(self.graph.successors(nid))

    def path_ids(self, nid: int) -> list[int]:
        """Node ids from the first step down to `nid` (the root excluded)."""
        ids = []
        while nid != 0:
            ids.append(nid)
            nid = self.graph.nodes[nid]["parent"]
        return ids[::-1]

    def steps(self, nid: int) -> list[str]:
        """The step texts from the root down to `nid`."""
        return [self.graph.nodes[i]["text"] for i in self.path_ids(nid)]

    def correct_leaves(self) -> list[int]:
        """Terminal nodes whose answer is right."""
        return [n["id"] for n in self.nodes() if n["terminal"] and n["correct"]]

    def clean_correct_leaves(self) -> list[int]:
        """Terminal nodes with the right answer whose every step is judged correct.

        A right answer reached through two slips that cancel is not a solution to learn from;
        a tree with at least one clean leaf is "solved" (it has a shortcut).
        """
        return [leaf for leaf in self.correct_leaves()
                if all(self.graph.nodes[i]["verdict"] == "correct" for i in self.path_ids(leaf))]

    # ------------------------------------------------------------ files

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "problem": self.problem,
            "nodes": self.nodes(),
            "costs": self.costs,
            "run": self.run,
        }

    @classmethod
    def from_json(cls, row: dict, where: str = "tree") -> Tree:
        """Rebuild a tree from its JSON form; ValueError naming `where`, the node and the field."""
        if not isinstance(row, dict) or row.get("format") not in (FORMAT, FORMAT_V1):
            got = row.get("format") if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{where}: expected format {FORMAT!r} (or {FORMAT_V1!r}), got {got!r}")
        fields = NODE_FIELDS_V1 if row["format"] == FORMAT_V1 else NODE_FIELDS
        nodes = row.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise ValueError(f"{where}: a {FORMAT} tree needs a non-empty node list")
        check_problem(row.get("problem"), where)
        for key in ("costs", "run"):
            if not isinstance(row.get(key, {}), dict):
                raise ValueError(f"{where}: {key!r} must be an object, got {short(row[key])}")
        for key, value in row.get("costs", {}).items():  # summed on resume
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValueError(f"{where}: 'costs.{key}' must be a number, got {short(value)}")
        config = row.get("run", {}).get("config", {})  # its prm decides how reasons are rendered
        if not isinstance(config, dict) or not isinstance(config.get("prm", ""), str):
            raise ValueError(f"{where}: 'run.config' must be an object with a string 'prm', got {short(config)}")
        graph = nx.DiGraph()
        for i, n in enumerate(nodes):
            check_node(n, i, graph, f"{where}: node {i}", fields)
            graph.add_node(i, **({"visits": None, "q": None} | n))
            if i > 0:
                graph.add_edge(n["parent"], i)
        return cls(row["problem"], graph, row.get("costs", {}), row.get("run", {}))


def short(value) -> str:
    """repr(value), cut to 60 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True is an int to Python, not to us


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


# field -> (accepts(value), what it must be); `id`, `parent` and `depth` are checked by position.
FIELD_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "score": (lambda v: v is None or (_number(v) and 0 <= v <= 1), "a number in [0, 1] or null"),
    "verdict": (lambda v: isinstance(v, str) and v in VERDICTS, f"one of {', '.join(VERDICTS)}"),
    "reason": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "terminal": (lambda v: isinstance(v, bool), "true or false"),
    "pruned": (lambda v: isinstance(v, bool), "true or false"),
    "answer": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "correct": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
    "tokens": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "logprob": (lambda v: v is None or _number(v), "a number or null"),
    "count": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "finish": (lambda v: v is None or (isinstance(v, str) and v in FINISHES),
               f"one of {', '.join(FINISHES)} or null"),
    "visits": (lambda v: v is None or (_int(v) and v >= 0), "an integer >= 0 or null"),
    "q": (lambda v: v is None or (_number(v) and 0 <= v <= 1), "a number in [0, 1] or null"),
}


def check_problem(problem, where: str) -> None:
    """ValueError unless `problem` is a dict with string id, question and answer."""
    if not isinstance(problem, dict):
        raise ValueError(f"{where}: 'problem' must be an object, got {short(problem)}")
    for key in ("id", "question", "answer"):
        if not isinstance(problem.get(key), str):
            got = short(problem[key]) if key in problem else "nothing"
            raise ValueError(f"{where}: problem: {key!r} must be a string, got {got}")


def check_node(n, i: int, graph: nx.DiGraph, where: str, fields: tuple = NODE_FIELDS) -> None:
    """ValueError unless `n` is a valid node `i` of a tree whose nodes 0..i-1 are in `graph`.

    `where` is "file:line: node i". Node 0 is the root (verdict root, no parent, depth 0); any
    other node's parent is an earlier node that is neither final nor invalid, one level up.
    """
    if not isinstance(n, dict):
        raise ValueError(f"{where}: expected an object, got {short(n)}")
    missing = [f for f in fields if f not in n]
    unknown = [f for f in n if f not in fields]
    if missing or unknown:
        what = f"missing fields {missing}" if missing else f"unknown fields {unknown}"
        raise ValueError(f"{where}: {what} (a node has {', '.join(fields)})")
    if not _int(n["id"]) or n["id"] != i:
        raise ValueError(f"{where}: 'id' must be {i} (its place in the list), got {short(n['id'])}")
    for key, (accepts, what) in FIELD_RULES.items():
        if key in n and not accepts(n[key]):
            raise ValueError(f"{where}: {key!r} must be {what}, got {short(n[key])}")
    if i == 0:
        for key, ok, want in (("parent", n["parent"] is None, "null"),
                              ("depth", _int(n["depth"]) and n["depth"] == 0, "0"),
                              ("verdict", n["verdict"] == "root", "'root'")):
            if not ok:
                raise ValueError(f"{where}: the root's {key!r} must be {want}, got {short(n[key])}")
        return
    parent = n["parent"]
    if not _int(parent) or parent not in graph:
        raise ValueError(f"{where}: 'parent' must be the id of an earlier node, got {short(parent)}")
    above = graph.nodes[parent]
    if not _int(n["depth"]) or n["depth"] != above["depth"] + 1:
        raise ValueError(f"{where}: 'depth' must be {above['depth'] + 1} (its parent's + 1), "
                         f"got {short(n['depth'])}")
    if n["verdict"] == "root":
        raise ValueError(f"{where}: 'verdict' root is only for node 0")
    if above["terminal"] or above["verdict"] == "invalid":
        raise ValueError(f"{where}: its parent {parent} is a final or invalid step and cannot have children")
    if n["terminal"] and n["correct"] is None:
        raise ValueError(f"{where}: 'correct' must be true or false on a final step, got None")


def root_node() -> dict:
    node = {f: None for f in NODE_FIELDS}
    node.update(id=0, depth=0, text="", verdict="root", reason="", terminal=False, pruned=False,
                tokens=0, count=1)
    return node


def check_invariants(tree: Tree, depth: int, top_k: int) -> None:
    """Assert the shape a finished `build-tree` tree must have (used by the tests).

    Parents exist and sit one level up; depth <= D; at most K nodes per depth are expanded;
    pruned, terminal and invalid nodes have no children; terminal nodes carry an answer field.
    """
    expanded_per_depth: dict[int, int] = {}
    for n in tree.nodes():
        kids = tree.children(n["id"])
        assert n["depth"] <= depth, f"node {n['id']} deeper than {depth}"
        assert n["verdict"] in VERDICTS, f"node {n['id']} has verdict {n['verdict']!r}"
        if n["id"]:
            assert tree.node(n["parent"])["depth"] == n["depth"] - 1, f"node {n['id']}: bad parent"
        if n["pruned"] or n["terminal"] or n["verdict"] == "invalid":
            assert not kids, f"node {n['id']} is pruned/terminal/invalid but has children"
        if n["terminal"]:
            assert "answer" in n and n["correct"] is not None, f"terminal node {n['id']} unchecked"
        if kids and n["id"]:
            expanded_per_depth[n["depth"]] = expanded_per_depth.get(n["depth"], 0) + 1
    for d, k in expanded_per_depth.items():
        assert k <= top_k, f"{k} nodes expanded at depth {d}, more than top-K={top_k}"
