"""journey.stages.problems (`problems --from`, `curate`) and journey.runtime.importers on hostile
files: one `error:` line naming the place, exit 1, nothing written; never a traceback."""

import datetime
import gzip
import json

import pytest
from typer.testing import CliRunner

from journey.cli import app

runner = CliRunner()
DEEP = "[" * 10_000 + "]" * 10_000


def parquet(path, **columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize("name, make, error", [
    ("deep.json", lambda p: p.write_text(DEEP), "nested too deeply"),
    ("deep.jsonl.gz", lambda p: p.write_bytes(gzip.compress(('{"a": ' + DEEP + "}\n").encode())), "nested too deeply"),
    ("bytes.parquet", lambda p: parquet(p, question=["1+1"], answer=["2"], blob=[b"\x00\x01"]), "column 'blob'"),
    ("time.parquet", lambda p: parquet(p, question=["1+1"], answer=["2"],
                                       when=[datetime.datetime(2024, 1, 1)]), "column 'when'"),
    ("nan.parquet", lambda p: parquet(p, question=["1+1"], answer=[float("nan")]), "'answer' must be"),
    ("nancol.parquet", lambda p: parquet(p, question=["1+1"], answer=["2"], score=[float("nan")]),
     "column 'score' holds a value JSON cannot keep (NaN"),
])
def test_problems_from_hostile_files(tmp_path, name, make, error):
    src = tmp_path / name
    make(src)
    result = runner.invoke(app, ["problems", "--from", str(src), "--format", "jsonl", "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 1 and error in " ".join(result.output.split()), result.output
    assert not (tmp_path / "p.jsonl").exists() and isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("rows, error", [
    ([{"id": "a", "answer": "2"}], "p.jsonl:1: 'question' (or 'problem') must be a non-empty string, got missing"),
    ([{"id": "a", "question": None, "answer": "2"}], "p.jsonl:1: 'question' (or 'problem') must be"),
    ([{"id": "a", "question": ["1+1"], "answer": "2"}], "got list"),
    ([{"id": "a", "question": {"q": 1}, "answer": "2"}], "got dict"),
    ([{"id": 7, "question": "What is $1+1$?", "answer": "2"}], "p.jsonl:1: 'id' must be a non-empty string"),
    ([{"id": "a", "question": "What is $1+1$?", "answer": "2"}] * 2, "p.jsonl:2: duplicate id 'a'"),
    ([{"id": "a", "question": "What is $1+1$?", "answer": 2}], "p.jsonl:1: 'answer' must be a string"),
])
def test_curate_reads_problems_with_the_checks_of_every_command(tmp_path, rows, error):
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["curate", "--problems", str(src), "--out", str(tmp_path / "k.jsonl")])
    assert result.exit_code == 1 and error in " ".join(result.output.split()), result.output
    assert not (tmp_path / "k.jsonl").exists()


def test_a_killed_import_leaves_nothing_and_the_rerun_runs(tmp_path):
    """A kill leaves at most a temp file and a lock file beside --out; the rerun is not refused."""
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    (tmp_path / ".p.jsonl.999999.tmp").write_text('{"id": "cut')
    (tmp_path / "p.jsonl.lock").write_text("999999")
    result = runner.invoke(app, ["problems", "--from", str(src), "--format", "jsonl", "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1
