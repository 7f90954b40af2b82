"""Scale-out on Ray (DESIGN §6): build-tree, eval, sample-pairs and distill on N Ray actors.

    journey build-tree --problems p.jsonl --out t.jsonl --ray --workers 2        # a local Ray
    ray start --head                                                              # a cluster:
    ray start --address HEAD_IP:6379                                              # on each other node
    journey build-tree --problems p.jsonl --out t.jsonl --ray --ray-address auto --gpus-per-worker 1

Each actor (`JourneyWorker`, one process) loads its own policy and PRM once (a GPU share each
with `--gpus-per-worker`; one torch thread each on CPU, so actors do not fight over cores) and
turns batches of problems into rows: `Tree.to_json()` for build-tree, journal rows for the
others, made by the same code as on one machine (`build_trees` with `--trees-in-flight`, the
stage's chunk maker with `--batch-size`), so lockstep batching is kept inside each actor and,
with per-node and per-problem seeds, the rows are the ones a single process writes.

The driver stays the ONE writer: it holds the output's lock, resumes and checks the config as
on one machine, hands out batches (a few x --trees-in-flight trees, or a few generate chunks;
always at least two per worker so the last ones balance), and appends rows as batches finish.
Fault tolerance is the driver's own, not Ray's `max_restarts`/`max_task_retries`: the driver
must know which problems a lost batch held (to requeue exactly those and to count progress),
and a batch that keeps killing its worker must end the run with an error instead of retrying
forever. So actors are created with no restarts; when one dies (`RayActorError`, e.g. kill -9
on its process, or its node gone), its batch goes back to the front of the queue for the next
free actor, a fresh actor takes the dead one's place, and a batch lost `MAX_TRIES` times stops
the run. A seen-set of ids makes sure no id is ever written twice. A local Ray this process
started dies with it, even on kill -9 (`journey.runtime.reaper`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from journey.runtime.io import DataError
from journey.runtime.reaper import Reaper
from journey.tasks.base import Problem

log = logging.getLogger(__name__)

MAX_TRIES = 3  # a batch whose worker dies this many times stops the run
MOST_BATCHES_PER_CHUNK = 4  # eval/sample-pairs/distill: at most this many generate chunks per batch
TREES_PER_BATCH = 4  # build-tree: at most this many x --trees-in-flight trees per batch


def make_batches(items: list, workers: int, unit: int = 1, most_units: int = 4) -> list[list]:
    """`items` in order, cut into batches of whole units of `unit` items (the last may be
    short), with as many units per batch as leaves >= 2 batches per worker, at most `most_units`.

    make_batches(list(range(10)), workers=2, unit=2) -> [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    make_batches(list(range(10)), workers=1, unit=1, most_units=4) -> [[0..3], [4..7], [8, 9]]
    """
    units = math.ceil(len(items) / unit)
    size = unit * max(1, min(most_units, units // (2 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class WorkerStats:
    """What one worker slot did this run (a replaced actor keeps its slot)."""

    worker: int
    node: str = ""
    pid: int = 0
    problems: int = 0
    batches: int = 0
    seconds: float = 0.0  # busy: inside `run` calls that finished
    cpu_seconds: float = 0.0  # CPU time of the actor's process in those calls (< seconds: it was starved)
    restarts: int = 0


# ---------------------------------------------------------------- jobs (what an actor runs)


@dataclass
class ChunkJob:
    """eval, sample-pairs, distill on an actor: the policy loaded once (`load(task, problems)`,
    which also checks that `problems` fit its context), then rows made `per_call` problems per
    call by the stage's own `make_rows(task, policy, chunk)`."""

    task: str
    load: Callable[[Any, list[Problem]], Any]
    make_rows: Callable[[Any, Any, list[Problem]], list[dict]]
    per_call: int
    code: Any = None  # the code task's CodeConfig (`journey.config.CodeOptions.code_config`)
    answers: tuple[str, ...] | None = None  # the math task's --answer-formats

    def start(self, check: list[Problem]) -> None:
        from journey.tasks import get_task

        self._task = get_task(self.task, self.code, self.answers)
        self._policy = self.load(self._task, check)

    def run(self, problems: list[Problem]) -> list[dict]:
        rows = []
        for i in range(0, len(problems), self.per_call):
            rows += self.make_rows(self._task, self._policy, problems[i : i + self.per_call])
        return rows


class JourneyWorker:
    """The Ray actor (`ray.remote` is applied by `RayPool`): one process holding one job."""

    def __init__(self, job, threads: int):
        self.job, self.threads = job, threads

    def start(self, check: list[Problem]) -> dict:
        import ray
        import torch

        torch.set_num_threads(self.threads)  # two actors on two cores: one thread each, or ~10x slower
        self.job.start(check)
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}

    def run(self, problems: list[Problem]) -> tuple[list[dict], float, float]:
        """(rows, wall seconds, CPU seconds of this process) for a batch."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        rows = self.job.run(problems)
        return rows, time.perf_counter() - t0, time.process_time() - cpu0


# ---------------------------------------------------------------- the driver side


def import_ray():
    try:
        import ray
    except ImportError:
        raise DataError("--ray needs Ray: pip install 'journey[ray]'") from None
    return ray


class RayPool:
    """N `JourneyWorker` actors and the driver loop that feeds them (see the module docstring).

    Connects to Ray on creation (`--ray-address`, or a local Ray with this machine's CPUs; a
    Ray already started in this process is used as it is); `start(job, todo)` creates the
    actors and loads their models (errors surface here, before any output is touched);
    `map(batches)` yields each finished batch's rows, new ids only; `close()` ends the actors.
    """

    def __init__(self, opts):
        self.ray = ray = import_ray()
        self.started_ray = False
        self.reaper = None
        if not ray.is_initialized():
            try:
                ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"--ray-address {opts.ray_address}" if opts.ray_address else "--ray"
                raise DataError(f"{where}: cannot start or reach Ray ({str(err).splitlines()[0]})") from None
            self.started_ray = True
            self.reaper = Reaper.start()  # the local cluster dies with this process, even on kill -9
        self.gpus = float(opts.gpus_per_worker or 0)
        self.workers = self._count_workers(opts.workers)
        self.actors: list = []
        self.stats = [WorkerStats(i) for i in range(self.workers)]
        self.wall = self.waited = 0.0

    def _count_workers(self, asked: int | None) -> int:
        """--workers, or one per CPU (per GPU share with --gpus-per-worker); DataError when the
        cluster cannot hold them (each actor takes 1 CPU and --gpus-per-worker GPUs)."""
        have = self.ray.cluster_resources()
        cpus, gpus = int(have.get("CPU", 0)), have.get("GPU", 0.0)
        n = asked or (int(gpus // self.gpus) if self.gpus else cpus)
        if n < 1 or n > cpus:
            raise DataError(f"--workers {n}: each worker takes 1 CPU and the Ray cluster has {cpus}")
        if n * self.gpus > gpus + 1e-9:
            raise DataError(f"--workers {n} x --gpus-per-worker {self.gpus:g} needs {n * self.gpus:g} GPUs; "
                            f"the Ray cluster has {gpus:g}")
        return n

    def _new_actor(self):
        remote = self.ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=0, max_task_retries=0)
        return remote(JourneyWorker).remote(self.job, 1)

    def _get(self, refs):
        """ray.get, with an error raised inside our code re-raised as itself (one line)."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            raise (cause if isinstance(cause, Exception) else RuntimeError(str(err))) from None

    def start(self, job, todo: list[Problem]) -> None:
        """Create the actors and load every actor's models; the first also checks that `todo`
        fits the model's context (as one process does before writing anything)."""
        self.job = job
        if not todo:
            return
        self.actors = [self._new_actor() for _ in range(self.workers)]
        try:
            infos = self._get([a.start.remote(todo if i == 0 else []) for i, a in enumerate(self.actors)])
        except self.ray.exceptions.RayActorError as err:
            raise DataError(f"--ray: a worker died while loading its models ({str(err).splitlines()[0]})") from None
        for s, info in zip(self.stats, infos):
            s.pid, s.node = info["pid"], info["node"]

    def _replace(self, slot: int, running: dict) -> None:
        """A fresh actor in a dead one's slot; its start is awaited with the batches."""
        s = self.stats[slot]
        s.restarts += 1
        if s.restarts > MAX_TRIES * 2:
            raise DataError(f"--ray: worker {slot} died {s.restarts} times; see the Ray logs "
                            "(/tmp/ray/session_latest/logs)")
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._new_actor()
        running[self.actors[slot].start.remote([])] = (slot, None)
        log.warning("ray: worker %d died; its batch goes to the next free worker", slot)

    def map(self, batches: list[list[Problem]], id_of: Callable[[dict], str] = lambda r: r["id"],
            ) -> Iterator[list[dict]]:
        """Yield each batch's rows as it finishes (only ids, by `id_of(row)`, not yielded
        before), resubmitting the batch of a worker that died."""
        ray, t0 = self.ray, time.perf_counter()
        queue, tries, seen = deque(range(len(batches))), [0] * len(batches), set()
        idle, running = list(range(len(self.actors))), {}  # running: ObjectRef -> (slot, batch or None)
        try:
            while queue or running:
                while queue and idle:
                    slot, b = idle.pop(0), queue.popleft()
                    running[self.actors[slot].run.remote(batches[b])] = (slot, b)
                waited = time.perf_counter()
                [ref], _ = ray.wait(list(running), num_returns=1)
                self.waited += time.perf_counter() - waited
                slot, b = running.pop(ref)
                try:
                    result = self._get(ref)
                except ray.exceptions.RayActorError:
                    if b is not None:
                        tries[b] += 1
                        if tries[b] >= MAX_TRIES:
                            ids = ", ".join(p.id for p in batches[b][:3])
                            raise DataError(f"--ray: the batch holding problems {ids}... lost its worker "
                                            f"{MAX_TRIES} times; see the Ray logs (/tmp/ray/session_latest/logs)") from None
                        queue.appendleft(b)
                    self._replace(slot, running)
                    continue
                idle.append(slot)
                if b is None:  # a replacement actor is up
                    self.stats[slot].pid, self.stats[slot].node = result["pid"], result["node"]
                    continue
                rows, seconds, cpu = result
                s = self.stats[slot]
                s.problems, s.batches = s.problems + len(batches[b]), s.batches + 1
                s.seconds, s.cpu_seconds = s.seconds + seconds, s.cpu_seconds + cpu
                fresh = [r for r in rows if id_of(r) not in seen]
                seen.update(id_of(r) for r in fresh)
                yield fresh
        finally:
            self.wall += time.perf_counter() - t0

    def report(self) -> dict:
        """Per-worker stats and the driver's own share of the wall time (not waiting on workers)."""
        return {"workers": [asdict(s) for s in self.stats],
                "driver_seconds": round(max(self.wall - self.waited, 0.0), 3),
                "wall_seconds": round(self.wall, 3)}

    def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a, no_restart=True)
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()
        if self.reaper is not None:
            self.reaper.release()


@contextlib.contextmanager
def ray_pool(opts) -> Iterator[RayPool | None]:
    """A `RayPool` for the block when `opts.ray` (a config with `journey.config.RayOptions`' fields),
    else None; its actors end with the block."""
    if not opts.ray:
        yield None
        return
    pool = RayPool(opts)
    try:
        yield pool
    finally:
        pool.close()


# ---------------------------------------------------------------- the stages' loops


def trees_on_ray(pool: RayPool, cfg, todo: list[Problem], run: dict,
                 on_level: Callable[[int], None] | None = None):
    """build-tree's finished trees from the pool (`pool.start(TreeJob(cfg), todo)` first), as
    `Tree`s carrying the driver's `run` record; `on_level(n)` gets the nodes of each batch."""
    from journey.search.tree import Tree

    batches = make_batches(todo, pool.workers, 1, TREES_PER_BATCH * cfg.trees_in_flight)
    for rows in pool.map(batches, id_of=lambda r: r["problem"]["id"]):
        if on_level:
            on_level(sum(len(r["nodes"]) - 1 for r in rows))
        for row in rows:
            yield Tree.from_json({**row, "run": run}, where=f"a tree from a Ray worker ({row['problem']['id']!r})")


def rows_on_ray(pool: RayPool, todo: list[Problem], per_call: int) -> Iterator[list[dict]]:
    """Journal rows from the pool (`pool.start(ChunkJob(...), todo)` first), a batch at a time;
    batches are whole chunks of `per_call` problems cut as one process cuts them."""
    yield from pool.map(make_batches(todo, pool.workers, per_call, MOST_BATCHES_PER_CHUNK))


def append_chunks(out, done: dict, advance, pool: RayPool | None, todo: list[Problem], per_call: int,
                  make_here: Callable[[list[Problem]], list[dict]]) -> None:
    """The journal loop of eval, sample-pairs and distill: rows for `todo`, `per_call` problems a
    chunk, made on the pool's actors (with a pool) or here by `make_here(chunk)`; each row is
    appended to `out` (a `JsonlAppender`) and kept in `done` by id, and `advance` counts them."""
    chunks = (rows_on_ray(pool, todo, per_call) if pool else
              (make_here(todo[i : i + per_call]) for i in range(0, len(todo), per_call)))
    for rows in chunks:
        for row in rows:
            out.write(row)
            done[row["id"]] = row
        advance(len(rows))


def worker_rows(report: dict, unit: str) -> list[tuple[str, str]]:
    """Summary-table rows: each worker's throughput (per busy second, and the share of that
    time it had a CPU), then the driver's own time.

    {"workers": [{"worker": 0, "node": "10.0.0.1", "pid": 7, "problems": 8, "seconds": 4.0,
    "cpu_seconds": 3.8, "restarts": 0, ...}], ...}
    -> [("worker 0 (10.0.0.1, pid 7)", "8 trees, 2.00 trees/s, CPU 95% of the time"), ...]
    """
    rows = []
    for w in report["workers"]:
        rate = w["problems"] / w["seconds"] if w["seconds"] else 0.0
        cpu = w["cpu_seconds"] / w["seconds"] if w["seconds"] else 0.0
        restarts = f", {w['restarts']} restart(s)" if w["restarts"] else ""
        rows.append((f"worker {w['worker']} ({w['node']}, pid {w['pid']})",
                     f"{w['problems']:,} {unit}, {rate:,.2f} {unit}/s, CPU {cpu:.0%} of the time{restarts}"))
    wall = report["wall_seconds"]
    share = report["driver_seconds"] / wall if wall else 0.0
    rows.append(("driver's own time (not waiting on workers)", f"{report['driver_seconds']:,.2f} s ({share:.1%})"))
    return rows
