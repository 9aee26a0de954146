"""common/realtime.py: SCHED_FIFO for every thread of a process, or a clear reason why not."""
import subprocess
import sys
import textwrap

from neurovla_ros.common import realtime


def test_priority_zero_changes_nothing():
    before = realtime.current_priority()
    assert realtime.make_realtime(0) is None
    assert realtime.current_priority() == before


def test_all_threads_get_fifo_and_children_do_not():
    # in a child process: the policy must not leak into the test runner
    code = textwrap.dedent('''
        import os, subprocess, sys, threading
        from neurovla_ros.common import realtime
        seen = {}
        go = threading.Event()
        def worker():
            go.wait()
            seen['worker'] = realtime.current_priority()
        t = threading.Thread(target=worker)
        t.start()                       # exists before the call: must be lifted too
        problem = realtime.make_realtime(42)
        go.set(); t.join()
        child = subprocess.run([sys.executable, '-c',
            'from neurovla_ros.common import realtime; print(realtime.current_priority())'],
            capture_output=True, text=True).stdout.strip()
        print(problem or 'ok', realtime.current_priority(), seen['worker'], child)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60).stdout.split()
    if out[0] == 'ok':
        assert out[1:] == ['42', '42', '0']
    else:   # not permitted here: a reason, and nothing half done
        assert 'refused' in ' '.join(out) and out[-3:] == ['0', '0', '0']


def test_threads_started_later_adopt_the_priority_on_request():
    """SCHED_RESET_ON_FORK acts on every clone: a thread started after make_realtime runs under
    the normal scheduler until it calls adopt() (the cortex's inference thread does)."""
    code = textwrap.dedent('''
        import threading
        from neurovla_ros.common import realtime
        print(realtime.adopt(), end=' ')          # not real-time yet: nothing to adopt
        problem = realtime.make_realtime(33)
        seen = []
        def worker():
            seen.append(realtime.current_priority())
            seen.append(realtime.adopt())
            seen.append(realtime.current_priority())
        t = threading.Thread(target=worker)
        t.start(); t.join()
        print(problem or 'ok', *seen)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60).stdout.split()
    if out[1] == 'ok':
        assert out == ['0', 'ok', '0', '33', '33']
    else:   # not permitted here: the reason, and nothing adopted
        assert 'refused' in ' '.join(out) and out[-3:] == ['0', '0', '0']


def test_realtime_process_holds_zero_wakeup_latency_until_it_ends():
    """The PM QoS request (/dev/cpu_dma_latency): 0 us while a real-time process lives, released
    with it. Reading the device gives the kernel's current target (int32)."""
    import os
    import struct
    import time

    def target():
        fd = os.open(realtime.PM_QOS_DEVICE, os.O_RDONLY)
        try:
            return struct.unpack('<i', os.read(fd, 4))[0]
        finally:
            os.close(fd)
    assert target() > 0                # nobody holds a request (no other stack running)
    code = ('import sys, time; from neurovla_ros.common import realtime; '
            'print(realtime.make_realtime(10) or realtime._pm_qos_fd is not None, flush=True); '
            'sys.stdin.readline()')
    proc = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'True'
        assert target() == 0
    finally:
        proc.communicate('\n', timeout=30)
    deadline = time.monotonic() + 5
    while target() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target() > 0
