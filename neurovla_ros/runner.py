"""Pip-mode bringup (``neurovla bringup``): the graph of ``graph.py`` without ``ros2 launch``.

Each node runs in its own process on the real DDS graph
(``python -m <module> --ros-args --params-file ... -p use_sim_time:=... -r from:=to``), in its
own process group, and gets SIGINT from the kernel if the runner dies (PR_SET_PDEATHSIG): the
same signal as a normal stop, which rclpy handles safely (a Python SIGTERM handler that calls
``rclpy.try_shutdown`` can deadlock on rclpy's context lock).
A node is *up* once it is on the graph with a topic of its own (nodes create their publishers
and subscriptions at the end of their set-up, after loading models and worlds).
Ctrl-C / SIGTERM: SIGINT to every node, wait, then SIGTERM, then SIGKILL. A node that dies is
reported with its last output lines and the runner exits non-zero. ``duration`` counts from
when every node is on the graph; then everything is stopped and a summary is printed (per
node: alive, exit code, and the latest /diagnostics of that node), the last line one JSON object.
With a cortex and the sim, the summary also says whether the task succeeded: which object the
instruction named, the final tcp distance to it and success yes/no (``cortex.task``: within 3 cm
of its top centre and still for 0.5 s).

The runner reads /diagnostics and the sim's objects (2 Hz) only: subscribing to the 1 kHz
streams from here would take CPU from the nodes on a small machine; /joint_states is read for
0.6 s at the end of ``duration`` only, for the task result.
"""
from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

from . import graph

PR_SET_PDEATHSIG = 1
LAST_LINES = 30
OTHER = '(other)'  # summary entry for /diagnostics statuses that name no started node
STANDARD_TOPICS = {'/rosout', '/parameter_events'}  # every node has these from the start
LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _log(msg: str) -> None:
    print(f'[neurovla] {msg}', file=sys.stderr, flush=True)


def _child_setup(parent_pid: int):
    """preexec_fn: stop with the runner (the kernel sends SIGINT when the runner exits)."""
    def setup():
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent_pid:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGINT)
    return setup


class Child:
    """One node process, its output streamed with a ``[name]`` prefix and the tail kept."""

    def __init__(self, spec: graph.NodeSpec, cmd: list[str], env: dict, lock: threading.Lock):
        self.spec = spec
        self.cmd = cmd
        self.lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors='replace', bufsize=1, env=env, process_group=0,
            preexec_fn=_child_setup(os.getpid()))
        self._lock = lock
        self._reader = None

    def start_reader(self) -> None:
        self._reader = threading.Thread(target=self._read, name=f'out-{self.spec.name}',
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        prefix = f'[{self.spec.name}] '
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))
            with self._lock:
                sys.stdout.write(prefix + line if line.endswith('\n') else prefix + line + '\n')
                sys.stdout.flush()

    def drain(self, timeout: float = 2.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    @property
    def name(self) -> str:
        return self.spec.name

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


class TaskWatch:
    """The sim's objects (latched ``/sim/objects``) during the run; at the end, 0.6 s of tcp
    samples from /joint_states (by their stamps) and the task outcome for the cortex's
    instruction."""

    def __init__(self, node):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from visualization_msgs.msg import MarkerArray
        self.node = node
        self.objects = None
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(MarkerArray, 'sim/objects', self._on_objects, qos)

    def _on_objects(self, msg) -> None:
        objs = []
        for m in msg.markers:
            colour, _, shape = m.text.partition(' ')
            objs.append({'colour': colour, 'shape': shape,
                         'position': (m.pose.position.x, m.pose.position.y, m.pose.position.z),
                         'size': (m.scale.x, m.scale.y, m.scale.z)})
        self.objects = objs

    def measure(self, ex, instruction: str, seconds: float = 0.6) -> dict:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        from . import robot
        from .cortex import task
        model = robot.load()
        track = []

        def on_js(msg):
            try:
                q = [msg.position[list(msg.name).index(j)] for j in model.arm_joints]
            except ValueError:
                return
            st = msg.header.stamp
            t = st.sec + st.nanosec * 1e-9 or time.monotonic()
            track.append((t, model.fk(q)[:3, 3]))
        # the samples' own stamps span the window (this process runs under the normal
        # scheduler and may get the CPU late on a full machine: queued samples keep their time)
        sub = self.node.create_subscription(JointState, 'joint_states', on_js, QoSProfile(
            depth=200, history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.BEST_EFFORT))
        give_up = time.monotonic() + seconds + 5.0
        while time.monotonic() < give_up and (len(track) < 2
                                              or track[-1][0] - track[0][0] < seconds):
            ex.spin_once(timeout_sec=0.01)
        self.node.destroy_subscription(sub)
        if self.objects is None:
            return {'instruction': instruction, 'named': None, 'success': False,
                    'reason': 'no objects from the sim (/sim/objects)'}
        return task.outcome(instruction, self.objects, track)


class Diagnostics:
    """The latest DiagnosticStatus per status name, from /diagnostics."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT)  # matches any publisher
        self.latest: dict[str, dict] = {}
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array, qos)

    def _on_array(self, msg) -> None:
        for st in msg.status:
            level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            self.latest[st.name] = {
                'level': LEVELS.get(level, str(level)),
                'message': st.message, 'hardware_id': st.hardware_id,
                'values': {kv.key: _number(kv.value) for kv in st.values}}


def group_statuses(latest: dict[str, dict], names) -> dict[str, dict[str, dict]]:
    """Statuses per node: named ``<node>: ...`` or ``/<node>...``, else by hardware_id; the
    statuses no node claims go under :data:`OTHER` (shown, not lost)."""
    out: dict[str, dict[str, dict]] = {n: {} for n in names}
    other = {}
    for key, st in latest.items():
        head = key.lstrip('/').split(':')[0].split('/')[0].strip()
        owner = head if head in out else st['hardware_id'] if st['hardware_id'] in out else None
        (out[owner] if owner is not None else other)[key] = st
    if other:
        out[OTHER] = other
    return out


def _jsonable(d: dict) -> dict:
    return {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in d.items()}


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _ready(node, name: str) -> bool:
    """Node ``name`` is on the graph with a publisher or subscription of its own."""
    from rclpy.node import NodeNameNonExistentError
    try:
        topics = (node.get_publisher_names_and_types_by_node(name, node.get_namespace())
                  + node.get_subscriber_names_and_types_by_node(name, node.get_namespace()))
    except NodeNameNonExistentError:
        return False
    return any(t not in STANDARD_TOPICS for t, _types in topics)


class Runner:
    def __init__(self, values: dict, duration: float | None = None,
                 startup_timeout: float = 90.0, stop_timeout: float = 10.0,
                 only: list[str] | None = None):
        self.args = graph.resolve(values)
        self.only = only
        self.duration = duration
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self._stop_signal: int | None = None
        self._lock = threading.Lock()
        self._t_spawn = time.monotonic()
        self.task: dict | None = None

    # ---- signals ----
    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is None:
            _log(f'{signal.Signals(signum).name}: stopping the nodes')
        self._stop_signal = signum

    # ---- main ----
    def run(self) -> int:
        specs = graph.nodes(self.args, pip_only=True)
        skipped = [s.name for s in graph.nodes(self.args) if not s.pip]
        if skipped:
            _log(f'not started in pip mode (ROS 2 install only): {", ".join(skipped)}')
        if self.only:
            unknown = set(self.only) - {s.name for s in specs}
            if unknown:
                _log(f'--only {",".join(sorted(unknown))}: not among the nodes these arguments '
                     f'start ({", ".join(s.name for s in specs) or "none"})')
                return 2
            specs = [s for s in specs if s.name in self.only]
        if not specs:
            _log(f'no node to start for {self.args}')
            return 2
        pfile = graph.params_file(self.args)
        if not os.path.isfile(pfile):
            _log(f'parameters file not found: {pfile}')
            return 2
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_COLORIZED_OUTPUT': '0'}
        try:
            # Fork every child before any thread exists (preexec_fn is not thread-safe).
            self._t_spawn = time.monotonic()
            for spec in specs:
                child = Child(spec, graph.command(spec, self.args), env, self._lock)
                self.children.append(child)
                _log(f'started {spec.name} (pid {child.proc.pid}): {" ".join(child.cmd)}')
            for child in self.children:
                child.start_reader()
            ended, ran_s, alive, diags = self._supervise()
        finally:
            codes = self._stop_all()
            for s, h in old.items():
                signal.signal(s, h)
        return self._summary(ended, ran_s, alive, diags, codes)

    def _supervise(self):
        """Spin a small rclpy node on /diagnostics until the duration, a signal or a death."""
        import rclpy
        from rclpy.experimental import EventsExecutor
        from rclpy.signals import SignalHandlerOptions

        ctx = rclpy.Context()
        rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node('neurovla_runner', context=ctx,
                                 namespace=graph.namespace(self.args) or None)
        diags = Diagnostics(node)
        names = [c.name for c in self.children]
        watch = TaskWatch(node) if 'cortex' in names and 'sim' in names else None
        self.task = None
        ex = EventsExecutor(context=ctx)
        ex.add_node(node)
        t0 = self._t_spawn
        t_up = None
        ended = 'interrupted'
        try:
            while self._stop_signal is None:
                dead = [c for c in self.children if c.proc.poll() is not None]
                if dead:
                    for c in dead:
                        self._report_death(c)
                    ended = 'node died: ' + ', '.join(c.name for c in dead)
                    break
                now = time.monotonic()
                if t_up is None:
                    missing = [c.name for c in self.children if not _ready(node, c.name)]
                    if not missing:
                        t_up = now
                        until = f'for {self.duration:g} s' if self.duration else 'until Ctrl-C'
                        _log(f'all {len(self.children)} node(s) up after {now - t0:.1f} s; '
                             f'running {until}')
                    elif now - t0 > self.startup_timeout:
                        _log(f'not up after {self.startup_timeout:g} s: {", ".join(missing)}')
                        for c in self.children:
                            if c.name in missing:
                                self._print_tail(c)
                        ended = 'startup timeout: ' + ', '.join(missing)
                        break
                elif self.duration is not None and now - t_up >= self.duration:
                    ended = 'duration'
                    if watch is not None:
                        self.task = self._task(watch, ex, diags)
                    break
                ex.spin_once(timeout_sec=0.05)
            alive = {c.name: c.proc.poll() is None for c in self.children}
            ran_s = None if t_up is None else time.monotonic() - t_up
            names = [c.name for c in self.children]
            return ended, ran_s, alive, group_statuses(diags.latest, names)
        finally:
            ex.remove_node(node)
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)

    @staticmethod
    def _task(watch: TaskWatch, ex, diags: Diagnostics) -> dict:
        """The task outcome for the instruction the cortex reports in its diagnostics."""
        instr = next((st['values']['instruction'] for key, st in diags.latest.items()
                      if key.startswith('cortex') and 'instruction' in st['values']), None)
        if instr is None:
            return {'instruction': None, 'named': None, 'success': False,
                    'reason': 'no cortex diagnostics'}
        try:
            return watch.measure(ex, str(instr))
        except Exception as e:  # noqa: BLE001 - the summary must still be printed
            return {'instruction': instr, 'named': None, 'success': False,
                    'reason': f'{type(e).__name__}: {e}'}

    def _report_death(self, c: Child) -> None:
        c.drain()
        _log(f'node {c.name} (pid {c.proc.pid}) died with exit code {c.proc.returncode}')
        self._print_tail(c)

    def _print_tail(self, c: Child) -> None:
        _log(f'last output lines of {c.name}:')
        for line in list(c.lines)[-LAST_LINES:]:
            print(f'    {line}', file=sys.stderr)
        sys.stderr.flush()

    def _stop_all(self) -> dict[str, int | None]:
        """SIGINT to every node's process group, wait, then SIGTERM, then SIGKILL."""
        steps = ((signal.SIGINT, self.stop_timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0))
        for sig, wait in steps:
            running = [c for c in self.children if c.proc.poll() is None]
            if not running:
                break
            if sig != signal.SIGINT:
                _log(f'{", ".join(c.name for c in running)} still running: {sig.name}')
            for c in running:
                c.signal_group(sig)
            deadline = time.monotonic() + wait
            for c in running:
                try:
                    c.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for c in self.children:
            c.signal_group(signal.SIGKILL)  # whatever the nodes started themselves
            c.drain()
        return {c.name: c.proc.returncode for c in self.children}

    def _summary(self, ended, ran_s, alive, diags, codes) -> int:
        ok = ended in ('duration', 'interrupted')
        ran = ('the nodes were never all up' if ran_s is None
               else f'ran {ran_s:.1f} s with every node up')
        print(f'\n=== neurovla summary: {ran}; ended: {ended} ===')
        print(f'{"node":<14}{"alive":<8}{"exit":<6}diagnostics')
        rows = [(c.name, 'yes' if alive.get(c.name) else 'NO', str(codes.get(c.name)))
                for c in self.children]
        if OTHER in diags:
            rows.append((OTHER, '', ''))
        for name, is_alive, code in rows:
            statuses = diags.get(name, {})
            print(f'{name:<14}{is_alive:<8}{code:<6}{len(statuses)} status(es)')
            for key, st in statuses.items():
                print(f'    [{st["level"]}] {key}: {st["message"]}')
                for k, v in st['values'].items():
                    print(f'        {k} = {v}')
        if self.task is not None:
            from .cortex import task
            print(task.describe(self.task))
        per_node = {c.name: {'alive': bool(alive.get(c.name)), 'exit_code': codes.get(c.name),
                             'diagnostics': diags.get(c.name, {})} for c in self.children}
        print(json.dumps({'ok': ok, 'ended': ended,
                          'ran_s': None if ran_s is None else round(ran_s, 3),
                          'nodes': per_node, 'other_diagnostics': diags.get(OTHER, {}),
                          **({} if self.task is None else {'task': _jsonable(self.task)})}),
              flush=True)
        return 0 if ok else 1


def run(values: dict, duration: float | None = None, startup_timeout: float = 90.0,
        stop_timeout: float = 10.0, only: list[str] | None = None) -> int:
    """Start the pip-mode graph for launch-argument ``values`` (``only``: just these nodes);
    return the exit code."""
    return Runner(values, duration, startup_timeout, stop_timeout, only).run()
