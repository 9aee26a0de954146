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
        self._pl, self._vl, self._zero = [0.0] * n, [0.0] * n, [0.0] * n

    def _sync(self) -> None:
        self._pl, self._vl = self.p.tolist(), self.v.tolist()

    def reset(self, q) -> None:
        self.p[:] = q
        self.v[:] = 0.0
        self.t = -math.inf
        self.active = False
        self._sync()

    def add(self, t: float, goal) -> None:
        """A goal (joint positions [rad]) received at time ``t`` [s]."""
        dt = t - self.t
        if not self.active or dt > self.timeout:  # first goal, or after a pause: start there
            self.p[:] = goal
            self.v[:] = 0.0
            self.t, self.active = t, True
            self._sync()
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
        self._sync()

    def sample(self, t: float) -> tuple[list, list]:
        """Goal position and velocity at time ``t`` (extrapolated, bounded), as lists."""
        age = t - self.t
        if not self.active:
            return self._pl, self._zero
        h = min(max(age, 0.0), self.horizon)
        p = [pi + vi * h for pi, vi in zip(self._pl, self._vl)]
        return p, (self._vl if 0.0 <= age < self.horizon else self._zero)


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

    def sample(self, t: float) -> tuple[list, list]:
        """Position and velocity at time ``t``, as lists."""
        s = t - self.t0
        ts = self.times
        if s <= ts[0]:
            return self.pos[0].tolist(), (self.vel[0].tolist() if s == ts[0]
                                          else [0.0] * self.pos.shape[1])
        if s >= ts[-1]:
            return self.pos[-1].tolist(), [0.0] * self.pos.shape[1]
        i = int(np.searchsorted(ts, s)) - 1
        h = ts[i + 1] - ts[i]
        u = (s - ts[i]) / h
        # cubic Hermite between the points: continuous position and velocity
        p0, p1, v0, v1 = self.pos[i], self.pos[i + 1], self.vel[i] * h, self.vel[i + 1] * h
        u2, u3 = u * u, u * u * u
        p = ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * v0
             + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * v1)
        v = ((6 * u2 - 6 * u) * p0 + (3 * u2 - 4 * u + 1) * v0
             + (-6 * u2 + 6 * u) * p1 + (3 * u2 - 2 * u) * v1) / h
        return p.tolist(), v.tolist()


class JerkLimitedTracker:
    """Third-order reference generator with velocity, acceleration and jerk limits.

    bandwidth [rad/s]: the triple pole of the linear (unsaturated) closed loop;
    velocity [rad/s], acceleration [rad/s^2], jerk [rad/s^3]: limits (per joint);
    lower, upper [rad]: position limits. Every limit scales the whole joint vector, so a
    limited motion keeps its direction in joint space and the tool keeps its path.

    The state ``x``, ``v``, ``a``, ``j`` is kept as plain Python lists: for six joints, float
    arithmetic is several times cheaper than numpy calls, and this runs every tick.
    """

    def __init__(self, lower, upper, velocity, acceleration, jerk, bandwidth: float = 10.0):
        self.lower = [float(v) for v in np.asarray(lower, float)]
        self.upper = [float(v) for v in np.asarray(upper, float)]
        n = self.n = len(self.lower)

        def per_joint(v):
            return [float(x) for x in np.broadcast_to(np.asarray(v, float), (n,))]
        self.vmax, self.amax, self.jmax = per_joint(velocity), per_joint(acceleration), \
            per_joint(jerk)
        self.set_bandwidth(bandwidth)
        self.x = [0.0] * n
        self.v = [0.0] * n
        self.a = [0.0] * n
        self.j = [0.0] * n

    def set_bandwidth(self, p: float) -> None:
        if p <= 0:
            raise ValueError(f'bandwidth must be > 0 rad/s, got {p}')
        self.kx, self.kv, self.ka = p / 3.0, p, 3.0 * p

    def reset(self, q) -> None:
        q = [float(v) for v in q]
        self.x = [min(max(qi, lo), hi) for qi, lo, hi in zip(q, self.lower, self.upper)]
        n = self.n
        self.v, self.a, self.j = [0.0] * n, [0.0] * n, [0.0] * n

    @staticmethod
    def _limit(x: list, lim: list) -> list:
        """Scale the whole vector so that every |x_i| <= lim_i."""
        r = max([abs(xi) / li for xi, li in zip(x, lim)])
        if r > 1.0:
            r = 1.0 / r
            return [xi * r for xi in x]
        return x

    def step(self, dt: float, goal, goal_v=None, hold: bool = False) -> None:
        """Advance by ``dt`` [s] towards ``goal`` (velocity feed-forward ``goal_v``).

        hold: ignore the goal and come to a smooth stop where the motion ends.
        """
        x, v, a = self.x, self.v, self.a
        kx = self.kx
        n = self.n
        if hold:
            vd = [0.0] * n
        else:
            # desired velocity: proportional to the error, but never faster than the joint can
            # still brake to the goal (time-optimal braking curve with half the acceleration
            # limit, leaving room for the jerk limit), plus the goal's own velocity
            vd = [0.0] * n
            r = 0.0
            for i in range(n):
                e = goal[i] - x[i]
                gv = goal_v[i] if goal_v is not None else 0.0
                d = kx * e + gv
                bound = math.sqrt(self.amax[i] * abs(e)) + abs(gv)
                bound = self.vmax[i] if bound > self.vmax[i] else bound
                vd[i] = d
                if bound <= 0.0:
                    if d != 0.0:
                        r = math.inf
                elif abs(d) > r * bound:
                    r = abs(d) / bound
            if r > 1.0:
                vd = [0.0] * n if r == math.inf else [d / r for d in vd]
        # braking curves at the position limits (stop with the acceleration limit)
        for i in range(n):
            am = self.amax[i]
            hi = math.sqrt(2.0 * am * max(self.upper[i] - x[i], 0.0))
            lo = -math.sqrt(2.0 * am * max(x[i] - self.lower[i], 0.0))
            if vd[i] > hi:
                vd[i] = hi
            elif vd[i] < lo:
                vd[i] = lo
        kv, ka = self.kv, self.ka
        ad = self._limit([kv * (vdi - vi) for vdi, vi in zip(vd, v)], self.amax)
        j = self._limit([ka * (adi - ai) for adi, ai in zip(ad, a)], self.jmax)
        # braking: a joint whose velocity would overshoot its limit if it started reducing its
        # acceleration now (at the jerk limit) starts now
        for i in range(self.n):
            ai = a[i]
            if ai != 0.0:
                jm = self.jmax[i]
                v_stop = v[i] + ai * abs(ai) / (2.0 * jm) + ai * dt
                if ai > 0.0 and v_stop >= self.vmax[i]:
                    j[i] = -jm
                elif ai < 0.0 and v_stop <= -self.vmax[i]:
                    j[i] = jm
        self.j = j
        # integrate with the trapezoidal rule, clamping each stage: the sampled reference
        # itself (its finite differences) then never exceeds a limit
        h = 0.5 * dt
        lower, upper, vmax, amax = self.lower, self.upper, self.vmax, self.amax
        for i in range(self.n):
            ai, vi = a[i], v[i]
            am, vm = amax[i], vmax[i]
            an = ai + dt * j[i]
            an = am if an > am else (-am if an < -am else an)
            vn = vi + h * (ai + an)
            vn = vm if vn > vm else (-vm if vn < -vm else vn)
            xi = x[i] + h * (vi + vn)
            if xi < lower[i] or xi > upper[i]:  # position limit: stop at the bound
                xi = lower[i] if xi < lower[i] else upper[i]
                vn = an = 0.0
            vi, ai = vn, an
            x[i], v[i], a[i] = xi, vi, ai
