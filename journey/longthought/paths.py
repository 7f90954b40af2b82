"""From a finished tree to paths: the shortcut, the journey (Part 1 §6.6), and DPO leaf pairs.

Pure functions over `Tree`; the only randomness is the `random.Random` passed in.

**Shortcut.** Among terminal nodes with the right answer whose every step is judged correct
(`Tree.clean_correct_leaves`: a right answer reached through two slips that cancel is not a
solution to learn from), take the path with (1) the highest mean PRM score, then (2) the
fewest steps, then (3) the lowest leaf id.

**Journey.** Walk the shortcut c_0 (root), c_1, ..., c_m. At each correct-path node c_i that
has a next step c_{i+1}, make up to K - 1 failed trials, each one taken with probability p
(the first miss ends the trials at that node), then step to c_{i+1}; so every correct-path
node gets at most K trials, the last one correct, and K = 1 gives exactly the shortcut.
A trial enters an off-path child of c_i and follows ONE randomly chosen child at a time (no
branching) until it reaches a step judged wrong; then it reflects on that step and backtracks
to c_i. Candidates for a trial are tried in this order: children judged wrong (the paper's
"incorrect" branches, pruned or not) in random order, then children judged right that have
children of their own, in random order; a walk from those that ends without meeting a wrong
step (a correct leaf, a dead end) is dropped and the next candidate is tried. Invalid steps
(cut off, empty) and format errors are never entered: a trace must not teach garbage text, and
a trial must be a real wrong step of the domain (a wrong result, a wrong answer, a failing
program). A **format error** (`format_errors`) is a step the task says is not in its format
(`Task.well_formed`: arith's "The aiswer is 20.") or a final step with no answer to extract;
the verifier judges it wrong, but reflecting on it ('Wait, expected a step like ...') would put
the typo into the SFT target, and self-play would learn it back. derive-longthought counts
them. A final step whose answer is right is never a trial's mistake, even if a (model) PRM
judged it wrong: the walk is dropped, as at a correct leaf, so a trace never teaches a right
answer as an error.

**Preference pairs.** Chosen: the clean correct leaves. Rejected: final steps whose extracted
answer is wrong (answer present, `correct` false). Invalid steps and final steps without an
answer are never rejected: an empty or cut-off text, often a prefix of the chosen one, is not
a wrong solution, and DPO would learn to avoid text it should keep.

Trace-shape knobs (DESIGN §11): how many failed trials a node gets (`trial_count`: geometric as
above, or uniform over 0..K-1), and whether a trial stops at its first wrong step or runs on to
a wrong final answer (`to_dead_end`); see `journey`.

The journey is a list of `Event`s (`step`, `reflect`, `backtrack`); `render` turns it into text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import product
from typing import Literal

from journey.search.tree import Tree


@dataclass(frozen=True)
class Event:
    """One line of a journey: a step (node), a reflection on a wrong step, or a backtrack to a node."""

    kind: Literal["step", "reflect", "backtrack"]
    node: int


def shortcut(tree: Tree) -> list[int] | None:
    """Node ids (root excluded) of the chosen correct path, or None if there is none."""
    leaves = tree.clean_correct_leaves()
    if not leaves:
        return None

    def key(leaf: int) -> tuple:
        scores = [tree.node(i)["score"] or 0.0 for i in tree.path_ids(leaf)]
        return (-sum(scores) / len(scores), len(scores), leaf)

    return tree.path_ids(min(leaves, key=key))


def format_errors(tree: Tree, well_formed: Callable[[str], bool] = lambda step: True) -> set[int]:
    """Ids of the valid steps that are format errors: `well_formed` (the task's) rejects the
    text, or the step is final and has no answer. Invalid steps (cut off, empty) are not here.

    arith: "The aiswer is 20." (final by eos, answer None) -> a format error; "The answer is
    20." with a wrong answer, or "42 * 3 = 116", is a real wrong step -> not one.
    """
    return {n["id"] for n in tree.nodes()[1:] if n["verdict"] != "invalid"
            and (not well_formed(n["text"]) or (n["terminal"] and n["answer"] is None))}


def usable_children(tree: Tree, nid: int, skip: Collection[int] = ()) -> list[int]:
    """Children of `nid` a trial may enter: not invalid and not in `skip` (the format errors)."""
    return [k for k in tree.children(nid) if tree.node(k)["verdict"] != "invalid" and k not in skip]


def trial_walk(tree: Tree, start: int, rng: random.Random, to_dead_end: bool = False,
               skip: Collection[int] = ()) -> list[int] | None:
    """From `start`, follow one random usable child at a time until a step judged wrong.

    Returns the node ids walked (ending at the wrong step), or None if the walk ends first or
    ends at a final step whose answer is right (never a mistake, whatever the PRM said). With
    `to_dead_end`, the walk goes on past the first wrong step, one random child at a time, to a
    final step with a wrong answer (a visible dead end); if it cannot get there (the branch
    stops, or the slips cancel into a right answer) it ends at the first wrong step as usual.
    `skip`: steps never entered (`format_errors`); a walk starting at one is None.
    """
    if start in skip:
        return None
    walk, node = [start], start
    while tree.node(node)["verdict"] == "correct":
        kids = usable_children(tree, node, skip)
        if not kids:
            return None
        node = rng.choice(kids)
        walk.append(node)
    end = tree.node(node)
    if end["verdict"] != "incorrect" or (end["terminal"] and end["correct"]):
        return None
    if to_dead_end:
        onward = []
        while not tree.node(node)["terminal"]:
            kids = usable_children(tree, node, skip)
            if not kids:
                break
            node = rng.choice(kids)
            onward.append(node)
        last = tree.node(node)
        if onward and last["terminal"] and last["correct"] is False:
            return walk + onward
    return walk


def trial_candidates(tree: Tree, anchor: int, on_path: int, rng: random.Random,
                     skip: Collection[int] = ()) -> list[int]:
    """Off-path children of `anchor` in the order trials try them (see module docstring);
    never one in `skip` (the format errors)."""
    off = [k for k in tree.children(anchor) if k != on_path and k not in skip]
    wrong = [k for k in off if tree.node(k)["verdict"] == "incorrect"]
    right = [k for k in off if tree.node(k)["verdict"] == "correct" and tree.children(k)]
    rng.shuffle(wrong)
    rng.shuffle(right)
    return wrong + right


TRIAL_COUNTS = ("geometric", "uniform")


def journey(
    tree: Tree, path: list[int], max_trials: int, trial_prob: float, rng: random.Random,
    trial_count: str = "geometric", to_dead_end: bool = False, skip: Collection[int] = (),
) -> tuple[list[Event], list[int]]:
    """The journey along `path` (a shortcut): its events and the failed trials per path node.

    `trial_count` "geometric" (the default, as above): up to K - 1 failed trials, each taken
    with probability p, the first miss ending them. "uniform": the number of failed trials at
    each node is drawn uniformly from 0..K-1 (as far as the node has candidates), so success
    does not always follow the first or second failure and a model cannot learn to count
    trials. `to_dead_end`: trials run on to a wrong final answer where the tree has one.
    `skip`: steps no trial enters, the tree's `format_errors`.
    """
    assert max_trials >= 1 and 0.0 <= trial_prob <= 1.0 and trial_count in TRIAL_COUNTS
    events: list[Event] = []
    trials: list[int] = []
    for anchor, nxt in zip([0, *path[:-1]], path):
        candidates = trial_candidates(tree, anchor, nxt, rng, skip)
        made = 0
        wanted = rng.randint(0, max_trials - 1) if trial_count == "uniform" else max_trials - 1
        while made < wanted and candidates and (trial_count == "uniform" or rng.random() < trial_prob):
            walk = None
            while candidates and walk is None:
                walk = trial_walk(tree, candidates.pop(0), rng, to_dead_end, skip)
            if walk is None:
                break
            events += [Event("step", n) for n in walk]
            events += [Event("reflect", walk[-1]), Event("backtrack", anchor)]
            made += 1
        trials.append(made)
        events.append(Event("step", nxt))
    return events, trials


def preference_leaves(tree: Tree, max_pairs: int, rng: random.Random) -> list[tuple[int, int]]:
    """Up to `max_pairs` (chosen leaf, rejected leaf) pairs, drawn at random without repeats.

    Chosen: terminal nodes with the right answer and every step judged correct.
    Rejected: terminal nodes with an extracted answer that is wrong; never invalid steps or
    answer-less endings (see module docstring).
    """
    chosen = tree.clean_correct_leaves()
    rejected = [n["id"] for n in tree.nodes()
                if n["terminal"] and n["answer"] is not None and n["correct"] is False]
    pairs = list(product(chosen, rejected))
    rng.shuffle(pairs)
    return pairs[:max_pairs]
