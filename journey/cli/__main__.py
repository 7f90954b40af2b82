"""`python -m journey.cli ...` runs the `journey` command."""

from journey.cli.main import app

app()
