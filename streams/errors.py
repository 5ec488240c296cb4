"""Errors that reach the user as one line: the CLI prints ``str(error)`` and exits non-zero."""


class FacetrackError(Exception):
    """Base of every error the user caused or can fix; anything else is a bug (traceback)."""


class SourceError(FacetrackError):
    """A source cannot be opened or read (missing path, not a video, no answer, no camera)."""


class SinkError(FacetrackError):
    """An output cannot be written (unwritable path, encoder failure)."""
