"""The `build-tree` stage: problems.jsonl -> trees.jsonl, resumable, with progress and a summary.

    journey build-tree --problems problems.jsonl --out trees.jsonl --width 3 --depth 8 --top-k 2

This module is the edge around `journey.search.build`: it validates inputs before touching the
output, loads the models, resumes an interrupted run (finished ids are skipped; a different
config is refused unless `overwrite`), appends each tree as it finishes, and returns the
numbers for the summary table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from journey.io import (
    DataError,
    JsonlAppender,
    check_writable,
    drop_partial_last_line,
    load_problems,
    read_jsonl,
)
from journey.models.embedded import EMBEDDED_NAME
from journey.models.policy import SamplingConfig, load_policy
from journey.models.prm import PRMS, build_prm
from journey.provenance import provenance
from journey.search.build import SearchConfig, TreeBuilder, build_trees
from journey.search.tree import FORMAT, Tree
from journey.tasks import get_task

log = logging.getLogger(__name__)

# The config keys that decide a tree's content: a resumed run must match them.
CONTENT_KEYS = ("model", "task", "prm", "prm_model", "rollouts", "width", "depth", "top_k", "temperature", "top_p",
                "max_step_tokens", "seed")


@dataclass
class BuildTreeConfig:
    """Everything `build-tree` needs. Fields mirror the CLI flags."""

    problems: Path
    out: Path
    model: str = EMBEDDED_NAME
    backend: str = "transformers"  # transformers | openai | vllm (does not change trees)
    task: str = "arith"
    prm: str = "verifier"
    prm_model: str | None = None  # the checkpoint of a token/qwen PRM, or the judge LLM
    rollouts: int = 4  # m, for the rollout PRM
    width: int = 4
    depth: int = 8
    top_k: int = 2
    temperature: float = 1.0
    top_p: float = 0.95
    max_step_tokens: int = 48
    batch_size: int = 256  # sequences per policy call (a speed knob; does not change trees)
    trees_in_flight: int = 64  # trees expanded in lockstep (a speed/memory knob)
    seed: int = 0
    overwrite: bool = False
    limit: int | None = None  # only the first N problems

    def __post_init__(self):
        self.search = SearchConfig(self.width, self.depth, self.top_k, self.seed)
        self.sampling = SamplingConfig(self.temperature, self.top_p, self.max_step_tokens,
                                       self.batch_size)
        if self.prm not in PRMS:
            raise ValueError(f"unknown PRM {self.prm!r}; known PRMs: {', '.join(PRMS)}")
        if self.trees_in_flight < 1:
            raise ValueError(f"--trees-in-flight must be >= 1, got {self.trees_in_flight}")

    def content(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in CONTENT_KEYS}


@dataclass
class TreeStats:
    """Running totals over finished trees, for the summary table."""

    trees: int = 0
    solved: int = 0  # trees with at least one correct answer
    nodes: int = 0
    steps_generated: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resumed: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, row: dict) -> None:
        self.trees += 1
        self.solved += any(n["terminal"] and n["correct"] for n in row["nodes"])
        self.nodes += len(row["nodes"]) - 1
        self.steps_generated += row["costs"].get("steps_generated", 0)
        self.tokens += row["costs"].get("tokens", 0)


def resume_state(cfg: BuildTreeConfig) -> tuple[set[str], TreeStats]:
    """Ids already in `cfg.out` and their stats; DataError if the file is foreign or the config differs."""
    stats = TreeStats()
    if cfg.overwrite or not cfg.out.exists() or cfg.out.stat().st_size == 0:
        return set(), stats
    if drop_partial_last_line(cfg.out):
        log.warning("%s: dropped a partial last line left by an interrupted run", cfg.out)
    done: set[str] = set()
    for lineno, row in read_jsonl(cfg.out):
        if row.get("format") != FORMAT:
            raise DataError(f"{cfg.out}:{lineno}: not a {FORMAT} line; pick another --out or --overwrite")
        before = row.get("run", {}).get("config", {})
        diff = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in cfg.content().items() if before.get(k) != v]
        if diff:
            raise DataError(f"{cfg.out} was built with a different config ({'; '.join(diff)}); "
                            "rerun with the same flags, another --out, or --overwrite")
        done.add(row["problem"]["id"])
        stats.add(row)
    stats.resumed = len(done)
    return done, stats


def run_build_tree(cfg: BuildTreeConfig, progress=None) -> TreeStats:
    """Build (or finish building) every tree for `cfg.problems` into `cfg.out`.

    `progress`, if given, is a callable `(event, value)`: ("total", n), ("tree", 1), ("nodes", n).
    """
    task = get_task(cfg.task)
    problems = load_problems(cfg.problems)[: cfg.limit]
    check_writable(cfg.out)
    done, stats = resume_state(cfg)
    policy = load_policy(cfg.model, task.step_delimiter, cfg.sampling, cfg.backend)
    prm = build_prm(cfg.prm, task, policy, cfg.prm_model, cfg.rollouts)
    todo = [p for p in problems if p.id not in done]
    run = provenance("build-tree", cfg.content(),
                     exhaustive_expansions=cfg.search.exhaustive_expansions(),
                     exhaustive_steps=cfg.width * cfg.search.exhaustive_expansions())
    stats.extra = {"problems": len(problems), "exhaustive_steps": run["exhaustive_steps"]}
    if cfg.overwrite and cfg.out.exists():
        cfg.out.unlink()
    builder = TreeBuilder(task, policy, prm, cfg.search)
    t0 = time.perf_counter()
    if progress:
        progress("total", len(todo))
    with JsonlAppender(cfg.out) as out:
        on_level = (lambda n: progress("nodes", n)) if progress else None
        for tree in build_trees(todo, builder, cfg.trees_in_flight, run, on_level):
            row = tree.to_json()
            out.write(row)
            stats.add(row)
            if progress:
                progress("tree", 1)
    stats.seconds = time.perf_counter() - t0
    return stats


def load_trees(path: Path) -> list[Tree]:
    """Every tree in a trees.jsonl file (DataError naming file:line on anything else)."""
    trees = []
    for lineno, row in read_jsonl(path):
        try:
            trees.append(Tree.from_json(row, where=f"{path}:{lineno}"))
        except ValueError as err:
            raise DataError(str(err)) from None
    if not trees:
        raise DataError(f"{path}: no trees in the file")
    return trees
