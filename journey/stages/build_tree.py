"""The `build-tree` stage: problems.jsonl -> trees.jsonl, resumable, with progress and a summary.

    journey build-tree --problems problems.jsonl --out trees.jsonl --width 3 --depth 8 --top-k 2
    journey build-tree --problems problems.jsonl --out trees.jsonl --search mcts --simulations 16

This module is the edge around `journey.search.build`: it validates inputs before touching the
output, loads the models, resumes an interrupted run (finished ids are skipped; a different
config is refused unless `overwrite`), appends each tree as it finishes, and returns the
numbers for the summary table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from journey.config import CONTENT_BEFORE_KEY, BuildTreeConfig
from journey.models.base import Prefix
from journey.models.registry import build_prm, load_policy
from journey.runtime.distributed import ray_pool, trees_on_ray
from journey.runtime.io import (
    STAGE_REMEDY,
    DataError,
    JsonlAppender,
    Remedy,
    check_not_an_input,
    check_writable,
    load_problems,
    output_lock,
    problem_sha256,
    read_jsonl,
    resume_journal,
    take_first,
)
from journey.runtime.provenance import provenance
from journey.search.build import LockstepBuilder, build_trees
from journey.search.registry import SEARCHES
from journey.search.tree import FORMAT, Tree
from journey.tasks import task_of
from journey.tasks.base import Problem

log = logging.getLogger(__name__)

@dataclass
class TreeStats:
    """Running totals over finished trees, for the summary table."""

    trees: int = 0
    solved: int = 0  # trees with a correct path (`Tree.clean_correct_leaves`), as derive counts
    nodes: int = 0
    steps_generated: int = 0
    tokens: int = 0
    rollouts: int = 0  # PRM and MCTS rollouts, and those cut off at their token budget
    rollouts_cut_off: int = 0
    final_steps: int = 0  # terminal steps (an answer, or the model's EOS), and those with an answer read
    answers_read: int = 0
    seconds: float = 0.0
    resumed: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, tree: Tree) -> None:
        self.trees += 1
        self.solved += bool(tree.clean_correct_leaves())
        self.nodes += tree.graph.number_of_nodes() - 1
        self.steps_generated += tree.costs.get("steps_generated", 0)
        self.tokens += tree.costs.get("tokens", 0)
        self.rollouts += tree.costs.get("rollouts", 0)
        self.rollouts_cut_off += tree.costs.get("rollouts_cut_off", 0)
        ends = [d for _, d in tree.graph.nodes(data=True) if d.get("terminal")]
        self.final_steps += len(ends)
        self.answers_read += sum(d.get("answer") is not None for d in ends)


def run_config(row: dict) -> dict:
    """A trees row's run config, with the value each content key added since had before it
    (`CONTENT_BEFORE_KEY`: a tree written before --expand was built with --expand wrong)."""
    config = row.get("run", {}).get("config", {})
    return CONTENT_BEFORE_KEY | config if isinstance(config, dict) else config


def resume_state(cfg: BuildTreeConfig, problems: list, remedy: Remedy = STAGE_REMEDY) -> tuple[dict[str, dict], TreeStats]:
    """Rows already in `cfg.out` by id, and their stats (see `journey.runtime.io.resume_journal`
    for what is checked: ours by format, config, changed problems, duplicates, a cut last line;
    a refusal says what to do in `remedy`'s flags)."""
    stats = TreeStats()
    if cfg.overwrite:
        return {}, stats
    rows = resume_journal(cfg.out, FORMAT, cfg.content(), problems,
                          config_of=run_config,
                          problem_of=lambda r: r.get("problem"), problems_path=cfg.problems, remedy=remedy)
    for pid, row in rows.items():
        try:
            stats.add(Tree.from_json(row, where=f"{cfg.out} (tree {pid!r})"))
        except ValueError as err:
            raise DataError(str(err)) from None
    stats.resumed = len(rows)
    return rows, stats


def run_build_tree(cfg: BuildTreeConfig, progress=None, remedy: Remedy = STAGE_REMEDY) -> TreeStats:
    """Build (or finish building) every tree for `cfg.problems` into `cfg.out`.

    `progress`, if given, is a callable `(event, value)`: ("total", n), ("tree", 1), ("nodes", n).
    Holds the output's lock for the whole run: a second writer is refused. `remedy`: the flags a
    refused resume names (selfplay's, when it runs this stage).
    """
    task = task_of(cfg)
    every = load_problems(cfg.problems)
    problems = take_first(every, cfg.limit)
    check_writable(cfg.out)
    check_not_an_input(cfg.out, {"--problems": cfg.problems})
    with output_lock(cfg.out), ray_pool(cfg) as pool:
        return _build_locked(cfg, task, every, problems, progress, pool, remedy)


def load_builder(cfg: BuildTreeConfig, task) -> LockstepBuilder:
    """The policy and PRM of `cfg`, in the lockstep builder of `--search` (beam or mcts)."""
    policy = load_policy(cfg.model, task.step_delimiter, cfg.sampling, cfg.backend, cfg.gpu_memory_utilization)
    prm = build_prm(cfg.prm, task, policy, cfg.prm_model, cfg.rollouts, cfg.prm_device, cfg.depth,
                    cfg.rollout_tokens, cfg.prm_batch_tokens, cfg.prm_backend, cfg.prm_gpu_memory_utilization)
    return SEARCHES[cfg.search][0](task, policy, prm, cfg.search_config)


def check_fits(cfg: BuildTreeConfig, task, policy, todo: list) -> None:
    """ValueError naming problems.jsonl:line when a tree of `todo` could outgrow the context."""
    policy.check_fits([Prefix(task.messages(p.question)) for p in todo],
                      cfg.depth * cfg.max_step_tokens, [f"{cfg.problems}:{p.line}" for p in todo],
                      f"--depth {cfg.depth} x --max-step-tokens {cfg.max_step_tokens}")


class TreeJob:
    """build-tree on an actor: the builder (policy + PRM) loaded once, trees built in lockstep."""

    def __init__(self, cfg):
        self.cfg = cfg

    def start(self, check: list[Problem]) -> None:
        self.builder = load_builder(self.cfg, task_of(self.cfg))
        if check:
            check_fits(self.cfg, self.builder.task, self.builder.policy, check)

    def run(self, problems: list[Problem]) -> list[dict]:
        return [t.to_json() for t in build_trees(problems, self.builder, self.cfg.trees_in_flight)]



def _build_locked(cfg: BuildTreeConfig, task, every: list, problems: list, progress, pool,
                  remedy: Remedy) -> TreeStats:
    done, stats = resume_state(cfg, every, remedy)
    todo = [p for p in problems if p.id not in done]
    if pool:  # --ray: every actor loads its own models; the first checks the fits
        pool.start(TreeJob(cfg), todo)
    else:
        builder = load_builder(cfg, task)
        check_fits(cfg, task, builder.policy, todo)
    shape = cfg.search_config
    run = provenance("build-tree", cfg.content(),
                     exhaustive_expansions=shape.exhaustive_expansions(),
                     exhaustive_steps=cfg.width * shape.exhaustive_expansions())
    budget = shape.budget()
    stats.extra = {"problems": len(problems), "exhaustive_steps": run["exhaustive_steps"],
                   "budget": budget, "out": cfg.out}
    if cfg.overwrite and cfg.out.exists():
        cfg.out.unlink()  # only now: every check passed and the models loaded
    sha = {p.id: problem_sha256(p) for p in todo}
    t0 = time.perf_counter()
    if progress:
        progress("total", len(todo))
    with JsonlAppender(cfg.out, kept=None if cfg.overwrite else done) as out:
        on_level = (lambda n: progress("nodes", n)) if progress else None
        trees = (trees_on_ray(pool, cfg, todo, run, on_level) if pool
                 else build_trees(todo, builder, cfg.trees_in_flight, run, on_level))
        for tree in trees:
            out.write({**tree.to_json(), "problem_sha256": sha[tree.id]})
            stats.add(tree)
            if progress:
                progress("tree", 1)
            stats.seconds = time.perf_counter() - t0
    stats.seconds = time.perf_counter() - t0
    if pool:
        stats.extra["ray"] = pool.report()
    return stats


def load_trees(path: Path) -> list[Tree]:
    """Every tree in a trees.jsonl file (DataError naming file:line on anything else).

    A problem id seen twice (two runs wrote one file) keeps its first tree; the others are
    dropped with a warning that says how many.
    """
    trees, seen, dropped = [], set(), 0
    for lineno, row in read_jsonl(path):
        try:
            tree = Tree.from_json(row, where=f"{path}:{lineno}")
        except ValueError as err:
            raise DataError(str(err)) from None
        if tree.id in seen:
            dropped += 1
            continue
        seen.add(tree.id)
        trees.append(tree)
    if not trees:
        raise DataError(f"{path}: no trees in the file")
    if dropped:
        log.warning("%s: dropped %d tree(s) whose problem id was already seen; kept the first of each",
                    path, dropped)
    return trees
