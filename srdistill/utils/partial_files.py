"""Temporary files of atomic writes: hidden, named after the process writing them, removed once it is gone.

srdistill writes each file a user keeps (prepared images, packed arrays, exports and their sidecars) under a temporary
name in its final folder and renames it into place, so no reader ever sees half a file. A process killed with
SIGKILL cannot clean up after itself, so its temporary file stays. Its name, ``.<name>.partial<pid><ext>``, makes
that harmless:

- the leading dot hides it from every folder listing that builds a dataset (BasicSR's ``scandir`` and srdistill's
  listers skip hidden files), so a leftover never becomes a training image without an LR partner;
- the process id tells whose it is: the next run removes the leftovers of processes that no longer run
  (:func:`remove_stale`) and leaves those of a run still writing alone;
- the extension stays last, so OpenCV and NumPy pick the right format from the name.
"""
import os
import re
from os import path as osp

# '<root>.partial<pid><ext>' (hidden or not, as written before the names were hidden) and '<name>.partial<pid>'
_PARTIAL = re.compile(r'\.partial(\d+)(\.[A-Za-z0-9]+)?$')


def partial_path(path):
    """The temporary name this process writes ``path`` under: ``dir/.<root>.partial<pid><ext>``."""
    folder, name = osp.split(path)
    root, ext = osp.splitext(name)
    return osp.join(folder, f'.{root}.partial{os.getpid()}{ext}')


def partial_pid(name):
    """The id of the process that wrote temporary file ``name``, or None when ``name`` is not a temporary file."""
    match = _PARTIAL.search(name)
    return int(match.group(1)) if match else None


def _running(pid):
    if os.name != 'posix':
        return True  # no signal-0 probe (os.kill would terminate the process on Windows): keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale(folder):
    """Remove from ``folder`` the temporary files of processes that no longer run (a run killed while writing).

    Returns:
        list[str]: The names removed (sorted); empty when ``folder`` does not exist.
    """
    if not osp.isdir(folder):
        return []
    stale = [n for n in sorted(os.listdir(folder)) if (pid := partial_pid(n)) is not None and not _running(pid)]
    for name in stale:
        try:
            os.remove(osp.join(folder, name))
        except FileNotFoundError:  # removed meanwhile by another run's cleanup
            pass
    return stale
