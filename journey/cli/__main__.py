"""`python -m journey.cli ...` runs the `journey` command."""

from journey.cli import app

app()
