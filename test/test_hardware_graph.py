"""The whole graph on the emulated Dynamixel bus: ``neurovla bringup --body dynamixel --port
emulator`` (sim node as the servos behind a pty, the hardware node through the official SDK,
spinal, cerebellum, cortex), real processes over real DDS, ending with the task verdict."""
import json
import os
import subprocess
import sys

from neurovla_ros import graph

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bringup_runs_the_whole_graph_on_the_emulated_bus():
    r = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--headless',
                        '--duration', '15', '--body', 'dynamixel', '--port', 'emulator'],
                       cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    expected = {n.name for n in graph.nodes(graph.resolve({'headless': True, 'body': 'dynamixel',
                                                           'port': 'emulator'}), pip_only=True)}
    assert expected == {'sim', 'hardware', 'spinal', 'cerebellum', 'cortex'}
    assert s['ok'] and s['ended'] == 'duration' and set(s['nodes']) == expected
    for name, node in s['nodes'].items():
        assert node['alive'] and node['exit_code'] == 0, (name, r.stderr[-3000:])
    hw = s['nodes']['hardware']['diagnostics']['hardware: bus']['values']
    sim = s['nodes']['sim']['diagnostics']['sim: physics']['values']
    assert hw['state'] == 'running' and hw['protocol'] == 'dynamixel', (
        s['nodes']['hardware'], r.stderr[-3000:])
    assert hw['cycle_hz'] > 100, hw                        # the bus, not a stub, sets the pace
    # the spinal answered the bus's joint states, and every answer was taken
    assert hw['commands'] > 0.5 * hw['reads'], hw
    assert all(hw[f'rejected_{k}'] == 0 for k in ('effort', 'position', 'gripper', 'refused'))
    # the emulated servos: torque on for all, no goal beyond the URDF limits on the wire, and
    # the sim publishes nothing of its own (the bus is the body's only way in and out)
    assert sim['servo_bus'].startswith('dynamixel on ') and sim['bus_goals_outside_limits'] == 0
    assert sim['bus_torque_on'] == '1,2,3,4,5,6,7' and sim['accepted_commands'] == 0
    assert sim['bus_replies'] > 1000
    # the cortex planned on the bus's /joint_states and the run ends with the task verdict
    assert s['nodes']['cortex']['diagnostics'], s['nodes']['cortex']
    assert s['task']['named'] is not None and 'success' in s['task'], s['task']
    assert 'task ' in r.stdout and ' -> success: ' in r.stdout
