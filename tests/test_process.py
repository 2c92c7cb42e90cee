"""srdistill.utils.process: a runner's children end with it, whether it is stopped by SIGTERM, SIGINT or SIGKILL."""
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, alive, children, wait_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads the process table in /proc')

# a runner: a child (it sleeps, and ends with its parent), its pid printed, then the runner sleeps
_RUNNER = textwrap.dedent('''
    import os, signal, sys, time
    from srdistill.utils import process
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also when the tests run with `&`
    child = ('import sys, time; from srdistill.utils.process import exit_with_parent; '
             'exit_with_parent(int(sys.argv[1]), poll_s=0.2); print("ready", flush=True); time.sleep(600)')
    with process.ending_children():
        proc = process.popen([sys.executable, '-c', child, str(os.getpid())], stdout=sys.stdout)
        print(proc.pid, flush=True)
        time.sleep(600)
''')


def start_runner():
    runner = subprocess.Popen([sys.executable, '-c', _RUNNER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO)
    child = int(runner.stdout.readline())
    assert runner.stdout.readline().strip() == 'ready'  # the child's watch is on
    assert alive(child) and child in children(runner.pid)
    return runner, child


@pytest.mark.parametrize('signum, code', [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, None)])
def test_a_stopped_runner_ends_its_children_first(signum, code):
    runner, child = start_runner()
    runner.send_signal(signum)
    rc = runner.wait(timeout=30)
    assert not alive(child)  # ended and reaped by the runner's handler, not left to init
    assert f'{signal.Signals(signum).name}: ended 1 training process(es)' in runner.stderr.read()
    if code is not None:
        assert rc == code
    else:  # Ctrl-C: the KeyboardInterrupt it raised before goes on
        assert rc != 0


def test_a_killed_runners_child_ends_by_itself():
    """SIGKILL reaches no handler: the child's own watch sees its parent gone."""
    runner, child = start_runner()
    runner.kill()
    runner.wait(timeout=30)
    assert wait_gone([child], 10) == []


def test_outside_the_block_signals_are_as_before_and_an_ignored_one_stays_ignored():
    from srdistill.utils import process
    before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with process.ending_children():
            assert signal.getsignal(signal.SIGTERM) is not before
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGINT, before_int)
