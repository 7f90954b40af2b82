"""The app every command hangs on, and what the commands share: one-line errors, Ctrl-C and
SIGTERM handling, YAML recipes (`--config`), and the summary table.

User errors (ValueError, OSError) become one `error:` line and exit 1; Ctrl-C and SIGTERM say
what was kept and exit 130 or 143. `--verbose` shows the whole traceback instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import click
import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from journey import __version__
from journey.cli import quiet_interrupts, restore_handlers
from journey.runtime.progress import console as err_console

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Synthesize o1-style long-thought data by tree search (journey learning), and train on it.",
)
console = Console()


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def describe_os_error(err: OSError) -> str:
    """'[Errno 20] Not a directory: PosixPath('a/b')' -> 'a/b: Not a directory'."""
    why = err.strerror or str(err)
    if err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else err.filename
        return f"{where}: {why}"
    return why


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so every `finally` and cleanup runs as for Ctrl-C."""


# The signals that arrived during the current block of work (`user_errors`). Libraries turn an
# interrupt raised inside their imports into other errors (transformers: ModuleNotFoundError,
# "cannot load module more than once"); what arrived says what it really was.
RECEIVED: list[int] = []


def importing(frame) -> bool:
    """Whether `frame` runs inside an import (an importlib frame on its stack). An exception
    raised there may land in a native module's import (torch's C++ calls back into Python
    while it loads: pybind11 then aborts the process instead of raising)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def deferred(signum, frame) -> bool:
    """Inside an import, send the signal again a moment later instead of raising now (see
    `importing`); True when it was deferred."""
    if not importing(frame):
        return False
    threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
    return True


def on_sigint(signum, frame) -> None:
    if deferred(signum, frame):
        return
    RECEIVED.append(signum)
    raise KeyboardInterrupt()


def on_sigterm(signum, frame) -> None:
    if deferred(signum, frame):
        return
    RECEIVED.append(signum)
    raise Terminated()


def redeliver_interrupts(unraisable) -> None:
    """`sys.unraisablehook`: an interrupt raised where Python can only ignore it (a weakref
    callback of the import system, a `__del__`) is sent again, so it lands in the program and
    is never lost; anything else goes to the default hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        sig = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        if signal.getsignal(sig) in (on_sigint, on_sigterm):  # within work; after it, `RECEIVED` told
            signal.raise_signal(sig)
        return
    sys.__unraisablehook__(unraisable)


@contextmanager
def user_errors(kept: Callable[[], str] | None = None):
    """Turn bad input (ValueError, our DataError included, or an OSError) into one line, exit 1;
    turn Ctrl-C or SIGTERM into one line saying what was kept (`kept()`), exit 130 or 143.
    Within the block Ctrl-C is a KeyboardInterrupt and SIGTERM a `Terminated` (so `finally`
    blocks run; the start-up handlers of `journey.cli`, put back after the block, exit at
    once). An interrupt a library turned into another error, or swallowed, still ends the
    command as an interrupt: the handlers note what arrived (`RECEIVED`)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    RECEIVED.clear()
    try:
        yield
    except (typer.Exit, click.exceptions.Exit):
        raise
    except BaseException as err:
        if RECEIVED or isinstance(err, KeyboardInterrupt):
            interrupted(kept, terminated=isinstance(err, Terminated) or signal.SIGTERM in RECEIVED)
        if not isinstance(err, ValueError | OSError):
            raise
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise  # --verbose: the whole traceback
        fail(describe_os_error(err) if isinstance(err, OSError) else str(err))
    else:
        if RECEIVED:  # swallowed on the way: the work ended, but the user asked to stop
            interrupted(kept, terminated=signal.SIGTERM in RECEIVED)
    finally:
        RECEIVED.clear()
        restore_handlers(previous)  # between blocks of work: the quiet handlers again


def interrupted(kept: Callable[[], str] | None, terminated: bool) -> None:
    """The one line an interrupt prints (what was kept), then exit 143 (SIGTERM) or 130 (SIGINT)."""
    signame, code = ("SIGTERM", 143) if terminated else ("SIGINT", 130)
    note = kept() if kept else "nothing was written"
    err_console.print(f"[bold yellow]interrupted[/] ({signame}): {escape(note)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def count_lines(path: Path) -> int:
    """Complete lines in `path` (0 when it does not exist)."""
    try:
        with Path(path).open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))
    except OSError:
        return 0


def load_recipe(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager `--config`: a YAML mapping of flag names to values, used as defaults (flags win).

    Every key must be a flag of the command and every value must convert to the flag's type;
    anything else is an error naming the file and line (`recipe.yaml:3: width: 'two' is not a
    valid integer`), exit 1.
    """
    if value is None:
        return value
    if not value.is_file():
        fail(f"--config {value}: {'is a directory, expected a YAML file' if value.is_dir() else 'no such file'}")
    try:
        text = value.read_text(encoding="utf-8")
        recipe = yaml.safe_load(text) or {}
        node = yaml.compose(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        fail(f"--config {value}: cannot read it as YAML ({err.__class__.__name__})")
    if not isinstance(recipe, dict):
        fail(f"--config {value}: expected a mapping of flag names to values")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in getattr(node, "value", [])
             if isinstance(k, yaml.ScalarNode)}
    params = {p.name: p for p in ctx.command.params}
    defaults = {}
    for key, val in recipe.items():
        name, where = str(key).replace("-", "_"), f"{value}:{lines.get(str(key), '?')}"
        if name not in params or name == "config":
            fail(f"--config {where}: unknown key {key!r}")
        defaults[name] = recipe_value(ctx, params[name], val, where, key)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def recipe_value(ctx: typer.Context, param, val, where: str, key):
    """`val` converted to `param`'s type, or a one-line error naming the recipe's file:line."""
    if val is None:
        if param.default is None:
            return None
        fail(f"--config {where}: {key} has no value")
    if isinstance(val, dict) or (isinstance(val, list) and not getattr(param, "multiple", False)):
        fail(f"--config {where}: {key} must be a single value, got {type(val).__name__}")
    if isinstance(val, bool) and not getattr(param, "is_flag", False):  # YAML's true is not the number 1
        fail(f"--config {where}: {key} takes a value, not {str(val).lower()}")
    try:
        return param.get_runtime_param().coerce(val, param=param, ctx=ctx)
    except typer.BadParameter as err:
        fail(f"--config {where}: {key}: {err.message} (got {val!r})")


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML recipe of flag values (flags on the command line win).",
                 callback=load_recipe, is_eager=True),
]



def ray_summary(report: dict | None, unit: str) -> list[tuple[str, str]]:
    """Per-worker throughput rows for a summary table (none without --ray)."""
    from journey.runtime.distributed import worker_rows

    return worker_rows(report, unit) if report else []


def version_callback(value: bool) -> None:
    if value:
        console.print(f"journey {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    """journey: long-thought training data by tree search, and training on it."""
    previous = quiet_interrupts()  # a command's own imports take seconds too (see journey.cli)
    if previous is not None:
        ctx.call_on_close(lambda: restore_handlers(previous))
        sys.unraisablehook = redeliver_interrupts
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    for noisy in ("transformers", "httpx", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """The end-of-command table; text is shown as written (paths may hold `[...]`)."""
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    return table


def journal_kept(journal: Path) -> Callable[[], str]:
    """What Ctrl-C says for a stage that keeps a journal of finished problems."""
    return lambda: (f"{count_lines(journal):,} finished problems are kept in {journal}; "
                    "rerun the same command to resume")
