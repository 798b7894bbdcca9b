"""The one exception type that reaches the user as a clear message (no traceback)."""


class MarbleError(Exception):
    """A problem the user can fix: bad argument, missing model, unreadable data."""
