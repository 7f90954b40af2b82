"""Benchmark build-tree on the embedded model; prints ratios measured in this one run.

    python benchmarks/bench_build_tree.py            # all three (a few minutes on 2 cores)
    python benchmarks/bench_build_tree.py --quick    # smaller sizes

1. lockstep speed-up: nodes/s of lockstep expansion (all frontier nodes of all trees in flight
   in one policy call) / nodes/s of a per-node loop (one policy call and one PRM call per node,
   as search-and-learn and OpenR do), same problems, same seeds, same trees.   goal >= 10x
2. overhead: build-tree wall time / time spent inside the batched policy and PRM calls.  goal <= 1.3
3. memory: peak RSS of `journey build-tree` at 1,000 problems / at 100 problems.      goal <= 1.2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from journey.models.base import Policy, Prefix, Proposal
from journey.models.prm import PRM, StepScore
from journey.models.registry import build_prm
from journey.models.transformers_policy import TransformersPolicy
from journey.search.build import SearchConfig, TreeBuilder, build_trees
from journey.tasks import get_task


class Timed(Policy, PRM):
    """Wraps a policy or a PRM and adds up the seconds spent inside its calls."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0
        self.delimiter = getattr(inner, "delimiter", "\n")

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._timed(self.inner.propose, prefixes, n)

    def complete(self, prefixes, n, max_new_tokens):
        return self._timed(self.inner.complete, prefixes, n, max_new_tokens)

    def score(self, questions: list[str], paths: list[list[str]], answers=None, ended=None) -> list[StepScore]:
        return self._timed(self.inner.score, questions, paths, answers, ended)


class PerNode(Policy, PRM):
    """The baseline: the same model, called once per node (and the PRM once per step)."""

    def __init__(self, inner):
        self.inner = inner
        self.delimiter = getattr(inner, "delimiter", "\n")

    def propose(self, prefixes, n):
        return [self.inner.propose([p], n)[0] for p in prefixes]

    def complete(self, prefixes, n, max_new_tokens):
        return [self.inner.complete([p], n, max_new_tokens)[0] for p in prefixes]

    def score(self, questions, paths, answers=None, ended=None):
        answers = answers or [None] * len(paths)
        ended = ended or [False] * len(paths)
        return [self.inner.score([q], [s], [a], [e])[0] for q, s, a, e in zip(questions, paths, answers, ended)]


def run(problems, policy, prm, cfg, in_flight) -> tuple[int, float, list]:
    task = get_task("arith")
    builder = TreeBuilder(task, policy, prm, cfg)
    t0 = time.perf_counter()
    trees = list(build_trees(problems, builder, trees_in_flight=in_flight))
    nodes = sum(t.graph.number_of_nodes() - 1 for t in trees)
    return nodes, time.perf_counter() - t0, trees


def texts(trees) -> dict:
    return {t.id: [n["text"] for n in t.nodes()] for t in trees}


def peak_rss_mb(n_problems: int, depth: int) -> float:
    """Peak RSS of a real `journey build-tree` run on n problems, in a fresh process."""
    with tempfile.TemporaryDirectory() as d:
        problems, out = Path(d) / "p.jsonl", Path(d) / "t.jsonl"
        journey = [sys.executable, "-m", "journey.cli"]
        subprocess.run([*journey, "problems", "--n", str(n_problems), "--out", str(problems)],
                       check=True, capture_output=True)
        code = (
            "import resource, sys; from journey.cli import app\n"
            "try: app(sys.argv[1:])\nexcept SystemExit: pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        args = ["build-tree", "--problems", str(problems), "--out", str(out), "--depth", str(depth)]
        res = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
        return int(res.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a sanity run)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    n_speed = 16 if args.quick else 64
    small, large = (50, 200) if args.quick else (100, 1000)
    task = get_task("arith")
    problems = task.generate(n_speed, seed=99)
    cfg = SearchConfig(width=3, depth=8, top_k=2, seed=0)
    policy = TransformersPolicy("embedded")
    prm = build_prm("verifier", task)
    results = {}

    run(task.generate(8, seed=98), policy, prm, cfg, in_flight=8)  # warm-up: first-call costs hit neither arm
    pol, pr = Timed(policy), Timed(prm)
    nodes, secs, lock_trees = run(problems, pol, pr, cfg, in_flight=64)
    results["lockstep"] = {"nodes": nodes, "seconds": round(secs, 2), "nodes_per_s": round(nodes / secs, 1),
                           "policy_s": round(pol.seconds, 2), "prm_s": round(pr.seconds, 3),
                           "policy_calls": pol.calls}
    base = PerNode(policy)
    nodes_b, secs_b, base_trees = run(problems, base, PerNode(prm), cfg, in_flight=1)
    results["per_node"] = {"nodes": nodes_b, "seconds": round(secs_b, 2), "nodes_per_s": round(nodes_b / secs_b, 1)}
    same = sum(texts(lock_trees)[k] == v for k, v in texts(base_trees).items())
    results["speedup"] = round((nodes / secs) / (nodes_b / secs_b), 2)
    results["same_trees"] = f"{same}/{len(problems)}"
    results["overhead"] = round(secs / (pol.seconds + pr.seconds), 3)

    rss_small, rss_large = peak_rss_mb(small, depth=8), peak_rss_mb(large, depth=8)
    results["rss_mb"] = {str(small): round(rss_small, 1), str(large): round(rss_large, 1)}
    results["rss_ratio"] = round(rss_large / rss_small, 3)

    print(json.dumps(results, indent=2))
    print(f"\n1. lockstep / per-node nodes/s: {results['speedup']}x   (goal >= 10x; {results['same_trees']} trees identical)")
    print(f"2. build-tree time / policy+PRM time: {results['overhead']}   (goal <= 1.3)")
    print(f"3. peak RSS {large} / {small} problems: {results['rss_ratio']}   (goal <= 1.2)")


if __name__ == "__main__":
    main()
