"""`journey selfplay`: search -> derive -> train policy and PRM -> search again (o1-Coder's loop).

    journey selfplay --rounds 2 --problems train.jsonl --test test.jsonl --out-dir selfplay/

Round r (folder `DIR/round-r/`), with policy_r (round 0: `--model`) and PRM_r (round 0:
`--prm`; later rounds: the PRM trained in the round before, `--prm-loop trained`, or always
`--prm`, `--prm-loop fixed`):

1. `trees.jsonl`: build-tree on the train problems with policy_r and PRM_r (beam or MCTS);
2. `data/`: derive-longthought. When PRM_r is not the task's exact verifier and the task has
   one, the trees are first relabelled with it (`trees_exact.jsonl`): PRM_r steers the search,
   ground truth labels the data, so a PRM never trains on its own verdicts;
3. `sft/`: SFT of policy_r on the journey (or shortcut) rows;
4. `pairs.jsonl` + `policy/`: on-policy DPO pairs from the SFT model, then DPO: policy_{r+1}
   (the SFT model itself when no problem gives a pair). With `--policy-update sft+rl` (o1-Coder's
   step 5) the SFT model is instead trained by RL (`train --stage rl`: GRPO, rewarded by
   φ(R, r_1..m) with PRM_r's step scores and the task's outcome) on the first `--dpo-problems`
   train problems (`rl_problems.jsonl`), one pass; `--policy-update rl` skips the SFT;
5. `prm/`: a point-wise PRM on the round's `prm_steps.jsonl`, from policy_r's body: PRM_{r+1};
6. `eval.json` (policy_{r+1} on `--test`) and `prm_eval.json` (PRM_{r+1}'s step verdicts on
   `DIR/test_trees.jsonl`, trees built once on the test problems with the starting policy
   and the exact verifier, so every round is judged on the same steps);
7. `round.json`: the round's row — policy accuracy ± s.e., pass@k, PRM F1, trees solved (a
   correct path by exact labels when the task has a verifier), steps generated — also gathered
   in `DIR/selfplay.json` and shown as a table.

`DIR/selfplay.json` (provenance and every round's row) and a dataset card `DIR/README.md` are
rewritten after every run. Resumable by round: a round with `round.json` is done and skipped; an unfinished round picks up
at its first unfinished step (build-tree and eval resume per problem; a training or derive
output exists only whole). Everything a round made is kept. One run per `--out-dir` (a lock).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from journey.config import (
    BuildTreeConfig,
    DeriveConfig,
    EvalPRMConfig,
    GenerateConfig,
    SamplePairsConfig,
    SelfplayConfig,
    TrainConfig,
)
from journey.models.prm import VerifierPRM
from journey.runtime.cards import write_card
from journey.runtime.io import (
    SELFPLAY_REMEDY,
    DataError,
    check_output,
    load_problems,
    output_lock,
    take_first,
    write_jsonl_atomic,
    write_text_atomic,
)
from journey.runtime.provenance import provenance
from journey.stages.build_tree import load_trees, run_build_tree
from journey.stages.derive import run_derive
from journey.stages.eval_prm import run_eval_prm
from journey.stages.evaluate import run_eval, run_sample_pairs
from journey.stages.train import run_train
from journey.tasks import get_task

ROUND_RECORD = "round.json"


def round_dir(cfg: SelfplayConfig, r: int) -> Path:
    return cfg.out_dir / f"round-{r}"


def relabel_exact(task, src: Path, dst: Path) -> None:
    """Copy trees with every valid step's verdict, score and reason from the task's verifier."""
    trees = load_trees(src)
    verifier = VerifierPRM(task)
    rows = []
    for tree in trees:
        nodes = [n for n in tree.nodes()[1:] if n["verdict"] != "invalid"]
        scores = verifier.score([tree.problem["question"]] * len(nodes), [tree.steps(n["id"]) for n in nodes])
        for n, s in zip(nodes, scores):
            n.update(verdict="correct" if s.ok else "incorrect", score=s.score, reason=s.reason)
        row = tree.to_json()
        row["run"] = {**row["run"], "config": {**row["run"].get("config", {}), "prm": "verifier",
                                               "relabelled_from": row["run"].get("config", {}).get("prm")}}
        rows.append(row)
    write_jsonl_atomic(dst, rows)


def train_once(cfg: TrainConfig) -> None:
    """Train unless a finished checkpoint is already there (a killed run left none)."""
    if not (cfg.out / "train.json").is_file():
        run_train(cfg)


def run_round(cfg: SelfplayConfig, r: int, policy: str, prm: str, prm_model: str | None, held_out: Path) -> dict:
    """One round (see module docstring); returns its row."""
    d = round_dir(cfg, r)
    d.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task)
    trees = d / "trees.jsonl"
    tree_stats = run_build_tree(cfg.tree_config(cfg.problems, trees, policy, prm, prm_model, cfg.seed + r,
                                                limit=cfg.limit), remedy=SELFPLAY_REMEDY)
    labelled, solved = trees, tree_stats.solved
    if prm != "verifier" and task.verify_steps("", []) is not None:
        labelled = d / "trees_exact.jsonl"
        relabel_exact(task, trees, labelled)
        solved = sum(bool(t.clean_correct_leaves()) for t in load_trees(labelled))  # by exact labels
    data = d / "data"
    if not (data / "derive.json").is_file():
        run_derive(DeriveConfig(trees=labelled, out_dir=data, seed=cfg.seed + r, task=cfg.task, **cfg.derive))
    train_common = dict(batch_size=cfg.batch_size, max_steps=cfg.max_steps, seed=cfg.seed + r, overwrite=True)
    sft_data = data / f"sft_{cfg.sft_data}.jsonl"
    sft_rows = count_rows(sft_data)
    next_policy, pair_stats, rl_reward = policy, {"pairs": 0}, None
    if sft_rows and cfg.policy_update != "rl":  # no tree solved: no SFT
        next_policy = sft = d / "sft"
        train_once(TrainConfig("sft", [sft_data], sft, model=policy, epochs=cfg.epochs, lr=cfg.lr, **train_common,
                               **cfg.train_options("sft")))
    if cfg.policy_update == "sft+dpo" and sft_rows:
        pairs = d / "pairs.jsonl"
        pair_stats = run_sample_pairs(SamplePairsConfig(
            model=str(sft), problems=cfg.problems, out=pairs, task=cfg.task, samples=cfg.pair_samples,
            pairs=cfg.pairs, seed=cfg.seed + r, limit=cfg.dpo_problems, **code_options(cfg)), SELFPLAY_REMEDY)
    if pair_stats["pairs"]:
        next_policy = d / "policy"
        train_once(TrainConfig("dpo", [pairs], next_policy, model=str(sft), epochs=1, lr=cfg.dpo_lr, **train_common,
                               **cfg.train_options("dpo")))
    if cfg.policy_update != "sft+dpo":  # o1-Coder's step 5: RL with the round's PRM
        rl_problems = d / "rl_problems.jsonl"
        if not rl_problems.is_file():
            chosen = take_first(load_problems(cfg.problems), cfg.dpo_problems)
            write_jsonl_atomic(rl_problems, [p.to_row() for p in chosen])
        start, next_policy = str(next_policy), d / "policy"
        train_once(cfg.rl_config(rl_problems, next_policy, start, prm, prm_model, cfg.seed + r, overwrite=True))
        curve = json.loads((next_policy / "train.json").read_text())["reward_curve"]
        rl_reward = [curve[0]["reward"], curve[-1]["reward"]] if curve else None
    next_prm = d / "prm"
    train_once(TrainConfig("prm", [data / "prm_steps.jsonl"], next_prm, model=policy, epochs=cfg.prm_epochs,
                           lr=cfg.prm_lr, objective="pointwise", **train_common, **cfg.train_options("prm")))
    m = run_eval(GenerateConfig(model=str(next_policy), problems=cfg.test, out=d / "eval.json", task=cfg.task,
                                samples=cfg.eval_samples, seed=cfg.seed, **code_options(cfg)), SELFPLAY_REMEDY)
    p = run_eval_prm(EvalPRMConfig(trees=held_out, prm_model=str(next_prm), out=d / "prm_eval.json",
                                   task=cfg.task))
    k = cfg.eval_samples
    row = {"round": r, "policy": policy, "prm": prm_model or prm,
           "trees_solved": solved, "trees": tree_stats.trees,
           "steps_generated_per_tree": round(tree_stats.steps_generated / max(tree_stats.trees, 1), 1),
           "sft_rows": sft_rows, "dpo_pairs": pair_stats["pairs"], "policy_update": cfg.policy_update,
           "rl_reward_first_last": rl_reward,
           "accuracy": m["accuracy"], "accuracy_se": m["accuracy_se"],
           f"pass@{k}": m.get(f"pass@{k}"), "prm_f1_right": p["right_as_positive"]["f1"],
           "prm_f1_wrong": p["wrong_as_positive"]["f1"], "prm_accuracy": p["accuracy"],
           "next_policy": str(next_policy), "next_prm": str(next_prm)}
    write_text_atomic(d / ROUND_RECORD, json.dumps({**row, "config_sha256": config_sha256(cfg)}, indent=2) + "\n")
    return row


def code_options(cfg: SelfplayConfig) -> dict:
    """The code task's options of the round's trees, for its eval and sample-pairs as well."""
    return {k: cfg.tree[k] for k in ("code_alpha", "unsafe_no_sandbox") if k in cfg.tree}


def count_rows(path: Path) -> int:
    with Path(path).open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def held_out_trees(cfg: SelfplayConfig) -> Path:
    """Trees on the test problems from the starting policy and the exact verifier (built once,
    resumed like any build-tree), on which every round's PRM is judged."""
    path = cfg.out_dir / "test_trees.jsonl"
    shape = {k: v for k, v in cfg.tree.items() if k in ("width", "depth", "top_k", "max_step_tokens", "code_alpha")}
    run_build_tree(BuildTreeConfig(problems=cfg.test, out=path, model=cfg.model, task=cfg.task, prm="verifier",
                                   seed=cfg.seed, limit=cfg.test_limit, **shape), remedy=SELFPLAY_REMEDY)
    return path


OURS = ("selfplay.json", "test_trees.jsonl", "README.md")


def check_selfplay_folder(cfg: SelfplayConfig) -> None:
    """--out-dir checked before anything is written: not an input, and new, empty or an earlier
    selfplay output (a README.md beside no round is someone else's)."""
    out = check_output(cfg.out_dir, "--out-dir", folder=True, inputs={
        "--problems": cfg.problems, "--test": cfg.test, "--model": cfg.model, "--prm-model": cfg.prm_model})
    if not out.is_dir():
        return
    names = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    ours = any(n.startswith("round-") or n == "selfplay.json" for n in names)
    others = [n for n in names if not (n.startswith("round-") or n.endswith(".lock") or n in OURS)]
    if others or (names and not ours and "README.md" in names):
        raise DataError(f"--out-dir {out}: the folder holds other files ({', '.join((others or names)[:3])}); "
                        "pick a new or empty folder")


def config_sha256(cfg: SelfplayConfig) -> str:
    """A hash of every flag but --rounds (more rounds continue a run)."""
    flat = {k: v for k, v in cfg.record().items() if k != "rounds"}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def finished_round(cfg: SelfplayConfig, record: Path) -> dict:
    """A finished round's row, if it was made with these flags (DataError otherwise)."""
    try:
        row = json.loads(record.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{record}: not a round record ({err})") from None
    if not isinstance(row, dict) or row.get("config_sha256", config_sha256(cfg)) != config_sha256(cfg):
        raise DataError(f"{record}: this round was made with other flags; rerun with the same flags "
                        "or pick another --out-dir")
    row.pop("config_sha256", None)
    return row


def run_selfplay(cfg: SelfplayConfig, on_round=None) -> list[dict]:
    """Every round's row (finished rounds read back, the rest run); see module docstring."""
    task = get_task(cfg.task)
    for path in (cfg.problems, cfg.test):
        load_problems(path)  # bad input is refused before anything runs
    if cfg.prm == "verifier" and task.verify_steps("", []) is None:
        raise ValueError(f"--prm verifier: task {cfg.task!r} has no exact step check; pick another --prm")
    check_selfplay_folder(cfg)
    rows = []
    with output_lock(cfg.out_dir, "--out-dir"):
        policy, prm, prm_model = cfg.model, cfg.prm, cfg.prm_model
        held_out = None
        for r in range(cfg.rounds):
            record = round_dir(cfg, r) / ROUND_RECORD
            if record.is_file():
                row = finished_round(cfg, record)
            else:
                held_out = held_out or held_out_trees(cfg)
                row = run_round(cfg, r, policy, prm, prm_model, held_out)
            rows.append(row)
            if on_round:
                on_round(row)
            policy = row["next_policy"]
            if cfg.prm_loop == "trained":
                prm, prm_model = "trained", row["next_prm"]
        summary = provenance("selfplay", cfg.record(),
                             rounds=rows, stats={"rounds": len(rows)})
        write_text_atomic(cfg.out_dir / "selfplay.json", json.dumps(summary, indent=2) + "\n")
        write_card(cfg.out_dir, summary)
    return rows
