"""The `journey` command line: one command per pipeline stage.

    journey problems --task arith --n 100 --seed 0 --out problems.jsonl
    journey build-tree --problems problems.jsonl --out trees.jsonl
    journey derive-longthought --trees trees.jsonl --out-dir data/
    journey train --stage sft --data data/sft_journey.jsonl --out ckpt/journey
    journey eval --model ckpt/journey --problems test.jsonl
    journey show --trees trees.jsonl --out trees.html
    journey --help

Every command takes `--config recipe.yaml` (keys are the flag names with underscores; flags
given on the command line win), prints a summary table at the end, and turns bad input into a
one-line error with exit code 1.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from journey import __version__
from journey.config import (
    BuildTreeConfig,
    CurateConfig,
    DeriveConfig,
    DistillConfig,
    EvalPRMConfig,
    GenerateConfig,
    GenTestsConfig,
    ImportConfig,
    RunTestsConfig,
    SamplePairsConfig,
    SelfplayConfig,
    TrainConfig,
)
from journey.progress import console as err_console
from journey.progress import progress_bar

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Synthesize o1-style long-thought data by tree search (journey learning), and train on it.",
)
console = Console()


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def describe_os_error(err: OSError) -> str:
    """'[Errno 20] Not a directory: PosixPath('a/b')' -> 'a/b: Not a directory'."""
    why = err.strerror or str(err)
    if err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else err.filename
        return f"{where}: {why}"
    return why


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so every `finally` and cleanup runs as for Ctrl-C."""


def on_sigterm(signum, frame) -> None:
    raise Terminated()


@contextmanager
def user_errors(kept: Callable[[], str] | None = None):
    """Turn bad input (ValueError, our DataError included, or an OSError) into one line, exit 1;
    turn Ctrl-C or SIGTERM into one line saying what was kept (`kept()`), exit 130 or 143."""
    try:
        yield
    except KeyboardInterrupt as err:
        signame, code = ("SIGTERM", 143) if isinstance(err, Terminated) else ("SIGINT", 130)
        note = kept() if kept else "nothing was written"
        err_console.print(f"[bold yellow]interrupted[/] ({signame}): {escape(note)}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(code=code) from None
    except (ValueError, OSError) as err:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise  # --verbose: the whole traceback
        fail(describe_os_error(err) if isinstance(err, OSError) else str(err))


def count_lines(path: Path) -> int:
    """Complete lines in `path` (0 when it does not exist)."""
    try:
        with Path(path).open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))
    except OSError:
        return 0


def load_recipe(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager `--config`: a YAML mapping of flag names to values, used as defaults (flags win).

    Every key must be a flag of the command and every value must convert to the flag's type;
    anything else is an error naming the file and line (`recipe.yaml:3: width: 'two' is not a
    valid integer`), exit 1.
    """
    if value is None:
        return value
    try:
        text = value.read_text(encoding="utf-8")
        recipe = yaml.safe_load(text) or {}
        node = yaml.compose(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        fail(f"--config {value}: cannot read it as YAML ({err.__class__.__name__})")
    if not isinstance(recipe, dict):
        fail(f"--config {value}: expected a mapping of flag names to values")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in getattr(node, "value", [])
             if isinstance(k, yaml.ScalarNode)}
    params = {p.name: p for p in ctx.command.params}
    defaults = {}
    for key, val in recipe.items():
        name, where = str(key).replace("-", "_"), f"{value}:{lines.get(str(key), '?')}"
        if name not in params or name == "config":
            fail(f"--config {where}: unknown key {key!r}")
        defaults[name] = recipe_value(ctx, params[name], val, where, key)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def recipe_value(ctx: typer.Context, param, val, where: str, key):
    """`val` converted to `param`'s type, or a one-line error naming the recipe's file:line."""
    if val is None:
        if param.default is None:
            return None
        fail(f"--config {where}: {key} has no value")
    if isinstance(val, dict) or (isinstance(val, list) and not getattr(param, "multiple", False)):
        fail(f"--config {where}: {key} must be a single value, got {type(val).__name__}")
    try:
        return param.get_runtime_param().coerce(val, param=param, ctx=ctx)
    except typer.BadParameter as err:
        fail(f"--config {where}: {key}: {err.message} (got {val!r})")


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML recipe of flag values (flags on the command line win).",
                 callback=load_recipe, is_eager=True, exists=True, dir_okay=False),
]


# --ray and its flags (build-tree, eval, sample-pairs, distill; see journey.distributed).
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on Ray actors, each with its own models; this process stays the one writer (pip install 'journey[ray]').")]
RayAddressOpt = Annotated[str | None, typer.Option(help="--ray: join this Ray cluster (auto: the one `ray start` made here; or HOST:PORT). Default: start a local Ray with this machine's CPUs.")]
WorkersOpt = Annotated[int | None, typer.Option(help="--ray: actors (default: one per CPU, or per GPU share with --gpus-per-worker).")]
CodeAlphaOpt = Annotated[float, typer.Option(help="--task code: a in a program's reward a * compiles + (1 - a) * pass_rate.")]
UnsafeOpt = Annotated[bool, typer.Option(help="--task code: run model-written programs WITHOUT the bubblewrap jail (rlimits and a timeout only). Dangerous.")]
GpusPerWorkerOpt = Annotated[float, typer.Option(help="--ray: GPUs reserved per actor (0: CPU actors, one torch thread each).")]


def ray_summary(report: dict | None, unit: str) -> list[tuple[str, str]]:
    """Per-worker throughput rows for a summary table (none without --ray)."""
    from journey.distributed import worker_rows

    return worker_rows(report, unit) if report else []


def version_callback(value: bool) -> None:
    if value:
        console.print(f"journey {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    """journey: long-thought training data by tree search, and training on it."""
    signal.signal(signal.SIGTERM, on_sigterm)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    for noisy in ("transformers", "httpx", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """The end-of-command table; text is shown as written (paths may hold `[...]`)."""
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    return table


@app.command()
def problems(
    out: Annotated[Path, typer.Option(help="Where to write problems.jsonl.")],
    task: Annotated[str, typer.Option(help="Problem domain.")] = "arith",
    n: Annotated[int, typer.Option(help="How many problems.")] = 100,
    seed: Annotated[int, typer.Option(help="Generator seed: the same seed gives the same problems.")] = 0,
    source: Annotated[Path | None, typer.Option("--from", help="Import this dataset file instead of generating (JSONL, JSONL.gz, JSON array or Parquet); needs --format.")] = None,
    format: Annotated[str | None, typer.Option(help="The --from file's format: math (MATH, MATH-500), gsm8k, mbpp, humaneval, countdown, or jsonl (any rows; see --question-key).")] = None,
    question_key: Annotated[str, typer.Option(help="--format jsonl: the field holding the question.")] = ImportConfig.question_key,
    answer_key: Annotated[str, typer.Option(help="--format jsonl: the field holding the answer.")] = ImportConfig.answer_key,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    config: ConfigOption = None,
) -> None:
    """Generate problems (id, question, answer) as JSONL for the other stages, or import a dataset file (--from)."""
    from journey.importers import import_problems
    from journey.io import (
        DataError,
        check_not_an_input,
        check_writable,
        output_lock,
        write_jsonl_atomic,
    )
    from journey.tasks import get_task

    if n <= 0:
        fail(f"--n must be > 0, got {n}")
    with user_errors():
        if source is None:
            if format is not None or (question_key, answer_key) != (ImportConfig.question_key, ImportConfig.answer_key):
                raise ValueError("--format, --question-key and --answer-key go with --from FILE")
            t = get_task(task)
            make, what = (lambda: [p.to_row() for p in t.generate(n, seed)]), f"{task} problems"
        else:
            if format is None:
                raise ValueError("--from needs --format: math, gsm8k, mbpp, humaneval, countdown or jsonl")
            imp = ImportConfig(source=source, format=format, out=out, question_key=question_key,
                               answer_key=answer_key, overwrite=overwrite)
            check_not_an_input(out, {"--from": source})
            make = lambda: import_problems(imp.source, imp.format, imp.question_key, imp.answer_key)  # noqa: E731
            what = f"problems from {source} ({format})"
        check_writable(out)
        with output_lock(out):
            if out.exists() and not overwrite:
                raise DataError(f"--out {out}: the file exists; pass --overwrite to replace it")
            rows = make()
            write_jsonl_atomic(out, rows)
    console.print(escape(f"wrote {len(rows)} {what} to {out}"))


@app.command("build-tree")
def build_tree(
    problems: Annotated[Path, typer.Option(help="problems.jsonl to build trees for.")],
    out: Annotated[Path, typer.Option(help="trees.jsonl to append finished trees to (resumable).")],
    model: Annotated[str, typer.Option(help="Policy: 'embedded', a checkpoint folder, or a hub id.")] = BuildTreeConfig.model,
    backend: Annotated[str, typer.Option(help="transformers (here), openai (server at $OPENAI_BASE_URL) or vllm (GPU).")] = BuildTreeConfig.backend,
    task: Annotated[str, typer.Option(help="Problem domain.")] = BuildTreeConfig.task,
    prm: Annotated[str, typer.Option(help="Process reward model: verifier (the task's exact check), rollout, token, qwen, judge, or trained (from `journey train --stage prm`).")] = BuildTreeConfig.prm,
    prm_model: Annotated[str | None, typer.Option(help="Checkpoint of a token/qwen PRM, or the judge LLM (default: the policy).")] = BuildTreeConfig.prm_model,
    rollouts: Annotated[int, typer.Option(help="m: rollouts per step for --prm rollout.")] = BuildTreeConfig.rollouts,
    width: Annotated[int, typer.Option("--width", "-w", help="w: candidate next steps per expanded node.")] = BuildTreeConfig.width,
    depth: Annotated[int, typer.Option("--depth", "-D", help="D: maximum steps from the root.")] = BuildTreeConfig.depth,
    top_k: Annotated[int, typer.Option("--top-k", "-K", help="K (beam): children kept for expansion per tree per depth (of up to K·w, so K may exceed w).")] = BuildTreeConfig.top_k,
    expand: Annotated[str, typer.Option(help="beam: which steps may fill the K slots: never (only steps judged correct; Part 1's 'at most K correct steps') or wrong (steps judged wrong too, when too few are correct).")] = BuildTreeConfig.expand,
    search: Annotated[str, typer.Option(help="beam (top-K per depth, Part 1) or mcts (PUCT selection, o1-Coder / rStar-Math).")] = BuildTreeConfig.search,
    simulations: Annotated[int, typer.Option(help="N (mcts): simulations per tree, each expands one leaf with w samples.")] = BuildTreeConfig.simulations,
    c_puct: Annotated[float, typer.Option(help="mcts: PUCT exploration weight (0 = greedy on q).")] = BuildTreeConfig.c_puct,
    rollout: Annotated[str, typer.Option(help="mcts: a new step's value: none (its PRM score) or policy (one rollout to a final answer: right 1, wrong 0).")] = BuildTreeConfig.rollout,
    max_children: Annotated[int | None, typer.Option(help="mcts: progressive widening up to this many children per node (default: --width, no widening).")] = BuildTreeConfig.max_children,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy); 1 samples the model's own distribution, for diverse trees.")] = BuildTreeConfig.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = BuildTreeConfig.top_p,
    max_step_tokens: Annotated[int, typer.Option(help="Longest step; longer ones are cut and marked invalid.")] = BuildTreeConfig.max_step_tokens,
    batch_size: Annotated[int, typer.Option(help="Sequences per policy call (speed only).")] = BuildTreeConfig.batch_size,
    trees_in_flight: Annotated[int, typer.Option(help="Trees expanded in lockstep (speed and memory only).")] = BuildTreeConfig.trees_in_flight,
    seed: Annotated[int, typer.Option(help="Run seed; every node's sampling seed derives from it.")] = BuildTreeConfig.seed,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = BuildTreeConfig.limit,
    overwrite: Annotated[bool, typer.Option(help="Start over instead of resuming an existing --out.")] = BuildTreeConfig.overwrite,
    gpu_memory_utilization: Annotated[float, typer.Option(help="--backend vllm: vLLM's share of its GPU (weights and KV cache); a PRM on that GPU gets the rest.")] = BuildTreeConfig.gpu_memory_utilization,
    prm_device: Annotated[str | None, typer.Option(help="Where a token/qwen PRM or a judge model goes: cpu, cuda or cuda:N (default: cuda if there is one).")] = BuildTreeConfig.prm_device,
    ray: RayOpt = BuildTreeConfig.ray,
    ray_address: RayAddressOpt = BuildTreeConfig.ray_address,
    workers: WorkersOpt = BuildTreeConfig.workers,
    gpus_per_worker: GpusPerWorkerOpt = BuildTreeConfig.gpus_per_worker,
    code_alpha: CodeAlphaOpt = BuildTreeConfig.code_alpha,
    unsafe_no_sandbox: UnsafeOpt = BuildTreeConfig.unsafe_no_sandbox,
    config: ConfigOption = None,
) -> None:
    """Expand a reasoning tree per problem: w candidates per node, PRM-scored, to depth D; beam keeps
    the top K per depth, mcts selects leaves by PUCT for N simulations.

    Trees are appended to --out as they finish; rerunning the same command resumes.
    """
    from journey.build_tree import run_build_tree

    with user_errors():
        cfg = BuildTreeConfig(
            problems=problems, out=out, model=model, backend=backend, task=task, prm=prm,
            prm_model=prm_model, rollouts=rollouts, width=width, depth=depth, top_k=top_k, expand=expand,
            search=search, simulations=simulations, c_puct=c_puct, rollout=rollout, max_children=max_children,
            temperature=temperature, top_p=top_p, max_step_tokens=max_step_tokens,
            batch_size=batch_size, trees_in_flight=trees_in_flight, seed=seed, overwrite=overwrite,
            limit=limit, gpu_memory_utilization=gpu_memory_utilization, prm_device=prm_device,
            ray=ray, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
            code_alpha=code_alpha, unsafe_no_sandbox=unsafe_no_sandbox)
    kept = lambda: f"{count_lines(out):,} finished trees are kept in {out}; rerun the same command to resume"  # noqa: E731
    with user_errors(kept), progress_bar("build-tree", None, "trees") as advance:
        nodes, started = [0], time.perf_counter()

        def progress(event: str, value: int) -> None:
            if event == "total":
                advance(0, total=value)
            elif event == "tree":
                advance(value)
            else:
                nodes[0] += value
                rate = nodes[0] / max(time.perf_counter() - started, 1e-9)
                advance(0, info=f"{nodes[0]:,} nodes ({rate:,.0f} nodes/s)")

        stats = run_build_tree(cfg, progress)
    x = stats.extra
    mean = lambda v: f"{v / stats.trees:,.1f}" if stats.trees else "-"  # noqa: E731
    console.print(summary_table(f"build-tree -> {out}", [
        ("problems", f"{x['problems']:,} ({stats.resumed:,} already done)"),
        ("trees with a correct path", f"{stats.solved:,} / {stats.trees:,}"),
        ("mean nodes per tree", mean(stats.nodes)),
        ("mean steps generated per tree",
         f"{mean(stats.steps_generated)} ({x['budget'][0]}: {x['budget'][1]:,}; exhaustive: {x['exhaustive_steps']:,})"),
        ("tokens generated", f"{stats.tokens:,}"),
        ("time (this run)", f"{stats.seconds:,.1f} s"),
        *ray_summary(x.get("ray"), "trees"),
    ]))
    console.print("A correct path: a right final answer with every step judged correct "
                  "(what derive-longthought can use).", style="dim")


@app.command("derive-longthought")
def derive_longthought(
    trees: Annotated[Path, typer.Option(help="trees.jsonl from build-tree.")],
    out_dir: Annotated[Path, typer.Option(help="Folder for sft_journey.jsonl, sft_shortcut.jsonl, dpo_pairs.jsonl, prm_steps.jsonl, prm_pairs.jsonl.")],
    max_trials: Annotated[int, typer.Option("--max-trials", "-K", help="K: trials per correct-path node, the correct one included (1 = shortcut only).")] = DeriveConfig.max_trials,
    trial_prob: Annotated[float, typer.Option(help="p: chance of each failed trial at a correct-path node.")] = DeriveConfig.trial_prob,
    pairs_per_problem: Annotated[int, typer.Option(help="P: DPO pairs per tree (chosen right, rejected wrong).")] = DeriveConfig.pairs_per_problem,
    style: Annotated[str, typer.Option(help="Reflection phrasing: 'verbose' (varied, the paper's words) or 'concise' (one short form; easier for tiny models).")] = DeriveConfig.style,
    seed: Annotated[int, typer.Option(help="Seed for trial choices and reflection phrasing.")] = DeriveConfig.seed,
    task: Annotated[str | None, typer.Option(help="Problem domain (default: the one recorded in the trees).")] = DeriveConfig.task,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer for the token counts in the summary.")] = DeriveConfig.tokenizer,
    rewrite_model: Annotated[str | None, typer.Option(help="Optional LLM that rewrites each journey draft (our published prompt).")] = DeriveConfig.rewrite_model,
    rewrite_backend: Annotated[str, typer.Option(help="Backend of the rewrite model.")] = DeriveConfig.rewrite_backend,
    prm_labels: Annotated[str, typer.Option(help="Labels of prm_steps/prm_pairs: auto (verdict for verifier trees, else MCTS q, else PRM score), verdict, score or q.")] = DeriveConfig.prm_labels,
    trial_count: Annotated[str, typer.Option(help="Failed trials per correct-path node: geometric (each with --trial-prob, the first miss stops) or uniform (0..K-1, so success does not always follow the first failure).")] = DeriveConfig.trial_count,
    trial_end: Annotated[str, typer.Option(help="A trial stops at its first wrong step (first-wrong) or runs on to a wrong final answer where the tree has one (dead-end).")] = DeriveConfig.trial_end,
    backtrack: Annotated[str, typer.Option(help="A backtrack names the step to resume from (step: its number and text) or restates what is left to solve (state; arith: the remaining expression).")] = DeriveConfig.backtrack,
    config: ConfigOption = None,
) -> None:
    """Derive long thoughts from trees: the shortcut, the journey (trials, reflection, backtracking), DPO pairs."""
    from journey.derive import run_derive

    with user_errors(lambda: f"nothing was written; {out_dir} is as it was"):
        cfg = DeriveConfig(
            trees=trees, out_dir=out_dir, max_trials=max_trials, trial_prob=trial_prob,
            pairs_per_problem=pairs_per_problem, style=style, seed=seed, task=task,
            tokenizer=tokenizer, rewrite_model=rewrite_model, rewrite_backend=rewrite_backend,
            prm_labels=prm_labels, trial_count=trial_count, trial_end=trial_end, backtrack=backtrack)
        stats = run_derive(cfg)
    used = max(stats.used, 1)
    words = ", ".join(f"{w} {c / used:.2f}" for w, c in stats.reflection_words.items())
    rows = [
        ("trees with a correct path (used) / without", f"{stats.used:,} / {stats.skipped_no_correct:,}"),
        ("mean trials per journey", f"{stats.trials / used:.2f}"),
        ("format errors (steps never used as a trial)", f"{stats.format_errors:,}"),
        ("mean tokens: journey vs shortcut", f"{stats.journey_tokens / used:,.1f} vs {stats.shortcut_tokens / used:,.1f}"),
        ("reflection words per journey", words),
        ("DPO pairs written", f"{stats.pairs:,}"),
        ("PRM rows: steps / pairs", f"{stats.prm_steps:,} / {stats.prm_pairs:,} "
                                    f"(labels: {', '.join(f'{k} {v}' for k, v in stats.label_sources.items())})"),
    ]
    if rewrite_model:
        rows.append(("rewrites discarded for the draft", f"{stats.rewrite_fallbacks:,} / {stats.used:,}"))
    console.print(summary_table(f"derive-longthought -> {out_dir}", rows))


def parse_files(value: str) -> list[Path]:
    return [Path(v.strip()) for v in value.split(",") if v.strip()]


@app.command()
def train(
    stage: Annotated[str, typer.Option(help="'sft' (TRL SFTTrainer, loss on the answer only), 'dpo' (TRL DPOTrainer) or 'prm' (a process reward model: see --objective).")],
    data: Annotated[str, typer.Option(help="Data file(s), comma-separated: SFT {messages}, DPO {prompt, chosen, rejected}, or PRM rows (prm_steps.jsonl / prm_pairs.jsonl).")],
    out: Annotated[Path, typer.Option(help="Folder for the trained checkpoint (HF format).")],
    model: Annotated[str, typer.Option(help="Starting model: 'embedded', a checkpoint folder, or a hub id.")] = TrainConfig.model,
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = TrainConfig.epochs,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: TRL's, 2e-5 for SFT and 1e-6 for DPO).")] = TrainConfig.lr,
    batch_size: Annotated[int, typer.Option(help="Rows per device per step.")] = TrainConfig.batch_size,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = TrainConfig.grad_accum,
    max_length: Annotated[int, typer.Option(help="Longest tokenized row; longer rows are truncated.")] = TrainConfig.max_length,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (overrides --epochs when > 0).")] = TrainConfig.max_steps,
    lora: Annotated[bool, typer.Option(help="Train LoRA adapters (peft), merged into the saved checkpoint.")] = TrainConfig.lora,
    mask_wrong_steps: Annotated[bool, typer.Option(help="SFT: no loss on the wrong steps of journey rows (their mask_spans), only on reflections and corrections.")] = TrainConfig.mask_wrong_steps,
    beta: Annotated[float, typer.Option(help="DPO: strength of the KL penalty.")] = TrainConfig.beta,
    loss_type: Annotated[str, typer.Option(help="DPO: TRL loss type (sigmoid, ipo, hinge, ...).")] = TrainConfig.loss_type,
    objective: Annotated[str, typer.Option(help="PRM: pointwise (cross-entropy at every step end, prm_steps.jsonl) or pairwise (Bradley-Terry on sibling steps, prm_pairs.jsonl).")] = TrainConfig.objective,
    seed: Annotated[int, typer.Option(help="Training seed.")] = TrainConfig.seed,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = TrainConfig.overwrite,
    config: ConfigOption = None,
) -> None:
    """Fine-tune with TRL (SFT on long thoughts or shortcuts, DPO on preference pairs), or train a PRM."""
    from journey.train import run_train

    with user_errors():
        cfg = TrainConfig(
            stage=stage, data=parse_files(data), out=out, model=model, epochs=epochs, lr=lr,
            batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
            max_steps=max_steps, lora=lora, mask_wrong_steps=mask_wrong_steps, beta=beta, loss_type=loss_type,
            objective=objective, seed=seed,
            overwrite=overwrite)
    with user_errors(lambda: f"the unfinished checkpoint was removed; {out} is as it was"):
        record = run_train(cfg)
    curve = record["loss_curve"]
    console.print(summary_table(f"train --stage {stage} -> {out}", [
        ("rows", f"{record['rows']:,}"),
        ("steps", f"{record['steps']:,}"),
        ("loss: first -> last", f"{curve[0]['loss']:.4f} -> {curve[-1]['loss']:.4f}" if curve else "-"),
        ("time", f"{record['seconds']:,.1f} s"),
        ("files", f"{out}/ (checkpoint, train.json, loss.png)"),
    ]))


def generate_options(kind: type[GenerateConfig], **flags) -> GenerateConfig:
    """eval's or sample-pairs' config from the command's flags (`**locals()`: what is not a
    field of `kind` is left out), or a one-line error on a bad value."""
    with user_errors():
        return kind(**{k: v for k, v in flags.items() if k in kind.__dataclass_fields__})


def journal_kept(journal: Path) -> Callable[[], str]:
    return lambda: (f"{count_lines(journal):,} finished problems are kept in {journal}; "
                    "rerun the same command to resume")


ModelOpt = Annotated[str, typer.Option(help="'embedded', a checkpoint folder, or a hub id.")]
BackendOpt = Annotated[str, typer.Option(help="transformers (here), openai (server at $OPENAI_BASE_URL) or vllm (GPU).")]
ProblemsOpt = Annotated[Path, typer.Option(help="problems.jsonl (id, question, answer).")]
TaskOpt = Annotated[str, typer.Option(help="Problem domain.")]
TopPOpt = Annotated[float, typer.Option(help="Nucleus sampling mass.")]
MaxNewOpt = Annotated[int, typer.Option(help="Longest answer, in tokens.")]
BatchOpt = Annotated[int, typer.Option(help="Sequences per generate call.")]
SeedOpt = Annotated[int, typer.Option(help="Sampling seed.")]
LimitOpt = Annotated[int | None, typer.Option(help="Only the first N problems.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Start over instead of resuming the generations kept beside --out.")]


@app.command("eval")
def eval_(
    model: ModelOpt,
    problems: ProblemsOpt,
    out: Annotated[Path, typer.Option(help="metrics.json to write (generations go beside it).")] = Path("metrics.json"),
    task: TaskOpt = GenerateConfig.task,
    samples: Annotated[int, typer.Option("--samples", "-k", help="k samples per problem for maj@k and pass@k (1 = greedy only).")] = GenerateConfig.samples,
    temperature: Annotated[float, typer.Option(help="Temperature of the k samples (greedy accuracy is always at 0).")] = GenerateConfig.temperature,
    top_p: TopPOpt = GenerateConfig.top_p,
    max_new_tokens: MaxNewOpt = GenerateConfig.max_new_tokens,
    batch_size: BatchOpt = GenerateConfig.batch_size,
    seed: SeedOpt = GenerateConfig.seed,
    limit: LimitOpt = GenerateConfig.limit,
    backend: BackendOpt = GenerateConfig.backend,
    overwrite: OverwriteOpt = GenerateConfig.overwrite,
    ray: RayOpt = GenerateConfig.ray,
    ray_address: RayAddressOpt = GenerateConfig.ray_address,
    workers: WorkersOpt = GenerateConfig.workers,
    gpus_per_worker: GpusPerWorkerOpt = GenerateConfig.gpus_per_worker,
    unsafe_no_sandbox: UnsafeOpt = GenerateConfig.unsafe_no_sandbox,
    inject_errors: Annotated[bool, typer.Option(help="Mechanism eval instead: prefill a correct prefix plus one wrong step (or a clean one), let the model go on, and report recovery, detection, false alarms, backtrack validity and length.")] = False,
    config: ConfigOption = None,
) -> None:
    """Measure a model on held-out problems: accuracy, maj@k, pass@k, tokens, reflection words."""
    from journey.evaluate import generations_path, run_eval

    cfg = generate_options(GenerateConfig, **locals())
    if inject_errors:
        return inject_table(cfg)
    with user_errors(journal_kept(generations_path(out))):
        m = run_eval(cfg)
    rows = [("problems", f"{m['problems']:,}"),
            ("greedy accuracy", f"{m['accuracy']:.3f} ± {m['accuracy_se']:.3f}")]
    if samples > 1:
        rows += [(f"maj@{samples}", f"{m[f'maj@{samples}']:.3f}"), ("pass@1", f"{m['pass@1']:.3f}"),
                 (f"pass@{samples}", f"{m[f'pass@{samples}']:.3f}")]
    rows += [("mean tokens (greedy)", f"{m['mean_tokens']:,.1f}"),
             ("reflection words per answer", ", ".join(f"{w} {c:.2f}" for w, c in m["reflection_words_per_answer"].items())),
             ("files", f"{out}, {generations_path(out)}"), *ray_summary(m["provenance"].get("ray"), "problems")]
    console.print(summary_table(f"eval {model}", rows))


def inject_table(cfg) -> None:
    """`eval --inject-errors`: run it and print the mechanism table."""
    from journey.inject import injections_path, run_inject

    with user_errors(journal_kept(injections_path(cfg.out))):
        m = run_inject(cfg)
    pct = lambda r: f"{r['rate']:.3f} ± {r['se']:.3f}"  # noqa: E731
    validity = "-" if m["backtrack_validity"] is None else f"{m['backtrack_validity']:.3f} of {m['backtracks']:,}"
    console.print(summary_table(f"eval --inject-errors {cfg.model}", [
        ("problems (with an injected step)", f"{m['problems']:,} ({m['injected']:,})"),
        ("recovery: right answer after a wrong step", pct(m["recovery"])),
        ("detection: a doubt within 2 lines of it", pct(m["detection"])),
        ("false alarms: a doubt after a clean prefix", pct(m["false_alarm"])),
        ("valid backtracks", validity),
        ("mean tokens after: wrong step vs clean", f"{m['mean_tokens_after_injected']:,.1f} vs {m['mean_tokens_after_clean']:,.1f}"),
        ("files", f"{cfg.out}, {injections_path(cfg.out)}"),
    ]))


@app.command("sample-pairs")
def sample_pairs(
    model: ModelOpt,
    problems: ProblemsOpt,
    out: Annotated[Path, typer.Option(help="dpo_pairs.jsonl to write.")],
    pairs: Annotated[int, typer.Option(help="P: pairs per problem (P right and P wrong answers drawn at random).")] = SamplePairsConfig.pairs,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Responses sampled per problem.")] = SamplePairsConfig.samples,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = SamplePairsConfig.temperature,
    top_p: TopPOpt = SamplePairsConfig.top_p,
    task: TaskOpt = SamplePairsConfig.task,
    max_new_tokens: MaxNewOpt = SamplePairsConfig.max_new_tokens,
    batch_size: BatchOpt = SamplePairsConfig.batch_size,
    seed: SeedOpt = SamplePairsConfig.seed,
    limit: LimitOpt = SamplePairsConfig.limit,
    backend: BackendOpt = SamplePairsConfig.backend,
    overwrite: OverwriteOpt = SamplePairsConfig.overwrite,
    ray: RayOpt = SamplePairsConfig.ray,
    ray_address: RayAddressOpt = SamplePairsConfig.ray_address,
    workers: WorkersOpt = SamplePairsConfig.workers,
    gpus_per_worker: GpusPerWorkerOpt = SamplePairsConfig.gpus_per_worker,
    unsafe_no_sandbox: UnsafeOpt = SamplePairsConfig.unsafe_no_sandbox,
    config: ConfigOption = None,
) -> None:
    """On-policy DPO pairs (the paper's recipe): sample answers, check them, pair right with wrong."""
    from journey.evaluate import run_sample_pairs, samples_path

    cfg = generate_options(SamplePairsConfig, **locals())
    with user_errors(journal_kept(samples_path(out))):
        s = run_sample_pairs(cfg)
    console.print(summary_table(f"sample-pairs -> {out}", [
        ("problems", f"{s['problems']:,}"),
        ("samples right", f"{s['right']:,} / {s['samples']:,}"),
        ("pairs written", f"{s['pairs']:,} (from {s['problems_with_pairs']:,} problems)"),
        ("files", f"{out}, {samples_path(out)}"),
        *ray_summary(s.get("ray"), "problems"),
    ]))


@app.command("eval-prm")
def eval_prm(
    trees: Annotated[Path, typer.Option(help="Held-out trees.jsonl (from build-tree) whose steps the PRM judges.")],
    prm_model: Annotated[str | None, typer.Option(help="The PRM checkpoint (for --prm trained: from `journey train --stage prm`).")] = EvalPRMConfig.prm_model,
    prm: Annotated[str, typer.Option(help="Which PRM: trained, token, qwen, judge or rollout.")] = EvalPRMConfig.prm,
    out: Annotated[Path | None, typer.Option(help="prm_metrics.json to write (optional).")] = EvalPRMConfig.out,
    task: Annotated[str | None, typer.Option(help="Problem domain (default: the one recorded in the trees).")] = EvalPRMConfig.task,
    config: ConfigOption = None,
) -> None:
    """Judge a PRM as the paper does: precision, recall and F1 of its step verdicts against exact labels."""
    from journey.eval_prm import run_eval_prm

    with user_errors():
        m = run_eval_prm(EvalPRMConfig(trees=trees, prm_model=prm_model, prm=prm, out=out, task=task))
    fmt = lambda d: f"P {d['precision']:.3f}  R {d['recall']:.3f}  F1 {d['f1']:.3f}"  # noqa: E731
    rows = [("steps judged (right / all)", f"{m['right_steps']:,} / {m['steps']:,} in {m['trees']:,} trees"),
            ("accuracy", f"{m['accuracy']:.3f}"),
            ("right step as positive", fmt(m["right_as_positive"])),
            ("wrong step as positive", fmt(m["wrong_as_positive"])),
            ("sibling pairs ranked right", "-" if m["pair_accuracy"] is None
             else f"{m['pair_accuracy']:.3f} ({m['sibling_pairs']:,} pairs)"),
            ("paper (Part 1): Math-Shepherd / o1-mini F1", ".734-.855 / .855-.880")]
    if m["rollout_steps"]:
        r = m["rollout_correlation"]
        rows.append(("correlation with rollout values", "-" if r is None else f"{r:.3f} ({m['rollout_steps']:,} steps)"))
    if out:
        rows.append(("file", str(out)))
    console.print(summary_table(f"eval-prm {prm_model or prm}", rows))


@app.command()
def selfplay(
    problems: Annotated[Path, typer.Option(help="Train problems (problems.jsonl): trees, SFT and DPO data come from them.")],
    test: Annotated[Path, typer.Option(help="Held-out problems: policy accuracy per round, and the trees PRMs are judged on.")],
    out_dir: Annotated[Path, typer.Option(help="Folder for every round's trees, data, models and metrics (resumable).")],
    rounds: Annotated[int, typer.Option(help="R: rounds of search -> derive -> train.")] = SelfplayConfig.rounds,
    model: Annotated[str, typer.Option(help="Policy of round 0: 'embedded', a checkpoint folder, or a hub id.")] = SelfplayConfig.model,
    prm: Annotated[str, typer.Option(help="PRM of round 0 (verifier, rollout, trained, ...).")] = SelfplayConfig.prm,
    prm_model: Annotated[str | None, typer.Option(help="Checkpoint of the round-0 PRM, if it needs one.")] = SelfplayConfig.prm_model,
    prm_loop: Annotated[str, typer.Option(help="Later rounds search with the PRM trained the round before (trained) or keep --prm (fixed).")] = SelfplayConfig.prm_loop,
    task: Annotated[str, typer.Option(help="Problem domain.")] = SelfplayConfig.task,
    search: Annotated[str, typer.Option(help="beam or mcts.")] = SelfplayConfig.search,
    width: Annotated[int, typer.Option("--width", "-w", help="w: candidates per expanded node.")] = SelfplayConfig.width,
    depth: Annotated[int, typer.Option("--depth", "-D", help="D: maximum steps.")] = SelfplayConfig.depth,
    top_k: Annotated[int, typer.Option("--top-k", "-K", help="K (beam): children kept per depth.")] = SelfplayConfig.top_k,
    simulations: Annotated[int, typer.Option(help="N (mcts): simulations per tree.")] = SelfplayConfig.simulations,
    temperature: Annotated[float, typer.Option(help="Tree sampling temperature.")] = SelfplayConfig.temperature,
    max_trials: Annotated[int, typer.Option(help="derive: K trials per correct-path node.")] = SelfplayConfig.max_trials,
    trial_prob: Annotated[float, typer.Option(help="derive: p of each failed trial.")] = SelfplayConfig.trial_prob,
    style: Annotated[str, typer.Option(help="derive: verbose or concise reflections.")] = SelfplayConfig.style,
    sft_data: Annotated[str, typer.Option(help="SFT on the journey or the shortcut rows.")] = SelfplayConfig.sft_data,
    epochs: Annotated[float, typer.Option(help="SFT epochs.")] = SelfplayConfig.epochs,
    lr: Annotated[float, typer.Option(help="SFT learning rate.")] = SelfplayConfig.lr,
    dpo_lr: Annotated[float, typer.Option(help="DPO learning rate.")] = SelfplayConfig.dpo_lr,
    prm_epochs: Annotated[float, typer.Option(help="PRM epochs.")] = SelfplayConfig.prm_epochs,
    prm_lr: Annotated[float, typer.Option(help="PRM learning rate.")] = SelfplayConfig.prm_lr,
    batch_size: Annotated[int, typer.Option(help="Rows per training step (all three trainings).")] = SelfplayConfig.batch_size,
    max_steps: Annotated[int, typer.Option(help="Cap every training at this many steps (-1: by epochs).")] = SelfplayConfig.max_steps,
    pair_samples: Annotated[int, typer.Option(help="sample-pairs: responses per problem.")] = SelfplayConfig.pair_samples,
    pairs: Annotated[int, typer.Option(help="sample-pairs: P pairs per problem.")] = SelfplayConfig.pairs,
    dpo_problems: Annotated[int | None, typer.Option(help="sample-pairs: only the first N train problems.")] = SelfplayConfig.dpo_problems,
    eval_samples: Annotated[int, typer.Option(help="eval: k samples per test problem (pass@k).")] = SelfplayConfig.eval_samples,
    limit: Annotated[int | None, typer.Option(help="Only the first N train problems.")] = SelfplayConfig.limit,
    test_limit: Annotated[int | None, typer.Option(help="Only the first N test problems.")] = SelfplayConfig.test_limit,
    seed: Annotated[int, typer.Option(help="Run seed (round r uses seed + r for its trees, data and training).")] = SelfplayConfig.seed,
    config: ConfigOption = None,
) -> None:
    """Self-play (o1-Coder): each round builds trees with its policy and PRM, derives data, trains the next policy (SFT, DPO) and PRM, and evaluates both."""
    from journey.selfplay import run_selfplay

    with user_errors(lambda: f"finished rounds are kept in {out_dir}; rerun the same command to resume"):
        cfg = SelfplayConfig(**{k: v for k, v in locals().items() if k in SelfplayConfig.__dataclass_fields__})
        rows = run_selfplay(cfg, on_round=lambda row: console.print(
            f"round {row['round']}: accuracy {row['accuracy']:.3f}, PRM F1 {row['prm_f1_right']:.3f}"))
    console.print(selfplay_table(rows, out_dir))


def selfplay_table(rows: list[dict], out_dir: Path) -> Table:
    k = next((key for key in rows[0] if key.startswith("pass@")), "pass@k") if rows else "pass@k"
    table = Table(title=escape(f"selfplay -> {out_dir}"), title_justify="left")
    for col in ("round", "trees solved", "steps / tree", "SFT rows", "DPO pairs", "accuracy ± s.e.", k,
                "PRM F1 (right / wrong)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["round"]), f"{r['trees_solved']} / {r['trees']}", f"{r['steps_generated_per_tree']:.1f}",
                      str(r["sft_rows"]), str(r["dpo_pairs"]), f"{r['accuracy']:.3f} ± {r['accuracy_se']:.3f}",
                      "-" if r.get(k) is None else f"{r[k]:.3f}", f"{r['prm_f1_right']:.3f} / {r['prm_f1_wrong']:.3f}")
    return table


@app.command()
def show(
    trees: Annotated[Path, typer.Option(help="trees.jsonl from build-tree.")],
    out: Annotated[Path, typer.Option(help="HTML file to write (self-contained: opens offline).")] = Path("trees.html"),
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only these tree ids (repeat the flag for more).")] = None,
    max_trials: Annotated[int, typer.Option("--max-trials", "-K", help="K for the journey drawn on the tree (as derive-longthought).")] = 2,
    trial_prob: Annotated[float, typer.Option(help="p for the journey drawn on the tree (as derive-longthought).")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed for the journey drawn on the tree (as derive-longthought).")] = 0,
    config: ConfigOption = None,
) -> None:
    """Draw reasoning trees as one HTML page: verdicts, scores, reasons, the shortcut and the journey."""
    from journey.build_tree import load_trees
    from journey.io import check_writable
    from journey.show import write_page

    with user_errors():
        if max_trials < 1 or not 0 <= trial_prob <= 1:
            raise ValueError("--max-trials must be >= 1 and --trial-prob in [0, 1]")
        chosen = load_trees(trees)
        if ids:
            known = {t.id for t in chosen}
            missing = [i for i in ids if i not in known]
            if missing:
                raise ValueError(f"--id {missing[0]}: no such tree in {trees}")
            chosen = [t for t in chosen if t.id in set(ids)]
        check_writable(out)
        shown = write_page(chosen, out, max_trials, trial_prob, seed, title=f"journey trees: {trees.name}")
    console.print(escape(f"wrote {shown} tree(s) to {out}; open it in a browser"))



@app.command()
def curate(
    problems: Annotated[Path, typer.Option(help="problems.jsonl, or a MATH / MATH-500 file (problem, solution, answer).")],
    out: Annotated[Path, typer.Option(help="Where to write the problems kept (the rows as they were).")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = CurateConfig.overwrite,
    config: ConfigOption = None,
) -> None:
    """Keep the math problems a checker can grade (Part 2's curation): drop proofs, figure-dependent questions, and missing or unreadable answers."""
    from journey.io import (
        DataError,
        check_not_an_input,
        check_writable,
        output_lock,
        read_jsonl,
        write_jsonl_atomic,
    )
    from journey.tasks.math import CURATION_RULES
    from journey.tasks.math import curate as curate_rows

    with user_errors():
        cfg = CurateConfig(problems=problems, out=out, overwrite=overwrite)
        rows = [row for _, row in read_jsonl(cfg.problems)]
        if not rows:
            raise DataError(f"--problems {problems}: no rows in the file")
        check_writable(out)
        check_not_an_input(out, {"--problems": problems})
        with output_lock(out):
            if out.exists() and not overwrite:
                raise DataError(f"--out {out}: the file exists; pass --overwrite to replace it")
            kept, dropped = curate_rows(rows)
            write_jsonl_atomic(out, kept)
    console.print(summary_table(f"curate -> {out}", [
        ("kept", f"{len(kept):,} / {len(rows):,}"),
        *[(f"dropped: {rule}", f"{count:,}") for rule, count in dropped.items()],
    ]))
    for rule, what in CURATION_RULES.items():
        console.print(escape(f"{rule}: {what}"), style="dim", highlight=False)


@app.command()
def distill(
    teacher: Annotated[str | None, typer.Option(help="The teacher: a model served at $OPENAI_BASE_URL (--backend openai), a checkpoint folder, a hub id, or 'embedded'.")] = None,
    problems: Annotated[Path | None, typer.Option(help="problems.jsonl to distil long thoughts for.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for sft.jsonl, distill.json, README.md (a dataset card) and samples.jsonl (the journal; rerun to resume).")] = None,
    backend: BackendOpt = DistillConfig.backend,
    task: Annotated[str, typer.Option(help="How answers are extracted and checked: math (\\boxed{}, math-verify) or arith ('The answer is N.').")] = DistillConfig.task,
    samples: Annotated[int, typer.Option("--samples", "-n", help="n: teacher samples per problem.")] = DistillConfig.samples,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the teacher.")] = DistillConfig.temperature,
    top_p: TopPOpt = DistillConfig.top_p,
    max_new_tokens: Annotated[int, typer.Option(help="Longest sample, in tokens; a sample that reaches it is dropped as truncated.")] = DistillConfig.max_new_tokens,
    min_tokens: Annotated[int, typer.Option(help="Drop samples shorter than this, in tokens, as too short (0: off).")] = DistillConfig.min_tokens,
    max_tokens: Annotated[int | None, typer.Option(help="Drop finished samples longer than this, in tokens, as too long (default: off).")] = DistillConfig.max_tokens,
    reformat: Annotated[bool, typer.Option(help="Ask the teacher again (greedy) to rewrite each kept sample step by step; a rewrite that loses the answer is discarded and counted.")] = DistillConfig.reformat,
    prompt: Annotated[str, typer.Option(help="The teacher's system prompt: 'shipped' (journey/distill_prompt.md), 'task' (the task's own prompt, as eval sends) or a file.")] = DistillConfig.prompt,
    batch_size: Annotated[int, typer.Option(help="Sequences (problems x samples) per teacher call (speed only).")] = DistillConfig.batch_size,
    seed: SeedOpt = DistillConfig.seed,
    limit: LimitOpt = DistillConfig.limit,
    overwrite: Annotated[bool, typer.Option(help="Start over instead of resuming the samples journal in --out-dir.")] = DistillConfig.overwrite,
    show_prompt: Annotated[bool, typer.Option(help="Print the prompts sent to the teacher (for --task and --prompt) and exit.")] = False,
    ray: RayOpt = DistillConfig.ray,
    ray_address: RayAddressOpt = DistillConfig.ray_address,
    workers: WorkersOpt = DistillConfig.workers,
    gpus_per_worker: GpusPerWorkerOpt = DistillConfig.gpus_per_worker,
    config: ConfigOption = None,
) -> None:
    """Distil long thoughts from a teacher (Part 2): n samples per problem, curated with a count per reason, optionally reformatted, as TRL SFT rows."""
    from journey.distill import JOURNAL, REASONS, run_distill, show_prompts

    if show_prompt:
        with user_errors():
            typer.echo(show_prompts(prompt, task))
        return
    for flag_name, value in (("--teacher", teacher), ("--problems", problems), ("--out-dir", out_dir)):
        if value is None:
            fail(f"{flag_name} is required (or pass --show-prompt)")
    with user_errors():
        cfg = DistillConfig(**{k: v for k, v in locals().items() if k in DistillConfig.__dataclass_fields__})
    with user_errors(journal_kept(out_dir / JOURNAL)):
        s = run_distill(cfg)
    total = max(s["samples"], 1)
    rows = [("problems", f"{s['problems']:,} ({s['problems_resumed']:,} already done)"),
            ("samples kept", f"{s['kept']:,} / {s['samples']:,} ({s['kept'] / total:.1%})")]
    rows += [(f"dropped: {reason}", f"{n:,} ({n / total:.1%})") for reason, n in s["dropped"].items()]
    if reformat:
        r = s["reformat"]
        rows.append(("reformats kept / tried", f"{r['kept']:,} / {r['tried']:,}"))
    t = s["tokens"]
    rows += [("SFT rows", f"{s['kept']:,} (from {s['problems_with_rows']:,} problems)"),
             ("tokens: prompts / samples / reformats", f"{t['prompt']:,} / {t['samples']:,} / {t['reformat']:,}"),
             ("teacher time", f"{s['seconds']['generation']:,.1f} s (this run: {s['seconds']['this_run']:,.1f} s)"),
             ("files", f"{out_dir}/ (sft.jsonl, distill.json, README.md, {JOURNAL})"),
             *ray_summary(s.get("ray"), "problems")]
    console.print(summary_table(f"distill {teacher} -> {out_dir}", rows))
    for reason, what in REASONS.items():
        if s["dropped"][reason]:
            console.print(escape(f"{reason}: {what}"), style="dim", highlight=False)


@app.command("run-tests")
def run_tests_cmd(
    problems: Annotated[Path, typer.Option(help="Code problems: id, entry_point, tests [{input: [args], output}].")],
    solutions: Annotated[Path, typer.Option(help='Programs to score: {"id": problem id, "code": "..."} per line.')],
    out: Annotated[Path, typer.Option(help="Where to write results.jsonl (one row per solution).")],
    code_alpha: Annotated[float, typer.Option(help="a in the reward a * compiles + (1 - a) * pass_rate.")] = RunTestsConfig.code_alpha,
    workers: Annotated[int | None, typer.Option(help="Programs run at once (default: the CPU count).")] = RunTestsConfig.workers,
    unsafe_no_sandbox: Annotated[bool, typer.Option(help="Run the programs WITHOUT the bubblewrap jail (rlimits only). Dangerous.")] = RunTestsConfig.unsafe_no_sandbox,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = RunTestsConfig.overwrite,
) -> None:
    """Score programs against their problems' tests in the sandbox: compiles, pass rate, reward, a verdict per test."""
    from journey.run_tests import run_tests

    with user_errors():
        cfg = RunTestsConfig(problems=problems, solutions=solutions, out=out, code_alpha=code_alpha,
                             workers=workers, unsafe_no_sandbox=unsafe_no_sandbox, overwrite=overwrite)
        s = run_tests(cfg)
    rows = [("solutions", f"{s['solutions']:,}"), ("compile", f"{s['compiles']:.1%}"),
            ("mean pass rate", f"{s['pass_rate']:.1%}"), ("pass every test", f"{s['all_pass']:.1%}"),
            (f"mean reward (a = {code_alpha})", f"{s['reward']:.3f}"), ("file", str(out))]
    console.print(summary_table(f"run-tests {solutions} -> {out}", rows))


@app.command("gen-tests")
def gen_tests_cmd(
    problems: Annotated[Path, typer.Option(help="Code problems with a reference 'solution'.")],
    out: Annotated[Path, typer.Option(help="Where to write the problems with generated tests.")],
    model: Annotated[str, typer.Option(help="The test-case generator (default: the embedded code policy).")] = GenTestsConfig.model,
    backend: Annotated[str, typer.Option(help="transformers, openai or vllm.")] = GenTestsConfig.backend,
    n: Annotated[int, typer.Option(help="Test inputs asked of the policy per problem.")] = GenTestsConfig.n,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = GenTestsConfig.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = GenTestsConfig.top_p,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per proposed input.")] = GenTestsConfig.max_new_tokens,
    mutants: Annotated[int, typer.Option(help="At most this many mutants of each reference.")] = GenTestsConfig.mutants,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = GenTestsConfig.seed,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = GenTestsConfig.limit,
    workers: Annotated[int | None, typer.Option(help="Programs run at once (default: the CPU count).")] = GenTestsConfig.workers,
    unsafe_no_sandbox: Annotated[bool, typer.Option(help="Run programs WITHOUT the bubblewrap jail. Dangerous.")] = GenTestsConfig.unsafe_no_sandbox,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = GenTestsConfig.overwrite,
) -> None:
    """Generate tests (TCG): the policy proposes inputs, the sandboxed reference gives outputs; mutation scores vs the given tests."""
    from journey.tcg import gen_tests

    with user_errors():
        cfg = GenTestsConfig(**{k: v for k, v in locals().items() if k in GenTestsConfig.__dataclass_fields__})
        s = gen_tests(cfg)
    rows = [("problems (with tests written)", f"{s['problems']:,} ({s['written']:,})"),
            ("inputs proposed / parsed / kept", f"{s['proposed']:,} / {s['parsed']:,} / {s['kept']:,}"),
            ("generated tests the reference passes", f"{s['reference_passes']:.1%}"),
            ("mutation score: generated tests", f"{s['mutation_score_generated']:.1%} of {s['mutants_generated']:,}"),
            ("mutation score: given tests", f"{s['mutation_score_given']:.1%} of {s['mutants_given']:,}"),
            ("file", str(out))]
    console.print(summary_table(f"gen-tests {problems} -> {out}", rows))


if __name__ == "__main__":
    app()
