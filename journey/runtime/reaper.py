"""The local Ray cluster dies with the journey process that started it, even on kill -9.

    reaper = Reaper.start()   # right after ray.init() started a local cluster
    ...
    reaper.release()          # after ray.shutdown(): nothing left to reap

Ray's head processes (gcs_server, raylet, ...) share the driver's fate, but the agents the
raylet starts (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) wait for a GCS that is gone
and outlive a killed driver for minutes (seen here: still running 60 s after kill -9). So
`Reaper.start()` runs this file as a small process (`python reaper.py PID`, standard
library only) that notes, once a second, every descendant of the driver PID (with its start time, so
a reused PID is never touched), and waits on a pipe whose other end only the driver holds.
When the pipe closes without a "done" line, the driver died: the reaper sends SIGTERM to
every noted process (and any new descendant of theirs) still alive, then SIGKILL after 3 s.
A driver that ends normally writes "done" and nothing is killed. Linux only (/proc); where
there is no /proc the reaper is not started.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")
DONE = b"done\n"


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks), from /proc/PID/stat."""
    table = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Every process below `roots` in `table` (pid -> start time), roots excluded.

        table {2: (1, 0), 3: (2, 0), 4: (3, 0), 5: (1, 0)}, roots {2} -> {3: 0, 4: 0}
    """
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child not in roots:
                found[child] = table[child][1]
                todo.append(child)
    return found


def alive(noted: dict[int, int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """The noted processes still running as themselves (same start time)."""
    return {pid: start for pid, start in noted.items() if table.get(pid, (0, None))[1] == start}


def reap(driver: int, channel: int = 0, every: float = 1.0) -> None:
    """Note `driver`'s descendants every `every` s until `channel` closes; then, unless the
    driver wrote DONE, end them (SIGTERM, then SIGKILL after 3 s)."""
    noted: dict[int, int] = {}
    said = b""
    while True:
        ready, _, _ = select.select([channel], [], [], every)
        if ready:
            chunk = os.read(channel, 64)
            if not chunk:
                break
            said += chunk
            continue
        table = process_table()
        noted.update(descendants({driver}, table))
        noted.pop(os.getpid(), None)
    if said.endswith(DONE):
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        table = process_table()
        left = alive(noted, table)
        left.update(descendants(set(left), table))
        left.pop(os.getpid(), None)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline and alive(left, process_table()):
            time.sleep(0.1)


class Reaper:
    """The driver's end of the reaper process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen | None):
        self.proc = proc

    @classmethod
    def start(cls) -> Reaper:
        if not (PROC / "self" / "stat").exists():
            return cls(None)
        # this file as a script: it imports only the standard library, so it starts in ms
        proc = subprocess.Popen([sys.executable, __file__, str(os.getpid())], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # a Ctrl-C to the terminal is not for it
        return cls(proc)

    def release(self) -> None:
        """The driver is done with Ray: the reaper leaves everything as it is and exits."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write(DONE)
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None


if __name__ == "__main__":
    reap(int(sys.argv[1]))
