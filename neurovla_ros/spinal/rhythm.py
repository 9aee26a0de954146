"""The spinal rhythm generator (a central pattern generator) and its program grammar, ROS-free.

Programs (``std_msgs/String`` on ``spinal/rhythm``; the grammar, case and spaces do not matter)::

    [shake OPTION... |] STAGE ; STAGE ; ...      or      stop

    STAGE   N @ F Hz        exactly N cycles (1-1000) at F Hz (rhythm_min_hz-rhythm_max_hz)
            pause T s       hold still for T s (0 < T <= 60)
    OPTION  joint=J         shake one arm joint (``wrist_1`` or ``wrist_1_joint``) ...
            dir=D           ... or move the tool centre point along a base axis
                            (x, y, z, -x, -y, -z), mapped to joints through the Jacobian
                            at the pose where the program starts
            amp=A[unit]     amplitude: rad or deg for a joint (default rad), m or mm for a
                            direction (default m)

    e.g. ``shake joint=wrist_1 amp=0.2 | 4 @ 2Hz ; pause 1s ; 3 @ 3Hz``

Without a head the node's defaults (``rhythm_joint``, ``rhythm_amplitude``) apply. ``stop``
ends a running program at the end of its current cycle (so it ends where it began). A bad
program is refused as a whole with the reason (:class:`ProgramError`).

The generator (:class:`RhythmGenerator`) is an adaptive-frequency phase oscillator (the
phase-error form of Righetti, Buchli and Ijspeert, "Dynamic Hebbian learning in adaptive
frequency oscillators", Physica D 216, 2006) with three states: phase ``theta`` [cycles in
the stage], frequency ``omega`` [Hz] and amplitude ``r`` [rad or m]::

    dtheta/dt = omega + clip(k_phase * e, -max_correction * f, +max_correction * f)
    domega/dt = k_freq * e + (f - omega) / tau_freq     (omega kept within +-10 % of f)
    r         = A * envelope(theta)              (0 -> A over the first quarter cycle, back
                                                  to 0 over the last: no velocity step)
    offset    = r * sin(2 pi theta) * direction

``e`` is the phase error of the arm's measured motion (from the wrist IMU, see
:class:`AxisSensor`) against the ideal program clock ``Phi = f * (t - T_stage)``; the program
clock is exact (stage starts ``T_stage`` are the sums of the ideal stage durations), so the
measured motion is pulled onto the ideal program and a constant tracking lag becomes a
lead of the command. When the sensor is stale, ``e`` is not formed: the oscillator
free-runs on ``theta`` and ``omega``; when it returns, the phase correction is rate-limited
(``max_correction``), so re-locking never steps the command. A stage ends exactly when
``theta`` reaches N (the offset is then 0 and its velocity 0: the stage ends where it began);
so the count is exact by construction.

A ring of LIF neurons (:class:`PhaseRing`) carries the oscillator's phase as a population
code (a bump of activity that travels round the ring once per cycle) and the phase decoded
from its spikes is reported; the command is computed from the oscillator state, not from the
decoded phase. The ring's spikes and synaptic operations are part of the spinal layer's
sparsity and energy figures.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..robot.ik import damped_pinv
from ..robot.transforms import quat_xyzw_to_matrix, rotation_vector

MAX_STAGES = 32
MAX_TEXT = 1000
MAX_CYCLES = 1000
MAX_PAUSE = 60.0              # [s]
RAMP = 0.25                   # envelope ramp [cycles]
FREQ_BAND = 0.1               # the adapted frequency stays within +-10 % of the stage's
SPEED_MARGIN = 1.3           # peak speed over A |d| 2 pi f: frequency band + correction
DIRECTIONS = {'x': (1, 0, 0), 'y': (0, 1, 0), 'z': (0, 0, 1),
              '-x': (-1, 0, 0), '-y': (0, -1, 0), '-z': (0, 0, -1)}
_NUM = r'([0-9]+(?:\.[0-9]*)?|\.[0-9]+)'
_STAGE = re.compile(r'^([0-9]+)\s*@\s*' + _NUM + r'\s*hz$')
_PAUSE = re.compile(r'^pause\s+' + _NUM + r'\s*s$')
_AMP = re.compile(r'^' + _NUM + r'\s*(rad|deg|mm|m)?$')


class ProgramError(ValueError):
    """A program that cannot run; the message says why."""


@dataclass(frozen=True)
class Stage:
    cycles: int = 0           # 0: a pause
    hz: float = 0.0
    seconds: float = 0.0

    @property
    def duration(self) -> float:
        return self.cycles / self.hz if self.cycles else self.seconds

    def __str__(self) -> str:
        return f'{self.cycles} @ {self.hz:g}Hz' if self.cycles else f'pause {self.seconds:g}s'


@dataclass(frozen=True)
class Program:
    stages: tuple = ()
    joint: str = ''           # a joint axis ...
    direction: tuple = ()     # ... or a tool direction (unit, base frame)
    amplitude: float = 0.0    # [rad] for a joint, [m] for a direction
    stop: bool = False

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)

    @property
    def cycles(self) -> list[int]:
        return [s.cycles for s in self.stages]

    def __str__(self) -> str:
        if self.stop:
            return 'stop'
        axis = f'joint={self.joint}' if self.joint else \
            'dir=' + next(k for k, v in DIRECTIONS.items() if v == self.direction)
        return f'shake {axis} amp={self.amplitude!r} | ' + ' ; '.join(map(str, self.stages))


@dataclass(frozen=True)
class Limits:
    """What a program may ask for."""
    joints: tuple             # arm joint names
    min_hz: float = 0.5
    max_hz: float = 4.0
    max_joint_amplitude: float = 0.5    # [rad]
    max_tool_amplitude: float = 0.1     # [m]


def _joint_name(name: str, joints) -> str:
    for j in joints:
        if name in (j, j.removesuffix('_joint')):
            return j
    raise ProgramError(f'unknown joint {name!r} (arm joints: '
                       f'{", ".join(j.removesuffix("_joint") for j in joints)})')


def _head(text: str, limits: Limits, joint: str, amplitude: float):
    words = text.split()
    if not words or words[0] != 'shake':
        raise ProgramError(f'head {text!r}: expected "shake joint=J amp=A |" or "shake dir=D '
                           'amp=A |"')
    opts = {}
    for w in words[1:]:
        key, eq, value = w.partition('=')
        if not eq or key not in ('joint', 'dir', 'amp') or not value:
            raise ProgramError(f'head: {w!r} is not joint=J, dir=D or amp=A')
        if key in opts:
            raise ProgramError(f'head: {key} given twice')
        opts[key] = value
    if 'joint' in opts and 'dir' in opts:
        raise ProgramError('head: give joint= or dir=, not both')
    direction = ()
    if 'dir' in opts:
        if opts['dir'] not in DIRECTIONS:
            raise ProgramError(f'head: dir={opts["dir"]} is not one of {", ".join(DIRECTIONS)}')
        direction, joint = DIRECTIONS[opts['dir']], ''
    elif 'joint' in opts:
        joint = _joint_name(opts['joint'], limits.joints)
    if 'amp' in opts:
        m = _AMP.match(opts['amp'])
        if not m:
            raise ProgramError(f'head: amp={opts["amp"]} is not a number with an optional unit')
        unit = m.group(2) or ('m' if direction else 'rad')
        if (unit in ('m', 'mm')) != bool(direction):
            fits = 'a tool direction (m, mm)' if direction else 'a joint (rad, deg)'
            raise ProgramError(f'head: amp in {unit} does not fit {fits}')
        amplitude = float(m.group(1)) * {'rad': 1.0, 'deg': math.pi / 180, 'm': 1.0,
                                         'mm': 1e-3}[unit]
    elif direction:
        raise ProgramError('head: dir= needs amp= in m or mm')
    top = limits.max_tool_amplitude if direction else limits.max_joint_amplitude
    if not 0.0 < amplitude <= top:
        raise ProgramError(f'amplitude {amplitude:g} {"m" if direction else "rad"}: must be '
                           f'> 0 and <= {top:g}')
    return joint, direction, amplitude


def parse(text, limits: Limits, joint: str, amplitude: float) -> Program:
    """The :class:`Program` of ``text``; ``joint`` and ``amplitude`` [rad] are the defaults
    of a program without a head. Raises :class:`ProgramError` with the reason."""
    if not isinstance(text, str):
        raise ProgramError('a program is text')
    if len(text) > MAX_TEXT:
        raise ProgramError(f'program longer than {MAX_TEXT} characters')
    text = text.strip().lower()
    if text == 'stop':
        return Program(stop=True)
    head, bar, body = text.rpartition('|')
    if not body.strip():
        raise ProgramError('no stages (expected e.g. "4 @ 2Hz ; pause 1s ; 3 @ 3Hz")')
    if bar:
        joint, direction, amplitude = _head(head.strip(), limits, joint, amplitude)
    else:
        joint, direction = _joint_name(joint, limits.joints), ()
        if not 0.0 < amplitude <= limits.max_joint_amplitude:
            raise ProgramError(f'amplitude {amplitude:g} rad: must be > 0 and <= '
                               f'{limits.max_joint_amplitude:g}')
    clauses = [c.strip() for c in body.split(';')]
    if clauses[-1] == '':
        clauses.pop()                   # a trailing ';' is fine
    if len(clauses) > MAX_STAGES:
        raise ProgramError(f'{len(clauses)} stages, at most {MAX_STAGES}')
    stages = []
    for i, c in enumerate(clauses, 1):
        where = f'stage {i} {c!r}'
        if not c:
            raise ProgramError(f'stage {i} is empty (two ";" in a row)')
        if c == 'stop':
            raise ProgramError(f'{where}: "stop" stands alone')
        m = _STAGE.match(c)
        if m:
            n, hz = int(m.group(1)), float(m.group(2))
            if not 1 <= n <= MAX_CYCLES:
                raise ProgramError(f'{where}: {n} cycles; a stage has 1-{MAX_CYCLES}')
            if not limits.min_hz <= hz <= limits.max_hz:
                raise ProgramError(f'{where}: {hz:g} Hz is outside {limits.min_hz:g}-'
                                   f'{limits.max_hz:g} Hz')
            stages.append(Stage(cycles=n, hz=hz))
            continue
        m = _PAUSE.match(c)
        if m:
            t = float(m.group(1))
            if not 0.0 < t <= MAX_PAUSE:
                raise ProgramError(f'{where}: a pause lasts > 0 and <= {MAX_PAUSE:g} s')
            stages.append(Stage(seconds=t))
            continue
        raise ProgramError(f'{where}: not a stage (expected "N @ F Hz" or "pause T s")')
    if not any(s.cycles for s in stages):
        raise ProgramError('no cycle stage (expected e.g. "4 @ 2Hz")')
    return Program(tuple(stages), joint, direction, amplitude)


def joint_direction(model, program: Program, q0) -> np.ndarray:
    """Joint-space offset per unit amplitude [rad/rad or rad/m] of ``program`` at the pose
    ``q0``: a unit vector for a joint, the damped pseudo-inverse of the tcp's linear Jacobian
    times the direction for a tool direction."""
    names = list(model.arm_joints)
    d = np.zeros(len(names))
    if program.joint:
        d[names.index(program.joint)] = 1.0
    else:
        jac = model.jacobian(np.asarray(q0, float))[:3]
        d[:] = damped_pinv(jac, 0.02) @ np.asarray(program.direction, float)
    return d


def check_limits(program: Program, direction, q0, lower, upper, velocity,
                 velocity_scale: float) -> None:
    """ProgramError when the excursion around ``q0`` leaves the joint limits or a stage's
    peak joint speed (A |d| 2 pi f, times SPEED_MARGIN for the adapted frequency and the
    phase correction; the envelope ramps add none) exceeds ``velocity_scale`` of the URDF
    velocity limit."""
    excursion = program.amplitude * np.abs(direction)
    over = (q0 + excursion > upper) | (q0 - excursion < lower)
    if np.any(over):
        j = int(np.argmax(over))
        raise ProgramError(f'the excursion of {excursion[j]:.3f} rad around {q0[j]:.3f} leaves '
                           f'joint {j + 1}\'s limits [{lower[j]:.3f}, {upper[j]:.3f}]')
    fmax = max(s.hz for s in program.stages if s.cycles)
    need = SPEED_MARGIN * excursion * 2.0 * math.pi * fmax
    allowed = velocity_scale * np.asarray(velocity)
    if np.any(need > allowed):
        j = int(np.argmax(need / allowed))
        raise ProgramError(f'at {fmax:g} Hz joint {j + 1} would need {need[j]:.2f} rad/s, over '
                           f'{allowed[j]:.2f} rad/s ({velocity_scale:g} of its limit): lower '
                           'the amplitude or the frequency')


def envelope(theta: float, n: int) -> tuple[float, float]:
    """Amplitude envelope at stage phase ``theta`` of ``n`` cycles and its derivative
    [1/cycle]: smoothstep over the first and last RAMP cycles, 1 between."""
    x = min(theta, n - theta) / RAMP
    if x >= 1.0:
        return 1.0, 0.0
    if x <= 0.0:
        return 0.0, 0.0
    sign = 1.0 if theta < n - theta else -1.0
    return x * x * (3.0 - 2.0 * x), sign * 6.0 * x * (1.0 - x) / RAMP


def wrap(x: float) -> float:
    """``x`` [cycles] wrapped to [-0.5, 0.5)."""
    return (x + 0.5) % 1.0 - 0.5


class PhaseRing:
    """A ring of ``n`` LIF neurons carrying a phase as a travelling bump of activity.

    Neuron i prefers the phase i/n; while driven its input current is
    ``gain * max(0, cos 2 pi (phase - i/n)) ** 4`` (a narrow bump); membranes leak with
    ``tau`` and fire at 1 (reset to 0). The phase is read back from the spikes by a
    population vector over exponentially filtered spike traces (``tau_trace``). Each spike
    costs 2 synaptic operations (the cos and sin read-out synapses)."""

    def __init__(self, n: int = 24, gain: float = 400.0, tau: float = 0.01,
                 tau_trace: float = 0.01):
        self.n, self.gain, self.tau, self.tau_trace = n, gain, tau, tau_trace
        p = 2.0 * math.pi * np.arange(n) / n
        self._cos, self._sin = np.cos(p), np.sin(p)
        self.v = np.zeros(n)
        self.trace = np.zeros(n)
        self._i = np.zeros(n)
        self._spk = np.zeros(n, bool)
        self.spikes = self.sops = 0
        self.ticks = 0

    def reset(self) -> None:
        self.v.fill(0.0)
        self.trace.fill(0.0)

    def step(self, phase: float, dt: float) -> None:
        """One tick driven by ``phase`` [cycles]."""
        a = 2.0 * math.pi * phase
        i = self._i
        np.multiply(self._cos, math.cos(a), out=i)
        i += self._sin * math.sin(a)            # cos(a - p_i)
        np.maximum(i, 0.0, out=i)
        i **= 4
        v = self.v
        v *= 1.0 - dt / self.tau
        v += (self.gain * dt) * i
        spk = np.greater_equal(v, 1.0, out=self._spk)
        v[spk] = 0.0
        self.trace *= 1.0 - dt / self.tau_trace
        self.trace += spk
        k = int(np.count_nonzero(spk))
        self.spikes += k
        self.sops += 2 * k
        self.ticks += 1

    def decoded(self) -> float:
        """Phase [cycles, 0-1] of the population vector of the spike traces (NaN: silent)."""
        c, s = float(self.trace @ self._cos), float(self.trace @ self._sin)
        if c == 0.0 and s == 0.0:
            return math.nan
        return (math.atan2(s, c) / (2.0 * math.pi)) % 1.0

    def reset_counters(self) -> None:
        self.spikes = self.sops = self.ticks = 0


class AxisSensor:
    """The arm's motion along a program's axis from the wrist IMU: displacement ``x`` and
    rate ``v`` [rad or m of the program's amplitude], for the phase ``atan2(x, v / 2 pi f)``.

    The IMU rotation expected per unit of the axis is ``g = R_base J_w(q_c) d`` (the angular
    Jacobian of imu_link at the centre pose ``q_c``, ``d`` the joint direction); ``x`` is the
    measured rotation from the centre orientation projected on it, ``v`` the gyro's. The base
    rotation ``R_base`` of the IMU's world frame is calibrated once from the first sample
    and the joint state of that moment (:meth:`calibrate`). An axis that hardly turns the
    wrist (``|g| < min_gain``, e.g. some tool directions) gives no reading: the generator then
    free-runs."""

    def __init__(self, model, direction, q_center, min_gain: float = 0.05):
        self.model = model
        self.q_center = np.array(q_center, float)
        t, jac = model.pose_and_jacobian(self.q_center, tip='imu_link')
        self._r_fk = t[:3, :3]
        self._g_fk = jac[3:] @ np.asarray(direction, float)
        n2 = float(self._g_fk @ self._g_fk)
        self.usable = n2 >= min_gain * min_gain
        self._g_fk /= max(n2, 1e-12)        # x = rotvec . g / |g|^2
        self.r0 = None                      # centre orientation in the IMU's world frame
        self.g = None

    def calibrate(self, quat_xyzw, q_now) -> None:
        r = quat_xyzw_to_matrix(*quat_xyzw)
        r_base = r @ self.model.fk(np.asarray(q_now, float), tip='imu_link')[:3, :3].T
        self.r0 = r_base @ self._r_fk
        self.g = r_base @ self._g_fk

    def read(self, quat_xyzw, gyro) -> tuple[float, float]:
        r = quat_xyzw_to_matrix(*quat_xyzw)
        x = float(rotation_vector(r @ self.r0.T) @ self.g)
        v = float((r @ np.asarray(gyro, float)) @ self.g)
        return x, v


@dataclass
class RhythmConfig:
    k_phase: float = 6.0          # phase coupling [1/s]
    k_freq: float = 2.0           # frequency adaptation [Hz/s per cycle]
    tau_freq: float = 0.5         # the adapted frequency relaxes to the stage's [s]
    max_correction: float = 0.2   # largest phase correction, share of f [1]
    sensor_timeout: float = 0.05  # an entrainment sample older than this is stale [s]
    lead: float = 0.0             # initial lead of the command over the program clock [s]


IDLE, RUNNING, PAUSED = 'idle', 'running', 'paused'


class RhythmGenerator:
    """The oscillator running a :class:`Program` (see the module docstring).

    ``start(program, d, t)`` then ``step(t, dt)`` once per control tick (fills ``offset`` and
    ``offset_vel``, joint space); ``sense(ts, x, v)`` with each entrainment sample;
    ``request_stop()`` ends at the end of the current cycle; ``abort()`` at once (the caller
    holds the pose). ``events`` collects (kind, t, dict) for the node's diagnostics."""

    def __init__(self, cfg: RhythmConfig | None = None, n_joints: int = 6, ring=None):
        self.cfg = cfg or RhythmConfig()
        self.ring = ring or PhaseRing()
        self.offset = np.zeros(n_joints)
        self.offset_vel = np.zeros(n_joints)
        self.direction = np.zeros(n_joints)
        self.program = None
        self.state = IDLE
        self.events: list = []
        self.stage = 0
        self.theta = 0.0            # phase in the stage [cycles]
        self.omega = 0.0            # frequency [Hz]
        self.r = 0.0                # amplitude [rad or m]
        self.t_stage = 0.0          # ideal (program-clock) start of the stage
        self.t_begin = 0.0          # when the command's stage began
        self.cycles_done = 0        # whole cycles of the current stage
        self.total_cycles = 0
        self.counts: list[int] = []
        self.error = 0.0            # last phase error [cycles]
        self.t_sense = -math.inf
        self.locked = False
        self._stop = False
        self._rate = 0.0

    # ---------------------------------------------------------------- control
    def start(self, program: Program, direction, t: float) -> None:
        self.program, self.direction[:] = program, direction
        self.counts = [0] * len(program.stages)
        self.total_cycles = 0
        self._stop = False
        self.error = 0.0
        self.t_sense = -math.inf
        self.ring.reset()
        self.events.append(('started', t, {'program': str(program)}))
        self._enter(0, t, t + self.cfg.lead, 0.0)

    def _enter(self, k: int, t: float, t_ideal: float, carry: float) -> None:
        """Stage ``k`` begins at ``t``; its ideal start is ``t_ideal``; ``carry`` [s] of the
        tick already belongs to it."""
        st = self.program.stages[k]
        self.stage, self.t_stage, self.t_begin = k, t_ideal, t - carry
        self.cycles_done = 0
        self.omega = self._rate = st.hz
        self.theta = carry * st.hz if st.cycles else 0.0
        self.state = RUNNING if st.cycles else PAUSED

    def request_stop(self) -> None:
        if self.state != IDLE:
            self._stop = True

    def abort(self, t: float, why: str) -> None:
        if self.state != IDLE:
            self.events.append(('aborted', t, {'reason': why, 'stage': self.stage + 1,
                                               'cycles_done': self.cycles_done}))
            self._idle()

    def _idle(self) -> None:
        self.state = IDLE
        self.offset.fill(0.0)
        self.offset_vel.fill(0.0)
        self.r = 0.0

    @property
    def active(self) -> bool:
        return self.state != IDLE

    # ---------------------------------------------------------------- entrainment
    def measured_phase(self, x: float, v: float) -> float:
        return (math.atan2(x, v / (2.0 * math.pi * self.omega)) / (2.0 * math.pi)) % 1.0

    def sense(self, ts: float, x: float, v: float) -> None:
        """An entrainment sample stamped ``ts``: the arm's displacement ``x`` and rate ``v``
        along the axis. Used only in the full-amplitude part of a stage."""
        if self.state != RUNNING or not (math.isfinite(x) and math.isfinite(v)):
            return
        st = self.program.stages[self.stage]
        ideal = st.hz * (ts - self.t_stage)
        if not 2 * RAMP <= ideal <= st.cycles - 2 * RAMP:
            return
        self.error = wrap(ideal - self.measured_phase(x, v))
        self.t_sense = ts

    # ---------------------------------------------------------------- tick
    def step(self, t: float, dt: float) -> bool:
        """Advance to ``t`` by ``dt``; False when idle (offset zero)."""
        if self.state == IDLE:
            return False
        cfg, prog = self.cfg, self.program
        st = prog.stages[self.stage]
        fresh = t - self.t_sense <= cfg.sensor_timeout
        self.locked = fresh
        if self.state == PAUSED:
            left = self.t_begin + st.seconds - t
            if left <= 0.0 or self._stop:
                self._next(t, -left if left <= 0 else 0.0)
            self._output(dt)
            return self.state != IDLE
        rate = self._phase_rate(st, t, dt, fresh)
        theta = self.theta + rate * dt
        n = st.cycles if not self._stop else min(st.cycles, math.floor(self.theta) + 1)
        if theta >= n:
            self.counts[self.stage] = n
            self.total_cycles += n - self.cycles_done
            self.cycles_done = n
            self.theta = float(n)
            self._next(t, (theta - n) / rate)
        else:
            self.theta = theta
            done = int(theta)
            if done != self.cycles_done:
                self.total_cycles += done - self.cycles_done
                self.cycles_done = self.counts[self.stage] = done
        self._rate = rate
        self._output(dt)
        return self.state != IDLE

    def _phase_rate(self, st: Stage, t: float, dt: float, fresh: bool) -> float:
        """dtheta/dt of this tick: the stage frequency adapted and corrected by the phase
        error while the sensor is fresh, the oscillator's own state while it is not."""
        cfg = self.cfg
        e = self.error if fresh else 0.0
        lim = cfg.max_correction * st.hz
        corr = min(lim, max(-lim, cfg.k_phase * e))
        if fresh:
            band = FREQ_BAND * st.hz
            w = self.omega + (cfg.k_freq * e + (st.hz - self.omega) / cfg.tau_freq) * dt
            self.omega = min(st.hz + band, max(st.hz - band, w))
        return self.omega + corr

    def _next(self, t: float, carry: float) -> None:
        prog, k = self.program, self.stage
        st = prog.stages[k]
        self.events.append(('stage_done', t, {'stage': k + 1, 'cycles': self.counts[k],
                                              'of': st.cycles}))
        if k + 1 >= len(prog.stages) or self._stop:
            self.events.append(('finished', t, {'cycles': self.total_cycles,
                                                'stopped': self._stop}))
            self._idle()
            return
        self._enter(k + 1, t, self.t_stage + st.duration, carry)

    def _output(self, dt: float) -> None:
        if self.state != RUNNING:
            self.offset.fill(0.0)
            self.offset_vel.fill(0.0)
            self.r = 0.0
            return
        st = self.program.stages[self.stage]
        env, denv = envelope(self.theta, st.cycles)
        a = 2.0 * math.pi * self.theta
        amp = self.program.amplitude
        self.r = amp * env
        s, c = math.sin(a), math.cos(a)
        rate = self._rate
        np.multiply(self.direction, self.r * s, out=self.offset)
        np.multiply(self.direction, amp * rate * (denv * s + env * 2.0 * math.pi * c),
                    out=self.offset_vel)
        self.ring.step(self.theta, dt)

    # ---------------------------------------------------------------- figures
    def ideal_phase(self, t: float) -> float:
        """Phase of the ideal program clock in the running stage [cycles] (NaN: none)."""
        if self.state != RUNNING:
            return math.nan
        return self.program.stages[self.stage].hz * (t - self.t_stage)

    def status(self) -> dict:
        running = self.state == RUNNING
        out = {'rhythm_state': self.state,
               'rhythm_program': str(self.program) if self.program else '',
               'rhythm_stage': self.stage + 1 if self.state != IDLE else 0,
               'rhythm_stages': len(self.program.stages) if self.program else 0,
               'rhythm_phase': self.theta % 1.0 if running else 0.0,
               'rhythm_frequency_hz': self.omega if running else 0.0,
               'rhythm_cycles_done': self.cycles_done,
               'rhythm_cycles_total': self.total_cycles,
               'rhythm_counts': ','.join(map(str, self.counts)),
               'rhythm_phase_error': self.error,
               'rhythm_entrained': self.locked,
               'rhythm_ring_phase': self.ring.decoded() if running else 0.0}
        return out


class WindowRhythm(RhythmGenerator):
    """The benchmark's baselines: the command phase is taken from the sensor, not kept.

    In the full-amplitude part of a stage the phase is the measured one (unwrapped next to the
    command's) plus ``lead`` [s] of the stage frequency (the arm's tracking lag), from a line
    fit to the last ``window`` samples: ``window=1`` is memoryless (the newest sample only;
    it stops when the sensor does), ``window=16`` the NeuroVLA paper's 16-state history (the
    fit is extrapolated at most ``window`` sample periods past its newest sample, then it
    stops too). The phase never runs backwards and advances at most ``1 + max_correction``
    times the stage frequency (no command step). The ramps at a stage's start and end, where
    the amplitude is too small to read a phase, run on the stage frequency. Counts and stage
    ends are the generator's (exact by construction), so what differs is the timing."""

    def __init__(self, window: int, lead: float, period: float, cfg=None, n_joints=6,
                 ring=None):
        super().__init__(cfg, n_joints, ring)
        self.window, self.lead, self.period = int(window), float(lead), float(period)
        self._ts = np.zeros(self.window)
        self._ph = np.zeros(self.window)
        self._n = 0
        self._fit = (0.0, 0.0, 0.0)     # (phase at the newest sample, slope, its stamp)

    def _enter(self, k, t, t_ideal, carry) -> None:
        super()._enter(k, t, t_ideal, carry)
        self._n = 0

    def sense(self, ts: float, x: float, v: float) -> None:
        if self.state != RUNNING or not (math.isfinite(x) and math.isfinite(v)):
            return
        st = self.program.stages[self.stage]
        if not 2 * RAMP <= self.theta <= st.cycles - 2 * RAMP:
            return
        phi = self.measured_phase(x, v)
        phi += round(self.theta - self.lead * st.hz - phi)      # next to the command's
        self.error = wrap(st.hz * (ts - self.t_stage) - phi)
        self.t_sense = ts
        k = self._n % self.window
        self._ts[k], self._ph[k] = ts, phi
        self._n += 1
        m = min(self._n, self.window)
        if m < 2:
            self._fit = (phi, st.hz, ts)
            return
        t_w, p_w = self._ts[:m], self._ph[:m]
        tm = t_w.mean()
        var = float(((t_w - tm) ** 2).sum())
        slope = float(((t_w - tm) * (p_w - p_w.mean())).sum()) / var if var > 0 else st.hz
        self._fit = (float(p_w.mean()) + slope * (ts - tm), slope, ts)

    def _phase_rate(self, st: Stage, t: float, dt: float, fresh: bool) -> float:
        self.omega = st.hz
        if not self._n or not 2 * RAMP <= self.theta < st.cycles - 2 * RAMP:
            return st.hz
        phi, slope, ts = self._fit
        if self.window == 1:
            slope = st.hz
        est = phi + slope * min(max(0.0, t - ts), self.window * self.period)
        target = est + self.lead * st.hz
        top = (1.0 + self.cfg.max_correction) * st.hz
        return min(top, max(0.0, (target - self.theta) / dt))
