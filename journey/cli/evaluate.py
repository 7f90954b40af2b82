"""Commands that measure models and PRMs, and sample on-policy pairs: eval, sample-pairs, eval-prm.

    journey eval --model ckpt/journey --problems test.jsonl -k 4
    journey eval --model ckpt/journey --problems test.jsonl --inject-errors
    journey sample-pairs --model ckpt/sft --problems train.jsonl --out pairs.jsonl
    journey eval-prm --trees test_trees.jsonl --prm trained --prm-model ckpt/prm
"""

from __future__ import annotations

from journey.cli.app import console, journal_kept, ray_summary, summary_table, user_errors
from journey.cli.options import Section, command, make
from journey.config import EvalConfig, EvalPRMConfig, SamplePairsConfig

# eval and sample-pairs grade by the right answer only, never by partial credit: no --code-alpha
NO_PARTIAL_CREDIT = ("code_alpha",)


@command(Section(EvalConfig, skip=NO_PARTIAL_CREDIT))
def eval_(values: dict) -> None:
    """Measure a model on held-out problems: accuracy, maj@k, pass@k, tokens, reflection words."""
    from journey.stages.evaluate import generations_path, run_eval

    cfg = make(EvalConfig, values)
    if cfg.inject_errors:
        return inject_table(cfg)
    with user_errors(journal_kept(generations_path(cfg.out))):
        m = run_eval(cfg)
    k = cfg.samples
    rows = [("problems", f"{m['problems']:,}"),
            ("greedy accuracy", f"{m['accuracy']:.3f} ± {m['accuracy_se']:.3f}"),
            ("answers extracted (greedy)", f"{m['answers_extracted']:.3f}")]
    if k > 1:
        rows += [("answers extracted (samples)", f"{m['sample_answers_extracted']:.3f}"),
                 (f"maj@{k}", f"{m[f'maj@{k}']:.3f}"), ("pass@1", f"{m['pass@1']:.3f}"),
                 (f"pass@{k}", f"{m[f'pass@{k}']:.3f}")]
    rows += [("mean tokens (greedy)", f"{m['mean_tokens']:,.1f}"),
             ("reflection words per answer", ", ".join(f"{w} {c:.2f}" for w, c in m["reflection_words_per_answer"].items())),
             ("files", f"{cfg.out}, {generations_path(cfg.out)}"), *ray_summary(m["provenance"].get("ray"), "problems")]
    console.print(summary_table(f"eval {cfg.model}", rows))


def inject_table(cfg) -> None:
    """`eval --inject-errors`: run it and print the mechanism table."""
    from journey.stages.inject import injections_path, run_inject

    with user_errors(journal_kept(injections_path(cfg.out))):
        m = run_inject(cfg)
    pct = lambda r: f"{r['rate']:.3f} ± {r['se']:.3f}"  # noqa: E731
    validity = "-" if m["backtrack_validity"] is None else f"{m['backtrack_validity']:.3f} of {m['backtracks']:,}"
    console.print(summary_table(f"eval --inject-errors {cfg.model}", [
        ("problems (with an injected step)", f"{m['problems']:,} ({m['injected']:,})"),
        ("recovery: right answer after a wrong step", pct(m["recovery"])),
        ("detection: a doubt within 2 lines of it", pct(m["detection"])),
        ("false alarms: a doubt after a clean prefix", pct(m["false_alarm"])),
        ("valid backtracks", validity),
        ("mean tokens after: wrong step vs clean", f"{m['mean_tokens_after_injected']:,.1f} vs {m['mean_tokens_after_clean']:,.1f}"),
        ("files", f"{cfg.out}, {injections_path(cfg.out)}"),
    ]))


@command(Section(SamplePairsConfig, skip=NO_PARTIAL_CREDIT))
def sample_pairs(values: dict) -> None:
    """On-policy DPO pairs (the paper's recipe): sample answers, check them, pair right with wrong."""
    from journey.stages.evaluate import run_sample_pairs, samples_path

    cfg = make(SamplePairsConfig, values)
    with user_errors(journal_kept(samples_path(cfg.out))):
        s = run_sample_pairs(cfg)
    console.print(summary_table(f"sample-pairs -> {cfg.out}", [
        ("problems", f"{s['problems']:,}"),
        ("samples right", f"{s['right']:,} / {s['samples']:,}"),
        ("pairs written", f"{s['pairs']:,} (from {s['problems_with_pairs']:,} problems)"),
        ("files", f"{cfg.out}, {samples_path(cfg.out)}"),
        *ray_summary(s.get("ray"), "problems"),
    ]))


def reads_steps_rows(m: dict) -> list[tuple[str, str]]:
    """The summary rows that tell whether the PRM reads the steps (see journey.stages.eval_prm)."""
    def change(c: dict, way: str) -> str:
        return "-" if not c["n"] else f"{way} {c[way]:.3f} of {c['n']:,}, mean {c['mean_change']:+.4f}"

    def shares(v: dict) -> str:
        return " / ".join("-" if v[k] is None else f"{v[k]:.3f}" for k in ("tree", "depth", "tree_and_depth"))

    cf, var = m["counterfactual"], m["variance_share"]
    return [("wrong step -> its right sibling", change(cf["sibling_swap"], "raised")),
            ("right step, first step made wrong", change(cf["first_step_wrong"], "lowered")),
            ("score variance: tree / depth / both", shares(var["scores"])),
            ("the same for the exact labels", shares(var["exact_labels"]))]


@command(EvalPRMConfig)
def eval_prm(values: dict) -> None:
    """Judge a PRM as the paper does: precision, recall and F1 of its step verdicts against exact labels."""
    from journey.stages.eval_prm import run_eval_prm

    cfg = make(EvalPRMConfig, values)
    with user_errors():
        m = run_eval_prm(cfg)
    fmt = lambda d: f"P {d['precision']:.3f}  R {d['recall']:.3f}  F1 {d['f1']:.3f}"  # noqa: E731
    rows = [("steps judged (right / all)", f"{m['right_steps']:,} / {m['steps']:,} in {m['trees']:,} trees"),
            ("accuracy", f"{m['accuracy']:.3f}"),
            ("right step as positive", fmt(m["right_as_positive"])),
            ("wrong step as positive", fmt(m["wrong_as_positive"])),
            ("sibling pairs ranked right", "-" if m["pair_accuracy"] is None
             else f"{m['pair_accuracy']:.3f} ({m['sibling_pairs']:,} pairs)"),
            *reads_steps_rows(m),
            ("paper (Part 1): Math-Shepherd / o1-mini F1", ".734-.855 / .855-.880")]
    if m["rollout_steps"]:
        r = m["rollout_correlation"]
        rows.append(("correlation with rollout values", "-" if r is None else f"{r:.3f} ({m['rollout_steps']:,} steps)"))
    if cfg.out:
        rows.append(("file", str(cfg.out)))
    console.print(summary_table(f"eval-prm {cfg.prm_model or cfg.prm}", rows))
