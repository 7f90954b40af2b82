"""The `journey` command line (see `journey.cli.main` for the commands).

Importing the commands and their libraries takes seconds, so a quiet Ctrl-C handler is
installed before anything else is imported (here, for the `journey` script and `python -m
journey.cli`) and again while a command starts (`journey.cli.app.main`): an interrupt then
ends with one line and exit code 130, never a traceback. Once a command starts work it enters
`journey.cli.app.user_errors`, where Ctrl-C is a KeyboardInterrupt again and the message says
what was kept. The handler is put back as it was after the imports and after each command.
"""

import signal
import sys
import threading


def interrupted_at_start(signum, frame) -> None:
    """SIGINT before a command has started work: one line, exit 130 (nothing was written)."""
    sys.stderr.write("interrupted (SIGINT) during start-up: nothing was written\n")
    raise SystemExit(130)


def quiet_interrupts():
    """Install `interrupted_at_start` for SIGINT; returns the handler it replaced (None off the
    main thread, where signals cannot be handled and nothing is changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, interrupted_at_start)


_previous = quiet_interrupts()
try:
    from journey.cli.main import app
finally:
    if _previous is not None:
        signal.signal(signal.SIGINT, _previous)

__all__ = ["app"]
