"""What the benchmark ran on, and what its processes cost: read from /proc, never estimated.

Owns the machine description printed with every result (CPU model, cores, memory, kernel,
PostgreSQL and Python versions) and the per-process readings the scenarios take: resident memory
(VmRSS, VmHWM) and CPU time, including the CPU time of a process's reaped children (that is how
PostgreSQL backends that already exited are still counted).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import psycopg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    memory_gib: float
    kernel: str
    postgresql: str
    # What a COMMIT waits for on the server, as read from it: "fsync=on, full_page_writes=on,
    # synchronous_commit=on" by default (as a store's server runs); all off with --fsync-off.
    durability: str
    python: str

    def __str__(self) -> str:
        return (
            f"{self.cpu_model}, {self.cores} cores, {self.memory_gib:.1f} GiB RAM, "
            f"Linux {self.kernel}, PostgreSQL {self.postgresql} ({self.durability}), "
            f"Python {self.python}"
        )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def describe_machine(conninfo: str) -> Machine:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        durability = ", ".join(
            f"{name}={value}"
            for name, value in conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name"
            ).fetchall()
        )
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        kernel=platform.release(),
        postgresql=str(row[0]) if row else "unknown",
        durability=durability,
        python=platform.python_version(),
    )


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {field} for process {pid}")


def rss_kib(pid: int) -> int:
    """Resident memory now (VmRSS)."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The most resident memory the process ever had (VmHWM)."""
    return _status_kib(pid, "VmHWM")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may contain spaces: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """User + system CPU time of every thread of `pid` (and of its reaped children)."""
    fields = _stat_fields(pid)
    # Fields after the command name start at stat(5)'s field 3: utime is 14, stime 15, cutime 16.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def process_tree_cpu_seconds(root: int) -> float:
    """CPU time of `root`, of its live children and of the children it has already reaped."""
    total = cpu_seconds(root, with_reaped_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == root:
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return total


def own_cpu_seconds() -> float:
    """CPU time of this process, all threads (the load generator and the printer emulators)."""
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # up to steal; guest time is already inside user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS
