"""The `eval` and `sample-pairs` stages: batched generation on problems, then metrics or DPO pairs.

    journey eval --model ckpt/journey --problems test.jsonl --samples 8 --out metrics.json
    journey sample-pairs --model ckpt/journey --problems train.jsonl --samples 20 --pairs 5 --out pairs.jsonl

`eval` reports greedy accuracy (with its standard error), and with `--samples k > 1`, maj@k,
pass@1 and pass@k (unbiased estimator over the k samples), plus the mean number of generated
tokens and the mean count of reflection words per greedy answer. It writes `metrics.json` and,
beside it, `<name>.generations.jsonl` (every answer, for reading).

`sample-pairs` is the paper's on-policy DPO data (Part 1): sample n responses per problem
(temperature 0.7, top-p 0.95 by default), check each answer, and draw up to P right ones and P
wrong ones at random into P pairs, as TRL's `{"prompt", "chosen", "rejected"}` rows.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from journey.io import check_writable, load_problems, write_jsonl_atomic, write_text_atomic
from journey.longthought.render import REFLECTION_WORDS, count_reflection_words
from journey.metrics import majority_vote, mean_and_se, pass_at_k
from journey.models.policy import Policy, Prefix, Proposal, SamplingConfig, load_policy
from journey.progress import progress_bar
from journey.provenance import provenance
from journey.tasks import get_task
from journey.tasks.base import Problem, Task


@dataclass
class GenerateConfig:
    """What eval and sample-pairs share: the model, the problems, and how to sample."""

    model: str
    problems: Path
    out: Path
    task: str = "arith"
    backend: str = "transformers"
    samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 64
    seed: int = 0
    limit: int | None = None

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {self.samples}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        SamplingConfig(self.temperature, self.top_p, 1, self.batch_size)  # validates the flags


def generate(policy: Policy, task: Task, problems: list[Problem], n: int, cfg: GenerateConfig,
             temperature: float, label: str = "generate") -> list[list[Proposal]]:
    """n whole answers per problem, seeded per problem, with a progress bar."""
    policy.sampling = SamplingConfig(temperature, cfg.top_p, 1, cfg.batch_size)
    prefixes = [Prefix(task.messages(p.question), [], seed=cfg.seed * 1_000_003 + i)
                for i, p in enumerate(problems)]
    per_call = max(1, cfg.batch_size // n)
    out: list[list[Proposal]] = []
    with progress_bar(label, len(prefixes), "problems") as advance:
        for i in range(0, len(prefixes), per_call):
            chunk = prefixes[i : i + per_call]
            out += policy.complete(chunk, n, cfg.max_new_tokens)
            advance(len(chunk))
    return out


def score(task: Task, problems: list[Problem], greedy: list[Proposal],
          samples: list[list[Proposal]] | None) -> tuple[dict, list[dict]]:
    """Metrics and per-problem records from generations (pure: no model involved)."""
    records, right = [], []
    words = dict.fromkeys(REFLECTION_WORDS, 0)
    for i, (p, g) in enumerate(zip(problems, greedy)):
        answer = task.extract_answer(g.text)
        ok = task.check_answer(answer, p.answer)
        right.append(float(ok))
        for w, c in count_reflection_words(g.text).items():
            words[w] += c
        rec = {"id": p.id, "question": p.question, "gold": p.answer, "greedy": g.text,
               "answer": answer, "correct": ok, "tokens": g.tokens}
        if samples is not None:
            rec["samples"] = [s.text for s in samples[i]]
            rec["sample_answers"] = [task.extract_answer(s.text) for s in samples[i]]
        records.append(rec)
    acc, se = mean_and_se(right)
    n = len(problems)
    metrics = {
        "problems": n,
        "accuracy": round(acc, 4),
        "accuracy_se": round(se, 4),
        "mean_tokens": round(sum(g.tokens for g in greedy) / n, 1),
        "reflection_words_per_answer": {w: round(c / n, 3) for w, c in words.items()},
    }
    if samples is not None:
        k = len(samples[0])
        maj, p1, pk = [], [], []
        for p, rec in zip(problems, records):
            oks = [task.check_answer(a, p.answer) for a in rec["sample_answers"]]
            maj.append(task.check_answer(majority_vote(rec["sample_answers"]), p.answer))
            p1.append(pass_at_k(k, sum(oks), 1))
            pk.append(pass_at_k(k, sum(oks), k))
        metrics.update({"samples": k, f"maj@{k}": round(sum(maj) / n, 4),
                        "pass@1": round(sum(p1) / n, 4), f"pass@{k}": round(sum(pk) / n, 4)})
    return metrics, records


def load_for_generation(cfg: GenerateConfig) -> tuple[Task, list[Problem], Policy]:
    """Everything checked before any generation: task, problems, output path, model."""
    task = get_task(cfg.task)
    problems = load_problems(cfg.problems)[: cfg.limit]
    check_writable(cfg.out)
    policy = load_policy(cfg.model, task.step_delimiter, SamplingConfig(batch_size=cfg.batch_size), cfg.backend)
    return task, problems, policy


def run_eval(cfg: GenerateConfig) -> dict:
    task, problems, policy = load_for_generation(cfg)
    greedy = [g[0] for g in generate(policy, task, problems, 1, cfg, 0.0, "eval (greedy)")]
    samples = None
    if cfg.samples > 1:
        samples = generate(policy, task, problems, cfg.samples, cfg, cfg.temperature, f"eval ({cfg.samples} samples)")
    metrics, records = score(task, problems, greedy, samples)
    metrics = {"model": cfg.model, **metrics,
               "provenance": provenance("eval", {k: str(v) for k, v in asdict(cfg).items()})}
    write_jsonl_atomic(cfg.out.with_name(cfg.out.stem + ".generations.jsonl"), records)
    write_text_atomic(cfg.out, json.dumps(metrics, indent=2) + "\n")
    return metrics


def draw_pairs(task: Task, problem: Problem, texts: list[str], right: list[bool], pairs: int,
               rng: random.Random) -> list[dict]:
    """Up to `pairs` (right, wrong) pairs from one problem's samples (`right[i]`: text i checks),
    drawn at random among distinct texts."""
    verdict = {t.strip(): ok for t, ok in zip(texts, right) if t.strip()}  # first seen order
    good = [t for t, ok in verdict.items() if ok]
    bad = [t for t, ok in verdict.items() if not ok]
    m = min(pairs, len(good), len(bad))
    prompt = task.messages(problem.question)
    return [{"prompt": prompt, "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "id": problem.id}
            for c, r in zip(rng.sample(good, m), rng.sample(bad, m))]


def run_sample_pairs(cfg: GenerateConfig, pairs: int) -> dict:
    if pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {pairs}")
    task, problems, policy = load_for_generation(cfg)
    samples = generate(policy, task, problems, cfg.samples, cfg, cfg.temperature, "sample-pairs")
    rng = random.Random(cfg.seed)
    rows, n_right = [], 0
    for p, s in zip(problems, samples):
        texts = [x.text for x in s]
        right = [task.check_answer(task.extract_answer(t), p.answer) for t in texts]  # checked once
        n_right += sum(right)
        rows += draw_pairs(task, p, texts, right, pairs, rng)
    write_jsonl_atomic(cfg.out, rows)
    return {"problems": len(problems), "samples": len(problems) * cfg.samples, "right": n_right,
            "pairs": len(rows), "problems_with_pairs": len({r["id"] for r in rows})}
