"""Files between stages: JSONL reading with file:line errors, problems, and append-only trees.

Every reader fails with a `DataError` whose message names the file and line; the CLI prints it
as one line and exits 1. Writers of finished work append and flush one line at a time, so a
killed run loses only what was in flight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from journey.tasks.base import Problem


class DataError(ValueError):
    """A user-facing problem with an input file or flag (printed as one line by the CLI)."""


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line; DataError on bad JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def load_problems(path: Path) -> list[Problem]:
    """Read problems.jsonl: `id`, `question`, `answer` required, ids unique, at least one row."""
    problems, seen = [], {}
    for lineno, row in read_jsonl(path):
        missing = [k for k in ("id", "question", "answer") if k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing {', '.join(map(repr, missing))}")
        pid = str(row["id"])
        if pid in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = lineno
        meta = {k: v for k, v in row.items() if k not in ("id", "question", "answer")}
        problems.append(Problem(pid, str(row["question"]), str(row["answer"]), meta))
    if not problems:
        raise DataError(f"{path}: no problems in the file")
    return problems


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` at once (a temp file renamed over it: never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Write all rows to `path` as JSONL, at once (see `write_text_atomic`)."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def check_writable(path: Path) -> None:
    """DataError unless `path` can be created (its folder exists or can be made, and is writable)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file path")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{path}: cannot create folder {parent} ({err.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise DataError(f"{path}: folder {parent} is not writable")


class JsonlAppender:
    """Append one JSON object per line, flushed at once (crash-safe for finished work)."""

    def __init__(self, path: Path):
        self.fh = Path(path).open("a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def drop_partial_last_line(path: Path) -> bool:
    """Truncate `path` after its last newline (a write cut by a kill); True if it did."""
    path = Path(path)
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with path.open("r+b") as fh:
        fh.truncate(data.rfind(b"\n") + 1)
    return True
