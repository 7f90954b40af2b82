"""`train --stage rl` (o1-Coder's step 5): φ and its α schedule by hand, the reward wired to real
verdicts (arith's exact verifier, the code sandbox), the flags, and a few real GRPO steps on the
embedded policy — weights change, the reward curve is recorded, an interrupted run resumes."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerState

from journey.config import TrainConfig
from journey.models.embedded import EMBEDDED_PATH
from journey.models.prm import VerifierPRM
from journey.models.rewards import RLReward, alpha_at, phi, process_term, split_steps
from journey.runtime.io import staging_folder
from journey.stages.train import run_train
from journey.tasks import get_task
from tests.helpers import run, write_problems

# ---------------------------------------------------------------- φ and α(t), worked by hand


@pytest.mark.parametrize("schedule, start, end, t, want", [
    ("constant", 0.3, 0.9, 0.7, 0.3),
    ("linear", 1.0, 0.5, 0.0, 1.0),
    ("linear", 1.0, 0.5, 0.5, 0.75),
    ("linear", 1.0, 0.0, 0.25, 0.75),
    ("linear", 0.2, 0.6, 1.0, 0.6),
    ("linear", 1.0, 0.5, 2.0, 0.5),  # progress past the end is clipped
    ("log", 1.0, 0.0, 0.0, 1.0),
    ("log", 1.0, 0.0, 1.0, 0.0),
    ("log", 1.0, 0.0, 0.5, 1 - math.log(1 + (math.e - 1) / 2)),  # ln(1.859) = 0.620 -> 0.380
])
def test_alpha_schedule(schedule, start, end, t, want):
    assert alpha_at(schedule, start, end, t) == pytest.approx(want)


def test_log_schedule_moves_faster_early_than_linear():
    assert alpha_at("log", 1.0, 0.0, 0.2) < alpha_at("linear", 1.0, 0.0, 0.2)


@pytest.mark.parametrize("outcome, process, alpha, gamma, want", [
    (1.0, [1.0, 0.0], 0.5, 1.0, 0.75),  # 0.5·1 + 0.5·(1 + 0)/2
    (0.0, [1.0, 1.0, 0.0], 0.25, 1.0, 0.5),  # 0.75·(2/3)
    (1.0, [1.0, 0.5], 0.0, 0.5, 0.3125),  # (0.5·1 + 0.25·0.5)/2
    (1.0, [], 0.5, 1.0, 0.5),  # no steps: the process term is 0
    (0.4, [1.0], 1.0, 0.9, 0.4),  # α = 1: the outcome alone
])
def test_phi_by_hand(outcome, process, alpha, gamma, want):
    assert phi(outcome, process, alpha, gamma) == pytest.approx(want)


def test_process_term_discounts_later_steps():
    assert process_term([1.0, 1.0, 1.0], 0.5) == pytest.approx((0.5 + 0.25 + 0.125) / 3)


def test_split_steps():
    assert split_steps("1 + 2 = 3\n\nThe answer is 3.\n", "\n") == ["1 + 2 = 3", "The answer is 3."]
    assert split_steps("", "\n") == []


# ---------------------------------------------------------------- the reward, from real verdicts

QUESTION, GOLD = "(2 + 3) * 4", "20"
COMPLETIONS = {  # steps, and the exact verifier's r_j for them
    "right": ("2 + 3 = 5\n5 * 4 = 20\nThe answer is 20.", 1.0, [1, 1, 1]),
    "last wrong": ("2 + 3 = 5\n5 * 4 = 24\nThe answer is 24.", 0.0, [1, 0, 0]),
    "first wrong": ("2 + 3 = 6\n6 * 4 = 24\nThe answer is 24.", 0.0, [0, 0, 0]),
    "no answer": ("2 + 3 = 5", 0.0, [1]),
}


def state(step: int, steps: int) -> TrainerState:
    return TrainerState(global_step=step, max_steps=steps)


def call(reward: RLReward, names: list[str], step=2, steps=4) -> list[float]:
    texts = [COMPLETIONS[n][0] for n in names]
    return reward(prompts=[None] * len(texts), completions=[[{"role": "assistant", "content": t}] for t in texts],
                  question=[QUESTION] * len(texts), answer=[GOLD] * len(texts), trainer_state=state(step, steps))


def test_phi_reward_from_the_verifiers_verdicts():
    arith = get_task("arith")
    assert arith.solution(QUESTION) == COMPLETIONS["right"][0].split("\n")
    reward = RLReward(arith, VerifierPRM(arith), "phi", "linear", 1.0, 0.5, 1.0)
    names = list(COMPLETIONS)
    got = call(reward, names, step=2, steps=4)  # t = 0.5 -> α = 0.75
    want = [0.75 * COMPLETIONS[n][1] + 0.25 * sum(COMPLETIONS[n][2]) / len(COMPLETIONS[n][2]) for n in names]
    assert got == pytest.approx(want)
    assert got == pytest.approx([1.0, 0.25 / 3, 0.0, 0.25])
    assert reward.last == pytest.approx({"alpha": 0.75, "outcome": 0.25, "answers_extracted": 0.75,
                                         "process": (1 + 1 / 3 + 0 + 1) / 4})


@pytest.mark.parametrize("kind, want", [
    ("outcome", [1.0, 0.0, 0.0, 0.0]),
    ("process", [1.0, 1 / 3, 0.0, 1.0]),
])
def test_outcome_and_process_alone(kind, want):
    arith = get_task("arith")
    reward = RLReward(arith, VerifierPRM(arith) if kind == "process" else None, kind)
    assert call(reward, list(COMPLETIONS)) == pytest.approx(want)


def test_code_outcome_runs_in_the_sandbox():
    """R for code is o1-Coder's a·compiles + (1 − a)·pass_rate, from programs run in the jail."""
    code = get_task("code")
    p = code.generate(1, seed=3)[0]
    right = f"Return the result.\n\n```python\n{p.meta['solution']}\n```"
    broken = "Return the result.\n\n```python\ndef f(x):\n    return (\n```"
    wrong = "Return the result.\n\n```python\ndef f(x):\n    return None\n```"
    reward = RLReward(code, None, "outcome")
    got = reward(prompts=[None] * 3, completions=[[{"role": "assistant", "content": t}] for t in (right, broken, wrong)],
                 question=[p.question] * 3, answer=[p.answer] * 3, trainer_state=state(0, 1))
    assert got == pytest.approx([1.0, 0.0, 0.5])  # a = 0.5: compiles, passes none -> 0.5


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("kw, message", [
    ({"stage": "sft", "gamma": 0.5}, "--gamma is for --stage rl"),
    ({"stage": "dpo", "task": "code"}, "--task is for --stage rl"),
    ({"stage": "rl", "batch_size": 6}, "--batch-size 6 must be a multiple of --group-size 4"),
    ({"stage": "rl", "group_size": 1, "batch_size": 1}, "--group-size must be >= 2"),
    ({"stage": "rl", "gamma": 0.0}, "--gamma must be in (0, 1]"),
    ({"stage": "rl", "gamma": 1.5}, "--gamma must be in (0, 1]"),
    ({"stage": "rl", "alpha_end": -0.1}, "--alpha-end must be in [0, 1]"),
    ({"stage": "rl", "alpha_schedule": "cosine"}, "--alpha-schedule must be one of constant, linear, log"),
    ({"stage": "rl", "reward": "best"}, "--reward must be one of phi, outcome, process"),
    ({"stage": "rl", "prm": "trained"}, "--prm trained needs --prm-model"),
    ({"stage": "rl", "temperature": 0.0}, "RL needs > 0"),
    ({"stage": "rl", "batch_size": 4_000_000_000, "group_size": 4}, "--batch-size"),
    ({"stage": "rl", "alpha_start": float("nan")}, "--alpha-start must be in [0, 1]"),
    ({"stage": "dpo", "beta": 0.0}, "--beta must be"),
    ({"stage": "sft", "test_data": Path("t.jsonl")}, "--test-data is for --stage rl"),
    ({"stage": "rl", "test_steps": 5}, "--test-steps is for --test-data"),
    ({"stage": "rl", "test_data": Path("t.jsonl"), "test_steps": 0}, "--test-steps must be >= 1"),
])
def test_rl_flags_refused(kw, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(data=[Path("p.jsonl")], out=Path("o"), **kw)
    assert message in str(err.value)


@pytest.mark.parametrize("task, prm", [("arith", "verifier"), ("math", "rollout"), ("code", "tests")])
def test_rl_defaults_to_the_tasks_own_prm_and_trls_kl(task, prm):
    cfg = TrainConfig("rl", [Path("p.jsonl")], Path("o"), task=task)
    assert (cfg.prm, cfg.beta, cfg.lr) == (prm, 0.04, 1e-6)
    assert TrainConfig("rl", [Path("p.jsonl")], Path("o"), beta=0.0).beta == 0.0  # no KL term
    assert TrainConfig("rl", [Path("p.jsonl")], Path("o"), task=task).model == ("embedded-code" if task == "code" else "embedded")


def test_cli_refuses_a_bad_problems_file_naming_its_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "question": "1 + 2", "answer": "3"}\n{"id": "a", "question": "2 + 2", "answer": "4"}\n')
    result = run("train", "--stage", "rl", "--data", bad, "--out", tmp_path / "rl")
    assert result.exit_code == 1
    assert f"{bad}:2: duplicate id 'a'" in result.output
    assert not (tmp_path / "rl").exists() and not staging_folder(tmp_path / "rl").exists()
    good = write_problems(tmp_path / "good.jsonl", n=2)
    result = run("train", "--stage", "rl", "--data", good, "--test-data", bad, "--out", tmp_path / "rl")
    assert result.exit_code == 1 and f"{bad}:2: duplicate id 'a'" in result.output
    assert not (tmp_path / "rl").exists() and not staging_folder(tmp_path / "rl").exists()


# ---------------------------------------------------------------- real GRPO steps

TINY = dict(batch_size=4, group_size=2, max_new_tokens=64, lr=1e-3, save_steps=1, seed=0)


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_a_few_steps_change_the_weights_and_record_the_reward_curve(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=4)
    out = tmp_path / "rl"
    record = run_train(TrainConfig("rl", [problems], out, max_steps=2, **TINY))
    before, after = weights(EMBEDDED_PATH), weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    saved = json.loads((out / "train.json").read_text())
    curve = saved["reward_curve"]
    assert [c["step"] for c in curve] == [1, 2] and saved["steps"] == 2 and saved["resumed_from_step"] is None
    for c in curve:  # the means of real verdicts on 4 completions: multiples of 1/4
        assert 0 <= c["outcome"] <= 1 and (4 * c["outcome"]).is_integer()
        assert c["answers_extracted"] > 0  # the embedded policy states answers
    assert curve[0]["alpha"] == 1.0 and curve[1]["alpha"] == pytest.approx(0.75)  # linear 1 -> 0.5 over 2 steps
    assert "process" in curve[1] and "process" not in curve[0]  # α = 1 needs no PRM call
    assert (out / "reward.png").stat().st_size > 0 and (out / "config.json").is_file()
    assert not staging_folder(out).exists() and not (out / "rl-run.json").exists()
    assert record["reward_curve"] == curve


def interrupt_after_checkpoint(monkeypatch, step: int) -> None:
    """Ctrl-C (KeyboardInterrupt in the main thread, in the training loop) right after
    checkpoint-`step` is saved: the trainer's own save runs, then the interrupt — at that step
    however loaded the machine is (a watcher thread polling for the folder could miss it)."""
    from trl import GRPOTrainer

    save = GRPOTrainer._save_checkpoint

    def save_then_interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if self.state.global_step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(GRPOTrainer, "_save_checkpoint", save_then_interrupt)


def test_test_accuracy_is_the_evals_greedy_accuracy_of_the_model_at_that_step(tmp_path):
    """--test-data: step 0 is the start model's greedy accuracy as `journey eval` measures it; then
    every --test-steps steps and the last step; each a real verdict on 4 problems."""
    problems, test = write_problems(tmp_path / "p.jsonl", n=4), write_problems(tmp_path / "t.jsonl", n=4, seed=9)
    record = run_train(TrainConfig("rl", [problems], tmp_path / "rl", max_steps=3, test_data=test, test_steps=2,
                                   **TINY))
    curve = record["test_curve"]
    assert [c["step"] for c in curve] == [0, 2, 3]
    assert all((4 * c["accuracy"]).is_integer() and 0 <= c["answers_extracted"] <= 1 for c in curve)
    metrics = tmp_path / "eval.json"
    result = run("eval", "--model", "embedded", "--problems", test, "--samples", 1, "--max-new-tokens", 64,
                 "--out", metrics)
    assert result.exit_code == 0, result.output
    evaluated = json.loads(metrics.read_text())
    assert (curve[0]["accuracy"], curve[0]["answers_extracted"]) == (evaluated["accuracy"], evaluated["answers_extracted"])
    assert not (tmp_path / "rl" / "test-curve.json").exists()
    plain = run_train(TrainConfig("rl", [problems], tmp_path / "plain", max_steps=3, **TINY))
    assert plain["reward_curve"] == record["reward_curve"]  # measuring draws no random numbers


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    problems = write_problems(tmp_path / "p.jsonl", n=4)
    out = tmp_path / "rl"
    cfg = dict(max_steps=3, test_data=write_problems(tmp_path / "t.jsonl", n=2, seed=9), test_steps=2, **TINY)
    with monkeypatch.context() as m:
        interrupt_after_checkpoint(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run_train(TrainConfig("rl", [problems], out, **cfg))
    assert not out.exists() and (staging_folder(out) / "trainer" / "checkpoint-1").is_dir()
    assert not (staging_folder(out) / "trainer" / "checkpoint-2").exists()
    record = run_train(TrainConfig("rl", [problems], out, **cfg))
    assert record["resumed_from_step"] == 1 and record["steps"] == 3
    assert [c["step"] for c in record["reward_curve"]] == [1, 2, 3]  # the log of the steps before, kept
    assert [c["step"] for c in record["test_curve"]] == [0, 2, 3]  # step 0 measured before the interruption
    uninterrupted = run_train(TrainConfig("rl", [problems], tmp_path / "whole", **cfg))
    assert uninterrupted["reward_curve"][:record["resumed_from_step"]] == record["reward_curve"][:record["resumed_from_step"]]


def test_other_flags_start_over(tmp_path, caplog, monkeypatch):
    problems = write_problems(tmp_path / "p.jsonl", n=4)
    out = tmp_path / "rl"
    with monkeypatch.context() as m:
        interrupt_after_checkpoint(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run_train(TrainConfig("rl", [problems], out, max_steps=3, **TINY))
    record = run_train(TrainConfig("rl", [problems], out, max_steps=1, **{**TINY, "gamma": 0.9}))
    assert record["resumed_from_step"] is None and record["steps"] == 1
    assert "made with other flags or data; starting over" in caplog.text


# ---------------------------------------------------------------- selfplay --policy-update


@pytest.mark.slow
def test_selfplay_round_with_rl(tmp_path):
    """--policy-update sft+rl: the round's SFT model is trained by RL with the round's PRM."""
    train, test = write_problems(tmp_path / "train.jsonl", n=4, seed=3), write_problems(tmp_path / "test.jsonl", n=2, seed=9)
    out = tmp_path / "sp"
    result = run("selfplay", "--problems", train, "--test", test, "--out-dir", out, "--rounds", "1",
                 "--policy-update", "sft+rl", "--max-steps", "1", "--depth", "5", "--pair-samples", "3",
                 "--eval-samples", "2", "--batch-size", "4", "--group-size", "2", "--max-new-tokens", "64",
                 "--dpo-problems", "2")
    assert result.exit_code == 0, result.output
    row = json.loads((out / "round-0" / "round.json").read_text())
    assert row["policy_update"] == "sft+rl" and row["dpo_pairs"] == 0 and len(row["rl_reward_first_last"]) == 2
    rl = json.loads((out / "round-0" / "policy" / "train.json").read_text())
    assert rl["base_model"] == str(out / "round-0" / "sft") and rl["config"]["prm"] == "verifier"
    assert rl["rows"] == 2 and not (out / "round-0" / "pairs.jsonl").exists()


# ---------------------------------------------------------------- every task


@pytest.mark.slow
@pytest.mark.parametrize("task, model, prm", [("math", "embedded", "rollout"), ("code", "embedded-code", "tests")])
def test_rl_on_math_and_code_with_a_rolling_prm(tmp_path, task, model, prm):
    """One step with α = 0.5 from the first step, so the PRM (rollouts; code: programs run in the
    sandbox) and the task's outcome both give the reward."""
    problems = tmp_path / "p.jsonl"
    assert run("problems", "--task", task, "--n", 2, "--seed", 3, "--out", problems).exit_code == 0
    out = tmp_path / "rl"
    record = run_train(TrainConfig("rl", [problems], out, task=task, model=model, max_steps=1, batch_size=4,
                                   group_size=2, max_new_tokens=160 if task == "code" else 48, rollouts=1,
                                   alpha_schedule="constant", alpha_start=0.5, save_steps=1))
    assert record["config"]["prm"] == prm
    (step,) = record["reward_curve"]
    assert step["alpha"] == 0.5 and "process" in step and 0 <= step["reward"] <= 1
    assert (out / "model.safetensors").is_file()
