"""Parameters of the ``teleop_markers`` node (ROS-free schema; see common/params.py)."""
from __future__ import annotations

from ..common.params import Param

NODE_NAME = 'teleop_markers'

PARAMS: list[Param] = [
    Param('frame', 'base_link', 'Frame of the marker and of the /teleop/pose goals [frame]',
          read_only=True),
    Param('follow_rate_hz', 10.0,
          'Rate at which the marker follows the measured tool pose when not dragged [Hz]',
          0.5, 60.0, read_only=True),
    Param('goal_rate_hz', 20.0,
          'Largest rate of /teleop/pose goals while dragging (the last pose is always sent) '
          '[Hz]', 1.0, 100.0, read_only=True),
    Param('drag_timeout', 2.0,
          'A drag with no feedback for this long is over (the client went away) [s]',
          0.2, 60.0),
    Param('follow_tolerance', 0.0005,
          'The marker is moved to the measured pose when that moved more than this [m] '
          '(or 10x this in rad)', 0.0, 0.1),
    Param('marker_scale', 0.2, 'Size of the marker controls [m]', 0.02, 2.0, read_only=True),
    Param('diagnostics_rate_hz', 1.0, '/diagnostics rate [Hz]', 0.1, 10.0, read_only=True),
]
