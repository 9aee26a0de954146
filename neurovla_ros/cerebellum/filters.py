"""Second-order IIR sections (RBJ audio-EQ cookbook) over n channels at once, ROS-free.

Coefficients are designed for a nominal sample rate; ``step`` filters one sample per channel
in place (preallocated state, no per-sample allocation beyond numpy temporaries).
"""
from __future__ import annotations

import math

import numpy as np


def _design(kind: str, f0: float, fs: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < f0 < fs / 2:
        raise ValueError(f'filter frequency {f0} Hz must lie in (0, {fs / 2}) Hz (fs = {fs} Hz)')
    w0 = 2.0 * math.pi * f0 / fs
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == 'lowpass':
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
    elif kind == 'highpass':
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
    elif kind == 'bandpass':  # constant 0 dB peak gain
        b = [alpha, 0.0, -alpha]
    else:
        raise ValueError(f'unknown filter kind {kind!r}')
    a = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


class Biquad:
    """One second-order section applied to ``n`` channels (direct form II transposed).

    kind: ``lowpass`` | ``highpass`` | ``bandpass``; f0 [Hz]; fs [Hz]; q: quality factor
    (0.7071 = Butterworth for low/high-pass; for band-pass, centre / bandwidth).
    """

    def __init__(self, kind: str, f0: float, fs: float, n: int, q: float = math.sqrt(0.5)):
        self.kind, self.f0, self.fs, self.q = kind, f0, fs, q
        self.b, self.a = _design(kind, f0, fs, q)
        self.b0, self.b1, self.b2 = (float(v) for v in self.b)
        self.a1, self.a2 = float(self.a[1]), float(self.a[2])
        self.z1 = np.zeros(n)
        self.z2 = np.zeros(n)
        self.y = np.zeros(n)

    def reset(self, x0=None) -> None:
        """Zero state, or the steady state for a constant input ``x0``."""
        if x0 is None:
            self.z1[:] = 0.0
            self.z2[:] = 0.0
            self.y[:] = 0.0
            return
        x0 = np.asarray(x0, float)
        dc = (self.b0 + self.b1 + self.b2) / (1.0 + self.a1 + self.a2)
        y0 = dc * x0
        self.z2[:] = self.b2 * x0 - self.a2 * y0
        self.z1[:] = self.b1 * x0 - self.a1 * y0 + self.z2
        self.y[:] = y0

    def step(self, x) -> np.ndarray:
        """Filter one sample per channel; returns the (reused) output array."""
        y = self.y
        np.multiply(x, self.b0, out=y)
        y += self.z1
        # z1 = b1 x - a1 y + z2 ; z2 = b2 x - a2 y
        np.multiply(x, self.b1, out=self.z1)
        self.z1 -= self.a1 * y
        self.z1 += self.z2
        np.multiply(x, self.b2, out=self.z2)
        self.z2 -= self.a2 * y
        return y

    def response(self, f_hz) -> np.ndarray:
        """Complex frequency response at ``f_hz`` [Hz] (scalar or array)."""
        z = np.exp(-1j * 2.0 * np.pi * np.asarray(f_hz, float) / self.fs)
        return ((self.b0 + self.b1 * z + self.b2 * z * z)
                / (1.0 + self.a1 * z + self.a2 * z * z))

    def filter(self, x: np.ndarray) -> np.ndarray:
        """Filter a whole (T, n) or (T,) signal from zero state (offline helper)."""
        x = np.asarray(x, float)
        flat = x.reshape(len(x), -1)
        f = Biquad(self.kind, self.f0, self.fs, flat.shape[1], self.q)
        out = np.empty_like(flat)
        for i in range(len(flat)):
            out[i] = f.step(flat[i])
        return out.reshape(x.shape)


def lowpass_alpha(fc: float, dt: float) -> float:
    """Smoothing factor of a first-order low-pass with corner ``fc`` [Hz] at step ``dt`` [s]."""
    return 1.0 - math.exp(-2.0 * math.pi * fc * dt)


def clip(x, lo, hi, out: np.ndarray) -> np.ndarray:
    """``np.clip`` into ``out`` as two ufunc calls (several times cheaper on small arrays)."""
    np.maximum(x, lo, out=out)
    return np.minimum(out, hi, out=out)
