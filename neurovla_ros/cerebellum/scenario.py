"""The tremor scenario and its metrics, shared by the benchmark and the tests. ROS-free.

Scenario: the tcp moves through a few waypoints over the table (minimum-jerk segments with
dwells), tool pointing down. A VLA-like source samples that intended path at ``goal_rate_hz``
with Gaussian position noise (``goal_noise`` [m]) and arrival-time jitter ("intention
tremor"), while the body adds an oscillating joint torque (``tremor_amplitude`` [N m] at
``tremor_hz`` on ``tremor_joint``, optionally switching to ``tremor_hz_2`` at ``switch_time``
[s]). :meth:`Scenario.draw` draws the path, the tremor's frequency, amplitude and joint
pattern, and the goal noise from one seed.

Metrics (all from recorded samples):

* RMS tcp jerk [m/s^3]: tcp positions from the encoders through the URDF kinematics,
  zero-phase low-passed at ``jerk_lowpass_hz`` (keeps the 4-12 Hz band, drops the
  millisecond-scale torque ripple of a 1 kHz loop), differentiated three times;
* IMU band power: Welch spectrum of the gyro (3 axes summed), power in the band [rad^2/s^2];
* tracking RMSE [m]: tcp position against the intended (noise-free) path;
* time to goal [s]: from the start of the last segment until the tcp comes within a
  tolerance [m] of the final waypoint and stays there for a while;
* re-adaptation time [s]: after ``switch_time``, until the IMU band RMS (sliding window)
  comes back below twice its pre-switch level and stays there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .filters import Biquad

HOME_TCP = (0.449, 0.0, 0.249)
# what Scenario.draw draws from: the waypoint box [m], the tremor [Hz], [N m] and its joints
# ('' = the sim's fixed pattern over the three wrist joints)
WAYPOINT_BOX = ((0.38, -0.15, 0.17), (0.58, 0.15, 0.28))
TREMOR_HZ = (5.0, 10.0)
TREMOR_HZ_STEP = (2.0, 3.0)      # the frequency switch: down from above 7.5 Hz, else up
TREMOR_NM = (0.7, 1.5)
TREMOR_JOINTS = ('', 'wrist_1_joint', 'wrist_2_joint', 'wrist_3_joint')


@dataclass
class Scenario:
    seed: int = 0
    waypoints: tuple = ((0.45, 0.0, 0.25), (0.55, 0.12, 0.18), (0.40, -0.10, 0.22),
                        (0.50, 0.05, 0.20))
    start: float = 2.0           # first motion starts [s]
    segment: float = 2.0         # duration of each move [s]
    dwell: float = 1.0           # pause at each waypoint [s]
    tail: float = 2.0            # hold after the last move [s]
    goal_rate_hz: float = 10.0
    goal_noise: float = 0.004    # [m] std per axis
    goal_jitter: float = 0.015   # [s] std of arrival-time jitter
    tremor_amplitude: float = 1.0
    tremor_hz: float = 7.0
    tremor_joint: str = ''       # '' = the wrist pattern
    tremor_hz_2: float = 0.0     # 0 = no switch
    switch_time: float = 0.0
    quat_xyzw: tuple = ()        # goal orientation; empty = the home orientation
    extra: dict = field(default_factory=dict)

    @classmethod
    def draw(cls, seed: int, moves: int = 3, switch: bool = False, **kw) -> 'Scenario':
        """A scenario drawn from ``seed``: ``moves`` waypoints after the home tcp (each 8-25 cm
        from the one before, inside ``WAYPOINT_BOX``), the tremor frequency, amplitude and
        joint pattern; with ``switch`` a frequency change half-way through the motion. The
        goal noise is drawn from the same seed (:meth:`goals`). ``kw`` overrides fields."""
        rng = np.random.default_rng([seed, 0x7e3])    # its own stream, apart from goals()
        lo, hi = np.array(WAYPOINT_BOX[0]), np.array(WAYPOINT_BOX[1])
        wps = [np.array(HOME_TCP)]
        while len(wps) < moves + 1:
            p = lo + rng.random(3) * (hi - lo)
            if 0.08 <= np.linalg.norm(p - wps[-1]) <= 0.25:
                wps.append(p)
        hz = float(rng.uniform(*TREMOR_HZ))
        step = float(rng.uniform(*TREMOR_HZ_STEP))
        hz2 = hz - step if hz > 7.5 else hz + step      # stays inside 4.5-10.5 Hz
        fields = dict(seed=seed, waypoints=tuple(tuple(float(v) for v in p) for p in wps),
                      tremor_hz=round(hz, 2), tremor_amplitude=round(float(rng.uniform(
                          *TREMOR_NM)), 2), tremor_joint=str(rng.choice(TREMOR_JOINTS)))
        scn = cls(**{**fields, **kw})
        if switch:
            scn.tremor_hz_2 = round(hz2, 2)
            scn.switch_time = round(0.5 * (scn.duration + 3.0), 1)
        return scn

    @property
    def duration(self) -> float:
        n = len(self.waypoints) - 1
        return self.start + n * self.segment + (n - 1) * self.dwell + self.tail

    @property
    def last_segment_start(self) -> float:
        n = len(self.waypoints) - 1
        return self.start + (n - 1) * (self.segment + self.dwell)

    def intended(self, t) -> np.ndarray:
        """Intended tcp position(s) [m] at time(s) ``t`` [s] (min-jerk segments)."""
        t = np.atleast_1d(np.asarray(t, float))
        wp = np.asarray(self.waypoints, float)
        out = np.repeat(wp[:1], len(t), axis=0)
        for i in range(len(wp) - 1):
            t0 = self.start + i * (self.segment + self.dwell)
            s = np.clip((t - t0) / self.segment, 0.0, 1.0)
            blend = s ** 3 * (10 - 15 * s + 6 * s * s)
            moving = t >= t0
            out[moving] = wp[i] + blend[moving, None] * (wp[i + 1] - wp[i])
        return out

    def goals(self) -> list[tuple[float, np.ndarray]]:
        """(arrival time [s], noisy tcp position [m]) of every goal, seeded."""
        rng = np.random.default_rng(self.seed)
        period = 1.0 / self.goal_rate_hz
        times = np.arange(0.0, self.duration, period)
        out = []
        for t in times:
            p = self.intended(t)[0] + rng.normal(0.0, self.goal_noise, 3)
            ta = t + min(max(rng.normal(0.0, self.goal_jitter), -0.4 * period), 0.4 * period)
            out.append((max(0.0, float(ta)), p))
        out.sort(key=lambda g: g[0])
        return out

    def tremor_frequency(self, t: float) -> float:
        if self.tremor_hz_2 and t >= self.switch_time:
            return self.tremor_hz_2
        return self.tremor_hz


# ---------------------------------------------------------------------- signal helpers
def zero_phase_lowpass(x: np.ndarray, fs: float, fc: float) -> np.ndarray:
    """4th-order Butterworth-like low-pass (two biquads) run forward and backward."""
    x = np.asarray(x, float)
    y = x - x[0]
    for _ in range(2):
        y = Biquad('lowpass', fc, fs, 1).filter(y)
        y = Biquad('lowpass', fc, fs, 1).filter(y[::-1])[::-1]
    return y + x[0]


def welch(x: np.ndarray, fs: float, nperseg: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectral density (Hann, 50 % overlap) of ``x`` (T,) or (T, k) summed
    over columns. Returns frequencies [Hz] and PSD [unit^2/Hz]."""
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    nperseg = min(nperseg, len(x))
    step = max(1, nperseg // 2)
    win = np.hanning(nperseg)
    scale = 1.0 / (fs * np.sum(win ** 2))
    acc = np.zeros(nperseg // 2 + 1)
    count = 0
    for i in range(0, len(x) - nperseg + 1, step):
        seg = x[i:i + nperseg] - x[i:i + nperseg].mean(axis=0)
        spec = np.fft.rfft(seg * win[:, None], axis=0)
        acc += np.sum(np.abs(spec) ** 2, axis=1)
        count += 1
    psd = acc * scale / max(count, 1)
    psd[1:-1] *= 2.0
    return np.fft.rfftfreq(nperseg, 1.0 / fs), psd


def band_power(x: np.ndarray, fs: float, band=(4.0, 12.0), nperseg: int = 1024) -> float:
    f, p = welch(x, fs, nperseg)
    sel = (f >= band[0]) & (f <= band[1])
    return float(np.sum(p[sel]) * (f[1] - f[0]))


def rms_jerk(p: np.ndarray, fs: float, fc: float = 30.0) -> float:
    """RMS of the third derivative [unit/s^3] of positions ``p`` (T, 3) sampled at ``fs``."""
    y = np.column_stack([zero_phase_lowpass(p[:, i], fs, fc) for i in range(p.shape[1])])
    j = np.diff(y, n=3, axis=0) * fs ** 3
    trim = int(0.1 * fs)  # filter edges
    j = j[trim:-trim] if len(j) > 2 * trim + 10 else j
    return float(np.sqrt(np.mean(np.sum(j * j, axis=1))))


def time_to_goal(t: np.ndarray, p: np.ndarray, goal, t0: float, tol: float) -> float:
    """Time from ``t0`` until ``p`` stays within ``tol`` of ``goal`` (NaN if never)."""
    d = np.linalg.norm(p - np.asarray(goal), axis=1)
    after = t >= t0
    outside = np.nonzero(after & (d > tol))[0]
    if len(outside) == 0:
        return 0.0
    last = outside[-1]
    if last + 1 >= len(t):
        return float('nan')
    return float(t[last + 1] - t0)


def time_to_goal_stay(t: np.ndarray, p: np.ndarray, goal, t0: float, tol: float,
                      stay: float) -> float:
    """Time from ``t0`` until ``p`` first comes within ``tol`` of ``goal`` and stays there
    for ``stay`` [s] (NaN if never)."""
    d = np.linalg.norm(p - np.asarray(goal), axis=1)
    inside = (d <= tol) & (t >= t0)
    n = max(1, int(round(stay / max(float(np.median(np.diff(t))), 1e-9))))
    run = 0
    for i in range(len(t)):
        run = run + 1 if inside[i] else 0
        if run >= n:
            return float(t[i - n + 1] - t0)
    return float('nan')


def sliding_band_rms(x: np.ndarray, fs: float, band=(4.0, 12.0), window: float = 0.3):
    """Band-passed (two biquads) RMS of ``x`` (T, k) over a trailing window [s]."""
    lo, hi = band
    f0 = math.sqrt(lo * hi)
    q = f0 / (hi - lo)
    y = Biquad('bandpass', f0, fs, x.shape[1], q).filter(np.asarray(x, float))
    y = Biquad('bandpass', f0, fs, x.shape[1], q).filter(y)
    p = np.sum(y * y, axis=1)
    n = max(1, int(window * fs))
    c = np.concatenate([[0.0], np.cumsum(p)])
    out = np.empty(len(p))
    idx = np.arange(len(p))
    lo_i = np.maximum(0, idx - n + 1)
    out[:] = (c[idx + 1] - c[lo_i]) / (idx + 1 - lo_i)
    return np.sqrt(out)


def readapt_time(t: np.ndarray, gyro: np.ndarray, fs: float, switch: float,
                 band=(4.0, 12.0), window: float = 0.3, settle: float = 2.0) -> tuple[float, dict]:
    """Time after ``switch`` until the IMU band RMS is back below twice its level in the
    ``settle`` seconds before the switch, and stays there (NaN if never)."""
    r = sliding_band_rms(gyro, fs, band, window)
    pre = (t >= switch - settle) & (t < switch)
    level = float(np.median(r[pre])) if pre.any() else float('nan')
    thr = 2.0 * level
    after = t >= switch
    above = np.nonzero(after & (r > thr))[0]
    peak = float(r[after].max()) if after.any() else float('nan')
    info = {'pre_rms': level, 'peak_rms': peak, 'threshold': thr}
    if len(above) == 0:
        return 0.0, info
    last = above[-1]
    if last + 1 >= len(t) or t[-1] - t[last] < 0.5:
        return float('nan'), info
    return float(t[last + 1] - switch), info


def tcp_positions(model, qs: np.ndarray, stride: int = 1) -> np.ndarray:
    """tcp positions [m] for joint rows ``qs`` (T, 6) through the URDF kinematics."""
    return np.array([model.fk(q)[:3, 3] for q in qs[::stride]])
