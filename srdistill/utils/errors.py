"""The one exception type for problems the user can fix (a bad option, missing or broken data)."""


class UserError(Exception):
    """A problem in the user's options or data, with a message naming the file or key and what to do.

    Entry points (``tools/*.py``) print the message alone, without a traceback, and exit with status 2.
    """


def first_line(err, limit=200):
    """The first line of an exception's message (at most ``limit`` characters), for a one-line error message.

    An exception without a message (``EOFError()`` from a zero-byte file, for one) gives its class name, so a message
    built from it never loses its reason and never fails itself (``''.splitlines()`` is empty).
    """
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__


def report_errors(fn, *args):
    """Run ``fn(*args)`` for a command-line entry point: a :class:`UserError` becomes one line on stderr.

    Returns:
        int: The exit status: ``fn``'s own when it returns an int, 0 when it returns anything else, 2 on a UserError.
    """
    import sys
    try:
        result = fn(*args)
    except UserError as err:
        print(f'srdistill: error: {err}', file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
