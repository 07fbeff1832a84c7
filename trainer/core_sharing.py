"""Fewer torch threads while other programs use this process's cores, all of them again when they stop.

torch's CPU wheels use GNU OpenMP, whose threads spin for a while at the end of every parallel region before
they sleep. Alone on its cores that is the fast choice: a step at imgsz 320 is thousands of short regions, and
threads that sleep between them (OMP_WAIT_POLICY=PASSIVE, the package's default until 2026-12-03) left 15-18% of
two cores idle and cost 27% of the speed (bench/README.md, "OpenMP wait policy"). But spinning threads collapse
when something else wants the cores: two trainings at once ran at 3.3-3.7 images/s each instead of 9-11 with
passive threads, and one beside a busy process at 8.2 instead of 12.6. No spin count serves both cases (20,000
spins collapsed as well), and libgomp reads its policy once, when torch loads it.

So the threads keep libgomp's default, and the training loops and `predict` (evaluation, `doctor val` and
`doctor predict`) call `CoreSharing.tick()` every batch: every few
seconds it reads how much of its cores (/proc/stat, the CPUs of this process's affinity) went to other programs,
meaning everything but this process and its children (the DataLoader workers). When others used a core's worth,
torch gets that many threads fewer, never less than one: a region with one thread never wakes the pool, so
nothing spins on a core someone else needs. When the cores are free again, the configured count comes back.
A change needs two windows in a row that agree, so a short burst elsewhere changes nothing.

Off when the user chose the wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT), for --deterministic runs (the thread
count can change the order of float sums), with one thread, off Linux, or with DOCTOR_ADAPT_THREADS=0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

OPT_OUT = "DOCTOR_ADAPT_THREADS"
WINDOW_S = 3.0  # seconds per measurement; a change needs two windows in a row
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def user_chose_wait_policy(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """True when the user set libgomp's wait policy themselves: then their choice stands as it is."""
    return bool(environ.get("OMP_WAIT_POLICY", "").strip() or environ.get("GOMP_SPINCOUNT", "").strip())


def adapting_wanted(threads: int, deterministic: bool, environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether a run with `threads` torch threads should adapt them to what else runs on its cores."""
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return threads > 1 and not deterministic and not user_chose_wait_policy(environ) and \
        (_PROC / "stat").is_file()


@dataclass(frozen=True)
class CpuSample:
    """Busy clock ticks of this process's CPUs, and of this process with its children, at one moment."""
    at: float
    busy_ticks: int
    own_ticks: int


def _cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def busy_ticks(cpus: set[int], stat_text: str) -> int:
    """Ticks the given CPUs spent on anything but idle, iowait and steal (time the hypervisor gave to other
    machines), from /proc/stat's `cpuN` lines."""
    total = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        fields = [int(value) for value in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(fields) - fields[3] - fields[4] - (fields[7] if len(fields) > 7 else 0)
    return total


def process_ticks(stat_text: str) -> int:
    """utime + stime + cutime + cstime of one /proc/<pid>/stat: the process, its threads and its reaped
    children (a DataLoader worker that exits moves its time into cutime, so a sum over live children plus
    this stays continuous)."""
    after_name = stat_text.rpartition(")")[2].split()
    return sum(int(value) for value in after_name[11:15])  # fields 14-17 of proc(5), counted from 1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # a child that exited between the listing and the read
        return ""


def _children(pid: int) -> list[int]:
    """Live child processes of `pid`, through /proc/<pid>/task/*/children."""
    found: list[int] = []
    for children in (_PROC / str(pid) / "task").glob("*/children"):
        found += [int(child) for child in _read(children).split()]
    return found


def own_ticks(pid: int | None = None) -> int:
    """This process's ticks with those of its live children and grandchildren."""
    pending, total = [pid or os.getpid()], 0
    while pending:
        current = pending.pop()
        text = _read(_PROC / str(current) / "stat")
        if text:
            total += process_ticks(text)
            pending += _children(current)
    return total


def sample(cpus: set[int]) -> CpuSample:
    return CpuSample(time.monotonic(), busy_ticks(cpus, _read(_PROC / "stat")), own_ticks())


def others_cores(before: CpuSample, after: CpuSample) -> float:
    """How many cores' worth the other programs used between two samples (not negative: a child's ticks can
    reach /proc a little before the CPU's)."""
    seconds = after.at - before.at
    if seconds <= 0:
        return 0.0
    others = (after.busy_ticks - before.busy_ticks) - (after.own_ticks - before.own_ticks)
    return max(0.0, others / _CLOCK_TICKS / seconds)


def threads_for(cores: int, others: float, configured: int) -> int:
    """torch threads that leave the others their share: the cores they do not use, rounded, 1 to configured."""
    return max(1, min(configured, int(cores - others + 0.5)))


class CoreSharing:
    """Adapts torch's thread count to the other programs on this process's cores; call tick() every step."""

    def __init__(self, configured: int, enabled: bool, log: Callable[[str], None] = lambda message: None,
                 window_s: float | None = None) -> None:
        self.configured, self.enabled, self.log = configured, enabled, log
        self.window_s = WINDOW_S if window_s is None else window_s
        self.cpus = _cpus()
        self.threads = configured
        self.changes = 0
        self._pending: int | None = None
        self._last = sample(self.cpus) if enabled else None

    @classmethod
    def for_device(cls, device: torch.device, deterministic: bool = False,
                   log: Callable[[str], None] = lambda message: None) -> CoreSharing:
        """Adapting the current torch thread count when `device` is the CPU and adapting_wanted() says so."""
        threads = torch.get_num_threads()
        return cls(threads, torch.device(device).type == "cpu" and adapting_wanted(threads, deterministic), log)

    def tick(self) -> None:
        if not self.enabled or time.monotonic() - self._last.at < self.window_s:
            return
        now = sample(self.cpus)
        others = others_cores(self._last, now)
        self._last = now
        wanted = threads_for(len(self.cpus), others, self.configured)
        if wanted == self.threads:
            self._pending = None
        elif wanted != self._pending:
            self._pending = wanted
        else:
            self._apply(wanted, others)

    def _apply(self, threads: int, others: float) -> None:
        torch.set_num_threads(threads)
        self.threads, self._pending, self.changes = threads, None, self.changes + 1
        if threads < self.configured:
            self.log(f"other programs use {others:.1f} of {len(self.cpus)} cores: {threads} torch "
                     f"thread{'s' if threads > 1 else ''} while they do ({OPT_OUT}=0 keeps {self.configured})")
        else:
            self.log(f"the cores are free again: {threads} torch threads")

    def restore(self) -> None:
        """Back to the configured count (the run's evaluation and whatever the caller does next)."""
        if self.enabled and self.threads != self.configured:
            torch.set_num_threads(self.configured)
            self.threads = self.configured
