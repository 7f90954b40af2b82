"""A test-case generator (o1-Coder's TCG) and mutation testing: `journey gen-tests`.

    journey gen-tests --problems problems.jsonl --model embedded-code --out tests.jsonl --n 10

For each problem (it needs a reference `solution`): the policy proposes `n` test inputs (the
prompt `journey.tasks.code.tcg_messages`; a completion must be a JSON list of arguments); the
reference, run in the sandbox, gives each input's expected output; inputs that do not parse,
repeat, or crash or time out the reference are dropped. The output rows are the problems with
the generated `tests` (and a matching `answer`), ready for build-tree, plus a `tcg` record.

Measured per run: the share of proposed tests the reference passes (an input it runs on, its
output then being the expected one; o1-Coder reports 89.2% of generated tests passing the
standard code) and a mutation score: mutants of the reference (`mutants`: one comparison or
arithmetic operator flipped, one integer constant shifted by one, one slice's bounds swapped,
one `reverse=` flipped; made with `ast`) run against the generated tests and against the
given tests; a mutant is killed when some test fails. Mutants no test set kills may be
equivalent to the reference (`x[:-1]` vs `x[:len(x)-1]`), so scores are lower bounds. To say how
low: each mutant and the reference also run on `--equivalence-inputs` random inputs from the code
task's input generator (the empty list among them); a mutant that no set, random inputs included,
kills is counted likely equivalent, and the scores are also given over the killable rest
(`likely_equivalent`, `killable_score_generated`, `killable_score_given`; issue 25).
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import random
from pathlib import Path

from journey.models.base import Prefix
from journey.runtime.io import DataError, check_output, output_lock, write_jsonl_atomic
from journey.stages.run_tests import load_code_problems
from journey.tasks.code import CodeTask, gold_spec, random_input, tcg_messages
from journey.tasks.sandbox import Program, read_json

log = logging.getLogger(__name__)

SWAPS = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv,
         ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Div: ast.Mult}


def _variants(node: ast.AST) -> int:
    """How many mutants one site gives (0: not a site)."""
    if isinstance(node, ast.Compare):
        return sum(type(op) in SWAPS for op in node.ops)
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        return int(type(node.op) in SWAPS)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return 2
    if isinstance(node, ast.Slice):
        return int(node.lower is not None or node.upper is not None)
    if isinstance(node, ast.keyword) and node.arg == "reverse" and isinstance(node.value, ast.Constant):
        return 1
    return 0


def _mutate(node: ast.AST, k: int) -> None:
    """Apply variant `k` of a site to `node`, in place."""
    if isinstance(node, ast.Compare):
        idx = [i for i, op in enumerate(node.ops) if type(op) in SWAPS][k]
        node.ops[idx] = SWAPS[type(node.ops[idx])]()
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.Constant):
        node.value += 1 if k == 0 else -1
    elif isinstance(node, ast.Slice):
        node.lower, node.upper = node.upper, node.lower
    elif isinstance(node, ast.keyword):
        node.value = ast.Constant(not node.value.value)


def mutants(code: str, limit: int = 20) -> list[str]:
    """Distinct single-site mutants of `code`, in source order, at most `limit`.

    "def f(x):\\n    return x[:2]" -> ["...x[:3]", "...x[:1]", "...x[2:]"]
    """
    try:
        tree = ast.parse(code)
        original = ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    sites = [(i, k) for i, node in enumerate(ast.walk(tree)) for k in range(_variants(node))]
    out = []
    for i, k in sites:
        try:
            m = copy.deepcopy(tree)
            _mutate(list(ast.walk(m))[i], k)
            text = ast.unparse(m)
        except RecursionError:  # nested too deep to copy or print (x + 1 + ... + 1): no mutants
            log.warning("a reference nests too deeply to mutate; it gets no mutants")
            return out
        if text != original and text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def parse_input(text: str) -> list | None:
    """A proposed test input: a JSON list of arguments, else None (the proposal is dropped,
    whatever it holds: bad JSON, nesting past `MAX_DEPTH`, a huge int). '[[3, 1]]' -> [[3, 1]]"""
    try:
        value = read_json(text.strip())
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def propose_inputs(policy, problems: list[dict], n: int, seed: int) -> list[list[str]]:
    """`n` completions per problem of the TCG prompt, in one policy call."""
    prefixes = [Prefix(tcg_messages(p.get("question", "")), [], seed=seed + i) for i, p in enumerate(problems)]
    return [[o.text for o in outs] for outs in policy.complete(prefixes, n, policy.sampling.max_step_tokens)]


def generated_tests(task: CodeTask, problems: list[dict], proposals: list[list[str]]) -> list[dict]:
    """Per problem: {"proposed", "parsed", "tests"}; outputs from the sandboxed reference."""
    parsed = []
    for texts in proposals:
        seen, keep = set(), []
        for t in texts:
            args = parse_input(t)
            if args is not None and json.dumps(args) not in seen:
                seen.add(json.dumps(args))
                keep.append(args)
        parsed.append(keep)
    jobs = [Program(p["solution"], p["entry_point"], ins or [[]]) for p, ins in zip(problems, parsed)]
    outs = task.sandbox.run(jobs)
    result = []
    for texts, ins, o in zip(proposals, parsed, outs):
        tests = [{"input": a, "output": r["got"]} for a, r in zip(ins, o.results) if r["status"] == "ok"]
        result.append({"proposed": len(texts), "parsed": len(ins), "tests": tests})
    return result


def mutation_scores(task: CodeTask, problems: list[dict], test_sets: dict[str, list[list[dict]]],
                    limit: int) -> dict[str, list[tuple[int, int]]]:
    """For each named test set, per problem: (mutants killed, mutants), in one sandbox batch."""
    kills = mutant_kills(task, problems, test_sets, limit)
    return {name: [(sum(k), len(k)) for k in per] for name, per in kills.items()}


def killable_scores(kills: dict[str, list[list[bool]]]) -> dict:
    """Mutation scores over the mutants some test set kills. A mutant that no set kills
    (the random-input `probe` set among them) is likely equivalent to the reference: no test
    from the task's input distribution can kill it, so it only lowers every score alike.
    `kills`: set name -> per problem -> per mutant, killed? (every set the same mutants).

    >>> killable_scores({"probe": [[True, False, True]], "given": [[True, False, False]]})
    {'likely_equivalent': 1, 'killable': 2, 'killable_score_probe': 1.0, 'killable_score_given': 0.5}
    """
    flat = {name: [k for per_problem in per for k in per_problem] for name, per in kills.items()}
    per_mutant = [any(flags) for flags in zip(*flat.values())]
    killable = sum(per_mutant)
    out = {"likely_equivalent": len(per_mutant) - killable, "killable": killable}
    for name, killed in flat.items():
        out[f"killable_score_{name}"] = sum(killed) / killable if killable else 0.0
    return out


def probe_inputs(count: int, seed: int) -> list[str]:
    """`count` random inputs from the code task's input generator (`random_input`; the empty
    list first), as proposal texts for `generated_tests`."""
    rng = random.Random(seed)
    return [json.dumps([x]) for x in [[], *(random_input(rng) for _ in range(count - 1))]]


def probed(problem: dict) -> bool:
    """Whether random inputs fit `problem`: every given test takes one list argument, as the
    code task's generated problems do."""
    return all(len(t["input"]) == 1 and isinstance(t["input"][0], list) for t in problem["tests"])


def mutant_kills(task: CodeTask, problems: list[dict], test_sets: dict[str, list[list[dict]]],
                 limit: int) -> dict[str, list[list[bool]]]:
    """For each named test set, per problem, per mutant: killed? (no tests: no mutants)."""
    muts = [mutants(p["solution"], limit) for p in problems]
    programs, golds, where = [], [], []
    for name, sets in test_sets.items():
        for j, (p, tests) in enumerate(zip(problems, sets)):
            for m in muts[j] if tests else []:
                programs.append(m)
                golds.append(gold_spec(p["entry_point"], tests))
                where.append((name, j))
    verdicts = task.check_answers(programs, golds)
    killed: dict[str, list[list[bool]]] = {name: [[] for _ in problems] for name in test_sets}
    for (name, j), ok in zip(where, verdicts):
        killed[name][j].append(not ok)
    return killed


def gen_tests(cfg) -> dict:
    """Run the TCG over `cfg.problems` (see module docstring); write `cfg.out`; return a summary."""
    from journey.models.base import SamplingConfig
    from journey.models.embedded import task_model
    from journey.models.registry import load_policy
    from journey.tasks.code import CodeConfig

    problems = list(load_code_problems(cfg.problems).values())[: cfg.limit]
    for p in problems:
        if not isinstance(p.get("solution"), str) or not p["solution"].strip():
            raise DataError(f"--problems {cfg.problems}: problem {p['id']!r} has no reference 'solution'")
    check_output(cfg.out, inputs={"--problems": cfg.problems, "--model": cfg.model})
    task = CodeTask(CodeConfig(unsafe_no_sandbox=cfg.unsafe_no_sandbox, workers=cfg.workers))
    task.sandbox  # noqa: B018 -- refuse before loading a model when the sandbox cannot start
    with output_lock(cfg.out):
        if Path(cfg.out).exists() and not cfg.overwrite:
            raise DataError(f"--out {cfg.out}: the file exists; pass --overwrite to replace it")
        policy = load_policy(task_model(cfg.model, "code"), task.step_delimiter,
                             SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_new_tokens), cfg.backend)
        gen = generated_tests(task, problems, propose_inputs(policy, problems, cfg.n, cfg.seed))
        # mutation scores over the problems that got tests, so both sets face the same mutants
        both = [(p, g) for p, g in zip(problems, gen) if g["tests"]]
        probes = probe_tests(task, [p for p, _ in both], cfg.equivalence_inputs, cfg.seed)
        kills = mutant_kills(task, [p for p, _ in both], {"generated": [g["tests"] for _, g in both],
                                                           "given": [p["tests"] for p, _ in both],
                                                           "probe": probes}, cfg.mutants)
        scores = {name: [(sum(k), len(k)) for k in kills[name]] for name in ("generated", "given")}
        rows = []
        for j, (p, g) in enumerate(both):
            record = {"proposed": g["proposed"], "parsed": g["parsed"], "kept": len(g["tests"]),
                      "mutants": scores["given"][j][1], "killed_generated": scores["generated"][j][0],
                      "killed_given": scores["given"][j][0]}
            rows.append({**p, "tests": g["tests"], "given_tests": p["tests"],
                         "answer": gold_spec(p["entry_point"], g["tests"]), "tcg": record})
        write_jsonl_atomic(cfg.out, rows)
    probed_kills = {name: [k for k, t in zip(per, probes) if t] for name, per in kills.items()}
    return {**summarize(gen, scores, len(rows)), "problems_probed": sum(bool(t) for t in probes),
            **killable_scores(probed_kills)}


def probe_tests(task: CodeTask, problems: list[dict], count: int, seed: int) -> list[list[dict]]:
    """Per problem, the reference's outputs on `count` random inputs (`probe_inputs`); [] for a
    problem they do not fit (`probed`) or when `count` is 0."""
    fits = [p for p in problems if probed(p)] if count else []
    runs = iter(generated_tests(task, fits, [probe_inputs(count, seed)] * len(fits)))
    return [next(runs)["tests"] if count and probed(p) else [] for p in problems]


def summarize(gen: list[dict], scores: dict, written: int) -> dict:
    proposed = sum(g["proposed"] for g in gen)
    kept = sum(len(g["tests"]) for g in gen)
    out = {"problems": len(gen), "written": written, "proposed": proposed,
           "parsed": sum(g["parsed"] for g in gen), "kept": kept,
           "reference_passes": kept / proposed if proposed else 0.0}
    for name, per in scores.items():
        k, m = sum(a for a, _ in per), sum(b for _, b in per)
        out[f"mutation_score_{name}"] = k / m if m else 0.0
        out[f"mutants_{name}"] = m
    # references that gave no mutants (no sites, or nested too deeply to copy): scored on nothing
    out["references_without_mutants"] = sum(m == 0 for _, m in next(iter(scores.values()), []))
    return out
