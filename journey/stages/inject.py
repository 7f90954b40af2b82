"""`journey eval --inject-errors`: does a model notice a wrong step and recover? (DESIGN §11)

    journey eval --model ckpt/journey --problems test.jsonl --inject-errors --out inject.json

Accuracy cannot tell apart a model that checks its steps from one that reflects at random or
counts trials. For each held-out problem this eval takes the task's reference solution, cuts
it at a point k drawn per problem (seeded; before the final answer), and prefills the answer
with two prefixes that differ in one step:

- injected: the first k steps, then a wrong version of step k+1 (the task's corrupter:
  arith changes the result, "42 * 3 = 126" -> "42 * 3 = 116");
- clean: the first k + 1 steps, all right.

The model continues both greedily, and per problem we record the metrics defined below.

**Definitions** (hand-worked on `(23 + 19) * 3 - 41`, prefix "23 + 19 = 42", injected
"42 * 3 = 116", right step "42 * 3 = 126"). A *doubt* is a line with "Wait", "Alternatively" or
"Let me recompute" in any case (`DOUBT`; the verbose style's "...; let me recompute from ..."
counts). A *backtrack* is a line naming where to resume: 'Back to step N: "step"', 'go back
to step N ("step")', 'Back to "step or state"', 'continue from "..."', or the start ("Back to the
start.", "start again from the question", "a different first step"). The other lines are *steps*.

- **recovery**: the last answer in prefix + injected + continuation is right.
  "... 126 - 41 = 85 / The answer is 85." -> true; "116 - 41 = 75 / The answer is 75." -> false.
- **detection**: one of the first two lines after the injected step is a doubt.
  "Wait, 42 * 3 is 126, not 116." first -> true; "116 - 41 = 75 / Wait, ..." (second) -> true;
  "116 - 41 = 75 / The answer is 75. / Wait, ..." (third) -> false;
  "Let me recompute: ..." or "...; let me recompute ..." -> true (any case).
- **false alarm**: after the clean prefix, the continuation doubts before it has written a wrong
  step of its own (`Task.verify_steps` over the clean prefix and the continuation's steps so far;
  a task without a verifier: any doubt). A justified doubt is not a false alarm; only the first
  doubt is judged. "126 - 41 = 85 / The answer is 85." -> false; "Wait, 42 * 3 is 126." first ->
  true; "126 - 41 = 84 / Wait, 126 - 41 is 85." -> false (its own slip came first);
  "126 - 41 = 85 / Wait, ..." -> true.
- **backtrack validity**: the share of backtracks in prefix + injected + continuation that
  resume from a state the trace really holds and that does not go through the injected step.
  The trace is replayed along the *surviving path*: steps append to it; a backtrack cuts it back
  to where it resumes, so an abandoned trial is never replayed. A backtrack is valid when:
  (a) it names the start: always (path -> empty);
  (b) 'step N: "x"': 1 <= N <= len(path) and the path's step N is x (path -> its first N steps);
  'step 2: "23 + 19 = 42"' when step 1 is "23 + 19 = 42" -> invalid (wrong number);
  (c) '"x"' with x a step on the path: resume after its last occurrence;
  (d) '"x"' with x a state the path reached (`Task.states`, the question first): resume there;
  '"42 * 3 - 41"' after the injection -> valid; '"99 - 41"' -> invalid;
  (e) and, while the injected step is on the path, the resume point lies before it: 'step 2:
  "42 * 3 = 116"' or '"116 - 41"' (reachable only through it) -> invalid.
  An invalid backtrack leaves the path as it was when its target is not on it, and cuts it where
  the target is when only (e) fails. Worked: injected, "Wait", 'Back to "42 * 3 - 41"' (valid,
  path -> ["23 + 19 = 42"]), "42 * 3 = 126", "126 - 41 = 86", "Wait", 'Back to "126 - 41"'
  (valid: a state of the surviving path) -> 2 of 2.
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
DOUBT = re.compile(r"\b(wait|alternatively|let me recompute)\b", re.IGNORECASE)
# 'Back to step 2: "x".' / 'go back to step 2 ("x")' / 'Back to "x".' / 'continue from "x"'
BACKTRACK = re.compile(r'(?:back to|continue from|recompute from)(?: step (\d+))?:?\s*\(?"([^"]*)"', re.IGNORECASE)
BACK_TO_START = re.compile(r"back to the start|start again from the question|from the beginning"
                           r"|a different first step", re.IGNORECASE)


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


def backtrack_target(line: str) -> tuple[int | None, str] | None:
    """Where a backtrack line resumes: (step number or None, quoted text), (0, "") for the
    start, None when the line is no backtrack.

    'Back to step 2: "42 * 3 = 126".' -> (2, "42 * 3 = 126"); 'Back to "126 - 41".' -> (None,
    "126 - 41"); "Back to the start." -> (0, ""); "126 - 41 = 85" -> None.
    """
    if m := BACKTRACK.search(line):
        return (int(m.group(1)) if m.group(1) else None), m.group(2).strip()
    return (0, "") if BACK_TO_START.search(line) else None


def resume_point(task: Task, question: str, steps: list[str], target: tuple[int | None, str]) -> int | None:
    """How many steps of the surviving path `steps` a backtrack to `target` keeps, or None when
    the path holds no such step or state (clauses a-d of the module docstring)."""
    number, text = target
    if number == 0 and not text:
        return 0
    if number is not None:
        return number if 1 <= number <= len(steps) and steps[number - 1] == text else None
    if text in steps:
        return len(steps) - steps[::-1].index(text)
    states = task.states(question, steps) or []
    if text in states:
        return len(states) - 1 - states[::-1].index(text)
    return 0 if text == question.strip() else None


def backtrack_validity(task: Task, question: str, lines: list[str], injected_at: int | None = None) -> tuple[int, int]:
    """(backtracks, valid ones) in a trace given as lines, `lines[injected_at]` the injected
    step (see the module docstring's definition, clauses a-e)."""
    n = valid = 0
    path: list[int] = []  # indices into `lines` of the steps on the surviving path
    for i, line in enumerate(lines):
        target = backtrack_target(line)
        if target is None:
            if not DOUBT.search(line):
                path.append(i)
            continue
        n += 1
        keep = resume_point(task, question, [lines[j].strip() for j in path], target)
        if keep is None:
            continue
        valid += injected_at not in path or keep <= path.index(injected_at)
        path = path[:keep]
    return n, valid


def false_alarm(task: Task, question: str, prefix: list[str], cont: list[str]) -> bool:
    """Whether `cont`, written after the clean `prefix`, doubts before a wrong step of its own
    (see the module docstring's definition)."""
    steps = list(prefix)
    for line in cont:
        if DOUBT.search(line):
            checks = task.verify_steps(question, steps)
            return checks is None or all(c.ok for c in checks)
        if backtrack_target(line) is None:
            steps.append(line.strip())
    return False


def mechanism(task: Task, problem: Problem, case: dict, after_injected: str, after_clean: str) -> dict:
    """One problem's mechanism record from its two continuations (pure)."""
    d = task.step_delimiter
    injected_lines = [*case["prefix"], case["injected"]]
    cont = [x for x in after_injected.split(d) if x.strip()]
    clean = [x for x in after_clean.split(d) if x.strip()]
    answer = task.extract_answer(d.join(injected_lines + cont))
    backtracks, valid = backtrack_validity(task, problem.question, injected_lines + cont, len(case["prefix"]))
    return {
        "recovered": bool(task.check_answer(answer, problem.answer)),
        "detected": doubts_in(cont[:2]) > 0,
        "false_alarm": false_alarm(task, problem.question, [*case["prefix"], case["right_step"]], clean),
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


def rescored(task: Task, row: dict) -> dict:
    """A journal row with its mechanism fields recomputed from its stored continuations, so a
    journal written under older definitions is read with today's."""
    if row.get("skipped"):
        return row
    problem = Problem(row["id"], row["question"], row["gold"])
    case = {k: row[k] for k in ("prefix", "injected", "right_step")}
    return row | mechanism(task, problem, case, row["after_injected"], row["after_clean"])


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
    rows = [rescored(task, r) for r in rows]
    metrics = {"model": cfg.model, "kind": "injected errors", **metrics_of(rows),
               "provenance": provenance("eval --inject-errors", {k: str(v) if isinstance(v, Path) else v
                                                                  for k, v in vars(cfg).items() if not k.startswith("_")},
                                        injections=str(injections_path(cfg.out)))}
    write_text_atomic(cfg.out, json.dumps(metrics, indent=2) + "\n")
    return metrics
