"""Measure the embedded code policy on held-out `code` problems: how imperfect is it?

    python examples/measure_code_policy.py             # the shipped model; updates its measurements.json
    python examples/measure_code_policy.py --model /tmp/c --no-save

Reports, on 200 held-out problems (`train_code_policy.heldout_code_problems`, never trained on):
  - well-formed steps: plan lines ("Step i: ....") and final steps that hold a program that
    compiles, over all steps written (greedy and at temperature 0.7);
  - pass@1: the share of problems whose program passes every test, run in the sandbox;
  - mean reward a * compiles + (1 - a) * pass_rate (a = 0.5);
  - sandbox time per program.
The target (issue "code domain"): greedy pass@1 in [25%, 75%].
"""

from __future__ import annotations

import argparse
import json
import re
import time

import torch
from train_code_policy import heldout_code_problems  # examples/ is this script's folder

from journey.models.base import Prefix, SamplingConfig
from journey.models.embedded import EMBEDDED_CODE_PATH, resolve_model
from journey.models.transformers_policy import TransformersPolicy
from journey.tasks.code import CodeTask
from journey.tasks.sandbox import compile_error

PLAN_RE = re.compile(r"^Step \d+: .+\.$")


def well_formed(task: CodeTask, step: str) -> bool:
    """A plan line, or a final step holding a program that compiles."""
    if task.is_terminal(step):
        program = task.extract_answer(step)
        return program is not None and compile_error(program) is None
    return bool(PLAN_RE.match(step.strip()))


def solution_stats(task: CodeTask, problems, completions: list[str]) -> dict:
    steps = [s for text in completions for s in text.split(task.step_delimiter)]
    t0 = time.perf_counter()
    grades = task.grade_answers([task.extract_answer(t) for t in completions], [p.answer for p in problems])
    seconds = time.perf_counter() - t0
    return {
        "solutions": len(problems),
        "steps": len(steps),
        "well_formed": round(sum(well_formed(task, s) for s in steps) / max(1, len(steps)), 4),
        "compiles": round(sum(g.compiles for g in grades) / len(grades), 4),
        "pass_at_1": round(sum(g.correct for g in grades) / len(grades), 4),
        "mean_reward": round(sum(g.reward for g in grades) / len(grades), 4),
        "sandbox_seconds_per_program": round(seconds / len(grades), 4),
    }


def sample(policy: TransformersPolicy, task: CodeTask, problems, temperature: float, seed: int) -> list[str]:
    policy.sampling = SamplingConfig(temperature=temperature, top_p=1.0, batch_size=100)
    prefixes = [Prefix(task.messages(p.question), [], seed=seed + i) for i, p in enumerate(problems)]
    return [c[0].text for c in policy.complete(prefixes, n=1, max_new_tokens=320)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded-code")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-save", action="store_true", help="do not write measurements.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    task, problems = CodeTask(), heldout_code_problems(args.n)
    policy = TransformersPolicy(args.model, delimiter=task.step_delimiter)
    result = {
        "model": args.model,
        "heldout_problems": args.n,
        "greedy": solution_stats(task, problems, sample(policy, task, problems, 0.0, args.seed)),
        "temperature_0.7": solution_stats(task, problems, sample(policy, task, problems, 0.7, args.seed)),
    }
    print(json.dumps(result, indent=2))
    if not args.no_save and resolve_model(args.model) == str(EMBEDDED_CODE_PATH):
        (EMBEDDED_CODE_PATH / "measurements.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved to {EMBEDDED_CODE_PATH / 'measurements.json'}")


if __name__ == "__main__":
    main()
