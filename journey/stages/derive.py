"""The `derive-longthought` stage: trees.jsonl -> SFT rows (journey, shortcut) and DPO pairs.

    journey derive-longthought --trees trees.jsonl --out-dir data/ --max-trials 2 --trial-prob 0.5

Writes into the output folder:
    sft_journey.jsonl   {"messages": [user, assistant], "id", "kind": "journey", "trials",
                         "mask_spans": character spans of the wrong steps in the answer}
    sft_shortcut.jsonl  the same trees' shortcuts ("kind": "shortcut", "trials": 0)
    dpo_pairs.jsonl     {"prompt": [user], "chosen": [assistant], "rejected": [assistant], "id"}
    prm_steps.jsonl     per-step labels of every root->node path, for PRM training (point-wise)
    prm_pairs.jsonl     sibling steps after the same prefix, the better one chosen (pair-wise)
                        (both described in `journey.longthought.prm_data`)
    derive.json         provenance: command, config, input hash, counts
    README.md           a Hugging Face dataset card written from derive.json (journey.runtime.cards)
All are written as one set: into a sibling folder that then replaces the output folder in
one rename (`journey.runtime.io.atomic_folder`), so bad input, a kill or a full disk leaves the old
output as it was, never a mix of two runs. The folder must be new, empty, or an earlier
derive-longthought output (only these files); one run at a time (a lock). A problem id seen
twice in the trees (two runs wrote one file) keeps its first tree, and the summary says so. Trees with no correct answer are skipped and counted. Steps that are format
errors (`journey.longthought.paths.format_errors`: "The aiswer is 20.") are never a trial's
mistake; the summary counts them. The algorithm is documented in `journey.longthought.paths` and `journey.longthought.render`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from journey.config import DeriveConfig
from journey.longthought.paths import format_errors, journey, preference_leaves, shortcut
from journey.longthought.prm_data import label_source, pair_rows, step_rows
from journey.longthought.render import (
    REFLECTION_WORDS,
    STYLES,
    count_reflection_words,
    render_with_spans,
)
from journey.models.embedded import EMBEDDED_NAME, resolve_model, task_model
from journey.models.registry import prm_explains
from journey.runtime.cards import CARD, write_card
from journey.runtime.io import (
    DataError,
    atomic_folder,
    output_lock,
    write_jsonl_atomic,
    write_text_atomic,
)
from journey.runtime.provenance import provenance
from journey.search.tree import Tree
from journey.stages.build_tree import load_trees
from journey.tasks import get_task
from journey.tasks.base import Task

OUTPUTS = ("sft_journey.jsonl", "sft_shortcut.jsonl", "dpo_pairs.jsonl", "prm_steps.jsonl", "prm_pairs.jsonl")
RECORD = "derive.json"


@dataclass
class DeriveStats:
    """Counts for the summary table and derive.json."""

    trees: int = 0
    used: int = 0
    skipped_no_correct: int = 0
    trials: int = 0
    format_errors: int = 0  # steps not in the task's format (paths.format_errors): never a trial
    journey_tokens: int = 0
    shortcut_tokens: int = 0
    tokenizer: str = ""  # the tokenizer that counted them, and why when it is not the trees' model
    pairs: int = 0
    rewrite_fallbacks: int = 0
    prm_steps: int = 0  # rows of prm_steps.jsonl (one per root->node path)
    prm_pairs: int = 0
    label_sources: dict = field(default_factory=dict)  # label source -> trees
    reflection_words: dict = field(default_factory=lambda: dict.fromkeys(REFLECTION_WORDS, 0))


def tree_rng(seed: int, tree_id: str) -> random.Random:
    """A generator per tree, so a tree's trace does not depend on the others in the file."""
    return random.Random(hashlib.sha256(f"{seed}/{tree_id}".encode()).hexdigest())


def sft_row(task: Task, tree: Tree, text: str, kind: str, trials: int) -> dict:
    messages = task.messages(tree.problem["question"]) + [{"role": "assistant", "content": text}]
    return {"messages": messages, "id": tree.id, "kind": kind, "trials": trials}


def dpo_rows(task: Task, tree: Tree, max_pairs: int, rng: random.Random) -> list[dict]:
    prompt = task.messages(tree.problem["question"])
    rows = []
    for chosen, rejected in preference_leaves(tree, max_pairs, rng):
        rows.append({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": task.join_steps(tree.steps(chosen))}],
            "rejected": [{"role": "assistant", "content": task.join_steps(tree.steps(rejected))}],
            "id": tree.id,
        })
    return rows


def backtrack_states(task: Task, tree: Tree, events: list) -> dict[int, str]:
    """Node id -> the state a backtrack to it resumes from (`Task.states`: for arith, the
    expression left after the node's steps; the question for the root)."""
    out = {}
    for e in events:
        if e.kind == "backtrack" and e.node not in out:
            states = task.states(tree.problem["question"], tree.steps(e.node))
            if states and len(states) == len(tree.steps(e.node)) + 1:
                out[e.node] = states[-1]
    return out


def derive_all(cfg: DeriveConfig, trees: list[Tree], task: Task) -> tuple[dict[str, list[dict]], DeriveStats]:
    """The three output files' rows for `trees` (no I/O besides the optional rewrite model)."""
    stats = DeriveStats(trees=len(trees))
    out: dict[str, list[dict]] = {name: [] for name in OUTPUTS}
    drafts: list[tuple[Tree, str, int, list[list[int]]]] = []  # (tree, text, trials, wrong-step spans)
    for tree in trees:
        rng = tree_rng(cfg.seed, tree.id)
        out["dpo_pairs.jsonl"] += dpo_rows(task, tree, cfg.pairs_per_problem, rng)
        source = label_source(tree, cfg.prm_labels)
        prompt = task.messages(tree.problem["question"])
        out["prm_steps.jsonl"] += step_rows(tree, prompt, source, task.step_delimiter)
        out["prm_pairs.jsonl"] += pair_rows(tree, prompt, source, task.step_delimiter)
        stats.label_sources[source] = stats.label_sources.get(source, 0) + 1
        malformed = format_errors(tree, task.well_formed)
        stats.format_errors += len(malformed)
        path = shortcut(tree)
        if path is None:
            stats.skipped_no_correct += 1
            continue
        events, trials = journey(tree, path, cfg.max_trials, cfg.trial_prob, rng, cfg.trial_count,
                                 cfg.trial_end == "dead-end", malformed)
        states = backtrack_states(task, tree, events) if cfg.backtrack == "state" else None
        text, spans = render_with_spans(events, tree, rng, task.step_delimiter, STYLES[cfg.style], states,
                                        explains=prm_explains(tree.recorded("prm")))
        drafts.append((tree, text, sum(trials), spans))
        out["sft_shortcut.jsonl"].append(sft_row(task, tree, task.join_steps(tree.steps(path[-1])), "shortcut", 0))
    texts = [d for _, d, _, _ in drafts]
    if cfg.rewrite_model and drafts:
        texts, stats.rewrite_fallbacks = rewrite_all(cfg, task, drafts)
    for (tree, draft, trials, spans), text in zip(drafts, texts):
        row = sft_row(task, tree, text, "journey", trials)
        row["mask_spans"] = spans if text == draft else []  # a rewrite moves the steps: no spans
        out["sft_journey.jsonl"].append(row)
        stats.trials += trials
        for w, c in count_reflection_words(text).items():
            stats.reflection_words[w] += c
    stats.used = len(drafts)
    stats.pairs = len(out["dpo_pairs.jsonl"])
    stats.prm_steps, stats.prm_pairs = len(out["prm_steps.jsonl"]), len(out["prm_pairs.jsonl"])
    return out, stats


def rewrite_all(cfg: DeriveConfig, task: Task, drafts) -> tuple[list[str], int]:
    from journey.longthought.rewrite import rewrite_drafts
    from journey.models.base import SamplingConfig
    from journey.models.registry import load_policy

    try:
        policy = load_policy(cfg.rewrite_model, task.step_delimiter, SamplingConfig(temperature=0.0))
    except ValueError as err:
        raise DataError(str(err).replace("--model", "--rewrite-model", 1)) from None
    items = [(t.problem["question"], d, t.problem["answer"]) for t, d, _, _ in drafts]
    return rewrite_drafts(policy, task, items, cfg.rewrite_max_tokens, cfg.seed)


def count_tokens(tok, rows: list[dict]) -> int:
    """Tokens in the assistant answers of SFT rows."""
    texts = [r["messages"][-1]["content"] for r in rows]
    return sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]) if texts else 0


def counting_tokenizer(flag: str | None, tree_model: str | None, task: str):
    """The tokenizer for the token counts and how to name it: --tokenizer when given, else that of
    the model that built the trees (a pulled name, a folder, a GGUF), else — a hub id offline, an
    API model, trees with no record — the embedded one, saying why."""
    from transformers import AutoTokenizer

    if flag:
        return AutoTokenizer.from_pretrained(resolve_model(flag)), flag
    name = task_model(tree_model or EMBEDDED_NAME, task)
    try:
        return AutoTokenizer.from_pretrained(resolve_model(name)), name
    except (OSError, ValueError) as e:  # no tokenizer here for that model
        fallback = task_model(EMBEDDED_NAME, task)
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        return AutoTokenizer.from_pretrained(resolve_model(fallback)), f"{fallback} ({name}: {why})"


def is_derive_output(folder: Path) -> bool:
    """Whether `folder` holds an earlier derive-longthought output and nothing else."""
    names = {p.name for p in folder.iterdir()}
    return RECORD in names and names <= {*OUTPUTS, RECORD, CARD}


def run_derive(cfg: DeriveConfig) -> DeriveStats:
    """Read every tree, derive every row, then write the files as one set (nothing on any error)."""
    trees = load_trees(cfg.trees)
    task = get_task(cfg.task or trees[0].recorded("task", "arith"))
    if cfg.backtrack == "state" and type(task).states is Task.states:
        raise ValueError(f"--backtrack state: task {task.name!r} cannot restate a state; use --backtrack step")
    with output_lock(cfg.out_dir, "--out-dir"), atomic_folder(cfg.out_dir, is_derive_output) as staging:
        out, stats = derive_all(cfg, trees, task)
        tok, stats.tokenizer = counting_tokenizer(cfg.tokenizer, trees[0].recorded("model"), task.name)
        stats.journey_tokens = count_tokens(tok, out["sft_journey.jsonl"])
        stats.shortcut_tokens = count_tokens(tok, out["sft_shortcut.jsonl"])
        for name, rows in out.items():
            write_jsonl_atomic(staging / name, rows)
        digest = hashlib.sha256(Path(cfg.trees).read_bytes()).hexdigest()
        config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
        record = provenance("derive-longthought", config, inputs={str(cfg.trees): digest},
                            stats=asdict(stats))
        write_text_atomic(staging / RECORD, json.dumps(record, indent=2) + "\n")
        write_card(staging, record)
    return stats
