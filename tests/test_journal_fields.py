"""Fields read back from files are type-checked with file:line (journey.search.tree costs on a
build-tree resume, train --stage prm delimiters), `show` draws a tree of any depth, and a PRM's
new head comes from --seed (journey.stages.train_prm)."""

import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.runtime.io import DataError
from journey.search.tree import Tree
from journey.stages.build_tree import load_trees
from journey.stages.train import load_rows

runner = CliRunner()


def chain(depth: int) -> Tree:
    t = Tree({"id": "x", "question": "1+1", "answer": "2"})
    n = 0
    for i in range(depth):
        n = t.add_child(n, text=f"step {i}", verdict="correct")
    return t


@pytest.mark.parametrize("costs, error", [
    ({"tokens": "12"}, "'costs.tokens' must be a number"),
    ({"steps_generated": None}, "'costs.steps_generated' must be a number"),
    ({"seconds": True}, "'costs.seconds' must be a number"),
])
def test_tree_costs_are_type_checked(tmp_path, costs, error):
    row = {**chain(2).to_json(), "costs": costs}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=f"{path}:1.*{error}"):
        load_trees(path)


def test_show_draws_a_tree_1500_steps_deep(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(chain(1500).to_json()) + "\n")
    result = runner.invoke(app, ["show", "--trees", str(path), "--out", str(tmp_path / "t.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.html").stat().st_size > 1500 * 50


def test_prm_rows_with_mixed_delimiters_name_file_and_line(tmp_path):
    row = {"prompt": [{"role": "user", "content": "1+1"}], "steps": ["a", "b"], "labels": [1, 0]}
    path = tmp_path / "prm.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "step_delimiter": "\n\n"}) + "\n")
    with pytest.raises(DataError, match=f"{path}:2: steps end with '\\\\n\\\\n', while {path}:1 ends them with"):
        load_rows("prm", [path], "pointwise")


def test_a_prm_head_comes_from_the_seed(tmp_path):
    """Two trainers with --seed 0 start from the same head, whatever ran before (the old code drew
    the head before setting the seed)."""
    import torch

    from journey.config import TrainConfig
    from journey.stages.train_prm import build_prm_trainer

    row = {"prompt": [{"role": "user", "content": "1+1"}], "steps": ["a", "b"], "labels": [1, 0]}
    path = tmp_path / "prm.jsonl"
    path.write_text(json.dumps(row) + "\n")
    heads = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever the process drew before
        cfg = TrainConfig("prm", [path], tmp_path / f"o{noise}", model="embedded", seed=0, max_steps=1)
        trainer, _ = build_prm_trainer(cfg, load_rows("prm", [path]), tmp_path / f"o{noise}", [])
        heads.append(trainer.model.score.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
