"""`python -m forestops.orchestration.die_with_parent PARENT_PID COMMAND...`: exec COMMAND, tied to PARENT.

A child in its own session is out of reach of the terminal's Ctrl-C by design (the supervisor
stops it), which also means nothing stops it if `forestops up` is SIGKILLed or OOM-killed. On
Linux, PR_SET_PDEATHSIG survives exec and makes the kernel send SIGTERM to the child the moment
its parent dies; the parent-pid check closes the race where the parent died before the prctl.
Elsewhere the command is simply exec'd (a clean Ctrl-C still stops everything).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            sys.exit(f"die_with_parent: parent {parent} is gone; not starting {command[0]}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
