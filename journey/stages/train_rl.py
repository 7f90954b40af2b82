"""`journey train --stage rl`: o1-Coder's step 5, RL on the policy with process + outcome rewards.

    journey train --stage rl --data train.jsonl --model ckpt/journey --out ckpt/rl --max-steps 100
    journey train --stage rl --task code --data code.jsonl --model embedded-code --out ckpt/rl-code

TRL's GRPOTrainer samples --group-size completions per problem of --data (a problems file: id,
question, answer), rewards each with `journey.models.rewards.RLReward` — o1-Coder's
φ = α(t)·R + (1 − α(t))·(1/m)·Σ_j γ^j·r_j, R from the task's answer check (code: a·compiles +
(1 − a)·pass_rate, the program run in the bubblewrap sandbox, never outside it), r_j from --prm
(verifier, rollout, trained, tests, ...) — and updates the policy on the group-relative
advantages with a KL term (--beta) to the start model.

PRMs that roll out (rollout, tests) or ask an LLM (judge) use the START model, frozen: the
process reward measures steps against a fixed yardstick while the policy moves.

The run is `journey train`'s (journey.stages.train: a lock on --out, the work in .OUT.partial/,
renamed to OUT/ only when the model is saved) with one addition: every --save-steps steps a
checkpoint goes to .OUT.partial/trainer/, and a run that was killed or interrupted resumes from
the last one when rerun with the same flags and data (`rl-run.json` records them; other flags
start over, saying so). train.json holds the reward curve: per step the mean φ, R, process
term, α and the share of completions with an extracted answer; reward.png plots it. With
--test-data, train.json's test_curve holds the greedy accuracy on those problems at step 0,
every --test-steps steps and at the end (`test_curve_callback`), plotted beside the rewards.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

from journey.config import TrainConfig
from journey.runtime.io import DataError, load_problems, write_text_atomic
from journey.tasks.base import Problem

log = logging.getLogger(__name__)

RUN_RECORD = "rl-run.json"  # in .OUT.partial/: the flags and data a resumable run was started with
TEST_CURVE = "test-curve.json"  # in .OUT.partial/: --test-data accuracies so far (a resume keeps them)
CURVE_KEYS = {"reward": "reward", "outcome": "rl/outcome", "process": "rl/process", "alpha": "rl/alpha",
              "answers_extracted": "rl/answers_extracted", "kl": "kl", "mean_tokens": "completions/mean_length"}
# Flags that change where or how long a run goes, not what its steps compute: a resume may differ in them.
RESUMABLE_CHANGES = ("overwrite", "save_steps", "unsafe_no_sandbox")


def load_rl_problems(files: list[Path]) -> list[Problem]:
    """The problems of every --data file (DataError naming file:line for a bad row, or an id
    that two files share)."""
    problems, where = [], {}
    for path in files:
        for p in load_problems(path):
            if p.id in where:
                raise DataError(f"{path}:{p.line}: duplicate id {p.id!r} (also in {where[p.id]})")
            where[p.id] = f"{path}:{p.line}"
            problems.append(p)
    return problems


def run_record(cfg: TrainConfig, data_hashes: dict) -> dict:
    """What a resumed run must share with the run it resumes."""
    flags = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()
             if k not in RESUMABLE_CHANGES and k != "data"}
    return {"format": "journey.rl-run/v1", "config": flags, "data": data_hashes}


def checkpoints(folder: Path) -> list[Path]:
    """The trainer's saved checkpoints in `folder`, oldest first."""
    found = [p for p in (folder / "trainer").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resumable(partial: Path, record: dict) -> bool:
    """Whether `partial` (.OUT.partial/) holds a checkpoint of a run with this `record`."""
    try:
        kept = json.loads((partial / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return kept == record and bool(checkpoints(partial))


def test_curve_callback(cfg: TrainConfig, task, folder: Path, resumed: int | None):
    """The TrainerCallback that measures --test-data's greedy accuracy (None without --test-data).

    Before the first step (step 0), at every --test-steps-th step and after the last, the policy
    as it is then answers every test problem greedily (`TransformersPolicy.around` the trainer's
    model; --max-new-tokens) and the eval's scoring (journey.stages.evaluate.score) grades it.
    Greedy decoding draws no random numbers, so the measurement leaves the run's sampling as it
    was. Each point is written to FOLDER/test-curve.json at once, so a resumed run keeps the
    points up to the step it resumes from.
    """
    if cfg.test_data is None:
        return None
    from transformers import TrainerCallback

    from journey.models.base import Prefix, SamplingConfig
    from journey.models.transformers_policy import TransformersPolicy
    from journey.stages.evaluate import score

    problems = load_problems(cfg.test_data)
    path = folder / TEST_CURVE
    kept = json.loads(path.read_text()) if resumed and path.is_file() else []
    curve = [c for c in kept if c["step"] <= (resumed or 0)]

    class TestAccuracy(TrainerCallback):
        def __init__(self):
            self.curve = curve

        def measure(self, state, model, tokenizer) -> None:
            if any(c["step"] == state.global_step for c in self.curve):
                return
            was_training = model.training
            model.eval()
            policy = TransformersPolicy.around(model, tokenizer, task.step_delimiter,
                                               SamplingConfig(temperature=0.0, top_p=1.0))
            prefixes = [Prefix(task.messages(p.question), [], 0) for p in problems]
            greedy = [row[0] for row in policy.complete(prefixes, 1, cfg.max_new_tokens)]
            model.train(was_training)
            metrics, _ = score(task, problems, greedy, None)
            self.curve.append({"step": state.global_step, **{k: metrics[k] for k in
                                                             ("accuracy", "accuracy_se", "answers_extracted", "mean_tokens")}})
            write_text_atomic(path, json.dumps(self.curve) + "\n")

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step == 0:
                self.measure(state, model, processing_class)

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step % cfg.test_steps == 0 or state.global_step == state.max_steps:
                self.measure(state, model, processing_class)

    return TestAccuracy()


def rl_rollout_policy(cfg: TrainConfig, task):
    """The frozen start model that rollout and tests PRMs roll out, and a judge without its own
    --prm-model asks (None for the others)."""
    from journey.models.base import SamplingConfig
    from journey.models.registry import ROLLING_PRMS, load_policy

    uses_policy = cfg.prm in ROLLING_PRMS or (cfg.prm == "judge" and not cfg.prm_model)
    if cfg.reward == "outcome" or not uses_policy:
        return None
    return load_policy(cfg.model, task.step_delimiter, SamplingConfig(), "transformers")


def build_rl_trainer(cfg: TrainConfig, task, problems: list[Problem], folder: Path, tok, peft_config, callbacks):
    """TRL's GRPOTrainer on `task`'s `problems`, rewarded by φ (journey.models.rewards.RLReward)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from journey.models.embedded import resolve_model
    from journey.models.registry import build_prm
    from journey.models.rewards import RLReward

    prm = None
    if cfg.reward != "outcome":
        prm = build_prm(cfg.prm, task, rl_rollout_policy(cfg, task), cfg.prm_model, cfg.rollouts,
                        rollout_tokens=cfg.max_new_tokens)
    reward = RLReward(task, prm, cfg.reward, cfg.alpha_schedule, cfg.alpha_start, cfg.alpha_end, cfg.gamma)
    dataset = Dataset.from_list([{"prompt": task.messages(p.question), "question": p.question, "answer": p.answer}
                                 for p in problems])
    # TRL and transformers still call the deprecated `gradient_checkpointing` names themselves.
    warnings.filterwarnings("ignore", message=".*checkpointing.* is deprecated", category=FutureWarning)
    on_gpu = torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, seed=cfg.seed, logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, report_to="none",
        use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(), disable_tqdm=True,
        num_generations=cfg.group_size, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, beta=cfg.beta, **cfg.extra)
    trainer = GRPOTrainer(model=resolve_model(cfg.model), reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tok, peft_config=peft_config, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the run; the log goes to train.json
    return trainer


def train_rl(cfg: TrainConfig, problems: list[Problem], folder: Path, tok, peft_config, callbacks,
             data_hashes: dict):
    """Train (resuming from the last checkpoint in `folder` when it is this run's); returns the
    trainer, TRL's result, the step it resumed from (None: from the start) and the --test-data
    accuracy curve (None without --test-data)."""
    record = run_record(cfg, data_hashes)
    if not resumable(folder, record):
        for stale in (folder / "trainer", folder / RUN_RECORD):
            if stale.exists():
                log.warning("%s: made with other flags or data; starting over", stale)
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        write_text_atomic(folder / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    last = checkpoints(folder)
    start = last[-1] if last else None
    if start:
        log.warning("resuming from %s", start)
    resumed = int(start.name.split("-")[-1]) if start else None
    from journey.tasks import task_of

    task = task_of(cfg)
    tester = test_curve_callback(cfg, task, folder, resumed)
    trainer = build_rl_trainer(cfg, task, problems, folder, tok, peft_config, callbacks + ([tester] if tester else []))
    result = trainer.train(resume_from_checkpoint=str(start) if start else None)
    return trainer, result, resumed, (tester.curve if tester else None)


def reward_curve(log_history: list[dict]) -> list[dict]:
    """Per logged step, the reward means (keys of CURVE_KEYS that the step has)."""
    return [{"step": h["step"], **{k: round(float(h[src]), 5) for k, src in CURVE_KEYS.items() if src in h}}
            for h in log_history if "reward" in h]


def plot_rewards(curve: list[dict], path: Path, title: str, test_curve: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("reward", "reward (φ)"), ("outcome", "outcome R"), ("process", "process term"),
                       ("alpha", "α(t)")):
        points = [(c["step"], c[key]) for c in curve if key in c]
        if points:
            ax.plot(*zip(*points), lw=1.5 if key == "reward" else 1.0, label=label,
                    ls="--" if key == "alpha" else "-")
    if test_curve:
        ax.plot([c["step"] for c in test_curve], [c["accuracy"] for c in test_curve], "o-", lw=1.5,
                label="test accuracy (greedy)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean over the step's completions")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
