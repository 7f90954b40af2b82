"""The embedded `arith` task: multi-step integer arithmetic with an exact step verifier.

A question is a bare expression such as `(23 + 19) * 3 - 41`. A solution makes one reduction
per line, then states the answer:

    23 + 19 = 42
    42 * 3 = 126
    126 - 41 = 85
    The answer is 85.

A reduction is legal when it computes an operation whose two operands are plain numbers in the
current expression: with the order of operations that means innermost parentheses first,
* and / before + and -, left to right among equals (`2 * 3 + 4 * 5` allows either product
first). The verifier replays the steps on the expression tree, taking each step's *claimed*
result, so a step after an arithmetic slip is judged against what the solution has written so
far; `journey.models.prm` turns that into path-level correctness. It never raises on model
text: anything it cannot read gets `StepCheck(False, reason)`.

    journey problems --task arith --n 100 --seed 0 --out problems.jsonl
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from journey.tasks.base import Problem, StepCheck, Task

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
STEP_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
FINAL_RE = re.compile(r"^\s*The answer is\s*(-?\d+)\s*\.?\s*$")
ANSWER_RE = re.compile(r"The answer is\s*(-?\d+)")
TOKEN_RE = re.compile(r"\s*(\d+|[+\-*/()])")
MAX_OPS = 12  # operations per generated problem at most (`problems --ops`)
MAX_DIGITS = 12  # numbers longer than this in model text are garbage, not arithmetic


# ---------------------------------------------------------------- expression trees


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Op:
    op: str
    left: Num | Op
    right: Num | Op


Expr = Num | Op


def apply_op(op: str, a: int, b: int) -> int | None:
    """`a op b` as an integer, or None when it is not one (division that is not exact)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0 or a % b:
        return None
    return a // b


def evaluate(e: Expr) -> int | None:
    """The value of `e`, or None if some division in it is not exact."""
    if isinstance(e, Num):
        return e.value
    a, b = evaluate(e.left), evaluate(e.right)
    return None if a is None or b is None else apply_op(e.op, a, b)


def tokens(e: Expr, parent_prec: int = 0, is_right: bool = False) -> list[str]:
    """`e` as tokens, with parentheses only where the tree needs them.

    A child is wrapped when it binds looser than its parent, or as tightly when it is the right
    operand (`a - (b + c)`), so parsing the rendering gives back the same tree.
    """
    if isinstance(e, Num):
        return [str(e.value)]
    prec = PRECEDENCE[e.op]
    inner = tokens(e.left, prec, False) + [e.op] + tokens(e.right, prec, True)
    wrap = prec < parent_prec or (prec == parent_prec and is_right)
    return ["(", *inner, ")"] if wrap else inner


def render(e: Expr) -> str:
    """`Op('*', Op('+', Num(23), Num(19)), Num(3))` -> `(23 + 19) * 3`."""
    out = ""
    for t in tokens(e):
        if t == ")" or out.endswith("(") or not out:
            out += t
        else:
            out += " " + t
    return out


def parse(text: str) -> Expr:
    """Parse an expression of non-negative integers, + - * / and parentheses (ValueError if not)."""
    toks: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise ValueError(f"unexpected character {text[pos]!r} in {text!r}")
        toks.append(m.group(1))
        pos = m.end()
    expr, rest = _parse_sum(toks)
    if rest:
        raise ValueError(f"unexpected {' '.join(rest)!r} at the end of {text!r}")
    return expr


def _parse_sum(toks: list[str]) -> tuple[Expr, list[str]]:
    left, toks = _parse_product(toks)
    while toks and toks[0] in "+-":
        op, (right, toks) = toks[0], _parse_product(toks[1:])
        left = Op(op, left, right)
    return left, toks


def _parse_product(toks: list[str]) -> tuple[Expr, list[str]]:
    left, toks = _parse_atom(toks)
    while toks and toks[0] in "*/":
        op, (right, toks) = toks[0], _parse_atom(toks[1:])
        left = Op(op, left, right)
    return left, toks


def _parse_atom(toks: list[str]) -> tuple[Expr, list[str]]:
    if not toks:
        raise ValueError("expression ends too early")
    if toks[0] == "(":
        inner, rest = _parse_sum(toks[1:])
        if not rest or rest[0] != ")":
            raise ValueError("unbalanced parentheses")
        return inner, rest[1:]
    if toks[0].isdigit():
        return Num(int(toks[0])), toks[1:]
    raise ValueError(f"expected a number, got {toks[0]!r}")


def reducible(e: Expr, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Op]]:
    """The operations that may be computed next, left to right, each with its path from the root.

    `2 * 3 + 4 * 5` -> [(("L",), 2 * 3), (("R",), 4 * 5)]
    """
    if isinstance(e, Num):
        return []
    if isinstance(e.left, Num) and isinstance(e.right, Num):
        return [(path, e)]
    return reducible(e.left, path + ("L",)) + reducible(e.right, path + ("R",))


def replace(e: Expr, path: tuple[str, ...], new: Expr) -> Expr:
    """`e` with the subtree at `path` replaced by `new`."""
    if not path:
        return new
    assert isinstance(e, Op), "path runs past a leaf"
    if path[0] == "L":
        return Op(e.op, replace(e.left, path[1:], new), e.right)
    return Op(e.op, e.left, replace(e.right, path[1:], new))


def _has_adjacent(e: Expr, a: int, op: str, b: int) -> bool:
    """Whether `a op b` stands as three consecutive tokens in the rendering of `e`."""
    t = tokens(e)
    want = [str(a), op, str(b)]
    return any(t[i : i + 3] == want for i in range(len(t) - 2))


# ---------------------------------------------------------------- steps


def _check_reduction(state: Expr, a: int, op: str, b: int, c: int) -> tuple[StepCheck, Expr | None]:
    """Check the step `a op b = c` against `state`; return the verdict and the next state.

    The next state takes the claimed `c` (so later steps are judged against what was written);
    it is None when the step cannot be applied at all (illegal or absent operation).
    """
    shown = f"{a} {op} {b}"
    for path, node in reducible(state):
        if (node.left.value, node.op, node.right.value) == (a, op, b):
            nxt = replace(state, path, Num(c))
            true = apply_op(op, a, b)
            if true is None:
                return StepCheck(False, f"{shown} is not a whole number."), nxt
            if true != c:
                return StepCheck(False, f"{shown} is {true}, not {c}."), nxt
            return StepCheck(True, f"{shown} = {c} is right."), nxt
    expr = render(state)
    if _has_adjacent(state, a, op, b):
        first = reducible(state)[0][1]
        due = f"{first.left.value} {first.op} {first.right.value}"
        return StepCheck(False, f"{shown} cannot be computed yet in {expr}; {due} comes first."), None
    return StepCheck(False, f"{shown} does not appear in {expr}."), None


def _check_final(state: Expr, claimed: int) -> StepCheck:
    if isinstance(state, Op):
        return StepCheck(False, f"It is too early to answer: {render(state)} is not fully computed.")
    if state.value != claimed:
        return StepCheck(False, f"The steps give {state.value}, not {claimed}.")
    return StepCheck(True, f"The answer {claimed} follows from the steps.")


def check_steps(question: str, steps: list[str]) -> list[StepCheck]:
    """The local verdict on every step, replaying them in order on the question's expression.

    Each step is judged against the expression as the earlier steps left it (with their claimed
    results). After a step that cannot be applied, or after a final answer, every later step
    is wrong.
    """
    try:
        state: Expr | None = parse(question)
    except ValueError as err:
        return [StepCheck(False, f"The question is not an expression: {err}.") for _ in steps]
    out: list[StepCheck] = []
    for i, step in enumerate(steps):
        if state is None:
            out.append(StepCheck(False, f"Step {i + 1} follows a step that could not be applied."))
            continue
        check, state = _check_step(state, step)
        out.append(check)
    return out


def _check_step(state: Expr, step: str) -> tuple[StepCheck, Expr | None]:
    if len(step) > 200 or any(len(d) > MAX_DIGITS for d in re.findall(r"\d+", step)):
        return StepCheck(False, "The step is too long to be a reduction."), None
    if m := FINAL_RE.match(step):
        return _check_final(state, int(m.group(1))), None
    if m := STEP_RE.match(step):
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        return _check_reduction(state, a, op, b, c)
    shown = step.strip()[:40] or "an empty line"
    return StepCheck(False, f'Expected a step like "23 + 19 = 42" or "The answer is 85.", got "{shown}".'), None


def well_formed(step: str) -> bool:
    """Whether `step` reads as a reduction or a final answer, right or wrong.

    "42 * 3 = 116" -> True, "The answer is 20." -> True, "The aiswer is 20." -> False,
    "42 * 3 is 126" -> False; numbers longer than MAX_DIGITS are garbage -> False.
    """
    if len(step) > 200 or any(len(d) > MAX_DIGITS for d in re.findall(r"\d+", step)):
        return False
    return bool(FINAL_RE.match(step) or STEP_RE.match(step))


def solve(question: str) -> list[str]:
    """The canonical solution: always the leftmost legal reduction, then the answer line."""
    state = parse(question)
    steps = []
    while isinstance(state, Op):
        path, node = reducible(state)[0]
        a, b = node.left.value, node.right.value
        c = apply_op(node.op, a, b)
        assert c is not None, f"inexact division in {question!r}"
        steps.append(f"{a} {node.op} {b} = {c}")
        state = replace(state, path, Num(c))
    steps.append(f"The answer is {state.value}.")
    return steps


def replay_states(question: str, steps: list[str]) -> list[str] | None:
    """The expression after each prefix of `steps` (claimed results taken), the question first.

    "(23 + 19) * 3", ["23 + 19 = 42"] -> ["(23 + 19) * 3", "42 * 3"]. A final answer leaves its
    number; a step that cannot be applied ends the list early (the states reached so far).
    None if the question is not an expression.
    """
    try:
        state: Expr = parse(question)
    except ValueError:
        return None
    out = [render(state)]
    for step in steps:
        if m := FINAL_RE.match(step):
            out.append(m.group(1))
            break
        m = STEP_RE.match(step)
        if not m:
            break
        _, nxt = _check_reduction(state, int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))
        if nxt is None:
            break
        state = nxt
        out.append(render(state))
    return out


def corrupt_reduction(step: str, rng: random.Random) -> str | None:
    """The reduction `a op b = c` with a wrong result: c moved by 1-10 or by a digit slip
    ("42 * 3 = 126" -> "42 * 3 = 116"); None for a step that is not a reduction."""
    m = STEP_RE.match(step)
    if not m:
        return None
    a, op, b, c = m.group(1), m.group(2), m.group(3), int(m.group(4))
    wrong = c
    while wrong == c:
        wrong = c + rng.choice([-1, 1]) * (rng.randint(1, 10) if rng.random() < 0.5 else 10)
    return f"{a} {op} {b} = {wrong}"


# ---------------------------------------------------------------- problems


@dataclass
class ArithConfig:
    """Difficulty knobs of the problem generator.

    min_ops/max_ops: operations per problem (a solution has ops + 1 steps).
    max_operand: largest number in a + or - position (numbers start at 1).
    max_factor: largest right operand of * and / (from 2), so products stay mental-math sized.
    max_value: every intermediate result lies in [0, max_value].
    """

    min_ops: int = 2
    max_ops: int = 4
    max_operand: int = 50
    max_factor: int = 9
    max_value: int = 999

    def __post_init__(self):
        if not 1 <= self.min_ops <= self.max_ops <= MAX_OPS:
            raise ValueError(f"need 1 <= min_ops <= max_ops <= {MAX_OPS}, got {self.min_ops}, {self.max_ops}")
        if self.max_operand < 1 or self.max_factor < 2 or self.max_value < self.max_operand:
            raise ValueError("need max_operand >= 1, max_factor >= 2, max_value >= max_operand")

    def id_prefix(self) -> str:
        """The start of generated problem ids: "arith-" for the default knobs, else naming each
        knob that differs ("arith-ops2-2-", "arith-operand9-"), so that problems from two
        generators never share an id (resume and dedupe key on ids)."""
        default, parts = ArithConfig(), []
        if (self.min_ops, self.max_ops) != (default.min_ops, default.max_ops):
            parts.append(f"ops{self.min_ops}-{self.max_ops}")
        for knob in ("max_operand", "max_factor", "max_value"):
            if getattr(self, knob) != getattr(default, knob):
                parts.append(f"{knob.removeprefix('max_')}{getattr(self, knob)}")
        return "".join(f"{part}-" for part in ["arith", *parts])


def _random_expr(rng: random.Random, n_ops: int, cfg: ArithConfig) -> Expr | None:
    """A random expression with `n_ops` operations whose every intermediate value is a whole
    number in [0, max_value], or None when this draw failed (the caller draws again)."""
    if n_ops == 0:
        return Num(rng.randint(1, cfg.max_operand))
    op = rng.choice("+-*/")
    if op in "*/":
        left = _random_expr(rng, n_ops - 1, cfg)
        if left is None:
            return None
        lv = evaluate(left)
        if op == "*":
            right = Num(rng.randint(2, cfg.max_factor))
        else:
            divisors = [d for d in range(2, cfg.max_factor + 1) if lv % d == 0 and lv > 0]
            if not divisors:
                return None
            right = Num(rng.choice(divisors))
    else:
        k = rng.randint(0, n_ops - 1)
        left, right = _random_expr(rng, k, cfg), _random_expr(rng, n_ops - 1 - k, cfg)
        if left is None or right is None:
            return None
        if op == "-" and evaluate(left) < evaluate(right):
            left, right = right, left
    e = Op(op, left, right)
    v = evaluate(e)
    return e if v is not None and 0 <= v <= cfg.max_value else None


def random_question(rng: random.Random, cfg: ArithConfig) -> str:
    """One expression drawn with the config's knobs."""
    n_ops = rng.randint(cfg.min_ops, cfg.max_ops)
    while (e := _random_expr(rng, n_ops, cfg)) is None:
        pass
    return render(e)


class ArithTask(Task):
    """Integer arithmetic, one reduction per line; exact step verifier (see module docstring)."""

    name = "arith"
    step_delimiter = "\n"
    own_prm = "verifier"  # its exact step check

    def __init__(self, config: ArithConfig | None = None):
        self.config = config or ArithConfig()

    def generate(self, n: int, seed: int) -> list[Problem]:
        rng, prefix = random.Random(seed), self.config.id_prefix()
        problems = []
        for i in range(n):
            q = random_question(rng, self.config)
            ops = sum(t in PRECEDENCE for t in tokens(parse(q)))
            problems.append(Problem(f"{prefix}{seed}-{i:05d}", q, str(evaluate(parse(q))), {"ops": ops}))
        return problems

    def is_terminal(self, step: str) -> bool:
        return step.lstrip().startswith("The answer is")

    def extract_answer(self, text: str) -> str | None:
        found = ANSWER_RE.findall(text)
        return found[-1] if found else None

    def check_answer(self, predicted: str | None, gold: str) -> bool:
        try:
            return predicted is not None and int(predicted) == int(gold)
        except ValueError:
            return False

    def well_formed(self, step: str) -> bool:
        return well_formed(step)

    def verify_steps(self, question: str, steps: list[str]) -> list[StepCheck]:
        return check_steps(question, steps)

    def solution(self, question: str) -> list[str]:
        return solve(question)

    def states(self, question: str, steps: list[str]) -> list[str] | None:
        return replay_states(question, steps)

    def corrupt_step(self, question: str, previous: list[str], step: str, rng) -> str | None:
        return corrupt_reduction(step, rng)
