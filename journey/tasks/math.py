"""The `math` task: MATH/GSM8K-style problems, steps split by blank lines, answers in \\boxed{}
(or "#### N", or "The answer is N": `ANSWER_FORMATS`, in the order --answer-formats gives).

A solution is a few paragraphs separated by a blank line ("\\n\\n"); the step that contains
`\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`) is the final one. Answers are compared with
math-verify (`verify(gold, pred)`, gold first): fractions, decimals, sets, intervals and
equivalent expressions all match.
There is no exact step verifier, so use a model, rollout or judge PRM with it.

Every check is bounded, wherever it runs (main thread, worker threads): math-verify runs in a
persistent worker process (`MathChecker`), and a check that takes longer than `CHECK_TIMEOUT`
seconds is counted wrong with the reason "timed out"; the worker is killed and restarted for
the next check. (math-verify's own timeouts use `signal.alarm`, which works only in the main
thread; off it they must be turned off, and `9^{9^{9^{9}}}` then runs for minutes.) The worker
also caps its own CPU time and memory, so it cannot outlive a killed parent by much.
Two kinds of answers never reach math-verify (`plain_verdict`):

- plain numbers (`72`, `-3`, `1,000`, `0.5`, `\\frac{5}{6}`, `3/4`) are compared as exact
  rationals, in process: most answers are plain numbers, so the worker costs them nothing.
  Two finite values must be equal. A decimal matches a value with no finite decimal
  (`\\frac{1}{3}`, `\\frac{1}{6}`) when it states at least 6 significant digits and is within
  one unit of its last digit (rounded or cut: `0.333333`, `0.166667`, `0.166666`; not
  `0.3333`). math-verify rounds both sides to 6 decimal places instead, which accepts
  `.000067` for `.0000672`, `0.1234567` for `0.1234568` and `0.0000004` for `0`.
- base-n numerals (`52_8`, `1011_{2}`) keep their base: `52_8` is not `52_9` (math-verify drops
  subscripts). A numeral written without a base matches the same digits with one.

    journey problems --task math --n 20 --out math.jsonl     # from the shipped sample set
    journey curate --problems imported.jsonl --out curated.jsonl
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from journey.tasks.base import Problem, Task

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
SAMPLE_PATH = Path(__file__).parent / "data" / "math_sample.jsonl"

CHECK_TIMEOUT = 5.0  # seconds of wall time for one check in the worker before it is killed
WORKER_START_TIMEOUT = 60.0  # seconds for a new worker to import math-verify and say it is ready
WORKER_MEMORY = 4 << 30  # bytes of address space the worker may use (a huge power raises MemoryError)
MIN_SIGNIFICANT = 6  # digits a decimal must state to stand for a value with no finite decimal


# ---------------------------------------------------------------- extracting answers

BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def last_boxed(text: str) -> str | None:
    r"""The content of the last \boxed{...} or \fbox{...} in `text`, braces balanced, or the
    token after `\boxed ` (MATH writes `\boxed 5`); None if there is none or it is unclosed.

    'so \boxed{\frac{1}{2}}.' -> '\frac{1}{2}'     '$\boxed 5$.' -> '5'     '\fbox{7}' -> '7'
    """
    found = list(BOX_RE.finditer(text))
    if not found:
        return None
    rest = text[found[-1].end():]
    body = rest.lstrip()
    if body.startswith("{"):
        depth = 0
        for j, ch in enumerate(body):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth == 0:
                return body[1:j].strip()
        return None
    if not rest[:1].isspace():
        return None
    token = re.match(r"[^\s$]+", body)
    value = token.group(0).rstrip(".,;") if token else ""
    return value or None


HASH_RE = re.compile(r"####[ \t]*([^\n]+)")
SAYS_RE = re.compile(r"\b(?:the )?(?:final )?answer is[:\s]*([^\n]+)", re.IGNORECASE)


def last_hash(text: str) -> str | None:
    """GSM8K's style: what follows the last `####` on its line. '... #### 1,000' -> '1,000'"""
    found = HASH_RE.findall(text)
    return strip_math(found[-1]) or None if found else None


def last_says(text: str) -> str | None:
    """The rest of the line after the last "The answer is", up to its sentence's end.

    'So the answer is 20.' -> '20'    'The final answer is: $\\frac{1}{2}$.' -> '\\frac{1}{2}'
    """
    found = SAYS_RE.findall(text)
    if not found:
        return None
    said = re.split(r"\.(?:\s|$)", found[-1].strip() + " ", maxsplit=1)[0]
    return strip_math(said.strip()) or None


# Where a final answer may be written, by name (`--answer-formats` picks and orders them): MATH's
# \boxed{}, GSM8K's "#### N", and plain "The answer is N" (what small instruct models write).
ANSWER_FORMATS = {"boxed": last_boxed, "hash": last_hash, "says": last_says}
DEFAULT_ANSWER_FORMATS = ("boxed", "hash", "says")


def check_answer_formats(names: tuple[str, ...] | list[str]) -> None:
    """ValueError naming --answer-formats unless `names` are known formats, at least one, no repeats."""
    unknown = [n for n in names if n not in ANSWER_FORMATS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"--answer-formats takes a comma-separated order of {', '.join(ANSWER_FORMATS)} "
                         f"(each at most once), got {','.join(names)!r}")


# ---------------------------------------------------------------- answers that need no math-verify


@dataclass(frozen=True)
class Verdict:
    """Whether an answer checks, and why not when it does not ("" when it does)."""

    ok: bool
    reason: str = ""


_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
PLAIN_RE = re.compile(rf"([+-]?)({_NUMBER})")
FRAC_RE = re.compile(r"([+-]?)\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}|([+-]?)(\d+)\s*/\s*(\d+)")
BASE_RE = re.compile(r"([0-9A-Za-z]+)_(?:\{\s*\(?\s*(\d+)\s*\)?\s*\}|\(\s*(\d+)\s*\)|(\d))")


def strip_math(answer: str) -> str:
    """`$ 5 $` -> `5`: the answer without surrounding space, `$` and a final period."""
    text = answer.strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    return text


@dataclass(frozen=True)
class PlainNumber:
    """A plain number as written: its exact value, digits after the point (None: not a
    decimal) and significant digits stated."""

    value: Fraction
    places: int | None = None
    significant: int = 0


def plain_number(text: str) -> PlainNumber | None:
    """A plain number (integer, decimal, fraction), else None.

    '1,000' -> 1000   '-0.50' -> -1/2 (2 places, 2 significant)   '\\frac{5}{6}' -> 5/6   'x' -> None
    """
    m = PLAIN_RE.fullmatch(text)
    if m:
        digits = m.group(2).replace(",", "")
        whole, point, frac = digits.partition(".")
        value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
        stated = (whole + frac).lstrip("0")
        return PlainNumber(-value if m.group(1) == "-" else value, len(frac) if point else None,
                           len(stated))
    m = FRAC_RE.fullmatch(text)
    if m:
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else m.group(4, 5, 6)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return PlainNumber(-value if sign == "-" else value)
    return None


def approximates(decimal: PlainNumber, exact: Fraction) -> bool:
    """Whether a decimal stands for a value with no finite decimal: >= 6 significant digits
    stated, within one unit of the last digit. (0.333333, 1/3) -> True; (0.3333, 1/3) -> False."""
    if decimal.places is None or terminates(exact) or decimal.significant < MIN_SIGNIFICANT:
        return False
    return abs(decimal.value - exact) < Fraction(1, 10 ** decimal.places)


def base_numeral(text: str) -> tuple[str, int | None] | None:
    """(digits, base) for a numeral with a base subscript, (digits, None) for bare digits.

    '52_8' -> ('52', 8)   '1011_{2}' -> ('1011', 2)   'A3_{16}' -> ('A3', 16)   '52' -> ('52', None)
    None for anything else, or digits that are not digits of that base ('x_1', '9_8').
    """
    if text.isdigit():
        return text, None
    m = BASE_RE.fullmatch(text)
    if not m:
        return None
    digits, base = m.group(1).upper(), int(next(g for g in m.groups()[1:] if g))
    if not 2 <= base <= 36 or any(int(c, 36) >= base for c in digits):
        return None
    return digits, base


def terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (its denominator is 2^a 5^b)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def plain_verdict(gold: str, predicted: str) -> Verdict | None:
    """The verdict for answers that need no math-verify (see the module docstring), else None.

    ('72', '72.0') -> ok   ('\\frac{1}{3}', '0.333333') -> ok   ('0.0000672', '.000067') -> wrong
    ('52_8', '52_9') -> wrong   ('52_8', '52') -> ok   ('x^2', 'x^2') -> ok   ('6\\sqrt{2}', ...) -> None
    """
    g, p = strip_math(gold), strip_math(predicted)
    if not p:
        return Verdict(False, "empty answer")
    if g == p:
        return Verdict(True)
    bg, bp = base_numeral(g), base_numeral(p)
    if (bg and bg[1]) or (bp and bp[1]):  # a base is written on one side at least
        if bg and bp:
            same_base = bg[1] is None or bp[1] is None or bg[1] == bp[1]
            return Verdict(bg[0] == bp[0] and same_base, "" if bg[0] == bp[0] and same_base
                           else "different base-n numeral")
        return None
    ng, np_ = plain_number(g), plain_number(p)
    if ng is None or np_ is None:
        return None
    if ng.value == np_.value or approximates(np_, ng.value) or approximates(ng, np_.value):
        return Verdict(True)
    return Verdict(False, "different number")


# ---------------------------------------------------------------- math-verify, bounded


def serve() -> None:
    """The worker's loop: one JSON request per stdin line, one JSON reply per stdout line.

    Requests: {"op": "verify", "gold", "pred"} -> {"ok", "reason"}; {"op": "parse", "answer"}.
    Runs math-verify with its signal timeouts off (the parent's timeout kills this process);
    caps its own memory, and its CPU time per request, so a computation that outlives a dead
    parent still ends.
    """
    import resource

    for limit, value in ((resource.RLIMIT_AS, WORKER_MEMORY), (resource.RLIMIT_CORE, 0)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (value, value))
    from math_verify import parse, verify

    def parsed(answer: str) -> list:
        return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)

    verify(parsed("1"), parsed("1"), timeout_seconds=None)  # warm the parser before saying ready
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    for line in sys.stdin:
        req = json.loads(line)
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        cap = int(used + req.get("timeout", CHECK_TIMEOUT)) + 2
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CPU, (cap if hard < 0 else min(cap, hard), hard))
        try:
            if req["op"] == "parse":
                ok = any(not isinstance(x, str) for x in parsed(req["answer"]))  # not just the raw text
                reason = "math-verify finds no expression in it"
            else:
                g, p = parsed(req["gold"]), parsed(req["pred"])
                if not g:
                    ok, reason = False, "math-verify cannot parse the gold answer"
                elif not p:
                    ok, reason = False, "math-verify cannot parse the answer"
                else:
                    ok, reason = bool(verify(g, p, timeout_seconds=None)), "math-verify: not equal"
        except Exception as err:  # noqa: BLE001 (any failure of the checker is a wrong answer)
            ok, reason = False, f"math-verify failed ({type(err).__name__})"
        out.write(json.dumps({"ok": ok, "reason": "" if ok else reason}) + "\n")
        out.flush()


class MathChecker:
    """math-verify in a persistent worker process, every check bounded by `timeout` seconds.

    A check that runs out of time gets `Verdict(False, "timed out after 5 s")`: the worker is
    killed and a new one starts at the next check (about half a second). Thread-safe: checks
    from many threads take turns on the one worker.
    """

    def __init__(self, timeout: float = CHECK_TIMEOUT):
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.owner = os.getpid()  # a forked child must not talk to its parent's worker
        self.lock = threading.Lock()
        self.starts = 0  # workers started (1 + restarts after a timeout or a crash)

    def verify(self, gold: str, predicted: str) -> Verdict:
        """Whether `predicted` matches `gold` (plain numbers in process, the rest in the worker)."""
        fast = plain_verdict(gold, predicted)
        if fast is not None:
            return fast
        return self.ask({"op": "verify", "gold": gold, "pred": predicted})

    def parses(self, answer: str) -> Verdict:
        """Whether math-verify reads an expression in `answer`, not just its raw text (`@@@`,
        `\\frac{` do not parse); plain numbers and numerals need no worker."""
        if not answer.strip():
            return Verdict(False, "empty answer")
        if plain_number(strip_math(answer)) is not None or base_numeral(strip_math(answer)):
            return Verdict(True)
        return self.ask({"op": "parse", "answer": answer})

    def ask(self, request: dict) -> Verdict:
        """One request to the worker, bounded by `self.timeout` (the worker dies if it runs over)."""
        line = (json.dumps({**request, "timeout": self.timeout}) + "\n").encode()
        with self.lock:
            proc = self._worker()
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except OSError:  # it died between checks: start another and send again
                self._stop()
                proc = self._worker()
                proc.stdin.write(line)
                proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
            reply = proc.stdout.readline() if ready else b""
            if not reply:
                code = self._stop()
                if not ready:
                    return Verdict(False, f"timed out after {self.timeout:g} s")
                return Verdict(False, f"the checker died (exit {code}; out of memory or CPU time)")
        result = json.loads(reply)
        return Verdict(bool(result["ok"]), result.get("reason", ""))

    def _worker(self) -> subprocess.Popen:
        if self.owner != os.getpid():  # forked: the worker's pipes belong to the parent
            self.proc, self.owner = None, os.getpid()
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        root = str(Path(__file__).resolve().parents[2])  # so the worker imports this journey
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from journey.tasks.math import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.starts += 1
        ready, _, _ = select.select([self.proc.stdout], [], [], WORKER_START_TIMEOUT)
        if not ready or self.proc.stdout.readline() != b"ready\n":
            self._stop()
            raise RuntimeError("the math-verify worker did not start (is math-verify installed?)")
        return self.proc

    def _stop(self) -> int | None:
        """Kill the worker (if any) and return its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        with contextlib.suppress(OSError):
            proc.kill()
        code = proc.wait()
        for fh in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                fh.close()
        return code

    def close(self) -> None:
        with self.lock:
            if self.owner == os.getpid():  # never the worker of the process we were forked from
                self._stop()


_checker: MathChecker | None = None
_checker_lock = threading.Lock()


def checker() -> MathChecker:
    """The process-wide checker (one worker, started at the first check that needs it)."""
    global _checker
    with _checker_lock:
        if _checker is None:
            _checker = MathChecker()
            atexit.register(_checker.close)
    return _checker


def check(gold: str, predicted: str) -> Verdict:
    """Whether `predicted` matches `gold`, and why not: bounded, wherever it runs."""
    return checker().verify(gold, predicted)


def answers_match(gold: str, predicted: str) -> bool:
    """math-verify's verdict, gold first (the function is not symmetric), bounded in time."""
    return check(gold, predicted).ok


# ---------------------------------------------------------------- curation


PROOF_RE = re.compile(r"\b(prove|show that|justify)\b", re.IGNORECASE)
FIGURE_RE = re.compile(
    r"\[asy\]|\bas shown\b|\bshown (?:below|above|here|at (?:the )?(?:right|left))\b"
    r"|\b(?:the|this|each|following|accompanying|adjoining) (?:figure|diagram|picture|image|graph below)\b"
    r"|\bfigures?\b|\bdiagrams?\b|\bpictured\b|\billustrated\b|\bin the graph\b",
    re.IGNORECASE,
)

# name -> what the rule drops; curate applies them in this order and counts a row once.
CURATION_RULES: dict[str, str] = {
    "proof": "asks for a proof (prove, show that, justify): no single answer to check",
    "figure": "depends on a figure ([asy] code, 'as shown', 'the figure', 'the diagram', "
              "'pictured', 'shown below')",
    "no answer": "has no answer (an empty answer, and no \\boxed{} in a 'solution')",
    "unparseable answer": "has an answer in which math-verify finds no expression (or whose check timed out)",
}


def row_question(row: dict) -> str:
    """A row's question: `question` (problems.jsonl) or `problem` (MATH, MATH-500 files)."""
    return str(row.get("question") or row.get("problem") or "")


def row_answer(row: dict) -> str:
    """A row's answer: `answer`, else the last \\boxed{} of a MATH `solution`."""
    answer = row.get("answer")
    if isinstance(answer, str | int | float) and not isinstance(answer, bool) and str(answer).strip():
        return str(answer)
    return last_boxed(str(row.get("solution") or "")) or ""


def curation_reason(row: dict) -> str | None:
    """The first rule of `CURATION_RULES` that drops `row`, or None when it is kept."""
    question, answer = row_question(row), row_answer(row)
    if PROOF_RE.search(question):
        return "proof"
    if FIGURE_RE.search(question):
        return "figure"
    if not answer.strip():
        return "no answer"
    if not checker().parses(answer).ok:
        return "unparseable answer"
    return None


def curate(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Keep problems a checker can grade (as Part 2 did): drop proofs, figure-dependent
    questions and answers math-verify cannot read. Reads `question` or `problem`, and `answer`
    or the last \\boxed{} of `solution`. Returns (kept rows, dropped counts by rule name).
    """
    kept, dropped = [], dict.fromkeys(CURATION_RULES, 0)
    for row in rows:
        reason = curation_reason(row)
        if reason is None:
            kept.append(row)
        else:
            dropped[reason] += 1
    return kept, dropped


# ---------------------------------------------------------------- the task


class MathTask(Task):
    """MATH-style problems with answers checked by math-verify (bounded). An answer is read in
    `answer_formats` order (default \\boxed{}, then "#### N", then "The answer is N"): the first
    format found in a text gives its answer."""

    name = "math"
    step_delimiter = "\n\n"

    def __init__(self, answer_formats: tuple[str, ...] = DEFAULT_ANSWER_FORMATS):
        check_answer_formats(answer_formats)
        self.answer_formats = tuple(answer_formats)

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
        return self.extract_answer(step) is not None or ("boxed" in self.answer_formats and BOX_RE.search(step) is not None)

    def extract_answer(self, text: str) -> str | None:
        for name in self.answer_formats:
            answer = ANSWER_FORMATS[name](text)
            if answer is not None:
                return answer
        return None

    def check_answer(self, predicted: str | None, gold: str) -> bool:
        return predicted is not None and answers_match(gold, predicted)

    def answer_verdict(self, predicted: str, gold: str) -> Verdict:
        """`check_answer` with the reason when it fails ("timed out after 5 s", ...)."""
        return check(gold, predicted)

