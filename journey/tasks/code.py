"""The `code` task (o1-Coder): plan in pseudocode steps, then write the program; tests decide.

A problem is `{"id", "question", "entry_point", "tests": [{"input": [args...], "output": value}],
"solution"?}`; the stages pass only `answer` along (trees and eval rows keep id, question and
answer), so a code problem's `answer` is the test spec itself, as compact JSON
(`{"entry_point": "f", "tests": [...]}`, see `gold_spec`). A solution is pseudocode steps, one
per step, then ONE final step holding the program in a ```python fence; steps are separated by
a blank line (`step_delimiter = "\\n\\n"`, so a program's own newlines stay inside its step):

    Step 1: keep the items > 3.

    Step 2: multiply each item by 2.

    Step 3: return the sum.

    ```python
    def f(x):
        x = [v for v in x if v > 3]
        x = [v * 2 for v in x]
        return sum(x)
    ```

The final step is checked by running the program on the tests in the sandbox
(`journey.tasks.sandbox`; never outside one unless `unsafe_no_sandbox`): `correct` means every test
passes; its value is o1-Coder's reward v = a * compiles + (1 - a) * pass_rate
(`terminal_value`; a = `CodeConfig.alpha`, 0.5). There is no exact check of a pseudocode step:
build trees with `--prm tests` (`journey.models.tests_prm.TestsPRM`), which scores a plan step by the
programs that policy rollouts write from it and a program by its tests, and explains a failure
by quoting the failing test (input, expected, got).

The generated domain (the embedded code policy's): list functions composed of 1-3 primitives
(filter, map, sort, slice, reverse, unique) and an optional final reducer (sum, len, max, min),
described in templated English; 5 tests per problem from a seeded generator.

    journey problems --task code --n 100 --seed 0 --out problems.jsonl
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field

from journey.checks import check_at_least
from journey.tasks.base import Problem, Task

FENCE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL)
ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# ---------------------------------------------------------------- the generated domain

# name -> (how to draw its constant or None, plan line, code statement, English phrasings).
# `{k}` is the constant. Code statements rebind `x` so steps compose one per line.
PRIMITIVES: dict[str, tuple] = {
    "gt": ((1, 12), "keep the items > {k}", "x = [v for v in x if v > {k}]",
           ("keep the numbers greater than {k}", "drop every number that is not above {k}")),
    "lt": ((3, 15), "keep the items < {k}", "x = [v for v in x if v < {k}]",
           ("keep the numbers less than {k}", "remove the numbers that are {k} or more")),
    "even": (None, "keep the even items", "x = [v for v in x if v % 2 == 0]",
             ("keep only the even numbers", "remove the odd numbers")),
    "odd": (None, "keep the odd items", "x = [v for v in x if v % 2 == 1]",
            ("keep only the odd numbers", "remove the even numbers")),
    "add": ((1, 9), "add {k} to each item", "x = [v + {k} for v in x]",
            ("add {k} to every number", "increase each number by {k}")),
    "sub": ((1, 9), "subtract {k} from each item", "x = [v - {k} for v in x]",
            ("subtract {k} from every number", "decrease each number by {k}")),
    "mul": ((2, 5), "multiply each item by {k}", "x = [v * {k} for v in x]",
            ("multiply every number by {k}", "scale each number by {k}")),
    "square": (None, "square each item", "x = [v * v for v in x]",
               ("square every number", "replace each number by its square")),
    "mod": ((2, 7), "take each item mod {k}", "x = [v % {k} for v in x]",
            ("replace each number by its remainder mod {k}", "take every number modulo {k}")),
    "half": (None, "halve each item, rounding down", "x = [v // 2 for v in x]",
             ("halve every number, rounding down", "divide each number by 2, rounding down")),
    "sort": (None, "sort ascending", "x = sorted(x)",
             ("sort the list in increasing order", "sort the numbers from smallest to largest")),
    "sortd": (None, "sort descending", "x = sorted(x, reverse=True)",
              ("sort the list in decreasing order", "sort the numbers from largest to smallest")),
    "rev": (None, "reverse the list", "x = x[::-1]",
            ("reverse the list", "put the numbers in reverse order")),
    "head": ((1, 4), "take the first {k} items", "x = x[:{k}]",
             ("keep the first {k} numbers", "take the first {k} elements")),
    "tail": ((1, 4), "take the last {k} items", "x = x[-{k}:]",
             ("keep the last {k} numbers", "take the last {k} elements")),
    "dropf": ((1, 3), "drop the first {k} items", "x = x[{k}:]",
              ("drop the first {k} numbers", "remove the first {k} elements")),
    "dropl": ((1, 3), "drop the last {k} items", "x = x[:-{k}]",
              ("drop the last {k} numbers", "remove the last {k} elements")),
    "uniq": (None, "remove repeats, keeping first ones", "x = list(dict.fromkeys(x))",
             ("remove duplicates, keeping the first of each", "keep each number only once")),
}
REDUCERS: dict[str, tuple] = {
    "sum": ("return the sum", "return sum(x)", ("return the sum", "return the total")),
    "len": ("return the length", "return len(x)", ("return how many numbers are left", "return the count")),
    "max": ("return the max, or 0 if empty", "return max(x, default=0)",
            ("return the largest number (0 if none)", "return the maximum, or 0 for an empty list")),
    "min": ("return the min, or 0 if empty", "return min(x, default=0)",
            ("return the smallest number (0 if none)", "return the minimum, or 0 for an empty list")),
}
THEN = ("then", "after that", "next")


def apply_primitive(name: str, k: int | None, x: list[int]) -> list[int]:
    """The primitive on a list, in plain Python (the generator's own reference, never model code).

    ("gt", 3, [1, 5, 4]) -> [5, 4]
    """
    ns = {"x": list(x)}
    exec(PRIMITIVES[name][2].format(k=k), {}, ns)  # our own fixed statements, not model text
    return ns["x"]


def apply_reducer(name: str, x: list[int]) -> int:
    return {"sum": sum, "len": len, "max": lambda v: max(v, default=0),
            "min": lambda v: min(v, default=0)}[name](x)


@dataclass(frozen=True)
class Spec:
    """A composed list function: primitives with constants, and an optional final reducer."""

    ops: tuple[tuple[str, int | None], ...]
    reducer: str | None = None

    def __call__(self, x: list[int]):
        for name, k in self.ops:
            x = apply_primitive(name, k, x)
        return apply_reducer(self.reducer, x) if self.reducer else x

    def plan(self) -> list[str]:
        lines = [PRIMITIVES[n][1].format(k=k) for n, k in self.ops]
        lines += [REDUCERS[self.reducer][0]] if self.reducer else ["return the list"]
        return [f"Step {i}: {line}." for i, line in enumerate(lines, 1)]

    def code(self) -> str:
        body = [PRIMITIVES[n][2].format(k=k) for n, k in self.ops]
        body.append(REDUCERS[self.reducer][1] if self.reducer else "return x")
        return "def f(x):\n" + "".join(f"    {s}\n" for s in body).rstrip("\n")

    def question(self, rng: random.Random) -> str:
        parts = [rng.choice(PRIMITIVES[n][3]).format(k=k) for n, k in self.ops]
        parts.append(rng.choice(REDUCERS[self.reducer][2]) if self.reducer else "return the list")
        text = parts[0] + "".join(f", {rng.choice(THEN)} {p}" for p in parts[1:])
        return f"Write f(x) for a list of integers x: {text}."


def random_spec(rng: random.Random, min_ops: int = 1, max_ops: int = 3) -> Spec:
    """1-3 distinct steps, the last a reducer half of the time (a reducer counts as a step)."""
    n = rng.randint(min_ops, max_ops)
    reducer = rng.choice(sorted(REDUCERS)) if rng.random() < 0.5 else None
    names = rng.sample(sorted(PRIMITIVES), n - (1 if reducer and n > 1 else 0))
    ops = tuple((name, rng.randint(*PRIMITIVES[name][0]) if PRIMITIVES[name][0] else None) for name in names)
    return Spec(ops, reducer)


def random_input(rng: random.Random) -> list[int]:
    return [rng.randint(0, 20) for _ in range(rng.randint(3, 8))]


def tcg_messages(question: str) -> list[dict]:
    """The prompt of the test-case generator: one test input (the args, as a JSON list)."""
    return [{"role": "user", "content": f"Test input for: {question}"}]


def tcg_output_messages(question: str, solution: str) -> list[dict]:
    """The prompt of the trained test-case generator (`gen-tests --mode outputs`, `train --stage
    tcg`, o1-Coder's TCG): the problem and its reference program; the answer is tests with their
    expected outputs, one per line (`render_tests`)."""
    return [{"role": "user", "content": f"Tests for: {question}\n```python\n{solution}\n```"}]


TEST_ARROW = " -> "


def render_tests(tests: list[dict]) -> str:
    """Tests as the TCG writes them, one a line: the arguments as a JSON list, ` -> `, the expected
    output as JSON. [{"input": [[3, 1]], "output": 4}] -> '[[3, 1]] -> 4'"""
    return "\n".join(f"{json.dumps(t['input'])}{TEST_ARROW}{json.dumps(t['output'])}" for t in tests)


def parse_test_line(line: str) -> dict | None:
    """One test from a line of `render_tests`, else None: split at the first ` -> ` where the left
    side is a JSON list and the right side JSON (either may hold the arrow inside a string).

    '[[3, 1]] -> 4' -> {"input": [[3, 1]], "output": 4}; '[[3, 1]] -> ' -> None; '[3] 4' -> None
    """
    from journey.tasks.sandbox import read_json

    at = line.find(TEST_ARROW)
    while at >= 0:
        try:
            args, out = read_json(line[:at].strip()), read_json(line[at + len(TEST_ARROW):].strip())
        except ValueError:
            at = line.find(TEST_ARROW, at + 1)
            continue
        return {"input": args, "output": out} if isinstance(args, list) else None
    return None


def solution_text(spec: Spec) -> list[str]:
    """The canonical solution's steps: the plan lines, then the fenced program."""
    return [*spec.plan(), f"```python\n{spec.code()}\n```"]


# ---------------------------------------------------------------- gold specs and grading


def gold_spec(entry_point: str, tests: list[dict]) -> str:
    """The `answer` of a code problem: its tests as compact JSON (what `check_answer` reads)."""
    return json.dumps({"entry_point": entry_point, "tests": tests}, separators=(",", ":"), sort_keys=True)


def parse_gold(gold: str) -> tuple[str, list[dict]]:
    """(entry point, tests) from a code problem's `answer`; ValueError saying what is wrong."""
    try:
        spec = json.loads(gold)
    except (TypeError, json.JSONDecodeError):
        raise ValueError("a code problem's 'answer' must be its test spec as JSON "
                         '({"entry_point": ..., "tests": [...]}); make it with '
                         "`journey problems --task code` or journey.tasks.code.gold_spec") from None
    if not isinstance(spec, dict):
        raise ValueError("a code problem's 'answer' must be a JSON object with entry_point and tests")
    return check_tests(spec.get("entry_point"), spec.get("tests"))


def check_tests(entry_point, tests) -> tuple[str, list[dict]]:
    """Validate an entry point and `[{"input": [...], "output": ...}]`; ValueError otherwise."""
    if not isinstance(entry_point, str) or not ENTRY_RE.match(entry_point):
        raise ValueError(f"'entry_point' must be a Python function name, got {entry_point!r}")
    if not isinstance(tests, list) or not tests:
        raise ValueError("'tests' must be a non-empty list of {\"input\": [...], \"output\": ...}")
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or not isinstance(t.get("input"), list) or "output" not in t:
            raise ValueError(f"test {i + 1} must be {{\"input\": [args...], \"output\": value}}, got {str(t)[:60]}")
    return entry_point, tests


def same_output(got, expected) -> bool:
    """Whether two JSON values match: exact, except a float against a float, within 1e-6
    (relative or absolute). An int never equals a float, nor a bool an int.

    ([1, 2.0000000001], [1, 2.0]) -> True; (2.0, 2) -> False; (True, 1) -> False
    """
    if type(got) is float and type(expected) is float:
        return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(same_output(a, b) for a, b in zip(got, expected))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(same_output(got[k], expected[k]) for k in expected)
    return type(got) is type(expected) and got == expected


@dataclass
class Grade:
    """A program judged on its tests: compiles, pass rate, reward and one verdict per test."""

    compiles: bool
    pass_rate: float
    reward: float
    verdicts: list[dict] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.compiles and self.pass_rate == 1.0

    def reason(self) -> str:
        """A sentence a reflection can quote: the first failing test, with input, expected, got."""
        if not self.compiles:
            err = next((v.get("error") for v in self.verdicts if v.get("error")), "it does not compile")
            return f"The program does not compile ({err})."
        for v in self.verdicts:
            if v["verdict"] != "pass":
                return failing_test_sentence(v)
        return "The program passes all its tests."


def shown(value, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failing_test_sentence(v: dict) -> str:
    """'f([3, 1]) should be 4, but it returned 2.' and the like, for one test verdict."""
    call = f"f({', '.join(shown(a) for a in v['input'])})" if isinstance(v.get("input"), list) else "the test"
    want = shown(v["expected"])
    if v["verdict"] == "wrong":
        return f"{call} should be {want}, but it returned {shown(v.get('got'))}."
    if v["verdict"] == "timeout":
        return f"{call} should be {want}, but it ran out of time."
    if v["verdict"] == "memory":
        return f"{call} should be {want}, but it ran out of memory."
    return f"{call} should be {want}, but it raised {v.get('error') or 'an error'}."


def grade(outcome, entry_point: str, tests: list[dict], alpha: float) -> Grade:
    """Judge a sandbox `Outcome` (journey.tasks.sandbox) against the tests' expected outputs, on the
    host: the program never sees an expected output, so it cannot fake a pass."""
    if not outcome.compiles:
        verdicts = [{"verdict": "error", "error": outcome.compile_error, "input": t["input"],
                     "expected": t["output"]} for t in tests]
        return Grade(False, 0.0, 0.0, verdicts)
    verdicts = []
    for t, r in zip(tests, outcome.results):
        v = {"verdict": r["status"], "input": t["input"], "expected": t["output"]}
        if r["status"] == "ok":
            v.update(ok_verdict(r["got"], t["output"]))
        elif r.get("error"):
            v["error"] = r["error"]
        verdicts.append(v)
    rate = sum(v["verdict"] == "pass" for v in verdicts) / len(tests)
    return Grade(True, rate, alpha + (1 - alpha) * rate, verdicts)


@dataclass
class CodeConfig:
    """How the `code` task runs and scores programs (journey.tasks.code, journey.tasks.sandbox).

    alpha: a in the reward v = a * compiles + (1 - a) * pass_rate (o1-Coder's 0.5).
    unsafe_no_sandbox: run model-written programs without bubblewrap (rlimits and a timeout
        only). Never a fallback: only this flag does it.
    workers: programs run at once (default: the CPU count).
    tests_per_problem: tests the generator writes per problem.
    """

    alpha: float = 0.5
    unsafe_no_sandbox: bool = False
    workers: int | None = None
    tests_per_problem: int = 5

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not 0 <= self.alpha <= 1:
            raise ValueError(f"--code-alpha must be in [0, 1], got {self.alpha}")
        if self.workers is not None:
            check_at_least(1, workers=self.workers)
        check_at_least(1, tests_per_problem=self.tests_per_problem)


def ok_verdict(got, expected) -> dict:
    """{"verdict": "pass" | "wrong", "got"} for a test that returned `got`; a comparison that
    raises (a program's output is data, whatever it holds) is that test's error, not the run's."""
    try:
        same = same_output(got, expected)
    except Exception as e:  # RecursionError, MemoryError, OverflowError, ...
        return {"verdict": "error", "error": f"the output cannot be compared ({type(e).__name__})"}
    return {"verdict": "pass" if same else "wrong", "got": got}


# ---------------------------------------------------------------- the task


class CodeTask(Task):
    """Pseudocode steps, then a fenced program checked by its tests in the sandbox."""

    name = "code"
    step_delimiter = "\n\n"
    own_prm = "tests"  # programs run against their tests

    def __init__(self, config=None):
        self.config = config or CodeConfig()
        self._sandbox = None
        self._grades: dict[str, Grade] = {}  # sha256(program, gold) -> grade: trees re-check often

    # -- problems

    def generate(self, n: int, seed: int) -> list[Problem]:
        rng = random.Random(seed)
        problems = []
        for i in range(n):
            spec = random_spec(rng)
            question = spec.question(rng)
            inputs = [random_input(rng) for _ in range(self.config.tests_per_problem)]
            tests = [{"input": [x], "output": spec(x)} for x in inputs]
            problems.append(Problem(f"code-{seed}-{i:05d}", question, gold_spec("f", tests),
                                    {"entry_point": "f", "tests": tests, "solution": spec.code(),
                                     "steps": len(spec.ops) + 1}))
        return problems

    def messages(self, question: str) -> list[dict]:
        return [{"role": "user", "content": question}]

    def solution(self, question: str) -> list[str]:
        raise NotImplementedError("the code task's reference solutions are in each problem's 'solution'")

    # -- steps and answers

    def is_terminal(self, step: str) -> bool:
        return step.lstrip().startswith("```")

    def extract_answer(self, text: str) -> str | None:
        """The last fenced program in `text` (an unclosed fence runs to the end), or None."""
        found = FENCE_RE.findall(text)
        return found[-1] if found else None

    def check_answer(self, predicted: str | None, gold: str) -> bool:
        return self.grade_answers([predicted], [gold])[0].correct

    def check_answers(self, predicted: list[str | None], golds: list[str]) -> list[bool]:
        return [g.correct for g in self.grade_answers(predicted, golds)]

    def terminal_value(self, predicted: str | None, gold: str, correct: bool) -> float:
        return self.grade_answers([predicted], [gold])[0].reward

    def grade_answers(self, predicted: list[str | None], golds: list[str]) -> list[Grade]:
        """Grade many programs at once: the ones not seen before run in the sandbox's pool."""
        # JSON keeps None apart from "None", and encodes any text (a lone surrogate too)
        keys = [hashlib.sha256(json.dumps([p, g]).encode()).hexdigest() for p, g in zip(predicted, golds)]
        todo = {}
        for k, p, g in zip(keys, predicted, golds):
            if k not in self._grades and k not in todo:
                todo[k] = (p, g)
        if todo:
            for k, gr in zip(todo, self._run([p for p, _ in todo.values()], [g for _, g in todo.values()])):
                self._grades[k] = gr
        return [self._grades[k] for k in keys]

    def _run(self, programs: list[str | None], golds: list[str]) -> list[Grade]:
        from journey.tasks.sandbox import Program

        specs = [parse_gold(g) for g in golds]
        jobs = [Program(p or "", e, [t["input"] for t in tests]) for p, (e, tests) in zip(programs, specs)]
        outcomes = self.sandbox.run(jobs)
        return [grade(o, e, tests, self.config.alpha) for o, (e, tests) in zip(outcomes, specs)]

    @property
    def sandbox(self):
        """The sandbox, started on first use (SandboxError if it cannot start)."""
        if self._sandbox is None:
            from journey.tasks.sandbox import Sandbox

            self._sandbox = Sandbox(unsafe=self.config.unsafe_no_sandbox, workers=self.config.workers)
        return self._sandbox
