"""`serve --processes N`: N copies of `serve` sharing one port, kept running.

Each child is a whole service (web + worker) on the same PostgreSQL; the kernel spreads
connections between them (SO_REUSEPORT). A child that dies is started again; SIGTERM or SIGINT
is passed on to every child, and the supervisor waits for them to finish.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("smsagent.supervise")

_RESTART_DELAY_SECONDS = 1.0


def supervise(processes: int, args: list[str]) -> int:
    """Run `smsagent <args>` `processes` times until told to stop; the exit code."""
    command = [sys.executable, "-m", "webhooks.cli", *args]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    children = [subprocess.Popen(command) for _ in range(processes)]  # noqa: S603
    log.info("supervise.started processes=%d pids=%s", processes, [c.pid for c in children])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            log.error("supervise.child_exited pid=%d code=%d; starting another", child.pid, code)
            time.sleep(_RESTART_DELAY_SECONDS)
            children[i] = subprocess.Popen(command)  # noqa: S603
    codes = [child.wait() for child in children]
    return max((abs(code) for code in codes), default=0)
