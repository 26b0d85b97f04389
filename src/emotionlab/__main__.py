"""``python -m emotionlab`` and the ``emotionlab`` command: the CLI, with Ctrl+C quiet even while it loads."""

import sys


def run() -> None:
    try:
        from emotionlab.cli import main  # loads torch and every command: a few seconds
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
