"""A test-case generator (o1-Coder's TCG) and mutation testing: `journey gen-tests`.

    journey gen-tests --problems problems.jsonl --model embedded-code --out tests.jsonl --n 10
    journey gen-tests --mode outputs --problems problems.jsonl --model ckpt/tcg --out tests.jsonl --n 2

For each problem (it needs a reference `solution`), in `--mode inputs` (the default): the policy
proposes `n` test inputs (the prompt `journey.tasks.code.tcg_messages`; a completion must be a
JSON list of arguments); the reference, run in the sandbox, gives each input's expected output;
inputs that do not parse, repeat, or crash or time out the reference are dropped. In `--mode
outputs` (o1-Coder's TCG, trained by `journey train --stage tcg`): the policy sees the problem
and the reference (`tcg_output_messages`) and writes `n` completions of tests with their
expected outputs, one a line (`render_tests`: `[[3, 1]] -> 4`); each test is graded by running
the reference on its input in the sandbox: it passes when the reference returns the expected
output (`same_output`); lines that do not parse or repeat, and tests the reference fails, are
dropped. The output rows are the problems with the kept `tests` (and a matching `answer`),
ready for build-tree, plus a `tcg` record.

Measured per run: the share of proposed tests the reference passes (inputs mode: an input it
runs on, its output then being the expected one, so the share is high by construction; outputs
mode: a test whose expected output the reference returns — o1-Coder's metric, 80.8% after SFT
and 89.2% after DPO on TACO), also over the tests that parsed, with standard errors over
problems; the parse failures; and a mutation score: mutants of the reference (`mutants`: one
comparison or arithmetic operator flipped, one integer constant shifted by one, one slice's
bounds swapped, one `reverse=` flipped; made with `ast`) run against the generated tests and
against the given tests; a mutant is killed when some test fails. Mutants no test set kills may be
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
from journey.runtime.metrics import ratio_and_se
from journey.stages.run_tests import load_code_problems
from journey.tasks.code import (
    CodeTask,
    gold_spec,
    grade,
    parse_test_line,
    random_input,
    tcg_messages,
    tcg_output_messages,
)
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


def propose(policy, problems: list[dict], n: int, seed: int, mode: str = "inputs") -> list[list[str]]:
    """`n` completions per problem of the TCG prompt of `mode`, in one policy call."""
    def messages(p: dict) -> list[dict]:
        if mode == "outputs":
            return tcg_output_messages(p.get("question", ""), p["solution"])
        return tcg_messages(p.get("question", ""))

    prefixes = [Prefix(messages(p), [], seed=seed + i) for i, p in enumerate(problems)]
    return [[o.text for o in outs] for outs in policy.complete(prefixes, n, policy.sampling.max_step_tokens)]


def unique_parsed(texts: list[str], parse) -> tuple[list, int]:
    """(the values `parse` reads from `texts`, first of each only; how many repeats were dropped).
    (["[1]", "x", "[1]", "[2]"], parse_input) -> ([[1], [2]], 1)"""
    seen, keep, repeats = set(), [], 0
    for t in texts:
        value = parse(t)
        if value is None:
            continue
        if json.dumps(value) in seen:
            repeats += 1
            continue
        seen.add(json.dumps(value))
        keep.append(value)
    return keep, repeats


def generated_tests(task: CodeTask, problems: list[dict], proposals: list[list[str]]) -> list[dict]:
    """Inputs mode. Per problem: {"proposed", "parsed", "repeats", "tests"}; outputs from the
    sandboxed reference."""
    parsed = [unique_parsed(texts, parse_input) for texts in proposals]
    jobs = [Program(p["solution"], p["entry_point"], ins or [[]]) for p, (ins, _) in zip(problems, parsed)]
    outs = task.sandbox.run(jobs)
    result = []
    for texts, (ins, repeats), o in zip(proposals, parsed, outs):
        tests = [{"input": a, "output": r["got"]} for a, r in zip(ins, o.results) if r["status"] == "ok"]
        result.append({"proposed": len(texts), "parsed": len(ins), "repeats": repeats, "tests": tests})
    return result


def graded_tests(task: CodeTask, problems: list[dict], completions: list[list[str]]) -> list[dict]:
    """Outputs mode. Per problem: {"proposed": non-empty lines written, "parsed": distinct tests
    among them, "repeats", "tests": the ones the reference passes}. Each test's input runs through
    the sandboxed reference; it passes when the reference returns its expected output
    (`journey.tasks.code.grade`), so a test with a wrong expected output or an input the
    reference crashes or times out on is dropped."""
    lines = [[ln for text in texts for ln in text.splitlines() if ln.strip()] for texts in completions]
    parsed = [unique_parsed(ls, parse_test_line) for ls in lines]
    jobs = [Program(p["solution"], p["entry_point"], [t["input"] for t in tests] or [[]])
            for p, (tests, _) in zip(problems, parsed)]
    result = []
    for p, ls, (tests, repeats), o in zip(problems, lines, parsed, task.sandbox.run(jobs)):
        verdicts = grade(o, p["entry_point"], tests, task.config.alpha).verdicts if tests else []
        passed = [t for t, v in zip(tests, verdicts) if v["verdict"] == "pass"]
        result.append({"proposed": len(ls), "parsed": len(tests), "repeats": repeats, "tests": passed})
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


def problems_with_reference(path: Path, flag: str) -> list[dict]:
    """The code problems of `path` (`load_code_problems`), each with a reference `solution`;
    DataError naming `flag` and the first problem without one."""
    problems = list(load_code_problems(path).values())
    for p in problems:
        if not isinstance(p.get("solution"), str) or not p["solution"].strip():
            raise DataError(f"{flag} {path}: problem {p['id']!r} has no reference 'solution'")
    return problems


def gen_tests(cfg) -> dict:
    """Run the TCG over `cfg.problems` (see module docstring); write `cfg.out`; return a summary."""
    from journey.models.base import SamplingConfig
    from journey.models.embedded import task_model
    from journey.models.registry import load_policy
    from journey.tasks.code import CodeConfig

    problems = problems_with_reference(cfg.problems, "--problems")[: cfg.limit]
    check_output(cfg.out, inputs={"--problems": cfg.problems, "--model": cfg.model})
    task = CodeTask(CodeConfig(unsafe_no_sandbox=cfg.unsafe_no_sandbox, workers=cfg.workers))
    task.sandbox  # noqa: B018 -- refuse before loading a model when the sandbox cannot start
    with output_lock(cfg.out):
        if Path(cfg.out).exists() and not cfg.overwrite:
            raise DataError(f"--out {cfg.out}: the file exists; pass --overwrite to replace it")
        policy = load_policy(task_model(cfg.model, "code"), task.step_delimiter,
                             SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_new_tokens), cfg.backend)
        texts = propose(policy, problems, cfg.n, cfg.seed, cfg.mode)
        gen = (graded_tests if cfg.mode == "outputs" else generated_tests)(task, problems, texts)
        # mutation scores over the problems that got tests, so both sets face the same mutants
        both = [(p, g) for p, g in zip(problems, gen) if g["tests"]]
        probes = probe_tests(task, [p for p, _ in both], cfg.equivalence_inputs, cfg.seed)
        kills = mutant_kills(task, [p for p, _ in both], {"generated": [g["tests"] for _, g in both],
                                                           "given": [p["tests"] for p, _ in both],
                                                           "probe": probes}, cfg.mutants)
        scores = {name: [(sum(k), len(k)) for k in kills[name]] for name in ("generated", "given")}
        rows = []
        for j, (p, g) in enumerate(both):
            record = {"mode": cfg.mode, "proposed": g["proposed"], "parsed": g["parsed"], "kept": len(g["tests"]),
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
    """The run's counts and shares; each share pooled over problems, with its standard error
    over problems (`ratio_and_se`). `parse_failures`: proposed lines or inputs that did not parse
    (repeats not counted)."""
    kept = [len(g["tests"]) for g in gen]
    proposed, parsed = [g["proposed"] for g in gen], [g["parsed"] for g in gen]
    out = {"problems": len(gen), "written": written, "proposed": sum(proposed), "parsed": sum(parsed),
           "repeats": sum(g["repeats"] for g in gen), "kept": sum(kept)}
    out["parse_failures"] = out["proposed"] - out["parsed"] - out["repeats"]
    out["reference_passes"], out["reference_passes_se"] = ratio_and_se(kept, proposed)
    out["reference_passes_parsed"], out["reference_passes_parsed_se"] = ratio_and_se(kept, parsed)
    for name, per in scores.items():
        out[f"mutation_score_{name}"], out[f"mutation_score_{name}_se"] = ratio_and_se(
            [a for a, _ in per], [b for _, b in per])
        out[f"mutants_{name}"] = sum(b for _, b in per)
    # references that gave no mutants (no sites, or nested too deeply to copy): scored on nothing
    out["references_without_mutants"] = sum(m == 0 for _, m in next(iter(scores.values()), []))
    return out
