"""Random joint-space reference motions for training and benchmarks. ROS-free.

A motion is a sequence of minimum-jerk moves between random waypoints around the home pose,
separated by rests. Waypoints stay inside the joint limits and keep the gripper above the table;
move durations keep the peak velocity under ``speed`` times the URDF velocity limit.

Every use draws its motions from a stream of its own (``motion_rng(stream, seed)``): the
training's episodes, its closed-loop check and the benchmarks never share a motion.
"""
from __future__ import annotations

import numpy as np

from .. import robot as robot_mod
from .reflex import min_jerk

# the motion streams: (stream, seed) -> an independent generator (numpy's spawn keys, never
# equal to a plain ``default_rng(seed)`` nor to another stream's, whatever the seeds)
STREAMS = ('train', 'train_check', 'bench', 'bench_live')

# excursion around home per arm joint [rad]
SPAN = np.array([0.7, 0.45, 0.5, 0.8, 0.9, 1.2])
MIN_TCP_HEIGHT = 0.1   # [m]


def motion_rng(stream: str, seed: int = 0) -> np.random.Generator:
    """The random generator of motion stream ``stream`` (one of ``STREAMS``) for ``seed``."""
    if stream not in STREAMS:
        raise ValueError(f'unknown motion stream {stream!r}; known: {STREAMS}')
    return np.random.default_rng(np.random.SeedSequence(
        int(seed), spawn_key=(0x6d6f74, STREAMS.index(stream))))


def waypoint(rng, model: robot_mod.RobotModel, center=None, span=SPAN, scale=1.0):
    """A random reachable joint position around ``center`` (default home)."""
    center = model.home_pose() if center is None else np.asarray(center, float)
    lim = model.limits()
    for _ in range(200):
        q = center + rng.uniform(-1, 1, 6) * span * scale
        q = np.clip(q, lim['lower'] + 0.1, lim['upper'] - 0.1)
        if (model.fk(q, 'tcp_link')[2, 3] > MIN_TCP_HEIGHT
                and model.fk(q, 'gripper_base_link')[2, 3] > MIN_TCP_HEIGHT + 0.05):
            return q
    return center.copy()


def random_motion(rng, duration: float, dt: float = 1e-3, model=None, speed: float = 0.8,
                  move_time=(0.35, 1.2), rest_time=(0.1, 0.8), rest_prob: float = 0.35,
                  start=None, scale: float = 1.0, waypoints: list | None = None):
    """Reference (T, 6) positions and velocities sampled every ``dt`` for ``duration`` [s].

    Starts at ``start`` (default home) at rest; moves of random duration, each followed by a
    rest with probability ``rest_prob``. ``waypoints``: a list that receives every random
    waypoint drawn (the ends of the moves).
    """
    model = model or robot_mod.load()
    vmax = model.limits()['velocity']
    n = int(round(duration / dt))
    q = np.zeros((n, 6))
    qd = np.zeros((n, 6))
    cur = model.home_pose() if start is None else np.asarray(start, float).copy()
    k = 0
    while k < n:
        if rng.random() < rest_prob:
            m = int(rng.uniform(*rest_time) / dt)
            q[k:k + m] = cur
            k += m
            continue
        nxt = waypoint(rng, model, scale=scale)
        if waypoints is not None:
            waypoints.append(nxt)
        delta = nxt - cur
        t_min = np.max(1.875 * np.abs(delta) / (speed * vmax))
        T = max(t_min, rng.uniform(*move_time))
        m = max(1, int(T / dt))
        for i in range(min(m, n - k)):
            s, ds = min_jerk((i + 1) / m)
            q[k + i] = cur + delta * s
            qd[k + i] = delta * ds / T
        k += m
        cur = nxt
    return q[:n], qd[:n]


def shared_waypoints(a, b, tol: float = 1e-9) -> int:
    """How many of the waypoints ``a`` (N, 6) are also among ``b`` (M, 6) (within ``tol`` on
    every joint [rad])."""
    a, b = np.asarray(a, float).reshape(-1, 6), np.asarray(b, float).reshape(-1, 6)
    if not len(a) or not len(b):
        return 0
    dist = np.max(np.abs(a[:, None, :] - b[None, :, :]), axis=2)
    return int(np.sum(np.min(dist, axis=1) <= tol))


def moving_mask(qd_ref, threshold: float = 0.05) -> np.ndarray:
    """Samples where any reference joint moves faster than ``threshold`` [rad/s]."""
    return np.max(np.abs(qd_ref), axis=1) > threshold
