"""Commands that make and curate problem files, and distil from a teacher: problems, curate, distill.

    journey problems --task arith --n 100 --out problems.jsonl
    journey problems --from MATH-500.jsonl --format math --out math.jsonl
    journey curate --problems math.jsonl --out kept.jsonl
    journey distill --teacher embedded --task arith --prompt task --problems p.jsonl --out-dir d/
"""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.markup import escape

from journey.cli.app import console, fail, journal_kept, ray_summary, summary_table, user_errors
from journey.cli.options import Section, command, make
from journey.config import CurateConfig, DistillConfig, ProblemsConfig, distill_defaults


@command(ProblemsConfig)
def problems(values: dict) -> None:
    """Generate problems (id, question, answer) as JSONL for the other stages, or import a dataset file (--from)."""
    from journey.stages.problems import run_problems

    cfg = make(ProblemsConfig, values)
    with user_errors():
        rows, what = run_problems(cfg)
    console.print(escape(f"wrote {rows} {what} to {cfg.out}"))


@command(CurateConfig)
def curate(values: dict) -> None:
    """Keep the math problems a checker can grade (Part 2's curation): drop proofs, figure-dependent questions, and missing or unreadable answers."""
    from journey.stages.problems import run_curate
    from journey.tasks.math import CURATION_RULES

    cfg = make(CurateConfig, values)
    with user_errors():
        kept, total, dropped = run_curate(cfg)
    console.print(summary_table(f"curate -> {cfg.out}", [
        ("kept", f"{kept:,} / {total:,}"),
        *[(f"dropped: {rule}", f"{count:,}") for rule, count in dropped.items()],
    ]))
    for rule, what in CURATION_RULES.items():
        console.print(escape(f"{rule}: {what}"), style="dim", highlight=False)


SHOW_PROMPT = inspect.Parameter(
    "show_prompt", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option(help="Print the prompts sent to the teacher (for --task and --prompt) and exit.")])


@command(Section(DistillConfig, optional=("teacher", "problems", "out_dir")), extra=[SHOW_PROMPT])
def distill(values: dict, show_prompt: bool = False) -> None:
    """Distil long thoughts from a teacher (Part 2): n samples per problem, curated with a count per reason, optionally reformatted, as TRL SFT rows."""
    from journey.stages.distill import JOURNAL, REASONS, run_distill, show_prompts

    if show_prompt:
        with user_errors():
            chosen = {k: values[k] if values[k] is not None else v for k, v in distill_defaults(values["teacher"]).items()}
            typer.echo(show_prompts(chosen["prompt"], chosen["task"]))
        return
    for name in ("teacher", "problems", "out_dir"):
        if values[name] is None:
            fail(f"--{name.replace('_', '-')} is required (or pass --show-prompt)")
    cfg = make(DistillConfig, values)
    with user_errors(journal_kept(cfg.out_dir / JOURNAL)):
        s = run_distill(cfg)
    total = max(s["samples"], 1)
    rows = [("problems", f"{s['problems']:,} ({s['problems_resumed']:,} already done)"),
            ("samples kept", f"{s['kept']:,} / {s['samples']:,} ({s['kept'] / total:.1%})")]
    rows += [(f"dropped: {reason}", f"{n:,} ({n / total:.1%})") for reason, n in s["dropped"].items()]
    rows.append(("answers extracted", f"{s['answers_extracted']:,} / {s['samples']:,} ({s['answers_extracted'] / total:.1%})"))
    if cfg.reformat:
        r = s["reformat"]
        rows.append(("reformats kept / tried", f"{r['kept']:,} / {r['tried']:,}"))
    t = s["tokens"]
    rows += [("SFT rows", f"{s['kept']:,} (from {s['problems_with_rows']:,} problems)"),
             ("tokens: prompts / samples / reformats", f"{t['prompt']:,} / {t['samples']:,} / {t['reformat']:,}"),
             ("teacher time", f"{s['seconds']['generation']:,.1f} s (this run: {s['seconds']['this_run']:,.1f} s)"),
             ("files", f"{cfg.out_dir}/ (sft.jsonl, distill.json, README.md, {JOURNAL})"),
             *ray_summary(s.get("ray"), "problems")]
    console.print(summary_table(f"distill {cfg.teacher} -> {cfg.out_dir}", rows))
    for reason, what in REASONS.items():
        if s["dropped"][reason]:
            console.print(escape(f"{reason}: {what}"), style="dim", highlight=False)
