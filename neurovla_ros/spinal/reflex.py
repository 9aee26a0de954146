"""Reflex arc of the spinal layer: collision detection and the withdrawal motion. ROS-free.

Detection: a discrete momentum observer. With ``p = M(q) qd`` the arm's generalised momentum,
the body obeys ``dp/dt = tau + tau_ext + C^T qd - g - D qd - f(qd)``. Integrating this over
one sample with MuJoCo's semi-implicit step and ``dM/dt`` taken by finite difference reduces it
to the inverse-dynamics residual of the last sample

    raw_k = M(q_{k-1}) (qd_k - qd_{k-1}) / dt + C(q_{k-1}, qd_{k-1}) qd_{k-1} + g(q_{k-1})
            + D qd_k + F tanh(qd_k / v_eps) - tau_k

where ``tau_k`` is the measured joint torque that acted over the sample (the /joint_states
effort: motor torque including the drives' gravity compensation), ``D`` and ``F`` the URDF's
viscous and Coulomb friction. The observer output ``r_k = r_{k-1} + min(1, K dt)(raw_k - r_{k-1})``
converges to the external joint torque ``tau_ext`` with bandwidth ``K`` [1/s]; ``dt`` comes from
the message stamps, so dropped samples only lengthen the step. Because the arm's own motion is
explained by the model, fast free motion leaves ``r`` near zero (residual friction), while a
contact shows up within one sample.

A joint triggers when ``|r_j| > threshold_j + dyn_fraction * |tau_j| + env_gain * env_j``.
After dropped samples (a gap of ``dt`` > 1.5 periods) that level is multiplied by
``1 + dt / (4 period)`` and ``|tau_j - tau_j,prev|`` is added: the torque of a missed step is not
known, only that it lay near the torques measured around it. ``env``
is an envelope of the oscillating part of ``r`` (``r`` minus its slow mean; samples over the
threshold are left out, so a contact does not desensitise the detector), rising with
``env_rise`` [s] and falling with ``env_fall`` [s] and capped at ``env_cap * threshold``: a
periodic disturbance such as a 4-12 Hz tremor torque raises the threshold while it lasts, a
step-like contact does not have time to.

Withdrawal: the arm moves along ``M^-1 r`` (the direction the contact force pushes it: away
from the obstacle), by ``distance`` [m] of tool-centre-point travel (at most ``max_joint`` [rad]
per joint, inside the position limits, above ``min_height`` over the table) along a
minimum-jerk profile of ``duration`` [s], then holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..robot.dynamics import ArmDynamics


@dataclass
class DetectorConfig:
    thresholds: tuple = (3.0, 3.0, 3.0, 2.0, 2.0, 2.0)  # [N m] per arm joint
    dyn_fraction: float = 0.01    # extra threshold per N m of measured joint torque
    gain: float = 1000.0          # observer bandwidth K [1/s]; K dt >= 1 = one-sample estimate
    env_gain: float = 1.5         # threshold increase per N m of oscillation envelope
    env_rise: float = 0.03        # envelope rise time constant [s]
    env_fall: float = 1.0         # envelope fall time constant [s]
    env_cap: float = 3.0          # envelope capped at env_cap * threshold
    mean_tau: float = 0.3         # time constant of the slow mean of r [s]
    v_eps: float = 0.05           # Coulomb friction smoothing velocity [rad/s]
    max_gap: float = 0.02         # a longer gap between samples restarts the observer [s]
    period: float = 0.001         # nominal sample period [s]; longer gaps = dropped samples
    level_every: int = 4          # the adaptive threshold is updated every n samples


class CollisionDetector:
    """Momentum observer + adaptive threshold over the 6 arm joints (see module docstring).

    Per sample: ``update(q, qd, effort, dt)`` before computing a command (one ``mj_rne`` and a
    few vector operations: the latency path), then ``prepare(q, qd, effort, dt)`` after the
    command went out (kinematics of this state, friction terms and the threshold for the next
    update). All arrays are preallocated.
    """

    def __init__(self, dyn: ArmDynamics, damping, friction, cfg: DetectorConfig | None = None,
                 compiled: bool = True):
        self.cfg = cfg or DetectorConfig()
        self.dyn = dyn
        nv = dyn.nv
        self.damping = np.zeros(nv)
        self.friction = np.zeros(nv)
        self.damping[:len(damping)] = damping
        self.friction[:len(friction)] = friction
        self.thresholds = np.asarray(self.cfg.thresholds, float).copy()
        if self.thresholds.shape != (6,) or np.any(self.thresholds <= 0):
            raise ValueError(f'thresholds: need 6 positive values, got {self.cfg.thresholds!r}')
        self.r = np.zeros(6)           # external torque estimate [N m]
        self.raw = np.zeros(6)
        self.level = self.thresholds.copy()   # threshold in force [N m]
        self.env = np.zeros(6)
        self.mean = np.zeros(6)
        self.hit = np.zeros(6, bool)   # joints over threshold at the last update
        self._abs = np.zeros(6)
        self._eff_prev = np.zeros(6)
        self._gap = np.zeros(6)
        self._qd_prev = np.zeros(nv)
        self._qacc = np.zeros(nv)
        self._pre = np.zeros(nv)       # D qd + F tanh(qd / v_eps) of the last sample
        self._t = np.zeros(nv)
        self._a = np.zeros(6)
        self._rate = np.zeros(6)
        self._cap = self.cfg.env_cap * self.thresholds
        self._level_dt, self._level_n = 0.0, 0
        self._ready = False
        self.samples = 0
        self._fast = self._compiled_observer() if compiled else None

    def _compiled_observer(self):
        """The arithmetic of ``update`` in C (``_core.c``) on this detector's arrays, or None
        when the extension is not built (the numpy code below then runs)."""
        try:
            from ._core import Observer
        except ImportError:
            return None
        d = self.dyn
        arrays = (self._qd_prev, self._qacc, d.data.qacc, d._arm_inertia, d._res, self._pre,
                  self.r, self.raw, self._abs, self.level, self._gap, self._eff_prev, self.hit)
        return Observer(arrays, float(self.cfg.gain), float(self.cfg.period), d.nv)

    def restart(self) -> None:
        """Forget the previous sample (the next ``update`` only primes the observer)."""
        self._ready = False

    def update(self, q, qd, effort, dt: float) -> bool:
        """Advance the observer by one sample; True when a collision is detected now."""
        if not self._ready or not 0.0 < dt <= self.cfg.max_gap:
            self._ready = False
            self.hit.fill(False)
            return False
        if self._fast is not None:      # the same as below, in C around mj_rne
            self._fast.acceleration(qd, dt)
            self.dyn.rne()
            self.samples += 1
            return self._fast.residual(effort, dt)
        n = len(qd)
        qacc = self._qacc
        np.subtract(qd, self._qd_prev[:n], out=qacc[:n])
        qacc[:n] *= 1.0 / dt
        res = self.dyn.inverse(qacc)
        res += self._pre
        a = self.cfg.gain * dt
        if a >= 1.0:
            np.subtract(res[:6], effort[:6], out=self.r)
        else:
            raw = self.raw
            np.subtract(res[:6], effort[:6], out=raw)
            raw -= self.r
            raw *= a
            self.r += raw
        np.abs(self.r, out=self._abs)
        if dt > 1.5 * self.cfg.period:
            # dropped samples: allow for the unknown torque of the missed steps, and for the
            # model error of a long step (grows with it)
            gap = self._gap
            np.subtract(effort[:6], self._eff_prev, out=gap)
            np.abs(gap, out=gap)
            gap += self.level * (1.0 + dt / (4.0 * self.cfg.period))
            np.greater(self._abs, gap, out=self.hit)
        else:
            np.greater(self._abs, self.level, out=self.hit)
        self.samples += 1
        return True in self.hit.tolist()   # cheaper than .any() on 6 values

    def prepare(self, q, qd, effort=None, dt: float = 0.0) -> None:
        """After a sample: kinematics and friction of this state, the next threshold."""
        self.dyn.set_state(q, qd)
        n = len(qd)
        self._qd_prev[:n] = qd
        cfg = self.cfg
        pre, t = self._pre, self._t
        np.multiply(self.damping[:n], qd, out=pre[:n])
        np.multiply(qd, 1.0 / cfg.v_eps, out=t[:n])
        np.tanh(t[:n], out=t[:n])
        t[:n] *= self.friction[:n]
        pre[:n] += t[:n]
        self._ready = True
        if dt <= 0.0 or effort is None:
            return
        self._eff_prev[:] = effort[:6]
        self._level_dt += dt
        self._level_n += 1
        if self._level_n < cfg.level_every:
            return
        dt, self._level_dt, self._level_n = self._level_dt, 0.0, 0
        # envelope of the oscillating part of r (r minus its slow mean), learnt only from
        # samples under the threshold: a contact must not desensitise the detector after it
        r, mean, env, tmp, rate = self.r, self.mean, self.env, self._a, self._rate
        if True in self.hit.tolist():
            return
        mean += min(1.0, dt / cfg.mean_tau) * (r - mean)
        np.subtract(r, mean, out=tmp)
        np.abs(tmp, out=tmp)
        tmp -= env
        np.copyto(rate, dt / cfg.env_fall)
        rate[tmp > 0] = dt / cfg.env_rise
        tmp *= rate
        env += tmp
        np.minimum(env, self._cap, out=env)
        # level = thresholds + dyn_fraction |tau| + env_gain env
        level = self.level
        np.abs(effort[:6], out=level)
        level *= cfg.dyn_fraction
        level += self.thresholds
        np.multiply(env, cfg.env_gain, out=tmp)
        level += tmp

    def margin(self) -> np.ndarray:
        """|r| / threshold per joint at the last update (1 = on the threshold)."""
        return np.abs(self.r) / self.level


@dataclass
class WithdrawConfig:
    distance: float = 0.05      # tool-centre-point travel [m]
    duration: float = 0.25      # time of the withdrawal motion [s]
    max_joint: float = 0.35     # largest joint excursion [rad]
    min_height: float = 0.03    # lowest tcp height over the table (z of base_link) [m]
    limit_margin: float = 0.05  # stay this far inside the position limits [rad]


def min_jerk(s: float) -> tuple[float, float]:
    """Minimum-jerk profile and its derivative at normalised time s in [0, 1]."""
    s = min(max(s, 0.0), 1.0)
    s2 = s * s
    return s2 * s * (10 - 15 * s + 6 * s2), 30 * s2 * (1 - 2 * s + s2)


class Withdrawal:
    """Plans and plays back the withdrawal: ``plan(...)`` then ``reference(t)``."""

    def __init__(self, dyn: ArmDynamics, lower, upper, cfg: WithdrawConfig | None = None):
        self.cfg = cfg or WithdrawConfig()
        self.dyn = dyn
        self.lower = np.asarray(lower, float) + self.cfg.limit_margin
        self.upper = np.asarray(upper, float) - self.cfg.limit_margin
        self.q0 = np.zeros(6)
        self.dq = np.zeros(6)
        self.t0 = 0.0
        self.q = np.zeros(6)
        self.qd = np.zeros(6)
        self.target_q = np.zeros(6)
        self.T = self.cfg.duration

    def direction(self, q8, r_ext, qd8) -> np.ndarray:
        """Unit-free joint direction of the withdrawal: M^-1 r_ext, else back along -qd."""
        self.dyn.set_state(q8)
        m = self.dyn.mass_matrix()[:6, :6]
        if np.linalg.norm(r_ext) > 1e-6:
            d = np.linalg.solve(m, np.asarray(r_ext, float))
        else:
            d = -np.asarray(qd8[:6], float)
        n = np.linalg.norm(d)
        return d / n if n > 1e-9 else np.zeros(6)

    def start(self, q8, t0: float) -> None:
        """Begin a withdrawal at joint state ``q8`` and time ``t0``: until ``plan`` fills in the
        offset the reference is the pose at ``t0`` at rest (the first sample of any withdrawal,
        whose minimum-jerk profile starts with zero offset and velocity)."""
        q = np.asarray(q8, float)[:6]
        self.q0[:] = q
        self.dq[:] = 0.0
        self.target_q[:] = q
        self.t0 = float(t0)
        self.T = self.cfg.duration      # kept for this withdrawal (cfg may change meanwhile)
        self.q[:] = q
        self.qd[:] = 0.0

    def plan(self, q8, r_ext, qd8, t0: float | None = None) -> np.ndarray:
        """Plan the withdrawal from joint state ``q8`` (``t0``: start it there first; None:
        complete the one ``start`` began); returns the joint offset [rad] (a new array)."""
        if t0 is not None:
            self.start(q8, t0)
        cfg = self.cfg
        q8 = np.asarray(q8, float)
        q = q8[:6]
        d = self.direction(q8, r_ext, qd8)
        dq = np.zeros(6)
        if np.any(d):
            jac = self.dyn.tcp_jacobian()      # at q (set by direction())
            speed = np.linalg.norm(jac @ d)
            alpha = cfg.distance / speed if speed > 1e-6 else np.inf
            alpha = min(alpha, cfg.max_joint / np.max(np.abs(d)))
            dq = alpha * d
            # inside the position limits, above the table
            target = np.clip(q + dq, np.minimum(q, self.lower), np.maximum(q, self.upper))
            dq = target - q
            qt = q8.copy()
            for _ in range(6):
                qt[:6] = q + dq
                self.dyn.set_state(qt)
                if self.dyn.tcp_position()[2] >= cfg.min_height:
                    break
                dq *= 0.5
            else:
                dq[:] = 0.0
        self.dq[:] = dq
        self.target_q[:] = self.q0 + dq
        return dq

    def reference(self, t: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """Desired position, velocity at time ``t`` and whether the motion is complete."""
        T = self.T
        s, ds = min_jerk((t - self.t0) / T)
        np.multiply(self.dq, s, out=self.q)
        self.q += self.q0
        np.multiply(self.dq, ds / T, out=self.qd)
        return self.q, self.qd, t - self.t0 >= T - 1e-9


class WrenchDetector:
    """Second channel: a step in the wrist force. Triggers when the force departs from its
    slow mean (time constant ``tau`` [s]) by more than ``threshold`` [N]; the gripper's own
    weight and inertia change slowly and stay in the mean."""

    def __init__(self, threshold: float, tau: float = 0.05):
        self.threshold = float(threshold)
        self.tau = float(tau)
        self.mean = np.zeros(3)
        self.step = np.zeros(3)
        self._ready = False

    def update(self, force, dt: float) -> bool:
        f = np.asarray(force, float)
        if not self._ready or not 0.0 < dt <= 0.1:
            self.mean[:] = f
            self._ready = True
            return False
        np.subtract(f, self.mean, out=self.step)
        self.mean += min(1.0, dt / self.tau) * self.step
        return bool(np.dot(self.step, self.step) > self.threshold * self.threshold)
