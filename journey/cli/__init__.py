"""The `journey` command line (see `journey.cli.main` for the commands)."""

from journey.cli.main import app

__all__ = ["app"]
