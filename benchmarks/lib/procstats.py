"""CPU, memory and contention readings from /proc, for a process, its descendants and the
whole machine.

Why from /proc and not psutil: nothing to install, and the readings a benchmark needs (the
server's CPU seconds over a window, nginx's master plus workers, how much of a 2-core machine
other work took meanwhile) are each a few lines here. Every reading of a process that is gone
is NaN, never an exception: a benchmark's summary must still print.
"""

from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (from each thread's ``children``)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (nginx: master + workers)."""
    return sum(c for c in (cpu_seconds(p) for p in process_tree(pid)) if not math.isnan(c))


def task_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each thread of a process and of its descendants has run, by thread id, from
    ``/proc/*/task/*/schedstat``: the scheduler's own count, where ``/proc/*/stat`` rounds to
    10 ms ticks (a tenth of a 0.1 CPU-s reading)."""
    out: dict[int, int] = {}
    for p in process_tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread exited meanwhile
    return out


class PreciseCpu:
    """CPU seconds of a process tree over a window at nanosecond resolution.

    Per thread, so a thread that exits inside the window would take its time with it: the
    reading then falls back to the tick-based ``tree_cpu_seconds`` (which the kernel keeps for
    exited threads) and says so in ``exact``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = task_cpu_ns(pid)
        self.ticks0 = tree_cpu_seconds(pid)

    def seconds(self) -> tuple[float, bool]:
        """(CPU seconds since construction, exact): exact is False when a thread present at
        the start had gone by the end and the tick-based figure was used instead."""
        t1 = task_cpu_ns(self.pid)
        if set(self.t0) - set(t1):
            return tree_cpu_seconds(self.pid) - self.ticks0, False
        return sum(ns - self.t0.get(tid, 0) for tid, ns in t1.items()) / 1e9, True


def rss_mib(pid: int) -> float:
    """Resident memory of one process in MiB (VmRSS), NaN once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_pressure_total() -> float:
    """Seconds some runnable task waited for a CPU (PSI, /proc/pressure/cpu), NaN without PSI.
    The difference over a window says how contended the machine was: other work on a 2-core
    machine inflates every latency measured here."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def machine_cpu_seconds() -> float:
    """CPU seconds used by everything on the machine (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + irq + softirq + steal) / CLK_TCK
    except (OSError, ValueError):
        return float("nan")


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while ours wanted them (all cores)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return int(fields[7]) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return float("nan")


class Contention:
    """How busy the machine was over a window, and how much of that was not ours."""

    def __init__(self, *pids: int) -> None:
        self.pids = list(pids)
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.m0 = machine_cpu_seconds()
        self.p0 = cpu_pressure_total()
        self.s0 = steal_seconds()
        self.o0 = sum(tree_cpu_seconds(p) for p in self.pids) + self._reaped()

    @staticmethod
    def _reaped() -> float:
        """CPU of our children that already exited and were waited for (a load generator)."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def stop(self) -> str:
        wall = time.monotonic() - self.t0
        machine = (machine_cpu_seconds() - self.m0) / wall
        ours = (sum(tree_cpu_seconds(p) for p in self.pids) + self._reaped() - self.o0) / wall
        pressure = (cpu_pressure_total() - self.p0) / wall
        steal = (steal_seconds() - self.s0) / wall
        return (
            f"machine CPU {machine * 100:.0f}% (of {(os.cpu_count() or 1) * 100}%), ours "
            f"{ours * 100:.0f}%, other processes {max(0.0, machine - ours - steal) * 100:.0f}%, "
            f"taken by the hypervisor (steal) {steal * 100:.0f}%; some task waiting for a CPU "
            f"{pressure * 100:.0f}% of the time"
        )


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, printed with every figure: a busy machine
    explains a slow one."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
