"""Commands of the code domain (o1-Coder): run-tests, gen-tests. Programs run in the sandbox.

    journey run-tests --problems code.jsonl --solutions solutions.jsonl --out results.jsonl
    journey gen-tests --problems code.jsonl --out with_tests.jsonl --n 10
"""

from __future__ import annotations

from journey.cli.app import console, summary_table, user_errors
from journey.cli.options import command, make
from journey.config import GenTestsConfig, RunTestsConfig


@command(RunTestsConfig)
def run_tests(values: dict) -> None:
    """Score programs against their problems' tests in the sandbox: compiles, pass rate, reward, a verdict per test."""
    from journey.stages.run_tests import run_tests as score

    cfg = make(RunTestsConfig, values)
    with user_errors():
        s = score(cfg)
    rows = [("solutions", f"{s['solutions']:,}"), ("compile", f"{s['compiles']:.1%}"),
            ("mean pass rate", f"{s['pass_rate']:.1%}"), ("pass every test", f"{s['all_pass']:.1%}"),
            (f"mean reward (a = {cfg.code_alpha})", f"{s['reward']:.3f}"), ("file", str(cfg.out))]
    console.print(summary_table(f"run-tests {cfg.solutions} -> {cfg.out}", rows))


def killable_rows(s: dict) -> list[tuple[str, str]]:
    """gen-tests' rows for the equivalent-mutant estimate (none when it was skipped)."""
    if not s["problems_probed"]:
        return []
    mutants = s["killable"] + s["likely_equivalent"]
    return [("likely equivalent mutants (random inputs)", f"{s['likely_equivalent']:,} of {mutants:,} "
                                                          f"({s['problems_probed']:,} problems)"),
            ("over killable: generated / given tests", f"{s['killable_score_generated']:.1%} / "
                                                       f"{s['killable_score_given']:.1%}")]


def share(s: dict, key: str) -> str:
    """'87.5% ± 2.1%': a share of gen-tests' summary with its standard error over problems."""
    return f"{s[key]:.1%} ± {s[key + '_se']:.1%}"


@command(GenTestsConfig)
def gen_tests(values: dict) -> None:
    """Generate tests (TCG): the policy proposes inputs and the sandboxed reference gives outputs (--mode inputs), or it writes both and the reference grades them (--mode outputs); mutation scores vs the given tests."""
    from journey.stages.tcg import gen_tests as generate

    cfg = make(GenTestsConfig, values)
    with user_errors():
        s = generate(cfg)
    what = "tests" if cfg.mode == "outputs" else "inputs"
    rows = [("problems (with tests written)", f"{s['problems']:,} ({s['written']:,})"),
            (f"{what} proposed / parsed / kept", f"{s['proposed']:,} / {s['parsed']:,} / {s['kept']:,}"),
            ("parse failures / repeats", f"{s['parse_failures']:,} / {s['repeats']:,}"),
            ("generated tests the reference passes", share(s, "reference_passes")),
            ("  of the parsed ones", share(s, "reference_passes_parsed")),
            ("mutation score: generated tests", f"{share(s, 'mutation_score_generated')} of {s['mutants_generated']:,}"),
            ("mutation score: given tests", f"{share(s, 'mutation_score_given')} of {s['mutants_given']:,}"),
            *killable_rows(s),
            ("references too deep to mutate", f"{s.get('references_without_mutants', 0):,}"),
            ("file", str(cfg.out))]
    console.print(summary_table(f"gen-tests {cfg.problems} -> {cfg.out}", rows))
