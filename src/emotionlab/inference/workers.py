"""How many worker threads and processes this machine can use well."""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads share a core's arithmetic units)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    cores = set()
    try:
        physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
            elif not key and core is not None:
                cores.add((physical, core))
                physical = core = None
        if core is not None:
            cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(available, len(cores) or available))
