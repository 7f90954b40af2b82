"""Benchmark MCTS against beam search at an equal bound on steps, and MCTS's lockstep speed-up.

    python benchmarks/bench_mcts.py            # 48 held-out problems (a few minutes on 2 cores)
    python benchmarks/bench_mcts.py --quick    # 16 problems

1. Beam (w=4, K=2, D=8: at most w·K·D = 64 steps per problem) vs MCTS (w=4, N=16 simulations:
   at most N·w = 64 steps) on the embedded policy's held-out arith problems, exact-verifier
   PRM, temperature 1: per tree, the steps actually generated, whether it reached a right answer
   and a correct path, its distinct right leaves, and its failed-trial material (wrong steps
   that follow a correct prefix: where a journey's trials can start), each with its standard
   error over problems. Beam's frontier often collapses (merged duplicates, early answers), so
   it spends less than its bound: an equal bound is not an equal budget. A wider beam (K=4) is
   shown too; to compare at the steps actually spent, match MCTS's N to beam's spend (issue 25:
   N=6 spends beam K=2's 20.8 steps; see docs/benchmarks.md).
2. MCTS lockstep speed-up: nodes/s with all trees in flight (one policy call per round for
   every tree) / nodes/s with one tree at a time (one policy call per leaf), same trees.
All ratios are measured within this one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from journey.models.base import SamplingConfig
from journey.models.embedded import heldout_problems
from journey.models.registry import build_prm
from journey.models.transformers_policy import TransformersPolicy
from journey.search.build import SearchConfig, TreeBuilder, build_trees
from journey.search.mcts import MCTSBuilder, MCTSConfig
from journey.tasks import get_task


def trial_material(tree) -> int:
    """Steps judged wrong whose parent is the root or judged right: where a trial can start."""
    return sum(1 for n in tree.nodes()[1:] if n["verdict"] == "incorrect"
               and (n["parent"] == 0 or tree.node(n["parent"])["verdict"] == "correct"))


def structure(tree) -> list[dict]:
    """A tree's nodes without log-probs (they move by ~1e-4 with the batch's padding)."""
    return [{k: v for k, v in n.items() if k != "logprob"} for n in tree.nodes()]


def mean_se(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0
    return f"{m:.2f} ± {se:.2f}"


def measure(builder, problems, trees_in_flight: int):
    t0 = time.perf_counter()
    trees = list(build_trees(problems, builder, trees_in_flight))
    return trees, time.perf_counter() - t0


def describe(name: str, trees) -> list[str]:
    return [
        name,
        mean_se([t.costs["steps_generated"] for t in trees]),
        mean_se([float(bool(t.correct_leaves())) for t in trees]),
        mean_se([float(bool(t.clean_correct_leaves())) for t in trees]),
        mean_se([len(t.correct_leaves()) for t in trees]),
        mean_se([trial_material(t) for t in trees]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    n = args.n or (16 if args.quick else 48)
    task = get_task("arith")
    problems = heldout_problems(n)
    policy = TransformersPolicy("embedded", sampling=SamplingConfig(temperature=1.0, top_p=0.95))
    prm = build_prm("verifier", task)
    beam = TreeBuilder(task, policy, prm, SearchConfig(width=4, depth=8, top_k=2, seed=0))
    mcts = MCTSBuilder(task, policy, prm, MCTSConfig(width=4, depth=8, top_k=2, seed=0, simulations=16))
    wide = TreeBuilder(task, policy, prm, SearchConfig(width=4, depth=8, top_k=4, seed=0))
    beam_trees, beam_s = measure(beam, problems, 64)
    wide_trees, _ = measure(wide, problems, 64)
    mcts_trees, mcts_s = measure(mcts, problems, 64)
    one_trees, one_s = measure(mcts, problems, 1)
    same = sum(structure(a) == structure(b) for a, b in zip(
        sorted(mcts_trees, key=lambda t: t.id), sorted(one_trees, key=lambda t: t.id)))
    print(f"{n} held-out arith problems, embedded policy, verifier PRM, T=1.0\n")
    print("| search | steps generated / tree | right answer | correct path | right leaves / tree | trial material / tree |")
    print("|---|---|---|---|---|---|")
    for row in (describe("beam w=4 K=2 D=8 (≤ 64 steps)", beam_trees),
                describe("beam w=4 K=4 D=8 (≤ 128 steps)", wide_trees),
                describe("MCTS w=4 N=16 (≤ 64 steps)", mcts_trees)):
        print("| " + " | ".join(row) + " |")
    nodes = sum(t.graph.number_of_nodes() - 1 for t in mcts_trees)
    print(f"\nMCTS lockstep: {nodes / mcts_s:.1f} nodes/s (all trees in flight) vs {nodes / one_s:.1f} "
          f"(one tree at a time, one policy call per leaf) = {one_s / mcts_s:.2f}x; "
          f"{same}/{n} trees identical")
    print(f"wall time: beam {beam_s:.1f} s, MCTS {mcts_s:.1f} s, MCTS one at a time {one_s:.1f} s")


if __name__ == "__main__":
    main()
