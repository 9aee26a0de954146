"""Goal shaping: sparse, noisy joint goals to a smooth, jerk-limited joint reference. ROS-free.

Two stages over the joints:

1. :class:`GoalFilter` - an alpha-beta tracker over the goal stream (a VLA at ~10 Hz jitters:
   "intention tremor"). It estimates where the goal is and how fast it moves, and between
   goals extrapolates for at most ``horizon`` [s]; a goal far from the prediction (a new
   task, not jitter) restarts it. Dense goal trajectories (action chunks) are sampled
   instead (:class:`GoalTrajectory`); teleop twists are integrated by the core.
2. :class:`JerkLimitedTracker` - a cascade velocity <- position, acceleration <- velocity,
   jerk <- acceleration with proportional gains placing a triple pole at ``-bandwidth``
   and clamps at every stage (URDF velocity and position limits, acceleration and jerk
   limits), plus the goal velocity as feed-forward. Its output never exceeds the limits
   and stays smooth (bounded jerk) whatever the goal stream does.
"""
from __future__ import annotations

import math

import numpy as np

from .state import Shared


class GoalFilter(Shared):
    """Alpha-beta estimate of a sparse noisy goal stream.

    alpha, beta: position and velocity gains per goal; ``restart`` [rad]: a goal further than
    this from the prediction starts a new motion; ``horizon`` [s]: extrapolation limit after
    the last goal; ``timeout`` [s]: after this without goals the velocity estimate is dropped.
    """

    SLOTS = ('t', 'active:bool', 'horizon')

    def __init__(self, n: int, alpha: float = 0.4, beta: float = 0.1, restart: float = 0.3,
                 horizon: float = 0.2, timeout: float = 0.5):
        super().__init__()
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

    def sample(self, t: float, p: np.ndarray | None = None,
               v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Goal position and velocity at time ``t`` (extrapolated, bounded), written into
        ``p``, ``v`` (new arrays when None)."""
        p = np.empty_like(self.p) if p is None else p
        v = np.empty_like(self.v) if v is None else v
        if not self.active:
            p[:] = self.p
            v[:] = 0.0
            return p, v
        age = t - self.t
        h = min(max(age, 0.0), self.horizon)
        np.multiply(self.v, h, out=p)
        np.add(self.p, p, out=p)
        if 0.0 <= age < self.horizon:
            v[:] = self.v
        else:
            v[:] = 0.0
        return p, v


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

    def sample(self, t: float, p: np.ndarray, v: np.ndarray) -> None:
        """Position and velocity at time ``t``, written into ``p`` and ``v``."""
        s = t - self.t0
        ts = self.times
        if s <= ts[0]:
            p[:] = self.pos[0]
            v[:] = self.vel[0] if s == ts[0] else 0.0
            return
        if s >= ts[-1]:
            p[:] = self.pos[-1]
            v[:] = 0.0
            return
        i = int(np.searchsorted(ts, s)) - 1
        h = ts[i + 1] - ts[i]
        u = (s - ts[i]) / h
        # cubic Hermite between the points: continuous position and velocity
        p0, p1, v0, v1 = self.pos[i], self.pos[i + 1], self.vel[i] * h, self.vel[i + 1] * h
        u2, u3 = u * u, u * u * u
        p[:] = ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * v0
                + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * v1)
        v[:] = ((6 * u2 - 6 * u) * p0 + (3 * u2 - 4 * u + 1) * v0
                + (-6 * u2 + 6 * u) * p1 + (3 * u2 - 2 * u) * v1) / h


class JerkLimitedTracker(Shared):
    """Third-order reference generator with velocity, acceleration and jerk limits.

    bandwidth [rad/s]: the triple pole of the linear (unsaturated) closed loop;
    velocity [rad/s], acceleration [rad/s^2], jerk [rad/s^3]: limits (per joint);
    lower, upper [rad]: position limits. Every limit scales the whole joint vector, so a
    limited motion keeps its direction in joint space and the tool keeps its path.

    The state ``x``, ``v``, ``a``, ``j`` (arrays) is shared with the C tick, which does the
    same operations in the same order as :meth:`step`.
    """

    SLOTS = ('kx', 'kv', 'ka')

    def __init__(self, lower, upper, velocity, acceleration, jerk, bandwidth: float = 10.0):
        super().__init__()
        self.lower = np.array(lower, float)
        self.upper = np.array(upper, float)
        n = self.n = len(self.lower)

        def per_joint(v):
            return np.broadcast_to(np.asarray(v, float), (n,)).copy()
        self.vmax, self.amax, self.jmax = per_joint(velocity), per_joint(acceleration), \
            per_joint(jerk)
        self.set_bandwidth(bandwidth)
        self.x = np.zeros(n)
        self.v = np.zeros(n)
        self.a = np.zeros(n)
        self.j = np.zeros(n)

    def set_bandwidth(self, p: float) -> None:
        if p <= 0:
            raise ValueError(f'bandwidth must be > 0 rad/s, got {p}')
        self.kx, self.kv, self.ka = p / 3.0, p, 3.0 * p

    def reset(self, q) -> None:
        np.minimum(np.maximum(q, self.lower), self.upper, out=self.x)
        self.v[:] = 0.0
        self.a[:] = 0.0
        self.j[:] = 0.0

    @staticmethod
    def _limit(x: np.ndarray, lim: np.ndarray) -> np.ndarray:
        """Scale the whole vector so that every |x_i| <= lim_i."""
        r = float(np.max(np.abs(x) / lim))
        if r > 1.0:
            x *= 1.0 / r
        return x

    def step(self, dt: float, goal, goal_v=None, hold: bool = False) -> None:
        """Advance by ``dt`` [s] towards ``goal`` (velocity feed-forward ``goal_v``).

        hold: ignore the goal and come to a smooth stop where the motion ends.
        """
        x, v, a = self.x, self.v, self.a
        if hold:
            vd = np.zeros(self.n)
        else:
            # desired velocity: proportional to the error, but never faster than the joint can
            # still brake to the goal (time-optimal braking curve with half the acceleration
            # limit, leaving room for the jerk limit), plus the goal's own velocity; the whole
            # vector scaled down together
            e = np.subtract(goal, x)
            gv = np.zeros(self.n) if goal_v is None else np.asarray(goal_v, float)
            vd = self.kx * e + gv
            bound = np.minimum(np.sqrt(self.amax * np.abs(e)) + np.abs(gv), self.vmax)
            room = bound > 0.0
            if np.any(~room & (vd != 0.0)):
                vd[:] = 0.0
            elif room.any():
                r = float(np.max(np.abs(vd[room]) / bound[room]))
                if r > 1.0:
                    vd /= r
        # braking curves at the position limits (stop with the acceleration limit)
        hi = np.sqrt(2.0 * self.amax * np.maximum(self.upper - x, 0.0))
        lo = -np.sqrt(2.0 * self.amax * np.maximum(x - self.lower, 0.0))
        vd = np.minimum(np.maximum(vd, lo), hi)
        ad = self._limit(self.kv * (vd - v), self.amax)
        j = self._limit(self.ka * (ad - a), self.jmax)
        # braking: a joint whose velocity would overshoot its limit if it started reducing its
        # acceleration now (at the jerk limit) starts now
        v_stop = v + a * np.abs(a) / (2.0 * self.jmax) + a * dt
        j = np.where((a > 0.0) & (v_stop >= self.vmax), -self.jmax, j)
        j = np.where((a < 0.0) & (v_stop <= -self.vmax), self.jmax, j)
        self.j[:] = j
        # integrate with the trapezoidal rule, clamping each stage: the sampled reference
        # itself (its finite differences) then never exceeds a limit
        h = 0.5 * dt
        an = np.minimum(np.maximum(a + dt * j, -self.amax), self.amax)
        vn = np.minimum(np.maximum(v + h * (a + an), -self.vmax), self.vmax)
        xn = x + h * (v + vn)
        out = (xn < self.lower) | (xn > self.upper)   # position limit: stop at the bound
        if out.any():
            xn = np.minimum(np.maximum(xn, self.lower), self.upper)
            vn[out] = 0.0
            an[out] = 0.0
        x[:] = xn
        v[:] = vn
        a[:] = an

    def brake(self, dt: float, acceleration: float, jerk: float) -> None:
        """Stop as fast as ``acceleration`` [rad/s^2] and ``jerk`` [rad/s^3] allow and hold
        where the motion ends (a teleop halt: no goal to return to).

        Per joint, in the direction of its motion (speed u >= 0, acceleration b): the fastest
        stop decelerates at the limit and leaves it on the braking curve u = b^2 / (2 J), on
        which ramping the deceleration back to zero at the jerk limit ends exactly at u = 0.
        Each step picks the next acceleration that lands on that curve (the root of
        u + dt (b + b') / 2 = b'^2 / (2 J)), bounded by the acceleration limit and one step of
        jerk. Each joint's limits are scaled by its share of the fastest joint's speed, so the
        joints run scaled copies of one profile: they stop together and the joint-space
        direction, hence the tool's path, is kept.
        """
        x, v, a = self.x, self.v, self.a
        vpeak = max([abs(vi) for vi in v])
        h = 0.5 * dt
        for i in range(self.n):
            vi, ai = v[i], a[i]
            r = max(abs(vi) / vpeak, 0.05) if vpeak > 0.0 else 1.0
            am, jm = acceleration * r, jerk * r
            s = 1.0 if vi > 0.0 or (vi == 0.0 and ai < 0.0) else -1.0
            u, b = s * vi, s * ai
            c = jm * dt
            disc = c * c + 4.0 * jm * (2.0 * u + dt * b)
            bn = 0.5 * (c - math.sqrt(disc)) if disc > 0.0 else 0.0
            bn = min(max(bn, b - c, -am), b + c, 0.0)
            un = u + h * (b + bn)
            if un <= 0.0:                       # stopped: never reverse
                un = 0.0
                if bn >= -c:
                    bn = 0.0
            xi = x[i] + h * (vi + s * un)
            xi = min(max(xi, self.lower[i]), self.upper[i])
            x[i], v[i], a[i], self.j[i] = xi, s * un, s * bn, s * (bn - b) / dt
