"""stages/derive.py: duplicate trees dropped, its output one set of files even when the disk fills,
never a folder of other files replaced, numbers in derive.json kept as numbers, token counts in
the tokens of the model that built the trees."""

import json

import pytest

from tests.helpers import SMOL_TOKENIZER, fill, run, write_problems


def test_derive_drops_duplicate_trees_and_says_so(tmp_path, caplog):
    problems = write_problems(tmp_path / "p.jsonl", n=3)
    out = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", out, "--depth", 8).exit_code == 0
    once = run("derive-longthought", "--trees", out, "--out-dir", tmp_path / "a")
    text = out.read_text()
    out.write_text(text + text)
    twice = run("derive-longthought", "--trees", out, "--out-dir", tmp_path / "b")
    assert twice.exit_code == 0 and "dropped 3 tree(s)" in caplog.text
    for name in ("sft_journey.jsonl", "sft_shortcut.jsonl", "dpo_pairs.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), once.output


def test_derive_output_is_one_set_even_when_the_disk_fills(tmp_path, tiny_disk):
    problems = write_problems(tmp_path / "p.jsonl", n=4)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    out = tiny_disk / "data"
    assert run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 1).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill(tiny_disk, leave=1024)
    result = run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 2)
    assert result.exit_code == 1 and "no space left on the device" in result.output, result.output
    assert str(tiny_disk) in result.output  # names the file it could not write
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["data", "filler"]  # no .tmp, no .partial


def test_derive_replaces_its_own_output_but_never_a_folder_of_other_files(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    out = tmp_path / "data"
    assert run("derive-longthought", "--trees", trees, "--out-dir", out).exit_code == 0
    assert run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 3).exit_code == 0
    assert json.loads((out / "derive.json").read_text())["config"]["seed"] == 3
    (out / "notes.txt").write_text("mine")
    result = run("derive-longthought", "--trees", trees, "--out-dir", out)
    assert result.exit_code == 1 and "holds other files" in result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_derive_json_keeps_numbers_as_numbers(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    assert run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", "-K", 3).exit_code == 0
    config = json.loads((tmp_path / "d" / "derive.json").read_text())["config"]
    assert config["max_trials"] == 3 and config["trial_prob"] == 0.8 and config["task"] is None
    assert config["trees"] == str(trees)


def with_model(trees, model, out):
    """`trees` as if built by --model `model` (the run record's config says so)."""
    rows = [json.loads(line) for line in trees.read_text().splitlines()]
    for row in rows:
        row["run"]["config"]["model"] = model
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.parametrize("model, flag, counted_by", [
    ("embedded", (), "embedded"),
    (str(SMOL_TOKENIZER), (), str(SMOL_TOKENIZER)),  # SmolLM2's BPE: other counts
    ("no-such-org/no-such-model", (), "embedded (no-such-org/no-such-model: "),  # offline: the embedded one, why
    (str(SMOL_TOKENIZER), ("--tokenizer", "embedded"), "embedded"),  # the flag wins
])
def test_token_counts_use_the_tokenizer_of_the_model_that_built_the_trees(tmp_path, model, flag, counted_by):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    built = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", built, "--depth", 8).exit_code == 0
    trees = with_model(built, model, tmp_path / "m.jsonl")
    result = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", *flag)
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "d" / "derive.json").read_text())["stats"]
    assert stats["tokenizer"].startswith(counted_by)
    from transformers import AutoTokenizer

    from journey.models.embedded import resolve_model
    from journey.stages.derive import count_tokens

    name = model if counted_by == model else "embedded"
    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    rows = [json.loads(line) for line in (tmp_path / "d" / "sft_journey.jsonl").read_text().splitlines()]
    assert stats["journey_tokens"] == count_tokens(tok, rows) > 0
