"""One runner per job: a lock file held while a job trains and is evaluated, so that two runners started on the same
output folder (``tools/ablate.py``, ``tools/tune.py``) never train one job side by side in one experiment folder.

The lock is an OS advisory lock (``fcntl.flock``), released by the OS when its holder ends in any way, even killed:
a stale lock file never blocks anyone. On a system without ``fcntl`` (Windows) the lock is not taken.
"""
import os
from contextlib import contextmanager

from srdistill.utils.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


@contextmanager
def job_lock(path, job):
    """Hold ``path`` while the block runs; raise :class:`UserError` naming ``job`` and the holder's pid when another
    process holds it."""
    if fcntl is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
            raise UserError(f'another runner (pid {holder}) is training or evaluating {job} now (lock: {path}). '
                            'Let it finish, or stop it first (kill <pid> ends its training too); a rerun then '
                            'resumes from the last training state.') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
