"""The `train` stage: thin wrappers on TRL's SFTTrainer, DPOTrainer and (RL) GRPOTrainer.
(`--stage prm`: journey.stages.train_prm; `--stage rl`: journey.stages.train_rl; `--stage tcg`: journey.stages.train_tcg.)

    journey train --stage sft --data data/sft_journey.jsonl --model embedded --out ckpt/journey
    journey train --stage dpo --data data/dpo_pairs.jsonl --model ckpt/journey --out ckpt/dpo
    journey train --stage rl --data train.jsonl --model ckpt/journey --out ckpt/rl   # journey.stages.train_rl

SFT rows are `{"messages": [...]}`; they are handed to TRL as conversational prompt-completion
rows (prompt = every message but the last, completion = the last assistant message), so the
loss falls on the assistant's answer only and any chat template works — not just ones marked
with `{% generation %}`. With `--mask-wrong-steps`, rows are tokenized here instead and the
character spans in their `mask_spans` (derive-longthought's wrong steps) get no loss either:
the model learns the reflection and the correction, not the mistake. DPO rows are `{"prompt", "chosen", "rejected"}` as TRL takes them.
Both run on a CPU (`use_cpu`, no bf16) or on GPUs unchanged (`accelerate launch` for several).

The run trains into `.OUT.partial/` and renames it to `OUT/` only when the checkpoint is saved
(`journey.runtime.io.atomic_folder`), so an interrupted run or a full disk never leaves a folder
that looks finished; with `--overwrite` the old
`OUT/` stays until the new one is in place, and a second run on the same `OUT/` is refused. `OUT/` holds a normal HF
checkpoint (LoRA adapters are merged in), `train.json` (provenance: data files and hashes,
config, versions, the loss curve) and `loss.png`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from transformers import AutoConfig, PrinterCallback, TrainerCallback

from journey.config import Stage, TrainConfig
from journey.models.embedded import check_model_path, loading, resolve_model
from journey.models.transformers_policy import check_chat_template
from journey.runtime.io import (
    DataError,
    atomic_folder,
    check_output,
    load_problems,
    output_lock,
    read_jsonl,
    recover_folder,
    staging_folder,
    write_text_atomic,
)
from journey.runtime.progress import progress_bar
from journey.runtime.provenance import provenance
from journey.stages.train_prm import check_prm_row
from journey.stages.train_rl import (
    RUN_RECORD,
    TEST_CURVE,
    checkpoints,
    load_rl_problems,
    plot_rewards,
    reward_curve,
    train_rl,
)

log = logging.getLogger(__name__)

REQUIRED = {"sft": ("messages",), "dpo": ("prompt", "chosen", "rejected")}


ROLES = ("system", "user", "assistant")


def check_messages(value, where: str, key: str) -> str | None:
    """Why `value` is not a list of chat messages ({"role", "content": str}), or None if it is."""
    if not isinstance(value, list) or not value:
        return f"{where}: {key!r} must be a non-empty list of messages"
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return (f"{where}: {key!r} message {i} must be {{\"role\": one of {', '.join(ROLES)}, "
                    f"\"content\": a string}}, got {json.dumps(m)[:60]}")
    return None


def check_spans(spans, text: str, where: str) -> list:
    """`mask_spans`: [start, end) character spans inside the answer, or DataError."""
    if spans is None:
        return []
    ok = isinstance(spans, list) and all(
        isinstance(sp, list) and len(sp) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in sp)
        and 0 <= sp[0] <= sp[1] <= len(text) for sp in spans)
    if not ok:
        raise DataError(f"{where}: 'mask_spans' must be [start, end] character spans inside the answer")
    return spans


def sft_row(row: dict, where: str) -> dict:
    msgs = row["messages"]
    problem = check_messages(msgs, where, "messages")
    if problem:
        raise DataError(problem)
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: 'messages' must end with an assistant message")
    return {"prompt": msgs[:-1], "completion": msgs[-1:],
            "mask_spans": check_spans(row.get("mask_spans"), msgs[-1]["content"], where)}


def dpo_row(row: dict, where: str) -> tuple[dict, str]:
    """A DPO row and its kind: 'text' (all three strings) or 'chat' (lists of messages)."""
    values = {k: row[k] for k in REQUIRED["dpo"]}
    if all(isinstance(v, str) for v in values.values()):
        if not values["chosen"] or not values["rejected"]:
            raise DataError(f"{where}: 'chosen' and 'rejected' must not be empty")
        return values, "text"
    for k, v in values.items():
        problem = check_messages(v, where, k)
        if problem:
            raise DataError(problem + " (or make prompt, chosen and rejected all strings)")
    return values, "chat"


def load_rows(stage: Stage, files: list[Path], objective: str = "pointwise") -> list[dict]:
    """Every row of the data files, checked for the stage's keys and types (DataError naming
    file:line): SFT messages are {role, content: str} ending with the assistant; DPO rows are
    all strings or all message lists, the same kind in every row (TRL takes one format)."""
    if stage == "tcg":  # code problems, turned into SFT and DPO rows by the stage itself
        from journey.stages.train_tcg import load_tcg_problems

        return load_tcg_problems(files)
    rows, kinds = [], {}
    for path in files:
        n = 0
        for lineno, row in read_jsonl(path):
            where = f"{path}:{lineno}"
            missing = [k for k in REQUIRED.get(stage, ()) if k not in row]
            if missing:
                raise DataError(f"{where}: a {stage} row needs {', '.join(map(repr, missing))}")
            if stage == "prm":
                rows.append(check_prm_row(row, objective, where))
                delimiter = row.get("step_delimiter", "\n")
                kinds.setdefault(delimiter, where)
                if len(kinds) > 1:
                    other, theirs = next((w, d) for d, w in kinds.items() if d != delimiter)
                    raise DataError(f"{where}: steps end with {delimiter!r}, while {other} ends them with "
                                    f"{theirs!r}; one PRM learns one delimiter")
            elif stage == "sft":
                rows.append(sft_row(row, where))
            else:
                values, kind = dpo_row(row, where)
                first = kinds.setdefault(kind, where)
                if len(kinds) > 1:
                    other = next(w for k, w in kinds.items() if k != kind)
                    raise DataError(f"{first}: a {kind} DPO row, while {other} is not; use one format")
                rows.append(values)
            n += 1
        if n == 0:
            raise DataError(f"{path}: no rows in the file")
    return rows


def tokenize_masked(tok, row: dict, max_length: int) -> dict:
    """input_ids and labels for one prompt-completion row, with -100 on the prompt and on the
    completion's `mask_spans` (character spans of its wrong steps)."""
    prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert full.startswith(prompt), "the chat template must extend the prompt with the completion"
    at = full.index(row["completion"][0]["content"], len(prompt))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True, truncation=True,
              max_length=max_length)
    spans = [(at + a, at + b) for a, b in row["mask_spans"]]
    labels = [-100 if start < len(prompt) or any(a <= start < b for a, b in spans) else tid
              for tid, (start, _) in zip(enc["input_ids"], enc["offset_mapping"])]
    return {"input_ids": enc["input_ids"], "labels": labels}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def trl_args(cfg: TrainConfig, output_dir: Path):
    """The SFTConfig or DPOConfig for `cfg` (CPU when there is no GPU)."""
    import torch
    from trl import DPOConfig, SFTConfig

    # TRL's configs still set transformers' deprecated `gradient_checkpointing` alias themselves.
    warnings.filterwarnings("ignore", message=".*checkpointing.* is deprecated", category=FutureWarning)
    on_gpu = torch.cuda.is_available()
    common = dict(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length, seed=cfg.seed,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(), gradient_checkpointing=on_gpu,
        disable_tqdm=True,
    )
    if cfg.stage == "sft":
        return SFTConfig(**common, **cfg.extra)
    return DPOConfig(**common, beta=cfg.beta, loss_type=[cfg.loss_type], **cfg.extra)


def tokenizer_and_peft(cfg: TrainConfig):
    """The start model's tokenizer (pad = eos when it has no pad token) and the LoRA config
    (None without --lora)."""
    import datasets
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()  # one bar for the run is enough
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    return tok, peft_config


def build_trainer(cfg: TrainConfig, rows: list[dict], output_dir: Path):
    from datasets import Dataset
    from trl import DPOTrainer, SFTTrainer

    model_path = resolve_model(cfg.model)
    tok, peft_config = tokenizer_and_peft(cfg)
    if cfg.stage == "sft" or any(not isinstance(r["prompt"], str) for r in rows):  # chat rows
        check_chat_template(tok, cfg.model, model_path)
    if cfg.stage == "sft" and cfg.mask_wrong_steps:
        rows = [tokenize_masked(tok, r, cfg.max_length) for r in rows]  # TRL keeps given labels
    else:
        rows = [{k: v for k, v in r.items() if k != "mask_spans"} for r in rows]
    dataset = Dataset.from_list(rows)
    args = trl_args(cfg, output_dir)
    if cfg.stage == "sft":
        trainer = SFTTrainer(model=model_path, args=args, train_dataset=dataset, processing_class=tok,
                             peft_config=peft_config)
    else:
        trainer = DPOTrainer(model=model_path, ref_model=None, args=args, train_dataset=dataset,
                             processing_class=tok, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)  # our bar shows the loss; the full log goes to train.json
    trainer.add_callback(RichProgress(f"train {cfg.stage}"))
    return trainer


class RichProgress(TrainerCallback):
    """A rich progress bar over optimizer steps, showing the latest loss."""

    def __init__(self, label: str):
        self.label, self.ctx, self.advance = label, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.ctx = progress_bar(self.label, state.max_steps, "steps")
        self.advance = self.ctx.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        self.advance(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.advance(0, info=f"loss {float(logs['loss']):.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.ctx.__exit__(None, None, None)


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")  # a folder holding these is data, never overwritten


def run_train(cfg: TrainConfig) -> dict:
    """Train, save a checkpoint to `cfg.out`, and return the provenance record.

    One run per `--out` at a time (a lock). The run trains into `.OUT.partial/` (`atomic_folder`);
    only a saved checkpoint replaces `OUT/`, and an existing `OUT/` (with `--overwrite`) is kept
    until then. A staging folder left by a killed run is removed first; a failed or interrupted
    run removes its own, and a full disk is one line naming `--out`. RL keeps its staging folder
    while it holds a saved checkpoint (killed or interrupted), to resume from (journey.stages.train_rl).
    """
    rows = load_rl_problems(cfg.data) if cfg.stage == "rl" else load_rows(cfg.stage, cfg.data, cfg.objective)
    if cfg.test_data is not None:
        load_problems(cfg.test_data)  # its errors (file:line) before anything is written
    check_model_path(cfg.model)
    out = check_output(Path(cfg.out), folder=True,
                       inputs={"--model": cfg.model, **{f"--data {p}": p for p in cfg.data}})
    with loading("--model", cfg.model):  # reachable (a folder here, or on the hub) before any write
        try:
            AutoConfig.from_pretrained(resolve_model(cfg.model))
        except ValueError as err:  # a folder that is not a model (no model_type, ...)
            raise ValueError(f"--model {cfg.model}: not a model checkpoint ({str(err).splitlines()[0]})") from None
    with output_lock(out):
        recover_folder(out)
        if out.exists() and not cfg.overwrite:
            raise DataError(f"--out {out} already exists; pass --overwrite or pick another folder")
        data = sorted(f.name for f in out.glob("*") if f.name.endswith(DATA_SUFFIXES)) if out.is_dir() else []
        if data and not (out / "config.json").is_file():
            raise DataError(f"--out {out}: the folder holds data files ({', '.join(data[:3])}), not a checkpoint; "
                            "--overwrite replaces only an earlier checkpoint: pick another folder")
        resumable = (lambda d: bool(checkpoints(d))) if cfg.stage == "rl" else None  # RL goes on from its checkpoints
        with atomic_folder(out, lambda d: (d / "config.json").is_file(), "--out", resumable) as staging:
            record = train_into(cfg, rows, staging)
    return record


def interrupted_note(cfg: TrainConfig) -> str:
    """What an interrupted `train` kept (for the one line it prints)."""
    partial = staging_folder(Path(cfg.out))
    if cfg.stage == "rl" and checkpoints(partial):
        return (f"{cfg.out} is as it was; the run's checkpoints are in {partial}/ — rerun the same "
                "command to resume from the last one")
    return f"the unfinished checkpoint was removed; {cfg.out} is as it was"


def train_into(cfg: TrainConfig, rows: list[dict], folder: Path) -> dict:
    """Train and save the checkpoint, train.json and loss.png into `folder`."""
    if cfg.stage == "tcg":  # SFT, then DPO: two calls of this function (journey.stages.train_tcg)
        from journey.stages.train_tcg import train_tcg_into

        return train_tcg_into(cfg, rows, folder, train_into)
    t0 = time.perf_counter()
    data = {str(p): sha256(p) for p in cfg.data}
    extra: dict = {}
    if cfg.stage == "rl":
        tok, peft_config = tokenizer_and_peft(cfg)
        check_chat_template(tok, cfg.model, resolve_model(cfg.model))  # RL prompts are chat messages
        trainer, result, resumed, tested = train_rl(cfg, rows, folder, tok, peft_config, [RichProgress("train rl")], data)
        save_policy(trainer, folder, cfg)
        curve = reward_curve(trainer.state.log_history)
        extra = {"resumed_from_step": resumed, "reward_curve": curve,
                 **({"test_curve": tested} if tested is not None else {})}
        plot_rewards(curve, folder / "reward.png", f"rl ({cfg.reward}, prm {cfg.prm}) on "
                     f"{', '.join(p.name for p in cfg.data)}", tested)
    elif cfg.stage == "prm":
        from journey.stages.train_prm import build_prm_trainer, save_prm

        trainer, delimiter = build_prm_trainer(cfg, rows, folder / "trainer", [RichProgress("train prm")])
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
        save_prm(trainer, folder, delimiter, cfg)
    else:
        trainer = build_trainer(cfg, rows, folder / "trainer")
        result = trainer.train()
        save_policy(trainer, folder, cfg)
    shutil.rmtree(folder / "trainer", ignore_errors=True)
    for done in (RUN_RECORD, TEST_CURVE):
        (folder / done).unlink(missing_ok=True)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    record = provenance(
        f"train --stage {cfg.stage}",
        {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items() if k != "data"},
        data=data,
        base_model=cfg.model,
        rows=len(rows),
        steps=trainer.state.global_step,
        train_loss=result.training_loss,
        seconds=round(time.perf_counter() - t0, 1),
        loss_curve=losses,
        **extra,
    )
    write_text_atomic(folder / "train.json", json.dumps(record, indent=2, default=str) + "\n")
    plot_losses(losses, folder / "loss.png", f"{cfg.stage} on {', '.join(p.name for p in cfg.data)}")
    return record


def save_policy(trainer, folder: Path, cfg: TrainConfig) -> None:
    """The trained policy as a plain HF checkpoint in `folder` (LoRA adapters merged in)."""
    model = trainer.model
    if cfg.lora:
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    trainer.processing_class.save_pretrained(folder)


def plot_losses(losses: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([x["step"] for x in losses], [x["loss"] for x in losses], lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
