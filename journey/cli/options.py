"""Commands built from config dataclasses: each field of a stage's config is one option, so an
option's type, default and help are written once, in the config (`journey.checks.opt`).

    @command(BuildTreeConfig)
    def build_tree(values: dict) -> None:
        cfg = make(BuildTreeConfig, values)
        ...

Field -> option: the flag is the field's name (`max_step_tokens` -> `--max-step-tokens`) unless
the field names its flags (`--width/-w`, `--from`); a `bool` is `--x/--no-x`; a `Literal` field
is a string whose choices the help shows (`<beam|mcts>`) and the config checks, so a bad choice
is a one-line `error:` naming the flag (exit 1) like every other bad value; `list[Path]` is a
comma-separated string; a field with no default is required; `opt(..., argument=True)` makes a
positional argument instead of a flag (`journey models pull smollm2-135m`). Every command also takes
`--config recipe.yaml` (flags on the command line win). A `Section` adds another config's options
to a command under its own key (selfplay takes build-tree's, derive's and train's this way).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Annotated, Union, get_args, get_origin, get_type_hints

import typer

from journey.checks import flag, literal_choices
from journey.cli.app import ConfigOption, user_errors


@dataclass
class Section:
    """The options of `cls` on a command: all its CLI fields but `skip`, with `defaults` in place
    of the config's own; their values reach the command as `values[key]` (None: at the top)."""

    cls: type
    key: str | None = None
    skip: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)
    optional: tuple[str, ...] = ()  # required fields the command may go without (it checks them)


def cli_type(tp):
    """The type typer parses a field as: a `Literal` (or `Literal | None`) as `str` (or
    `str | None`), `list[Path]` as a comma-separated `str`; anything else as it is."""
    optional = get_origin(tp) in (Union, UnionType) and type(None) in get_args(tp)
    if literal_choices(tp) is not None:
        return str | None if optional else str
    if get_origin(tp) is list and get_args(tp) == (Path,):
        return str
    return tp


def parameter(f, tp, default, taken: set[str]) -> inspect.Parameter:
    """One typer option for the dataclass field `f` of type `tp`; flags already `taken` by an
    earlier section of the same command are left out (the first one keeps a short alias)."""
    decls = [d for d in f.metadata.get("flags", ()) if d not in taken]
    if f.metadata.get("flags") and not decls:
        raise AssertionError(f"every flag of {f.name} is taken")
    taken.update(decls or [flag(f.name)])
    choices = literal_choices(tp)
    make_info = typer.Argument if f.metadata.get("argument") else typer.Option
    info = make_info(*decls, help=f.metadata.get("help"), metavar=f"<{'|'.join(choices)}>" if choices else None)
    kind = inspect.Parameter.KEYWORD_ONLY
    annotation = Annotated[cli_type(tp), info]
    if default is MISSING:
        return inspect.Parameter(f.name, kind, annotation=annotation)
    return inspect.Parameter(f.name, kind, default=default, annotation=annotation)


def section_parameters(section: Section, taken: set[str]) -> list[tuple[inspect.Parameter, type]]:
    hints = get_type_hints(section.cls)
    out = []
    # The stage's own options first, then those of its option groups (RayOptions, CodeOptions,
    # RLOptions: keyword-only mixins, whose fields a dataclass puts first).
    for f in sorted(fields(section.cls), key=lambda f: bool(f.kw_only)):
        if not f.metadata.get("cli", False) or f.name in section.skip:
            continue
        default = section.defaults.get(f.name, f.default)
        if default is MISSING and f.name in section.optional:
            default = None
        out.append((parameter(f, hints[f.name], default, taken), hints[f.name]))
    return out


def from_cli(value, tp):
    """A parsed option back to the field's type: 'a.jsonl, b.jsonl' -> [Path('a.jsonl'), Path('b.jsonl')]."""
    if isinstance(value, str) and get_origin(tp) is list and get_args(tp) == (Path,):
        return [Path(v.strip()) for v in value.split(",") if v.strip()]
    return value


def command(*sections: Section | type, extra: list[inspect.Parameter] = ()) -> Callable:
    """Decorator: `body(values, **extra)` as a command whose options are the sections' fields
    (a bare class is `Section(cls)`), the `extra` parameters (command-only switches such as
    --show-prompt), and --config. `values` maps field names to values; a section with a key
    puts its values in `values[key]`, a dict."""
    sections = [s if isinstance(s, Section) else Section(s) for s in sections]
    taken: set[str] = {"--config", "--help"}
    routed, params = [], []
    for section in sections:
        for param, tp in section_parameters(section, taken):
            assert all(param.name != p.name for p in params), f"two sections give {param.name}: skip one"
            params.append(param)
            routed.append((param.name, section.key, tp))
    params += list(extra)
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=ConfigOption))

    def wrap(body: Callable) -> Callable:
        def run(**kwargs):
            kwargs.pop("config", None)
            values: dict = {s.key: {} for s in sections if s.key}
            with user_errors():
                for name, key, tp in routed:
                    target = values[key] if key else values
                    target[name] = from_cli(kwargs.pop(name), tp)
            return body(values, **kwargs)

        run.__signature__ = inspect.Signature(params)
        run.__doc__ = body.__doc__
        run.__name__ = body.__name__
        return run

    return wrap


def make(cls: type, values: dict, **more):
    """`cls(**values, **more)` with a bad value turned into one `error:` line (exit 1)."""
    with user_errors():
        return cls(**values, **more)
