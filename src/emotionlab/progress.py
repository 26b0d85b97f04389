"""Progress of a long step, on stderr: a live bar on a terminal, one line per step in a log file.

``progress(items, total=..., description=...)`` yields ``items`` unchanged. On a terminal rich draws a bar;
when stderr is a file or a pipe (CI, ``nohup``, ``2> log``) a bar would be a wall of control codes, so a
plain line is written at 0%, every 10% and every 30 seconds, and at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

LINE_EVERY_SECONDS = 30.0
LINE_EVERY_FRACTION = 0.1


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(
    items: Iterable, *, total: int | None = None, description: str, enabled: bool = True, stream=None
) -> Iterator:
    """Yield ``items`` while counting them on ``stream`` (stderr): a bar on a terminal, else log lines."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
    elif on_terminal(stream):
        yield from _bar(items, total, description, stream)
    else:
        yield from _lines(items, total, description, stream or sys.stderr)


def _bar(items: Iterable, total: int | None, description: str, stream) -> Iterator:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(file=stream or sys.stderr), transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _lines(items: Iterable, total: int | None, description: str, stream) -> Iterator:
    start = last_time = time.monotonic()
    step = max(1, int(total * LINE_EVERY_FRACTION)) if total else None
    count = 0

    def line() -> None:
        of = f"/{total}" if total else ""
        print(f"{description}: {count}{of} ({time.monotonic() - start:.0f} s)", file=stream, flush=True)

    line()
    for item in items:
        yield item
        count += 1
        now = time.monotonic()
        if (step and count % step == 0 and count != total) or now - last_time >= LINE_EVERY_SECONDS:
            line()
            last_time = now
    line()
