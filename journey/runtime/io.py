"""Files between stages: JSONL reading with file:line errors, problems, locks, atomic outputs,
and resumable append-only journals.

Every reader fails with a `DataError` whose message names the file and line; the CLI prints it
as one line and exits 1. Every writer follows three rules:

- **One writer.** `output_lock(path)` takes an exclusive lock beside an output (`PATH.lock`)
  for the whole run; a second run on the same output is refused at once, naming the pid.
- **Nothing half-written.** Single files go to a temp file that is renamed over the final path
  (`write_text_atomic`); a set of files goes to a sibling folder that replaces the output
  folder in one rename (`atomic_folder`). A failed write (a full disk) removes its temp file
  and names the path.
- **Nothing lost, nothing doubled.** Long jobs append one finished item per line
  (`JsonlAppender`, flushed at once); `resume_journal` reads such a file back: it drops a line
  cut by a kill, drops rows whose id repeats (saying so) and rewrites the file without them,
  refuses rows of another format or config, and refuses rows whose problem has changed since
  (each row carries `problem_sha256`, a hash of its problem's content).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from journey.tasks.base import Problem

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A user-facing problem with an input file or flag (printed as one line by the CLI)."""


# ---------------------------------------------------------------- reading


def check_readable_file(path: Path, flag: str | None = None) -> Path:
    """`path` if it is a readable file; DataError naming the flag (if given) and the path otherwise."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise DataError(f"{where}: is a directory, expected a file")
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    return path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line; DataError naming file:line on bad
    UTF-8, bad JSON or a line that is not a JSON object."""
    path = check_readable_file(path)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a BOM is not data
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {err.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _string_field(path: Path, lineno: int, row: dict, key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        shown = json.dumps(value)[:40]
        raise DataError(f"{path}:{lineno}: {key!r} must be a string, got {type(value).__name__} {shown}")
    if key != "answer" and not value.strip():
        raise DataError(f"{path}:{lineno}: {key!r} is empty")
    return value


def load_problems(path: Path) -> list[Problem]:
    """Read problems.jsonl: `id`, `question`, `answer` required and strings, ids unique, >= 1 row."""
    problems, seen = [], {}
    for lineno, row in read_jsonl(path):
        missing = [k for k in ("id", "question", "answer") if k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing {', '.join(map(repr, missing))}")
        pid, question, answer = (_string_field(path, lineno, row, k) for k in ("id", "question", "answer"))
        if pid in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = lineno
        meta = {k: v for k, v in row.items() if k not in ("id", "question", "answer")}
        problems.append(Problem(pid, question, answer, meta, line=lineno))
    if not problems:
        raise DataError(f"{path}: no problems in the file")
    return problems


def take_first(problems: list, limit: int | None) -> list:
    """The first `limit` problems (all when None); ValueError naming --limit unless limit >= 1."""
    if limit is None:
        return problems
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    return problems[:limit]


def problem_sha256(problem: dict | Problem) -> str:
    """A hash of a problem's content (id, question, answer and any extra keys), key order free."""
    row = problem.to_row() if isinstance(problem, Problem) else problem
    canon = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def problem_changed(row: dict, stored: dict, problem: Problem) -> bool:
    """Whether `problem` differs from the one a journal row was made from: by the row's
    `problem_sha256` (all fields) or, for rows written before it existed, question and answer."""
    if row.get("problem_sha256"):
        return row["problem_sha256"] != problem_sha256(problem)
    return stored.get("question") != problem.question or stored.get("answer") != problem.answer


# ---------------------------------------------------------------- writing


def _write_error(path: Path, err: OSError) -> DataError:
    why = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        why = "no space left on the device"
    return DataError(f"{path}: cannot write ({why})")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` at once: a temp file beside it, flushed to disk and renamed over
    it. On any failure (a full disk) the temp file is removed and the error names `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from None


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Write all rows to `path` as JSONL, at once (see `write_text_atomic`)."""
    write_text_atomic(path, jsonl_text(rows))


def check_writable(path: Path, flag: str = "--out") -> None:
    """DataError unless `path` can be created as a file (its folder exists or can be made, and
    is writable, and `path` is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{flag} {path}: is a directory, expected a file path")
    check_folder_writable(path.parent, flag, path)


def check_not_an_input(out: Path, inputs: dict[str, Path], flag: str = "--out") -> None:
    """DataError if the output `out` is one of the input files (it would be appended to or
    replaced): `inputs` maps each input's flag to its path."""
    out = Path(out)
    for name, path in inputs.items():
        if out.exists() and Path(path).exists() and os.path.samefile(out, path):
            raise DataError(f"{flag} {out} is the {name} input; pick another output")


def check_folder_writable(folder: Path, flag: str = "--out-dir", shown: Path | None = None) -> None:
    """DataError unless `folder` exists or can be made, and is writable."""
    folder, shown = Path(folder), shown or Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{flag} {shown}: cannot create folder {folder} (a file is in the way)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{flag} {shown}: cannot create folder {folder} ({err.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"{flag} {shown}: folder {folder} is not writable")


class JsonlAppender:
    """Append one JSON object per line, flushed at once (crash-safe for finished work)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.fh = self.path.open("a", encoding="utf-8")
        except OSError as err:
            raise _write_error(self.path, err) from None

    def write(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        try:
            self.fh.write(line)
            self.fh.flush()
        except OSError as err:
            self._cut_back()
            raise _write_error(self.path, err) from None

    def _cut_back(self) -> None:
        """After a failed write, drop whatever part of the line reached the file."""
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            drop_partial_last_line(self.path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def drop_partial_last_line(path: Path) -> bool:
    """Truncate `path` after its last newline (a write cut by a kill); True if it did."""
    path = Path(path)
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return False
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        # Find the last newline by reading backwards in blocks (the file may be large).
        pos, cut = size, 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            k = block.rfind(b"\n")
            if k >= 0:
                cut = pos + k + 1
                break
        fh.truncate(cut)
    return True


# ---------------------------------------------------------------- one writer


class OutputBusy(DataError):
    """Another run holds the lock on this output."""


@contextlib.contextmanager
def output_lock(path: Path, flag: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock on the output `path` (the file `PATH.lock`) for the block.

    A second writer is refused at once with a DataError naming the holder's pid. The lock is an
    `flock`, so a killed holder releases it; the lock file is removed when the block ends.
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    check_folder_writable(lock.parent, flag, path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputBusy(f"{flag} {path}: another journey run (pid {holder}) is writing it; "
                             "wait for it to finish or pick another output") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its last holder had just removed
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # the pid is for messages only (a full disk may refuse it)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# ---------------------------------------------------------------- sets of files


def old_folder(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.old")


def recover_folder(out_dir: Path) -> None:
    """Finish a swap a kill interrupted: `.NAME.old` without `NAME` is put back; with `NAME`
    it is removed (the new set landed)."""
    old = old_folder(out_dir)
    if old.exists():
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, out_dir)
            log.warning("%s: restored the previous output (a run was killed while replacing it)", out_dir)


def replace_folder(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`: an existing `out` moves aside to `.NAME.old`
    and is removed only once `new` is in place (`recover_folder` mends a kill in between)."""
    old = old_folder(out)
    if out.exists():
        os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out_dir: Path, ours: Callable[[Path], bool], flag: str = "--out-dir") -> Iterator[Path]:
    """Build a set of files in a sibling folder, then put it at `out_dir` in one rename.

    Yields the staging folder (`.NAME.partial`, emptied first). When the block ends without an
    error, an existing `out_dir` moves to `.NAME.old`, the staging folder takes its place, and
    the old one is removed; a kill between the two renames is mended by the next run
    (`recover_folder`). `out_dir` must be new, empty, or a folder `ours(out_dir)` recognizes as
    this command's earlier output: a folder holding anything else is refused, never replaced.
    On an error the staging folder is removed and `out_dir` is untouched. Hold `output_lock`
    on `out_dir` around this.
    """
    out_dir = Path(out_dir)
    recover_folder(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{flag} {out_dir}: is a file, not a folder")
        if any(out_dir.iterdir()) and not ours(out_dir):
            raise DataError(f"{flag} {out_dir}: the folder holds other files; pick a new or empty folder")
    check_folder_writable(out_dir.parent, flag, out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---------------------------------------------------------------- resumable journals


def resume_journal(
    path: Path,
    fmt: str,
    config: dict,
    problems: list[Problem],
    config_of: Callable[[dict], dict],
    problem_of: Callable[[dict], dict],
    problems_path: Path | None = None,
) -> dict[str, dict]:
    """The finished rows of an append-only journal at `path`, by problem id, checked.

    - a last line cut by a kill is dropped (with a warning);
    - every row must carry format `fmt` and a config (`config_of(row)`) equal to `config` on
      every key of `config`, else DataError naming file:line and the keys that differ;
    - every row's problem (`problem_of(row)`, a problems.jsonl row) must be one of `problems`
      with the same content (its `problem_sha256`), else DataError: a stale row is never reused;
    - a repeated id keeps its first row; the file is rewritten without the others (atomically)
      and a warning says how many were dropped.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    if drop_partial_last_line(path):
        log.warning("%s: dropped a partial last line left by an interrupted run", path)
    current = {p.id: p for p in problems}
    source = problems_path or "the problems file"
    done: dict[str, dict] = {}
    dropped = 0
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        if row.get("format") != fmt:
            raise DataError(f"{where}: not a {fmt} line (format {row.get('format')!r}); "
                            "pick another output or pass --overwrite")
        before = config_of(row) if isinstance(config_of(row), dict) else {}
        diff = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in config.items() if before.get(k) != v]
        if diff:
            raise DataError(f"{path} was made with a different config ({'; '.join(diff)}); "
                            "rerun with the same flags, another output, or --overwrite")
        problem = problem_of(row)
        pid = problem.get("id") if isinstance(problem, dict) else None
        if not isinstance(pid, str):
            raise DataError(f"{where}: the row has no problem id")
        if pid not in current:
            raise DataError(f"{where}: problem {pid!r} is not in {source}; this output was made "
                            "from other problems: pick another output or pass --overwrite")
        if problem_changed(row, problem, current[pid]):
            raise DataError(f"{where}: problem {pid!r} has changed in {source} since this row was "
                            "made (question, answer or fields differ); pass --overwrite to start over")
        if pid in done:
            dropped += 1
            continue
        done[pid] = row
    if dropped:
        log.warning("%s: dropped %d duplicate row(s) (an id written twice); kept the first of each",
                    path, dropped)
        write_jsonl_atomic(path, list(done.values()))
    return done
