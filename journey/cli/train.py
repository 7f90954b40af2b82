"""Commands that train: train (SFT, DPO, PRM) and selfplay (rounds of search -> derive -> train).

    journey train --stage sft --data data/sft_journey.jsonl --out ckpt/journey
    journey selfplay --problems train.jsonl --test test.jsonl --out-dir sp/ --rounds 2
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from journey.cli.app import console, summary_table, user_errors
from journey.cli.options import Section, command, make
from journey.config import (
    SELFPLAY_DERIVE_DEFAULTS,
    SELFPLAY_SETS,
    BuildTreeConfig,
    DeriveConfig,
    SelfplayConfig,
    TrainConfig,
)


@command(TrainConfig)
def train(values: dict) -> None:
    """Fine-tune with TRL (SFT on long thoughts or shortcuts, DPO on preference pairs), or train a PRM."""
    from journey.stages.train import interrupted_note, run_train

    cfg = make(TrainConfig, values)
    with user_errors(lambda: interrupted_note(cfg)):
        record = run_train(cfg)
    curve = record["loss_curve"]
    rows = [("rows" if cfg.stage != "rl" else "problems", f"{record['rows']:,}"),
            ("steps", f"{record['steps']:,}" + (f" (resumed at {record['resumed_from_step']})"
                                                if record.get("resumed_from_step") else "")),
            ("loss: first -> last", f"{curve[0]['loss']:.4f} -> {curve[-1]['loss']:.4f}" if curve else "-")]
    if cfg.stage == "rl":
        rewards = record["reward_curve"]
        ends = lambda key: " -> ".join(f"{c[key]:.3f}" for c in (rewards[0], rewards[-1]))  # noqa: E731
        rows += [("reward (phi): first -> last", ends("reward") if rewards else "-"),
                 ("outcome R: first -> last", ends("outcome") if rewards else "-")]
    files = "checkpoint, train.json, loss.png" + (", reward.png" if cfg.stage == "rl" else "")
    console.print(summary_table(f"train --stage {cfg.stage} -> {cfg.out}", [
        *rows, ("time", f"{record['seconds']:,.1f} s"), ("files", f"{cfg.out}/ ({files})")]))


@command(SelfplayConfig,
         Section(BuildTreeConfig, "tree", skip=SELFPLAY_SETS["tree"]),
         Section(DeriveConfig, "derive", skip=SELFPLAY_SETS["derive"], defaults=SELFPLAY_DERIVE_DEFAULTS),
         Section(TrainConfig, "train", skip=SELFPLAY_SETS["train"]))
def selfplay(values: dict) -> None:
    """Self-play (o1-Coder): each round builds trees with its policy and PRM, derives data, trains the next policy (SFT, DPO) and PRM, and evaluates both.

    Every build-tree, derive-longthought and train option that a round does not set itself is an
    option here too (e.g. --search mcts --c-puct 2 --rollout policy, --trial-count uniform, --lora).
    """
    from journey.stages.selfplay import run_selfplay

    cfg = make(SelfplayConfig, values)
    with user_errors(lambda: f"finished rounds are kept in {cfg.out_dir}; rerun the same command to resume"):
        rows = run_selfplay(cfg, on_round=lambda row: console.print(
            f"round {row['round']}: accuracy {row['accuracy']:.3f}, PRM F1 {row['prm_f1_right']:.3f}"))
    console.print(selfplay_table(rows, cfg.out_dir))


def selfplay_table(rows: list[dict], out_dir: Path) -> Table:
    k = next((key for key in rows[0] if key.startswith("pass@")), "pass@k") if rows else "pass@k"
    table = Table(title=escape(f"selfplay -> {out_dir}"), title_justify="left")
    for col in ("round", "trees solved", "steps / tree", "SFT rows", "policy update", "accuracy ± s.e.", k,
                "PRM F1 (right / wrong)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["round"]), f"{r['trees_solved']} / {r['trees']}", f"{r['steps_generated_per_tree']:.1f}",
                      str(r["sft_rows"]), policy_update(r), f"{r['accuracy']:.3f} ± {r['accuracy_se']:.3f}",
                      "-" if r.get(k) is None else f"{r[k]:.3f}", f"{r['prm_f1_right']:.3f} / {r['prm_f1_wrong']:.3f}")
    return table


def policy_update(row: dict) -> str:
    """What made the round's next policy: its DPO pairs, or RL's mean reward first -> last."""
    rl = row.get("rl_reward_first_last")
    if row.get("policy_update", "sft+dpo") == "sft+dpo":
        return f"DPO, {row['dpo_pairs']} pairs"
    return f"RL, φ {rl[0]:.2f} -> {rl[1]:.2f}" if rl else "RL"
