"""Kill a training run the way a crash or the OOM killer does, once it has finished a number of epochs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def kill_after_epochs(command: list[str], results: Path, epochs: int, env: dict) -> None:
    """Start `command` and SIGKILL it and every process under it once `epochs` rows are in results.csv: a crash,
    not a stop. The whole tree, because torchrun starts its workers in sessions of their own."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if results.exists() and len(results.read_text().strip().splitlines()) > epochs:
                break
            if process.poll() is not None:
                raise AssertionError("training ended before it could be killed")
            time.sleep(0.05)
        else:
            raise AssertionError("training did not reach the epoch to kill at")
    finally:
        for pid in process_tree(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # fields after the command name: state, ppid, ...
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree
