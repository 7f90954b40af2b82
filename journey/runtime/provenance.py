"""Provenance: what made an artifact (command, config, versions, time), recorded in every output."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
HASH_LIMIT = 1 << 30  # weight files up to 1 GiB are hashed whole; bigger ones by name, size, mtime


def model_fingerprint(name_or_path: str) -> str | None:
    """A short hash of a local checkpoint's config and weights, so a resumed run can tell that
    `--model ckpt/x` was retrained in between; None for a hub id or a served model name.

    Files up to 1 GiB are hashed by content; bigger ones by name, size and modification time
    (hashing a 15 GB model on every resume would cost more than it protects).
    """
    from journey.models.embedded import resolve_model

    folder = Path(resolve_model(name_or_path)).expanduser()
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not (f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES):
            continue
        st = f.stat()
        digest.update(f"{f.name}/{st.st_size}".encode())
        if st.st_size > HASH_LIMIT:
            digest.update(str(st.st_mtime_ns).encode())
            continue
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]
