"""Child processes that end with the process that started them (the training runs of ``tools/ablate.py`` and
``tools/tune.py``).

A runner can be stopped in more than one way, hence two guards:

* :func:`ending_children`, in the runner's entry point: on SIGTERM (``kill <pid>``) or SIGINT (Ctrl-C, ``kill -INT``),
  terminate every child started by :func:`popen` and wait for it, then let the signal do what it did before
  (Ctrl-C's ``KeyboardInterrupt``; SIGTERM ends the runner with status 143).
* :func:`exit_with_parent`, in the child: a daemon thread that ends the child when the runner is gone, also after a
  SIGKILL, which no handler sees. A training child's data-loader workers end with it (PyTorch's worker watchdog).
"""
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

_live = set()  # the children of popen() still running
_lock = threading.Lock()
term_wait_s = 60  # how long a terminated child may take to end before it is killed


def popen(args, **kwargs):
    """``subprocess.Popen(args, **kwargs)``, registered so that :func:`ending_children` ends it. Pass it to :func:`end`
    once it has ended (or to end it)."""
    proc = subprocess.Popen(args, **kwargs)
    with _lock:
        _live.add(proc)
    return proc


def end(procs):
    """Terminate each of ``procs`` still running, wait for all of them (kill one that outlasts ``term_wait_s``) and
    forget them. Returns how many were still running."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.time() + term_wait_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with _lock:
        _live.difference_update(procs)
    return len(running)


def terminate_all():
    """:func:`end` every child of :func:`popen` not ended yet. Returns how many were still running."""
    with _lock:
        procs = list(_live)
    return end(procs)


@contextmanager
def ending_children(signals=(signal.SIGTERM, signal.SIGINT)):
    """Within this block (in the main thread), SIGTERM and SIGINT first end the children of :func:`popen`. A signal
    the process ignores (SIGINT in a shell's background job, ``nohup``'s SIGHUP) stays ignored."""
    previous = {}

    def handler(signum, frame):
        ended = terminate_all()
        if ended:
            print(f'{signal.Signals(signum).name}: ended {ended} training process(es); rerun the same command to '
                  'resume from the last training state', file=sys.stderr, flush=True)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before != signal.SIG_IGN:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    for signum in signals:
        if signal.getsignal(signum) != signal.SIG_IGN:  # e.g. SIGINT in a job started with `&`: left ignored
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def exit_with_parent(parent_pid, poll_s=2.0):
    """In a child: end this process (SIGTERM to itself) once ``parent_pid`` is no longer its parent."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name='exit_with_parent', daemon=True).start()
