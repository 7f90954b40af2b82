"""Progress bars for long jobs (rich, on stderr), usable from any stage without the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextmanager
def progress_bar(label: str, total: int | None, unit: str = "") -> Iterator[Callable[..., None]]:
    """A bar for `total` items (None: unknown yet); yields `advance(n=1, info=None, total=None)`."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        job = bar.add_task(label, total=total, info="")

        def advance(n: int = 1, info: str | None = None, total: int | None = None) -> None:
            if total is not None:
                bar.update(job, total=total)
            bar.update(job, advance=n, **({"info": info} if info is not None else {}))

        yield advance
