"""What a benchmark saves beside its figures: the command as it was run, and the machine it ran on.

Every script in benchmarks/ imports this (``import recorded``: a script's own folder is first on ``sys.path``), so
a JSON in benchmarks/results/ says how to get its figures again in one way, and only what was true of the run.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The settings in the environment that change the figures (threads, OpenMP's spinning, which data or model).
FIGURE_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "EMOTIONLAB_DATA",
    "EMOTIONLAB_MODEL",
    "EMOTIONLAB_CACHE",
)


def command_line(script: str | Path | None = None, argv: list[str] | None = None) -> str:
    """The command as run, to paste in the repository's folder: set variables, ``nice``, python, script, args.

    ``script`` defaults to ``sys.argv[0]`` and ``argv`` to ``sys.argv[1:]`` (pass both when ``main(argv)`` is
    called from Python rather than as a script).
    """
    settings = [f"{name}={shlex.quote(os.environ[name])}" for name in FIGURE_ENV if name in os.environ]
    niceness = os.nice(0)
    python = Path(sys.executable).absolute()
    words = [
        *(["nice", "-n", str(niceness)] if niceness else []),
        str(python.relative_to(REPO)) if python.is_relative_to(REPO) else str(python),
        f"benchmarks/{Path(script if script is not None else sys.argv[0]).name}",
        *map(str, argv if argv is not None else sys.argv[1:]),
    ]
    return " ".join([*settings, shlex.join(words)])


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded: the CPU is shared, so figures are read against it."""
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict:
    """The facts about this machine and process that a reader needs to compare figures between runs."""
    return {
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nice": os.nice(0),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),  # None: each library's default
    }
