"""Render journey events to a long-thought trace: steps verbatim, reflections and backtracks templated.

Steps are written exactly as the policy wrote them. A reflection quotes the PRM's or the
verifier's reason for the wrong step ("Wait, 42 * 3 is 126, not 116."); a backtrack says where
the trace resumes, quoting that step ('Let me go back to "23 + 19 = 42" and try again.'). The
templates use the words the paper counts in o1's thoughts — "Wait", "Alternatively",
"Let me recompute", "Therefore" — and are picked by a seeded `random.Random`, so a trace is
reproducible. The `concise` style keeps one short phrasing of each ("Wait, {reason}",
'Back to "{anchor}".'), which a tiny model learns in far fewer steps. Lines are joined with the task's step delimiter; the trace ends with the
shortcut's final step, so the task's answer extractor reads the right answer from it.

    >>> count_reflection_words("Wait, no. Alternatively, ... Wait.")
    {'Wait': 2, 'Alternatively': 1, 'Let me recompute': 0, 'Therefore': 0}
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from journey.longthought.paths import Event
from journey.search.tree import Tree

REFLECTION_WORDS = ("Wait", "Alternatively", "Let me recompute", "Therefore")


@dataclass(frozen=True)
class Templates:
    """Phrasings, one picked at random per use. `{reason}` and `{anchor}` are filled in."""

    reflect: tuple[str, ...] = (
        "Wait, {reason}",
        "Wait, let me check that step again. {reason_cap}",
        "Wait a second: {reason}",
    )
    backtrack: tuple[str, ...] = (
        'Let me go back to "{anchor}" and try again.',
        'Alternatively, I can continue from "{anchor}" with a different step.',
        'Therefore that step is wrong; let me recompute from "{anchor}".',
    )
    backtrack_root: tuple[str, ...] = (
        "Let me start again from the question.",
        "Alternatively, I can begin with a different first step.",
        "Therefore that start is wrong; let me recompute from the beginning.",
    )


# Short, regular lines for small models: the reason is the only content that varies.
CONCISE_TEMPLATES = Templates(
    reflect=("Wait, {reason}",),
    backtrack=('Back to "{anchor}".',),
    backtrack_root=("Back to the start.",),
)
DEFAULT_TEMPLATES = Templates()
STYLES = {"verbose": DEFAULT_TEMPLATES, "concise": CONCISE_TEMPLATES}


def uncapitalize(reason: str) -> str:
    """'The steps give 85.' -> 'the steps give 85.'; '42 * 3 is 126.' unchanged."""
    if len(reason) > 1 and reason[0].isupper() and reason[1].islower():
        return reason[0].lower() + reason[1:]
    return reason


def render_line(event: Event, tree: Tree, rng: random.Random, t: Templates) -> str:
    node = tree.node(event.node)
    if event.kind == "step":
        return node["text"]
    if event.kind == "reflect":
        reason = (node["reason"] or "that step is wrong.").strip()
        return rng.choice(t.reflect).format(reason=uncapitalize(reason), reason_cap=reason)
    if event.node == 0:
        return rng.choice(t.backtrack_root)
    return rng.choice(t.backtrack).format(anchor=node["text"])


def render(events: list[Event], tree: Tree, rng: random.Random, delimiter: str = "\n",
           templates: Templates = DEFAULT_TEMPLATES) -> str:
    """The trace text for `events` (see module docstring)."""
    return render_with_spans(events, tree, rng, delimiter, templates)[0]


def render_with_spans(events: list[Event], tree: Tree, rng: random.Random, delimiter: str = "\n",
                      templates: Templates = DEFAULT_TEMPLATES) -> tuple[str, list[list[int]]]:
    """The trace text and the [start, end) character spans of its wrong steps.

    The spans let training leave the mistakes themselves out of the loss (`train --mask-wrong-steps`)
    while still learning the reflection and the correction that follow them.
    """
    lines, spans, at = [], [], 0
    for e in events:
        line = render_line(e, tree, rng, templates)
        if e.kind == "step" and tree.node(e.node)["verdict"] != "correct":
            spans.append([at, at + len(line)])
        lines.append(line)
        at += len(line) + len(delimiter)
    return delimiter.join(lines), spans


def count_reflection_words(text: str) -> dict[str, int]:
    """How often each word o1 is known for appears in `text` (whole words, case-sensitive)."""
    return {w: len(re.findall(rf"\b{re.escape(w)}\b", text)) for w in REFLECTION_WORDS}
