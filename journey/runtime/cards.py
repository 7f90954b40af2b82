"""Dataset cards: a `README.md` in the Hugging Face layout for every output folder.

    from journey.runtime.cards import write_card
    write_card(folder, record)   # record: the folder's provenance (journey.runtime.provenance.provenance)

The card is written from the provenance record, so a folder can be pushed to a hub as it is
(huggingface_hub's `upload_folder(..., repo_type="dataset")`) and says how it was made: our
answer to Part 2's Technical Transparency Index (what data, how made, what it cost).

- YAML header: `configs` (one per non-empty `.jsonl` file in the folder, `data_files` with a
  `train` split; training rows first, the first one `default`), `license: unknown` (the rows
  derive from the inputs and from model outputs: their terms decide; set it before
  publishing), `language`, `size_categories` (from the largest file), `task_categories:
  text-generation`, `tags`, `pretty_name`.
- Body: the files (rows, what a row is), how the folder was made (the command line, time,
  config, models with fingerprints where known, seeds, package versions, input files with
  their sha256), the counts, tokens and seconds the record holds, and how to load it.

What it reads from a record: `command`, `argv`, `config`, `versions`, `created`, and when
present `inputs` ({path: sha256}), `models` ({role: name or {"name", "fingerprint", ...}}),
`stats` (nested counts; keys holding "tokens" or "seconds" are the costs), `description`.
Models not listed in `models` are taken from config keys that name one (`model`, `teacher`,
`tokenizer`, `*_model`).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from journey.runtime.io import write_text_atomic

CARD = "README.md"

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                   (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]

# What a command's folder is, for the card's first paragraph.
DESCRIPTIONS = {
    "derive-longthought": "Long-thought training data derived from reasoning trees (O1 Replication "
                          "Journey, Part 1): journey traces with trials, reflections and backtracks, "
                          "the same trees' shortcuts, and DPO pairs of right and wrong answers.",
    "distill": "Long thoughts distilled from a teacher model (O1 Replication Journey, Part 2): "
               "sampled, curated with a count for every reason a sample was dropped, optionally "
               "reformatted step by step, as TRL SFT rows.",
    "eval": "A model's answers on held-out problems, with their verdicts and metrics.",
    "selfplay": "One round of self-play: trees from the round's policy and PRM, and the data "
                "derived from them.",
}
MODEL_KEYS = ("model", "teacher", "tokenizer")


def size_category(n: int) -> str:
    """799 -> 'n<1K'; 12_000 -> '10K<n<100K' (the Hub's names)."""
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1T"


def row_kind(row: dict) -> tuple[str, str]:
    """(tag, what a row is) from a file's first row."""
    if "messages" in row:
        return "sft", "SFT rows for TRL: `messages` (conversational: user, then assistant)"
    if {"prompt", "chosen", "rejected"} <= row.keys():
        return "dpo", "preference pairs: `prompt`, `chosen`, `rejected` (TRL's DPOTrainer and RewardTrainer format)"
    if "format" in row:
        return "journal", f"one record per problem (`{row['format']}`), as the run wrote them"
    return "rows", "rows"


def data_files(folder: Path) -> list[dict]:
    """Every `.jsonl` file in `folder`: name, rows, kind and description (training files first)."""
    files = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        rows, first = 0, None
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    rows += 1
                    if first is None:
                        first = json.loads(line)
        kind, what = row_kind(first or {})
        files.append({"name": path.name, "rows": rows, "kind": kind, "what": what})
    order = {"sft": 0, "dpo": 1, "rows": 2, "journal": 3}
    return sorted(files, key=lambda f: (order[f["kind"]], f["name"]))


def header(record: dict, files: list[dict]) -> dict:
    """The YAML metadata of the card."""
    loadable = [f for f in files if f["rows"]]
    configs = [{"config_name": Path(f["name"]).stem, "data_files": [{"split": "train", "path": f["name"]}]}
               for f in loadable]
    if configs:
        configs[0]["default"] = True
    kinds = sorted({f["kind"] for f in loadable} - {"rows", "journal"})
    return {
        "pretty_name": f"journey {record.get('command', 'output')}",
        "license": "unknown",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["journey", "synthetic", "long-thought", *kinds],
        "size_categories": [size_category(max((f["rows"] for f in files), default=0))],
        "configs": configs,
    }


def models_of(record: dict) -> dict[str, dict]:
    """role -> {"name", ...} from the record's `models`, else from config keys naming a model."""
    models = {role: (m if isinstance(m, dict) else {"name": m}) for role, m in (record.get("models") or {}).items()}
    for key, value in (record.get("config") or {}).items():
        if value and key not in models and (key in MODEL_KEYS or key.endswith("_model")):
            models[key] = {"name": value}
    return models


def flatten(stats: dict, prefix: str = "") -> list[tuple[str, object]]:
    """{'a': {'b': 1}, 'c': 2} -> [('a.b', 1), ('c', 2)]."""
    out = []
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[tuple], head: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def body(record: dict, files: list[dict]) -> str:
    """The card's Markdown body (see the module docstring)."""
    command = record.get("command", "?")
    parts = [f"# journey {command} output", "",
             record.get("description") or DESCRIPTIONS.get(command, "Output of a journey command."), "",
             "## Files", "", table([(f"`{f['name']}`", f["rows"], f["what"]) for f in files],
                                   ("file", "rows", "what a row is")), ""]
    argv = record.get("argv") or []
    shown = "journey " + " ".join(shlex.quote(a) for a in argv[1:]) if argv else command
    parts += ["## How it was made", "", "```bash", shown, "```", "",
              f"Made {record.get('created', '?')} by journey {record.get('versions', {}).get('journey', '?')}.", ""]
    models = models_of(record)
    if models:
        rows = [(role, m.get("name"), m.get("fingerprint") or "-",
                 ", ".join(f"{k}: {v}" for k, v in m.items() if k not in ("name", "fingerprint")) or "-")
                for role, m in models.items()]
        parts += ["### Models", "", table(rows, ("role", "model", "fingerprint", "details")), ""]
    config = record.get("config") or {}
    seeds = [(k, v) for k, v in config.items() if "seed" in k]
    if seeds:
        parts += ["### Seeds", "", table(seeds, ("name", "value")), ""]
    parts += ["### Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
              "```", ""]
    if record.get("inputs"):
        parts += ["### Inputs", "", table([(f"`{p}`", f"`{h}`") for p, h in record["inputs"].items()],
                                          ("file", "sha256")), ""]
    stats = flatten(record.get("stats") or {})
    costs = [(k, v) for k, v in stats if "tokens" in k or "seconds" in k]
    counts = [(k, v) for k, v in stats if (k, v) not in costs]
    if counts:
        parts += ["### Counts", "", table(counts, ("what", "count")), ""]
    if costs:
        parts += ["### Cost", "", table(costs, ("what", "amount")), ""]
    parts += ["### Versions", "", table(list((record.get("versions") or {}).items()), ("package", "version")), ""]
    loadable = [f for f in files if f["rows"]]
    if loadable:
        first = loadable[0]["name"]
        parts += ["## Load it", "", "```python", "from datasets import load_dataset",
                  f'ds = load_dataset("json", data_files="{first}", split="train")',
                  f'# or, from a hub copy of this folder: load_dataset("ORG/NAME", "{Path(first).stem}")',
                  "```", ""]
    parts += ["## License", "", "`license: unknown` above: the rows derive from the input files and from "
              "the outputs of the models named here, and their terms decide. Set it before publishing.", ""]
    return "\n".join(parts)


def card_text(folder: Path, record: dict) -> str:
    """The whole card for the files now in `folder`."""
    files = data_files(folder)
    meta = yaml.safe_dump(header(record, files), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n{body(record, files)}"


def write_card(folder: Path, record: dict) -> Path:
    """Write `folder/README.md` (atomically) for the files now in `folder`; returns its path."""
    path = Path(folder) / CARD
    write_text_atomic(path, card_text(folder, record))
    return path
