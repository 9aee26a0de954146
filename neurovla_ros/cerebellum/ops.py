"""Small vector operations in a fixed order of floating-point operations. ROS-free.

``np.dot``, ``@``, ``np.linalg.norm`` and numpy's complex ufuncs leave the order of the
additions (and fused multiply-adds) to BLAS and to the SIMD code of the machine; the C tick
(``_tick.c``) could not reproduce their last bits. The per-tick reference code uses these
instead, and ``_tick.c`` does the same operations in the same order (row by row, columns
summed from the first; complex numbers as real and imaginary parts):

* ``matvec``: ``out_i = m_i0 x_0 + m_i1 x_1 + ...``;
* ``cmatvec``: the same for complex ``m`` and ``x`` (``re = a c - b d``, ``im = a d + b c``);
* ``cnorm``: ``sqrt(sum |z_i|^2)``; ``cabs``: ``sqrt(re^2 + im^2)`` per element.
"""
from __future__ import annotations

import math

import numpy as np


def matvec(m: np.ndarray, x, out: np.ndarray) -> np.ndarray:
    """``out = m @ x`` (real), columns added in order."""
    np.multiply(m[:, 0], x[0], out=out)
    for j in range(1, m.shape[1]):
        out += m[:, j] * x[j]
    return out


def cmatvec(m: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = m @ x`` (complex; ``out`` must not be ``x``), columns added in order."""
    mr, mi, xr, xi = m.real, m.imag, x.real, x.imag
    re = mr[:, 0] * xr[0] - mi[:, 0] * xi[0]
    im = mr[:, 0] * xi[0] + mi[:, 0] * xr[0]
    for j in range(1, m.shape[1]):
        re += mr[:, j] * xr[j] - mi[:, j] * xi[j]
        im += mr[:, j] * xi[j] + mi[:, j] * xr[j]
    out.real = re
    out.imag = im
    return out


def cabs(z: np.ndarray) -> np.ndarray:
    """``|z|`` per element as ``sqrt(re^2 + im^2)``."""
    return np.sqrt(z.real * z.real + z.imag * z.imag)


def cnorm(z: np.ndarray) -> float:
    """Euclidean norm of a complex vector, summed in order."""
    s = 0.0
    for v in z.tolist():
        s += v.real * v.real + v.imag * v.imag
    return math.sqrt(s)
