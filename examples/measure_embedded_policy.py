"""Measure the embedded policy on held-out `arith` problems: how imperfect is it?

    python examples/measure_embedded_policy.py            # the shipped model; updates its measurements.json
    python examples/measure_embedded_policy.py --model /tmp/p --no-save

Reports, on 200 held-out problems of the default mix (never trained on):
  - well-formed steps: lines that read as a reduction (`a op b = c`) or a final answer line;
  - per-step correctness: steps the exact verifier accepts, each judged against what the
    solution has written so far (sampled at temperature 0.7, top-p 1);
  - final-answer accuracy, greedy and sampled.
The targets (issue "Foundation"): >= 95% well formed, per-step correctness in [60%, 95%],
greedy accuracy in [25%, 75%].
"""

from __future__ import annotations

import argparse
import json

import torch

from journey.models.base import Prefix, SamplingConfig
from journey.models.embedded import EMBEDDED_PATH, heldout_problems, resolve_model
from journey.models.transformers_policy import TransformersPolicy
from journey.tasks.arith import FINAL_RE, STEP_RE, ArithTask


def solution_stats(task: ArithTask, problems, completions) -> dict:
    """Well-formed and verifier-correct step rates, and answer accuracy, over completions."""
    steps = formed = right = solved = 0
    for p, text in zip(problems, completions):
        lines = [s for s in text.split("\n")]
        checks = task.verify_steps(p.question, lines)
        steps += len(lines)
        formed += sum(bool(STEP_RE.match(s) or FINAL_RE.match(s)) for s in lines)
        right += sum(c.ok for c in checks)
        solved += task.check_answer(task.extract_answer(text), p.answer)
    return {
        "solutions": len(problems),
        "steps": steps,
        "well_formed": round(formed / steps, 4),
        "step_correct": round(right / steps, 4),
        "accuracy": round(solved / len(problems), 4),
    }


def sample(policy: TransformersPolicy, task, problems, temperature: float, seed: int) -> list[str]:
    policy.sampling = SamplingConfig(temperature=temperature, top_p=1.0, batch_size=256)
    prefixes = [Prefix(task.messages(p.question), [], seed=seed + i) for i, p in enumerate(problems)]
    return [c[0].text for c in policy.complete(prefixes, n=1, max_new_tokens=160)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="do not write measurements.json")
    args = ap.parse_args()
    torch.set_num_threads(2)

    task, problems = ArithTask(), heldout_problems(args.n)
    policy = TransformersPolicy(args.model)
    result = {
        "model": args.model,
        "heldout_problems": args.n,
        "greedy": solution_stats(task, problems, sample(policy, task, problems, 0.0, args.seed)),
        "temperature_0.7": solution_stats(task, problems, sample(policy, task, problems, 0.7, args.seed)),
    }
    print(json.dumps(result, indent=2))
    if not args.no_save and resolve_model(args.model) == str(EMBEDDED_PATH):
        (EMBEDDED_PATH / "measurements.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved to {EMBEDDED_PATH / 'measurements.json'}")


if __name__ == "__main__":
    main()
