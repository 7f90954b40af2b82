"""Dataset cards: the Hugging Face layout (YAML header with configs), written from provenance,
loadable by `datasets` as it is; derive-longthought's folder carries one."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from journey.cli import app
from journey.runtime.cards import CARD, card_text, size_category, write_card
from journey.runtime.provenance import provenance

runner = CliRunner()
U, A = {"role": "user", "content": "1 + 2"}, {"role": "assistant", "content": "The answer is 3."}


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def folder_with_rows(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sft_b.jsonl").write_text(json.dumps({"messages": [U, A], "id": "x"}) + "\n")
    (out / "sft_a.jsonl").write_text("".join(json.dumps({"messages": [U, A], "id": str(i)}) + "\n" for i in range(3)))
    (out / "pairs.jsonl").write_text(json.dumps({"prompt": [U], "chosen": [A], "rejected": [A], "id": "x"}) + "\n")
    (out / "samples.jsonl").write_text(json.dumps({"format": "journey.distill/v1", "id": "x"}) + "\n")
    (out / "empty.jsonl").write_text("")
    return out


RECORD = provenance("distill", {"teacher": "org/teacher", "tokenizer": "embedded", "seed": 7, "prm_model": None},
                    inputs={"p.jsonl": "ab" * 32},
                    models={"teacher": {"name": "org/teacher", "fingerprint": "f00d", "backend": "openai"}},
                    stats={"samples": 12, "dropped": {"wrong answer": 3}, "tokens": {"samples": 4321},
                           "seconds": {"generation": 1.5}})


def test_header_lists_every_non_empty_file_as_a_config(tmp_path):
    out = folder_with_rows(tmp_path)
    meta, body = split_card(card_text(out, RECORD))
    assert [c["config_name"] for c in meta["configs"]] == ["sft_a", "sft_b", "pairs", "samples"]
    assert meta["configs"][0] == {"config_name": "sft_a", "data_files": [{"split": "train", "path": "sft_a.jsonl"}],
                                  "default": True}
    assert not any(c.get("default") for c in meta["configs"][1:])
    assert meta["license"] == "unknown" and meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"] and {"sft", "dpo"} <= set(meta["tags"])
    assert "| `empty.jsonl` | 0 |" in body  # listed, but not a config (datasets refuses an empty file)


def test_body_says_how_it_was_made(tmp_path):
    _, body = split_card(card_text(folder_with_rows(tmp_path), RECORD))
    assert "| teacher | org/teacher | f00d | backend: openai |" in body
    assert "| tokenizer | embedded | - | - |" in body and "prm_model" not in body.split("### Config")[0]
    assert "| seed | 7 |" in body
    assert f"| `p.jsonl` | `{'ab' * 32}` |" in body
    assert "| dropped.wrong answer | 3 |" in body.split("### Cost")[0]
    assert "| tokens.samples | 4321 |" in body.split("### Cost")[1]
    assert "| seconds.generation | 1.5 |" in body
    assert f"| torch | {RECORD['versions']['torch']} |" in body
    assert "teacher: org/teacher" in body  # the config, as YAML


@pytest.mark.parametrize("n, name", [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (12_000, "10K<n<100K"),
                                     (250_000, "100K<n<1M"), (3_000_000, "1M<n<10M"), (20_000_000, "10M<n<100M")])
def test_size_categories(n, name):
    assert size_category(n) == name


def test_the_folder_loads_with_datasets_as_it_is(tmp_path):
    from datasets import load_dataset

    out = folder_with_rows(tmp_path)
    write_card(out, RECORD)
    kw = {"cache_dir": str(tmp_path / "cache")}
    assert load_dataset(str(out), **kw)["train"]["id"] == ["0", "1", "2"]  # the default config
    assert load_dataset(str(out), "pairs", **kw)["train"].column_names == ["prompt", "chosen", "rejected", "id"]


def test_derive_output_carries_a_card(tmp_path):
    problems, trees, out = tmp_path / "p.jsonl", tmp_path / "t.jsonl", tmp_path / "data"
    assert runner.invoke(app, ["problems", "--n", 3, "--seed", 5, "--out", str(problems)]).exit_code == 0
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(trees), "--depth", 6])
    assert result.exit_code == 0, result.output
    for _ in range(2):  # the second run replaces the first (a card is part of derive's own output)
        result = runner.invoke(app, ["derive-longthought", "--trees", str(trees), "--out-dir", str(out)])
        assert result.exit_code == 0, result.output
    record = json.loads((out / "derive.json").read_text())
    meta, body = split_card((out / CARD).read_text())
    used = record["stats"]["used"]
    names = [c["config_name"] for c in meta["configs"]]
    assert names[:2] == (["sft_journey", "sft_shortcut"] if used else [])
    assert f"| `sft_journey.jsonl` | {used} |" in body
    assert f"| `{trees}` | `{record['inputs'][str(trees)]}` |" in body
    assert "# journey derive-longthought output" in body and "| tokenizer | embedded |" in body
