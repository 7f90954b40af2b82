"""Print a few solutions from a trees.jsonl with the verifier's verdict on every step.

    python examples/show_paths.py trees.jsonl --n 3

For each tree: the best correct path (if any) and the deepest wrong step with its reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from journey.search.tree import Tree
from journey.stages.build_tree import load_trees

MARK = {"correct": "[green]✓[/]", "incorrect": "[red]✗[/]", "invalid": "[yellow]?[/]"}


def show_path(console: Console, tree: Tree, leaf: int) -> None:
    for nid in tree.path_ids(leaf):
        n = tree.node(nid)
        console.print(f"    {MARK[n['verdict']]} {n['text']}", highlight=False)
        if n["verdict"] != "correct":
            console.print(f"      [dim]{n['reason']}[/]", highlight=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", type=Path)
    ap.add_argument("--n", type=int, default=3)
    args = ap.parse_args()
    console = Console()
    for tree in load_trees(args.trees)[: args.n]:
        q = tree.problem
        console.print(f"\n[bold]{q['id']}[/]  {q['question']}  (answer {q['answer']}, {len(tree.nodes()) - 1} nodes)")
        right = tree.correct_leaves()
        if right:
            console.print("  a correct path:")
            show_path(console, tree, right[0])
        wrong = [n for n in tree.nodes() if n["verdict"] == "incorrect"]
        if wrong:
            console.print("  a wrong branch:")
            show_path(console, tree, max(wrong, key=lambda n: n["depth"])["id"])


if __name__ == "__main__":
    main()
