"""benchmarks/recorded.py: the command a benchmark saves with its figures is the one that was run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
# Variables recorded.py may write into a command: the tests set them themselves, none come from the runner.
SETTINGS = ("OMP_", "MKL_", "EMOTIONLAB_")

# What a benchmark script does: its own folder is first on sys.path, so `import recorded` finds the helper.
PRINT_RECORD = f"""
import json, sys
sys.path.insert(0, {str(BENCHMARKS)!r})
import recorded
print(json.dumps({{"command": recorded.command_line("benchmarks/speed.py", sys.argv[1:]),
                  "machine": recorded.machine()}}))
"""


def record(args: list[str], *, nice: int, env: dict[str, str]) -> dict:
    command = ["nice", "-n", str(nice), sys.executable, "-c", PRINT_RECORD, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout)


def test_recorded_command_has_the_threads_niceness_and_arguments_that_were_run() -> None:
    args = ["--photo", "my photos/a b.jpg", "--limit", "3"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTINGS)}
    env |= {"OMP_NUM_THREADS": "3", "EMOTIONLAB_DATA": "/data/seed emotions"}
    niceness = min(19, os.nice(0) + 5)  # nice adds to the niceness the tests run with (at most 19)
    recorded = record(args, nice=5, env=env)
    command = recorded["command"]
    assert "OMP_NUM_THREADS=3" in command
    assert f"nice -n {niceness}" in command
    assert "MKL_NUM_THREADS" not in command  # not set, so not claimed
    words = shlex.split(command)
    assert "EMOTIONLAB_DATA=/data/seed emotions" in words  # pasted into a shell, the variable is the same
    script = words.index("benchmarks/speed.py")
    assert words[script + 1 :] == args  # the arguments come back as given, the one with spaces in one piece
    assert (REPO / words[script - 1]).absolute() == Path(sys.executable).absolute()  # the python that ran
    assert recorded["machine"]["nice"] == niceness
    assert recorded["machine"]["OMP_NUM_THREADS"] == "3"
    assert len(recorded["machine"]["load_average"]) == 3


def test_recorded_command_claims_no_setting_that_was_not_made() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTINGS)}
    words = shlex.split(record([], nice=0, env=env)["command"])
    assert not [word for word in words if "=" in word]
    assert ("nice" in words) == (os.nice(0) != 0)  # a plain run (as in CI) records no nice
    assert words[-1] == "benchmarks/speed.py"
