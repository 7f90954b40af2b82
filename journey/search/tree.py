"""The reasoning tree: nodes in a networkx DiGraph, and its `journey.tree/v1` JSON form.

Node 0 is the root (the question; no step). Every other node is one reasoning step with:

    id, parent, depth        where it sits (depth 1 is a first step)
    text                     the step, without the delimiter
    score, verdict, reason   the PRM's judgement; verdict is correct | incorrect | invalid
    terminal, answer, correct   a final step, its extracted answer, and whether that is right
    pruned                   scored but not kept for expansion (top-K)
    tokens, logprob, count   generation cost, policy log-prob, how many samples gave this text
    finish                   why generation stopped: stop | eos | length

One line of trees.jsonl is `Tree.to_json()`: {"format", "problem", "nodes", "costs", "run"}.
`Tree.from_json` checks the format tag and the node fields, and says what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

FORMAT = "journey.tree/v1"
NODE_FIELDS = (
    "id", "parent", "depth", "text", "score", "verdict", "reason", "terminal", "answer",
    "correct", "pruned", "tokens", "logprob", "count", "finish",
)
VERDICTS = ("root", "correct", "incorrect", "invalid")


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
        node = {f: None for f in NODE_FIELDS} | {"pruned": False, "count": 1} | attrs
        node.update(id=nid, parent=parent, depth=self.graph.nodes[parent]["depth"] + 1)
        self.graph.add_node(nid, **node)
        self.graph.add_edge(parent, nid)
        return nid

    # ------------------------------------------------------------ reading

    @property
    def id(self) -> str:
        return self.problem["id"]

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
        """Rebuild a tree from its JSON form; ValueError naming `where` if it is not one."""
        if not isinstance(row, dict) or row.get("format") != FORMAT:
            got = row.get("format") if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{where}: expected format {FORMAT!r}, got {got!r}")
        nodes = row.get("nodes")
        if not isinstance(nodes, list) or not nodes or not isinstance(row.get("problem"), dict):
            raise ValueError(f"{where}: a {FORMAT} tree needs a problem and a non-empty node list")
        graph = nx.DiGraph()
        for i, n in enumerate(nodes):
            missing = [f for f in NODE_FIELDS if f not in n] if isinstance(n, dict) else NODE_FIELDS
            if missing or n["id"] != i or (i > 0 and n["parent"] not in graph):
                raise ValueError(f"{where}: node {i} is malformed (missing {list(missing)} or bad id/parent)")
            graph.add_node(i, **n)
            if i > 0:
                graph.add_edge(n["parent"], i)
        return cls(row["problem"], graph, row.get("costs", {}), row.get("run", {}))


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
