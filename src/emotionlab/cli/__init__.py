"""The `emotionlab` command line: data ... | train | evaluate | predict | export | serve | label.

``root`` holds the Typer app and the entry point; each other module adds one command group (importing it
registers its commands). Each command parses options into the project's dataclasses and calls library code;
job code that exists only for a command (the `predict` run: shards, --resume, writers) lives beside it here.
"""

from emotionlab.cli.root import app, console, data_app, main

# isort: off
# Imported for their commands, in the order `--help` lists them (the stages: data first).
from emotionlab.cli import data, train, evaluate, predict, models, experiment, serve  # noqa: F401
# isort: on

__all__ = ["app", "console", "data_app", "main"]
