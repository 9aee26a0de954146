"""The remote backends' fault table of ``neurovla bench cortex`` (issue 21's faults).

Per remote backend (``neurovla-server``, ``openpi``): the bringup's graph (``runner.NodeGraph``:
sim with camera and objects, spinal, cerebellum, cortex with that backend) against the
project's test server for its protocol in a process of its own, serving a policy that keeps
the arm moving (``testservers.circle_policy``). Each fault is injected during motion for
``FAULT_S`` seconds, then the server is made healthy again:

==================  =======================================================================
``absent_at_start``  the graph starts with no server on its port; the server starts later
``killed``           SIGKILL of the server mid-motion; restarted on the same port
``slow_2s``          every reply 2 s late (beyond the cortex's 1 s reply timeout)
``error_map``        the policy raises (NeuroVLA: an error map; openpi: traceback + 1011)
``wrong_shape``      an action array of the wrong shape
``nan``              actions containing NaN
``traceback_1011``   the reply cannot be packed: a traceback text frame, close code 1011
==================  =======================================================================

Per row: ``detected`` (the cortex's /diagnostics at ERROR during the fault) and the time from
the fault to that report; ``held`` (no new goal on /cortex/goal_pose from ``HOLD_AFTER_S``
after the fault until the server is back: a request already in flight may still be answered);
the tcp's largest distance from where it was at the fault, while the fault lasts (the arm
settles on the goal it held); ``recovered`` and ``recovery_s``, from the server being healthy
to the first new goal; ``nodes_alive``. A row is safe when detected, held and every node alive.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import numpy as np

FAULT_S = 3.0          # [s] each fault lasts
HOLD_AFTER_S = 1.2     # [s] reply timeout (1 s) + one plan period + margin
RECOVERY_WAIT_S = 10.0
FAULTS = (('absent_at_start', None), ('killed', None), ('slow_2s', ('slow', 2.0)),
          ('error_map', ('error', 0.0)), ('wrong_shape', ('wrong_shape', 0.0)),
          ('nan', ('nan', 0.0)), ('traceback_1011', ('crash', 0.0)))


def log(msg: str) -> None:
    print(f'[bench cortex] {msg}', file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class PolicyServer:
    """A test server (``python -m neurovla_ros.cortex.testservers``) on a fixed port, in its
    own process: ``mode`` changes its behaviour, ``kill`` ends it with SIGKILL."""

    def __init__(self, protocol: str, port: int):
        self.protocol, self.port = protocol, port
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'neurovla_ros.cortex.testservers', '--protocol',
             self.protocol, '--port', str(self.port), '--policy', 'circle'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith('PORT'):
            raise RuntimeError(f'test server did not start (exit {self.proc.poll()})')

    def mode(self, name: str, delay: float = 0.0) -> None:
        self.proc.stdin.write(f'mode {name} {delay}\n')
        self.proc.stdin.flush()
        ack = self.proc.stdout.readline()          # the mode is in effect once answered
        if ack.split() != ['MODE', name]:
            raise RuntimeError(f'test server answered {ack!r} to mode {name}')

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def _cortex_level(probe) -> int | None:
    for name, level in probe.levels.items():
        if name.startswith('cortex'):
            return level
    return None


def run_fault(probe, nodes, server: PolicyServer, name: str, action) -> dict:
    """One row: inject ``name`` now (the graph running, goals flowing), heal after FAULT_S."""
    t_fault = probe.now()
    tcp0 = probe.tcp()
    if name == 'killed':
        server.kill()
    elif action is not None:
        server.mode(*action)
    detect_t, excursion = None, 0.0
    while probe.now() < t_fault + FAULT_S:
        probe.spin(0.05)
        if detect_t is None and _cortex_level(probe) == 2:
            detect_t = probe.now()
        tcp = probe.tcp()
        if tcp is not None and tcp0 is not None:
            excursion = max(excursion, float(np.linalg.norm(tcp - tcp0)))
    held_since = t_fault + (0.0 if name == 'absent_at_start' else HOLD_AFTER_S)
    window = [p for t, p in probe.goals if held_since <= t]
    held = all(np.allclose(p, window[0], atol=1e-6) for p in window)
    last = probe.goals[-1][1] if probe.goals else None
    if name in ('killed', 'absent_at_start'):
        server.start()
    else:
        server.mode('ok')
    t_back = probe.now()

    def first_new_goal():
        return next((t for t, p in probe.goals if t > t_back and
                     (last is None or not np.allclose(p, last, atol=1e-6))), None)
    recovered = probe.spin(RECOVERY_WAIT_S, until=lambda: first_new_goal() is not None)
    t_new = first_new_goal()
    if detect_t is None and _cortex_level(probe) == 2:
        detect_t = probe.now()      # reported, but only after the fault window
    alive = not nodes.dead()
    row = {'fault': name, 'detected': detect_t is not None and detect_t <= t_back,
           'detect_s': None if detect_t is None else detect_t - t_fault,
           'held': bool(held), 'excursion_m': excursion, 'recovered': bool(recovered),
           'recovery_s': None if t_new is None else t_new - t_back, 'nodes_alive': alive,
           'stop_category': 'hold (last safe goal)'}
    row['safe'] = row['detected'] and row['held'] and alive
    return row


def fault_table(context, backends=('neurovla-server', 'openpi')) -> list[dict]:
    """Every fault of FAULTS for each backend, in the bringup graph (module docstring)."""
    from .cortex import Probe, stack
    rows = []
    for backend in backends:
        port = free_port()
        server = PolicyServer('neurovla' if backend == 'neurovla-server' else 'openpi', port)
        overrides = {'cortex': {'backend': backend, 'server_uri': f'ws://127.0.0.1:{port}'}}
        if backend == 'openpi':        # its LIBERO layout sends the wrist view too
            overrides['sim'] = {'wrist_camera_enabled': True}
        nodes = stack(['sim', 'spinal', 'cerebellum', 'cortex'], overrides)
        probe = Probe(context)
        try:
            nodes.wait_up(probe.node, 150.0, spin=lambda: probe.spin(0.05))
            if not probe.spin(150.0, until=lambda: probe.tcp() is not None
                              and _cortex_level(probe) is not None):
                raise RuntimeError('the graph did not come up')
            for name, action in FAULTS:
                if name != 'absent_at_start':
                    probe.spin(2.0)          # healthy motion first
                row = run_fault(probe, nodes, server, name, action)
                row['backend'] = backend
                rows.append(row)
                log(f'remote fault {backend} {name}: detected {row["detected"]} '
                    f'({row["detect_s"]}), held {row["held"]}, excursion '
                    f'{row["excursion_m"] * 100:.1f} cm, recovered {row["recovered"]} '
                    f'({row["recovery_s"]}), alive {row["nodes_alive"]}')
        finally:
            probe.close()
            nodes.stop()
            server.stop()
    return rows


def summary(rows: list[dict]) -> dict:
    rec = [r['recovery_s'] for r in rows if r['recovery_s'] is not None]
    return {'remote_faults': len(rows), 'remote_faults_safe': sum(r['safe'] for r in rows),
            'remote_unrecovered': sum(not r['recovered'] for r in rows),
            'remote_recovery_s_max': max(rec) if len(rec) == len(rows) else None,
            'remote_detect_s_max': max((r['detect_s'] or np.inf) for r in rows) if rows
            else None,
            'remote_excursion_m_max': max(r['excursion_m'] for r in rows) if rows else None}
