"""The one exception type for problems the user can fix (a bad option, missing or broken data)."""


class UserError(Exception):
    """A problem in the user's options or data, with a message naming the file or key and what to do.

    Entry points (``tools/*.py``) print the message alone, without a traceback, and exit with status 2.
    """
