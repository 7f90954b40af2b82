"""The command that turns trees into long thoughts: derive-longthought.

    journey derive-longthought --trees trees.jsonl --out-dir data/ -K 2 --style concise
"""

from __future__ import annotations

from journey.cli.app import console, summary_table, user_errors
from journey.cli.options import command, make
from journey.config import DeriveConfig


@command(DeriveConfig)
def derive_longthought(values: dict) -> None:
    """Derive long thoughts from trees: the shortcut, the journey (trials, reflection, backtracking), DPO pairs."""
    from journey.stages.derive import run_derive

    cfg = make(DeriveConfig, values)
    with user_errors(lambda: f"nothing was written; {cfg.out_dir} is as it was"):
        stats = run_derive(cfg)
    used = max(stats.used, 1)
    words = ", ".join(f"{w} {c / used:.2f}" for w, c in stats.reflection_words.items())
    rows = [
        ("trees with a correct path (used) / without", f"{stats.used:,} / {stats.skipped_no_correct:,}"),
        ("mean trials per journey", f"{stats.trials / used:.2f}"),
        ("mean tokens: journey vs shortcut", f"{stats.journey_tokens / used:,.1f} vs {stats.shortcut_tokens / used:,.1f}"
                                             f" ({stats.tokenizer})"),
        ("reflection words per journey", words),
        ("DPO pairs written", f"{stats.pairs:,}"),
        ("format errors (steps never used as a trial)", f"{stats.format_errors:,}"),
        ("PRM rows: steps / pairs", f"{stats.prm_steps:,} / {stats.prm_pairs:,} "
                                    f"(labels: {', '.join(f'{k} {v}' for k, v in stats.label_sources.items())})"),
    ]
    if cfg.rewrite_model:
        rows.append(("rewrites discarded for the draft", f"{stats.rewrite_fallbacks:,} / {stats.used:,}"))
    console.print(summary_table(f"derive-longthought -> {cfg.out_dir}", rows))
