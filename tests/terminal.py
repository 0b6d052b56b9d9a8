"""Run the `smsagent` command as people do: on a terminal of a given width, or piped."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str],
    env: dict[str, str],
    *,
    columns: int | None = None,
    rows: int = 50,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr). With `columns`, stdout is a pseudo-terminal that wide (rich
    output, colours); without, a pipe (plain text)."""
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")
    }
    full_env.update(env)
    command = [sys.executable, "-m", "webhooks.cli", *args]
    if columns is None:
        done = subprocess.run(  # noqa: S603
            command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout, done.stderr
    full_env["TERM"] = "xterm-256color"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(  # noqa: S603
        command,
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"smsagent {' '.join(args)} ran past {timeout}s")
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command is done
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif process.poll() is not None:
                break
        stderr = process.stderr.read().decode() if process.stderr else ""
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
        if process.stderr:
            process.stderr.close()
    return code, b"".join(chunks).decode(), stderr
