"""The experiment scripts' pure parts (examples/part1_experiment.py, examples/scale_curve.py,
examples/rl_experiment.py): differences with their standard errors, the curve rows built from
per-size results, and the per-seed means of the RL experiment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from part1_experiment import difference  # noqa: E402
from rl_experiment import diff, mean_over_seeds, smooth  # noqa: E402
from scale_curve import curve_rows, markdown  # noqa: E402


def test_difference_of_accuracies_and_of_rates():
    evals = {"journey": {"accuracy": 0.5, "accuracy_se": 0.03}, "shortcut": {"accuracy": 0.7, "accuracy_se": 0.04}}
    assert difference(evals, "journey", "shortcut") == {"diff": -0.2, "se": 0.05}  # sqrt(.03² + .04²)
    mech = {"journey": {"recovery": {"rate": 0.25, "se": 0.05}}, "shortcut": {"recovery": {"rate": 0.1, "se": 0.12}}}
    assert difference(mech, "journey", "shortcut", key="recovery") == {"diff": 0.15, "se": 0.13}


def result(params: int, acc: dict[str, float], recovery: dict[str, float] | None) -> dict:
    models = {m: {"accuracy": a, "accuracy_se": 0.02} for m, a in acc.items()}
    r = {"parameters": params, "rows_per_arm": 10, "models": models,
         "journey_minus_shortcut": difference(models, "journey", "shortcut"),
         "dpo_minus_journey": difference(models, "dpo", "journey")}
    if recovery:
        r["mechanism"] = {m: {"recovery": {"rate": v, "se": 0.0}, "detection": {"rate": 0.0, "se": 0.0},
                              "false_alarm": {"rate": 0.0, "se": 0.0}} for m, v in recovery.items()}
    return r


def test_curve_rows_are_sorted_by_size_and_carry_each_difference():
    acc = {"shortcut": 0.7, "journey": 0.5, "dpo": 0.55, "shaped": 0.6}
    rows = curve_rows({256: result(3_000_000, acc, {"shortcut": 0.1, "journey": 0.2, "shaped": 0.4}),
                       128: result(870_000, acc, None)})
    assert [r["hidden"] for r in rows] == [128, 256]
    assert rows[0]["journey_minus_shortcut"]["diff"] == pytest.approx(-0.2)
    assert "recovery" not in rows[0] and "recovery_shaped_minus_shortcut" not in rows[0]
    assert rows[1]["recovery"] == {"shortcut": 0.1, "journey": 0.2, "shaped": 0.4}
    assert rows[1]["recovery_shaped_minus_shortcut"] == {"diff": 0.3, "se": 0.0}


def test_markdown_has_a_row_per_size_and_per_size_and_model():
    acc = {"phase1": 0.74, "shortcut": 0.7, "journey": 0.5, "dpo": 0.55}
    results = {128: result(870_000, acc, {"shortcut": 0.1, "journey": 0.2})}
    for r in results.values():
        for v in r["mechanism"].values():
            v.update(backtracks=4, backtrack_validity=0.5)
    text = markdown(curve_rows(results), results)
    assert "| 0.87M | 10 | 0.740 ± 0.020 | 0.700 ± 0.020 | 0.500 ± 0.020 | 0.550 ± 0.020 | – | -0.200 ± 0.028 | – |" in text
    assert "| 0.87M | journey | 0.200 ± 0.000 | 0.000 | 0.000 | 4 (0.50) |" in text


def test_rl_experiment_means_over_seeds_and_gain_differences():
    # two seeds at .60 ± .03 and .64 ± .04: mean .62, s.e. sqrt(.03² + .04²) / 2 = .025
    assert mean_over_seeds([(0.60, 0.03), (0.64, 0.04)]) == pytest.approx((0.62, 0.025))
    assert diff((0.62, 0.025), (0.50, 0.06)) == {"diff": 0.12, "se": 0.065}
    assert smooth([0.0, 1.0, 0.5], k=2) == [0.0, 0.5, 0.75]
