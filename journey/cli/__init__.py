"""The `journey` command line (see `journey.cli.main` for the commands).

Importing the commands and their libraries takes seconds, so quiet SIGINT and SIGTERM handlers
are installed before anything else is imported (here, the first journey code the `journey`
script and `python -m journey.cli` run) and stay until a command starts work: an interrupt in
those seconds prints one line and ends the process at once with exit code 130 (SIGINT) or 143
(SIGTERM, 128 + 15), never a traceback and never a silent exit. `journey.cli.app.user_errors` puts them back
after each block of work, so they also cover the moments between a command's steps (its own
imports). The handler ends the process itself (`os._exit`) rather than raising: an exception raised while an import runs can land in
a callback where Python ignores it, and the run would go on. Nothing is written before work
starts, so nothing needs cleaning up. Once a command starts work it enters
`journey.cli.app.user_errors`, where both signals raise again (so `finally` blocks run) and the
message says what was kept, with the same exit codes. Only the interpreter's own start-up,
before this module runs (tens of ms), keeps Python's defaults.
"""

import os
import signal
import sys
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def interrupted_at_start(signum, frame) -> None:
    """SIGINT or SIGTERM while no work is under way (start-up, or between a command's steps):
    one line, exit 130 or 143 at once."""
    name = signal.Signals(signum).name
    os.write(2, f"interrupted ({name}) during start-up: nothing was written\n".encode())  # no buffer to flush
    os._exit(EXIT_CODES.get(signum, 128 + signum))


def quiet_interrupts() -> dict | None:
    """Install `interrupted_at_start` for SIGINT and SIGTERM; returns the handlers it replaced
    (None off the main thread, where signals cannot be handled and nothing is changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.signal(sig, interrupted_at_start) for sig in EXIT_CODES}


def restore_handlers(previous: dict | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


def running_as_journey() -> bool:
    """Whether this process is the `journey` program (its script, or `python -m journey.cli`)
    rather than a program that imports journey.cli (tests, a notebook), whose handlers are
    put back after the import."""
    argv = list(getattr(sys, "orig_argv", []))
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    return os.path.basename(sys.argv[0]) == "journey" or module in ("journey.cli", "journey.cli.main")


_previous = quiet_interrupts()
try:
    from journey.cli.main import app
finally:
    if not running_as_journey():  # the program keeps them until a command starts work
        restore_handlers(_previous)

__all__ = ["app"]
