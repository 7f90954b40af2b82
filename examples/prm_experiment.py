"""Train PRMs on the embedded arith trees and measure them (the README's PRM tables).

    python examples/prm_experiment.py --out prm-out            # about 15 minutes on 2 CPU cores
    python examples/prm_experiment.py --train 60 --test 30 --out /tmp/x   # a smaller run

1. Trees on `--train` problems (embedded policy, exact verifier, w=4, D=8, K=2), derived into
   prm_steps.jsonl / prm_pairs.jsonl; a point-wise and a pair-wise PRM trained from the
   embedded policy's body (`train --stage prm`, `--epochs` each).
2. Held-out trees on `--test` disjoint problems (same settings); `eval-prm` of both PRMs:
   step-verdict precision / recall / F1 against the exact verifier.
3. build-tree on the test problems with each PRM steering the search (verifier, rollout with 4
   rollouts, trained point-wise, trained pair-wise), same w, D, K and seed: the share of trees
   that reach a right answer, and the share with a correct path by exact labels (every step
   right by the verifier), each ± its standard error.
Every step is a `journey` command (printed), so each number can be rerun by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from journey.models.prm import VerifierPRM
from journey.stages.build_tree import load_trees
from journey.tasks import get_task


def journey(*args) -> None:
    cmd = ["journey", *map(str, args)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def mean_se(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0
    return f"{m:.3f} ± {se:.3f}"


def solved_exactly(path: Path) -> tuple[list[float], list[float]]:
    """Per tree: reached a right answer; has a path whose every step the verifier accepts."""
    task = get_task("arith")
    verifier = VerifierPRM(task)
    right, clean = [], []
    for tree in load_trees(path):
        leaves = tree.correct_leaves()
        right.append(float(bool(leaves)))
        ok = False
        for leaf in leaves:
            steps = tree.steps(leaf)
            if all(s.ok for s in verifier.score([tree.problem["question"]] * len(steps),
                                                [steps[: i + 1] for i in range(len(steps))])):
                ok = True
                break
        clean.append(float(ok))
    return right, clean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("prm-out"))
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tree_args = ["--width", 4, "--depth", 8, "--top-k", 2, "--seed", 0]
    train, test = out / "train.jsonl", out / "test.jsonl"
    if not train.exists():
        journey("problems", "--n", args.train, "--seed", 500, "--out", train)
    if not test.exists():
        journey("problems", "--n", args.test, "--seed", 501, "--out", test)
    journey("build-tree", "--problems", train, "--out", out / "trees.jsonl", *tree_args)
    if not (out / "data" / "derive.json").exists():
        journey("derive-longthought", "--trees", out / "trees.jsonl", "--out-dir", out / "data")
    for objective, data in (("pointwise", "prm_steps.jsonl"), ("pairwise", "prm_pairs.jsonl")):
        if not (out / f"prm-{objective}" / "train.json").exists():
            journey("train", "--stage", "prm", "--objective", objective, "--data", out / "data" / data,
                    "--out", out / f"prm-{objective}", "--epochs", args.epochs, "--lr", args.lr,
                    "--batch-size", 16, "--overwrite")
    journey("build-tree", "--problems", test, "--out", out / "test_trees.jsonl", *tree_args)
    print("\n| PRM | steps | accuracy | F1 (right step positive) | F1 (wrong step positive) |")
    print("|---|---|---|---|---|")
    for objective in ("pointwise", "pairwise"):
        metrics = out / f"prm-{objective}.eval.json"
        journey("eval-prm", "--prm-model", out / f"prm-{objective}", "--trees", out / "test_trees.jsonl",
                "--out", metrics)
        m = json.loads(metrics.read_text())
        print(f"| trained, {objective} | {m['steps']} | {m['accuracy']:.3f} | "
              f"{m['right_as_positive']['f1']:.3f} | {m['wrong_as_positive']['f1']:.3f} |", flush=True)
    print("\n| PRM steering build-tree (w=4, D=8, K=2) | right answer reached | correct path (exact labels) |")
    print("|---|---|---|")
    runs = [("verifier", []), ("rollout (m=4)", ["--prm", "rollout", "--rollouts", 4]),
            ("trained, pointwise", ["--prm", "trained", "--prm-model", out / "prm-pointwise"]),
            ("trained, pairwise", ["--prm", "trained", "--prm-model", out / "prm-pairwise"])]
    for name, extra in runs:
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        trees = out / f"steer-{slug}.jsonl"
        journey("build-tree", "--problems", test, "--out", trees, *tree_args, *extra)
        right, clean = solved_exactly(trees)
        print(f"| {name} | {mean_se(right)} | {mean_se(clean)} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
