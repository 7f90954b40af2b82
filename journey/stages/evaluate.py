"""The `eval` and `sample-pairs` stages: batched generation on problems, then metrics or DPO pairs.

    journey eval --model ckpt/journey --problems test.jsonl --samples 8 --out metrics.json
    journey sample-pairs --model ckpt/journey --problems train.jsonl --samples 20 --pairs 5 --out pairs.jsonl

`eval` reports greedy accuracy (with its standard error), and with `--samples k > 1`, maj@k,
pass@1 and pass@k (unbiased estimator over the k samples), plus the mean number of generated
tokens and the mean count of reflection words per greedy answer. It writes `metrics.json` and,
beside it, `<name>.generations.jsonl` (every answer, for reading).

`sample-pairs` is the paper's on-policy DPO data (Part 1): sample n responses per problem
(temperature 0.7, top-p 0.95 by default), check each answer, and draw up to P right ones and P
wrong ones at random into P pairs, as TRL's `{"prompt", "chosen", "rejected"}` rows. A rejected
answer is a real wrong answer (one was stated, and it is wrong), never a cut-off or answer-less
text. Its samples, with their verdicts, go to `<name>.samples.jsonl` beside the pairs.

Both are resumable per problem, as build-tree is: the generations (`journey.generations/v1`)
and samples (`journey.samples/v1`) files are journals, appended one problem at a time as it
finishes; a rerun skips finished problems (same checks as build-tree: format, config, changed
problems, duplicates) and refuses a different config unless `--overwrite`. The final file
(`metrics.json`, the pairs) is written at once from the journal when every problem is done,
and removed first when a run starts over, so it never describes another run's generations.
Each problem's sampling seed derives from the run seed and its id, so a resumed run samples
what an uninterrupted one would. One run per output at a time (a lock).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from journey.config import GenerateConfig, SamplePairsConfig
from journey.longthought.render import REFLECTION_WORDS, count_reflection_words
from journey.models.base import Policy, Prefix, Proposal, SamplingConfig
from journey.models.registry import load_policy
from journey.runtime.distributed import ChunkJob, append_chunks, ray_pool
from journey.runtime.io import (
    STAGE_REMEDY,
    JsonlAppender,
    Remedy,
    check_output,
    load_problems,
    output_locks,
    problem_sha256,
    resume_journal,
    take_first,
    write_jsonl_atomic,
    write_text_atomic,
)
from journey.runtime.metrics import majority_vote, mean_and_se, pass_at_k
from journey.runtime.progress import progress_bar
from journey.runtime.provenance import provenance
from journey.search.build import node_seed
from journey.tasks import task_of
from journey.tasks.base import Problem, Task

GENERATIONS = "journey.generations/v1"
SAMPLES = "journey.samples/v1"
RowMaker = Callable[[Task, Policy, list[Problem]], list[dict]]  # a chunk of problems -> journal rows


def problem_seed(seed: int, problem_id: str) -> int:
    """A problem's sampling seed: from the run seed and its id, not its place in the file."""
    return node_seed(seed, problem_id, 0)


def generate(policy: Policy, task: Task, problems: list[Problem], n: int, cfg: GenerateConfig,
             temperature: float) -> list[list[Proposal]]:
    """n whole answers per problem, seeded per problem (one batched call)."""
    policy.sampling = SamplingConfig(temperature, cfg.top_p, 1, cfg.batch_size)
    prefixes = [Prefix(task.messages(p.question), [], seed=problem_seed(cfg.seed, p.id)) for p in problems]
    return policy.complete(prefixes, n, cfg.max_new_tokens)


def load_generator(cfg: GenerateConfig, task: Task, todo: list[Problem]) -> Policy:
    """The policy of `cfg`, checked against `todo` (ValueError naming problems.jsonl:line when
    a problem's prompt and --max-new-tokens would not fit its context)."""
    policy = load_policy(cfg.model, task.step_delimiter, SamplingConfig(batch_size=cfg.batch_size), cfg.backend)
    policy.check_fits([Prefix(task.messages(p.question)) for p in todo], cfg.max_new_tokens,
                      [f"{cfg.problems}:{p.line}" for p in todo], "--max-new-tokens")
    return policy


def run_journal(cfg: GenerateConfig, journal: Path, fmt: str, label: str,
                make_rows: RowMaker, ray_report: dict | None = None, remedy: Remedy = STAGE_REMEDY) -> list[dict]:
    """Every problem's journal row, in problem order: finished ones read back, the rest made
    in chunks by `make_rows` and appended as they finish. Holds the lock on `cfg.out`.
    With `cfg.ray` the chunks are made on Ray actors (`journey.runtime.distributed`) and the pool's
    report (per-worker throughput) goes into `ray_report`. `remedy`: the flags a refused resume
    names (selfplay's, when it runs this stage)."""
    task = task_of(cfg)
    every = load_problems(cfg.problems)
    problems = take_first(every, cfg.limit)
    for out in (cfg.out, journal):
        check_output(out, inputs={"--problems": cfg.problems, "--model": cfg.model})
    with output_locks({cfg.out: "--out", journal: "--out"}), ray_pool(cfg) as pool:
        done = {} if cfg.overwrite else resume_journal(
            journal, fmt, cfg.content(), every, config_of=lambda r: r.get("config"),
            problem_of=lambda r: {"id": r.get("id"), "question": r.get("question"), "answer": r.get("gold")},
            problems_path=cfg.problems, remedy=remedy)
        todo = [p for p in problems if p.id not in done]
        per_call = max(1, cfg.batch_size // cfg.samples)
        policy = None
        if pool:  # --ray: every actor loads its own policy; the first checks the fits
            pool.start(ChunkJob(cfg.task, partial(load_generator, cfg), make_rows, per_call, cfg.code_config(),
                                cfg.answer_order()), todo)
        elif todo:
            policy = load_generator(cfg, task, todo)
        cfg.out.unlink(missing_ok=True)  # the final file must never describe other generations
        if cfg.overwrite:
            journal.unlink(missing_ok=True)
        with JsonlAppender(journal, kept=None if cfg.overwrite else done) as out, progress_bar(label, len(problems), "problems") as advance:
            advance(len(problems) - len(todo))
            append_chunks(out, done, advance, pool, todo, per_call, partial(make_rows, task, policy))
        if pool and ray_report is not None:
            ray_report.update(pool.report())
    return [done[p.id] for p in problems]


def journal_row(fmt: str, cfg: GenerateConfig, p: Problem, **fields) -> dict:
    return {"format": fmt, "id": p.id, "problem_sha256": problem_sha256(p), "config": cfg.content(),
            "question": p.question, "gold": p.answer, **fields}


def eval_rows(cfg: GenerateConfig) -> RowMaker:
    """Rows of the generations journal for a chunk of problems: greedy, then the k samples."""

    def make(task: Task, policy: Policy, chunk: list[Problem]) -> list[dict]:
        greedy = [g[0] for g in generate(policy, task, chunk, 1, cfg, 0.0)]
        samples = generate(policy, task, chunk, cfg.samples, cfg, cfg.temperature) if cfg.samples > 1 else None
        return [journal_row(GENERATIONS, cfg, p, **record(task, p, g, samples[i] if samples else None))
                for i, (p, g) in enumerate(zip(chunk, greedy))]

    return make


def record(task: Task, p: Problem, greedy: Proposal, samples: list[Proposal] | None) -> dict:
    """One problem's generations, with extracted answers and verdicts (checked once here)."""
    answer = task.extract_answer(greedy.text)
    rec = {"greedy": greedy.text, "answer": answer, "correct": task.check_answer(answer, p.answer),
           "tokens": greedy.tokens}
    if samples is not None:
        rec["samples"] = [s.text for s in samples]
        rec["sample_answers"] = [task.extract_answer(s.text) for s in samples]
        rec["sample_correct"] = [task.check_answer(a, p.answer) for a in rec["sample_answers"]]
    return rec


def metrics_of(task: Task, records: list[dict]) -> dict:
    """Metrics from per-problem records (pure: no model involved)."""
    n = len(records)
    words = dict.fromkeys(REFLECTION_WORDS, 0)
    for rec in records:
        for w, c in count_reflection_words(rec["greedy"]).items():
            words[w] += c
    acc, se = mean_and_se([float(r["correct"]) for r in records])
    metrics = {
        "problems": n,
        "accuracy": round(acc, 4),
        "accuracy_se": round(se, 4),
        # answers the task could read at all: 0.0 with accuracy 0.0 means a format problem
        # (e.g. no \boxed{}, see --answer-formats), not wrong arithmetic
        "answers_extracted": round(sum(r["answer"] is not None for r in records) / n, 4),
        "mean_tokens": round(sum(r["tokens"] for r in records) / n, 1),
        "reflection_words_per_answer": {w: round(c / n, 3) for w, c in words.items()},
    }
    if "samples" in records[0]:
        k = len(records[0]["samples"])
        maj = [task.check_answer(majority_vote(r["sample_answers"]), r["gold"]) for r in records]
        p1 = [pass_at_k(k, sum(r["sample_correct"]), 1) for r in records]
        pk = [pass_at_k(k, sum(r["sample_correct"]), k) for r in records]
        read = sum(a is not None for r in records for a in r["sample_answers"])
        metrics.update({"samples": k, "sample_answers_extracted": round(read / (n * k), 4), f"maj@{k}": round(sum(maj) / n, 4),
                        "pass@1": round(sum(p1) / n, 4), f"pass@{k}": round(sum(pk) / n, 4)})
    return metrics


def score(task: Task, problems: list[Problem], greedy: list[Proposal],
          samples: list[list[Proposal]] | None) -> tuple[dict, list[dict]]:
    """Metrics and per-problem records from generations (pure: no model involved)."""
    records = [{"id": p.id, "gold": p.answer, **record(task, p, g, samples[i] if samples else None)}
               for i, (p, g) in enumerate(zip(problems, greedy))]
    return metrics_of(task, records), records


def generations_path(out: Path) -> Path:
    return out.with_name(out.stem + ".generations.jsonl")


def samples_path(out: Path) -> Path:
    return out.with_name(out.stem + ".samples.jsonl")


def run_eval(cfg: GenerateConfig, remedy: Remedy = STAGE_REMEDY) -> dict:
    label = f"eval (greedy + {cfg.samples} samples)" if cfg.samples > 1 else "eval (greedy)"
    ray_report: dict = {}
    records = run_journal(cfg, generations_path(cfg.out), GENERATIONS, label, eval_rows(cfg), ray_report, remedy)
    task = task_of(cfg)
    metrics = {"model": cfg.model, **metrics_of(task, records),
               "provenance": provenance("eval", json_config(cfg), generations=str(generations_path(cfg.out)),
                                        **({"ray": ray_report} if ray_report else {}))}
    write_text_atomic(cfg.out, json.dumps(metrics, indent=2) + "\n")
    return metrics


def json_config(cfg) -> dict:
    """A config dataclass as JSON-native values (paths as strings, numbers as numbers)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def draw_pairs(task: Task, problem: Problem, texts: list[str], right: list[bool], pairs: int,
               rng: random.Random) -> list[dict]:
    """Up to `pairs` (right, wrong) pairs from one problem's samples (`right[i]`: text i checks),
    drawn at random among distinct texts. A wrong text must state an answer (a real wrong
    answer): cut-off or answer-less texts are never rejected."""
    verdict = {t.strip(): ok for t, ok in zip(texts, right) if t.strip()}  # first seen order
    good = [t for t, ok in verdict.items() if ok]
    bad = [t for t, ok in verdict.items() if not ok and task.extract_answer(t) is not None]
    m = min(pairs, len(good), len(bad))
    prompt = task.messages(problem.question)
    return [{"prompt": prompt, "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "id": problem.id}
            for c, r in zip(rng.sample(good, m), rng.sample(bad, m))]


def sample_rows(cfg: GenerateConfig) -> RowMaker:
    """Rows of the samples journal for a chunk of problems: n samples with their verdicts."""

    def make(task: Task, policy: Policy, chunk: list[Problem]) -> list[dict]:
        out = []
        for p, samples in zip(chunk, generate(policy, task, chunk, cfg.samples, cfg, cfg.temperature)):
            texts = [s.text for s in samples]
            cut = [s.finish == "length" for s in samples]
            right = [not c and task.check_answer(task.extract_answer(t), p.answer) for t, c in zip(texts, cut)]
            out.append(journal_row(SAMPLES, cfg, p, samples=texts, right=right, cut_off=cut))
        return out

    return make


def run_sample_pairs(cfg: SamplePairsConfig, remedy: Remedy = STAGE_REMEDY) -> dict:
    ray_report: dict = {}
    records = run_journal(cfg, samples_path(cfg.out), SAMPLES, "sample-pairs", sample_rows(cfg), ray_report, remedy)
    task = task_of(cfg)
    rows, n_right = [], 0
    for rec in records:
        p = Problem(rec["id"], rec["question"], rec["gold"])
        n_right += sum(rec["right"])
        usable = [(t, ok) for t, ok, cut in zip(rec["samples"], rec["right"], rec["cut_off"]) if not cut]
        rng = random.Random(problem_seed(cfg.seed, p.id))
        rows += draw_pairs(task, p, [t for t, _ in usable], [ok for _, ok in usable], cfg.pairs, rng)
    write_jsonl_atomic(cfg.out, rows)
    return {"problems": len(records), "samples": len(records) * cfg.samples, "right": n_right,
            "pairs": len(rows), "problems_with_pairs": len({r["id"] for r in rows}),
            **({"ray": ray_report} if ray_report else {})}
