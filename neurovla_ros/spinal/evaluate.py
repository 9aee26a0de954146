"""Closed-loop runs of the spinal controllers in the MuJoCo world, in one process. ROS-free.

Lock-step: each 1 ms tick reads the joint state, computes a torque and steps the world once,
so tracking figures of the spiking controller and of the classical baselines are exactly
comparable (same world, same reference, same timing).
"""
from __future__ import annotations

import time

import numpy as np

from ..common.servo import JointGains
from .controller import SpinalController
from .encoding import AccelEstimator, Encoder


def rollout(world, q_ref, qd_ref, policy, record_z: bool = False, encoder: Encoder | None = None,
            start=None, dt: float = 1e-3):
    """Run ``policy(q, qd, effort, q_des, qd_des, t) -> tau[6]`` along the reference.

    Returns a dict with ``q``, ``qd`` (T, 6) measured, ``tau`` (T, 6) commanded, ``err`` (T, 6)
    = q_ref - q and, with
    ``record_z``, the normalised encoder signals ``z`` (T, 3, 6) the policy saw.
    """
    world.reset(q=q_ref[0] if start is None else start)
    world.command('effort', np.zeros(6))
    n = len(q_ref)
    qs = np.zeros((n, 6))
    qds = np.zeros((n, 6))
    taus = np.zeros((n, 6))
    zs = np.zeros((n, 3, 6)) if record_z else None
    accel = AccelEstimator(6)
    for k in range(n):
        q, qd, eff = world.joint_state()
        if record_z:   # what the network sees: the same acceleration estimate as the controller
            zs[k] = encoder.signals(q_ref[k], qd_ref[k], q[:6], qd[:6],
                                    accel.update(qd_ref[k], dt))
        qs[k] = q[:6]
        qds[k] = qd[:6]
        tau = policy(q, qd, eff, q_ref[k], qd_ref[k], world.time)
        taus[k] = tau
        world.command('effort', tau)
        world.step()
    # tracking error: the reference at each tick's time minus the state measured then
    out = {'q': qs, 'qd': qds, 'tau': taus, 'err': q_ref - qs}
    if record_z:
        out['z'] = zs
    return out


def rmse(err, mask=None) -> float:
    e = err if mask is None else err[mask]
    return float(np.sqrt(np.mean(np.square(e)))) if len(e) else float('nan')


def pd_policy(gains: JointGains):
    def policy(q, qd, effort, q_des, qd_des, t):
        return gains.pd_torque(q_des, qd_des, q[:6], qd[:6])
    return policy


def teacher_policy(gains: JointGains, dt: float = 1e-3):
    """PD + model feed-forward, with the controller's acceleration estimate."""
    accel = AccelEstimator(6)

    def policy(q, qd, effort, q_des, qd_des, t):
        return gains.teacher_torque(q_des, qd_des, q[:6], qd[:6], accel.update(qd_des, dt))
    return policy


class NetworkPolicy:
    """The full spinal controller (network + limits, reflex optional) fed from a reference.

    ``step_us`` collects the wall time of every controller tick [us].
    """

    def __init__(self, ctrl: SpinalController, mix_teacher: float = 0.0, timing: bool = False):
        self.ctrl = ctrl
        self.mix = float(mix_teacher)
        self.timing = timing
        self.step_us: list[float] = []
        self._t_prev = None

    def __call__(self, q, qd, effort, q_des, qd_des, t):
        c = self.ctrl
        c.set_reference(q_des, qd_des, now=t)
        dt = 1e-3 if self._t_prev is None else t - self._t_prev
        self._t_prev = t
        t0 = time.perf_counter()
        tau = c.step(q, qd, effort, t, dt, t)
        if self.timing:
            self.step_us.append((time.perf_counter() - t0) * 1e6)
        c.after_tick(q, qd, effort, dt)
        tau = np.array(tau)
        if self.mix > 0:
            tau = self.mix * c.gains.teacher_torque(q_des, qd_des, q[:6], qd[:6], c.accel.qdd) \
                + (1 - self.mix) * tau
        return tau

    def reset(self):
        """Fresh network state and observer (between rollouts)."""
        self._t_prev = None
        self.ctrl.net.reset()
        self.ctrl.detector.restart()
