"""Tree expansion (O1 Replication Journey Part 1, §6.5): width w, depth D, top-K PRM pruning.

From the root, each frontier node gets `w` candidate next steps from the policy; identical
siblings are merged (their `count` says how many samples gave them); every new step is scored
by the PRM given the question and the steps above it; final-answer steps are checked against
the ground truth. Of a tree's expandable children at one depth (valid, not terminal), only the
top K are expanded next; the rest stay in the tree marked `pruned`. Ranking: PRM score, then
how many samples proposed the step, then node id (the order the policy sampled them in). A tree
is done at depth D or when its frontier is empty. K applies per tree per depth, over up to K·w
new children, so K may exceed w.

**Which steps may fill the K slots** (`--expand`). `never` (the default, Part 1's final
version: "at most K correct steps"): only steps the PRM judged correct are expanded; steps
judged wrong are kept, scored, marked `pruned`. `wrong`: a step judged wrong may fill a slot
that no correct step fills (ranking puts correct steps first only through their higher score).
Why `never` by default: with the exact verifier, verdicts are path-level (every step below a
slip "builds on an earlier mistake"), so nothing below a wrong step can be a clean solution or a
first-wrong trial's mistake (a trial ends at its first wrong step, `journey.longthought.paths`);
what `wrong` grows there serves only dead-end trials (`--trial-end dead-end`), DPO's rejected
leaves and PRM rows, and costs policy and PRM calls (issue 25: 33% of expanded nodes in a
300-problem run). Take `wrong` for a non-exact PRM, whose "wrong" may be a right step, or for
dead-end traces. Measured (embedded arith policy, verifier, 100 problems, w 4, K 2, D 8;
never / wrong): steps generated 1,464 / 2,064 (+41%), tokens 19,949 / 29,498; trees with a
clean path 81 / 80; first slips (trial material) 136 / 140; wrong steps below a slip 0 / 225;
mean trials per journey .54 / .53 (journey tokens 118 / 116; with `--trial-end dead-end` 118 /
133); tree DPO pairs 0 / 38 (the policy's wrong answers follow earlier slips: with `never` take
DPO pairs from `sample-pairs`, as Part 1 did).

Expansion is lockstep across problems: each call to `TreeBuilder.advance` takes every tree in
flight one level down with ONE policy call for all their frontier nodes and ONE PRM call for
all their new children. `build_trees` keeps up to `trees_in_flight` trees going, admitting a
new problem whenever one finishes, and yields each finished tree at once.

Seeds are per node (run seed, problem id, node id), so a tree comes out the same whatever
else is in flight — which is what makes resuming a killed run exact. What exactly is
guaranteed: the policy's log-probs move by up to ~1e-4 with the batch's padding, so they are
kept in each node as information but never rank anything. With an exact PRM (`verifier`),
ranking and pruning depend only on exact quantities (0/1 scores, sample counts, ids), so a
resumed run keeps the same children. The sampled text itself can still differ only if float
noise moves a uniform draw across a token's CDF boundary (a draw within ~1e-6 of it: rare;
greedy decoding likewise, between two near-equal logits). `rollout` and `judge` scores are
exact functions of generated text, so they share that caveat. Model PRM scores (`token`,
`qwen`) carry float noise themselves, so near-ties between them, and verdicts at a score of
0.5, can come out differently.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

from journey.checks import flag
from journey.models.base import PRM, Policy, Prefix, Proposal
from journey.search.tree import Tree
from journey.tasks.base import Problem, Task

EXPANDS = ("never", "wrong")  # beam: see the module docstring


@dataclass
class SearchConfig:
    """The shape of the search (these, with the models, decide every tree's content). Beam's:
    `top_k` and `expand` are its own content keys (beside w, D and the seed that every search has)."""

    content_keys: ClassVar[tuple[str, ...]] = ("top_k", "expand")  # besides width, depth, seed

    width: int = 3  # w: candidate next steps per expanded node
    depth: int = 8  # D: maximum steps from the root
    top_k: int = 2  # K: children kept for expansion per tree per depth (of up to K·w, so K may exceed w)
    seed: int = 0
    expand: str = "never"  # beam: may steps the PRM judged wrong fill the K slots? never (Part 1) | wrong

    def __post_init__(self):
        for name in ("width", "depth", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{flag(name)} must be > 0, got {value}")
        if self.expand not in EXPANDS:
            raise ValueError(f"--expand must be one of {', '.join(EXPANDS)}, got {self.expand!r}")

    def budget(self) -> tuple[str, int]:
        """The bound on steps generated per tree, as (formula, value): w·K·D for beam."""
        return "w·K·D", self.width * self.top_k * self.depth

    def exhaustive_expansions(self) -> int:
        """(w^D - 1)/(w - 1): the node expansions of the full tree (the paper's cost formula)."""
        w, d = self.width, self.depth
        return d if w == 1 else (w**d - 1) // (w - 1)


def node_seed(run_seed: int, problem_id: str, node_id: int) -> int:
    """A seed for expanding one node, stable across runs and batch layouts.

    31 bits, so servers that take a 32-bit signed seed (vLLM, the OpenAI protocol) get it whole.
    """
    digest = hashlib.sha256(f"{run_seed}/{problem_id}/{node_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


# Why a sample ended, from most to least "continuing": a text that any sample continued after
# (it ended at the step delimiter) is a complete step, not an ending and not cut off.
FINISH_RANK = {"stop": 0, "eos": 1, "length": 2}


def merge_duplicates(proposals: list[Proposal]) -> list[tuple[Proposal, int]]:
    """Identical sibling texts become one child with a count: the first occurrence's text and
    costs, and the most continuing finish among them (stop > eos > length).

    [("a", eos), ("b", stop), ("a", stop)] -> [(("a", stop), 2), (("b", stop), 1)]
    """
    merged: dict[str, list] = {}
    for p in proposals:
        key = p.text.strip()
        if key not in merged:
            merged[key] = [p, 1]
            continue
        first, count = merged[key]
        if FINISH_RANK[p.finish] < FINISH_RANK[first.finish]:
            first = replace(first, finish=p.finish)
        merged[key] = [first, count + 1]
    return [(p, c) for p, c in merged.values()]


def rank_key(node: dict) -> tuple:
    """Sort key for top-K: best score, most samples, then lowest id.

    Log-prob is left out on purpose: it moves with batch padding (see module docstring).
    """
    return (-node["score"], -node["count"], node["id"])


def select_top_k(nodes: list[dict], k: int) -> tuple[list[int], list[int]]:
    """Split candidate nodes into (kept ids, pruned ids) by `rank_key`."""
    ranked = sorted(nodes, key=rank_key)
    return [n["id"] for n in ranked[:k]], [n["id"] for n in ranked[k:]]


def check_scores(scores: list, n: int, prm: PRM) -> None:
    """ValueError unless a PRM gave `n` scores, each in [0, 1] (a NaN would make ranking depend
    on the order of the candidates) with a string reason."""
    name = getattr(prm, "name", type(prm).__name__)
    if len(scores) != n:
        raise ValueError(f"the {name} PRM returned {len(scores)} scores for {n} steps")
    for s in scores:
        if not (isinstance(s.score, (int, float)) and 0 <= s.score <= 1) or not isinstance(s.reason, str):
            raise ValueError(f"the {name} PRM returned {s!r}; a score must be in [0, 1] with a reason")


@dataclass
class InFlight:
    """A tree being built: its frontier (node ids to expand next) and when it started."""

    tree: Tree
    frontier: list[int] = field(default_factory=lambda: [0])
    depth: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        return not self.frontier


class LockstepBuilder:
    """What every lockstep search shares: starting a tree, seeded prefixes, expanding many
    nodes of many trees in ONE policy call (merging identical siblings), and scoring all new
    steps in ONE PRM call. `TreeBuilder` (beam, here) and `MCTSBuilder` (`journey.search.mcts`)
    add how nodes are chosen; `build_trees` drives either."""

    def __init__(self, task: Task, policy: Policy, prm: PRM, config: SearchConfig):
        self.task, self.policy, self.prm, self.config = task, policy, prm, config

    def start(self, problem: Problem, run: dict | None = None) -> InFlight:
        row = {"id": problem.id, "question": problem.question, "answer": problem.answer}
        tree = Tree(row, run=run or {})
        tree.costs = {"steps_generated": 0, "tokens": 0, "steps_scored": 0, "seconds": 0.0}
        return InFlight(tree)

    def expand(self, jobs: list[tuple[InFlight, int, int | str]]) -> dict[int, list[int]]:
        """Expand each (flight, node id, seed key) with `width` samples in ONE policy call; add
        the merged children and score them all in ONE PRM call. Returns id(flight) -> new ids."""
        prefixes = [self._prefix(f.tree, nid, key) for f, nid, key in jobs]
        proposals = self.policy.propose(prefixes, self.config.width) if jobs else []
        if len(proposals) != len(jobs) or any(len(p) != self.config.width for p in proposals):
            raise ValueError(f"the policy returned {[len(p) for p in proposals]} candidates for "
                             f"{len(jobs)} prefixes, not {self.config.width} each")
        new: dict[int, list[int]] = {}
        added: list[tuple[InFlight, int]] = []
        for (f, nid, _), props in zip(jobs, proposals):
            f.tree.costs["steps_generated"] += len(props)
            f.tree.costs["tokens"] += sum(p.tokens for p in props)
            siblings = {f.tree.node(c)["text"]: c for c in f.tree.children(nid)}  # a re-expansion's
            for p, count in merge_duplicates(props):
                if p.text.strip() in siblings:  # a step the node already has: one more sample of it
                    f.tree.node(siblings[p.text.strip()])["count"] += count
                    continue
                child = self._add_step(f.tree, nid, p, count)
                new.setdefault(id(f), []).append(child)
                added.append((f, child))
        self._check_finals([(f, c) for f, c in added if f.tree.node(c)["terminal"]])
        self._score(added)
        return new

    def _check_finals(self, items: list[tuple[InFlight, int]]) -> None:
        """Check every new final step's answer against the ground truth, in ONE task call."""
        nodes = [f.tree.node(c) for f, c in items]
        verdicts = self.task.check_answers([n["answer"] for n in nodes], [f.tree.problem["answer"] for f, _ in items])
        for node, ok in zip(nodes, verdicts):
            node["correct"] = bool(ok)

    def _prefix(self, tree: Tree, nid: int, key: int | str | None = None) -> Prefix:
        """The node's prompt, seeded by (run seed, problem id, `key`: the node id by default)."""
        seed = node_seed(self.config.seed, tree.id, nid if key is None else key)
        return Prefix(self.task.messages(tree.problem["question"]), tree.steps(nid), seed)

    def _add_step(self, tree: Tree, parent: int, p: Proposal, count: int) -> int:
        """Add one proposed step: invalid if cut off or empty; terminal if it answers or ends."""
        text = p.text.strip()
        node = dict(text=text, tokens=p.tokens, logprob=round(p.logprob, 4), count=count,
                    finish=p.finish, score=None, verdict=None, reason=None,
                    terminal=False, answer=None, correct=None)
        if p.finish == "length" or not text:
            why = "The step is empty." if not text else f"The step was cut off after {p.tokens} tokens."
            node.update(score=0.0, verdict="invalid", reason=why)
        elif self.task.is_terminal(text) or p.finish == "eos":
            node.update(terminal=True, answer=self.task.extract_answer(text))  # checked in `_check_finals`
        return tree.add_child(parent, **node)

    def _score(self, items: list[tuple[InFlight, int]]) -> None:
        """Score every new valid step of every tree with one PRM call."""
        items = [(f, nid) for f, nid in items if f.tree.node(nid)["verdict"] is None]
        if not items:
            return
        questions = [f.tree.problem["question"] for f, _ in items]
        answers = [f.tree.problem["answer"] for f, _ in items]
        scores = self.prm.score(questions, [f.tree.steps(nid) for f, nid in items], answers,
                                ended=[f.tree.node(nid)["terminal"] for f, nid in items])
        check_scores(scores, len(items), self.prm)
        for (f, _), (n, cut) in zip(items, self.prm.last_rollouts or []):
            count_rollouts(f.tree, n, cut)
        for (f, nid), s in zip(items, scores):
            f.tree.node(nid).update(score=round(s.score, 6), reason=s.reason,
                                    verdict="correct" if s.ok else "incorrect")
            f.tree.costs["steps_scored"] += 1



def count_rollouts(tree: Tree, n: int, cut: int) -> None:
    """Add `n` rollouts, `cut` of them cut off at their token budget, to `tree`'s costs."""
    if n:
        tree.costs["rollouts"] = tree.costs.get("rollouts", 0) + n
        tree.costs["rollouts_cut_off"] = tree.costs.get("rollouts_cut_off", 0) + cut


class TreeBuilder(LockstepBuilder):
    """Beam search: every frontier node expanded, the top K children kept per tree per depth."""

    def advance(self, flights: list[InFlight]) -> None:
        """Take every unfinished tree one level down: one policy call, one PRM call."""
        live = [f for f in flights if not f.done]
        new = self.expand([(f, nid, nid) for f in live for nid in f.frontier])
        for f in live:
            self._prune(f, new.get(id(f), []))

    def _prune(self, f: InFlight, new: list[int]) -> None:
        """Keep the top K expandable children as the next frontier; mark the rest pruned (with
        `expand` never, the steps judged wrong are pruned whatever their rank)."""
        f.depth += 1
        keep, pruned = [], []  # at the last level nothing is expanded and nothing is pruned
        if f.depth < self.config.depth:
            nodes = [f.tree.node(n) for n in new]
            open_ = [n for n in nodes if not n["terminal"] and n["verdict"] != "invalid"]
            wrong = [n["id"] for n in open_ if n["verdict"] != "correct" and self.config.expand == "never"]
            keep, pruned = select_top_k([n for n in open_ if n["id"] not in wrong], self.config.top_k)
            pruned += wrong
        for nid in pruned:
            f.tree.node(nid)["pruned"] = True
        f.frontier = keep
        if f.done:
            f.tree.costs["seconds"] = round(time.perf_counter() - f.started, 3)


def build_trees(
    problems: Iterable[Problem],
    builder: TreeBuilder,
    trees_in_flight: int = 64,
    run: dict | None = None,
    on_level: Callable[[int], None] | None = None,
) -> Iterator[Tree]:
    """Yield finished trees, keeping up to `trees_in_flight` in lockstep expansion.

    `on_level(n_nodes)` is called after each lockstep level with the number of nodes it added.
    """
    pending = iter(problems)
    flights: list[InFlight] = []
    exhausted = False
    while True:
        while not exhausted and len(flights) < trees_in_flight:
            nxt = next(pending, None)
            if nxt is None:
                exhausted = True
            else:
                flights.append(builder.start(nxt, run))
        if not flights:
            return
        before = sum(f.tree.graph.number_of_nodes() for f in flights)
        builder.advance(flights)
        if on_level:
            on_level(sum(f.tree.graph.number_of_nodes() for f in flights) - before)
        for f in [f for f in flights if f.done]:
            flights.remove(f)
            yield f.tree
