"""Goal shaping: sparse, noisy joint goals to a smooth, jerk-limited joint reference. ROS-free.

Two stages, both vectorised over the joints:

1. :class:`GoalFilter` - an alpha-beta tracker over the goal stream (a VLA at ~10 Hz jitters:
   "intention tremor"). It estimates where the goal is and how fast it moves, and between
   goals extrapolates for at most ``horizon`` [s]; a goal far from the prediction (a new
   task, not jitter) restarts it. Dense goal trajectories (action chunks) are sampled
   instead (:class:`GoalTrajectory`), teleop twists integrated (``Shaper.servo``).
2. :class:`JerkLimitedTracker` - a cascade velocity <- position, acceleration <- velocity,
   jerk <- acceleration with proportional gains placing a triple pole at ``-bandwidth``
   and clamps at every stage (URDF velocity and position limits, acceleration and jerk
   limits), plus the goal velocity as feed-forward. Its output never exceeds the limits
   and stays smooth (bounded jerk) whatever the goal stream does.
"""
from __future__ import annotations

import math

import numpy as np

from .filters import clip


class GoalFilter:
    """Alpha-beta estimate of a sparse noisy goal stream.

    alpha, beta: position and velocity gains per goal; ``restart`` [rad]: a goal further than
    this from the prediction starts a new motion; ``horizon`` [s]: extrapolation limit after
    the last goal; ``timeout`` [s]: after this without goals the velocity estimate is dropped.
    """

    def __init__(self, n: int, alpha: float = 0.4, beta: float = 0.1, restart: float = 0.3,
                 horizon: float = 0.2, timeout: float = 0.5):
        self.alpha, self.beta, self.restart = alpha, beta, restart
        self.horizon, self.timeout = horizon, timeout
        self.p = np.zeros(n)
        self.v = np.zeros(n)
        self.t = -math.inf
        self.active = False

    def reset(self, q) -> None:
        self.p[:] = q
        self.v[:] = 0.0
        self.t = -math.inf
        self.active = False

    def add(self, t: float, goal) -> None:
        """A goal (joint positions [rad]) received at time ``t`` [s]."""
        dt = t - self.t
        if not self.active or dt > self.timeout:  # first goal, or after a pause: start there
            self.p[:] = goal
            self.v[:] = 0.0
            self.t, self.active = t, True
            return
        dt = max(dt, 1e-3)
        pred = self.p + self.v * dt
        r = goal - pred
        if float(np.max(np.abs(r))) > self.restart:  # a new motion, not jitter
            self.p[:] = goal
            self.v[:] = 0.0
        else:
            self.p[:] = pred + self.alpha * r
            self.v += (self.beta / dt) * r
        self.t = t

    def sample(self, t: float, out_p: np.ndarray, out_v: np.ndarray) -> None:
        """Goal position and velocity at time ``t`` (extrapolated, bounded)."""
        age = t - self.t
        if not self.active or age > self.timeout:
            out_p[:] = self.p + self.v * self.horizon if self.active else self.p
            out_v[:] = 0.0
            return
        h = min(max(age, 0.0), self.horizon)
        np.multiply(self.v, h, out=out_p)
        out_p += self.p
        if age < self.horizon:
            out_v[:] = self.v
        else:
            out_v[:] = 0.0


class GoalTrajectory:
    """A joint trajectory (times [s] from ``t0``, positions, optional velocities), sampled."""

    def __init__(self, t0: float, times, positions, velocities=None):
        self.t0 = t0
        self.times = np.asarray(times, float)
        self.pos = np.asarray(positions, float)
        if velocities is None:
            self.vel = np.gradient(self.pos, self.times, axis=0) if len(self.times) > 1 \
                else np.zeros_like(self.pos)
            if len(self.times) > 1:
                self.vel[-1] = 0.0
        else:
            self.vel = np.asarray(velocities, float)

    @property
    def end(self) -> float:
        return self.t0 + float(self.times[-1])

    def sample(self, t: float, out_p: np.ndarray, out_v: np.ndarray) -> None:
        s = t - self.t0
        ts = self.times
        if s <= ts[0]:
            out_p[:] = self.pos[0]
            out_v[:] = 0.0 if s < ts[0] else self.vel[0]
            return
        if s >= ts[-1]:
            out_p[:] = self.pos[-1]
            out_v[:] = 0.0
            return
        i = int(np.searchsorted(ts, s)) - 1
        h = ts[i + 1] - ts[i]
        u = (s - ts[i]) / h
        # cubic Hermite between the points: continuous position and velocity
        p0, p1, v0, v1 = self.pos[i], self.pos[i + 1], self.vel[i] * h, self.vel[i + 1] * h
        u2, u3 = u * u, u * u * u
        out_p[:] = ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * v0
                    + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * v1)
        out_v[:] = ((6 * u2 - 6 * u) * p0 + (3 * u2 - 4 * u + 1) * v0
                    + (-6 * u2 + 6 * u) * p1 + (3 * u2 - 2 * u) * v1) / h


class JerkLimitedTracker:
    """Third-order reference generator with velocity, acceleration and jerk limits.

    bandwidth [rad/s]: the triple pole of the linear (unsaturated) closed loop;
    velocity [rad/s], acceleration [rad/s^2], jerk [rad/s^3]: limits (arrays per joint);
    lower, upper [rad]: position limits.
    """

    def __init__(self, lower, upper, velocity, acceleration, jerk, bandwidth: float = 10.0):
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        n = len(self.lower)
        self.vmax = np.broadcast_to(np.asarray(velocity, float), (n,)).copy()
        self.amax = np.broadcast_to(np.asarray(acceleration, float), (n,)).copy()
        self.jmax = np.broadcast_to(np.asarray(jerk, float), (n,)).copy()
        self._nv, self._na, self._nj = -self.vmax, -self.amax, -self.jmax
        self.set_bandwidth(bandwidth)
        self.x = np.zeros(n)
        self.v = np.zeros(n)
        self.a = np.zeros(n)
        self.j = np.zeros(n)
        self._tmp = np.zeros(n)

    def set_bandwidth(self, p: float) -> None:
        if p <= 0:
            raise ValueError(f'bandwidth must be > 0 rad/s, got {p}')
        self.kx, self.kv, self.ka = p / 3.0, p, 3.0 * p

    @staticmethod
    def _limit(x: np.ndarray, lim: np.ndarray) -> None:
        """Scale the whole vector so that every |x_i| <= lim_i: the joints stay synchronised
        (a limited motion keeps its direction in joint space, so the tool keeps its path)."""
        r = float(np.max(np.abs(x) / lim))
        if r > 1.0:
            x *= 1.0 / r

    def reset(self, q) -> None:
        self.x[:] = np.clip(q, self.lower, self.upper)
        self.v[:] = 0.0
        self.a[:] = 0.0
        self.j[:] = 0.0

    def step(self, dt: float, goal, goal_v=None, hold: bool = False) -> None:
        """Advance by ``dt`` [s] towards ``goal`` (velocity feed-forward ``goal_v``).

        hold: ignore the goal and come to a smooth stop where the motion ends.
        """
        t = self._tmp
        if hold:
            t.fill(0.0)
        else:
            np.subtract(goal, self.x, out=t)
            t *= self.kx
            if goal_v is not None:
                t += goal_v
            self._limit(t, self.vmax)                          # desired velocity
        t -= self.v
        t *= self.kv
        self._limit(t, self.amax)                              # desired acceleration
        t -= self.a
        t *= self.ka
        self._limit(t, self.jmax)                              # jerk
        j = self.j
        j[:] = t
        # integrate (exact for piecewise-constant jerk), then enforce the limits
        x, v, a = self.x, self.v, self.a
        np.multiply(j, dt / 6.0, out=t)
        t += 0.5 * a
        t *= dt
        t += v
        t *= dt
        x += t
        np.multiply(j, 0.5 * dt, out=t)
        t += a
        t *= dt
        v += t
        np.multiply(j, dt, out=t)
        a += t
        clip(a, self._na, self.amax, a)
        clip(v, self._nv, self.vmax, v)
        # position limits: stop at the bound
        if np.any(x < self.lower) or np.any(x > self.upper):
            out = (x < self.lower) | (x > self.upper)
            clip(x, self.lower, self.upper, x)
            v[out] = 0.0
            a[out] = 0.0
