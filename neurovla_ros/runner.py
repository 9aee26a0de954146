"""Pip-mode bringup (``neurovla bringup``): the graph of ``graph.py`` without ``ros2 launch``.

:class:`NodeGraph` starts the nodes (``python -m <module> --ros-args --params-file ...
-p use_sim_time:=... -r from:=to``), each in its own process group through
:mod:`neurovla_ros.common.procs` (a node gets SIGINT from the kernel if the runner dies, the
same signal as a normal stop), and tells when they are up: a node is *up* once it is on the
graph with a topic of its own (nodes create their publishers and subscriptions at the end of
their set-up, after loading models and worlds). The benchmarks start the same graph with it,
with parameter overrides, nodes left out or run in their own process.
Ctrl-C / SIGTERM: SIGINT to every node, wait, then SIGTERM, then SIGKILL. A node that dies is
reported with its last output lines and the runner exits non-zero. ``duration`` counts from
when every node is on the graph; then everything is stopped and a summary is printed (per
node: alive, exit code, and the latest /diagnostics of that node), the last line one JSON object.
With a cortex and the sim, the summary also says whether the task succeeded: which object the
instruction named, the final tcp distance to it and success yes/no (``cortex.task``: within 3 cm
of its top centre and still for 0.5 s).

The runner publishes ``/robot_description`` (std_msgs/String, transient local: a late joiner
gets it), the expanded URDF, as robot_state_publisher does on a ROS install, so that Foxglove or
Lichtblick can show the model in pip mode.
The runner reads /diagnostics and the sim's objects (2 Hz) only: subscribing to the 1 kHz
streams from here would take CPU from the nodes on a small machine; /joint_states is read for
0.6 s at the end of ``duration`` only, for the task result.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Callable, TextIO

from . import graph
from .common import procs

LAST_LINES = procs.TAIL_LINES
OTHER = '(other)'  # summary entry for /diagnostics statuses that name no started node
STANDARD_TOPICS = {'/rosout', '/parameter_events'}  # every node has these from the start
LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}


def _log(msg: str) -> None:
    print(f'[neurovla] {msg}', file=sys.stderr, flush=True)


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
        from .common.rosutil import diagnostic_values
        for st in msg.status:
            level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            self.latest[st.name] = {
                'level': LEVELS.get(level, str(level)),
                'message': st.message, 'hardware_id': st.hardware_id,
                'values': diagnostic_values(st)}


UI_STATUS = 'ui: browser view'


def ui_url(latest: dict[str, dict], namespace: str = '/') -> str | None:
    """The URL of the browser view (the ui node's status in ``latest``, from the stack in
    ``namespace``), or None while none is seen."""
    values = latest.get(UI_STATUS, {}).get('values', {})
    if values.get('namespace', '/') != namespace:
        return None
    return values.get('url') or None


def describe(node):
    """Publish ``robot_description`` (latched, in ``node``'s namespace, as
    robot_state_publisher) on ``node``; returns the publisher."""
    from std_msgs.msg import String

    from . import robot
    from .common.rosutil import LATCHED_QOS
    pub = node.create_publisher(String, 'robot_description', LATCHED_QOS)
    pub.publish(String(data=robot.urdf_xml()))
    return pub


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


def _ready(node, name: str) -> bool:
    """Node ``name`` is on the graph with a publisher or subscription of its own."""
    from rclpy.node import NodeNameNonExistentError
    try:
        topics = (node.get_publisher_names_and_types_by_node(name, node.get_namespace())
                  + node.get_subscriber_names_and_types_by_node(name, node.get_namespace()))
    except NodeNameNonExistentError:
        return False
    return any(t not in STANDARD_TOPICS for t, _types in topics)


class NodeGraph:
    """The nodes ``neurovla bringup`` starts, as processes: ``graph.nodes(args, pip_only=True)``
    for launch arguments ``values``, each ``graph.command(spec, args)``.

    ``overrides``: ``{node: {parameter: value}}``, added as ``-p name:=value`` (they win over
    the parameters file). ``only`` / ``skip``: start just these / all but these.
    ``in_process``: nodes the caller runs itself (not started; :meth:`cli_args` gives such a
    node the arguments bringup would, e.g. ``SimNode(context=ctx, cli_args=...)``).
    ``log``: a path with ``{name}`` for each node's output (``log_mode`` 'w' or 'a'); without
    one, each node's output is read by a thread and, with ``echo``, written there line by line
    with a ``[name]`` prefix. ``domain``: the DDS domain (default: the environment's; a
    benchmark calls ``bench.common.private_graph()`` first). ``prefix``: words put before each
    node's command (e.g. ``ip netns exec NS``: the nodes on another host's network). Unknown
    node names are a ValueError. Start with :meth:`start` (or ``with``), then :meth:`wait_up`.
    """

    ENV = {'PYTHONUNBUFFERED': '1', 'RCUTILS_COLORIZED_OUTPUT': '0'}

    def __init__(self, values: dict | None = None, overrides: dict | None = None,
                 only=None, skip=(), in_process=(), log: str | None = None,
                 log_mode: str = 'w', echo: TextIO | None = None, domain: int | None = None,
                 env: dict | None = None, prefix=()):
        self.prefix = list(prefix)
        self.args = graph.resolve(values)
        specs = graph.nodes(self.args, pip_only=True)
        known = [sp.name for sp in specs]
        asked = {'only': only or (), 'skip': skip, 'in_process': in_process,
                 'overrides': overrides or {}}
        for what, names in asked.items():
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise ValueError(f'{what} {",".join(unknown)}: not among the nodes these '
                                 f'arguments start ({", ".join(known) or "none"})')
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        self.in_process = [sp for sp in specs if sp.name in in_process]
        self.specs = [sp for sp in specs if (not only or sp.name in only)
                      and sp.name not in skip and sp.name not in in_process]
        self.log, self.log_mode, self.echo = log, log_mode, echo
        self.env = {**(os.environ if env is None else env), **self.ENV}
        if domain is not None:
            self.env['ROS_DOMAIN_ID'] = str(domain)
        self.procs: list[procs.Proc] = []

    @property
    def names(self) -> list[str]:
        return [sp.name for sp in self.specs]

    def command(self, spec: graph.NodeSpec) -> list[str]:
        return [*self.prefix, *graph.command(spec, self.args,
                                             overrides=self.overrides.get(spec.name))]

    def cli_args(self, name: str) -> list[str]:
        """``--ros-args ...`` of node ``name`` as bringup gives them (with its overrides)."""
        spec = next(sp for sp in graph.nodes(self.args, pip_only=True) if sp.name == name)
        return graph.ros_arguments(spec, self.args, self.overrides.get(name))

    def start(self, on_start: Callable[[procs.Proc], None] | None = None) -> 'NodeGraph':
        """Start every node (``on_start`` hears of each)."""
        try:
            for spec in self.specs:
                p = procs.Proc(self.command(spec), spec.name, env=self.env, echo=self.echo,
                               log=self.log.format(name=spec.name) if self.log else None,
                               log_mode=self.log_mode)
                self.procs.append(p)
                if on_start is not None:
                    on_start(p)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str) -> procs.Proc:
        """Start node ``name`` again as bringup would (after it died or was killed; a running
        one is stopped first); its log is appended to."""
        i = next(i for i, p in enumerate(self.procs) if p.name == name)
        old = self.procs[i]
        if old.poll() is None:
            procs.stop([old])
        spec = next(sp for sp in self.specs if sp.name == name)
        self.procs[i] = procs.Proc(self.command(spec), name, env=self.env, echo=self.echo,
                                   log=self.log.format(name=name) if self.log else None,
                                   log_mode='a')
        return self.procs[i]

    def __enter__(self) -> 'NodeGraph':
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def dead(self) -> list[procs.Proc]:
        return [p for p in self.procs if p.poll() is not None]

    def alive(self) -> bool:
        return bool(self.procs) and not self.dead()

    def missing(self, node) -> list[str]:
        """The started nodes not up yet, as seen by the rclpy ``node``."""
        return [p.name for p in self.procs if not _ready(node, p.name)]

    def wait_up(self, node, timeout: float = 90.0, spin: Callable[[], None] | None = None,
                ) -> float:
        """Wait until every started node is up (seen by ``node``; ``spin`` is called between
        looks, else it sleeps); returns the seconds waited. RuntimeError, with the last output
        lines, when one dies or is not up within ``timeout``."""
        t0 = time.monotonic()
        while True:
            dead = self.dead()
            if dead:
                raise RuntimeError('; '.join(
                    f'{p.name} died (exit code {p.returncode}):\n{p.output()}' for p in dead))
            missing = self.missing(node)
            if not missing:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                tails = [f'{p.name}:\n{p.output()}' for p in self.procs if p.name in missing]
                raise RuntimeError(f'not up after {timeout:g} s: {", ".join(missing)}\n'
                                   + '\n'.join(tails))
            if spin is not None:
                spin()
            else:
                time.sleep(0.05)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time of each node's process so far [s] (NaN once it is gone)."""
        return {p.name: p.cpu_seconds() for p in self.procs}

    def logs(self) -> dict[str, str]:
        """Each node's log file (with ``log``)."""
        return {p.name: p.log for p in self.procs if p.log}

    def stop(self, timeout: float = 10.0, log: Callable[[str], None] | None = None
             ) -> dict[str, int | None]:
        """SIGINT, then SIGTERM, then SIGKILL (:func:`procs.stop`); the exit codes."""
        return procs.stop(self.procs, timeout, log=log)


class Runner:
    def __init__(self, values: dict, duration: float | None = None,
                 startup_timeout: float = 90.0, stop_timeout: float = 10.0,
                 only: list[str] | None = None):
        self.args = graph.resolve(values)
        self.only = only
        self.duration = duration
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.graph: NodeGraph | None = None
        self._stop_signal: int | None = None
        self._t_spawn = time.monotonic()
        self.task: dict | None = None

    @property
    def children(self) -> list[procs.Proc]:
        return [] if self.graph is None else self.graph.procs

    # ---- signals ----
    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is None:
            _log(f'{signal.Signals(signum).name}: stopping the nodes')
        self._stop_signal = signum

    # ---- main ----
    def run(self) -> int:
        skipped = [s.name for s in graph.nodes(self.args) if not s.pip]
        if skipped:
            _log(f'not started in pip mode (ROS 2 install only): {", ".join(skipped)}')
        try:
            nodes = NodeGraph(self.args, only=self.only, echo=sys.stdout)
        except ValueError as e:
            _log(f'--{e}')
            return 2
        if not nodes.specs:
            _log(f'no node to start for {self.args}')
            return 2
        pfile = graph.params_file(self.args)
        if not os.path.isfile(pfile):
            _log(f'parameters file not found: {pfile}')
            return 2
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.graph = nodes
        try:
            self._t_spawn = time.monotonic()
            nodes.start(lambda p: _log(f'started {p.name} (pid {p.pid}): {" ".join(p.cmd)}'))
            ended, ran_s, alive, diags = self._supervise()
        finally:
            codes = nodes.stop(self.stop_timeout, _log)
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
        describe(node)
        names = [c.name for c in self.children]
        watch = TaskWatch(node) if 'cortex' in names and 'sim' in names else None
        self.task = None
        ex = EventsExecutor(context=ctx)
        ex.add_node(node)
        t0 = self._t_spawn
        t_up = url = None
        ended = 'interrupted'
        try:
            while self._stop_signal is None:
                dead = self.graph.dead()
                if dead:
                    for c in dead:
                        self._report_death(c)
                    ended = 'node died: ' + ', '.join(c.name for c in dead)
                    break
                now = time.monotonic()
                if t_up is None:
                    missing = self.graph.missing(node)
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
                if url is None and 'ui' in names:
                    url = ui_url(diags.latest, node.get_namespace())
                    if url:
                        _log(f'browser view: {url}')
                ex.spin_once(timeout_sec=0.05)
            alive = {c.name: c.alive() for c in self.children}
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

    def _report_death(self, c: procs.Proc) -> None:
        c.drain()
        _log(f'node {c.name} (pid {c.pid}) died with exit code {c.returncode}')
        self._print_tail(c)

    @staticmethod
    def _print_tail(c: procs.Proc) -> None:
        _log(f'last output lines of {c.name}:')
        for line in c.output(LAST_LINES).splitlines():
            print(f'    {line}', file=sys.stderr)
        sys.stderr.flush()

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
