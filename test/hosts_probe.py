"""The body host's probe of the across-hosts test (test_hosts.py): run in the body's network
namespace (``ip netns exec B python test/hosts_probe.py ROWS``), next to sim, spinal, cerebellum
and relay, while the cortex runs on the other host.

It waits until every node's /diagnostics is seen (the cortex's over the link), then runs the
rows given as JSON ``[[name, kind, loss, delay_s], ...]``:

* ``reach``: set the relay's ``loss`` / ``delay_s`` at run time (its parameter services, as
  ``ros2 param set`` does), name the next object of the scene on ``cortex/instruction`` and
  wait until the task succeeds (``cortex.task``: tcp within 3 cm of its top centre and still
  for 0.5 s, the bringup summary's judgement) and the row has lasted 8 s (the arm must stay
  there while the faulty goal stream goes on), or the row's time is up;
* ``cut``: name the next object with the link clean, and once the arm moves set ``loss`` to 1
  (every goal lost: a stale goal stream): the cerebellum finishes the move to the last goal it
  got and holds there (no descent without goals); then the link is restored and the arm must
  reach the object.

Per row it prints one JSON line: the outcome, the relay's counters over the row, the sim's
``rejected_commands`` (every command the body refused as outside the URDF limits, counted by
the body itself), the cerebellum's goal counters. The last line is ``{"rows": [...]}``.
"""
from __future__ import annotations

import json
import sys
import time

import rclpy
from rclpy.experimental import EventsExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import String

from neurovla_ros.common.rosutil import COMMAND_QOS
from neurovla_ros.runner import Diagnostics, TaskWatch

NODES = ('sim', 'spinal', 'cerebellum', 'relay', 'cortex')
ROW_TIMEOUT = 35.0      # [s]
MIN_ROW_S = 8.0         # [s] a reach row lasts at least this (~80 goals through the relay)
CUT_REST_TIMEOUT = 10.0  # [s] for the arm to come to rest after the link is cut


class Probe:
    def __init__(self):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('hosts_probe', context=self.ctx)
        self.ex = EventsExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.diags = Diagnostics(self.node)
        self.watch = TaskWatch(self.node)
        self.relay = AsyncParameterClient(self.node, 'relay')
        self.instruction = self.node.create_publisher(String, 'cortex/instruction', COMMAND_QOS)

    def spin(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until():
                return True
            self.ex.spin_once(timeout_sec=0.02)
        return bool(until and until())

    def values(self, node: str) -> dict:
        out = {}
        for key, st in self.diags.latest.items():
            if key.split(':')[0].strip() == node:
                out.update(st['values'])
        return out

    def fresh_values(self, node: str) -> dict:
        """``node``'s values from a /diagnostics message that arrived after this call."""
        for key in [k for k in self.diags.latest if k.split(':')[0].strip() == node]:
            del self.diags.latest[key]
        self.spin(5.0, lambda: bool(self.values(node)))
        return self.values(node)

    def set_relay(self, **values) -> None:
        fut = self.relay.set_parameters([Parameter(k, value=float(v))
                                         for k, v in values.items()])
        self.spin(10.0, fut.done)
        results = fut.result().results if fut.done() else []
        if not results or not all(r.successful for r in results):
            raise RuntimeError(f'relay refused {values}: {[r.reason for r in results]}')

    def say(self, text: str) -> None:
        """Send the instruction until the cortex (on the other host) reports it."""
        for _ in range(50):
            self.instruction.publish(String(data=text))
            if self.spin(0.5, lambda: self.values('cortex').get('instruction') == text):
                return
        raise RuntimeError(f'the cortex never reported the instruction {text!r}')

    def task(self, text: str) -> dict:
        return self.watch.measure(self.ex, text)

    def wait_reached(self, text: str, timeout: float, t0: float, min_s: float = 0.0,
                     ) -> tuple[dict, float | None]:
        """The task's outcome once it succeeded and ``min_s`` passed since ``t0`` (the row's
        start: the goals keep crossing the link meanwhile), or at ``timeout``; and when it
        first succeeded [s after t0]."""
        r, first = {}, None
        while time.monotonic() - t0 < timeout:
            r = self.task(text)
            if r.get('success') and first is None:
                first = time.monotonic() - t0
            if first is not None and time.monotonic() - t0 >= min_s:
                return r, first
        return r, first


def run_rows(probe: Probe, rows) -> list[dict]:
    objects = [f'{o["colour"]} {o["shape"]}' for o in probe.watch.objects]
    out = []
    for k, (name, kind, loss, delay_s) in enumerate(rows):
        text = f'touch the {objects[k % len(objects)]}'
        probe.set_relay(loss=0.0 if kind == 'cut' else loss, delay_s=delay_s)
        before = probe.fresh_values('relay')
        t0 = time.monotonic()
        probe.say(text)
        row = {'row': name, 'kind': kind, 'loss': loss, 'delay_s': delay_s, 'instruction': text}
        if kind == 'cut':
            moving = False
            while time.monotonic() - t0 < ROW_TIMEOUT and not moving:
                moving = not probe.task(text).get('still', True)
            probe.set_relay(loss=1.0)
            t_cut = time.monotonic()
            before = probe.fresh_values('relay')
            rest_s = None
            while rest_s is None and time.monotonic() - t_cut < CUT_REST_TIMEOUT:
                if probe.task(text)['still']:
                    rest_s = time.monotonic() - t_cut
            held = probe.task(text)
            probe.spin(1.0)
            later = probe.task(text)
            cut = probe.fresh_values('relay')
            row.update(moving_before_cut=moving, rest_after_cut_s=rest_s,
                       held_still=bool(held['still'] and later['still']),
                       held_distance_m=held['distance_m'],
                       drift_m=abs(later['distance_m'] - held['distance_m']),
                       cut_received=cut['received'] - before['received'],
                       cut_forwarded=cut['forwarded'] - before['forwarded'])
            probe.set_relay(loss=0.0)
            before = probe.fresh_values('relay')
        r, t_reach = probe.wait_reached(text, ROW_TIMEOUT, time.monotonic(),
                                        MIN_ROW_S if kind == 'reach' else 0.0)
        after = probe.fresh_values('relay')
        sim = probe.values('sim')
        cb = probe.values('cerebellum')
        row.update(
            reached=bool(r.get('success')), reach_s=t_reach, distance_m=r.get('distance_m'),
            still=r.get('still'), named=r.get('named'),
            relay_received=after['received'] - before['received'],
            relay_dropped=after['dropped'] - before['dropped'],
            relay_forwarded=after['forwarded'] - before['forwarded'],
            relay_loss=after['loss'], relay_delay_s=after['delay_s'],
            sim_rejected_commands=sim.get('rejected_commands'),
            sim_accepted_commands=sim.get('accepted_commands'),
            cerebellum_goals_accepted=cb.get('goals_accepted'),
            cerebellum_goals_rejected=cb.get('goals_rejected'),
            row_s=round(time.monotonic() - t0, 2))
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main(argv) -> int:
    rows = json.loads(argv[1])
    probe = Probe()
    try:
        t0 = time.monotonic()
        up = probe.spin(120.0, lambda: probe.watch.objects is not None
                        and all(probe.values(n) for n in NODES))
        if not up:
            print(json.dumps({'error': 'not every node seen on /diagnostics',
                              'seen': sorted(probe.diags.latest)}), flush=True)
            return 1
        print(json.dumps({'up_s': round(time.monotonic() - t0, 2)}), flush=True)
        result = run_rows(probe, rows)
        print(json.dumps({'rows': result}), flush=True)
        return 0
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown(context=probe.ctx)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
