"""The `math` task: MATH/GSM8K-style problems, steps split by blank lines, answers in \\boxed{}.

A solution is a few paragraphs separated by a blank line ("\\n\\n"); the step that contains
`\\boxed{...}` is the final one. Answers are compared with math-verify (`verify(gold, pred)`,
gold first): fractions, decimals, sets, intervals and equivalent expressions all match.
There is no exact step verifier, so use a model, rollout or judge PRM with it.

math-verify's timeouts use `signal.alarm`, which only works in the main thread; off the main
thread we turn them off (`parsing_timeout=None, timeout_seconds=None`). Inputs here are short
answers, not whole documents, so an unbounded parse is not a practical risk.

    journey problems --task math --n 20 --out math.jsonl     # from the shipped sample set
"""

from __future__ import annotations

import json
import random
import re
import threading
from pathlib import Path

from journey.tasks.base import Problem, Task

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
SAMPLE_PATH = Path(__file__).parent / "data" / "math_sample.jsonl"
PROOF_RE = re.compile(r"\b(prove|show that|justify)\b", re.IGNORECASE)
IMAGE_RE = re.compile(r"\[asy\]|\bdiagram\b|\bfigure\b|\bpictured\b|\bshown below\b", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    r"""The content of the last \boxed{...} in `text`, braces balanced; None if there is none.

    'so \boxed{\frac{1}{2}}.' -> '\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def parse_answer(answer: str):
    """math-verify's parse of an answer string (wrapped in \\boxed{} so LaTeX is found)."""
    from math_verify import parse

    kwargs = {} if threading.current_thread() is threading.main_thread() else {"parsing_timeout": None}
    return parse(f"\\boxed{{{answer}}}", **kwargs)


def answers_match(gold: str, predicted: str) -> bool:
    """math-verify's verdict, gold first (the function is not symmetric)."""
    from math_verify import verify

    kwargs = {} if threading.current_thread() is threading.main_thread() else {"timeout_seconds": None}
    g, p = parse_answer(gold), parse_answer(predicted)
    return bool(g) and bool(p) and verify(g, p, **kwargs)


def curate(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Keep problems a checker can grade (as Part 2 did): drop proofs, figure-dependent
    questions and answers math-verify cannot parse. Returns (kept rows, dropped counts by reason).
    """
    kept, dropped = [], {"proof": 0, "image": 0, "unparseable answer": 0}
    for row in rows:
        q, a = str(row.get("question", "")), str(row.get("answer", ""))
        if PROOF_RE.search(q):
            dropped["proof"] += 1
        elif IMAGE_RE.search(q):
            dropped["image"] += 1
        elif not a.strip() or not parse_answer(a):
            dropped["unparseable answer"] += 1
        else:
            kept.append(row)
    return kept, dropped


class MathTask(Task):
    """MATH-style problems with \\boxed{} answers checked by math-verify."""

    name = "math"
    step_delimiter = "\n\n"

    def generate(self, n: int, seed: int) -> list[Problem]:
        """n problems drawn (seeded, without repeats while they last) from the shipped sample."""
        rows = [json.loads(line) for line in SAMPLE_PATH.read_text().splitlines() if line.strip()]
        rng = random.Random(seed)
        order = rng.sample(rows, len(rows))
        picked = [order[i % len(order)] for i in range(n)]
        return [Problem(f"math-{seed}-{i:05d}", r["question"], r["answer"], {"source": r["id"]})
                for i, r in enumerate(picked)]

    def messages(self, question: str) -> list[dict]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]

    def is_terminal(self, step: str) -> bool:
        return "\\boxed{" in step

    def extract_answer(self, text: str) -> str | None:
        return last_boxed(text)

    def check_answer(self, predicted: str | None, gold: str) -> bool:
        return predicted is not None and answers_match(gold, predicted)
