"""Measuring one operation: wall time, CPU seconds of every process involved, the provider's peak memory.

CPU seconds are the deltas of ``getrusage(RUSAGE_SELF)`` (the inline program and the
Automation API run in this process) plus ``getrusage(RUSAGE_CHILDREN)`` (the
``pulumi`` CLI and, because the CLI waits for its plugins, the Python dynamic
provider process). The token server runs in a child process of its own that is
only reaped at the very end, so its CPU is never counted: it stands for the
remote endpoint.

The provider process (``python -m pulumi.dynamic``, started by the CLI through
``pulumi-resource-pulumi-python``) is found under this process in ``/proc`` and
its ``VmHWM`` (peak resident set) is read every few milliseconds while the
operation runs; the sampler's own CPU time is subtracted from the figure.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SAMPLE_EVERY_S = 0.02


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    provider_peak_kib: int | None  # the largest VmHWM of a provider process seen, if any
    extra: dict[str, Any] = field(default_factory=dict)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _is_provider(pid: int) -> bool:
    cmdline = _read(f"/proc/{pid}/cmdline")
    return cmdline is not None and "pulumi.dynamic" in cmdline.split("\0")


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        parent = _ppid(pid)
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def provider_pids(root: int | None = None) -> list[int]:
    """Python dynamic provider processes started (indirectly) by ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            pid = int(name)
            if _is_provider(pid) and _descends_from(pid, root):
                found.append(pid)
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process so far (not of its children)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def vm_hwm_kib(pid: int) -> int | None:
    status = _read(f"/proc/{pid}/status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


class ProviderMemory:
    """A thread that keeps the highest VmHWM of any provider process under this one."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self.every_s = every_s
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # the last CPU seconds seen per provider process
        self.cpu_s = 0.0  # the sampler's own CPU time, to subtract from this process's figure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-provider-memory", daemon=True)
        self._known_before = set(provider_pids())

    def __enter__(self) -> ProviderMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def provider_cpu_s(self) -> float:
        return sum(self.cpu.values())

    @property
    def peak_kib(self) -> int | None:
        return max(self.peaks.values()) if self.peaks else None

    def _run(self) -> None:
        started = time.thread_time()
        watched: list[int] = []
        last_scan = 0.0
        while not self._stop.wait(self.every_s):
            alive = []
            for pid in watched:
                hwm = vm_hwm_kib(pid)
                cpu = cpu_seconds(pid)
                if hwm is not None and cpu is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                    self.cpu[pid] = cpu
                    alive.append(pid)
            watched = alive
            now = time.monotonic()
            # Look for a (new) provider process when none is watched, and now and then anyway.
            if not watched or now - last_scan > 1.0:
                last_scan = now
                for pid in provider_pids():
                    if pid not in watched and pid not in self._known_before:
                        watched.append(pid)
        self.cpu_s = time.thread_time() - started


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def measure(operation: Callable[[], T], *, watch_provider: bool = True) -> tuple[T, Sample]:
    """Run ``operation`` once and measure it."""
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = ProviderMemory() if watch_provider else None
    started = time.perf_counter()
    if sampler is not None:
        with sampler:
            result = operation()
    else:
        result = operation()
    wall = time.perf_counter() - started
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = _cpu(self1) - _cpu(self0) - (sampler.cpu_s if sampler is not None else 0.0)
    children = _cpu(children1) - _cpu(children0)
    sample = Sample(wall, max(own, 0.0) + children, sampler.peak_kib if sampler else None,
                    {"cpu_this_process_s": round(max(own, 0.0), 3), "cpu_children_s": round(children, 3),
                     "cpu_provider_sampled_s": round(sampler.provider_cpu_s, 3) if sampler else None})
    return result, sample


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
