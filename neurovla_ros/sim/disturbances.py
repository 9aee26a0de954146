"""What the world does to the arm: pushes on any body, a tremor torque on the arm's joints and a
vibration of the base. ROS-free; applied in every physics step by :class:`.world.World`.

* A push: a wrench at a body's centre of mass for a duration, in the world frame or the body's
  own (turning with it).
* Tremor: an oscillating joint torque, by default a fixed pattern over the three wrist joints.
* Base vibration: the base (and table) shaken along a direction; every moving body feels it as
  an inertial force, and so does the IMU (:meth:`base_acceleration`).
"""
from __future__ import annotations

import math

import numpy as np

# tremor pattern over the wrist joints when no joint is named: relative amplitude and phase
TREMOR_PATTERN = {'wrist_1_joint': (1.0, 0.0), 'wrist_2_joint': (0.7, 2.0944),
                  'wrist_3_joint': (0.5, 4.1888)}


class Disturbances:
    """Pushes, tremor and base vibration on a compiled world (``model``, ``data``); ``arm_d`` is
    the slice of the arm joints in qvel."""

    def __init__(self, model, data, arm_joints, arm_d: slice):
        self.model, self.data = model, data
        m = model
        self.dt = float(m.opt.timestep)
        self._arm = list(arm_joints)
        self._arm_d = arm_d
        self._body_ids = {m.body(i).name: i for i in range(m.nbody)}
        # moving bodies (feel a base vibration as an inertial force)
        self._moving = np.array([i for i in range(1, m.nbody) if m.body_weldid[i] != 0], int)
        self._moving_mass = m.body_mass[self._moving].copy()
        self._wrenches: list[list] = []
        self._xfrc_dirty = False
        self._tremor_amp = np.zeros(6)
        self._tremor_phase = np.zeros(6)
        self._tremor_omega = 0.0
        self._tremor_on = False
        self._vib_amp = np.zeros(3)
        self._vib_omega = 0.0
        self._vib_on = False

    def clear_pushes(self) -> None:
        """Drop every push in progress and the applied forces (a world reset)."""
        self._wrenches.clear()
        self.data.xfrc_applied[:] = 0.0
        self.data.qfrc_applied[:] = 0.0

    def apply(self, step_count: int) -> None:
        """The disturbances of step ``step_count`` (between ``mj_step1`` and ``mj_step2``)."""
        d = self.data
        if self._wrenches or self._xfrc_dirty or self._vib_on:
            self._apply_xfrc(step_count)
        if self._tremor_on:
            d.qfrc_applied[self._arm_d] = self._tremor_amp * np.sin(
                self._tremor_omega * (d.time - self._tremor_t0) + self._tremor_phase)

    def base_acceleration(self):
        """The base's vibration acceleration [m/s^2] (world frame) during the last step, or None
        when it does not vibrate."""
        if not self._vib_on:
            return None
        return self._vib_amp * math.sin(self._vib_omega * (self.data.time - self.dt
                                                           - self._vib_t0))

    def apply_wrench(self, step_count: int, link: str, force, torque=(0, 0, 0),
                     duration: float = 0.1, frame: str = 'world') -> float:
        """Push ``link`` at its centre of mass for ``duration`` [s]; returns the onset sim time.

        ``force`` [N] and ``torque`` [N m] are expressed in ``frame``: 'world' (= base_link) or
        'link' (the link's own frame, turning with it), from step ``step_count`` on. KeyError for
        an unknown link.
        """
        if link not in self._body_ids or link == 'world':
            raise KeyError(link)
        if frame not in ('world', 'link'):
            raise ValueError(f"apply_wrench: frame {frame!r} not in ('world', 'link')")
        w = np.concatenate([np.asarray(force, float), np.asarray(torque, float)])
        if w.shape != (6,) or not np.all(np.isfinite(w)):
            raise ValueError('apply_wrench: need finite force[3] and torque[3]')
        n = max(1, int(round(float(duration) / self.dt)))
        self._wrenches.append([self._body_ids[link], w, step_count + n, frame == 'link'])
        return float(self.data.time)

    def set_tremor(self, amplitude: float, frequency_hz: float, joint: str | None = None) -> float:
        """Oscillating joint torque ``amplitude`` [N m] at ``frequency_hz`` on ``joint``.

        ``joint`` None: a fixed pattern over the three wrist joints (relative amplitudes 1, 0.7,
        0.5, phases 0, 120, 240 deg). Amplitude 0 turns it off. Returns the onset sim time.
        """
        amp, f = float(amplitude), float(frequency_hz)
        if not (math.isfinite(amp) and math.isfinite(f) and f >= 0):
            raise ValueError('set_tremor: amplitude and frequency must be finite, f >= 0')
        self._tremor_amp[:] = 0.0
        self._tremor_phase[:] = 0.0
        arm = self._arm
        pattern = TREMOR_PATTERN if not joint else {joint: (1.0, 0.0)}
        for name, (rel, ph) in pattern.items():
            if name not in arm:
                raise KeyError(name)
            self._tremor_amp[arm.index(name)] = amp * rel
            self._tremor_phase[arm.index(name)] = ph
        self._tremor_omega = 2 * math.pi * f
        self._tremor_t0 = float(self.data.time)
        self._tremor_on = amp != 0.0
        if not self._tremor_on:
            self.data.qfrc_applied[self._arm_d] = 0.0
        return float(self.data.time)

    def set_base_vibration(self, amplitude: float, frequency_hz: float,
                           direction=(1.0, 0.0, 0.0)) -> float:
        """Shake the base (and table): acceleration ``amplitude`` [m/s^2] sin(2 pi f t) along
        ``direction`` (base_link). Felt by every moving body and by the IMU. 0 = off."""
        d = np.asarray(direction, float)
        nrm = np.linalg.norm(d)
        if not (math.isfinite(amplitude) and math.isfinite(frequency_hz) and nrm > 0):
            raise ValueError('set_base_vibration: need finite amplitude/frequency, a direction')
        self._vib_amp = float(amplitude) * d / nrm
        self._vib_omega = 2 * math.pi * float(frequency_hz)
        self._vib_t0 = float(self.data.time)
        self._vib_on = bool(amplitude) and bool(frequency_hz)
        self._xfrc_dirty = True
        return float(self.data.time)

    def _apply_xfrc(self, step_count: int):
        d = self.data
        xf = d.xfrc_applied
        xf[:] = 0.0
        self._xfrc_dirty = False
        if self._vib_on:
            a = self._vib_amp * math.sin(self._vib_omega * (d.time - self._vib_t0))
            xf[self._moving, :3] = -self._moving_mass[:, None] * a
            self._xfrc_dirty = True
        if self._wrenches:
            keep = []
            for w in self._wrenches:
                body, vec, end, local = w
                if step_count >= end:
                    continue
                keep.append(w)
                if local:
                    r = d.xmat[body].reshape(3, 3)
                    xf[body, :3] += r @ vec[:3]
                    xf[body, 3:] += r @ vec[3:]
                else:
                    xf[body] += vec
            self._wrenches[:] = keep
            self._xfrc_dirty = True  # clear next step
