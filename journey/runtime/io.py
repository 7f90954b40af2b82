"""Files between stages: JSONL reading with file:line errors, problems, locks, atomic outputs,
and resumable append-only journals.

Every reader fails with a `DataError` whose message names the file and line; the CLI prints it
as one line and exits 1. Every writer follows four rules:

- **Checked before the first byte.** `check_output` is the one check every command makes on an
  output before it writes or removes anything: not one of its inputs, not inside an input's
  folder (a model), not a folder holding an input, of the right kind, and creatable without
  creating it (a refused run leaves no folder behind). `check_ours` decides that an existing
  journal is this command's (its format tag on the first line) before a byte of it changes.

- **One writer.** `output_lock(path)` takes an exclusive lock beside an output (`PATH.lock`)
  for the whole run; a second run on the same output is refused at once, naming the pid.
- **Nothing half-written.** Single files go to a temp file that is renamed over the final path
  (`write_text_atomic`); a set of files (a derive folder, a checkpoint) goes to a sibling
  folder that replaces the output folder in one rename (`atomic_folder`). A failed write (a
  full disk) removes its temp file or folder and names the path; temp files a killed writer
  left (`.NAME.PID.tmp`, PID gone) are removed by the next write of NAME.
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
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def json_object_line(raw: bytes, path, lineno: int) -> dict | None:
    """The JSON object on line `lineno` of `path` (its raw bytes), None for a blank line;
    DataError naming file:line on bad UTF-8, bad or too deeply nested JSON, or a non-object."""
    try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a BOM is not data
    except UnicodeDecodeError as err:
        raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {err.start + 1} of the line)") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path: Path, skip_cut: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line (`json_object_line`'s checks).
    `skip_cut`: a last line without its newline (cut by a kill) is skipped, not read."""
    path = check_readable_file(path)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if skip_cut and not raw.endswith(b"\n"):
                continue
            obj = json_object_line(raw, path, lineno)
            if obj is not None:
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


def write_reason(err: OSError) -> str:
    """Why a write failed, in words ('no space left on the device')."""
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    return err.strerror or str(err)


def _write_error(path: Path, err: OSError) -> DataError:
    return DataError(f"{path}: cannot write ({write_reason(err)})")


# The errors of a write the disk refused (not of a missing input, which has its own message).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def failed_write(err: BaseException) -> OSError | None:
    """The OSError behind `err` when it is a write the disk refused, else None. Libraries that
    write for us say it their own way: safetensors raises `SafetensorError('Error while
    serializing: I/O error: No space left on device (os error 28)')`.

        failed_write(OSError(errno.ENOSPC, "No space left on device")).errno == errno.ENOSPC
    """
    if isinstance(err, OSError):
        return err if err.errno in WRITE_ERRNOS else None
    code = re.search(r"\(os error (\d+)\)", str(err)) if type(err).__name__ == "SafetensorError" else None
    if code and int(code.group(1)) in WRITE_ERRNOS:
        return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs (one we may not signal runs too: kept on the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files of `path` that killed writers left (`.NAME.PID.tmp` whose PID no
    longer runs); returns them. Only that exact pattern, only for this name: a live writer's
    temp file and any other file are left alone.

        .out.jsonl.4242.tmp (4242 dead) -> removed;  .out.jsonl.x.tmp, .other.jsonl.4242.tmp -> kept
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.tmp")
    stale = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.iterdir():
            found = pattern.fullmatch(tmp.name)
            if found and tmp.is_file() and not pid_alive(int(found.group(1))):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    stale.append(tmp)
    return stale


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` at once: a temp file beside it (`.NAME.PID.tmp`), flushed to disk
    and renamed over it. On any failure (a full disk) the temp file is removed and the error
    names `path`; temp files of `path` left by killed writers are removed first."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    make_parents(path)
    remove_stale_temps(path)
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
    """DataError unless `path` can be created as a file: not a folder, and its nearest existing
    ancestor is a writable folder. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{flag} {path}: is a directory, expected a file path")
    check_folder_writable(path.parent, flag, path)


def check_not_an_input(out: Path, inputs: dict[str, Path], flag: str = "--out") -> None:
    """DataError if the output `out` is one of the input files (it would be appended to or
    replaced): `inputs` maps each input's flag to its path."""
    check_output(out, flag, inputs=inputs)


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or under it (both resolved; links followed)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def check_output(out: Path, flag: str = "--out", *, inputs: dict[str, Path | str | None] | None = None,
                 folder: bool = False) -> Path:
    """The check every command makes on an output before it writes or removes anything.

    DataError naming `flag` when `out` is one of `inputs` (flag -> path; a model name that is
    not a path on disk is skipped), lies inside an input folder (a model checkpoint), or — for a
    folder output (`folder=True`) — holds an input; when it is of the wrong kind (a folder for
    a file, a file for a folder); or when it cannot be created (no writable folder on its way).
    Creates nothing: a refused run leaves the disk as it was.

        check_output(Path("t.jsonl"), inputs={"--trees": Path("t.jsonl")})
        # DataError: --out t.jsonl is the --trees input; pick another output
    """
    out = Path(out)
    for name, given in (inputs or {}).items():
        if given is None or not Path(given).exists():
            continue
        src = Path(given)
        if out.exists() and os.path.samefile(out, src) or _inside(out, src) and not src.is_dir():
            raise DataError(f"{flag} {out} is the {name} input; pick another output")
        if src.is_dir() and _inside(out, src):
            raise DataError(f"{flag} {out} is inside the {name} folder {src}; pick another output")
        if folder and _inside(src, out):
            raise DataError(f"{flag} {out} holds the {name} input {src}; pick another output")
    if folder:
        if out.exists() and not out.is_dir():
            raise DataError(f"{flag} {out}: is a file, expected a folder")
        check_folder_writable(out, flag)
    else:
        check_writable(out, flag)
    return out


def check_folder_writable(folder: Path, flag: str = "--out-dir", shown: Path | None = None) -> None:
    """DataError unless `folder` is a writable folder or can be made in its nearest existing
    ancestor (which must be a writable folder). Creates nothing."""
    folder, shown = Path(folder), shown or Path(folder)
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            raise DataError(f"{flag} {shown}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{flag} {shown}: cannot create folder {folder} (a file is in the way: {probe})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {shown}: folder {probe} is not writable")


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`; returns those created, deepest first (for
    `remove_if_empty`). A failure is a DataError naming the path."""
    created, probe = [], Path(path).parent
    while not probe.exists() and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(path, err) from None
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove each of `folders` (deepest first) that is empty: what a refused run created."""
    for f in folders:
        with contextlib.suppress(OSError):
            f.rmdir()


def check_ours(path: Path, fmt: str, flag: str = "--out") -> None:
    """DataError unless the existing file `path` is empty or a `fmt` journal: its first line
    (cut or whole) is a JSON object whose "format" is `fmt`. Reads one line; changes nothing,
    so a file of something else is refused before a byte of it is touched.

        '{"format": "journey.tree/v2", ...}\n' -> ours;  'my notes' -> DataError
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 20)
    except OSError as err:
        raise DataError(f"{flag} {path}: cannot read it ({err.strerror})") from None
    if not first.strip():
        if path.stat().st_size == 0:
            return
        raise DataError(f"{flag} {path}: not a {fmt} file (its first line is blank); it is not ours "
                        "to change: pick another output")
    tag = json.dumps({"format": fmt})[:-1].encode()  # b'{"format": "FMT"'
    if not first.endswith(b"\n"):  # a first line cut by a kill: ours if it starts as our rows do
        ours = first.startswith(tag)
    else:
        try:
            row = json.loads(first)
            ours = isinstance(row, dict) and row.get("format") == fmt
        except (ValueError, RecursionError):
            ours = False
    if not ours:
        raise DataError(f"{flag} {path}: not a {fmt} file (line 1); it is not ours to change: "
                        "pick another output")


class JsonlAppender:
    """Append one JSON object per line, flushed at once (crash-safe for finished work).

    `kept`: the rows `resume_journal` read back; a file that holds anything more (a last line
    cut by a kill, repeated ids) is first rewritten to hold exactly them (atomically).
    A failed write (a full disk) drops the part of the line that reached the file; a journal
    this appender created and could not write one row to is removed with the folders made
    for it, so a run that kept nothing leaves nothing.
    """

    def __init__(self, path: Path, kept: dict[str, dict] | None = None):
        self.path = Path(path)
        self.made = make_parents(self.path)
        self.created = not self.path.exists()
        if kept is not None and self.path.exists():
            self._mend(list(kept.values()))
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

    def _mend(self, rows: list[dict]) -> None:
        if drop_partial_last_line(self.path):
            log.warning("%s: dropped a partial last line left by an interrupted run", self.path)
        with self.path.open("rb") as fh:
            lines = sum(1 for raw in fh if raw.strip())
        if lines != len(rows):
            write_jsonl_atomic(self.path, rows)

    def _cut_back(self) -> None:
        """After a failed write, drop whatever part of the line reached the file."""
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            drop_partial_last_line(self.path)
            if self.created and self.path.stat().st_size == 0:
                self.path.unlink()
                remove_if_empty(self.made)

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
    created = make_parents(lock)
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
        remove_if_empty(created)  # the folders only a lock was in (a refused run)


@contextlib.contextmanager
def output_locks(paths: dict[Path, str]) -> Iterator[None]:
    """`output_lock` on every path written (path -> its flag): an output and the journal beside
    it, so two runs whose outputs share a journal are refused too."""
    with contextlib.ExitStack() as stack:
        for path, flag in paths.items():
            stack.enter_context(output_lock(path, flag))
        yield


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


def staging_folder(out_dir: Path) -> Path:
    """Where `atomic_folder` builds `out_dir`: the hidden sibling `.NAME.partial`."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def atomic_folder(out_dir: Path, ours: Callable[[Path], bool], flag: str = "--out-dir",
                  resumable: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Build a set of files in a sibling folder, then put it at `out_dir` in one rename.

    Yields the staging folder (`.NAME.partial`, emptied first). When the block ends without an
    error, an existing `out_dir` moves to `.NAME.old`, the staging folder takes its place, and
    the old one is removed; a kill between the two renames is mended by the next run
    (`recover_folder`). `out_dir` must be new, empty, or a folder `ours(out_dir)` recognizes as
    this command's earlier output: a folder holding anything else is refused, never replaced.
    On an error the staging folder is removed and `out_dir` is untouched; a write the disk
    refused (`failed_write`: a full disk, also from a library such as safetensors) becomes one
    DataError naming `out_dir`. A staging folder left by a killed run is removed first. Hold
    `output_lock` on `out_dir` around this. With `resumable`, a staging folder it accepts (a
    killed or interrupted run's saved progress) is kept to go on from, and an interrupted run
    (Ctrl-C, SIGTERM) keeps its staging folder when `resumable` accepts it.
    """
    out_dir = Path(out_dir)
    recover_folder(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{flag} {out_dir}: is a file, not a folder")
        if any(out_dir.iterdir()) and not ours(out_dir):
            raise DataError(f"{flag} {out_dir}: the folder holds other files; pick a new or empty folder")
    check_folder_writable(out_dir.parent, flag, out_dir)
    staging = staging_folder(out_dir)
    keep = resumable is not None and staging.is_dir() and resumable(staging)
    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
    make_parents(staging)
    try:
        staging.mkdir(exist_ok=keep)
    except OSError as err:
        raise _write_error(staging, err) from None
    try:
        yield staging
        replace_folder(staging, out_dir)
    except BaseException as err:
        if not (isinstance(err, KeyboardInterrupt) and resumable is not None and resumable(staging)):
            shutil.rmtree(staging, ignore_errors=True)
        refused = failed_write(err)
        if refused is not None:
            raise DataError(f"{flag} {out_dir}: cannot write ({write_reason(refused)})") from None
        raise


# ---------------------------------------------------------------- resumable journals


@dataclass(frozen=True)
class Remedy:
    """How a refused resume names its output and says to start over, in the flags of the
    command that runs: a stage's own (`--out`, `--overwrite`), or selfplay's, which writes its
    stages' journals under `--out-dir` and has no `--overwrite`. A refusal names only flags
    the command has."""

    flag: str = "--out"
    restart: str = "pick another output, or pass --overwrite to start over"


STAGE_REMEDY = Remedy()
SELFPLAY_REMEDY = Remedy("--out-dir", "rerun with the problems as they were, or pick another --out-dir to start over")


def resume_journal(
    path: Path,
    fmt: str,
    config: dict,
    problems: list[Problem],
    config_of: Callable[[dict], dict],
    problem_of: Callable[[dict], dict],
    problems_path: Path | None = None,
    remedy: Remedy = STAGE_REMEDY,
) -> dict[str, dict]:
    """The finished rows of an append-only journal at `path`, by problem id, checked.

    - a file that is not a `fmt` journal (`check_ours`) is refused before anything changes;
    - a last line cut by a kill is skipped;
    - every row must carry format `fmt` and a config (`config_of(row)`) equal to `config` on
      every key of `config`, else DataError naming file:line and the keys that differ;
    - every row's problem (`problem_of(row)`, a problems.jsonl row) must be one of `problems`
      with the same content (its `problem_sha256`), else DataError: a stale row is never reused;
    - a repeated id keeps its first row and a warning says how many others there are.
    Each refusal names the output and the way to start over in `remedy`'s flags.

    Changes nothing: `JsonlAppender(path, kept=rows)` mends the file (a cut last line, repeated
    ids) when the run starts writing, after every check and model load has passed.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    check_ours(path, fmt, remedy.flag)
    current = {p.id: p for p in problems}
    source = problems_path or "the problems file"
    done: dict[str, dict] = {}
    dropped = 0
    for lineno, row in read_jsonl(path, skip_cut=True):  # every row checked before a byte changes
        where = f"{path}:{lineno}"
        if row.get("format") != fmt:
            raise DataError(f"{where}: not a {fmt} line (format {row.get('format')!r}); {remedy.restart}")
        before = config_of(row) if isinstance(config_of(row), dict) else {}
        diff = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in config.items() if before.get(k) != v]
        if diff:
            raise DataError(f"{path} was made with a different config ({'; '.join(diff)}); "
                            f"rerun with the same flags, or {remedy.restart}")
        problem = problem_of(row)
        pid = problem.get("id") if isinstance(problem, dict) else None
        if not isinstance(pid, str):
            raise DataError(f"{where}: the row has no problem id")
        if pid not in current:
            raise DataError(f"{where}: problem {pid!r} is not in {source}; this output was made "
                            f"from other problems: {remedy.restart}")
        if problem_changed(row, problem, current[pid]):
            raise DataError(f"{where}: problem {pid!r} has changed in {source} since this row was "
                            f"made (question, answer or fields differ); {remedy.restart}")
        if pid in done:
            dropped += 1
            continue
        done[pid] = row
    if dropped:
        log.warning("%s: dropped %d duplicate row(s) (an id written twice); kept the first of each",
                    path, dropped)
    return done
