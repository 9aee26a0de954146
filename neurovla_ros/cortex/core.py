"""The cortex's planning loop, ROS-free: latest inputs in, a safe goal out, inference off-thread.

:class:`Cortex` keeps the newest camera image, instruction and joint state (set from ROS
callbacks, cheap), runs the backend in its own worker thread at ``rate_hz`` and keeps the last
safe goal; the node's timer publishes :meth:`Cortex.goal` whether or not a new plan is being
computed, so a slow model never blocks a callback and the previous goal stands meanwhile.

Safety, as status rather than exceptions: a stale image or joint state, no instruction, a
backend error (remote server down, timeout, malformed reply) or an implausible plan leave the
last safe goal in place (or no goal at all if none was ever safe) and set a warning/error with a
human-readable message. Goals are clamped to the table workspace; joint trajectories to the
URDF limits.

Object-pointing backends (local, scripted) name an object centre; the goal above it is the
gripper target ``clearance`` above the object's top, reached from ``approach_height`` above
(hover first, then descend once within ``xy_tolerance``), so the fingers never sweep low
across the table. The descent is a smooth (cosine) ramp over ``descent_time`` that ends at rest:
a goal that jumps 8 cm down makes the goal tracker below overshoot into the object or the table
(contact -> spinal reflex -> withdrawal). While descending, the target is locked: the gripper
now hides the object from the camera, so small plan changes are occlusion noise, not a moving
object (only a confirmed distant target moves it). A new centre far from the current one is
only adopted once ``confirm`` consecutive plans agree (one bad frame, e.g. the gripper hiding
the object, cannot move the goal). Accepted centres are smoothed (median of the last
``smoothing``) with a small deadband, so frame-to-frame jitter of the pointer does not shake
the arm at the goal.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .. import robot
from ..common import realtime
from ..common.limits import JointLimits

OK, WARN, ERROR = 0, 1, 2
# the arm's links as capsules between link frames (URDF radii + margin) [m]: a plan whose camera
# ray passes through one of them points at the robot itself (grey/blue cylinders!)
ARM_CAPSULES = (('base_link', 'shoulder_link', 0.075), ('shoulder_link', 'upper_arm_link', 0.06),
                ('upper_arm_link', 'forearm_link', 0.054), ('forearm_link', 'wrist_1_link', 0.045),
                ('wrist_1_link', 'wrist_2_link', 0.04), ('wrist_2_link', 'wrist_3_link', 0.04),
                ('wrist_3_link', 'tool0', 0.04))


def segment_distance(p0, p1, q0, q1) -> float:
    """Shortest distance between the segments p0-p1 and q0-q1."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e, f = d1 @ d1, d2 @ d2, d2 @ r
    c, b = d1 @ r, d1 @ d2
    denom = a * e - b * b
    s = np.clip((b * f - c * e) / denom, 0.0, 1.0) if denom > 1e-12 else 0.0
    t = (b * s + f) / e if e > 1e-12 else 0.0
    if t < 0.0 or t > 1.0:
        t = np.clip(t, 0.0, 1.0)
        s = np.clip((b * t - c) / a, 0.0, 1.0) if a > 1e-12 else 0.0
    return float(np.linalg.norm((p0 + s * d1) - (q0 + t * d2)))


def ray_hits_arm(model, q, origin, point, margin: float = 0.01) -> bool:
    """Whether the sight line from the camera ``origin`` to ``point`` passes through an arm
    link (``ARM_CAPSULES``) at joint angles ``q``."""
    frames = {}
    for a, b, _ in ARM_CAPSULES:
        for f in (a, b):
            if f not in frames:
                frames[f] = model.fk(q, tip=f)[:3, 3]
    o, p = np.asarray(origin, float), np.asarray(point, float)
    return any(segment_distance(o, p, frames[a], frames[b]) < r + margin
               for a, b, r in ARM_CAPSULES)


@dataclass
class Observation:
    """A snapshot of the inputs a backend plans from."""
    instruction: str
    image: np.ndarray | None = None     # HxWx3 uint8 RGB
    image_age: float = np.inf           # [s]
    camera: object | None = None        # camera.Camera of the image
    q: np.ndarray | None = None         # arm joints [rad]
    fingers: np.ndarray | None = None   # left, right finger [m]
    joints_age: float = np.inf          # [s]
    tcp: np.ndarray | None = None       # 4x4 tcp pose in base_link
    instruction_id: int = 0
    wrist_image: np.ndarray | None = None   # HxWx3 uint8 RGB of the wrist camera
    wrist_image_age: float = np.inf     # [s]


@dataclass
class Plan:
    """What a backend decided. ``centre``: an object centre to go to (pointing backends);
    ``position``/``rotation``: a tcp pose goal (remote backends); ``trajectory``: joint-space
    points ``[(t_from_now [s], q[6]), ...]``; ``gripper``: finger opening [m]."""
    centre: np.ndarray | None = None
    top: float | None = None            # object top height [m] (centre plans)
    position: np.ndarray | None = None
    rotation: np.ndarray | None = None
    trajectory: list | None = None
    gripper: float | None = None
    confidence: float = 1.0
    note: str = ''


@dataclass
class Goal:
    """The goal the node publishes: tcp pose in base_link, finger opening, joint trajectory."""
    position: np.ndarray
    rotation: np.ndarray
    gripper: float | None
    trajectory: list | None
    stage: str                          # approach | final | pose | joints
    plan_id: int


@dataclass
class Status:
    level: int = WARN
    message: str = 'starting'
    values: dict = field(default_factory=dict)


class PlanError(Exception):
    """A backend could not plan this time (the message goes to diagnostics)."""


def workspace_array(workspace) -> np.ndarray:
    """((lo, hi) for x, y, z) [m] as a 3 x 2 array; ValueError unless finite with lo < hi."""
    ws = np.asarray(workspace, float)
    if ws.shape != (3, 2) or not np.all(np.isfinite(ws)) or np.any(ws[:, 0] >= ws[:, 1]):
        raise ValueError(f'workspace: need finite bounds with min < max for x, y, z, got '
                         f'{ws.T.tolist()}')
    return ws


class Cortex:
    """Worker-thread planner with goal gating and safety clamps (see module docstring)."""

    def __init__(self, backend, *, rate_hz: float = 10.0, image_timeout: float = 1.0,
                 joints_timeout: float = 0.5, clearance: float = 0.01,
                 approach_height: float = 0.08, xy_tolerance: float = 0.02,
                 descent_time: float = 1.5,
                 jump_tolerance: float = 0.05, confirm: int = 3, min_confidence: float = 0.2,
                 smoothing: int = 5, deadband: float = 0.003, gripper_opening: float | None = None,
                 workspace=((0.2, 0.8), (-0.45, 0.45), (0.02, 0.5)), clock=time.monotonic,
                 model: robot.RobotModel | None = None):
        self.backend = backend
        self.period = 1.0 / rate_hz
        self.image_timeout, self.joints_timeout = image_timeout, joints_timeout
        self.clearance, self.approach_height = clearance, approach_height
        self.xy_tolerance, self.jump_tolerance = xy_tolerance, jump_tolerance
        self.descent_time = descent_time
        self._descent_t0 = None
        self.confirm, self.min_confidence = confirm, min_confidence
        self.smoothing, self.deadband = smoothing, deadband
        self._recent: deque = deque(maxlen=max(1, smoothing))   # accepted centres
        self.workspace = workspace_array(workspace)
        self.clock = clock
        self.model = model or robot.load()
        self.gripper_opening = (self.model.gripper_open if gripper_opening is None
                                else gripper_opening)
        self.limits = JointLimits(self.model)
        self.home_rotation = self.model.fk(self.model.home_pose())[:3, :3]
        self._lock = threading.Lock()
        self._instruction, self._instruction_id = '', 0
        self._image = self._camera = None
        self._image_t = -np.inf
        self._wrist_image, self._wrist_t = None, -np.inf
        self._q = self._fingers = None
        self._joints_t = -np.inf
        # optional callable -> (q, fingers, monotonic stamp) or None: joint states are read
        # when needed (the node keeps only the newest 1 kHz message, parsing it here)
        self.joints_provider = None
        self._plan: Plan | None = None      # the adopted (safe) plan
        self._plan_id = 0
        self._candidate: list = []          # disagreeing centres waiting for confirmation
        self._descending = False
        self.task, self.goal_distance = 'idle', float('nan')   # progress, for diagnostics
        self._reached_since = None
        self.latencies: deque = deque(maxlen=500)     # wall-clock [s] per plan
        self.cpu_times: deque = deque(maxlen=500)     # this thread's CPU time [s] per plan
        self.plans = self.errors = self.rejected = 0
        self.last_error = ''
        self._status = Status(WARN, 'no instruction yet')
        self._thread = None
        self._stop = threading.Event()

    SETTINGS = ('image_timeout', 'joints_timeout', 'clearance', 'approach_height',
                'xy_tolerance', 'jump_tolerance', 'descent_time', 'confirm', 'min_confidence',
                'smoothing', 'deadband', 'gripper_opening', 'workspace')

    def configure(self, **settings) -> None:
        """Change any of :attr:`SETTINGS` at run time; the next plan uses them (a plan being
        computed finishes with the old ones). ``workspace``: ((lo, hi) x, y, z) [m]."""
        unknown = sorted(set(settings) - set(self.SETTINGS))
        if unknown:
            raise ValueError(f'not settable at run time: {unknown}')
        if 'workspace' in settings:
            settings['workspace'] = workspace_array(settings['workspace'])
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, value)
            if 'smoothing' in settings:
                self._recent = deque(self._recent, maxlen=max(1, int(settings['smoothing'])))
        if 'gripper_opening' in settings and hasattr(self.backend, 'gripper_opening'):
            self.backend.gripper_opening = settings['gripper_opening']

    # ---- inputs (called from ROS callbacks: cheap, no inference here) ----
    def set_instruction(self, text: str) -> None:
        text = str(text).strip()
        with self._lock:
            if text == self._instruction:
                return
            self._instruction = text
            self._instruction_id += 1
            self._plan, self._candidate, self._descending = None, [], False
            self._recent.clear()
            self.task, self._reached_since = 'idle', None
        reset = getattr(self.backend, 'reset', None)
        if reset:
            reset()

    @property
    def instruction(self) -> str:
        return self._instruction

    def set_image(self, image: np.ndarray, camera=None) -> None:
        with self._lock:
            self._image, self._image_t = image, self.clock()
            if camera is not None:
                self._camera = camera

    def set_wrist_image(self, image: np.ndarray) -> None:
        with self._lock:
            self._wrist_image, self._wrist_t = image, self.clock()

    def set_camera(self, camera) -> None:
        with self._lock:
            self._camera = camera

    def set_joints(self, q, fingers, stamp: float | None = None) -> None:
        with self._lock:
            self._q, self._fingers = np.asarray(q, float), np.asarray(fingers, float)
            self._joints_t = self.clock() if stamp is None else stamp

    def _pull_joints(self) -> None:
        if self.joints_provider is not None:
            got = self.joints_provider()
            if got is not None:
                self.set_joints(*got)

    # ---- planning ----
    def observation(self) -> Observation:
        self._pull_joints()
        now = self.clock()
        with self._lock:
            obs = Observation(self._instruction, self._image, now - self._image_t, self._camera,
                              self._q, self._fingers, now - self._joints_t,
                              instruction_id=self._instruction_id,
                              wrist_image=self._wrist_image,
                              wrist_image_age=now - self._wrist_t)
        if obs.q is not None:
            obs.tcp = self.model.fk(obs.q)
        return obs

    def step(self) -> Status:
        """One planning cycle (the worker thread calls this at ``rate_hz``)."""
        obs = self.observation()
        problem = self._input_problem(obs)
        if problem:
            return self._set_status(WARN, problem)
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            plan = self.backend.plan(obs)
        except PlanError as e:
            return self._failed(str(e))
        except Exception as e:  # noqa: BLE001 - a backend bug must not kill the cortex
            return self._failed(f'{type(e).__name__}: {e}')
        # latency of completed plans only: a failure (e.g. inside a reconnect back-off) takes
        # no time and would pull the figures down; failures are counted in ``errors``
        self.latencies.append(time.perf_counter() - t0)
        self.cpu_times.append(time.thread_time() - c0)
        self.plans += 1
        with self._lock:
            if obs.instruction_id != self._instruction_id:
                return self._status   # the instruction changed while planning: drop the plan
            note = self._adopt(plan, obs)
        # over the object the gripper hides it: a plan held back then is part of the task
        level = OK if note.startswith('ok') or self.task == 'reached' else WARN
        return self._set_status(level, note)

    def _input_problem(self, obs: Observation) -> str:
        if not obs.instruction:
            return 'no instruction (publish one on /cortex/instruction)'
        if getattr(self.backend, 'needs_image', True):
            if obs.image is None:
                return 'waiting for a camera image'
            if obs.image_age > self.image_timeout:
                return f'camera image stale ({obs.image_age:.1f} s old): holding the last goal'
            if obs.camera is None:
                return 'waiting for camera_info'
        if getattr(self.backend, 'needs_wrist_image', False):
            if obs.wrist_image is None:
                return ('waiting for a wrist camera image (wrist_camera/image_raw: the sim '
                        'renders it with wrist_camera_enabled)')
            if obs.wrist_image_age > self.image_timeout:
                return (f'wrist camera image stale ({obs.wrist_image_age:.1f} s old): holding '
                        f'the last goal')
        if getattr(self.backend, 'needs_joints', True):
            if obs.q is None:
                return 'waiting for /joint_states'
            if obs.joints_age > self.joints_timeout:
                return f'joint states stale ({obs.joints_age:.1f} s old): holding the last goal'
        return ''

    def _failed(self, message: str) -> Status:
        self.errors += 1
        self.last_error = message
        held = 'holding the last goal' if self._plan is not None else 'no goal yet'
        return self._set_status(ERROR, f'{self.backend.name}: {message} ({held})')

    def _adopt(self, plan: Plan, obs: Observation) -> str:
        """Gate and clamp a plan; returns a note starting with 'ok' when adopted."""
        if plan.trajectory is not None:
            if obs.q is None:
                return 'joint trajectory without a joint state: ignored'
            plan.trajectory = self._safe_trajectory(plan.trajectory, obs.q)
            return self._accept(plan, 'ok: joint trajectory')
        if plan.centre is not None:
            c = np.asarray(plan.centre, float)
            if c.shape != (3,) or not np.all(np.isfinite(c)):
                self.rejected += 1
                return f'rejected a non-finite target from {self.backend.name}'
            if plan.confidence < self.min_confidence:
                self.rejected += 1
                return (f'target not found with confidence ({plan.confidence:.2f} < '
                        f'{self.min_confidence}): {plan.note}; holding the last goal')
            if obs.q is not None and obs.camera is not None and \
                    ray_hits_arm(self.model, obs.q, obs.camera.pose[:3, 3], c):
                self.rejected += 1
                return 'the plan points at the arm itself: ignored, holding the last goal'
            cur = self._plan
            if cur is None or cur.centre is None or \
                    np.linalg.norm(c[:2] - cur.centre[:2]) <= self.jump_tolerance:
                self._candidate = []
                if self._descending and cur is not None and cur.centre is not None:
                    return 'ok: target locked while descending (the gripper hides the object)'
                return self._smoothed(plan, c, 'ok')
            self._candidate = [p for p in self._candidate
                               if np.linalg.norm(p.centre[:2] - c[:2]) <= self.jump_tolerance]
            self._candidate.append(plan)
            if len(self._candidate) >= self.confirm:
                self._candidate, self._descending = [], False
                self._recent.clear()
                return self._smoothed(plan, c, 'ok: target moved (confirmed)')
            self.rejected += 1
            return (f'plan {np.linalg.norm(c[:2] - cur.centre[:2]) * 100:.0f} cm away from the '
                    f'current target: waiting for confirmation, holding the last goal')
        if plan.position is not None:
            p = np.asarray(plan.position, float)
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                self.rejected += 1
                return f'rejected a non-finite pose from {self.backend.name}'
            return self._accept(plan, 'ok')
        return f'{self.backend.name} returned no goal ({plan.note or "no reason given"})'

    def _smoothed(self, plan: Plan, centre: np.ndarray, note: str) -> str:
        """Adopt the median of the last ``smoothing`` accepted centres (frame-to-frame jitter,
        e.g. from the gripper hiding part of the object, must not shake the arm); changes below
        ``deadband`` [m] keep the current goal."""
        self._recent.append(centre)
        med = np.median(np.asarray(self._recent), axis=0)
        cur = self._plan
        if cur is not None and cur.centre is not None and \
                np.linalg.norm(med - cur.centre) < self.deadband:
            return note + ' (unchanged)'
        plan.centre = med
        return self._accept(plan, note)

    def _accept(self, plan: Plan, note: str) -> str:
        self._plan = plan
        self._plan_id += 1
        return note + (f' ({plan.note})' if plan.note else '')

    def _safe_trajectory(self, points, q_now) -> list:
        """Points clamped to the URDF range and to what the velocity limits allow in time."""
        out, prev, t_prev = [], np.asarray(q_now, float), 0.0
        for t, q in points:
            q = self.limits.clamp_step(np.asarray(q, float), prev, max(t - t_prev, 1e-3))
            out.append((float(t), q))
            prev, t_prev = q, t
        return out

    def _set_status(self, level: int, message: str) -> Status:
        self._status = Status(level, message)
        return self._status

    # ---- the goal (called by the node's timer; also uses the newest joint state) ----
    def goal(self) -> Goal | None:
        self._pull_joints()
        with self._lock:
            plan, plan_id, q = self._plan, self._plan_id, self._q
        if plan is None:
            return None
        grip = plan.gripper if plan.gripper is not None else self.gripper_opening
        if plan.trajectory is not None:
            return Goal(self.model.fk(plan.trajectory[-1][1])[:3, 3], self.home_rotation, grip,
                        plan.trajectory, 'joints', plan_id)
        if plan.centre is not None:
            top = plan.top if plan.top is not None else 2.0 * plan.centre[2]
            final = np.array([plan.centre[0], plan.centre[1], top + self.clearance])
            stage = 'final'
            if self.approach_height > 0 and q is not None:
                tcp = self.model.fk(q)[:3, 3]
                dxy = float(np.linalg.norm(tcp[:2] - final[:2]))
                if self._descending and dxy > 2 * self.xy_tolerance:
                    self._descending = False
                elif not self._descending and dxy <= self.xy_tolerance:
                    self._descending, self._descent_t0 = True, self.clock()
                if not self._descending:
                    final[2] += self.approach_height
                    stage = 'approach'
                elif self.descent_time > 0:
                    s = (self.clock() - self._descent_t0) / self.descent_time
                    if s < 1.0:    # cosine ramp: starts and ends at rest
                        final[2] += self.approach_height * 0.5 * (1.0 + np.cos(np.pi * s))
            goal = self._clamp(final)
            self._progress(goal, stage, q)
            return Goal(goal, self.home_rotation, grip, None, stage, plan_id)
        rot = plan.rotation if plan.rotation is not None else self.home_rotation
        return Goal(self._clamp(plan.position), rot, grip, None, 'pose', plan_id)

    def _progress(self, goal, stage: str, q) -> None:
        """Task state for diagnostics: approach, descending, reached (tcp within 1.5 cm of the
        final goal for 0.5 s)."""
        if q is None:
            self.task = stage
            return
        self.goal_distance = float(np.linalg.norm(self.model.fk(q)[:3, 3] - goal))
        if stage == 'final' and self.goal_distance < 0.015:
            now = self.clock()
            self._reached_since = self._reached_since or now
            self.task = 'reached' if now - self._reached_since >= 0.5 else 'descending'
        else:
            self._reached_since = None
            self.task = 'descending' if stage == 'final' else stage

    def _clamp(self, p) -> np.ndarray:
        return np.clip(np.asarray(p, float), self.workspace[:, 0], self.workspace[:, 1])

    # ---- status ----
    def status(self) -> Status:
        s = self._status
        if s.level == OK and self.task == 'reached' and self._plan is not None:
            s = Status(OK, f'reached the goal for {self._instruction!r}')
        lat = np.asarray(self.latencies) * 1e3
        values = {'backend': self.backend.name, 'instruction': self._instruction,
                  'plans': self.plans, 'errors': self.errors, 'rejected': self.rejected,
                  'last_error': self.last_error,
                  'infer_ms_last': float(lat[-1]) if lat.size else float('nan'),
                  'infer_ms_p50': float(np.median(lat)) if lat.size else float('nan'),
                  'infer_ms_p99': float(np.percentile(lat, 99)) if lat.size else float('nan'),
                  'infer_cpu_ms_p50': (float(np.median(self.cpu_times)) * 1e3 if self.cpu_times
                                       else float('nan')),
                  'has_goal': self._plan is not None,
                  'task': self.task if self._plan is not None else 'planning',
                  'goal_distance_m': self.goal_distance}
        extra = getattr(self.backend, 'diagnostics', None)
        if extra:
            values.update(extra())
        return Status(s.level, s.message, values)

    # ---- worker thread ----
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='cortex-inference',
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        realtime.adopt()    # the node's FIFO priority (a new thread starts without it)
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.step()
            next_t = max(next_t + self.period, time.monotonic())
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        close = getattr(self.backend, 'close', None)
        if close:
            close()
