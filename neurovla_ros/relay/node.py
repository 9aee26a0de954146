"""The ``relay`` node: message loss and delay between the cortex and the body-side nodes.

This machine's kernel has no ``netem`` qdisc, so loss and delay on the cortex -> cerebellum
link are injected here (``bringup relay:=true`` remaps the cortex's outputs to ``relay_in/...``).

Interfaces (relative names, so ``namespace:=`` moves them):
  subscribes  relay_in/<topic> for each entry of ``topics`` (default relay_in/cortex/goal_pose
              [geometry_msgs/PoseStamped], relay_in/cortex/joint_goal
              [trajectory_msgs/JointTrajectory], relay_in/gripper_controller/commands
              [std_msgs/Float64MultiArray])
  publishes   <topic>: the same serialized message, unless dropped, ``delay_s`` later
              /diagnostics [diagnostic_msgs/DiagnosticArray, 1 Hz]: received, dropped,
              forwarded, pending, loss, delay_s
Parameters: ``neurovla_ros.relay.params``; ``loss`` and ``delay_s`` take effect at run time
(the next message; a new delay for the messages received after it).

Messages are carried as bytes (raw subscriptions, raw publishes). The loop owns the timing:
``spin_once`` until the next message is due (at most 0.1 s), then publish what is due, so a
delayed message leaves within about a millisecond of its time. Delays are wall-clock
(monotonic) time, as a network's are, also with ``use_sim_time``.
"""
from __future__ import annotations

import importlib
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from ..common.relay import LossDelayLine
from ..common.rosutil import COMMAND_QOS, declare_params, diagnostic_status, run, spin
from .params import IN_PREFIX, NODE_NAME, PARAMS, parse_topics

DIAGNOSTICS_PERIOD = 1.0    # [s]
MAX_WAIT = 0.1              # [s] longest spin_once


def message_type(name: str):
    """The message class of ``pkg/msg/Type``; ValueError when it is not installed."""
    pkg, _msg, cls = name.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), cls)
    except (ImportError, AttributeError) as e:
        raise ValueError(f'topics: message type {name!r} not found ({e})') from None


class RelayNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = self.p = declare_params(self, PARAMS)
        topics = parse_topics(p.topics)
        self.line = LossDelayLine(p.loss, p.delay_s, p.seed)
        self.add_post_set_parameters_callback(
            lambda _params: self.line.configure(self.p.loss, self.p.delay_s))
        self._pubs = []
        for i, (topic, kind) in enumerate(topics):
            msg_type = message_type(kind)
            self._pubs.append(self.create_publisher(msg_type, topic, COMMAND_QOS))
            self.create_subscription(msg_type, IN_PREFIX + topic,
                                     lambda data, i=i: self.line.push(time.monotonic(),
                                                                      (i, data)),
                                     COMMAND_QOS, raw=True)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self._next_diag = time.monotonic()
        self.get_logger().info(
            f'relaying {", ".join(t for t, _ in topics)} from {IN_PREFIX}...: loss {p.loss:g}, '
            f'delay {p.delay_s:g} s, seed {p.seed}')

    def forward(self, now: float) -> int:
        """Publish every message due at ``now``; how many."""
        due = self.line.pop_due(now)
        for i, data in due:
            self._pubs[i].publish(data)
        return len(due)

    def status(self):
        ln = self.line
        faulty = ln.loss > 0 or ln.delay_s > 0
        msg = (f'injecting loss {ln.loss:g}, delay {ln.delay_s * 1e3:g} ms' if faulty
               else 'passing through')
        return diagnostic_status(
            NODE_NAME, {'received': ln.received, 'dropped': ln.dropped,
                        'forwarded': ln.forwarded, 'pending': ln.pending, 'loss': ln.loss,
                        'delay_s': ln.delay_s, 'topics': len(self._pubs)},
            level=1 if faulty else 0, message=msg, hardware_id='neurovla_arm')

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray(status=[self.status()])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)

    def step(self) -> float:
        """Publish what is due and, each period, the diagnostics; the time to wait [s] until
        the next message is due (at most MAX_WAIT)."""
        now = time.monotonic()
        self.forward(now)
        if now >= self._next_diag:
            self._publish_diagnostics()
            self._next_diag = now + DIAGNOSTICS_PERIOD
        due = self.line.next_due()
        return min(MAX_WAIT, self._next_diag - now, MAX_WAIT if due is None else due - now)

    def run(self) -> None:
        """Serve messages until shutdown: spin_once until the next one is due."""
        spin(self, step=self.step)


def main(args=None) -> int:
    return run(RelayNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
