"""Monte Carlo tree search (o1-Coder, rStar-Math), lockstep across trees: `--search mcts`.

    journey build-tree --search mcts --simulations 16 --width 4 --depth 8 --problems p.jsonl --out t.jsonl

Each **simulation** of a tree is one round of four steps:

1. **Selection.** From the root, repeatedly move to the open child `a` of the current node `s`
   that maximizes PUCT

       U(s, a) = q(a) + c_puct * P(s, a) * sqrt(N(s)) / (1 + N(a))

   where `q(a)` is the mean value backed up through `a`, `N` counts visits, and the prior
   `P(s, a) = count(a) / sum of count over the children of s` is the share of the w policy
   samples at `s` that wrote step `a` (identical samples are merged into one child with a
   count). We use sample counts, not log-probs, as the prior: they are the policy's own
   empirical distribution over distinct steps (top-p sampling leaves no normalized
   probability to read), they do not favour short steps as summed log-probs do, and they are
   exact integers, so float noise never decides a selection. Ties go to the lower node id.
   Selection stops at a node that can be expanded: one never expanded, or one that may widen
   (below). A node is **closed** when nothing under it can be expanded any more (a final or
   invalid step, a step at depth D, or an expanded node that may not widen with every child
   closed); selection only enters open children, and a tree whose root is closed is done.
2. **Expansion.** The selected leaf gets `w` policy samples (`--width`), merged as in beam
   search; new steps are checked like beam's (invalid when cut off or empty; final when they
   state an answer, which is checked against the ground truth) and scored by the PRM.
3. **Evaluation.** A new child's value `v` is: 1 or 0 for a final step (its answer right or
   wrong; for the code task, a·compiles + (1−a)·pass_rate), 0 for an invalid step, else the
   PRM score — or, with `--rollout policy`, 1 or 0 by whether one policy rollout from the step
   to a final answer gets it right. Each new child starts with N = 1 and q = v.
4. **Backup.** The leaf's value is the count-weighted mean of its new children's values (the
   policy's expected value at the leaf); it is added to every node from the leaf up to the
   root: N += 1, q = (sum of backed-up values) / N.

**Progressive widening.** With `--max-children M > w`, an expanded node may be expanded again
(w more samples, a fresh seed) when its visits reach (e + 1)^2 after e expansions, until it has
M children or an expansion adds no new step. With M = w (the default) every node is expanded
at most once. A node that may still widen but whose children are all closed is widened at once,
whatever its visits: the (e + 1)^2 schedule trades exploring the children for widening, and with
nothing open below there is nothing to trade. (Closing it instead ended a tree with M = 4 and
two final first children after 1 of its N simulations.)

**Two decisions.**
- *Final steps and closed subtrees are never revisited.* A final step's value is exact (there
  is no estimate to refine) and a closed subtree cannot grow, so a simulation that walked into
  one would generate nothing and only add a known value again. Every simulation therefore
  expands something, N·w bounds the steps generated, and `visits` counts the expansions at or
  under a node (plus its own creation); a tree whose nodes are all closed ends early, with
  `costs.simulations` < N. AlphaZero-style revisits would instead pile visits onto a right
  final answer and make `q` a visit-weighted preference.
- *A final step's value is its outcome, even when slips cancel.* A right answer reached through
  two wrong steps that cancel backs up 1 through those wrong steps, so their `q` is high. We
  keep it: `q` is an outcome estimate (the share of what was found under a step that reaches a
  right answer, as rStar-Math's q and Math-Shepherd's rollout labels are), independent of the
  step judge. Zeroing such values by the PRM's verdicts would make `q` echo the PRM, and `q` is
  the PRM label only for trees built with a non-exact PRM (`journey.longthought.prm_data`),
  whose verdicts could not tell a slip anyway; with the exact verifier the labels are its
  verdicts, and shortcuts (`Tree.clean_correct_leaves`) never pass through a slip. So a high `q`
  on a step judged wrong means "this branch still reached the answer", not "this step is right".

**Lockstep.** Each call to `MCTSBuilder.advance` runs one simulation of EVERY tree in flight:
one selected leaf per tree, all leaves expanded in ONE policy call, all new children scored in
ONE PRM call (and, with rollouts, all rollouts in ONE more policy call). One leaf per tree per
round needs no virtual loss. A tree is finished after `--simulations` N rounds or when its root
is closed. Seeds are per node (run seed, problem id, node id; re-expansions add `.e`), so a tree
is the same whatever else is in flight, and a resumed run writes the same trees (with the same
caveats on float noise as beam search: see `journey.search.build`).

Trees come out in the same `journey.tree/v2` form as beam's, with `visits` and `q` on every
node (`pruned` is always false), so derive-longthought, show and training read them unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

from journey.checks import check_at_least
from journey.models.base import PRM, Policy, Prefix
from journey.search.build import InFlight, LockstepBuilder, SearchConfig, count_rollouts, node_seed
from journey.search.tree import Tree
from journey.tasks.base import Problem, Task

ROLLOUTS = ("none", "policy")  # a new step's value: its PRM score, or one policy rollout


@dataclass
class MCTSConfig(SearchConfig):
    """MCTS (`journey.search.mcts`): `width` children per expansion, at most `depth` steps,
    `simulations` selections per tree, PUCT's exploration weight `c_puct`, an optional policy
    rollout to a final answer as a new step's value, and progressive widening up to
    `max_children` children per node (default: width, i.e. one expansion per node)."""

    content_keys: ClassVar[tuple[str, ...]] = ("simulations", "c_puct", "rollout", "max_children")

    simulations: int = 16
    c_puct: float = 1.0
    rollout: str = "none"
    max_children: int | None = None

    def budget(self) -> tuple[str, int]:
        """The bound on steps generated per tree, as (formula, value): N·w for MCTS."""
        return "N·w", self.simulations * self.width

    def __post_init__(self):
        super().__post_init__()
        check_at_least(1, simulations=self.simulations)
        if isinstance(self.c_puct, bool) or not isinstance(self.c_puct, int | float) or not (
                math.isfinite(self.c_puct) and self.c_puct >= 0):
            raise ValueError(f"--c-puct must be >= 0, got {self.c_puct}")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"--rollout must be one of {', '.join(ROLLOUTS)}, got {self.rollout!r}")
        if self.max_children is None:
            self.max_children = self.width
        check_at_least(self.width, max_children=self.max_children)


def puct(q: float, prior: float, parent_visits: int, visits: int, c_puct: float) -> float:
    """PUCT score of a child: q + c * P * sqrt(N(parent)) / (1 + N(child)).

    >>> round(puct(0.5, 0.25, 9, 1, 1.0), 4)   # 0.5 + 0.25 * 3 / 2
    0.875
    """
    return q + c_puct * prior * math.sqrt(parent_visits) / (1 + visits)


def leaf_value(values: list[float], counts: list[int]) -> float:
    """The count-weighted mean of new children's values: [1, 0] with counts [3, 1] -> 0.75."""
    return sum(v * c for v, c in zip(values, counts)) / sum(counts)


def best_child(tree: Tree, parent: int, candidates: list[int], c_puct: float) -> int:
    """The candidate child of `parent` with the highest PUCT; ties to the lower id. Priors are
    sample counts over ALL children of `parent` (see module docstring)."""
    total = sum(tree.node(c)["count"] for c in tree.children(parent))
    n_parent = tree.node(parent)["visits"] or 0

    def key(c: int) -> tuple[float, int]:
        node = tree.node(c)
        return (-puct(node["q"] or 0.0, node["count"] / total, n_parent, node["visits"] or 0, c_puct), c)

    return min(candidates, key=key)


@dataclass
class MCTSFlight(InFlight):
    """An MCTS tree being built: simulations run, expansions per node, closed nodes, and the
    exact sums of backed-up values (nodes carry q rounded for the file)."""

    simulations: int = 0
    finished: bool = False
    expansions: dict[int, int] = field(default_factory=dict)
    stale: set[int] = field(default_factory=set)  # re-expanded without a new step: no more widening
    closed: set[int] = field(default_factory=set)
    value_sum: dict[int, float] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.finished


class MCTSBuilder(LockstepBuilder):
    """Builds many trees by MCTS in lockstep with a policy and a PRM (see module docstring)."""

    config: MCTSConfig

    def __init__(self, task: Task, policy: Policy, prm: PRM, config: MCTSConfig,
                 rollout_tokens: int | None = None):
        super().__init__(task, policy, prm, config)
        # A rollout may write every step left down to depth D.
        self.rollout_tokens = rollout_tokens or config.depth * policy.sampling.max_step_tokens

    def start(self, problem: Problem, run: dict | None = None) -> MCTSFlight:
        base = super().start(problem, run)
        base.tree.node(0).update(visits=0, q=None)
        base.tree.costs["simulations"] = 0
        return MCTSFlight(base.tree)

    # ------------------------------------------------------------ one round

    def advance(self, flights: list[MCTSFlight]) -> None:
        """One simulation of every unfinished tree: one policy call, one PRM call (+ rollouts)."""
        jobs = []
        for f in flights:
            if f.done:
                continue
            leaf = self.select(f)
            if leaf is None:
                self._finish(f)
                continue
            e = f.expansions.get(leaf, 0)
            jobs.append((f, leaf, leaf if e == 0 else f"{leaf}.{e}"))
        new = self.expand(jobs)
        values = self._values([(f, c) for f, _, _ in jobs for c in new.get(id(f), [])])
        for f, leaf, _ in jobs:
            kids = new.get(id(f), [])
            if not kids:  # a re-expansion that only repeated known steps: no more widening here
                f.stale.add(leaf)
            f.expansions[leaf] = f.expansions.get(leaf, 0) + 1
            for c in kids:
                visit(f, c, values[(id(f), c)])
            counts = [f.tree.node(c)["count"] for c in kids]
            value = leaf_value([values[(id(f), c)] for c in kids], counts) if kids else f.tree.node(leaf)["q"] or 0.0
            backup(f, leaf, value)
            f.simulations += 1
            f.tree.costs["simulations"] = f.simulations
            if f.simulations >= self.config.simulations:
                self._finish(f)

    def _finish(self, f: MCTSFlight) -> None:
        f.finished = True
        f.tree.costs["seconds"] = round(time.perf_counter() - f.started, 3)

    # ------------------------------------------------------------ selection

    def expandable(self, f: MCTSFlight, nid: int) -> bool:
        """Whether selection may stop at `nid` and expand it (never expanded, or may widen)."""
        node = f.tree.node(nid)
        if node["terminal"] or node["verdict"] == "invalid" or node["depth"] >= self.config.depth:
            return False
        e = f.expansions.get(nid, 0)
        if e == 0:
            return True
        return self.may_widen(f, nid) and (node["visits"] or 0) >= (e + 1) ** 2

    def may_widen(self, f: MCTSFlight, nid: int) -> bool:
        """Whether an expanded, open `nid` may still get children, its visits aside: it is below
        `max_children` and its last expansion added a new step."""
        return nid not in f.stale and len(f.tree.children(nid)) < self.config.max_children

    def select(self, f: MCTSFlight) -> int | None:
        """The leaf to expand by PUCT from the root, or None when the root is closed."""
        while 0 not in f.closed:
            nid = 0
            while True:
                if self.expandable(f, nid):
                    return nid
                open_kids = [c for c in f.tree.children(nid) if c not in f.closed and self._may_open(f, c)]
                if not open_kids:
                    if self.may_widen(f, nid):
                        return nid  # nothing open below: widen now rather than close it for good
                    f.closed.add(nid)  # nothing under it can grow: select again from the root
                    break
                nid = best_child(f.tree, nid, open_kids, self.config.c_puct)
        return None

    def _may_open(self, f: MCTSFlight, nid: int) -> bool:
        node = f.tree.node(nid)
        if node["terminal"] or node["verdict"] == "invalid" or node["depth"] >= self.config.depth:
            f.closed.add(nid)
            return False
        return True


    # ------------------------------------------------------------ evaluation and backup

    def _values(self, items: list[tuple[MCTSFlight, int]]) -> dict[tuple[int, int], float]:
        """Each new child's value (see module docstring); rollouts, if on, in ONE policy call."""
        values, rollout = {}, []
        for f, c in items:
            node = f.tree.node(c)
            if node["terminal"]:  # 1/0, or the task's own value (code: a * compiles + (1 - a) * pass_rate)
                values[(id(f), c)] = self.task.terminal_value(node["answer"], f.tree.problem["answer"],
                                                              bool(node["correct"]))
            elif node["verdict"] == "invalid":
                values[(id(f), c)] = 0.0
            elif self.config.rollout == "policy":
                rollout.append((f, c))
            else:
                values[(id(f), c)] = float(node["score"])
        if rollout:
            prefixes = [Prefix(self.task.messages(f.tree.problem["question"]), f.tree.steps(c),
                               node_seed(self.config.seed, f.tree.id, f"{c}.rollout")) for f, c in rollout]
            outs = self.policy.complete(prefixes, 1, self.rollout_tokens)
            for (f, c), (out,) in zip(rollout, outs):
                text = self.task.join_steps(f.tree.steps(c)) + self.task.step_delimiter + out.text
                ok = self.task.check_answer(self.task.extract_answer(text), f.tree.problem["answer"])
                values[(id(f), c)] = 1.0 if ok else 0.0
                f.tree.costs["rollout_tokens"] = f.tree.costs.get("rollout_tokens", 0) + out.tokens
                count_rollouts(f.tree, 1, out.finish == "length")
        return values



def visit(f: MCTSFlight, nid: int, value: float) -> None:
    """Count one visit of `nid` with `value`: N += 1, q = (sum of its values) / N."""
    f.value_sum[nid] = f.value_sum.get(nid, 0.0) + value
    node = f.tree.node(nid)
    node["visits"] = (node["visits"] or 0) + 1
    node["q"] = round(f.value_sum[nid] / node["visits"], 6)


def backup(f: MCTSFlight, leaf: int, value: float) -> None:
    """Add `value` to the leaf and every node above it, the root included."""
    for nid in [*f.tree.path_ids(leaf)[::-1], 0] if leaf else [0]:
        visit(f, nid, value)
