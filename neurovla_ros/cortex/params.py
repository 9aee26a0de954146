"""Parameters of the ``cortex`` node (ROS-free schema; see docs/parameters.md)."""
from __future__ import annotations

from .. import robot
from ..common.params import Param, realtime_priority

NODE_NAME = 'cortex'
BACKENDS = ('local', 'scripted', 'neurovla-server', 'openpi')
DEFAULT_INSTRUCTION = 'touch the blue cube'   # an object of the sim's default layout (seed 0)

PARAMS: list[Param] = [
    Param('backend', 'local', 'Policy: local (neurovla VLA), scripted (colour segmentation '
          'baseline), neurovla-server (NeuroVLA/starVLA websocket server) or openpi',
          read_only=True, choices=BACKENDS),
    Param('instruction', DEFAULT_INSTRUCTION, 'Task instruction (also settable on '
          '/cortex/instruction); empty = wait for one'),
    Param('dry_run', False, 'Plan on the camera images and report in /diagnostics (plans, '
          'latency, the goal it would send) but publish no goals: nothing on /cortex/goal_pose, '
          '/cortex/joint_goal or the gripper command'),
    Param('checkpoint', '', 'local: checkpoint directory (from_pretrained, local files only); '
          'empty = the packaged one', read_only=True),
    # timing
    Param('plan_rate_hz', 10.0, 'Planning (inference) rate of the worker thread [Hz]', 0.5, 30.0,
          read_only=True),
    Param('goal_rate_hz', 10.0, 'Goal publishing rate [Hz]; the last safe goal is re-published '
          'while a new plan is computed', 1.0, 50.0, read_only=True),
    Param('diagnostics_rate_hz', 1.0, '/diagnostics rate [Hz]', 0.1, 10.0, read_only=True),
    Param('image_timeout_s', 1.0, 'A camera image older than this [s] is stale: no planning, '
          'the last goal holds', 0.05, 30.0),
    Param('joints_timeout_s', 0.5, 'Joint states older than this [s] are stale', 0.01, 30.0),
    Param('torch_threads', 1, 'torch threads for inference (keep the 1 kHz loops fed)', 1, 8,
          read_only=True),
    # goals
    Param('clearance', 0.01, 'Gripper target height above the named object\'s top [m]',
          0.0, 0.2),
    Param('approach_height', 0.08, 'Hover this high above the final goal [m] until within '
          'xy_tolerance of it, then descend; 0 = go straight', 0.0, 0.3),
    Param('descent_time', 1.5, 'Duration [s] of the smooth (cosine) descent from the hover '
          'height to the final goal; 0 = a step', 0.0, 10.0),
    Param('xy_tolerance', 0.02, 'Horizontal distance [m] under which the final descent starts',
          0.002, 0.2),
    Param('jump_tolerance', 0.05, 'A new target further than this [m] from the current one '
          'needs confirm_plans agreeing plans', 0.005, 1.0),
    Param('confirm_plans', 3, 'Consecutive agreeing plans needed to move to a distant target',
          1, 50),
    Param('smoothing', 5, 'Target = median of this many latest accepted plans', 1, 50),
    Param('deadband', 0.003, 'Target changes smaller than this [m] are ignored', 0.0, 0.05),
    Param('min_confidence', 0.2, 'Plans less confident than this are ignored (0..1)', 0.0, 1.0),
    Param('gripper_opening', robot.load().gripper_open,
          'Finger opening [m] sent with goals (open); at most the URDF finger range', 0.0,
          robot.load().gripper_open),
    Param('workspace_min', [0.2, -0.45, 0.02], 'Goal position lower bounds x y z [m] '
          '(base_link); goals are clamped'),
    Param('workspace_max', [0.8, 0.45, 0.5], 'Goal position upper bounds x y z [m]'),
    Param('camera_frame', '', 'URDF frame of the camera; empty = camera_info header frame_id '
          '(default scene_camera_optical_frame)', read_only=True),
    # remote policy servers
    Param('server_uri', 'ws://127.0.0.1:10093', 'Remote backends: websocket URI of the policy '
          'server', read_only=True),
    Param('statistics_file', '', 'Remote backends: the checkpoint\'s dataset statistics JSON '
          '(action q01/q99[/mask]); empty = actions used as they come', read_only=True),
    Param('statistics_key', '', 'Dataset name inside the statistics file; empty = the only one',
          read_only=True),
    Param('openpi_layout', 'libero', 'openpi observation/action layout of the published '
          'policies: libero (scene + wrist image 224x224, 8-value state; ee deltas + gripper) or '
          'droid (exterior + wrist image, 7 joint positions, gripper position; joint '
          'velocities + gripper); both need the sim\'s wrist_camera_enabled', read_only=True,
          choices=('libero', 'droid')),
    Param('openpi_action_space', 'layout', 'openpi actions: the layout\'s own, or end-effector '
          'deltas [dpos, drot, gripper], absolute joint positions or joint velocities in '
          'DROID\'s normalised units (0.2 rad per step at 1; both published on '
          '/cortex/joint_goal)', read_only=True,
          choices=('layout', 'ee_delta', 'joint_position', 'joint_velocity')),
    Param('action_dt', 0.1, 'Remote: time between a chunk\'s steps [s] (chunks are aged by '
          'time when ensembled; openpi joint_position: the trajectory\'s spacing)', 0.005, 2.0,
          read_only=True),
    Param('translation_scale', 0.05, 'Remote ee deltas: metres per unnormalised action unit '
          '(LIBERO OSC: 0.05)', 0.0, 1.0, read_only=True),
    Param('rotation_scale', 0.5, 'Remote ee deltas: radians per unnormalised rotation unit '
          '(LIBERO OSC: 0.5)', 0.0, 3.2, read_only=True),
    Param('ensemble_horizon', 3, 'Remote: overlapping chunks averaged per step', 1, 16,
          read_only=True),
    Param('gripper_convention', 'backend', 'Remote: the gripper action\'s sign: backend = the '
          'backend\'s own (neurovla-server: above 0.5 opens, NeuroVLA checkpoints use 1 = open; '
          'openpi libero: above 0 closes, LIBERO\'s -1 open / +1 close; openpi droid: above 0.5 '
          'closes, DROID\'s gripper position), or high_closes / high_opens (the threshold stays '
          'the backend\'s)', read_only=True, choices=('backend', 'high_closes', 'high_opens')),
    Param('connect_timeout_s', 2.0, 'Remote: connect + metadata timeout [s]', 0.05, 30.0,
          read_only=True),
    Param('reply_timeout_s', 1.0, 'Remote: reply timeout [s]; later = error, reconnect with '
          'backoff', 0.01, 30.0, read_only=True),
    Param('max_reply_bytes', 16_000_000, 'Remote: largest reply frame accepted [bytes]; a '
          'larger one closes the connection (1009) and is an error', 1024, 1_000_000_000,
          read_only=True),
    Param('max_array_elements', 1_000_000, 'Remote: largest array accepted in a reply '
          '(elements per field); a larger one is an error', 16, 100_000_000, read_only=True),
    Param('backoff_initial_s', 0.25, 'Remote: wait before the first reconnect after a failure '
          '[s]; doubled after each further failure', 0.01, 30.0, read_only=True),
    Param('backoff_max_s', 1.0, 'Remote: longest wait between reconnects [s] (bounds the time '
          'from a server\'s return to the next goal)', 0.01, 60.0, read_only=True),
    # below every control loop (they always preempt it), above the camera and everything else
    # on the normal scheduler, which would otherwise take the CPU the loops leave
    realtime_priority(20),
]


def core_settings(p) -> dict:
    """The planner's run-time settings (``core.Cortex.configure``) from the parameters."""
    return dict(image_timeout=p.image_timeout_s, joints_timeout=p.joints_timeout_s,
                clearance=p.clearance, approach_height=p.approach_height,
                xy_tolerance=p.xy_tolerance, jump_tolerance=p.jump_tolerance,
                descent_time=p.descent_time, confirm=p.confirm_plans,
                min_confidence=p.min_confidence, smoothing=p.smoothing, deadband=p.deadband,
                gripper_opening=p.gripper_opening,
                workspace=list(zip(p.workspace_min, p.workspace_max)))
