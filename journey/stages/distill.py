"""The `distill` stage (Part 2): long thoughts from a teacher, curated, optionally reformatted, as SFT rows.

    journey distill --teacher Qwen/QwQ-32B --backend openai --task math --problems p.jsonl \\
        --out-dir distill/ --samples 4 --reformat
    journey distill --show-prompt --task math        # the prompts we send, as published

O1 Replication Journey Part 2 (arXiv 2411.16489) distils long thoughts from a strong teacher,
curates them, reformats each kept solution step by step, and fine-tunes on the result. Here:

1. **Sample.** For each problem, n samples from the teacher (`--samples`, seeded per problem
   id), with the system prompt in `journey/distill_prompt.md` (`--prompt shipped`; `--prompt
   task` sends the task's own prompt, as eval does; `--prompt FILE` any other). Any policy
   backend: `openai` (a served or hosted teacher; concurrency and retries are the backend's),
   `transformers`, `vllm`.
2. **Curate.** Every sample gets one verdict, the first of these that applies (`REASONS`):
   truncated, too long, too short, wrong language, missing answer, wrong answer, wrong
   format, duplicate; or `kept`. Answers are extracted and checked by the task (`--task arith`:
   "The answer is N."; `--task math`: \\boxed{}, math-verify, every check bounded).
3. **Reformat** (`--reformat`): each kept sample goes back to the teacher, greedy, with the
   prompt in `journey/reformat_prompt.md`. A rewrite that is cut off, loses or changes the
   answer, or goes on after it is discarded for the original sample, and counted.
4. **Write** into `--out-dir`: `sft.jsonl` (TRL rows: `messages` = the task's prompt and the
   kept text, with `id`, `sample`, `reformatted`), `distill.json` (provenance: command,
   config, teacher and its fingerprint, the prompts, input hash; counts per reason, tokens,
   seconds), `README.md` (a dataset card, `journey.runtime.cards`), and `samples.jsonl`, the journal.

Resumable per problem, as build-tree is: `samples.jsonl` (`journey.distill/v1`) gets one
line per finished problem, every sample with its verdict; a rerun skips finished problems and
refuses other flags, another teacher checkpoint, another prompt or changed problems unless
`--overwrite`. The other three files are removed once every check has passed and the teacher
is loaded (a refused run changes nothing), and written from the journal when every problem is
done (`distill.json` last). A resumed run's `distill.json` equals an uninterrupted one's but
for `created`, `argv`, timings (`stats.seconds.generation`) and `this_run` (problems resumed,
seconds). The folder must be new, empty, or an earlier distill output; one run per folder at a
time (a lock).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from journey.config import DistillConfig
from journey.runtime.cards import CARD, write_card
from journey.runtime.distributed import ChunkJob, append_chunks, ray_pool
from journey.runtime.io import (
    DataError,
    JsonlAppender,
    Remedy,
    check_output,
    check_readable_file,
    load_problems,
    output_lock,
    problem_sha256,
    resume_journal,
    take_first,
    write_jsonl_atomic,
    write_text_atomic,
)
from journey.runtime.progress import progress_bar
from journey.runtime.provenance import model_fingerprint, provenance
from journey.tasks import get_task
from journey.tasks.base import Problem, Task

FORMAT = "journey.distill/v1"
JOURNAL, SFT, RECORD = "samples.jsonl", "sft.jsonl", "distill.json"
OUTPUTS = (JOURNAL, SFT, RECORD, CARD)
PROMPT_TEMPLATE = (Path(__file__).parent / "distill_prompt.md").read_text()
REFORMAT_TEMPLATE = (Path(__file__).parent / "reformat_prompt.md").read_text()

# How each task states a final answer, for both prompts (a task not listed gets the last one).
ANSWER_FORMATS = {
    "math": "End with the final answer in \\boxed{}, for example \\boxed{\\frac{3}{4}}, and write "
            "nothing after it.",
    "arith": 'End with one line "The answer is N." where N is the integer result, and write nothing '
             "after it.",
    None: "End with the final answer on a line of its own, and write nothing after it.",
}

# Every reason a sample is dropped, in the order they are tried, with what it drops.
REASONS: dict[str, str] = {
    "truncated": "stopped at --max-new-tokens before it ended",
    "too long": "more tokens than --max-tokens",
    "too short": "fewer tokens than --min-tokens",
    "wrong language": "over 1% of its letters outside the Latin and Greek scripts (unless the question's are)",
    "missing answer": "no final answer the task can extract",
    "wrong answer": "a final answer that does not check against the problem's answer",
    "wrong format": "the text goes on after the final answer (its last step is not the answer)",
    "duplicate": "the same text (up to spaces) as a sample of the problem kept before it",
}
MAX_FOREIGN = 0.01  # share of letters outside Latin/Greek above which a text is in another language


# ---------------------------------------------------------------- prompts

DISTILL_REMEDY = Remedy("--out-dir")  # its journal lies in --out-dir


def answer_format(task: str) -> str:
    return ANSWER_FORMATS.get(task, ANSWER_FORMATS[None])


def system_prompt(prompt: str, task: str) -> str | None:
    """The teacher's system prompt: the shipped one (`shipped`), none but the task's own
    (`task`), or a file's text; `{answer_format}` is filled in for the task."""
    if prompt == "task":
        return None
    text = PROMPT_TEMPLATE if prompt == "shipped" else check_readable_file(Path(prompt), "--prompt").read_text()
    return text.replace("{answer_format}", answer_format(task)).strip()


def teacher_messages(task: Task, question: str, system: str | None) -> list[dict]:
    """What the teacher sees: our system prompt (in place of the task's own) and the question."""
    asked = task.messages(question)
    if system is None:
        return asked
    return [{"role": "system", "content": system}] + [m for m in asked if m["role"] != "system"]


def reformat_messages(task: str, question: str, solution: str) -> list[dict]:
    text = (REFORMAT_TEMPLATE.replace("{answer_format}", answer_format(task))
            .replace("{question}", question).replace("{solution}", solution))
    return [{"role": "user", "content": text}]


def show_prompts(prompt: str, task: str) -> str:
    """Both prompts as sent for `--task`, for `--show-prompt`."""
    system = system_prompt(prompt, task)
    shown = system if system is not None else "(none: the task's own messages, as eval sends them)"
    reformat = reformat_messages(task, "{question}", "{solution}")[0]["content"]
    return (f"# system prompt (--prompt {prompt}, --task {task})\n\n{shown}\n\n"
            f"# reformat prompt (--reformat; user message)\n\n{reformat}")


# ---------------------------------------------------------------- curation (pure)


def foreign_share(text: str) -> float:
    """The share of letters outside the Latin, Greek and mathematical-letter blocks.

    'The answer is 5.' -> 0.0; '答案是 5' -> 1.0
    """
    letters = [ord(c) for c in text if c.isalpha()]
    if not letters:
        return 0.0
    ours = (lambda o: o <= 0x24F or 0x370 <= o <= 0x3FF or 0x1D400 <= o <= 0x1D7FF  # noqa: E731
            or 0x2100 <= o <= 0x214F)
    return sum(not ours(o) for o in letters) / len(letters)


def answer_verdict(task: Task, answer: str, gold: str) -> tuple[bool, str]:
    """Whether `answer` checks, and why not. Tasks whose checker explains itself (math: a
    timed-out check says so) give their reason; others say what was compared."""
    explain = getattr(task, "answer_verdict", None)
    if explain is not None:
        verdict = explain(answer, gold)
        return verdict.ok, verdict.reason
    return task.check_answer(answer, gold), ""


def sample_verdict(task: Task, question: str, gold: str, text: str, tokens: int, finish: str,
                   cfg: DistillConfig, kept: set[str] | None) -> tuple[str, str, str | None]:
    """(verdict, why, answer) of one sample: the first of `REASONS` that applies, or "kept".

    `kept` holds the normalized texts kept so far for this problem (a kept text is added);
    None skips the length and duplicate rules (for a reformatted text).
    """
    if finish == "length":
        return "truncated", f"stopped at {tokens} tokens (--max-new-tokens {cfg.max_new_tokens})", None
    if kept is not None and cfg.max_tokens is not None and tokens > cfg.max_tokens:
        return "too long", f"{tokens} tokens > --max-tokens {cfg.max_tokens}", None
    if kept is not None and tokens < cfg.min_tokens:
        return "too short", f"{tokens} tokens < --min-tokens {cfg.min_tokens}", None
    share = foreign_share(text)
    if share > MAX_FOREIGN and foreign_share(question) <= MAX_FOREIGN:
        return "wrong language", f"{share:.0%} of its letters are outside the Latin and Greek scripts", None
    answer = task.extract_answer(text)
    if answer is None:
        return "missing answer", "no final answer found", None
    ok, reason = answer_verdict(task, answer, gold)
    if not ok:
        return "wrong answer", f"answer {answer!r}, expected {gold!r}" + (f" ({reason})" if reason else ""), answer
    steps = [s for s in text.split(task.step_delimiter) if s.strip()]
    if not steps or not task.is_terminal(steps[-1]):
        return "wrong format", "the text goes on after the final answer", answer
    if kept is not None:
        key = " ".join(text.split())
        if key in kept:
            return "duplicate", "the same text as a sample kept before it", answer
        kept.add(key)
    return "kept", "", answer


def curate_samples(task: Task, problem: Problem, proposals, cfg: DistillConfig) -> list[dict]:
    """Each sample of one problem with its verdict (see `REASONS`)."""
    kept: set[str] = set()
    out = []
    for p in proposals:
        verdict, why, answer = sample_verdict(task, problem.question, problem.answer, p.text, p.tokens,
                                              p.finish, cfg, kept)
        out.append({"text": p.text, "tokens": p.tokens, "finish": p.finish, "answer": answer,
                    "verdict": verdict, "why": why})
    return out


# ---------------------------------------------------------------- generation (model calls)


def distill_content(cfg: DistillConfig, system: str | None) -> dict:
    """What decides a problem's journal row (compared on resume): the flags that change the
    samples or their verdicts, the teacher's fingerprint and the system prompt's hash."""
    d = asdict(cfg)
    keys = ("teacher", "task", "samples", "temperature", "top_p", "max_new_tokens", "min_tokens",
            "max_tokens", "reformat", "seed") + (("answer_formats",) if cfg.task == "math" else ())
    return {**{k: d[k] for k in keys}, "teacher_fingerprint": model_fingerprint(cfg.teacher),
            "prompt_sha256": hashlib.sha256((system or "").encode()).hexdigest()}


def distill_chunk(cfg: DistillConfig, task: Task, policy, system: str | None, chunk: list[Problem],
                  content: dict) -> list[dict]:
    """Journal rows for a chunk of problems: n samples each (one batched call), curated, and
    the kept ones reformatted when asked (one more batched call)."""
    from journey.models.base import Prefix, SamplingConfig
    from journey.stages.evaluate import problem_seed

    started = time.perf_counter()
    prefixes = [Prefix(teacher_messages(task, p.question, system), [], seed=problem_seed(cfg.seed, p.id))
                for p in chunk]
    policy.sampling = SamplingConfig(cfg.temperature, cfg.top_p, 1, cfg.batch_size)
    outs = policy.complete(prefixes, cfg.samples, cfg.max_new_tokens)
    samples = [curate_samples(task, p, props, cfg) for p, props in zip(chunk, outs)]
    prompt_tokens = [policy.prompt_tokens(x) for x in prefixes]
    if cfg.reformat:
        prompt_tokens = [n + extra for n, extra in zip(prompt_tokens, reformat_kept(cfg, task, policy, chunk, samples))]
    seconds = (time.perf_counter() - started) / len(chunk)
    return [{"format": FORMAT, "id": p.id, "problem_sha256": problem_sha256(p), "config": content,
             "question": p.question, "gold": p.answer, "prompt_tokens": n, "seconds": round(seconds, 3),
             "samples": s} for p, s, n in zip(chunk, samples, prompt_tokens)]


def distill_rows(cfg: DistillConfig, system: str | None, content: dict, task: Task, policy,
                 chunk: list[Problem]) -> list[dict]:
    """`distill_chunk` in the (task, policy, chunk) form every stage's chunk maker has."""
    return distill_chunk(cfg, task, policy, system, chunk, content)


def reformat_kept(cfg: DistillConfig, task: Task, policy, chunk: list[Problem],
                  samples: list[list[dict]]) -> list[int]:
    """Reformat every kept sample in place (`reformatted`, `reformat_verdict`, `reformat_why`,
    `reformat_tokens`); returns the prompt tokens spent per problem."""
    from journey.models.base import Prefix, SamplingConfig
    from journey.stages.evaluate import problem_seed

    items, spent = [], [0] * len(chunk)
    for i, (p, ss) in enumerate(zip(chunk, samples)):
        for j, s in enumerate(ss):
            if s["verdict"] != "kept":
                continue
            prefix = Prefix(reformat_messages(task.name, p.question, s["text"]), [],
                            seed=problem_seed(cfg.seed, p.id) + j + 1)
            n = policy.prompt_tokens(prefix)
            if policy.context_length and n + cfg.max_new_tokens > policy.context_length:
                s.update(reformatted=None, reformat_verdict="too long for the context",
                         reformat_why=f"the prompt is {n} tokens", reformat_tokens=0)
                continue
            items.append((i, s, prefix))
            spent[i] += n
    if not items:
        return spent
    before = policy.sampling
    policy.sampling = SamplingConfig(0.0, 1.0, 1, cfg.batch_size)  # greedy: a rewrite, not a sample
    try:
        outs = policy.complete([x for _, _, x in items], 1, cfg.max_new_tokens)
    finally:
        policy.sampling = before
    for (i, s, _), [out] in zip(items, outs):
        p = chunk[i]
        verdict, why, _ = sample_verdict(task, p.question, p.answer, out.text.strip(), out.tokens, out.finish,
                                         cfg, None)
        s.update(reformatted=out.text.strip() if verdict == "kept" else None, reformat_verdict=verdict,
                 reformat_why=why, reformat_tokens=out.tokens)
    return spent


# ---------------------------------------------------------------- the stage


def check_folder(cfg: DistillConfig) -> Path:
    """`--out-dir` checked before anything is written or removed: not an input, nor inside
    the teacher's folder, and new, empty or an earlier distill output (else DataError)."""
    out_dir = Path(cfg.out_dir)
    prompt = Path(cfg.prompt) if cfg.prompt not in ("shipped", "task") else None
    check_output(out_dir, "--out-dir", folder=True,
                 inputs={"--problems": cfg.problems, "--teacher": cfg.teacher, "--prompt": prompt})
    if out_dir.is_dir():
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUTS)
        if others:
            raise DataError(f"--out-dir {out_dir}: the folder holds other files ({', '.join(others[:3])}); "
                            "pick a new or empty folder")
    return out_dir


def clear_outputs(out_dir: Path, overwrite: bool) -> None:
    """Remove the final files (they must never describe other samples), and the journal too on
    overwrite: only once every check has passed and the teacher is loaded."""
    for name in (RECORD, SFT, CARD) + ((JOURNAL,) if overwrite else ()):
        (out_dir / name).unlink(missing_ok=True)


def load_teacher(cfg: DistillConfig, task: Task, system: str | None, todo: list[Problem]):
    from journey.models.base import Prefix, SamplingConfig
    from journey.models.registry import load_policy

    try:
        policy = load_policy(cfg.teacher, task.step_delimiter, SamplingConfig(batch_size=cfg.batch_size),
                             cfg.backend)
    except ValueError as err:
        raise DataError(str(err).replace("--model", "--teacher", 1)) from None
    policy.check_fits([Prefix(teacher_messages(task, p.question, system)) for p in todo], cfg.max_new_tokens,
                      [f"{cfg.problems}:{p.line}" for p in todo], "--max-new-tokens")
    return policy


def run_distill(cfg: DistillConfig) -> dict:
    """Distil (or finish distilling) every problem, then write the SFT rows, record and card."""
    task = get_task(cfg.task, answers=cfg.answer_order())
    system = system_prompt(cfg.prompt, cfg.task)
    every = load_problems(cfg.problems)
    problems = take_first(every, cfg.limit)
    content = distill_content(cfg, system)
    out_dir, started = check_folder(cfg), time.perf_counter()
    journal = out_dir / JOURNAL
    with output_lock(out_dir, "--out-dir"), ray_pool(cfg) as pool:
        done = {} if cfg.overwrite else resume_journal(
            journal, FORMAT, content, every, config_of=lambda r: r.get("config"),
            problem_of=lambda r: {"id": r.get("id"), "question": r.get("question"), "answer": r.get("gold")},
            problems_path=cfg.problems, remedy=DISTILL_REMEDY)
        resumed = sum(p.id in done for p in problems)
        todo = [p for p in problems if p.id not in done]
        per_call = max(1, cfg.batch_size // cfg.samples)
        make_rows = partial(distill_rows, cfg, system, content)
        if pool:  # --ray: every actor loads its own teacher; the first checks the fits
            pool.start(ChunkJob(cfg.task, lambda t, check: load_teacher(cfg, t, system, check), make_rows,
                                per_call, answers=cfg.answer_order()), todo)
        policy = load_teacher(cfg, task, system, todo) if todo and not pool else None
        clear_outputs(out_dir, cfg.overwrite)  # every check passed: the first change to the folder
        with JsonlAppender(journal, kept=None if cfg.overwrite else done) as out, \
                progress_bar("distill", len(problems), "problems") as advance:
            advance(resumed)
            append_chunks(out, done, advance, pool, todo, per_call, partial(make_rows, task, policy))
        records = [done[p.id] for p in problems]
        stats = summarize(records, resumed, time.perf_counter() - started)
        if pool:
            stats["ray"] = pool.report()
        write_outputs(cfg, task, system, records, stats)
    return stats


def summarize(records: list[dict], resumed: int, seconds: float) -> dict:
    """Counts for the summary table, distill.json and the card (pure)."""
    dropped = dict.fromkeys(REASONS, 0)
    kept = samples = sample_tokens = reformat_tokens = tried = reformatted = 0
    with_rows = answered = 0
    for rec in records:
        n_kept = 0
        for s in rec["samples"]:
            samples += 1
            answered += s.get("answer") is not None
            sample_tokens += s["tokens"]
            if s["verdict"] == "kept":
                n_kept += 1
            else:
                dropped[s["verdict"]] += 1
            if s.get("reformat_verdict"):
                tried += 1
                reformatted += s["reformat_verdict"] == "kept"
                reformat_tokens += s.get("reformat_tokens", 0)
        kept += n_kept
        with_rows += n_kept > 0
    return {"problems": len(records), "problems_resumed": resumed, "problems_with_rows": with_rows,
            "samples": samples, "kept": kept, "dropped": dropped,
            # samples whose final answer the task could read (--answer-formats); the others
            # are dropped before it ("truncated" ... "missing answer")
            "answers_extracted": answered,
            "reformat": {"tried": tried, "kept": reformatted, "discarded": tried - reformatted},
            "tokens": {"prompt": sum(r["prompt_tokens"] for r in records), "samples": sample_tokens,
                       "reformat": reformat_tokens},
            "seconds": {"generation": round(sum(r["seconds"] for r in records), 1),
                        "this_run": round(seconds, 1)}}


def sft_rows(task: Task, records: list[dict]) -> list[dict]:
    """TRL SFT rows: the task's prompt, then each kept sample (its reformat when one was kept)."""
    rows = []
    for rec in records:
        for j, s in enumerate(rec["samples"]):
            if s["verdict"] != "kept":
                continue
            text = s.get("reformatted") or s["text"].strip()
            rows.append({"messages": task.messages(rec["question"]) + [{"role": "assistant", "content": text}],
                         "id": rec["id"], "sample": j, "reformatted": bool(s.get("reformatted"))})
    return rows


def settled(stats: dict) -> dict:
    """The stats a resumed run shares with an uninterrupted one (all but what this run did and
    its timings): distill.json keeps them under `stats`, the rest under `this_run`."""
    kept = {k: v for k, v in stats.items() if k not in ("problems_resumed", "ray")}
    kept["seconds"] = {"generation": stats["seconds"]["generation"]}
    return kept


def write_outputs(cfg: DistillConfig, task: Task, system: str | None, records: list[dict], stats: dict) -> None:
    """sft.jsonl, README.md, then distill.json (last: its presence means the set is whole)."""
    out_dir = Path(cfg.out_dir)
    write_jsonl_atomic(out_dir / SFT, sft_rows(task, records))
    digest = hashlib.sha256(Path(cfg.problems).read_bytes()).hexdigest()
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    record = provenance(
        "distill", config, inputs={str(cfg.problems): digest},
        models={"teacher": {"name": cfg.teacher, "fingerprint": model_fingerprint(cfg.teacher),
                            "backend": cfg.backend}},
        prompts={"system": system, "reformat": REFORMAT_TEMPLATE if cfg.reformat else None},
        reasons=REASONS, stats=settled(stats),
        this_run={"problems_resumed": stats["problems_resumed"], "seconds": stats["seconds"]["this_run"],
                  **({"ray": stats["ray"]} if "ray" in stats else {})})
    write_card(out_dir, record)
    write_text_atomic(out_dir / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
