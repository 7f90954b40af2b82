"""Throughput of build-tree against plain `LLM.generate` on the same prompts (run it on a GPU).

    python benchmarks/bench_gpu_throughput.py --model Qwen/Qwen2.5-Math-1.5B-Instruct \\
        --task math --problems math500.jsonl --limit 256 --prm qwen --prm-model Qwen/Qwen2.5-Math-PRM-7B \\
        --width 4 --depth 8 --top-k 2 --max-step-tokens 256 --gpu-memory-utilization 0.7
    python benchmarks/bench_gpu_throughput.py --quick     # embedded model, arith, verifier (any machine)

One policy is loaded (vLLM unless --backend says otherwise) and used twice on the same root
prompts, same sampling (temperature, top_p, seeds per problem):

1. build-tree: lockstep beam search, `--trees-in-flight` trees at once, one policy call and one
   PRM call per level, exactly as `journey build-tree` runs it. Counted: the policy tokens
   the trees record, over the wall time of the whole search (PRM time included, and also
   reported on its own).
2. plain generation: `Policy.complete(roots, n=width, max_new_tokens=depth * max_step_tokens)`,
   which on `--backend vllm` is one `LLM.generate` call with `SamplingParams(n=width, ...)`: the
   ceiling for this model on this GPU, with no search and no PRM.

It prints tokens/s for both and their ratio. The ratio says what the search costs: the levels
are sequential (each waits for the PRM), the batches shrink as trees finish, and the steps are
short, so expect it well below 1; PRM seconds say how much of that is the PRM. Run it alone on
the GPU (nothing else loaded), with VLLM_BATCH_INVARIANT unset (it slows vLLM down).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from journey.models.base import Prefix, SamplingConfig
from journey.models.prm import PRM, StepScore
from journey.models.registry import build_prm, load_policy
from journey.runtime.importers import FORMATS, import_problems
from journey.runtime.io import DataError, load_problems, take_first
from journey.search.build import SearchConfig, TreeBuilder, build_trees, node_seed
from journey.tasks import get_task
from journey.tasks.base import Problem


class TimedPRM(PRM):
    """A PRM that adds up the seconds spent inside its calls."""

    def __init__(self, inner: PRM):
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        t0 = time.perf_counter()
        out = self.inner.score(questions, paths, answers, ended)
        self.seconds += time.perf_counter() - t0
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="Qwen/Qwen2.5-Math-1.5B-Instruct")
    ap.add_argument("--backend", default="vllm", choices=["vllm", "transformers", "openai"])
    ap.add_argument("--task", default="math")
    ap.add_argument("--problems", help="problems.jsonl, or any file `journey problems --from` reads (with --format); "
                                       "default: --n problems the task generates")
    ap.add_argument("--format", choices=sorted(FORMATS),
                    help="--problems is in this format (as `journey problems --from --format`); default: journey rows")
    ap.add_argument("--n", type=int, default=256, help="problems to generate when --problems is not given")
    ap.add_argument("--limit", type=int, help="only the first N problems")
    ap.add_argument("--prm", default="rollout")
    ap.add_argument("--prm-model")
    ap.add_argument("--prm-device")
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--max-step-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4096, help="sequences per policy call")
    ap.add_argument("--trees-in-flight", type=int, default=256)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="embedded model, arith task, verifier PRM, transformers backend, small sizes")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.backend, args.task, args.prm, args.n = "embedded", "transformers", "arith", "verifier", 8
        args.depth, args.max_step_tokens, args.batch_size, args.trees_in_flight = 4, 48, 256, 8
    return args


def read_problems(args: argparse.Namespace, task) -> list[Problem]:
    """--problems as journey rows, or in --format (MATH-500, GSM8K, ...) as `problems --from`
    reads it; else --n problems the task generates."""
    if not args.problems:
        return task.generate(args.n, seed=args.seed)
    if args.format:
        rows = import_problems(Path(args.problems), args.format)
        return [Problem(r["id"], r["question"], r["answer"], line=n) for n, r in enumerate(rows, 1)]
    try:
        return load_problems(Path(args.problems))
    except DataError as err:
        if "missing" not in str(err):
            raise SystemExit(f"error: {err}") from None
        raise SystemExit(f"error: {err}; not journey rows: give --format ({', '.join(sorted(FORMATS))})") from None


def check_distinct(problems: list[Problem]) -> None:
    """SystemExit when a question repeats: vLLM's prefix cache would serve the repeats almost for
    free and inflate tokens/s (the math task's shipped sample has 20 problems and repeats them)."""
    distinct = len({p.question for p in problems})
    if distinct < len(problems):
        raise SystemExit(f"error: {len(problems)} problems but only {distinct} different questions; repeats would "
                         "be served from the prefix cache and inflate tokens/s. Give --problems with enough "
                         f"problems, or at most --n {distinct}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    task = get_task(args.task)
    problems = take_first(read_problems(args, task), args.limit)
    check_distinct(problems)
    sampling = SamplingConfig(args.temperature, args.top_p, args.max_step_tokens, args.batch_size)
    policy = load_policy(args.model, task.step_delimiter, sampling, args.backend, args.gpu_memory_utilization)
    prm = TimedPRM(build_prm(args.prm, task, policy, args.prm_model, args.rollouts, args.prm_device, args.depth))
    search = SearchConfig(args.width, args.depth, args.top_k, args.seed)

    t0 = time.perf_counter()
    trees = list(build_trees(problems, TreeBuilder(task, policy, prm, search), args.trees_in_flight))
    tree_seconds = time.perf_counter() - t0
    tree_tokens = sum(t.costs.get("tokens", 0) for t in trees)

    roots = [Prefix(task.messages(p.question), [], seed=node_seed(args.seed, p.id, 0)) for p in problems]
    t0 = time.perf_counter()
    outs = policy.complete(roots, args.width, args.depth * args.max_step_tokens)
    plain_seconds = time.perf_counter() - t0
    plain_tokens = sum(o.tokens for row in outs for o in row)

    result = {"problems": len(problems), "build_tree_tokens_per_s": tree_tokens / tree_seconds,
              "generate_tokens_per_s": plain_tokens / plain_seconds,
              "prm_share_of_build_tree": prm.seconds / tree_seconds,
              "prm_per_policy_second": prm.seconds / max(tree_seconds - prm.seconds, 1e-9)}
    result["ratio"] = result["build_tree_tokens_per_s"] / result["generate_tokens_per_s"]
    print(f"{args.model} on --backend {args.backend}, {len(problems)} problems, w={args.width} "
          f"D={args.depth} K={args.top_k}, {args.trees_in_flight} trees in flight, --prm {args.prm}")
    print(f"build-tree      {tree_tokens:>10,} tokens in {tree_seconds:8.1f} s = "
          f"{result['build_tree_tokens_per_s']:>9,.0f} tokens/s  (PRM: {prm.seconds:.1f} s, "
          f"{result['prm_per_policy_second']:.2f} s per second of the rest)")
    print(f"plain generate  {plain_tokens:>10,} tokens in {plain_seconds:8.1f} s = "
          f"{result['generate_tokens_per_s']:>9,.0f} tokens/s")
    print(f"build-tree / plain generate: {result['ratio']:.2f}")
    return result


if __name__ == "__main__":
    main()
