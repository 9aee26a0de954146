"""Pip-mode runner (`neurovla bringup`) with the real nodes over real DDS, one process each."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import yaml

from neurovla_ros import graph

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRINGUP = [sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--headless']
SIM_ONLY = ('--only', 'sim')  # the process-handling tests need one real node, not the brain


def start(tmp_path, *args):
    """The runner in the background; its stdout/stderr go to files (read with ``output``)."""
    out = open(tmp_path / 'stdout.txt', 'w')
    err = open(tmp_path / 'stderr.txt', 'w')
    proc = subprocess.Popen([*BRINGUP, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True)
    proc.files = (out, err)
    return proc


def output(tmp_path):
    return (tmp_path / 'stdout.txt').read_text(), (tmp_path / 'stderr.txt').read_text()


def finish(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # the test failed: leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for f in proc.files:
            f.close()


def wait_until_up(proc, tmp_path, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _out, err = output(tmp_path)
        if re.search(r'all \d+ node\(s\) up', err):
            return [int(p) for p in re.findall(r'started \S+ \(pid (\d+)\)', err)]
        assert proc.poll() is None, f'runner ended early:\n{err}'
        time.sleep(0.2)
    raise AssertionError(f'nodes not up after {timeout} s:\n{output(tmp_path)[1]}')


def descendants(pid):
    """Every process below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = open(f'/proc/{entry}/stat').read()
            except OSError:
                continue
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    try:
        stat = open(f'/proc/{pid}/stat').read()
    except OSError:
        return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


def wait_gone(pids, timeout):
    """The processes of ``pids`` still alive after ``timeout`` [s], described."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = {}
    for p in pids:
        if alive(p):
            try:
                left[p] = open(f'/proc/{p}/cmdline').read().replace('\0', ' ')[:200]
            except OSError:
                continue
    return left


def kill(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def summary(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_bringup_runs_for_the_duration_and_prints_a_summary(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, '--duration', '5')
    rc = finish(proc, timeout=120)
    out, err = output(tmp_path)
    assert rc == 0, out[-3000:] + err[-3000:]
    s = summary(out)
    assert s['ok'] and s['ended'] == 'duration' and s['ran_s'] >= 5.0
    assert time.monotonic() - t0 >= 5.0
    expected = {n.name for n in graph.nodes(graph.resolve({'headless': True}), pip_only=True)}
    assert set(s['nodes']) == expected and 'sim' in expected
    for name, node in s['nodes'].items():
        assert node['alive'], name
        assert node['exit_code'] == 0, (name, err[-3000:])
    values = {k: v for st in s['nodes']['sim']['diagnostics'].values()
              for k, v in st['values'].items()}
    assert 'real_time_factor' in values, s['nodes']['sim']
    assert 0.05 < values['real_time_factor'] < 1.5  # a running sim, even on a loaded 2-core VM
    assert '=== neurovla summary: ran' in out and 'real_time_factor' in out


def _invalid_sim_params(tmp_path):
    """The packaged parameters file with one sim parameter above its maximum."""
    from neurovla_ros.sim import params as sim_params
    bad = next(p for p in sim_params.PARAMS if p.max is not None and not p.read_only
               and isinstance(p.default, (int, float)) and not isinstance(p.default, bool))
    value = type(bad.default)(bad.max + abs(bad.max) + 1)
    cfg = yaml.safe_load(open(graph.default_params_file()))
    cfg['sim']['ros__parameters'][bad.name] = value
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path, bad.name


def test_a_node_that_dies_is_reported_and_fails_the_run(tmp_path):
    path, name = _invalid_sim_params(tmp_path)
    proc = start(tmp_path, *SIM_ONLY, '--duration', '30', '--params-file', str(path))
    rc = finish(proc, timeout=120)
    out, err = output(tmp_path)
    assert rc == 1, out[-3000:] + err[-3000:]
    assert re.search(r'node sim \(pid \d+\) died with exit code', err), err[-3000:]
    tail = err.split('last output lines of sim:', 1)[1]
    assert name in tail  # the reason is among the reported lines
    s = summary(out)
    assert not s['ok'] and s['ended'] == 'node died: sim'
    assert not s['nodes']['sim']['alive']


def test_sigint_stops_every_node_cleanly(tmp_path):
    proc = start(tmp_path, *SIM_ONLY)
    pids = wait_until_up(proc, tmp_path)
    tree = descendants(proc.pid)
    assert set(pids) <= set(tree) and pids
    os.kill(proc.pid, signal.SIGINT)
    rc = finish(proc, timeout=60)
    out, err = output(tmp_path)
    assert rc == 0, out[-3000:] + err[-3000:]
    s = summary(out)
    assert s['ended'] == 'interrupted'
    assert all(n['exit_code'] == 0 for n in s['nodes'].values()), s  # they honoured SIGINT
    assert 'still running' not in err  # no escalation to SIGTERM/SIGKILL was needed
    left = wait_gone(tree, 5.0)
    kill(left)
    assert not left, (left, err[-3000:])


def test_nodes_die_with_a_killed_runner(tmp_path):
    proc = start(tmp_path, *SIM_ONLY)
    pids = wait_until_up(proc, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel signals the nodes
    finish(proc, timeout=10)
    left = wait_gone(pids, 20.0)
    kill(left)
    assert not left, (left, output(tmp_path)[1][-3000:])


def test_diagnostics_are_grouped_by_node_and_none_are_lost():
    from neurovla_ros.runner import OTHER, group_statuses

    def st(hw):
        return {'level': 'OK', 'message': '', 'hardware_id': hw, 'values': {}}
    latest = {'sim: physics': st('sim'), '/spinal/reflex': st(''), 'controller': st('spinal'),
              'simulator: x': st('arm'), 'cortex: planner': st('')}
    g = group_statuses(latest, ['sim', 'spinal'])
    assert set(g['sim']) == {'sim: physics'}
    assert set(g['spinal']) == {'/spinal/reflex', 'controller'}
    assert set(g[OTHER]) == {'simulator: x', 'cortex: planner'}
    assert OTHER not in group_statuses({'sim: physics': st('')}, ['sim'])


def test_only_refuses_a_node_the_graph_does_not_start(capsys):
    from neurovla_ros import cli
    assert cli.main(['bringup', '--sim', 'none', '--only', 'sim']) == 2
    assert '--only sim: not among the nodes' in capsys.readouterr().err
