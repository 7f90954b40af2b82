"""`journey eval-prm`: how well a PRM's step verdicts match exact step labels on held-out trees.

    journey eval-prm --prm-model ckpt/prm --trees heldout_trees.jsonl --out prm_metrics.json

Every valid step of every tree (non-root, not invalid) is scored by the PRM (`--prm trained` by
default; `token`, `qwen`, `judge`, `rollout` or `tests` work too: rollout and tests roll out
`--model`, sampled as the trees were, `--rollouts` times per step), all in one batched `score` call; its
verdict (score >= 0.5) is compared with the exact label: the task's verifier applied to the
step's whole path (a step on top of a slip is wrong, as `--prm verifier` judges), or, for a
task without a verifier, the tree's own verdicts when the tree was built with `--prm verifier`.
Reported, as the paper reports PRMs (Part 1: Math-Shepherd F1 .734-.855, o1-mini .855-.880):
precision, recall and F1 with "the step is right" as the positive class, the same with "the
step is wrong" as positive (error detection), accuracy; the share of (right, wrong) sibling
pairs the PRM ranks right (what a pair-wise PRM learns, and what top-K uses); and — for trees
built with `--prm rollout` — the Pearson correlation of PRM scores with the rollout values.

An F1 alone cannot say whether a PRM reads the steps: one that scores by question and depth
alone (which questions the policy fails, how deep slips pile up) can match Math-Shepherd's F1
(issue 25: the trained PRM's F1 .73 was that). So eval-prm also reports the checks that tell:
- `counterfactual.sibling_swap`: each (wrong step, right sibling) pair; the wrong step's text
  swapped for the right sibling's is the sibling's own path, so no new PRM call: the share of
  pairs where the swap raises the score, and the mean change. A reader raises it; a PRM that
  ignores the step's text changes nothing.
- `counterfactual.first_step_wrong`: each right step at depth >= 2, scored again with its first
  step swapped for a wrong first step of the same tree (one more batched `score` call); its
  exact label becomes wrong (a step on top of a slip). The share lowered and the mean change.
- `variance_share`: the share of the score variance that the tree (question), the depth, and
  both together explain (between-group / total), for the PRM's scores and, as the yardstick,
  for the exact labels. Near 1 for the scores, well above the labels', means question and
  depth are all the PRM reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from journey.config import BuildTreeConfig, EvalPRMConfig
from journey.models.base import SamplingConfig
from journey.models.embedded import task_model
from journey.models.registry import ROLLING_PRMS, build_prm, load_policy
from journey.runtime.io import check_output, output_lock, write_text_atomic
from journey.runtime.metrics import score_changes, variance_share
from journey.runtime.provenance import model_fingerprint, provenance
from journey.search.tree import Tree
from journey.stages.build_tree import load_trees
from journey.tasks import get_task


def prf(predicted: list[bool], gold: list[bool]) -> dict:
    """Precision, recall and F1 of `predicted` against `gold`, True as the positive class.

    >>> prf([True, True, False, False], [True, False, True, False])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    tp = sum(p and g for p, g in zip(predicted, gold))
    fp = sum(p and not g for p, g in zip(predicted, gold))
    fn = sum(g and not p for p, g in zip(predicted, gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r, or None when either side is constant or there are fewer than 2 points."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)


def verdict_metrics(predicted: list[bool], gold: list[bool]) -> dict:
    """Both classes' precision/recall/F1 and accuracy (see module docstring)."""
    return {
        "steps": len(gold),
        "right_steps": sum(gold),
        "accuracy": round(sum(p == g for p, g in zip(predicted, gold)) / max(len(gold), 1), 4),
        "right_as_positive": prf(predicted, gold),
        "wrong_as_positive": prf([not p for p in predicted], [not g for g in gold]),
    }


def sibling_ranking(items: list[tuple[Tree, int]], scores: list[float], gold: list[bool]) -> tuple[int, float | None]:
    """How often the PRM scores the right step above a wrong sibling (same parent): the number
    of such pairs, and the share ranked right (a tie counts half). This is what a pair-wise PRM
    learns, and what top-K ranking uses; the 0.5 verdict threshold means little to it.

    >>> t = Tree({"id": "x", "question": "q", "answer": "a"})
    >>> a, b = t.add_child(0, text="a", verdict="correct"), t.add_child(0, text="b", verdict="correct")
    >>> sibling_ranking([(t, a), (t, b)], [0.9, 0.4], [True, False])
    (1, 1.0)
    """
    groups: dict[tuple[int, int], list[tuple[float, bool]]] = {}
    for (tree, nid), score, ok in zip(items, scores, gold):
        groups.setdefault((id(tree), tree.node(nid)["parent"]), []).append((score, ok))
    n, won = 0, 0.0
    for members in groups.values():
        for s_right, ok_right in members:
            for s_wrong, ok_wrong in members:
                if ok_right and not ok_wrong:
                    n += 1
                    won += 1.0 if s_right > s_wrong else 0.5 if s_right == s_wrong else 0.0
    return n, (round(won / n, 4) if n else None)


def sibling_swaps(items: list[tuple[Tree, int]], gold: list[bool]) -> list[tuple[int, int]]:
    """Index pairs (wrong step, right sibling) into `items`: same tree, same parent.

    >>> t = Tree({"id": "x", "question": "q", "answer": "a"})
    >>> a, b = t.add_child(0, text="a", verdict="correct"), t.add_child(0, text="b", verdict="correct")
    >>> sibling_swaps([(t, a), (t, b)], [True, False])
    [(1, 0)]
    """
    by_parent: dict[tuple[int, int], list[int]] = {}
    for i, (tree, nid) in enumerate(items):
        by_parent.setdefault((id(tree), tree.node(nid)["parent"]), []).append(i)
    return [(w, r) for members in by_parent.values() for w in members for r in members
            if not gold[w] and gold[r]]


def first_step_wrong(items: list[tuple[Tree, int]], gold: list[bool]) -> list[tuple[int, list[str]]]:
    """(index, path) for each right step at depth >= 2 in a tree with a scored wrong first step:
    its path with the first step swapped for that tree's first (lowest id) wrong first step."""
    wrong_first = {}
    for (tree, nid), ok in zip(items, gold):
        if tree.node(nid)["depth"] == 1 and not ok:
            wrong_first.setdefault(id(tree), tree.node(nid)["text"])
    swapped = []
    for i, ((tree, nid), ok) in enumerate(zip(items, gold)):
        if ok and tree.node(nid)["depth"] >= 2 and id(tree) in wrong_first:
            swapped.append((i, [wrong_first[id(tree)], *tree.steps(nid)[1:]]))
    return swapped


def counterfactual(prm, items: list[tuple[Tree, int]], gold: list[bool], scores: list[float]) -> dict:
    """The two counterfactual checks of the module docstring for `prm`, whose `scores` of
    `items` are given: {"sibling_swap": score_changes, "first_step_wrong": score_changes}."""
    swaps = sibling_swaps(items, gold)
    corrupt = first_step_wrong(items, gold)
    again = prm.score([items[i][0].problem["question"] for i, _ in corrupt], [path for _, path in corrupt],
                      [items[i][0].problem["answer"] for i, _ in corrupt]) if corrupt else []
    return {"sibling_swap": score_changes([scores[w] for w, _ in swaps], [scores[r] for _, r in swaps]),
            "first_step_wrong": score_changes([scores[i] for i, _ in corrupt], [s.score for s in again])}


def variance_shares(items: list[tuple[Tree, int]], values: list[float]) -> dict:
    """The share of the variance of `values` (one per item) explained by tree, depth and both."""
    keys = {"tree": lambda t, n: id(t), "depth": lambda t, n: t.node(n)["depth"],
            "tree_and_depth": lambda t, n: (id(t), t.node(n)["depth"])}
    shares = {name: variance_share(values, [key(t, n) for t, n in items]) for name, key in keys.items()}
    return {name: None if v is None else round(v, 4) for name, v in shares.items()}


def exact_labels(task, trees: list[Tree], items: list[tuple[Tree, int]], where: Path) -> list[bool]:
    """The exact label of each (tree, node): the verifier on its path, else the tree's own
    verdict when that tree was built with the verifier; ValueError if neither exists."""
    if task.verify_steps("", []) is not None:
        from journey.models.prm import VerifierPRM

        scores = VerifierPRM(task).score([t.problem["question"] for t, _ in items],
                                         [t.steps(n) for t, n in items])
        return [s.ok for s in scores]
    built = {t.recorded("prm") for t in trees}
    if built != {"verifier"}:
        raise ValueError(f"--trees {where}: task {task.name!r} has no step verifier and the trees were "
                         "not built with --prm verifier: there are no exact labels to compare with")
    return [t.node(n)["verdict"] == "correct" for t, n in items]


def rollout_policy(cfg: EvalPRMConfig, task, trees: list[Tree]):
    """The policy --prm rollout/tests rolls out: `--model`, sampled as the first tree was built
    (its recorded temperature, top-p and max step tokens; build-tree's defaults if unrecorded)."""
    first = trees[0]
    sampling = SamplingConfig(*(first.recorded(k, getattr(BuildTreeConfig, k))
                                for k in ("temperature", "top_p", "max_step_tokens")))
    return load_policy(task_model(cfg.model, task.name), task.step_delimiter, sampling)


def run_eval_prm(cfg: EvalPRMConfig) -> dict:
    if cfg.out is not None:
        check_output(cfg.out, inputs={"--trees": cfg.trees, "--prm-model": cfg.prm_model, "--model": cfg.model})
    trees = load_trees(cfg.trees)
    task = get_task(cfg.task or trees[0].recorded("task", "arith"))
    items = [(t, n["id"]) for t in trees for n in t.nodes()[1:] if n["verdict"] != "invalid"]
    if not items:
        raise ValueError(f"--trees {cfg.trees}: no scored steps in the trees")
    gold = exact_labels(task, trees, items, cfg.trees)
    depth = max(t.recorded("depth", BuildTreeConfig.depth) for t in trees)
    policy = rollout_policy(cfg, task, trees) if cfg.prm in ROLLING_PRMS else None
    prm = build_prm(cfg.prm, task, policy, cfg.prm_model, cfg.rollouts, depth=depth,
                    rollout_tokens=cfg.rollout_tokens)
    scores = prm.score([t.problem["question"] for t, _ in items], [t.steps(n) for t, n in items],
                       [t.problem["answer"] for t, _ in items])
    metrics = {"prm": cfg.prm, "prm_model": cfg.prm_model, "trees": len(trees),
               **verdict_metrics([s.ok for s in scores], gold)}
    metrics["sibling_pairs"], metrics["pair_accuracy"] = sibling_ranking(items, [s.score for s in scores], gold)
    metrics["counterfactual"] = counterfactual(prm, items, gold, [s.score for s in scores])
    metrics["variance_share"] = {"scores": variance_shares(items, [s.score for s in scores]),
                                 "exact_labels": variance_shares(items, [float(g) for g in gold])}
    rollout = [(s.score, t.node(n)["score"]) for s, (t, n) in zip(scores, items)
               if t.recorded("prm") == "rollout" and t.node(n)["score"] is not None]
    r = pearson([a for a, _ in rollout], [b for _, b in rollout])
    metrics["rollout_correlation"] = None if r is None else round(r, 4)
    metrics["rollout_steps"] = len(rollout)
    if cfg.out is not None:
        rolled = {"model": cfg.model, "rollouts": cfg.rollouts, "rollout_tokens": cfg.rollout_tokens} if policy else {}
        record = provenance("eval-prm", {"trees": str(cfg.trees), "prm": cfg.prm, "prm_model": cfg.prm_model,
                                         "task": task.name, **rolled},
                            prm_model_fingerprint=model_fingerprint(cfg.prm_model) if cfg.prm_model else None)
        with output_lock(cfg.out):
            write_text_atomic(cfg.out, json.dumps({**metrics, "provenance": record}, indent=2) + "\n")
    return metrics
