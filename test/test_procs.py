"""The process manager (common/procs.py) with real child processes and real signals."""
import io
import os
import signal
import subprocess
import sys
import textwrap
import time

from neurovla_ros.common import procs

PY = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code: str) -> list[str]:
    return [PY, '-c', textwrap.dedent(code)]


def ignoring(*sigs) -> list[str]:
    """A child that ignores ``sigs``, says ``ready`` and sleeps."""
    names = ''.join(f'signal.{signal.Signals(s).name}, ' for s in sigs)
    return python(f"""
        import signal, time
        for s in ({names}):
            signal.signal(s, signal.SIG_IGN)
        print('ready', flush=True)
        time.sleep(120)
        """)


def wait_for(pred, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def ready(p: procs.Proc) -> bool:
    return wait_for(lambda: 'ready' in p.output())


def test_sigint_ends_a_normal_child_and_its_output_is_kept_with_a_prefix():
    echo = io.StringIO()
    p = procs.Proc(python("""
        import signal, sys, time
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))     # a clean stop, as a node's
        for i in range(50):
            print('line', i, flush=True)
        print('ready', flush=True)
        time.sleep(120)
        """), 'talker', echo=echo, tail=10)
    assert ready(p)
    assert p.alive() and procs.running(p.pid)
    t0 = time.monotonic()
    heard = []
    assert procs.stop([p], timeout=10.0, log=heard.append) == {'talker': 0}
    assert time.monotonic() - t0 < 5.0 and heard == []      # no escalation
    assert not p.alive() and not procs.running(p.pid)
    lines = p.output().splitlines()
    assert lines == [f'line {i}' for i in range(41, 50)] + ['ready']     # the last 10
    assert '[talker] line 0\n' in echo.getvalue() and '[talker] ready\n' in echo.getvalue()


def test_a_child_that_ignores_sigint_ends_by_sigterm():
    p = procs.Proc(ignoring(signal.SIGINT), 'stubborn')
    assert ready(p)
    heard = []
    t0 = time.monotonic()
    codes = procs.stop([p], timeout=0.5, log=heard.append)
    assert codes == {'stubborn': -signal.SIGTERM}
    assert 0.5 <= time.monotonic() - t0 < 3.0
    assert heard == ['stubborn still running: SIGTERM']


def test_a_child_that_ignores_sigint_and_sigterm_ends_by_sigkill():
    p = procs.Proc(ignoring(signal.SIGINT, signal.SIGTERM), 'deaf')
    assert ready(p)
    heard = []
    codes = procs.stop([p], timeout=0.3, term_timeout=0.3, log=heard.append)
    assert codes == {'deaf': -signal.SIGKILL}
    assert heard == ['deaf still running: SIGTERM', 'deaf still running: SIGKILL']


def test_several_children_share_one_deadline():
    ps = [procs.Proc(ignoring(signal.SIGINT), f'c{i}') for i in range(3)]
    assert all(ready(p) for p in ps)
    t0 = time.monotonic()
    codes = procs.stop(ps, timeout=1.0)
    # one 1 s wait for all three (one after another would take 3 s), then SIGTERM ends them
    assert time.monotonic() - t0 < 2.5
    assert codes == {f'c{i}': -signal.SIGTERM for i in range(3)}


def test_a_grandchild_in_the_group_dies_too():
    """The child starts a grandchild that ignores SIGINT; the child ends on SIGINT, the
    grandchild with the group's final SIGKILL."""
    p = procs.Proc(python(f"""
        import subprocess, sys, time
        g = subprocess.Popen({ignoring(signal.SIGINT)!r})
        print('grandchild', g.pid, flush=True)
        print('ready', flush=True)
        time.sleep(120)
        """), 'parent')
    assert ready(p)
    gpid = int(next(x for x in p.output().splitlines() if x.startswith('grandchild')).split()[1])
    assert procs.running(gpid) and os.getpgid(gpid) == p.pid
    assert procs.stop([p], timeout=5.0)['parent'] is not None
    assert wait_for(lambda: not procs.running(gpid), 10.0), 'the grandchild survived'


def test_cpu_seconds_grow_for_a_busy_child_only():
    busy = procs.Proc(python("""
        print('ready', flush=True)
        while True:
            pass
        """), 'busy')
    idle = procs.Proc(ignoring(), 'idle')
    try:
        assert ready(busy) and ready(idle)
        b0, i0 = busy.cpu_seconds(), idle.cpu_seconds()
        time.sleep(1.5)
        b1, i1 = busy.cpu_seconds(), idle.cpu_seconds()
        assert b1 - b0 > 0.3, (b0, b1)
        assert i1 - i0 < 0.1, (i0, i1)
        mine = procs.cpu_seconds()
        sum(range(3_000_000))
        assert procs.cpu_seconds() > mine          # this process
    finally:
        procs.stop([busy, idle])
    assert busy.cpu_seconds() != busy.cpu_seconds()       # NaN once it is gone


def test_output_to_a_log_file(tmp_path):
    log = tmp_path / 'child.log'
    p = procs.Proc(python("""
        import sys
        print('to stdout', flush=True)
        print('to stderr', file=sys.stderr, flush=True)
        sys.exit(3)
        """), 'logger', log=str(log))
    assert p.wait(20) == 3
    assert log.read_text().splitlines() == ['to stdout', 'to stderr']
    assert p.output() == 'to stdout\nto stderr' and p.output(1) == 'to stderr'
    p2 = procs.Proc(python("print('again')"), 'logger', log=str(log), log_mode='a')
    assert p2.wait(20) == 0 and log.read_text().splitlines()[-1] == 'again'


def test_children_die_when_the_starting_process_is_killed():
    """A process that started children with procs is SIGKILLed (no clean-up of its own): the
    kernel sends them SIGINT (PR_SET_PDEATHSIG)."""
    starter = subprocess.Popen(python(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from neurovla_ros.common import procs
        kids = [procs.Proc({[PY, '-c', 'import time; time.sleep(120)']!r}, f'k{{i}}')
                for i in range(2)]
        print(*[k.pid for k in kids], flush=True)
        time.sleep(120)
        """), stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        kids = [int(x) for x in starter.stdout.readline().split()]
        assert len(kids) == 2 and all(procs.running(k) for k in kids)
        starter.kill()
        starter.wait(10)
        assert wait_for(lambda: not any(procs.running(k) for k in kids), 10.0)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        starter.stdout.close()
