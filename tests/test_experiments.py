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


def tiny_run(steps: int, state: Path, cut_at: int | None = None, run: dict | None = None):
    """A 2-layer, hidden-16 embedded-style policy trained `steps` steps with a resume state;
    `cut_at` raises KeyboardInterrupt after that step, as a kill would. Returns the model, the
    losses and the steps this call trained."""
    import random

    import torch
    from train_embedded_policy import encode, solution_chats, train_steps
    from transformers import AutoModelForCausalLM

    from journey.models.embedded import build_config, build_tokenizer
    from journey.tasks.arith import ArithTask

    torch.manual_seed(0)
    tok = build_tokenizer()
    pool = encode(tok, solution_chats(ArithTask(), 40, seed=3, exclude=set()))
    model = AutoModelForCausalLM.from_config(build_config(tok, hidden_size=16, layers=2))

    trained = []

    def cut(done, losses, t0):
        trained.append(done)
        if done == cut_at:
            raise KeyboardInterrupt

    losses, _ = train_steps(model, lambda r: r.sample(pool, 4), random.Random(0), steps, 1e-2, tok.pad_token_id,
                            after_step=cut, state=state, run=run or {"steps": steps}, save_every=2)
    return model, losses, trained


def test_a_cut_training_run_resumes_to_the_weights_of_an_uncut_one(tmp_path):
    uncut, uncut_losses, _ = tiny_run(6, tmp_path / "a.resume.pt")
    state = tmp_path / "b.resume.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(6, state, cut_at=5)  # state saved at step 4, step 5 is lost with the cut
    assert state.exists() and not state.with_name(state.name + ".tmp").exists()
    resumed, resumed_losses, trained = tiny_run(6, state)
    assert trained == [5, 6]  # it went on from the state, it did not start over
    assert resumed_losses == uncut_losses  # steps 1-4 from the state, 5-6 trained again on the same batches
    for (name, a), (_, b) in zip(uncut.state_dict().items(), resumed.state_dict().items()):
        assert a.equal(b), name


def test_a_resume_state_from_other_flags_is_refused(tmp_path):
    state = tmp_path / "c.resume.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(6, state, cut_at=3)
    with pytest.raises(SystemExit, match="other flags"):
        tiny_run(6, state, run={"steps": 7})
