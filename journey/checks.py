"""Value checks whose errors name the flag to change: the one way every config says what is wrong.

    check_at_least(1, batch_size=0)   # ValueError: --batch-size must be >= 1, got 0

`opt` declares a config field that is also a CLI option (its help and flag names live on the
field, so an option is written once; `journey.cli` builds the commands from the fields), and
`check_choices` checks every `Literal` field. Imports nothing of journey: the configs of every
layer (tasks, models, search, stages) use it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, field, fields
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints


def flag(name: str) -> str:
    """'max_step_tokens' -> '--max-step-tokens'."""
    return "--" + name.replace("_", "-")


def check_at_least(low: float, **values) -> None:
    """ValueError naming the first flag whose value is below `low` (or not a number)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise ValueError(f"{flag(name)} must be >= {low}, got {value}")


def check_positive(**values) -> None:
    """ValueError naming the first flag whose value is not a finite number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > 0):
            raise ValueError(f"{flag(name)} must be > 0, got {value}")


def check_sampling_flags(temperature: float, top_p: float) -> None:
    """--temperature >= 0 and --top-p in (0, 1], both finite."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


def opt(help: str, default=MISSING, *, flags: tuple[str, ...] = (), factory=MISSING, cli: bool = True,
        argument: bool = False):
    """A config field that is also a CLI option: its help, and its flag names when they are not
    the field's own (`flags=("--width", "-w")`, `flags=("--from",)`). The field's type and
    default are the option's; `cli=False` keeps a field off the command line; `argument=True`
    makes it a positional argument (`journey models pull smollm2-135m`).

        width: int = opt("w: candidate next steps per expanded node.", 4, flags=("--width", "-w"))
    """
    meta = {"help": help, "flags": flags, "cli": cli, "argument": argument}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def literal_choices(tp) -> tuple[str, ...] | None:
    """The choices of a `Literal[...]` type, or of `Literal[...] | None`; None for other types.

        literal_choices(Literal["beam", "mcts"] | None) -> ("beam", "mcts")
    """
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) in (Union, UnionType):
        for arg in get_args(tp):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def check_choices(config) -> None:
    """ValueError naming the flag for the first `Literal` field of the dataclass `config` whose
    value is not one of its choices (None passes where the type allows it)."""
    hints = get_type_hints(type(config))
    for f in fields(config):
        choices = literal_choices(hints.get(f.name))
        value = getattr(config, f.name)
        if choices is None or (value is None and type(None) in get_args(hints[f.name])):
            continue
        if value not in choices:
            raise ValueError(f"{flag(f.name)} must be one of {', '.join(map(str, choices))}, got {value!r}")


# The least memory a sampled token takes: the KV cache of the embedded policy, the smallest model
# journey runs (2 (K, V) x 4 layers x 128 hidden x 4 bytes, float32). A bigger model takes more, so
# an estimate with it is a floor: what it refuses could never fit. A checkpoint folder's own
# config.json gives its real size (`sequence_bytes`).
TOKEN_BYTES = 2 * 4 * 128 * 4
ROW_BYTES = 1024  # a generated problem (or test) held as a Python row and its JSON line
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1}


def model_shape(model: str | os.PathLike | None) -> dict | None:
    """What sizes a model's memory per token, read from `model`/config.json (a checkpoint folder):
    layers, KV heads x head size, vocab, bytes per value. None when `model` is no folder with a
    readable config (a hub id, a served model) or the config lacks a size.

        {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "vocab_size": 102}
        -> {"layers": 4, "kv_width": 128, "vocab": 102, "dtype_bytes": 4}
    """
    if model is None:
        return None
    try:
        cfg = json.loads((Path(model).expanduser() / "config.json").read_text(encoding="utf-8"))
        cfg = cfg.get("text_config") or cfg  # a multimodal config keeps the LM's sizes there
        heads = int(cfg["num_attention_heads"])
        head_size = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
        shape = {"layers": int(cfg["num_hidden_layers"]),
                 "kv_width": int(cfg.get("num_key_value_heads") or heads) * head_size,
                 "vocab": int(cfg["vocab_size"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError):
        return None
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").removeprefix("torch.")
    shape["dtype_bytes"] = DTYPE_BYTES.get(dtype, 4)
    return shape if all(v > 0 for v in shape.values()) else None


def sequence_bytes(model: str | os.PathLike | None, tokens: int) -> int:
    """The least memory one sampled sequence of `tokens` tokens holds: its KV cache (2 (K, V) x
    layers x KV heads x head size x bytes per value, per token) and one step's logits (vocab x 4
    bytes, float32), from `model`'s config.json (`model_shape`); `tokens` x TOKEN_BYTES (the
    smallest model's) when there is no config to read. A floor either way: weights, activations
    and a float32 load of a bf16 checkpoint only add to it.

        Qwen2.5-7B (28 layers, 4 KV heads of 128, bfloat16, vocab 152,064), 1,024 tokens:
        1,024 x (2 x 28 x 512 x 2) + 152,064 x 4 = 58,720,256 + 608,256 = 59,328,512
    """
    shape = model_shape(model)
    if shape is None:
        return tokens * TOKEN_BYTES
    per_token = 2 * shape["layers"] * shape["kv_width"] * shape["dtype_bytes"]
    return tokens * per_token + shape["vocab"] * 4


def memory_bytes() -> int:
    """This machine's physical memory, in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        return 1 << 40


def check_fits_memory(name: str, value: int, each: int, what: str) -> None:
    """ValueError naming `--name` when `value` items of `each` bytes could not fit in this
    machine's memory (checked before anything loads), with the most that would.

        check_fits_memory("width", 10**5, 512 * TOKEN_BYTES, "samples of 512 tokens")
        # ValueError: --width 100000 needs at least 195 GiB (100000 samples of 512 tokens), more than
        #   this machine's 23 GiB of memory; at most 11,000 fit
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return  # the flag's own check names a wrong type
    have = memory_bytes()
    if value * each > have:
        most = max(1, have // max(each, 1))
        raise ValueError(f"{flag(name)} {value} needs at least {value * each / 2**30:,.0f} GiB ({value} {what}), "
                         f"more than this machine's {have / 2**30:,.0f} GiB of memory; at most {most:,} fit")
