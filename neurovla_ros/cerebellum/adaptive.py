"""Adaptive tremor cancellation: a cerebellum-like filter that learns online. ROS-free.

The climbing-fibre error is the oscillation the IMU and encoders measure: the joint velocity
``e`` (fused estimate, high-passed). The mossy-fibre context is a sine/cosine pair at the
tracked tremor frequency. A complex weight per joint, ``W``, shapes that pair into a position
correction ``u = Re{W exp(i phi)}`` that is added to the reference (and its derivative to the
reference velocity).

Learning rule (normalised filtered-x LMS, in phasors): the forward model predicts how a
correction phasor shows up in ``e``: the complex matrix ``G`` (spinal servo + arm inertia with
its coupling between joints + loop delay + the high-pass here) at the tracked frequency.
Each step

    W <- (1 - dt/leak) W - (2 dt / adapt_time) * Ginv  e exp(-i phi),
    Ginv = (G^H G + g0^2 I)^-1 G^H  (regularised inverse).

Averaged over a period this is ``W <- W - (dt/adapt_time) Ginv (D + G W)``: the residual
phasor decays with the time constant ``adapt_time`` [s] whatever the sample rate or the plant
gain (stable by construction for ``dt << adapt_time`` while the model's error stays below
90 degrees), and converges to exact cancellation ``G W = -D``. Weights are bounded
(``max_correction`` [rad] per joint) and leak slowly.

Frequency tracking: ``e`` minus the predicted effect of the correction is the oscillation the
disturbance alone would cause (the canceller's "efference copy" removed), so its spectrum shows
the tremor even while it is cancelled. Coarse: a Hann-windowed DFT over the last ``window``
[s], every ``update_period`` [s], on a fine grid over the band (parabolic interpolation). A
rival: a peak away from the tracked frequency by more than ``jump_hz`` and over twice the
spectrum's amplitude at the tracked frequency. It re-targets the oscillator and restarts the
weights when it is seen twice in a row at the same place while the tracked oscillation has
faded in the spectrum (below half its level; the level holds while a rival dominates), or
when it has dominated for ``dominance_time`` [s] (default two windows: longer than anything
that passes through one window). Re-adaptation within about ``window + 3 adapt_time``.
Fine: the same oscillation demodulated at the tracked frequency (double-frequency ripple
removed, low-passed with ``pll_time``) is a phasor that turns at the frequency error; a
frequency-locked loop zeroes that turn (held while a rival dominates: the phasor then beats
with the rival). A safety monitor resets the weights and backs off if
the corrected oscillation stays well above the uncorrected one (a wrong forward model would
otherwise drive an oscillation).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .ops import cabs, cmatvec, cnorm
from .state import Shared

# status codes (diagnostics)
IDLE, ADAPTING, HOLDING, BACKOFF = 'idle', 'adapting', 'holding', 'backoff'
STATES = (IDLE, ADAPTING, HOLDING, BACKOFF)


class HighPass(Shared):
    """Two first-order high-pass sections at ``fc`` [Hz] over ``n`` channels, for irregular
    steps ``dt``: ``H(s) = (tau s / (1 + tau s))^2``, tau = 1 / (2 pi fc)."""

    SLOTS = ('tau', 'primed:bool')

    def __init__(self, fc: float, n: int):
        super().__init__()
        if fc <= 0:
            raise ValueError(f'high-pass corner must be > 0 Hz, got {fc}')
        self.tau = 1.0 / (2.0 * math.pi * fc)
        self.x1 = np.zeros(n)
        self.y1 = np.zeros(n)
        self.x2 = np.zeros(n)
        self.y = np.zeros(n)
        self.primed = False

    def step(self, x: np.ndarray, dt: float) -> np.ndarray:
        if not self.primed:
            self.x1[:] = x
            self.primed = True
        tau = self.tau
        a = tau / (tau + dt)
        # y1 = a (y1 + x - x1); y = a (y + y1 - x2)
        self.y1 += x
        self.y1 -= self.x1
        self.y1 *= a
        self.x1[:] = x
        self.y += self.y1
        self.y -= self.x2
        self.y *= a
        self.x2[:] = self.y1
        return self.y

    def response(self, f_hz: float) -> complex:
        ts = 2j * math.pi * f_hz * self.tau
        return (ts / (1.0 + ts)) ** 2


class TremorCanceller(Shared):
    """Adaptive sine/cosine canceller with frequency tracking over ``n`` joints.

    response: ``f_hz -> complex (n,) or (n, n)`` - the forward model's prediction of the joint
    velocity change [rad/s] per unit position correction [rad] at ``f_hz`` (diagonal or full;
    without the high-pass here, which this class adds itself).

    Per learning sample (:meth:`update`) and tick (:meth:`advance`, :meth:`fade`) the work is
    a few vector operations in a fixed order (:mod:`.ops`), shared with the C tick; the
    spectrum and the frequency tracking (:meth:`track_frequency`, due every
    ``update_period``: ``track_due``) run after the tick.
    """

    SLOTS = ('phi', 'advanced', 't', 'f_hat', 'locked:bool', 'state_code:int', 'listen',
             'r_ref', 'backoff', 'adapting_for', 'bad_since', 'good_for', 'strikes:int',
             'resets:int', 'since_update', 'track_due:bool', 'ibuf:int', 'filled:int',
             'nbuf:int', 'window', 'update_period', 'pll_time', 'adapt_time', 'leak_time',
             'fade_time', 'min_amplitude', 'listen_time', 'backoff_time')

    def __init__(self, n: int, rate_hz: float, response: Callable[[float], np.ndarray], *,
                 band=(4.0, 12.0), adapt_time: float = 0.25, leak_time: float = 30.0,
                 max_correction=0.05, window: float = 0.8, update_period: float = 0.1,
                 min_amplitude: float = 0.003, jump_hz: float = 0.6, highpass_hz: float = 2.0,
                 fade_time: float = 0.2, grid_step_hz: float = 0.25, pll_time: float = 0.15,
                 pll_gain: float = 0.3, backoff_time: float = 2.0, listen_time: float = 0.2,
                 dominance_time: float | None = None):
        if not 0 < band[0] < band[1] < rate_hz / 2:
            raise ValueError(f'band {band} Hz must lie inside (0, {rate_hz / 2}) Hz')
        if adapt_time <= 0 or leak_time <= 0 or fade_time <= 0:
            raise ValueError('adapt_time, leak_time and fade_time must be > 0 s')
        super().__init__()
        self.n, self.rate = n, float(rate_hz)
        self.response = response
        self.band = (float(band[0]), float(band[1]))
        self.adapt_time, self.leak_time, self.fade_time = adapt_time, leak_time, fade_time
        self.max_correction = np.broadcast_to(np.asarray(max_correction, float), (n,)).copy()
        self.min_amplitude, self.jump_hz = min_amplitude, jump_hz
        self.update_period = update_period
        self.pll_time, self.pll_gain = pll_time, pll_gain
        self.listen_time = listen_time
        # spectral amplitude at the tracked frequency while locked (slow mean, held while a
        # rival dominates): a real frequency change drops it
        self._level = 0.0
        self.dominance_time = 2.0 * window if dominance_time is None else dominance_time
        self._rival_f = None     # frequency of the rival peak seen at the last update
        self._rival_for = 0.0    # [s] it has dominated at that frequency
        self.hp = HighPass(highpass_hz, n)
        # oscillator, weights, forward model at f_hat
        self.f_hat = 0.5 * (self.band[0] + self.band[1])
        self.phi = 0.0
        self.advanced = 0.0
        self.w = np.zeros(n, complex)
        self.g = np.zeros((n, n), complex)
        self.g_inv = np.zeros((n, n), complex)
        self._set_frequency(self.f_hat)
        self.locked = False
        self.state_code = STATES.index(IDLE)
        # ring buffer of the disturbance-equivalent oscillation (with its sample times) for the
        # spectrum; each sample is written twice (i and i + nbuf) so that buf[i:i + nbuf] is
        # the ring, oldest first. Samples may be irregular (dropped ticks): the spectrum uses
        # their times.
        self.window = float(window)
        self.nbuf = max(16, int(round(window * rate_hz)))
        self.buf = np.zeros((2 * self.nbuf, n))
        self.tbuf = np.zeros(2 * self.nbuf)
        self.t = 0.0
        self.ibuf = 0
        self.filled = 0
        lo, hi = self.band
        self.grid = np.arange(lo - 1.0, hi + 1.0 + 1e-9, grid_step_hz)
        self._in_band = (self.grid >= lo) & (self.grid <= hi)
        self.since_update = 0.0
        self._low_since = 0.0
        self.bad_since = 0.0
        self.backoff = 0.0
        # outputs and diagnostics
        self.u = np.zeros(n)       # position correction [rad]
        self.ud = np.zeros(n)      # its derivative [rad/s]
        self.e_hp = np.zeros(n)
        self.dist = np.zeros(n)
        self.residual_ms = np.zeros(n)       # [rad^2/s^2] corrected oscillation (0.5 s mean)
        self.disturbance_ms = np.zeros(n)    # [rad^2/s^2] what it would be uncorrected
        self.amplitude = np.zeros(n)         # [rad/s] tremor amplitude at f_hat (spectrum)
        self.peak_ratio = 0.0
        self.resets = 0
        self.jumps = 0
        # disturbance phasor at f_hat (frequency-locked loop)
        self.z = np.zeros(n, complex)
        self.r = np.zeros(n, complex)      # residual phasor at f_hat
        self._z_prev = np.zeros(n, complex)
        self.adapting_for = 0.0
        self.good_for = 0.0
        self.strikes = 0
        self.listen = 0.0
        self.r_ref = 0.0
        self._cap = self.max_correction.copy()
        self.backoff_time = backoff_time
        self._eps = np.zeros(n, complex)
        self._y = np.zeros(n, complex)

    @property
    def state(self) -> str:
        """idle | adapting | holding | backoff"""
        return STATES[self.state_code]

    # ------------------------------------------------------------------ model
    def _set_frequency(self, f: float) -> None:
        self.f_hat = float(f)
        g = np.asarray(self.response(f), complex)
        if g.ndim == 1:
            g = np.diag(g)
        g = g * self.hp.response(f)  # the error is high-passed: same phase on every row
        self.g[:] = g
        gh = g.conj().T
        gg = gh @ g
        g0 = 1e-3 * math.sqrt(max(float(np.max(np.abs(np.diag(gg)))), 1e-24))
        self.g_inv[:] = np.linalg.solve(gg + (g0 * g0) * np.eye(self.n), gh)

    def refresh_model(self) -> None:
        """Re-evaluate the forward model at the tracked frequency (call when it changes)."""
        self._set_frequency(self.f_hat)

    def reset_weights(self) -> None:
        """No correction; listen for ``listen_time`` before learning again (to measure the
        uncorrected oscillation that the monitor compares against)."""
        self.w[:] = 0.0
        self.adapting_for = 0.0
        self.listen = self.listen_time
        self.r_ref = 0.0
        self._cap[:] = self.max_correction

    @property
    def weight_norm(self) -> float:
        """Euclidean norm of the correction amplitudes [rad]."""
        return float(np.linalg.norm(self.w))

    # ------------------------------------------------------------------ step
    def advance(self, dt: float) -> None:
        """Between learning samples: the oscillator runs on, the output follows it."""
        self.phi += 2.0 * math.pi * self.f_hat * dt
        self.advanced += dt
        phi = self.phi
        self._output(math.cos(phi), math.sin(phi))

    def update(self, dt: float, e: np.ndarray, adapt: bool = True,
               defer: bool = False) -> None:
        """One learning sample: ``e`` joint velocity [rad/s] (raw; high-passed here), ``dt``
        [s] since the previous ``update`` (``advance`` calls in between included).

        adapt False: weights are held (unhealthy loop), the oscillator and the tracking run on.
        Frequency tracking due: done here, or with ``defer`` left to the caller
        (:meth:`track_frequency` after the tick). Complex values are worked on as real and
        imaginary parts (:mod:`.ops`).
        """
        self.phi += 2.0 * math.pi * self.f_hat * max(0.0, dt - self.advanced)
        self.advanced = 0.0
        if self.phi > 1e4:
            self.phi = math.fmod(self.phi, 2.0 * math.pi)
        self.t += dt
        phi = self.phi
        c, s = math.cos(phi), math.sin(phi)
        eh = self.hp.step(e, dt)
        self.e_hp[:] = eh
        # predicted effect of the correction on eh: Re{G W exp(i phi)}; the rest is what the
        # disturbance alone causes
        y = cmatvec(self.g, self.w, self._y)
        dist = self.dist
        np.subtract(eh, y.real * c - y.imag * s, out=dist)
        i, nbuf = self.ibuf, self.nbuf
        self.buf[i] = dist
        self.buf[i + nbuf] = dist
        self.tbuf[i] = self.tbuf[i + nbuf] = self.t
        self.ibuf = (i + 1) % nbuf
        self.filled = min(self.filled + 1, nbuf)
        # its phasor at f_hat: 2 dist exp(-i phi) = Z + conj(Z) exp(-2i phi); the ripple is
        # removed with the current estimate before low-passing; the same for the corrected
        # oscillation (what is left of the tremor)
        b = min(1.0, dt / self.pll_time)
        c2, s2 = c * c - s * s, 2.0 * (c * s)       # exp(-2i phi) = c2 - i s2
        _phasor_step(self.z, dist, c, s, c2, s2, b)
        _phasor_step(self.r, eh, c, s, c2, s2, b)
        # slow mean squares for diagnostics and the safety monitor (time constant 0.5 s)
        a = min(1.0, dt / 0.5)
        self.residual_ms += a * (eh * eh - self.residual_ms)
        self.disturbance_ms += a * (dist * dist - self.disturbance_ms)

        self.since_update += dt
        if self.since_update >= self.update_period and self.t >= self.window:
            self.since_update = 0.0
            self.track_due = True
            if not defer:
                self.track_frequency()

        if self.backoff > 0.0:
            self.backoff -= dt
            self.state_code = 3       # BACKOFF
            self._fade(dt)
        elif adapt and self.locked and self.listen > 0.0:
            self.listen -= dt        # uncorrected: the reference level of the oscillation
            self.r_ref = cnorm(self.r)
            # the correction this oscillation needs; the weights may not wind up beyond twice
            # it (a loop that ignores the correction for a while - a spinal hold - cannot
            # make it grow without end)
            need = cabs(cmatvec(self.g_inv, self.r, self._y))
            np.minimum(self.max_correction, 2.0 * need + 0.1 * float(need.max()),
                       out=self._cap)
            self.state_code = 1       # ADAPTING
        elif adapt and self.locked:
            # W -= (2 dt / adapt_time) Ginv (eh exp(-i phi)), then leak and bound
            k = 2.0 * dt / self.adapt_time
            eps = self._eps
            eps.real = eh * (k * c)
            eps.imag = eh * (k * -s)
            d = cmatvec(self.g_inv, eps, self._y)
            w = self.w
            w.real -= d.real
            w.imag -= d.imag
            f = 1.0 - dt / self.leak_time
            w.real *= f
            w.imag *= f
            self._bound()
            self.state_code = 1       # ADAPTING
            self._monitor(dt)
        elif not self.locked:
            self._fade(dt)
            self.state_code = 0       # IDLE
        else:
            self.state_code = 2       # HOLDING
        self._output(c, s)

    def _output(self, c: float, s: float) -> None:
        """u = Re{W exp(i phi)}, u' = Re{i w W exp(i phi)} = -w Im{W exp(i phi)}."""
        wr, wi = self.w.real, self.w.imag
        np.subtract(wr * c, wi * s, out=self.u)
        np.multiply(-2.0 * math.pi * self.f_hat, wr * s + wi * c, out=self.ud)

    def fade(self, dt: float) -> None:
        """Stale inputs: no learning, the correction dies out (time constant ``fade_time``)."""
        self.phi += 2.0 * math.pi * self.f_hat * max(0.0, dt - self.advanced)
        self.advanced = 0.0
        self._fade(dt)
        self.state_code = 2           # HOLDING
        phi = self.phi
        self._output(math.cos(phi), math.sin(phi))

    def _fade(self, dt: float) -> None:
        f = math.exp(-dt / self.fade_time)
        self.w.real *= f
        self.w.imag *= f

    def _bound(self) -> None:
        mag = cabs(self.w)
        over = mag > self._cap
        if over.any():
            f = self._cap[over] / mag[over]
            self.w.real[over] *= f
            self.w.imag[over] *= f

    def _monitor(self, dt: float) -> None:
        """Do no harm. The residual phasor at f_hat against its level without correction
        (measured while listening after the last reset): above 1.5x that for 0.25 s (worse),
        or not below 0.5x after ``4 adapt_time`` (not cancelling), or a correction at its
        bound, mean that the forward model does not describe the loop now - or that the
        disturbance changed. Reset the weights; at a repeat within 10 s of good work also back
        off, for ``backoff_time`` [s], doubled at each further repeat (up to 8x)."""
        self.adapting_for += dt
        res = cnorm(self.r)
        ref = self.r_ref
        floor = self.min_amplitude
        mag = cabs(self.w)
        saturated = bool(np.any(mag >= 0.999 * self.max_correction))
        capped = bool(np.any(mag >= 0.999 * self._cap))
        long = self.adapting_for > 4.0 * self.adapt_time
        worse = res > 1.5 * ref + floor
        stuck = (long and res > 0.5 * ref + floor) or (capped and long)
        if worse or saturated or stuck:
            self.bad_since += dt
            self.good_for = 0.0
            if self.bad_since > (0.25 if worse or saturated else 1.0):
                self.reset_weights()
                self.resets += 1
                self.bad_since = 0.0
                if self.strikes:
                    self.backoff = self.backoff_time * 2.0 ** (self.strikes - 1)
                self.strikes = min(self.strikes + 1, 4)
        else:
            self.bad_since = 0.0
            self.good_for += dt
            if self.good_for > 10.0:
                self.strikes = 0

    def disturbance_phasor(self) -> np.ndarray:
        """Joint-velocity phasor [rad/s] the disturbance causes at ``f_hat`` (high-passed)."""
        return self.z.copy()

    # ------------------------------------------------------------------ frequency
    def spectrum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid [Hz], amplitude [rad/s] (root of the sum over joints of the squares) and
        per-joint amplitudes (F, n) of the recent disturbance-equivalent oscillation."""
        i0 = self.ibuf + (self.nbuf - self.filled)
        x = self.buf[i0:self.ibuf + self.nbuf]           # oldest first (view)
        t = self.tbuf[i0:self.ibuf + self.nbuf]
        keep = t >= t[-1] - self.window
        x, t = x[keep], t[keep]
        # Hann window over the time span, trapezoid weights for irregular samples,
        # amplitude-normalised: a sinusoid of amplitude A gives |X| = A
        span = max(t[-1] - t[0], 1e-9)
        w = np.gradient(t) * (0.5 - 0.5 * np.cos(2.0 * np.pi * (t - t[0]) / span))
        w *= 2.0 / max(w.sum(), 1e-12)
        arg = np.outer(self.grid, 2.0 * np.pi * (t - t[-1]))
        nf = len(self.grid)
        cs = np.vstack([np.cos(arg) * w, np.sin(arg) * w]) @ x   # (2F, n)
        per_joint = np.hypot(cs[:nf], cs[nf:])
        amp = np.sqrt(np.sum(per_joint * per_joint, axis=1))
        return self.grid, amp, per_joint

    def track_frequency(self) -> None:
        """Spectrum, lock, frequency jumps and the frequency-locked loop (every
        ``update_period``, when :meth:`update` set ``track_due``)."""
        self.track_due = False
        grid, amp, per_joint = self.spectrum()
        band_amp = np.where(self._in_band, amp, 0.0)
        k = int(np.argmax(band_amp))
        peak = float(band_amp[k])
        self.peak_ratio = peak / (float(np.median(amp)) + 1e-12)
        # a peak is a local maximum inside the band (a slope into the band edge is motion or
        # drift leaking in, not a tremor)
        local = 0 < k < len(grid) - 1 and amp[k] >= amp[k - 1] and amp[k] >= amp[k + 1]
        strong = local and peak >= self.min_amplitude and self.peak_ratio >= 3.0
        i_hat = int(np.argmin(np.abs(grid - self.f_hat)))
        self.amplitude[:] = per_joint[i_hat]
        a_hat = float(amp[i_hat])
        z_prev = self._z_prev.copy()
        self._z_prev[:] = self.z
        if self.locked:
            # locked: stays so while the tracked (narrow-band) oscillation is there, even when
            # motion or noise make the spectrum broad
            if float(np.linalg.norm(self.z)) < 0.5 * self.min_amplitude:
                self._low_since += self.update_period
                if self._low_since >= 1.0:
                    self.locked = False  # tremor gone: the weights fade out
                    self._rival_f = None
                    return
            else:
                self._low_since = 0.0
        elif not strong:
            return
        f = grid[k]
        if 0 < k < len(grid) - 1:  # parabolic interpolation on the log amplitude
            y0, y1, y2 = (math.log(max(float(v), 1e-12)) for v in amp[k - 1:k + 2])
            den = y0 - 2 * y1 + y2
            if den < 0:
                f += 0.5 * (y0 - y2) / den * (grid[1] - grid[0])
        f = min(max(f, self.band[0]), self.band[1])
        if not self.locked:
            self.locked = True
            self._low_since = 0.0
            self._retarget(f, peak)
            return
        # a rival: a strong peak elsewhere that clearly dominates the tracked frequency. A new
        # tremor frequency when it is seen twice in a row at the same place while the tracked
        # oscillation has faded (below half its level in the spectrum, whose window separates
        # the two; motion content passing through the band does not make the tremor
        # disappear), or when it has dominated for dominance_time (a new tremor stronger than
        # the old one leaks into the old one's bin). Meanwhile the level and the
        # frequency-locked loop hold.
        if strong and abs(f - self.f_hat) > self.jump_hz and peak > 2.0 * a_hat:
            if self._rival_f is not None and abs(f - self._rival_f) < self.jump_hz:
                self._rival_for += self.update_period
            else:
                self._rival_for = 0.0
            self._rival_f = f
            faded = a_hat < 0.5 * self._level
            if (faded and self._rival_for > 0.0) \
                    or self._rival_for >= self.dominance_time - 1e-9:
                self._retarget(f, peak)
                self.jumps += 1
            return
        self._rival_f = None
        self._rival_for = 0.0
        self._level += 0.2 * (a_hat - self._level)
        # fine: the disturbance phasor turns at the frequency error (frequency-locked loop)
        dot = complex(np.vdot(z_prev, self.z))
        if dot.real > 0.0:  # less than a quarter turn per update: a usable phase difference
            df = math.atan2(dot.imag, dot.real) / (2.0 * math.pi * self.update_period)
            f_new = self.f_hat + self.pll_gain * df
            self._set_frequency(min(max(f_new, self.band[0]), self.band[1]))

    def _retarget(self, f: float, level: float) -> None:
        """Lock on (or jump to) ``f`` [Hz]: the oscillator there, the weights restarted."""
        self._set_frequency(f)
        self.reset_weights()
        self.z[:] = 0.0      # demodulated at the old frequency: it would turn fast
        self._z_prev[:] = 0.0
        self._rival_f = None
        self._rival_for = 0.0
        self._level = level


def _phasor_step(z: np.ndarray, x: np.ndarray, c: float, s: float, c2: float, s2: float,
                 b: float) -> None:
    """Z += b (2 x exp(-i phi) - conj(Z) exp(-2i phi) - Z), exp(-i phi) = c - i s,
    exp(-2i phi) = c2 - i s2 (real and imaginary parts; the C tick's order)."""
    zr, zi = z.real, z.imag
    er = x * (2.0 * c) - (zr * c2 - zi * s2) - zr
    ei = x * (-2.0 * s) + (zr * s2 + zi * c2) - zi
    z.real += b * er
    z.imag += b * ei
