"""PRM data from trees, `train --stage prm` (point-wise and pair-wise), `--prm trained`, eval-prm."""

import json

import pytest
import torch

from journey.longthought.prm_data import label_source, pair_rows, step_rows
from journey.models.registry import build_prm
from journey.search.tree import Tree
from journey.stages.eval_prm import pearson, prf, verdict_metrics
from journey.tasks import get_task
from tests.helpers import run, write_problems

PROMPT = [{"role": "user", "content": "2 * 3 + 4"}]


def small_tree(prm="verifier") -> Tree:
    """root -> a (correct) -> {b (correct, final, right), c (incorrect), d (invalid)}; root -> e (incorrect)."""
    tree = Tree({"id": "t", "question": "2 * 3 + 4", "answer": "10"},
                run={"config": {"prm": prm, "task": "arith"}})
    a = tree.add_child(0, text="2 * 3 = 6", verdict="correct", score=0.75, q=0.6, visits=3)
    tree.add_child(a, text="The answer is 10.", verdict="correct", score=1.0, terminal=True, answer="10", correct=True)
    tree.add_child(a, text="6 + 4 = 11", verdict="incorrect", score=0.25)
    tree.add_child(a, text="6 + 4 =", verdict="invalid", score=0.0, finish="length")
    tree.add_child(0, text="3 + 4 = 7", verdict="incorrect", score=0.0)
    return tree


def test_step_rows_by_hand():
    rows = step_rows(small_tree(), PROMPT, "verdict")
    assert [(r["node"], r["steps"], r["labels"]) for r in rows] == [
        (1, ["2 * 3 = 6"], [1.0]),
        (2, ["2 * 3 = 6", "The answer is 10."], [1.0, 1.0]),
        (3, ["2 * 3 = 6", "6 + 4 = 11"], [1.0, 0.0]),
        (4, ["2 * 3 = 6", "6 + 4 ="], [1.0, 0.0]),  # invalid: 0 whatever the source
        (5, ["3 + 4 = 7"], [0.0]),
    ]
    assert all(r["prompt"] == PROMPT and r["label_source"] == "verdict" for r in rows)
    soft = step_rows(small_tree(), PROMPT, "score")
    assert [r["labels"] for r in soft][2] == [0.75, 0.25]
    assert [r["labels"] for r in step_rows(small_tree(), PROMPT, "q")][0] == [0.6]


def test_pair_rows_by_hand():
    pairs = pair_rows(small_tree(), PROMPT, "verdict")
    got = [(p["parent"], p["steps"], p["chosen"], p["rejected"]) for p in pairs]
    assert got == [
        (0, [], "2 * 3 = 6", "3 + 4 = 7"),
        (1, ["2 * 3 = 6"], "The answer is 10.", "6 + 4 = 11"),  # the invalid sibling is in no pair
    ]
    # equal labels make no pair: with scores, 1.0 vs .25 after a, .75 vs 0 at the root
    assert len(pair_rows(small_tree(), PROMPT, "score")) == 2


@pytest.mark.parametrize("prm, wanted, expected", [
    ("verifier", "auto", "verdict"), ("rollout", "auto", "q"), ("judge", "score", "score"),
])
def test_label_source(prm, wanted, expected):
    assert label_source(small_tree(prm), wanted) == expected


def test_label_source_q_needs_mcts():
    tree = Tree({"id": "t", "question": "1 + 1", "answer": "2"}, run={"config": {"prm": "rollout"}})
    tree.add_child(0, text="The answer is 2.", verdict="correct", score=1.0, terminal=True, answer="2", correct=True)
    assert label_source(tree, "auto") == "score"
    with pytest.raises(ValueError, match="no MCTS q values"):
        label_source(tree, "q")


def test_prf_and_pearson_by_hand():
    # gold: 3 right, 2 wrong; predicted right on 1, 2, 4 -> TP 2 (1, 2), FP 1 (4), FN 1 (3)
    pred = [True, True, False, True, False]
    gold = [True, True, True, False, False]
    assert prf(pred, gold) == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667}
    m = verdict_metrics(pred, gold)
    assert m["accuracy"] == 0.6 and m["wrong_as_positive"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert prf([False, False], [True, False]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1], [0, 1]) is None


def test_step_ends_are_the_delimiter_tokens():
    from transformers import AutoTokenizer

    from journey.models.embedded import EMBEDDED_PATH
    from journey.models.trained_prm import encode

    tok = AutoTokenizer.from_pretrained(EMBEDDED_PATH)
    ids, ends = encode(tok, PROMPT, ["2 * 3 = 6", "6 + 4 = 10"], "\n")
    assert len(ends) == 2 and [tok.decode([ids[e]]) for e in ends] == ["\n", "\n"]
    assert tok.decode(ids[: ends[0]]).endswith("2 * 3 = 6")
    cut, cut_ends = encode(tok, PROMPT, ["2 * 3 = 6", "6 + 4 = 10"], "\n", max_length=12)
    assert len(cut) == 12 and cut_ends == [11] and tok.decode([cut[11]]) == "\n"


# ---------------------------------------------------------------- training and reading back


@pytest.fixture(scope="module")
def prm_data(tmp_path_factory):
    """Real trees from the embedded policy, derived into PRM rows."""
    tmp = tmp_path_factory.mktemp("prm")
    problems = write_problems(tmp / "p.jsonl", n=4, seed=9)
    assert run("build-tree", "--problems", problems, "--out", tmp / "t.jsonl", "--depth", 6).exit_code == 0
    result = run("derive-longthought", "--trees", tmp / "t.jsonl", "--out-dir", tmp / "d")
    assert result.exit_code == 0, result.output
    return tmp


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("objective, data", [("pointwise", "prm_steps.jsonl"), ("pairwise", "prm_pairs.jsonl")])
def test_train_prm_changes_weights_and_scores_through_prm_trained(prm_data, objective, data):
    from journey.models.embedded import EMBEDDED_PATH

    out = prm_data / f"prm-{objective}"
    result = run("train", "--stage", "prm", "--objective", objective, "--data", prm_data / "d" / data,
                 "--out", out, "--max-steps", 3, "--batch-size", 4, "--lr", 1e-3)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "prm.json").read_text())
    assert card["format"] == "journey.prm/v1" and card["objective"] == objective and card["step_delimiter"] == "\n"
    trained, base = weights(out), weights(EMBEDDED_PATH)
    body = [k for k in trained if k.startswith("model.") and k.replace("model.", "model.", 1) in base]
    assert body and any(not torch.equal(trained[k], base[k]) for k in body)  # the body learned too
    assert "score.weight" in trained
    task = get_task("arith")
    prm = build_prm("trained", task, None, str(out))
    scores = prm.score(["2 * 3 + 4", "2 * 3 + 4"], [["2 * 3 = 6"], ["2 * 3 = 6", "6 + 4 = 10"]])
    assert len(scores) == 2 and all(0 <= s.score <= 1 and s.ok == (s.score >= 0.5) for s in scores)
    one = prm.score(["2 * 3 + 4"], [["2 * 3 = 6", "6 + 4 = 10"]])[0]
    assert one.score == pytest.approx(scores[1].score, abs=1e-5)  # batched == one by one
    metrics = prm_data / f"m-{objective}.json"
    evaluated = run("eval-prm", "--prm-model", out, "--trees", prm_data / "t.jsonl", "--out", metrics)
    assert evaluated.exit_code == 0, evaluated.output
    m = json.loads(metrics.read_text())
    assert m["steps"] > 0 and 0 <= m["right_as_positive"]["f1"] <= 1 and "provenance" in m


def test_build_tree_with_a_trained_prm(prm_data):
    out = prm_data / "prm-pointwise"
    if not out.exists():
        pytest.skip("needs the pointwise checkpoint from the test above")
    trees = prm_data / "t-trained.jsonl"
    result = run("build-tree", "--problems", prm_data / "p.jsonl", "--out", trees, "--depth", 3,
                 "--prm", "trained", "--prm-model", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in trees.read_text().splitlines()]
    assert all(r["run"]["config"]["prm"] == "trained" for r in rows)
    assert all(n["reason"] == "" for r in rows for n in r["nodes"][1:] if n["verdict"] != "invalid")


BAD_PRM_ROWS = [
    ("pointwise", {"prompt": PROMPT, "steps": ["a"]}, ":1: a pointwise PRM row needs 'labels'"),
    ("pointwise", {"prompt": PROMPT, "steps": ["a"], "chosen": "b", "rejected": "c"},
     "(this is a pairs row: use --objective pairwise)"),
    ("pairwise", {"prompt": PROMPT, "steps": ["a"], "labels": [1]}, "(this is a steps row: use --objective pointwise)"),
    ("pointwise", {"prompt": PROMPT, "steps": ["a", "b"], "labels": [1]}, "'labels' must be one number in [0, 1] per step"),
    ("pointwise", {"prompt": PROMPT, "steps": ["a"], "labels": [1.5]}, "'labels' must be one number in [0, 1] per step"),
    ("pointwise", {"prompt": PROMPT, "steps": ["a"], "labels": [True]}, "'labels' must be one number in [0, 1] per step"),
    ("pointwise", {"prompt": "hi", "steps": ["a"], "labels": [1]}, "'prompt' must be a list of chat messages"),
    ("pairwise", {"prompt": PROMPT, "steps": [], "chosen": "", "rejected": "c"}, "'chosen' must be a non-empty string"),
]


@pytest.mark.parametrize("objective, row, message", BAD_PRM_ROWS)
def test_bad_prm_rows_are_refused(tmp_path, objective, row, message):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(row) + "\n")
    result = run("train", "--stage", "prm", "--objective", objective, "--data", data, "--out", tmp_path / "ck")
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("args, message", [
    (["--objective", "listwise"], "--objective must be one of pointwise, pairwise"),
    (["--lora"], "--lora is for --stage sft or dpo"),
])
def test_bad_prm_flags(tmp_path, args, message):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": PROMPT, "steps": ["a"], "labels": [1]}) + "\n")
    result = run("train", "--stage", "prm", "--data", data, "--out", tmp_path / "ck", *args)
    assert result.exit_code == 1 and message in result.output, result.output


def test_prm_trained_needs_a_prm_checkpoint(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    result = run("build-tree", "--problems", problems, "--out", tmp_path / "t.jsonl", "--prm", "trained")
    assert result.exit_code == 1 and "--prm trained needs --prm-model" in result.output
    result = run("build-tree", "--problems", problems, "--out", tmp_path / "t.jsonl", "--prm", "trained",
                 "--prm-model", "embedded")
    assert result.exit_code == 1 and "no prm.json there" in result.output


def test_prm_files_load_with_datasets(prm_data):
    from datasets import load_dataset

    for name in ("prm_steps.jsonl", "prm_pairs.jsonl"):
        ds = load_dataset("json", data_files=str(prm_data / "d" / name), split="train")
        assert len(ds) > 0 and "label_source" in ds.column_names


def test_sibling_ranking_by_hand():
    from journey.stages.eval_prm import sibling_ranking

    tree = small_tree()
    # siblings under node 1: 2 (right), 3 (wrong); under the root: 1 (right), 5 (wrong)
    items = [(tree, 1), (tree, 2), (tree, 3), (tree, 5)]
    gold = [True, True, False, False]
    assert sibling_ranking(items, [0.9, 0.2, 0.7, 0.1], gold) == (2, 0.5)  # root pair right, node-1 pair wrong
    assert sibling_ranking(items, [0.9, 0.7, 0.7, 0.1], gold) == (2, 0.75)  # a tie counts half
    assert sibling_ranking(items[:2], [0.9, 0.2], gold[:2]) == (0, None)
