"""Commands that grow and draw trees: build-tree, show.

    journey build-tree --problems problems.jsonl --out trees.jsonl -w 4 -D 8 -K 2
    journey build-tree --problems problems.jsonl --out trees.jsonl --search mcts --simulations 16
    journey show --trees trees.jsonl --out trees.html
"""

from __future__ import annotations

import time

from rich.markup import escape

from journey.cli.app import console, count_lines, ray_summary, summary_table, user_errors
from journey.cli.options import command, make
from journey.config import BuildTreeConfig, ShowConfig
from journey.runtime.progress import console as err_console
from journey.runtime.progress import progress_bar


@command(BuildTreeConfig)
def build_tree(values: dict) -> None:
    """Expand a reasoning tree per problem: w candidates per node, PRM-scored, to depth D; beam keeps
    the top K per depth, mcts selects leaves by PUCT for N simulations.

    Trees are appended to --out as they finish; rerunning the same command resumes.
    """
    from journey.stages.build_tree import run_build_tree

    cfg = make(BuildTreeConfig, values)
    out = cfg.out
    if cfg.prm_from_task:
        err_console.print(f"--prm {cfg.prm} (task {cfg.task}'s own; --prm picks another)", highlight=False)
    kept = lambda: f"{count_lines(out):,} finished trees are kept in {out}; rerun the same command to resume"  # noqa: E731
    with user_errors(kept), progress_bar("build-tree", None, "trees") as advance:
        nodes, started = [0], time.perf_counter()

        def progress(event: str, value: int) -> None:
            if event == "total":
                advance(0, total=value)
            elif event == "tree":
                advance(value)
            else:
                nodes[0] += value
                rate = nodes[0] / max(time.perf_counter() - started, 1e-9)
                advance(0, info=f"{nodes[0]:,} nodes ({rate:,.0f} nodes/s)")

        stats = run_build_tree(cfg, progress)
    x = stats.extra
    mean = lambda v: f"{v / stats.trees:,.1f}" if stats.trees else "-"  # noqa: E731
    console.print(summary_table(f"build-tree -> {out}", [
        ("problems", f"{x['problems']:,} ({stats.resumed:,} already done)"),
        ("trees with a correct path", f"{stats.solved:,} / {stats.trees:,}"),
        ("mean nodes per tree", mean(stats.nodes)),
        ("final steps with an answer read", f"{stats.answers_read:,} / {stats.final_steps:,}"),
        ("mean steps generated per tree",
         f"{mean(stats.steps_generated)} ({x['budget'][0]}: {x['budget'][1]:,}; exhaustive: {x['exhaustive_steps']:,})"),
        ("tokens generated", f"{stats.tokens:,}"),
        *([("rollouts cut off at their budget",
            f"{stats.rollouts_cut_off:,} of {stats.rollouts:,} ({budget_note(cfg)})")] if stats.rollouts else []),
        ("time (this run)", f"{stats.seconds:,.1f} s"),
        *ray_summary(x.get("ray"), "trees"),
    ]))
    console.print("A correct path: a right final answer with every step judged correct "
                  "(what derive-longthought can use).", style="dim")


def budget_note(cfg: BuildTreeConfig) -> str:
    """Where the rollouts' token budget came from, for the summary."""
    if cfg.rollout_tokens is not None:
        return f"--rollout-tokens {cfg.rollout_tokens:,}"
    return f"steps left to --depth {cfg.depth} x --max-step-tokens {cfg.max_step_tokens}"


@command(ShowConfig)
def show(values: dict) -> None:
    """Draw reasoning trees as one HTML page: verdicts, scores, reasons, the shortcut and the journey."""
    from journey.stages.show import run_show

    cfg = make(ShowConfig, values)
    with user_errors():
        shown = run_show(cfg)
    console.print(escape(f"wrote {shown} tree(s) to {cfg.out}; open it in a browser"))
