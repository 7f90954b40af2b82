"""Render journey events to a long-thought trace: steps verbatim, reflections and backtracks templated.

Steps are written exactly as the policy wrote them. A reflection quotes the PRM's or the
verifier's reason for the wrong step ("Wait, 42 * 3 is 126, not 116.") when the tree's PRM
explains its verdicts (the caller says so with `explains`; `journey.models.registry.prm_explains`
knows which do: verifier and judge; derive asks it for the PRM in the tree's run record). A PRM
that gives only a statistic or a number (rollout, token, qwen) gets a real doubt instead, with
no numbers in it: "Wait, the answer 16 does not look right; let me check the steps again." for
a wrong final answer, "Wait, I am not sure this step is right." for other steps (also used
when a step has no reason). A backtrack names the step the trace resumes from by its number
(its depth) and text ('Let me go back to step 2 ("23 + 19 = 42") and try again.'): the anchor
is always on the shortcut, one node per depth, so the number tells apart states whose steps
read the same. With `states` (derive-longthought `--backtrack state`, for tasks that can restate
a state, like arith's remaining expression) a backtrack restates the state to resume from
instead ('Back to "42 * 3 - 41".'), so a model need not copy a target from far back. The
templates use the words the paper counts in o1's thoughts — "Wait",
"Alternatively", "Let me recompute", "Therefore" — and are picked by a seeded `random.Random`,
so a trace is reproducible. The `concise` style keeps one short phrasing of each
("Wait, {reason}", 'Back to step {step}: "{anchor}".'), which a tiny model learns in far fewer
steps. Lines are joined with the task's step delimiter; the trace ends with the shortcut's final
step, so the task's answer extractor reads the right answer from it.

    >>> count_reflection_words("Wait, no. Alternatively, ... Wait.")
    {'Wait': 2, 'Alternatively': 1, 'Let me recompute': 0, 'Therefore': 0}
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, fields

from journey.longthought.paths import Event
from journey.search.tree import Tree

REFLECTION_WORDS = ("Wait", "Alternatively", "Let me recompute", "Therefore")

# Template field -> the placeholders its phrasings may use.
PLACEHOLDERS = {
    "reflect": {"reason", "reason_cap"},
    "doubt": set(),
    "doubt_answer": {"answer"},
    "backtrack": {"step", "anchor"},
    "backtrack_root": set(),
    "backtrack_state": {"state"},
}


@dataclass(frozen=True)
class Templates:
    """Phrasings, one picked at random per use; each field's placeholders are in `PLACEHOLDERS`.

    reflect: a wrong step, quoting the reason of a PRM that explains (`{reason}`, or
        `{reason_cap}` as written). doubt / doubt_answer: a wrong step / a wrong final answer
        (`{answer}`) when the PRM does not explain: a doubt, never a statistic.
    backtrack: back to step `{step}` (the anchor's depth) whose text is `{anchor}`.
    backtrack_root: back to the question.
    """

    reflect: tuple[str, ...] = (
        "Wait, {reason}",
        "Wait, let me check that step again. {reason_cap}",
        "Wait a second: {reason}",
    )
    doubt: tuple[str, ...] = (
        "Wait, I am not sure this step is right.",
        "Wait, let me check that step again; it does not look right.",
        "Wait a second: this step looks wrong.",
    )
    doubt_answer: tuple[str, ...] = (
        "Wait, the answer {answer} does not look right; let me check the steps again.",
        "Wait, let me check that again; I doubt {answer} is the answer.",
        "Wait a second: {answer} does not look right.",
    )
    backtrack: tuple[str, ...] = (
        'Let me go back to step {step} ("{anchor}") and try again.',
        'Alternatively, I can continue from step {step} ("{anchor}") with a different step.',
        'Therefore that step is wrong; let me recompute from step {step} ("{anchor}").',
    )
    backtrack_root: tuple[str, ...] = (
        "Let me start again from the question.",
        "Alternatively, I can begin with a different first step.",
        "Therefore that start is wrong; let me recompute from the beginning.",
    )
    backtrack_state: tuple[str, ...] = (
        'Let me go back to "{state}" and try again.',
        'Alternatively, I can continue from "{state}" with a different step.',
        'Therefore that step is wrong; let me recompute from "{state}".',
    )

    def __post_init__(self):
        for f in fields(self):
            phrasings = getattr(self, f.name)
            if not isinstance(phrasings, tuple) or not phrasings:
                raise ValueError(f"Templates.{f.name} needs at least one phrasing (a tuple of str)")
            for text in phrasings:
                used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
                if used - PLACEHOLDERS[f.name]:
                    allowed = ", ".join(sorted(PLACEHOLDERS[f.name])) or "none"
                    raise ValueError(f"Templates.{f.name}: {text!r} uses {sorted(used)}; allowed: {allowed}")


# Short, regular lines for small models: the reason is the only content that varies.
CONCISE_TEMPLATES = Templates(
    reflect=("Wait, {reason}",),
    doubt=("Wait, this step looks wrong.",),
    doubt_answer=("Wait, the answer {answer} looks wrong.",),
    backtrack=('Back to step {step}: "{anchor}".',),
    backtrack_root=("Back to the start.",),
    backtrack_state=('Back to "{state}".',),
)
DEFAULT_TEMPLATES = Templates()
STYLES = {"verbose": DEFAULT_TEMPLATES, "concise": CONCISE_TEMPLATES}


def uncapitalize(reason: str) -> str:
    """'The steps give 85.' -> 'the steps give 85.'; '42 * 3 is 126.' unchanged."""
    if len(reason) > 1 and reason[0].isupper() and reason[1].islower():
        return reason[0].lower() + reason[1:]
    return reason


def render_line(event: Event, tree: Tree, rng: random.Random, t: Templates, explains: bool = True,
                states: dict[int, str] | None = None) -> str:
    """One line of the trace; `explains`: whether the node's reason may be quoted; `states`:
    node id -> the problem state after it (a backtrack then restates that state)."""
    node = tree.node(event.node)
    if event.kind == "step":
        return node["text"]
    if event.kind == "reflect":
        reason = (node["reason"] or "").strip()
        if explains and reason:
            return rng.choice(t.reflect).format(reason=uncapitalize(reason), reason_cap=reason)
        if node["terminal"] and node["answer"] is not None:
            return rng.choice(t.doubt_answer).format(answer=node["answer"])
        return rng.choice(t.doubt)
    if states is not None and event.node in states:
        return rng.choice(t.backtrack_state).format(state=states[event.node])
    if event.node == 0:
        return rng.choice(t.backtrack_root)
    return rng.choice(t.backtrack).format(step=node["depth"], anchor=node["text"])


def render(events: list[Event], tree: Tree, rng: random.Random, delimiter: str = "\n",
           templates: Templates = DEFAULT_TEMPLATES, explains: bool = True) -> str:
    """The trace text for `events` (see module docstring)."""
    return render_with_spans(events, tree, rng, delimiter, templates, explains=explains)[0]


def render_with_spans(events: list[Event], tree: Tree, rng: random.Random, delimiter: str = "\n",
                      templates: Templates = DEFAULT_TEMPLATES,
                      states: dict[int, str] | None = None,
                      explains: bool = True) -> tuple[str, list[list[int]]]:
    """The trace text and the [start, end) character spans of its wrong steps. `explains`:
    whether the tree's PRM explains its verdicts (else a reflection is a doubt, see above).

    The spans let training leave the mistakes themselves out of the loss (`train --mask-wrong-steps`)
    while still learning the reflection and the correction that follow them.
    """
    lines, spans, at = [], [], 0
    for e in events:
        line = render_line(e, tree, rng, templates, explains, states)
        if e.kind == "step" and tree.node(e.node)["verdict"] != "correct":
            spans.append([at, at + len(line)])
        lines.append(line)
        at += len(line) + len(delimiter)
    return delimiter.join(lines), spans


def count_reflection_words(text: str) -> dict[str, int]:
    """How often each word o1 is known for appears in `text` (whole words, case-sensitive)."""
    return {w: len(re.findall(rf"\b{re.escape(w)}\b", text)) for w in REFLECTION_WORDS}
