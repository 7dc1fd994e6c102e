"""The one error type of model-file reading: a one-line message naming the file, what it is and
the call that read it (never a traceback for a user mistake)."""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file that cannot be read by the call that was given it."""
