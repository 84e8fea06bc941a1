"""Is the process that claims a run still alive? Asked by ``resume`` and ``runs``.

A run row keeps the pid of the process running it. On this machine, that pid tells a live run
from one whose process was killed (``kill -9``, out of memory, power loss): no such process, a
zombie, or a process started after the run's last heartbeat (the pid was reused) means it is
gone. Without /proc (macOS) an existing pid is taken as alive, erring on the safe side.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def process_alive(pid: int | None, since: datetime | None = None) -> bool:
    """Whether ``pid`` is a live process on this machine that may have run a run last heard of at
    ``since`` (naive UTC). Zombies and processes started after ``since`` (a reused pid) are not."""
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (macOS): the pid exists, assume it is the run
    state, started = stat
    if state in {"Z", "X"}:
        return False
    if since is not None and started is not None:
        heartbeat = since.replace(tzinfo=UTC).timestamp()
        if started > heartbeat + 2.0:
            return False
    return True


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state letter, start time as a Unix timestamp) from /proc, or None without /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    state = fields[0] if fields else "?"
    try:
        ticks = int(fields[19])
        boot = _boot_time()
        started = boot + ticks / os.sysconf("SC_CLK_TCK") if boot is not None else None
    except (IndexError, ValueError, OSError):
        started = None
    return state, started


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None
