"""The one exception type for errors a user can cause; the CLI prints its message without a traceback."""


class EmotionlabError(Exception):
    """A problem the user can fix (bad path, bad image, unknown model, missing weights offline, ...)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl+C during a job. The message says what was kept and how to go on; the CLI prints it and exits 130."""
