"""`journey eval --inject-errors`: does a model notice a wrong step and recover? (DESIGN §11)

    journey eval --model ckpt/journey --problems test.jsonl --inject-errors --out inject.json

Accuracy cannot tell apart a model that checks its steps from one that reflects at random or
counts trials. For each held-out problem this eval takes the task's reference solution, cuts
it at a point k drawn per problem (seeded; before the final answer), and prefills the answer
with two prefixes that differ in one step:

- injected: the first k steps, then a wrong version of step k+1 (the task's corrupter:
  arith changes the result, "42 * 3 = 126" -> "42 * 3 = 116");
- clean: the first k + 1 steps, all right.

The model continues both greedily, and per problem we record:

- **recovery**: the final answer after the injected prefix is right;
- **detection**: a doubt ("Wait", "Alternatively", "Let me recompute") within the first two
  lines after the injected step;
- **false alarm**: a doubt anywhere after the clean prefix;
- **backtrack validity**: each backtrack in the injected continuation that names a state
  ('Back to step 2: "23 + 19 = 42".', 'Back to "42 * 3 - 41".') names one that exists: a step
  written earlier in the trace, or a state the steps so far reached (`Task.states`);
  "Back to the start." is always valid;
- **length**: tokens generated after each prefix.
Rates come with their standard errors. The journal `<name>.injections.jsonl` holds every case
and both continuations; like eval it is resumable per problem and written through the same
lock and checks (`journey.stages.evaluate.run_journal`).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from journey.config import GenerateConfig
from journey.models.base import Policy, Prefix
from journey.runtime.metrics import mean_and_se
from journey.runtime.provenance import provenance
from journey.stages.evaluate import RowMaker, journal_row, problem_seed, run_journal
from journey.tasks import task_of
from journey.tasks.base import Problem, Task

INJECTIONS = "journey.injections/v1"
DOUBT = re.compile(r"\b(Wait|Alternatively|Let me recompute)\b")
# 'Back to step 2: "x".' / 'go back to step 2 ("x")' / 'Back to "x".' / 'continue from "x"'
BACKTRACK = re.compile(r'(?:[Bb]ack to|continue from|recompute from)(?: step \d+)?:?\s*\(?"([^"]*)"')
BACK_TO_START = re.compile(r"[Bb]ack to the start|start again from the question|from the beginning")


def injections_path(out: Path) -> Path:
    return out.with_name(out.stem + ".injections.jsonl")


def injection_case(task: Task, problem: Problem, seed: int) -> dict | None:
    """The prefix, the wrong step and the right one for `problem`, or None when the reference
    solution is too short or the task cannot corrupt the step it drew."""
    try:
        steps = task.solution(problem.question)
    except (NotImplementedError, ValueError):
        return None
    if len(steps) < 2:
        return None
    rng = random.Random(problem_seed(seed, problem.id))
    k = rng.randrange(len(steps) - 1)  # never the final answer line
    wrong = task.corrupt_step(problem.question, steps[:k], steps[k], rng)
    if wrong is None or wrong == steps[k]:
        return None
    return {"prefix": steps[:k], "injected": wrong, "right_step": steps[k]}


def doubts_in(lines: list[str]) -> int:
    return sum(bool(DOUBT.search(line)) for line in lines)


def backtrack_validity(task: Task, question: str, lines: list[str]) -> tuple[int, int]:
    """(backtracks, valid ones) in a trace given as lines (see module docstring)."""
    n = valid = 0
    seen: list[str] = []
    for line in lines:
        m = BACKTRACK.search(line)
        if m:
            n += 1
            named = m.group(1).strip()
            steps = [s for s in seen if not DOUBT.search(s) and not BACKTRACK.search(s)]
            states = task.states(question, steps) or []
            valid += named in seen or named in states or named == question.strip()
        elif BACK_TO_START.search(line):
            n += 1
            valid += 1
        seen.append(line.strip())
    return n, valid


def mechanism(task: Task, problem: Problem, case: dict, after_injected: str, after_clean: str) -> dict:
    """One problem's mechanism record from its two continuations (pure)."""
    d = task.step_delimiter
    injected_lines = [*case["prefix"], case["injected"]]
    cont = [x for x in after_injected.split(d) if x.strip()]
    clean = [x for x in after_clean.split(d) if x.strip()]
    answer = task.extract_answer(d.join(injected_lines + cont))
    backtracks, valid = backtrack_validity(task, problem.question, injected_lines + cont)
    return {
        "recovered": bool(task.check_answer(answer, problem.answer)),
        "detected": doubts_in(cont[:2]) > 0,
        "false_alarm": doubts_in(clean) > 0,
        "backtracks": backtracks,
        "valid_backtracks": valid,
        "answer": answer,
    }


def inject_rows(cfg: GenerateConfig) -> RowMaker:
    """Journal rows for a chunk of problems: both prefixes continued greedily in ONE call."""

    def make(task: Task, policy: Policy, chunk: list[Problem]) -> list[dict]:
        cases = [injection_case(task, p, cfg.seed) for p in chunk]
        usable = [(p, c) for p, c in zip(chunk, cases) if c is not None]
        outs = []
        if usable:
            policy.sampling = type(policy.sampling)(0.0, cfg.top_p, 1, cfg.batch_size)
            msgs = [task.messages(p.question) for p, _ in usable]
            prefixes = ([Prefix(m, [*c["prefix"], c["injected"]], problem_seed(cfg.seed, p.id))
                         for m, (p, c) in zip(msgs, usable)]
                        + [Prefix(m, [*c["prefix"], c["right_step"]], problem_seed(cfg.seed, p.id))
                           for m, (p, c) in zip(msgs, usable)])
            outs = [o[0] for o in policy.complete(prefixes, 1, cfg.max_new_tokens)]
        found = {p.id: (c, outs[i], outs[i + len(usable)]) for i, (p, c) in enumerate(usable)}
        rows = []
        for p in chunk:
            if p.id not in found:
                rows.append(journal_row(INJECTIONS, cfg, p, skipped=True))
                continue
            c, inj, cln = found[p.id]
            rows.append(journal_row(INJECTIONS, cfg, p, skipped=False, **c, after_injected=inj.text,
                                    after_clean=cln.text, tokens_injected=inj.tokens, tokens_clean=cln.tokens,
                                    **mechanism(task, p, c, inj.text, cln.text)))
        return rows

    return make


def rate(rows: list[dict], key: str) -> dict:
    m, se = mean_and_se([float(r[key]) for r in rows]) if rows else (0.0, 0.0)
    return {"rate": round(m, 4), "se": round(se, 4)}


def metrics_of(rows: list[dict]) -> dict:
    """The mechanism table from journal rows (pure)."""
    used = [r for r in rows if not r["skipped"]]
    n_back = sum(r["backtracks"] for r in used)
    mean = lambda key: round(sum(r[key] for r in used) / len(used), 1) if used else 0.0  # noqa: E731
    return {
        "problems": len(rows), "injected": len(used),
        "recovery": rate(used, "recovered"), "detection": rate(used, "detected"),
        "false_alarm": rate(used, "false_alarm"),
        "backtracks": n_back,
        "backtrack_validity": round(sum(r["valid_backtracks"] for r in used) / n_back, 4) if n_back else None,
        "mean_tokens_after_injected": mean("tokens_injected"), "mean_tokens_after_clean": mean("tokens_clean"),
    }


def run_inject(cfg: GenerateConfig) -> dict:
    """Run (or resume) the injected-error eval; write the metrics to `cfg.out`."""
    from journey.runtime.io import write_text_atomic

    task = task_of(cfg)
    if type(task).corrupt_step is Task.corrupt_step:
        raise ValueError(f"--inject-errors: task {task.name!r} has no corrupter for its steps")
    rows = run_journal(cfg, injections_path(cfg.out), INJECTIONS, "eval (injected errors)", inject_rows(cfg))
    metrics = {"model": cfg.model, "kind": "injected errors", **metrics_of(rows),
               "provenance": provenance("eval --inject-errors", {k: str(v) if isinstance(v, Path) else v
                                                                  for k, v in vars(cfg).items() if not k.startswith("_")},
                                        injections=str(injections_path(cfg.out)))}
    write_text_atomic(cfg.out, json.dumps(metrics, indent=2) + "\n")
    return metrics
