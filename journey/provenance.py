"""Provenance: what made an artifact (command, config, versions, time), recorded in every output."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata

PACKAGES = ("journey", "torch", "transformers", "trl", "datasets", "tokenizers")


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide our outputs."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(command: str, config: dict, **extra) -> dict:
    """A record for an output file: the command line, its config, versions, time, and extras."""
    return {
        "command": command,
        "argv": sys.argv,
        "config": config,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
