"""Thin rclpy helpers shared by every node: parameters with descriptors, QoS, diagnostics,
spinning."""
from __future__ import annotations

import numbers
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from . import cdr, realtime
from . import teleop as T
from .params import Param

# 1 kHz sensor streams: reliable publishers (any subscriber can match), keep-last small queues.
SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
# Control-loop subscriptions only want the newest sample.
LATEST_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                        history=HistoryPolicy.KEEP_LAST)
# The body's command inputs (ros2_control forward controllers, gripper, wrench): best effort
# so a command publisher of either reliability matches.
BODY_COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                              history=HistoryPolicy.KEEP_LAST)
# Commands and events: reliable, short queue.
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST)
# Latched state (estop, stop state, scene): a late joiner gets the last message.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)


class StopSignal:
    """The robot's stop state as another node sees it: the latched ``estop`` topic
    (std_msgs/Bool) and the spinal node's latched ``spinal/safety`` status (its ``stop`` key;
    see spinal/safety.py). ``reason`` is '' while running; ``on_change(reason)`` is called when
    the node goes from running to stopped or back (a resume is the spinal status back to run)."""

    def __init__(self, node, on_change=None):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Bool
        self.estop = False
        self.spinal = ''          # the spinal status message while it is stopped
        self._on_change = on_change
        node.create_subscription(Bool, 'estop', self._on_estop, LATCHED_QOS)
        node.create_subscription(DiagnosticArray, 'spinal/safety', self._on_safety,
                                 LATCHED_QOS)

    @property
    def reason(self) -> str:
        if self.spinal:
            return f'stopped: {self.spinal}'
        return 'stopped: estop asserted' if self.estop else ''

    def _on_estop(self, msg) -> None:
        self._set(bool(msg.data), self.spinal)

    def _on_safety(self, msg) -> None:
        for st in msg.status:
            stop = next((kv.value for kv in st.values if kv.key == 'stop'), None)
            if stop is not None:
                self._set(self.estop, '' if stop == 'run' else st.message)

    def _set(self, estop: bool, spinal: str) -> None:
        was = bool(self.reason)
        self.estop, self.spinal = estop, spinal
        if bool(self.reason) != was and self._on_change is not None:
            self._on_change(self.reason)


def declare_params(node, schema: list[Param], check=None) -> SimpleNamespace:
    """Declare every parameter of ``schema`` with a descriptor; return their current values.

    The namespace is kept up to date when a (non read-only) parameter is set at run time;
    values outside the schema's range or choices are refused with the reason, and so are
    values ``check`` (called with the would-be namespace) raises ValueError for: rules that
    join several parameters.
    """
    by_name = {p.name: p for p in schema}
    values = SimpleNamespace()
    for p in schema:
        d = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.choices:
            d.additional_constraints = 'one of: ' + ', '.join(map(str, p.choices))
        if (p.min is not None or p.max is not None) and not isinstance(p.default, bool):
            if isinstance(p.default, int):
                d.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(p.max), step=0)]
            elif isinstance(p.default, float):
                d.floating_point_range = [FloatingPointRange(
                    from_value=float(p.min), to_value=float(p.max), step=0.0)]
        value = node.declare_parameter(p.name, p.default, d).value
        p.check(value)
        setattr(values, p.name, value)
    if check is not None:
        check(values)

    def on_set(params):
        for prm in params:
            spec = by_name.get(prm.name)
            if spec is None:
                continue
            try:
                spec.check(prm.value)
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
        if check is not None:
            would = SimpleNamespace(**vars(values))
            for prm in params:
                if prm.name in by_name:
                    setattr(would, prm.name, prm.value)
            try:
                check(would)
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
        for prm in params:
            if prm.name in by_name:
                setattr(values, prm.name, prm.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def decoder(msg_type):
    """bytes -> ``msg_type`` message (rclpy's deserializer): the slow way of the ``common.cdr``
    readers, for encapsulations they do not read themselves."""
    from rclpy.serialization import deserialize_message
    return lambda buf: deserialize_message(buf, msg_type)


def kv_text(value) -> str:
    """A /diagnostics value as text, the same way in every node: a bool ``true``/``false``,
    an integer as it is, a real number with 6 significant digits (``nan``, ``inf``), a
    sequence space-separated, text as it is (so a value that needs another form, e.g. exact
    digits or a fixed-point clock reading, is passed already formatted)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return 'true' if value else 'false'
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f'{float(value):.6g}'
    if isinstance(value, (list, tuple, np.ndarray)):
        return ' '.join(kv_text(v) for v in value)
    return str(value)


def kv_value(text: str):
    """The value of a /diagnostics text: int, float, bool (``true``/``false``), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {'true': True, 'false': False}.get(text, text)


def diagnostic_status(name: str, values: dict, level: int = 0, message: str = '',
                      hardware_id: str = ''):
    """A diagnostic_msgs/DiagnosticStatus from a dict of values (:func:`kv_text`); ``level``
    0 OK, 1 WARN, 2 ERROR, 3 STALE."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    return DiagnosticStatus(level=bytes([int(level)]), name=name, message=message,
                            hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=kv_text(v)) for k, v in values.items()])


def diagnostic_values(status) -> dict:
    """``{key: value}`` of a DiagnosticStatus, values parsed back (:func:`kv_value`)."""
    return {kv.key: kv_value(kv.value) for kv in status.values}


def cap_torch_threads(n: int = 1) -> None:
    """Keep torch from taking every core away from the 1 kHz loops."""
    os.environ.setdefault('OMP_NUM_THREADS', str(n))
    try:
        import torch
        torch.set_num_threads(n)
        torch.set_num_interop_threads(n)
    except (ImportError, RuntimeError):
        pass


def joint_state_template(names, frame_id: str = '') -> cdr.CdrTemplate:
    """A serialized sensor_msgs/JointState with fixed names, written in place at 1 kHz:
    ``fields['position' | 'velocity' | 'effort']`` are float64 views, then ``set_stamp`` and
    ``publish(template.tobytes())``."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState
    js = JointState()
    js.header.frame_id = frame_id
    js.name = list(names)
    n = len(js.name)
    js.position, js.velocity, js.effort = (cdr.sentinels(n, i * n) for i in range(3))
    return cdr.CdrTemplate(serialize_message(js), {
        'position': (0, n), 'velocity': (n, n), 'effort': (2 * n, n)})


def float64_array_template(n: int) -> cdr.CdrTemplate:
    """A serialized std_msgs/Float64MultiArray of ``n`` values (no layout), written in place
    through ``fields['data']``: the ros2_control forward-controller command at 1 kHz."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Float64MultiArray
    return cdr.CdrTemplate(serialize_message(Float64MultiArray(data=cdr.sentinels(n))),
                           {'data': (0, n)}, stamp_offset=None)


class LatestSample:
    """The newest message of a fast topic, taken when asked instead of delivered per message.

    For a reader that needs a stream only at its own, lower rate (the cortex plans at ~10 Hz
    from the 1 kHz /joint_states; the cerebellum ticks at 500 Hz on the 1 kHz IMU): the
    subscription (depth 1, best effort, raw) belongs to a helper node (``<node>_latest``, one
    per node) that no executor spins, so no Python callback and no wake-up happen per message
    (the helper ignores the process's global arguments: launch's ``-r __node:=NAME`` would
    otherwise give it the owner's name);
    ``take()`` returns the serialized newest sample, or None when none arrived since the last
    take. The topic is resolved by ``node`` (its namespace and remappings). A take costs about
    what one delivered message does (30-50 us here), so it pays only where most messages would
    be dropped unread.
    """

    def __init__(self, node, msg_type, topic: str):
        helper = getattr(node, '_latest_sample_node', None)
        if helper is None:
            helper = rclpy.create_node(f'{node.get_name()}_latest', context=node.context,
                                       namespace=node.get_namespace(),
                                       use_global_arguments=False,
                                       start_parameter_services=False, enable_rosout=False)
            node._latest_sample_node = helper
        self._owner, self._node = node, helper
        self._sub = helper.create_subscription(msg_type, node.resolve_topic_name(topic),
                                               lambda _: None, LATEST_QOS, raw=True)

    def take(self) -> bytes | None:
        got = self._sub.handle.take_message(self._sub.msg_type, True)
        return None if got is None else got[0]

    def destroy(self) -> None:
        """Remove the subscription, and the helper node with its last one. Call it before
        the owning node is destroyed: a helper left to the garbage collector may be finalised
        in the middle of another rcl call of the process and hang it (seen: a bench creating
        a node hung in ``create_publisher``)."""
        helper = self._node
        helper.destroy_subscription(self._sub)
        if not list(helper.subscriptions):
            if getattr(self._owner, '_latest_sample_node', None) is helper:
                del self._owner._latest_sample_node
            helper.destroy_node()


class Throttled:
    """Throttled logging for callbacks that may run at 1 kHz (bad input arrives at the rate of
    the stream). rclpy applies its own ``throttle_duration_sec`` only after it has identified
    the caller by inspecting the stack (dozens of file-system calls): ~0.4 ms per call on the
    2-core VM even when the message is then dropped, half a core for a bad 1 kHz stream. This
    gate decides first, per ``key``, and tells how many messages it held back.
    """

    def __init__(self, logger, period: float = 1.0):
        self.logger, self.period = logger, period
        self._next = {}        # key -> (monotonic time of the next allowed message, held back)

    def __call__(self, key: str, msg: str, level: str = 'warning') -> bool:
        """Log ``msg`` unless ``key`` logged less than ``period`` ago; True when logged."""
        now = time.monotonic()
        due, held = self._next.get(key, (0.0, 0))
        if now < due:
            self._next[key] = (due, held + 1)
            return False
        self._next[key] = (now + self.period, 0)
        if held:
            msg += f' ({held} more since the last such message)'
        # one call site per severity: rclpy refuses a call site that changes its severity
        if level == 'error':
            self.logger.error(msg)
        elif level == 'info':
            self.logger.info(msg)
        else:
            self.logger.warning(msg)
        return True

    def warning(self, key: str, msg: str) -> bool:
        return self(key, msg, 'warning')

    def error(self, key: str, msg: str) -> bool:
        return self(key, msg, 'error')


class TeleopCommands:
    """The outputs of a teleop front end (:mod:`neurovla_ros.common.teleop`) on ``node``:
    publishers for the twist, pose, gripper and instruction, and Trigger clients for the
    services, whose outcome is kept per name in ``results`` (a service nobody serves reports
    "not available" instead of waiting)."""

    def __init__(self, node):
        self.node = node
        self.twist_pub = node.create_publisher(TwistStamped, T.TWIST_TOPIC, COMMAND_QOS)
        self.pose_pub = node.create_publisher(PoseStamped, T.POSE_TOPIC, COMMAND_QOS)
        self.gripper_pub = node.create_publisher(Float64MultiArray, T.GRIPPER_TOPIC, COMMAND_QOS)
        self.instruction_pub = node.create_publisher(String, T.INSTRUCTION_TOPIC, COMMAND_QOS)
        self.estop_pub = node.create_publisher(Bool, T.ESTOP_TOPIC, LATCHED_QOS)
        self.clients = {k: node.create_client(Trigger, v) for k, v in T.SERVICES.items()}
        self.results: dict[str, str] = {}

    def _stamp(self, header, frame: str) -> None:
        header.stamp = self.node.get_clock().now().to_msg()
        header.frame_id = frame

    def twist(self, linear, angular, frame: str = 'base_link') -> None:
        msg = TwistStamped()
        self._stamp(msg.header, frame)
        t = msg.twist
        t.linear.x, t.linear.y, t.linear.z = (float(v) for v in linear)
        t.angular.x, t.angular.y, t.angular.z = (float(v) for v in angular)
        self.twist_pub.publish(msg)

    def pose(self, position, quat_xyzw, frame: str = 'base_link') -> None:
        msg = PoseStamped()
        self._stamp(msg.header, frame)
        p, o = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(v) for v in position)
        o.x, o.y, o.z, o.w = (float(v) for v in quat_xyzw)
        self.pose_pub.publish(msg)

    def gripper(self, opening: float) -> None:
        self.gripper_pub.publish(Float64MultiArray(data=[float(opening)]))

    def instruction(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def act(self, name: str, model) -> str:
        """Carry out the front-end command ``name`` (a key of ``teleop.COMMANDS``; ``model``:
        the RobotModel); returns what was sent (a service's answer lands in ``results``)."""
        if name == 'home':
            self.pose(*T.home_pose(model), T.BASE_FRAME)
            return f'{T.POSE_TOPIC}: home pose sent'
        if name in ('gripper_open', 'gripper_close'):
            width = model.gripper_open if name == 'gripper_open' else model.gripper_closed
            self.gripper(width)
            return f'{T.GRIPPER_TOPIC}: {width * 1000:.0f} mm sent'
        if name == 'estop':
            self.estop_pub.publish(Bool(data=True))
            return f'{T.ESTOP_TOPIC}: true sent (emergency stop)'
        if name == 'resume':
            # estop false first; the spinal layer may answer the request before the (latched)
            # topic reaches it: a refusal naming the estop is asked again
            self.estop_pub.publish(Bool(data=False))
            return f'{T.ESTOP_TOPIC}: false sent; ' + self.call('resume', retries=3)
        if name in T.SERVICES:
            return self.call(name)
        raise ValueError(f'unknown teleop command {name!r}')

    def call(self, name: str, retries: int = 0) -> str:
        """Call service ``name`` (a key of ``teleop.SERVICES``) without waiting; returns (and
        keeps in ``results``) 'sent', or why it was not sent. The answer replaces it.
        retries: ask again this many times while the answer is a refusal naming the estop."""
        service, client = T.SERVICES[name], self.clients[name]
        if not client.service_is_ready():
            self.results[name] = f'{service}: not available (no server)'
            return self.results[name]
        fut = client.call_async(Trigger.Request())

        def done(f, name=name, service=service):
            r = f.result()
            if r is not None and not r.success and retries > 0 and 'estop' in r.message:
                self.call(name, retries - 1)
                return
            self.results[name] = (f'{service}: no answer' if r is None else
                                  f'{service}: {"ok" if r.success else "refused"}: {r.message}')
        fut.add_done_callback(done)
        self.results[name] = f'{service}: sent'
        return self.results[name]


def go_realtime(node) -> None:
    """Apply the node's ``realtime_priority`` parameter (if it has one) to its process.

    Called once the node exists, so the DDS threads that deliver its messages are lifted too.
    """
    prio = getattr(getattr(node, 'p', None), 'realtime_priority', 0)
    if prio and realtime.current_priority() == prio:
        return          # already done (a node that needed it while starting up)
    problem = realtime.make_realtime(prio)
    if problem:
        node.get_logger().warning(problem)
    elif prio:
        node.get_logger().info(f'SCHED_FIFO priority {prio} for all threads of this process')


def spin(node, executor=None, step=None) -> None:
    """Spin with the EventsExecutor through spin_once (its spin() hangs on this platform).

    ``step``: called before each spin_once, does the node's own timed work and returns how
    long [s] the spin may wait for an event (a loop finer than rclpy's timers)."""
    from rclpy.experimental import EventsExecutor
    ex = executor or EventsExecutor(context=node.context)
    ex.add_node(node)
    try:
        while rclpy.ok(context=node.context):
            try:
                ex.spin_once(timeout_sec=0.1 if step is None else max(0.0, step()))
            except RuntimeError:
                # SIGINT while an event is being taken ("Unable to convert call argument"):
                # part of the shutdown, not a failure
                if rclpy.ok(context=node.context):
                    raise
    finally:
        ex.remove_node(node)


def run(node_factory, args=None) -> int:
    """main() body for every node: init, build, spin, clean shutdown on SIGINT/SIGTERM.

    A node that owns its loop (a ``run()`` method: the sim pacing its physics) runs it instead
    of the plain spin; it returns once the context is shut down or its ``stop()`` was called.
    rclpy's own handlers (installed by init) turn both signals into a context shutdown, which
    ends the loop, then call the Python handler installed here: it tells a node with a
    ``stop()``, and is all that a further signal meets during the shutdown (a terminal's Ctrl-C
    reaches every process of the group and launch forwards another SIGINT: "already
    stopping", never a KeyboardInterrupt or a second death). A Python handler calling
    try_shutdown could deadlock on rclpy's context lock, so none does.

    A parameter the node refuses while starting (a ValueError or rclpy's ParameterException
    raised before the node exists) ends it with one line and exit code 1, no traceback.
    """
    from rclpy.exceptions import ParameterException
    node = None

    def on_signal(*_):
        stop = getattr(node, 'stop', None)
        if callable(stop):
            stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    rclpy.init(args=args)
    try:
        node = node_factory()
        go_realtime(node)
        loop = getattr(node, 'run', None)
        loop() if callable(loop) else spin(node)
    except (ValueError, ParameterException) as e:
        if node is not None or not rclpy.ok():
            raise
        spec = getattr(sys.modules.get(node_factory.__module__), '__spec__', None)
        part = getattr(spec, 'name', 'node').split('.')[-2:][0]    # neurovla_ros.<part>.node
        print(f'[FATAL] [{part}]: cannot start: {e}', file=sys.stderr, flush=True)
        return 1
    except ExternalShutdownException:
        pass
    except Exception:  # noqa: BLE001
        if rclpy.ok():
            raise       # a real failure; otherwise stopped while starting (the context is gone)
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
        # the interpreter's finalisation (DDS threads, module teardown: 0.1-0.4 s) would
        # restore SIG_DFL for a Python handler, and a further Ctrl-C would kill the process
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return 0
