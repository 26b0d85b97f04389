"""The one exception type for errors a user can cause; the CLI prints its message without a traceback."""


class EmotionlabError(Exception):
    """A problem the user can fix (bad path, bad image, unknown model, missing weights offline, ...)."""
