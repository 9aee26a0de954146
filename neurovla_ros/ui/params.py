"""Parameters of the ``ui`` node (ROS-free schema; see common/params.py)."""
from __future__ import annotations

from ..common.params import Param

NODE_NAME = 'ui'

PARAMS: list[Param] = [
    Param('host', '127.0.0.1',
          'Address the web server binds to: 127.0.0.1 = this machine only; 0.0.0.0 opens the '
          'view (and the arm\'s controls) to every network the machine is on [address]',
          read_only=True),
    Param('port', 8080, 'Web server port; taken: the next free one (the URL is logged and in '
          '/diagnostics); 0 = any free port [port]', 0, 65535, read_only=True),
    Param('state_rate_hz', 30.0, 'Rate at which the arm follows /joint_states [Hz]', 1.0, 60.0,
          read_only=True),
    Param('camera_rate_hz', 5.0, 'Rate of the camera image shown; 0 = none [Hz]', 0.0, 30.0,
          read_only=True),
    Param('jog_rate_hz', 40.0, 'Rate of /teleop/twist while a jog button is held [Hz]', 30.0,
          100.0, read_only=True),
    Param('jog_speed', 0.05, 'Tool speed of the jog buttons (the page has a slider) [m/s]',
          0.001, 0.25),
    Param('jog_turn', 0.3, 'Tool turn rate of the jog buttons [rad/s]', 0.01, 1.0),
    Param('goal_rate_hz', 20.0,
          'Largest rate of /teleop/pose goals while the gizmo is dragged (the pose at release '
          'is always sent) [Hz]', 1.0, 100.0, read_only=True),
    Param('plot_window', 120.0, 'Time span of the live plots [s]', 10.0, 3600.0,
          read_only=True),
    Param('diagnostics_rate_hz', 1.0, '/diagnostics rate [Hz]', 0.1, 10.0, read_only=True),
]
