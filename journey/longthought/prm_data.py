"""PRM training data from a tree: per-step labels (point-wise) and sibling pairs (pair-wise).

Pure functions over `Tree`, used by derive-longthought to write `prm_steps.jsonl` and
`prm_pairs.jsonl` (DESIGN §9).

**Labels.** A step's label is a number in [0, 1] taken from one source, recorded in each row:

- `verdict`: 1 if the step was judged correct, else 0 — exact when the tree's PRM was the
  task's verifier (the default label for such trees);
- `score`: the PRM's score, e.g. a rollout PRM's share of rollouts that reach the right answer
  (Math-Shepherd's soft label; the default for `--prm rollout` trees);
- `q`: the MCTS mean value backed up through the node (the default for MCTS trees built with a
  non-exact PRM).
`label_source(tree, "auto")` picks as above. An invalid step (cut off, empty) is labelled 0
whatever the source; its text is kept, a PRM should learn that it is not a step.

**prm_steps.jsonl**: one row per root→node path, for every non-root node:
`{"id", "node", "prompt": [messages], "steps": [str, ...], "labels": [float, ...],
"label_source", "step_delimiter"}`, one label per step of the path.

**prm_pairs.jsonl**: two sibling steps after the same prefix whose labels differ, the higher
one chosen: `{"id", "parent", "prompt", "steps": prefix, "chosen": str, "rejected": str,
"chosen_label", "rejected_label", "label_source", "step_delimiter"}`. Invalid steps are never in a pair (an empty
or cut-off text is no alternative step). Pairs come by parent id, then in sibling order.

Worked example (verdict labels): root → a (correct) → {b (correct), c (incorrect)} gives step
rows [a] -> [1], [a, b] -> [1, 1], [a, c] -> [1, 0] and one pair after [a]: chosen b, rejected c.
"""

from __future__ import annotations

from journey.search.tree import Tree

LABEL_SOURCES = ("auto", "verdict", "score", "q")
EXACT_PRMS = ("verifier",)  # PRMs whose verdicts are exact step checks


def label_source(tree: Tree, wanted: str = "auto") -> str:
    """Which label a tree's rows use (see module docstring); ValueError if it lacks it."""
    if wanted not in LABEL_SOURCES:
        raise ValueError(f"--prm-labels must be one of {', '.join(LABEL_SOURCES)}, got {wanted!r}")
    has_q = any(n.get("q") is not None for n in tree.nodes()[1:])
    if wanted == "auto":
        if tree.recorded("prm", "verifier") in EXACT_PRMS:
            return "verdict"
        return "q" if has_q else "score"
    if wanted == "q" and not has_q:
        raise ValueError(f"tree {tree.id!r} has no MCTS q values; --prm-labels q needs --search mcts trees")
    return wanted


def step_label(node: dict, source: str) -> float:
    """One step's label in [0, 1] from `source`; invalid steps are 0."""
    if node["verdict"] == "invalid":
        return 0.0
    if source == "verdict":
        return 1.0 if node["verdict"] == "correct" else 0.0
    value = node["score"] if source == "score" else node["q"]
    return float(value) if value is not None else 0.0


def step_rows(tree: Tree, prompt: list[dict], source: str, delimiter: str = "\n") -> list[dict]:
    """One row per root→node path (see module docstring)."""
    rows = []
    for node in tree.nodes()[1:]:
        path = tree.path_ids(node["id"])
        rows.append({"id": tree.id, "node": node["id"], "prompt": prompt,
                     "steps": [tree.node(i)["text"] for i in path],
                     "labels": [step_label(tree.node(i), source) for i in path],
                     "label_source": source, "step_delimiter": delimiter})
    return rows


def pair_rows(tree: Tree, prompt: list[dict], source: str, delimiter: str = "\n") -> list[dict]:
    """Sibling pairs with different labels, the higher-labelled step chosen."""
    rows = []
    for parent in [n["id"] for n in tree.nodes()]:
        kids = [k for k in tree.children(parent) if tree.node(k)["verdict"] != "invalid"]
        labels = {k: step_label(tree.node(k), source) for k in kids}
        prefix = tree.steps(parent)
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                if labels[a] == labels[b]:
                    continue
                chosen, rejected = (a, b) if labels[a] > labels[b] else (b, a)
                rows.append({"id": tree.id, "parent": parent, "prompt": prompt, "steps": prefix,
                             "chosen": tree.node(chosen)["text"], "rejected": tree.node(rejected)["text"],
                             "chosen_label": labels[chosen], "rejected_label": labels[rejected],
                             "label_source": source, "step_delimiter": delimiter})
    rows.sort(key=lambda r: r["parent"])  # stable: within a parent, the order of the loops above
    return rows
